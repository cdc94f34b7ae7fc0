"""Tracked saves against Azurite: throughput vs a raw append loop, write-to-visible latency, idle cost.

Knobs (environment): BATCHFILES_BENCH_TRACK_MIB (file size, default 512), BATCHFILES_BENCH_LATENCY_S
(default 20), BATCHFILES_BENCH_IDLE_S (default 30); with BATCHFILES_BENCH_QUICK=1: 64, 5 and 5. Each test
prints its figures; the throughput group also has the wall time ratio in the report and the client CPU
ratio in ``extra_info``.

Targets (``extra_info["targets"]``, checked by ``benches/report.py``): tracked save wall <= 1.1x and client
CPU <= 1.05x of the raw loop; write -> visible p99 within 1.1 s at ``flush_interval=1``; 100 idle tracked
files < 2 % of a core; at ``settle=1.0``, 20 idle tracked saves closed one after another within 1.5 s, and
20 busy ones (written to until just before) closed together, or one after another, within about one window
(1.5 s).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient, LinearRetry
from batchfiles.testing import Azurite
from batchfiles.tracking import TrackedSave
from knobs import knob

MIB = 1024 * 1024
BLOCK = 4 * MIB  # the largest block a tracked save appends: the raw loop appends blocks as large
SIZE_MIB = int(knob("TRACK_MIB", 512, 64))
LATENCY_S = knob("LATENCY_S", 20, 5)
IDLE_S = knob("IDLE_S", 30, 5)
THROUGHPUT = f"tracked save {SIZE_MIB} MiB"
CPU_SECONDS: dict[str, float] = {}
MS = {"scale": 1000, "unit": " ms"}  # a target in seconds, shown in milliseconds


def _target(what: str, metric: str, op: str, value: float, **shown: object) -> dict:
    """A target that benches/report.py checks; ``shown``: ``scale`` and ``unit`` of the figure, ``info``."""
    return {"what": what, "metric": metric, "op": op, "value": value, **shown}


@pytest.fixture(scope="module")
def container() -> Iterator[ContainerClient]:
    with Azurite() as azurite:
        BlobServiceClient.from_connection_string(azurite.connection_string).create_container("bench-tracking")
        retry = LinearRetry(backoff=0.1, random_jitter_range=0.05, retry_total=5)
        with ContainerClient.from_connection_string(
            azurite.connection_string, "bench-tracking", retry_policy=retry
        ) as client:
            yield client


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SIZE_MIB of log-like text, written once for the module."""
    path = tmp_path_factory.mktemp("bench") / "big.log"
    line = b"".join(f"{i:08d} the quick brown fox jumps over the lazy dog\n".encode() for i in range(16384))
    with open(path, "wb") as file:
        for _ in range(SIZE_MIB * MIB // len(line)):
            file.write(line)
    return path


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n    {text}")


def _timed_cpu(name: str, run: object) -> None:
    """Call ``run`` and record the CPU seconds of this process (every thread) it took."""
    start = time.process_time()
    run()  # type: ignore[operator]
    CPU_SECONDS[name] = time.process_time() - start


@pytest.mark.benchmark(group=THROUGHPUT)
def test_raw_append_loop_baseline(benchmark, container: ContainerClient, big_file: Path, capsys) -> None:
    blob = container.get_blob_client("raw.log")

    def run() -> None:
        blob.create_append_blob()
        with open(big_file, "rb") as file:
            while block := file.read(BLOCK):
                blob.append_block(block)

    benchmark.pedantic(_timed_cpu, args=("raw", run), rounds=1, iterations=1)
    benchmark.extra_info["cpu_s"] = [CPU_SECONDS["raw"]]
    assert blob.get_blob_properties().size == big_file.stat().st_size
    blob.delete_blob()
    report(capsys, f"raw append loop: client CPU {CPU_SECONDS['raw']:.2f} s")


@pytest.mark.benchmark(group=THROUGHPUT)
def test_tracked_save(benchmark, container: ContainerClient, big_file: Path, capsys) -> None:
    def run() -> None:
        with TrackedSave.start(container, "tracked.log", big_file, if_exists="overwrite", settle=0):
            pass

    benchmark.pedantic(_timed_cpu, args=("tracked", run), rounds=1, iterations=1)
    benchmark.extra_info["cpu_s"] = [CPU_SECONDS["tracked"]]
    benchmark.extra_info["targets"] = [
        _target("wall <= 1.1x the raw loop", "wall_ratio", "<=", 1.1),
        _target("client CPU <= 1.05x the raw loop", "cpu_ratio", "<=", 1.05),
    ]
    blob = container.get_blob_client("tracked.log")
    assert blob.get_blob_properties().size == big_file.stat().st_size
    blob.delete_blob()
    line = f"tracked save: client CPU {CPU_SECONDS['tracked']:.2f} s"
    if "raw" in CPU_SECONDS:
        ratio = CPU_SECONDS["tracked"] / CPU_SECONDS["raw"]
        benchmark.extra_info["cpu_vs_baseline"] = round(ratio, 3)
        line += f", {ratio:.2f}x the raw loop's (wall time ratio: see the report)"
    report(capsys, line)


@pytest.mark.benchmark(group="tracked save latency, flush_interval=1")
def test_write_to_visible_latency(benchmark, container: ContainerClient, tmp_path: Path, capsys) -> None:
    """A line every 20 to 200 ms; a watcher reads the blob length every 5 ms; latency per line."""
    path = tmp_path / "latency.log"
    path.touch()
    written: list[tuple[int, float]] = []  # (end offset, time written)
    seen: list[tuple[int, float]] = []  # (blob length, time seen)

    def run() -> None:
        blob = container.get_blob_client("latency.log")
        save = TrackedSave.start(container, "latency.log", path, flush_interval=1, if_exists="overwrite")
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(blob, stop))
        watcher.start()
        end = time.monotonic() + LATENCY_S
        i = 0
        while time.monotonic() < end:
            with open(path, "ab") as file:
                file.write(f"line {i}\n".encode())
            written.append((path.stat().st_size, time.monotonic()))
            i += 1
            time.sleep(0.02 + (i * 7919 % 181) / 1000)
        save.close()
        stop.set()
        watcher.join()

    def watch(blob, stop: threading.Event) -> None:
        while not stop.is_set():
            seen.append((blob.get_blob_properties().size, time.monotonic()))
            time.sleep(0.005)

    benchmark.pedantic(run, rounds=1, iterations=1)
    latencies = sorted(next(t for size, t in seen if size >= offset) - at for offset, at in written)
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99)]
    benchmark.extra_info.update(p50_s=round(p50, 3), p99_s=round(p99, 3), lines=len(latencies))
    benchmark.extra_info["targets"] = [
        _target("p50", "p50_s", "<=", 1.1, info=True, **MS),
        _target("p99 within 1.1 s", "p99_s", "<=", 1.1, **MS),
    ]
    report(
        capsys,
        f"write -> visible over {len(latencies)} lines: p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms",
    )


