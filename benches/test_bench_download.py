"""Downloading from Azurite: batchfiles vs azure-storage-blob used well, each in its own process, in
alternating rounds, every peer checking every file's MD5 (issue 21).

Groups (``benches/report.py`` checks the targets and prints the ratios):

- ``download 1 GiB file``: ``OutputFileReference.download_to_file`` (parallel ranged reads, hashed in Rust
  and written in order, then renamed into place) vs the baseline
  ``BlobClient.download_blob(max_concurrency=8).readinto(file)`` and a ``hashlib`` MD5 of the file, checked
  against the blob's Content-MD5. Wall <= 1.0x, client CPU <= 1.0x; peak RSS bounded by a number of
  ranges (``RSS_BOUND_MIB``), not by the file's size.
- ``download 2,000 x 256 KiB over 200 tasks``: the library's way to fetch a job's outputs
  (``JobOutputStorage.snapshot()``, one flat listing, then ``download(output, path)`` of every output from
  8 threads) vs the baseline, 8 threads of ``download_blob().readinto(file)`` over one ``list_blobs()`` of
  the container, each file's MD5 checked as above. Wall <= 1.0x, client CPU <= 1.0x; the CPU of the
  downloads alone (after the listing) is compared too, as an indication. Listing requests are counted in
  one more, untimed, round of each through the project's fault proxy (``tests/faultproxy.py``, in this
  process): one request per 5,000 blobs.

Each round runs both peers, each in a fresh interpreter (so neither inherits the other's memory, threads or
connections), the order swapped every round; a child imports, connects and makes one request before it
starts timing, then reports its wall time, CPU time (``time.process_time``, all its threads) and peak RSS
above its RSS before (``VmHWM`` reset through ``/proc/self/clear_refs``). Azurite's CPU per round is
recorded beside them. The rounds run in a fixture per data set (Azurite started, filled, measured and
stopped); each benchmark then hands its own rounds' wall times to pytest-benchmark.

Knobs: ``BATCHFILES_BENCH_GIB`` (large file, default 1), ``BATCHFILES_BENCH_ROUNDS`` (default 3),
``BATCHFILES_BENCH_DOWNLOAD_FILES`` (default 2,000), ``BATCHFILES_BENCH_DOWNLOAD_TASKS`` (default 200),
``BATCHFILES_BENCH_SMALL_ROUNDS`` (default 3); with ``BATCHFILES_BENCH_QUICK=1``: 96 MiB, 300 files over 30
tasks, 2 rounds each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from batchfiles import TaskOutputStorage, _download, prepare_output_storage
from batchfiles.testing import Azurite
from faultproxy import FaultProxy
from knobs import knob
from procstat import process_tree_cpu

MIB = 1 << 20
GIB = 1 << 30
SIZE = max(MIB, round(knob("GIB", 1, 96 / 1024) * GIB) // MIB * MIB)
ROUNDS = int(knob("ROUNDS", 3, 2))
LARGE = f"{SIZE / GIB:g} GiB" if SIZE >= GIB else f"{SIZE // MIB} MiB"
N_FILES = int(knob("DOWNLOAD_FILES", 2000, 300))
N_TASKS = int(knob("DOWNLOAD_TASKS", 200, 30))
SMALL = 256 * 1024
SMALL_ROUNDS = int(knob("SMALL_ROUNDS", 3, 2))
JOB = "bench-download"
LARGE_GROUP = f"download {LARGE} file"
SMALL_GROUP = f"download {N_FILES:,} x 256 KiB over {N_TASKS} tasks"
#: Peak RSS bound of a large download: 64 MiB (what any Python process grows by, as in the save benchmark)
#: + the ranges read ahead and the one being written (RANGES_AHEAD + 1) + one more range per reading thread,
#: twice (the SDK holds a range's pieces while it joins them; glibc keeps freed memory in per-thread arenas).
RSS_RANGES = _download.RANGES_AHEAD + 1 + 2 * _download.RANGE_CONCURRENCY
RSS_BOUND_MIB = 64 + RSS_RANGES * _download.RANGE_SIZE / MIB

pytestmark = pytest.mark.timeout(3600)

# --- the peers, each in a fresh interpreter ----------------------------------------------------------------

CHILD = r"""
import hashlib, json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

conn, job, container_name, out, data_set, peer = sys.argv[1:7]
out = Path(out)

def status_mib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024

def md5_of_file(path):
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            md5.update(chunk)
    return md5.digest()

if peer == "sdk":
    from azure.storage.blob import BlobServiceClient
    container = BlobServiceClient.from_connection_string(conn).get_container_client(container_name)
    container.get_blob_client("warm-up").exists()  # imports done, connection open

    def fetch(name, concurrency=1):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            download = container.get_blob_client(name).download_blob(max_concurrency=concurrency)
            download.readinto(f)
        assert md5_of_file(path) == bytes(download.properties.content_settings.content_md5), name

    if data_set == "large":
        def run():
            fetch("task-1/$TaskOutput/large.bin", 8)
            return 1
    else:
        def run():
            names = [blob.name for blob in container.list_blobs()]
            listed.append(time.process_time())
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(fetch, names))
            return len(names)
