"""Following live logs against Azurite: write-to-printed latency, and the cost of following a whole job.

Knobs (environment): BATCHFILES_BENCH_FOLLOW_S (seconds each run lasts, default 20; 4 with
BATCHFILES_BENCH_QUICK=1). Figures go to ``extra_info`` (not asserted; ``benches/report.py`` checks the
targets):

- latency: a tracked save with ``flush_interval=0.5`` and ``follow(poll_interval=0.5)`` in one process; the
  time from a line written to the file to the line handed out by ``follow``, p50 and p99 (goal p99 <= 1.25 s).
- a 200-task job where 20 tasks are writing (a line every 0.5 s each, from another process): requests per
  poll and client CPU of ``JobOutputStorage.follow_logs``, what ``batchfiles logs -f`` reads (one listing
  per poll, then a read of each log that grew), beside the naive way, a conditional read of every log per
  poll (the baseline).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.storage.blob import BlobServiceClient, ContainerClient, LinearRetry
from batchfiles import JobOutputStorage, LogData, LogsPolled, TaskOutputStorage
from batchfiles.testing import Azurite
from knobs import knob

DURATION = knob("FOLLOW_S", 20, 4)
JOB = "bench-follow"
TASKS, WRITING = 200, 20
POLL = 0.5
SCALE_GROUP = f"following a {TASKS}-task job, {WRITING} writing, poll {POLL} s"
CPU_SECONDS: dict[str, float] = {}
MS = {"scale": 1000, "unit": " ms"}


def _target(what: str, metric: str, op: str, value: float, **shown: object) -> dict:
    return {"what": what, "metric": metric, "op": op, "value": value, **shown}


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n    {text}")


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as server:
        BlobServiceClient.from_connection_string(server.connection_string).create_container(f"job-{JOB}")
        yield server


def _retry() -> dict[str, Any]:
    return {"retry_policy": LinearRetry(backoff=0.1, random_jitter_range=0.05, retry_total=5)}


# --- latency ------------------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="follow latency, flush_interval=0.5, poll_interval=0.5")
def test_write_to_printed_latency(benchmark, azurite: Azurite, tmp_path: Path, capsys) -> None:
    """A line every 20 to 200 ms; ``follow`` hands it out; latency per line, write to handed out."""
    path = tmp_path / "latency.log"
    path.touch()
    written: dict[int, float] = {}
    seen: dict[int, float] = {}

    def run() -> None:
        with TaskOutputStorage.from_connection_string(
            azurite.connection_string, JOB, "lat", **_retry()
        ) as task:
            follower = threading.Thread(target=follow, args=(task,))
            follower.start()
            save = task.save_tracked(path, "latency.log", flush_interval=0.5, if_exists="overwrite", settle=0)
            end, i = time.monotonic() + DURATION, 0
            while time.monotonic() < end:
                with open(path, "ab") as file:
                    file.write(f"line {i}\n".encode())
                written[i] = time.monotonic()
                i += 1
                time.sleep(0.02 + (i * 7919 % 181) / 1000)
            save.close()
            follower.join(30)

    def follow(task: TaskOutputStorage) -> None:
        pending = b""
        with open(os.devnull, "wb") as out:
            for chunk in task.follow("latency.log", poll_interval=POLL):
                now = time.monotonic()
                out.write(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    seen[int(line.split()[1])] = now

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert set(seen) == set(written)
    latencies = sorted(seen[i] - written[i] for i in written)
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99)]
    benchmark.extra_info.update(p50_s=round(p50, 3), p99_s=round(p99, 3), lines=len(latencies))
    benchmark.extra_info["targets"] = [
        _target("p50", "p50_s", "<=", 1.25, info=True, **MS),
        _target("p99 within 1.25 s", "p99_s", "<=", 1.25, **MS),
    ]
    report(
        capsys,
        f"write -> handed out over {len(latencies)} lines: p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms",
    )


# --- a whole job --------------------------------------------------------------------------------------------

WRITER = """
import sys, time
from azure.storage.blob import ContainerClient
container = ContainerClient.from_connection_string(sys.argv[1], sys.argv[2])
blobs = [container.get_blob_client(f"task-{i}/$TaskLog/stdout.txt") for i in range(int(sys.argv[3]))]
end, n = time.monotonic() + float(sys.argv[4]), 0
while time.monotonic() < end:
    started = time.monotonic()
    for blob in blobs:
        blob.append_block(f"line {n} of a busy task\\n".encode())
    n += 1
    time.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
