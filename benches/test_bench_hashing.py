"""Hashing in Rust vs the standard library, on 256 MiB in memory (one thread each; with
``BATCHFILES_BENCH_QUICK=1``: 64 MiB, 3 rounds).

- MD5: ``batchfiles._native.md5`` vs ``hashlib.md5`` (baseline). Target (issue 4): >= 1.0x.
- CRC-64/NVME: ``batchfiles._native.test_support.crc64`` (the CRC the block readers compute) vs ``zlib.crc32``
  (baseline: the fastest CRC the standard library has; there is no CRC-64 there). Target: >= 5 GiB/s on one
  core.
- One pass over a 256 MiB file in 8 MiB blocks, as ``save`` does it: ``_native.BlockReader`` (CRC-64 per
  block, with and without the whole-file MD5) vs Python ``read`` + ``hashlib.md5`` per block (baseline, what
  ``upload_blob(validate_content=True)`` does on the client).

``benches/report.py`` prints GiB/s (from ``extra_info["bytes"]``) and checks the targets in ``extra_info``.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from pathlib import Path

import pytest
from batchfiles import _native
from batchfiles._native import test_support
from knobs import QUICK

MIB = 1 << 20
SIZE = (64 if QUICK else 256) * MIB
BLOCK = 8 * MIB
ROUNDS = 3 if QUICK else 5
MEM = f"{SIZE // MIB} MiB"  # in group names


def _noise(size: int) -> bytes:
    chunk = os.urandom(16 * MIB)
    return (chunk * (size // len(chunk) + 1))[:size]


DATA = _noise(SIZE)


def _run(benchmark, fn, *, targets: list[dict] | None = None):
    """ROUNDS timed calls of ``fn`` after a warm-up, recording each call's wall and CPU time (``wall_s``,
    ``cpu_s``): on a busy machine CPU time is steadier than wall time."""
    wall: list[float] = []
    cpu: list[float] = []

    def timed():
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        return result

    benchmark.extra_info.update(bytes=SIZE, targets=targets or [])
    result = benchmark.pedantic(timed, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    benchmark.extra_info.update(wall_s=wall[-ROUNDS:], cpu_s=cpu[-ROUNDS:])  # without the warm-up
    return result


@pytest.mark.benchmark(group=f"md5 {MEM} in memory")
def test_md5_rust(benchmark):
    digest = _run(
        benchmark,
        lambda: _native.md5(DATA),
        targets=[{"what": "Rust MD5 vs hashlib", "metric": "speedup", "op": ">=", "value": 1.0}],
    )
    assert digest == hashlib.md5(DATA).digest()


@pytest.mark.benchmark(group=f"md5 {MEM} in memory")
def test_md5_baseline_hashlib(benchmark):
    _run(benchmark, lambda: hashlib.md5(DATA).digest())


@pytest.mark.benchmark(group=f"crc {MEM} in memory")
def test_crc64_nvme_rust(benchmark):
    _run(
        benchmark,
        lambda: test_support.crc64(DATA),
        targets=[{"what": "CRC-64/NVME throughput", "metric": "gib_s", "op": ">=", "value": 5.0}],
    )
    assert test_support.crc64(b"123456789") == 0xAE8B14860A799888


@pytest.mark.benchmark(group=f"crc {MEM} in memory")
def test_crc32_baseline_zlib(benchmark):
    _run(benchmark, lambda: zlib.crc32(DATA))


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory):
    path: Path = tmp_path_factory.mktemp("hashing") / "data.bin"
    path.write_bytes(DATA)
    yield path
    path.unlink()


def _read_all(path: Path, md5: bool) -> bytes | None:
    reader = _native.BlockReader(path, BLOCK, md5=md5)
    while reader.next_block() is not None:
        pass
    return reader.md5()


@pytest.mark.benchmark(group=f"read+hash {MEM} file, 8 MiB blocks")
def test_block_reader_crc64_md5(benchmark, big_file):
    assert _run(benchmark, lambda: _read_all(big_file, md5=True)) == hashlib.md5(DATA).digest()


@pytest.mark.benchmark(group=f"read+hash {MEM} file, 8 MiB blocks")
def test_block_reader_crc64_only(benchmark, big_file):
    assert _run(benchmark, lambda: _read_all(big_file, md5=False)) is None


@pytest.mark.benchmark(group=f"read+hash {MEM} file, 8 MiB blocks")
def test_read_baseline_python_hashlib_per_block(benchmark, big_file):
    def read_and_hash() -> None:
        with open(big_file, "rb") as f:
            while block := f.read(BLOCK):  # a new bytes per block, like BlockReader and the SDK
                hashlib.md5(block).digest()

    _run(benchmark, read_and_hash)
