"""A tracked save in a process of its own, for the kill -9 and exit tests of tests/test_tracking*.py.

python tracking_child.py CONNECTION_STRING CONTAINER BLOB PATH follow
    resume the save of PATH and follow it until killed (prints "started" once going);
python tracking_child.py CONNECTION_STRING CONTAINER BLOB PATH write-close LINES
    save PATH afresh, append LINES lines to it, close, and exit at once.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from azure.storage.blob import ContainerClient, LinearRetry
from batchfiles.tracking import TrackedSave


def fast_retries(policy: type = LinearRetry) -> dict[str, Any]:
    """Client options retrying 8 times, 20 ms apart (ExponentialRetry waits over 1 s once retrying).

    ``policy``: ``azure.storage.blob.aio.LinearRetry`` for an async client.
    """
    return {"retry_policy": policy(backoff=0.02, random_jitter_range=0.01, retry_total=8)}


def main(conn_str: str, container_name: str, blob: str, path: str, mode: str, *args: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    container = ContainerClient.from_connection_string(conn_str, container_name, **fast_retries())
    if mode == "follow":
        TrackedSave.start(container, blob, path, flush_interval=0.01, if_exists="resume")
        print("started", flush=True)
        while True:
            time.sleep(60)
    save = TrackedSave.start(container, blob, path, flush_interval=60, if_exists="overwrite", settle=0)
    with open(path, "a") as file:
        for i in range(int(args[0])):
            file.write(f"last words {i}\n")
    if mode == "write-close":
        save.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
