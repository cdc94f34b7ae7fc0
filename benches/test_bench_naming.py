"""Bulk naming in Rust vs the pure-Python reference (tests/reference_naming.py), 200,000 items each (20,000
with ``BATCHFILES_BENCH_QUICK=1``).

Targets (``extra_info["targets"]``, checked by ``benches/report.py``): container names >= 20x, blob names
>= 10x; container names <= 1.5x the floor, what CPython takes to build the result strings of the same ids
(``list(map(str.lower, ids))``: a new ``str`` per id), so the target is against what this machine allows.
"""

from __future__ import annotations

import random

import pytest
import reference_naming as ref
from batchfiles import naming
from knobs import QUICK

N = 20_000 if QUICK else 200_000
X = f"x{N // 1000}k"  # in group names


def _mixed_job_ids(n: int) -> list[str]:
    rng = random.Random(42)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    ids = []
    for i in range(n):
        stem = "".join(rng.choices(alphabet, k=rng.randint(4, 30)))
        shape = i % 4
        if shape == 0:
            ids.append(f"render-{stem.lower()}-{i}")  # already a valid container name
        elif shape == 1:
            ids.append(f"{stem}_{i}")  # underscore: hashed
        elif shape == 2:
            ids.append(f"sched:{stem}:job-{i}")  # job schedule ids: hashed
        else:
            ids.append(f"{stem}{i}" * 3)  # mixed case, often long
    return ids


def _paths(n: int) -> list[str]:
    rng = random.Random(7)
    folders = ["frames", "out\\thumbs", "../logs", "./a/b/c", "scene/01", "x/../y"]
    return [f"{rng.choice(folders)}/frame_{i:06d}.png" for i in range(n)]


def _speedup(times: float) -> dict:
    return {"what": f"vs the Python reference >= {times}x", "metric": "speedup", "op": ">=", "value": times}


JOB_IDS = _mixed_job_ids(N)
PATHS = _paths(N)


@pytest.mark.benchmark(group=f"container_names {X}")
def test_container_names_rust(benchmark):
    floor = {
        "what": "vs the floor list(map(str.lower, ids)) <= 1.5x",
        "metric": "wall_ratio",
        "op": "<=",
        "value": 1.5,
        "against": "test_container_names_floor_str_lower",
    }
    benchmark.extra_info["targets"] = [_speedup(20), floor]
    result = benchmark(naming.container_names, JOB_IDS)
    assert result[:100] == [ref.container_name(j) for j in JOB_IDS[:100]]


@pytest.mark.benchmark(group=f"container_names {X}")
def test_container_names_floor_str_lower(benchmark):
    """Not a baseline: the floor, a new ``str`` per id built by CPython itself."""
    benchmark(lambda: list(map(str.lower, JOB_IDS)))


@pytest.mark.benchmark(group=f"container_names {X}")
def test_container_names_baseline_python(benchmark):
    benchmark(lambda: [ref.container_name(j) for j in JOB_IDS])


@pytest.mark.benchmark(group=f"blob_names {X}")
def test_blob_names_rust(benchmark):
    benchmark.extra_info["targets"] = [_speedup(10)]
    result = benchmark(naming.blob_names, "TaskOutput", PATHS, "task-1")
    assert result[:100] == [ref.blob_name("TaskOutput", p, "task-1") for p in PATHS[:100]]


@pytest.mark.benchmark(group=f"blob_names {X}")
def test_blob_names_baseline_python(benchmark):
    benchmark(lambda: [ref.blob_name("TaskOutput", p, "task-1") for p in PATHS])