"""


class Counter:
    """A raw response hook: requests, and how many were listings."""

    def __init__(self) -> None:
        self.requests = self.listings = 0

    def __call__(self, response: Any) -> None:
        self.requests += 1
        self.listings += "comp=list" in response.http_request.url


@pytest.fixture(scope="module")
def job_of_200(azurite: Azurite) -> str:
    container = ContainerClient.from_connection_string(azurite.connection_string, f"job-{JOB}", **_retry())
    for i in range(TASKS):
        blob = container.get_blob_client(f"task-{i}/$TaskLog/stdout.txt")
        blob.create_append_blob()
        blob.append_block(f"task {i} started\n".encode())
        container.get_blob_client(f"task-{i}/$TaskLog/stderr.txt").create_append_blob()
    return azurite.connection_string


class Steady:
    """Counts from the end of the first poll (which reads every log once) on: polls, client CPU, wall."""

    def __init__(self, counter: Counter) -> None:
        self.counter, self.polls, self.cpu, self.wall = counter, 0, 0.0, 0.0

    def polled(self) -> None:
        if self.polls == 0:
            self.counter.requests = self.counter.listings = 0
            self.cpu, self.wall = time.process_time(), time.monotonic()
        self.polls += 1

    def end(self) -> tuple[int, float, float]:
        return self.polls - 1, time.process_time() - self.cpu, time.monotonic() - self.wall


def _with_writers(conn_str: str, follow: Any) -> tuple[int, float, float]:
    """Run ``follow(stop_at)`` while 20 tasks write (from another process); what it returns: (polls,
    client CPU s, wall s) after its first poll."""
    args = [sys.executable, "-c", WRITER, conn_str, f"job-{JOB}", str(WRITING), str(DURATION + 5)]
    writer = subprocess.Popen(args)
    try:
        time.sleep(0.5)
        return follow(time.monotonic() + DURATION)
    finally:
        writer.wait(timeout=60)


@pytest.mark.benchmark(group=SCALE_GROUP)
def test_naive_follow_baseline(benchmark, job_of_200: str, capsys) -> None:
    """Every log read conditionally (If-None-Match) every poll: 400 requests a poll. Figures are of the
    steady state, after the first poll (which reads every log)."""
    counter = Counter()
    container = ContainerClient.from_connection_string(
        job_of_200, f"job-{JOB}", raw_response_hook=counter, **_retry()
    )
    names = [f"task-{i}/$TaskLog/{f}" for i in range(TASKS) for f in ("stdout.txt", "stderr.txt")]

    def follow(stop_at: float) -> tuple[int, float, float]:
        offsets: dict[str, int] = dict.fromkeys(names, 0)
        etags: dict[str, str | None] = dict.fromkeys(names)
        steady = Steady(counter)
        while time.monotonic() < stop_at:
            for name in names:
                blob = container.get_blob_client(name)
                etag = etags[name]
                options = {"etag": etag, "match_condition": MatchConditions.IfModified} if etag else {}
                try:
                    download = blob.download_blob(offset=offsets[name], length=4 << 20, **options)
                    data = download.readall()
                    offsets[name] += len(data)
                    etags[name] = download.properties.etag
                except Exception:  # 304 unchanged, 416 nothing new
                    pass
            steady.polled()
            time.sleep(POLL)
        return steady.end()

    polls, cpu, wall = benchmark.pedantic(_with_writers, args=(job_of_200, follow), rounds=1, iterations=1)
    _record(benchmark, "baseline", counter, polls, cpu, wall)
    report(capsys, _line("naive follow", counter, polls, cpu, wall))


@pytest.mark.benchmark(group=SCALE_GROUP)
def test_logs_follow_one_listing_per_poll(benchmark, job_of_200: str, capsys) -> None:
    counter = Counter()
    job = JobOutputStorage.from_connection_string(job_of_200, JOB, raw_response_hook=counter, **_retry())

    def follow(stop_at: float) -> tuple[int, float, float]:
        steady = Steady(counter)
        with open(os.devnull, "wb") as out:
            for event in job.follow_logs(poll_interval=POLL):  # every task's TaskLog files
                if isinstance(event, LogData):
                    out.write(event.data)
                elif isinstance(event, LogsPolled):
                    steady.polled()
                    if time.monotonic() >= stop_at:
                        break
        return steady.end()

    polls, cpu, wall = benchmark.pedantic(_with_writers, args=(job_of_200, follow), rounds=1, iterations=1)
    _record(benchmark, "logs", counter, polls, cpu, wall)
    benchmark.extra_info["targets"] = [
        _target("client CPU vs the naive follow", "cpu_ratio", "<=", 1.0, info=True),
        _target("requests per poll (1 listing + the logs that grew)", "requests_per_poll", "<=", 1 + WRITING),
    ]
    report(capsys, _line("batchfiles logs -f", counter, polls, cpu, wall))


def _record(benchmark: Any, name: str, counter: Counter, polls: int, cpu: float, wall: float) -> None:
    CPU_SECONDS[name] = cpu
    benchmark.extra_info.update(
        cpu_s=[round(cpu, 3)],
        wall_s=[round(wall, 3)],
        polls=polls,
        requests=counter.requests,
        requests_per_poll=round(counter.requests / max(polls, 1), 1),
        listings_per_poll=round(counter.listings / max(polls, 1), 2),
        cpu_share_of_a_core=round(cpu / wall, 4),
        cpu_ms_per_poll=round(cpu / max(polls, 1) * 1000, 1),
    )


def _line(what: str, counter: Counter, polls: int, cpu: float, wall: float) -> str:
    return (
        f"{what}: {polls} polls in {wall:.1f} s, {counter.requests / max(polls, 1):.1f} requests a poll, "
        f"client CPU {cpu:.2f} s ({cpu / wall * 100:.1f} % of a core, "
        f"{cpu / max(polls, 1) * 1e3:.0f} ms a poll)"
    )
