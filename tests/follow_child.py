"""A writer process for tests/test_follow.py: lines appended to a file that a tracked save follows.

python follow_child.py CONNECTION_STRING CONTAINER BLOB PATH MAX_BLOCKS LINES PAUSE_MS

Saves PATH to BLOB (``if_exists="overwrite"``, flushed every 20 ms, parts of at most MAX_BLOCKS blocks),
prints ``started``, appends LINES numbered lines, PAUSE_MS apart, some with a multibyte character split
across two writes (a flush may fall between them), closes the save, and prints its parts as a JSON list.
"""

from __future__ import annotations

import json
import sys
import time

from azure.storage.blob import ContainerClient
from batchfiles._tracking import limits
from batchfiles.tracking import TrackedSave
from helpers import fast_retries


def main(conn_str: str, container_name: str, blob: str, path: str, max_blocks: str, lines: str, pause: str):
    limits.MAX_BLOCKS = int(max_blocks)
    container = ContainerClient.from_connection_string(conn_str, container_name, **fast_retries())
    open(path, "wb").close()
    save = TrackedSave.start(container, blob, path, flush_interval=0.02, if_exists="overwrite", settle=0)
    print("started", flush=True)
    with open(path, "ab", buffering=0) as file:
        for i in range(int(lines)):
            line = f"line {i:04d} café ☕ {'x' * (i % 7)}\n".encode()
            if i % 5 == 0:  # split inside the three bytes of the ☕
                cut = line.index("☕".encode()) + 1
                file.write(line[:cut])
                time.sleep(0.03)
                file.write(line[cut:])
            else:
                file.write(line)
            time.sleep(int(pause) / 1000)
    save.close()
    print(json.dumps(save.parts), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
