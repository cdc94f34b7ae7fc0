"""A tracked save in a process of its own, for the kill -9 and exit tests of tests/test_tracking*.py.

python tracking_child.py CONNECTION_STRING CONTAINER BLOB PATH follow
    resume the save of PATH and follow it until killed (prints "started" once going);
python tracking_child.py CONNECTION_STRING CONTAINER BLOB PATH write-close LINES
    save PATH afresh, append LINES lines to it, close, and exit at once;
python tracking_child.py CONNECTION_STRING CONTAINER BLOB PATH fork LINES
    save PATH afresh and fork while another thread holds the tracking lock; the child checks that the
    inherited save raises at once on close and saves PATH.child to BLOB.child itself; the parent appends
    LINES lines and closes. Exits with the child's status.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from typing import Any

from azure.storage.blob import ContainerClient, LinearRetry
from batchfiles import tracking
from batchfiles.errors import TrackingError
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
    if mode == "fork":
        pid = fork_while_the_lock_is_held()
        if pid == 0:
            os._exit(in_forked_child(conn_str, container_name, blob, path, save))
    with open(path, "a") as file:
        for i in range(int(args[0])):
            file.write(f"last words {i}\n")
    if mode in ("write-close", "fork"):
        save.close()
    if mode == "fork":
        sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))


def fork_while_the_lock_is_held() -> int:
    """Fork while another thread holds the tracking lock (as the tracking thread does between waits)."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with tracking._scheduler.cond:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid:
        release.set()
        holder.join()
    return pid


def in_forked_child(conn_str: str, container_name: str, blob: str, path: str, save: TrackedSave) -> int:
    try:
        try:
            save.close()
        except TrackingError as err:
            print("the inherited save:", err, flush=True)
        else:
            return 2
        with open(f"{path}.child", "w") as file:
            file.write("saved by the child\n")
        container = ContainerClient.from_connection_string(conn_str, container_name, **fast_retries())
        with container, TrackedSave.start(container, f"{blob}.child", f"{path}.child", settle=0):
            pass
        return 0
    except BaseException:
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    main(*sys.argv[1:])
