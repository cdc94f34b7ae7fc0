"""Simulated Batch tasks, for tests/test_throttled_account.py and benches/scale_sim.py: each task does what a
real one does with the public API, then every blob is compared with its file.

A task (:func:`run_task`) follows a ``stdout.txt`` that it writes a line to every ``line_every_s`` seconds
(``save_tracked`` with a short ``flush_interval``) while its "application" runs for ``app_s`` seconds,
closes the tracked save when the application ends, then saves ``small_files`` files of ``small_bytes``
with ``save_many`` and one file of ``large_bytes`` with ``save``, as ``batchfiles run`` does. Every error
is kept with the stage that raised it, never raised: a task that gives up is a figure, not a crash.
:func:`verify_task` reads every blob back (from storage directly, not through the proxy) and counts bytes
lost and duplicated; :class:`LogWatcher` polls the size of a few tracked blobs to measure how long a
written line takes to become visible.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batchfiles import TaskOutputStorage
from batchfiles.errors import OutputNotFoundError
from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME

KIB = 1 << 10
MIB = 1 << 20
LOG = "stdout.txt"
STAGES = ("track", "close", "save_many", "save")
_QUOTED = re.compile(r"'[^']*'")


def connection_string(account_url: str) -> str:
    """A connection string for Azurite's account at ``account_url`` (Azurite's own, or the proxy's)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={account_url};"
    )


@dataclass(frozen=True)
class Workload:
    """What each task writes and saves."""

    small_files: int = 8
    small_bytes: int = 4 * KIB
    large_bytes: int = 1 * MIB
    app_s: float = 2.0  # the application runs (writing its log) this long before the saves
    line_every_s: float = 0.1
    flush_interval: float = 1.0

    def bytes_per_task(self) -> int:
        """Bytes of the saved files (the log's size depends on how long the task runs)."""
        return self.small_files * self.small_bytes + self.large_bytes


@dataclass
class TaskResult:
    """The outcome of one task; times are ``time.time()`` seconds (comparable across processes)."""

    task_id: str
    started: float = 0.0
    ended: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)  # stage -> "Type: message"
    lines: list[tuple[int, float]] = field(default_factory=list)  # (log size after the line, written at)
    log_bytes: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def prepare_task(root: Path, task_id: str, workload: Workload, rng: random.Random) -> Path:
    """Write the task's output files under ``root/task_id`` (random bytes) and an empty log; its folder."""
    folder = root / task_id
    (folder / "out").mkdir(parents=True)
    for i in range(workload.small_files):
        (folder / "out" / f"part{i:02d}.bin").write_bytes(rng.randbytes(workload.small_bytes))
    (folder / "large.bin").write_bytes(rng.randbytes(workload.large_bytes))
    (folder / LOG).touch()
    return folder


def _error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}"


class _LogWriter(threading.Thread):
    """Appends a line to the task's log every ``every_s`` seconds until stopped, noting when each was
    written."""

    def __init__(self, path: Path, every_s: float, task_id: str, lines: list[tuple[int, float]]) -> None:
        super().__init__(name=f"log-{task_id}", daemon=True)
        self.path, self.every_s, self.task_id, self.lines = path, every_s, task_id, lines
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        with open(self.path, "ab", buffering=0) as log:
            while not self.stop.is_set():
                log.write(f"{self.task_id} line {n:06d} {time.time():.3f} the quick brown fox\n".encode())
                self.lines.append((log.tell(), time.time()))
                n += 1
                self.stop.wait(self.every_s)


def run_task(conn_str: str, job_id: str, task_id: str, folder: Path, workload: Workload) -> TaskResult:
    """One task, through the storage at ``conn_str`` (e.g. the throttling proxy), with library defaults, in
    the order of ``batchfiles run``: the log is tracked while the application runs and closed when it
    ends, then the outputs are saved."""
    result = TaskResult(task_id, started=time.time())
    log_path = folder / LOG
    writer = _LogWriter(log_path, workload.line_every_s, task_id, result.lines)
    storage = TaskOutputStorage.from_connection_string(conn_str, job_id, task_id)
    try:
        tracked = None
        try:
            tracked = storage.save_tracked(log_path, LOG, flush_interval=workload.flush_interval, settle=0)
        except Exception as exc:
            result.errors["track"] = _error(exc)
        writer.start()
        time.sleep(workload.app_s)
        writer.stop.set()
        writer.join()
        result.log_bytes = log_path.stat().st_size
        if tracked is not None:
            try:
                tracked.close()
            except Exception as exc:
                result.errors["close"] = _error(exc)
        try:
            storage.save_many("TaskOutput", "out/*.bin", base_dir=folder)
        except Exception as exc:
            result.errors["save_many"] = _error(exc)
        try:
            storage.save("TaskOutput", folder / "large.bin", "large.bin")
        except Exception as exc:
            result.errors["save"] = _error(exc)
    finally:
        writer.stop.set()
        storage.close()
        result.ended = time.time()
    return result