@pytest.mark.benchmark(group="tracked save idle cost, 100 files")
def test_idle_cost_of_100_tracked_files(
    benchmark, container: ContainerClient, tmp_path: Path, capsys
) -> None:
    paths = [tmp_path / f"idle{i}.log" for i in range(100)]
    for i, path in enumerate(paths):
        path.write_bytes(f"file {i}\n".encode())
    saves = [
        TrackedSave.start(container, f"idle/{i}.log", p, if_exists="overwrite", settle=0)
        for i, p in enumerate(paths)
    ]
    time.sleep(6)  # the first regular upload of each file is done

    def idle() -> float:
        start = time.process_time()
        time.sleep(IDLE_S)
        return (time.process_time() - start) / IDLE_S

    share = benchmark.pedantic(idle, rounds=1, iterations=1)
    for save in saves:
        save.close()
    benchmark.extra_info["cpu_share_of_a_core"] = round(share, 4)
    share_target = _target("< 2 % of a core", "cpu_share_of_a_core", "<=", 0.02, scale=100, unit=" %")
    benchmark.extra_info["targets"] = [share_target]
    report(capsys, f"100 idle tracked files for {IDLE_S:.0f} s: {share * 100:.2f} % of a core")


CLOSES = "closing 20 tracked saves, settle=1.0"
N_CLOSE = 20
SETTLE = 1.0