else:
    from batchfiles import JobOutputStorage, OutputNotFoundError
    job_storage = JobOutputStorage.from_connection_string(conn, job)
    with suppress(OutputNotFoundError):
        job_storage.get("JobOutput", "warm-up")  # imports done, connection open

    if data_set == "large":
        def run():
            ref = job_storage.task("task-1").get("TaskOutput", "large.bin")
            ref.download_to_file(out / "large.bin")
            return 1
    else:
        def run():
            def fetch(output):
                job_storage.download(output, out / output.blob_name.replace("$", ""))

            snap = job_storage.snapshot()  # one listing request per 5,000 blobs
            outputs = list(snap.all_outputs())
            listed.append(time.process_time())
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(fetch, outputs))
            return len(outputs)

try:  # reset VmHWM, the peak RSS of this address space, to the current RSS
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
before = status_mib("VmRSS")
listed = []  # CPU time when the listing was done (small data set)
w0, c0 = time.perf_counter(), time.process_time()
files = run()
cpu, wall = time.process_time() - c0, time.perf_counter() - w0
peak = status_mib("VmHWM")
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "listing_cpu_s": listed[0] - c0 if listed else 0.0,
                  "files": files, "rss_before_mib": before, "peak_mib": peak,
                  "rss_delta_mib": peak - before}))
