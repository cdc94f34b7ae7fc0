"""A tracked save in a process of its own, for the kill -9 and exit tests of tests/test_tracking*.py.

python tracking_child.py CONNECTION_STRING CONTAINER BLOB PATH follow
    resume the save of PATH and follow it until killed (prints "started" once going);
python tracking_child.py CONNECTION_STRING CONTAINER BLOB PATH write-close LINES
    save PATH afresh, append LINES lines to it, close, and exit at once;
python tracking_child.py CONNECTION_STRING CONTAINER BLOB PATH fork LINES
    save PATH afresh and fork while another thread holds the tracking lock; the child checks that the
    inherited save raises at once on close and saves PATH.child to BLOB.child itself; the parent appends
    LINES lines and closes. Exits with the child's status.
python tracking_child.py CONNECTION_STRING CONTAINER BLOB PATH race SEED
    one writer of tests/test_two_writers.py, driven by lines on stdin. ``go ROUND TAG SIZE IF_EXISTS
    DELAY PAUSE`` starts saving PATH.ROUND (created empty) to ROUND/BLOB after a random pause of up to
    30 ms, then prints ``started ROUND`` while a thread writes records of SIZE bytes to it, the first
    after DELAY ms, then one every PAUSE ms (0: 75 records at once); ``close ROUND`` closes the save
    and prints the outcome as a JSON line, {"round", "ok", "error"}. Ends at the end of stdin.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import threading
import time
import traceback

from azure.storage.blob import ContainerClient
from batchfiles import tracking
from batchfiles.errors import TrackingError
from batchfiles.tracking import TrackedSave
from helpers import fast_retries


def main(conn_str: str, container_name: str, blob: str, path: str, mode: str, *args: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    container = ContainerClient.from_connection_string(conn_str, container_name, **fast_retries())
    if mode == "race":
        race(container, blob, path, random.Random(int(args[0])))
        return
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


def race(container: ContainerClient, blob: str, path: str, rng: random.Random) -> None:
    """Rounds of one writer racing another on the same blob, as the parent says on stdin."""
    for line in sys.stdin:
        _, round_, tag, size, if_exists, delay, pause = line.split()
        file_path = f"{path}.{round_}"
        open(file_path, "wb").close()
        time.sleep(rng.uniform(0, 0.03))
        save, error, stop = None, None, threading.Event()
        try:
            save = TrackedSave.start(
                container, f"{round_}/{blob}", file_path, flush_interval=0.002, if_exists=if_exists, settle=0
            )
        except TrackingError as err:
            error = err
        timing = (float(delay) / 1000, float(pause) / 1000)
        writer = threading.Thread(target=write_records, args=(file_path, tag, int(size), stop, *timing))
        writer.start()
        print("started", round_, flush=True)
        assert sys.stdin.readline().split() == ["close", round_]
        stop.set()
        writer.join()
        if save is not None:
            try:
                save.close()
            except TrackingError as err:
                error = err
        outcome = {"round": int(round_), "ok": error is None, "error": f"{type(error).__name__}: {error}"}
        print(json.dumps(outcome), flush=True)


def write_records(path: str, tag: str, size: int, stop: threading.Event, delay: float, pause: float) -> None:
    """Records of ``size`` bytes, the first after ``delay`` s, then one every ``pause`` s or so until
    ``stop`` (at least 5); ``pause`` 0: 75 records in one write."""
    time.sleep(delay)
    with open(path, "ab", buffering=0) as file:
        if not pause:
            file.write(b"".join(record(tag, i, size) for i in range(75)))
            return
        i = 0
        while i < 5 or not stop.is_set():
            file.write(record(tag, i, size))
            i += 1
            time.sleep(pause)


def record(tag: str, i: int, size: int) -> bytes:
    return f"{tag} {i:05d} ".encode().ljust(size - 1, b".") + b"\n"


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