def _start_saves(
    container: ContainerClient, tmp_path: Path, name: str
) -> tuple[list[Path], list[TrackedSave]]:
    paths = [tmp_path / f"{name}{i}.log" for i in range(N_CLOSE)]
    for i, path in enumerate(paths):
        path.write_bytes(f"{name} {i}\n".encode())
    saves = [
        TrackedSave.start(container, f"{name}/{i}.log", p, if_exists="overwrite", settle=SETTLE)
        for i, p in enumerate(paths)
    ]
    return paths, saves


def _check_closed(container: ContainerClient, paths: list[Path], saves: list[TrackedSave]) -> None:
    for path, save in zip(paths, saves, strict=True):
        assert save.error is None
        props = container.get_blob_client(save.blob_name).get_blob_properties()
        assert props.size == path.stat().st_size
        assert props.metadata.get("batchfiles_closed") == "1"


def _close_target(what: str) -> dict:
    return _target(what, "close_s", "<=", 1.5 * SETTLE, **MS)


@pytest.mark.benchmark(group=CLOSES)
def test_close_idle_one_after_another(benchmark, container: ContainerClient, tmp_path: Path, capsys) -> None:
    """Files written before their saves started and idle since: each close is a final read and the close
    mark, without waiting for a settle window."""
    paths, saves = _start_saves(container, tmp_path, "idle-close")
    time.sleep(SETTLE + 0.5)  # idle for longer than the settle window

    def close_all() -> float:
        start = time.perf_counter()
        for save in saves:
            save.close()
        return time.perf_counter() - start

    took = benchmark.pedantic(close_all, rounds=1, iterations=1)
    _check_closed(container, paths, saves)
    benchmark.extra_info["close_s"] = round(took, 3)
    benchmark.extra_info["targets"] = [_close_target(f"{N_CLOSE} idle, one after another, <= 1.5 s")]
    report(capsys, f"{N_CLOSE} idle tracked saves closed one after another: {took:.2f} s")


def _busy(container: ContainerClient, tmp_path: Path, name: str, close_all) -> float:
    """Write a line to every file every 20 ms for 1.5 s, then close every save with ``close_all``; the
    seconds from the last write to the last close."""
    paths, saves = _start_saves(container, tmp_path, name)
    end = time.monotonic() + 1.5
    i = 0
    while time.monotonic() < end:
        for path in paths:
            with open(path, "ab") as file:
                file.write(f"line {i}\n".encode())
        i += 1
        time.sleep(0.02)
    start = time.perf_counter()
    close_all(saves)
    took = time.perf_counter() - start
    _check_closed(container, paths, saves)
    return took


@pytest.mark.benchmark(group=CLOSES)
def test_close_busy_together(benchmark, container: ContainerClient, tmp_path: Path, capsys) -> None:
    """Written to until the closes: closed at once from 20 threads, they share one settle window."""

    def close_all(saves: list[TrackedSave]) -> None:
        with ThreadPoolExecutor(len(saves)) as pool:
            list(pool.map(lambda save: save.close(), saves))

    took = benchmark.pedantic(_busy, args=(container, tmp_path, "busy-together", close_all), rounds=1)
    benchmark.extra_info["close_s"] = round(took, 3)
    benchmark.extra_info["targets"] = [_close_target(f"{N_CLOSE} busy, together, in about one window")]
    report(capsys, f"{N_CLOSE} busy tracked saves closed together: {took:.2f} s")


@pytest.mark.benchmark(group=CLOSES)
def test_close_busy_one_after_another(benchmark, container: ContainerClient, tmp_path: Path, capsys) -> None:
    """Written to until the closes, then closed one after another: the windows overlap, since each counts
    from its file's last growth."""

    def close_all(saves: list[TrackedSave]) -> None:
        for save in saves:
            save.close()

    took = benchmark.pedantic(_busy, args=(container, tmp_path, "busy-serial", close_all), rounds=1)
    benchmark.extra_info["close_s"] = round(took, 3)
    benchmark.extra_info["targets"] = [
        _close_target(f"{N_CLOSE} busy, one after another, in about one window")
    ]
    report(capsys, f"{N_CLOSE} busy tracked saves closed one after another: {took:.2f} s")