"""


@dataclass
class Rounds:
    """Per-round figures of one peer, and its listing requests (small data set)."""

    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    listing_cpu_s: list[float] = field(default_factory=list)
    server_cpu_s: list[float] = field(default_factory=list)
    rss_delta_mib: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    files: int = 0
    listing_requests: int | None = None


def _run_child(conn: str, container: str, out: Path, data_set: str, peer: str) -> dict:
    args = [sys.executable, "-c", CHILD, conn, JOB, container, str(out), data_set, peer]
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def _alternate(azurite: Azurite, container: str, data_set: str, rounds: int) -> dict[str, Rounds]:
    """``rounds`` rounds of both peers, the order swapped every round; each downloads into an empty
    folder, removed after it."""
    results = {"sdk": Rounds(), "ours": Rounds()}
    server_pid = azurite._proc.pid if azurite._proc is not None else None
    for i in range(rounds):
        for peer in ("sdk", "ours") if i % 2 == 0 else ("ours", "sdk"):
            out = Path(tempfile.mkdtemp(prefix=f"batchfiles-bench-dl-{peer}-"))
            try:
                s0 = process_tree_cpu(server_pid) if server_pid else 0.0
                got = _run_child(azurite.connection_string, container, out, data_set, peer)
                s1 = process_tree_cpu(server_pid) if server_pid else 0.0
            finally:
                shutil.rmtree(out, ignore_errors=True)
            r = results[peer]
            r.wall_s.append(got["wall_s"])
            r.cpu_s.append(got["cpu_s"])
            r.listing_cpu_s.append(got["listing_cpu_s"])
            r.server_cpu_s.append(s1 - s0)
            r.rss_delta_mib.append(got["rss_delta_mib"])
            r.peak_mib.append(got["peak_mib"])
            r.files = got["files"]
    return results


def _count_listings(azurite: Azurite, container: str, data_set: str, results: dict[str, Rounds]) -> None:
    """One more round of each peer, untimed, through the fault proxy, counting listing requests."""
    listings = 0

    def count(req) -> bool:  # a rule that never fires, only counts
        nonlocal listings
        listings += "comp=list" in req.query
        return False

    with FaultProxy(azurite.port, deadline_s=1800) as proxy:
        proxy.add_rule("delay", count)
        conn = azurite.connection_string.replace(azurite.account_url, proxy.url_for("devstoreaccount1"))
        for peer, r in results.items():
            out = Path(tempfile.mkdtemp(prefix=f"batchfiles-bench-dl-{peer}-"))
            try:
                listings = 0
                _run_child(conn, container, out, data_set, peer)
                r.listing_requests = listings
            finally:
                shutil.rmtree(out, ignore_errors=True)


# --- data sets ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_rounds() -> Iterator[dict[str, Rounds]]:
    """One SIZE-byte output of task-1, saved by batchfiles (8 MiB blocks, Content-MD5), then the rounds."""
    with Azurite() as azurite:
        with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
            container = prepare_output_storage(service, JOB).container_name
        with tempfile.TemporaryDirectory(prefix="batchfiles-bench-dl-") as folder:
            path = Path(folder) / "large.bin"
            chunk = os.urandom(16 * MIB)
            with open(path, "wb") as f:
                for at in range(0, SIZE, len(chunk)):
                    f.write(chunk[: SIZE - at])
            with TaskOutputStorage.from_connection_string(azurite.connection_string, JOB, "task-1") as task:
                task.save("TaskOutput", path, "large.bin")
        yield _alternate(azurite, container, "large", ROUNDS)


@pytest.fixture(scope="module")
def small_rounds() -> Iterator[dict[str, Rounds]]:
    """N_FILES outputs of 256 KiB over N_TASKS tasks (saved from 8 threads), then the rounds."""
    with Azurite() as azurite:
        with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
            container = prepare_output_storage(service, JOB).container_name
        conn = azurite.connection_string
        tasks = [TaskOutputStorage.from_connection_string(conn, JOB, f"task-{t:03d}") for t in range(N_TASKS)]
        data = os.urandom(SMALL + N_FILES)

        def save(i: int) -> None:
            task = tasks[i % N_TASKS]
            task.save_bytes("TaskOutput", data[i : i + SMALL], f"frames/frame{i:05d}.exr")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(save, range(N_FILES)))
        for task in tasks:
            task.close()
        results = _alternate(azurite, container, "small", SMALL_ROUNDS)
        _count_listings(azurite, container, "small", results)
        yield results


# --- reporting ---------------------------------------------------------------------------------------------


def _record(benchmark, r: Rounds, targets: list[dict], **info) -> None:
    """Hand one peer's rounds to pytest-benchmark: the figures in ``extra_info``, the wall times as its
    rounds (they were timed in the child processes, alternating with the other peer's)."""
    benchmark.extra_info.update(
        wall_s=r.wall_s,
        cpu_s=r.cpu_s,
        listing_cpu_s=r.listing_cpu_s,
        server_cpu_s=r.server_cpu_s,
        rss_delta_mib=max(r.rss_delta_mib),
        peak_mib=max(r.peak_mib),
        targets=targets,
        **info,
    )
    if r.listing_requests is not None:
        benchmark.extra_info["listing_requests"] = r.listing_requests
    benchmark.pedantic(lambda: None, rounds=len(r.wall_s))
    benchmark.stats.stats.data[:] = r.wall_s


WALL = {"what": "wall <= 1.0x the SDK peer", "metric": "wall_ratio", "op": "<=", "value": 1.0}
CPU = {"what": "client CPU <= 1.0x the SDK peer", "metric": "cpu_ratio", "op": "<=", "value": 1.0}


@pytest.mark.benchmark(group=LARGE_GROUP)
def test_download_large_baseline_sdk_readinto(benchmark, large_rounds):
    _record(benchmark, large_rounds["sdk"], [], bytes=SIZE)


@pytest.mark.benchmark(group=LARGE_GROUP)
def test_download_large(benchmark, large_rounds):
    rss = {
        "what": f"peak RSS - RSS before <= {RSS_BOUND_MIB:.0f} MiB (64 MiB + {RSS_RANGES} ranges "
        f"x {_download.RANGE_SIZE // MIB} MiB), whatever the size",
        "metric": "rss_delta_mib",
        "op": "<=",
        "value": RSS_BOUND_MIB,
    }
    _record(benchmark, large_rounds["ours"], [WALL, CPU, rss], bytes=SIZE)


@pytest.mark.benchmark(group=SMALL_GROUP)
def test_download_many_baseline_sdk_readinto(benchmark, small_rounds):
    r = small_rounds["sdk"]
    _record(benchmark, r, [], files=r.files, bytes=r.files * SMALL)


@pytest.mark.benchmark(group=SMALL_GROUP)
def test_download_many(benchmark, small_rounds):
    r = small_rounds["ours"]
    assert r.files == small_rounds["sdk"].files == N_FILES
    rss = {  # grows with the job: the snapshot holds every listed output
        "what": "peak RSS - RSS before (the snapshot held)",
        "metric": "rss_delta_mib",
        "op": "<=",
        "value": 64,
        "info": True,
    }
    pages = -(-N_FILES // 5000)
    listings = {
        "what": f"listing requests <= {pages} (one per 5,000 blobs)",
        "metric": "listing_requests",
        "op": "<=",
        "value": pages,
    }
    sdk = small_rounds["sdk"]
    downloads_only = {
        "what": "client CPU of the downloads alone (after the listing) vs the SDK peer's",
        "metric": "download_cpu_ratio",
        "op": "<=",
        "value": 1.0,
        "unit": "x",
        "info": True,
    }
    ratio = _downloads_cpu(r) / _downloads_cpu(sdk)
    targets = [WALL, CPU, downloads_only, rss, listings]
    _record(benchmark, r, targets, files=r.files, bytes=r.files * SMALL, download_cpu_ratio=ratio)


def _downloads_cpu(r: Rounds) -> float:
    """Mean client CPU per round after the listing."""
    return sum(c - listing for c, listing in zip(r.cpu_s, r.listing_cpu_s, strict=True)) / len(r.cpu_s)