@dataclass
class Verdict:
    """Blobs against files, summed over tasks. ``bytes_lost``: file bytes missing from storage;
    ``bytes_lost_silently``: of those, in tasks that reported no error; ``bytes_duplicated``: blob bytes
    beyond the file; ``files_corrupt``: blobs that are neither equal to, a prefix of, nor an extension of
    their file."""

    files: int = 0
    files_equal: int = 0
    files_missing: int = 0
    files_corrupt: int = 0
    bytes_expected: int = 0
    bytes_lost: int = 0
    bytes_lost_silently: int = 0
    bytes_duplicated: int = 0

    def add(self, other: Verdict) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


def verify_task(conn_str: str, job_id: str, result: TaskResult, folder: Path) -> Verdict:
    """Read every output of the task back from ``conn_str`` (Azurite itself) and compare with its file."""
    verdict = Verdict()
    expected = [("TaskOutput", p.relative_to(folder).as_posix(), p) for p in sorted(folder.glob("out/*.bin"))]
    expected += [("TaskOutput", "large.bin", folder / "large.bin"), ("TaskLog", LOG, folder / LOG)]
    with TaskOutputStorage.from_connection_string(conn_str, job_id, result.task_id) as storage:
        for kind, name, path in expected:
            data = path.read_bytes()
            verdict.files += 1
            verdict.bytes_expected += len(data)
            try:
                blob = storage.get(kind, name).download_bytes()
            except OutputNotFoundError:
                blob = None
                verdict.files_missing += 1
            stored = blob or b""
            lost = max(0, len(data) - len(stored))
            verdict.bytes_lost += lost
            if not result.failed:
                verdict.bytes_lost_silently += lost
            verdict.bytes_duplicated += max(0, len(stored) - len(data))
            if blob == data:
                verdict.files_equal += 1
            elif blob is not None and not (data.startswith(blob) or blob.startswith(data)):
                verdict.files_corrupt += 1
    return verdict


class LogWatcher(threading.Thread):
    """Polls the size of the tracked log of a few tasks every ``every_s`` seconds, straight from storage,
    noting when each size was first seen (a line's delay is then known to within ``every_s``)."""

    def __init__(self, conn_str: str, job_id: str, task_ids: list[str], every_s: float = 0.2) -> None:
        super().__init__(name="log-watcher", daemon=True)
        self.every_s = every_s
        self.seen: dict[str, list[tuple[int, float]]] = {t: [] for t in task_ids}
        self.stop = threading.Event()
        self._storages = {t: TaskOutputStorage.from_connection_string(conn_str, job_id, t) for t in task_ids}

    def run(self) -> None:
        try:
            while not self.stop.wait(self.every_s):
                for task_id, storage in self._storages.items():
                    try:
                        size = storage.get("TaskLog", LOG).size
                    except Exception:
                        continue
                    seen = self.seen[task_id]
                    if not seen or size > seen[-1][0]:
                        seen.append((size, time.time()))
        finally:
            for storage in self._storages.values():
                storage.close()


def log_delays(lines: list[tuple[int, float]], seen: list[tuple[int, float]]) -> tuple[list[float], int]:
    """Delay of each written line until a size covering it was seen; and how many lines never were."""
    delays, never, i = [], 0, 0
    for offset, written in lines:
        while i < len(seen) and seen[i][0] < offset:
            i += 1
        if i == len(seen):
            never += 1
        else:
            delays.append(max(0.0, seen[i][1] - written))
    return delays, never


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) of ``values``, nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summary_of_errors(results: list[TaskResult], limit: int = 5) -> dict[str, int]:
    """The most common errors, "stage: Type: message" with quoted names left out (first 200 characters)
    -> tasks."""
    counts: dict[str, int] = {}
    for r in results:
        for stage, text in r.errors.items():
            key = f"{stage}: " + _QUOTED.sub("'…'", text)[:200]
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:limit])


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def cpu_seconds() -> float:
    """User + system CPU of this process so far (every thread)."""
    times = os.times()
    return times.user + times.system
