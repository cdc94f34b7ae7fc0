"""Many tasks, one throttled account (issue 14): the scale simulation of ``benches/scale_sim.py``.

Two groups, the same job and the same targets, in one run (issue 19): the account's 503 ServerBusy answers
carry ``Retry-After`` (``BATCHFILES_BENCH_RETRY_AFTER_S``, 1 s by default), or carry none, which is what the
blob service documents for its data plane (503 ServerBusy and 500 OperationTimedOut name no ``Retry-After``),
so the figures must hold without it. One Azurite, through the fault proxy: first the job with no limit (the
baseline: the requests a throttle-free run needs, and its wall time; it does not depend on the header, so it
runs once, in the first group, and both throttled runs are held to it), then the job with the account
throttled to ``BATCHFILES_BENCH_RPS`` requests/s and ``BATCHFILES_BENCH_MIBPS`` MiB/s, once per variant.
Size knobs and a quick mode (``BATCHFILES_BENCH_QUICK=1``: 40 tasks, seconds): see ``benches/scale_sim.py``.
``-k "baseline or no_retry_after"`` runs the group without the header only.

Figures (``extra_info``; ``benches/report.py`` checks the targets): tasks failed; bytes lost (and lost
silently, by a task that reported no error) and duplicated; retry amplification (requests the account
received / requests it served; also against the baseline's served requests); the share of first attempts
throttled; the job's wall time against the ideal of the bucket (the job's bytes / MiB/s, the requests served
/ requests/s, and at least the ramp plus one task's application time); the write-to-visible delay of
tracked logs (p50, p99, sampled on a few tasks); client CPU (all workers), the proxy's and Azurite's CPU; and
the request rate the account saw, per second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from batchfiles.testing import Azurite
from scale_sim import SimConfig, simulate

CONFIG = SimConfig.from_environment()
_RATES = f"{CONFIG.requests_per_s or 'any'} req/s, {CONFIG.mib_per_s or 'any'} MiB/s"
#: The two ways the account throttles, by parameter id: (what the group says, the job's configuration).
VARIANTS = {
    f"retry_after_{CONFIG.retry_after_s:g}s": (f"Retry-After: {CONFIG.retry_after_s:g} s", CONFIG),
    "no_retry_after": ("no Retry-After", replace(CONFIG, retry_after_s=None)),
}
FIRST = next(iter(VARIANTS))
NEEDED: dict[str, int] = {}  # requests the throttle-free run served

MS = {"scale": 1000, "unit": " ms"}
PERCENT = {"scale": 100, "unit": " %"}


def group(label: str) -> str:
    return f"scale sim, {CONFIG.tasks} tasks, {_RATES}, {label}"


def _params() -> list:
    """One parameter per variant, each in its own benchmark group."""
    return [
        pytest.param(variant, id=variant, marks=pytest.mark.benchmark(group=group(label)))
        for variant, (label, _) in VARIANTS.items()
    ]


def _target(what: str, metric: str, value: float, **shown: object) -> dict:
    """A target ``metric <= value`` that benches/report.py checks (``info=True``: shown, not a target)."""
    return {"what": what, "metric": metric, "op": "<=", "value": value, **shown}


THROTTLED_TARGETS = [
    _target("tasks failed: 0", "tasks_failed", 0),
    _target("bytes lost: 0", "bytes_lost", 0),
    _target("bytes lost silently: 0", "bytes_lost_silently", 0),
    _target("bytes duplicated: 0", "bytes_duplicated", 0),
    _target("retry amplification (requests / served) <= 1.3x", "retry_amplification", 1.3),
    _target("requests / requests a throttle-free run needs", "amplification_vs_needed", 1.3, info=True),
    _target(
        "first attempts throttled (~20 % meant)", "first_attempt_throttled_share", 1, info=True, **PERCENT
    ),
    _target("wall <= 1.5x bytes / bucket MiB/s", "wall_vs_ideal_bytes", 1.5),
    _target("wall vs max(bytes / MiB/s, served / req/s)", "wall_vs_ideal", 1.5, info=True),
    _target("request rate seen, p90 of 1 s, vs bucket", "request_rate_p90_vs_bucket", 1.5, info=True),
    _target("tracked log write -> visible, p99", "log_p99_s", 10, info=True, **MS),
]


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as server:
        yield server


def _run(benchmark, azurite: Azurite, variant: str | None, throttled: bool, capsys) -> dict:
    label, config = VARIANTS[variant] if variant else ("no limit", CONFIG)
    figures: dict = {}
    benchmark.pedantic(lambda: figures.update(simulate(azurite, config, throttled=throttled)), rounds=1)
    benchmark.extra_info.update(figures)
    shown = {k: v for k, v in figures.items() if k not in ("timeline", "knobs")}
    with capsys.disabled():
        print(f"\n    {label if throttled else 'throttle-free'}: {json.dumps(shown)}")
    return figures


@pytest.mark.timeout(CONFIG.deadline_s * 2 + 600)
@pytest.mark.benchmark(group=group(VARIANTS[FIRST][0]))
def test_scale_baseline_unthrottled(benchmark, azurite: Azurite, capsys) -> None:
    figures = _run(benchmark, azurite, None, False, capsys)
    NEEDED["requests"] = figures["requests_served"]
    assert not figures["workers_crashed"], figures["workers_crashed"]


@pytest.mark.timeout(CONFIG.deadline_s * 2 + 600)
@pytest.mark.parametrize("variant", _params())
def test_scale_throttled(benchmark, azurite: Azurite, variant: str, capsys) -> None:
    figures = _run(benchmark, azurite, variant, True, capsys)
    if NEEDED.get("requests"):
        benchmark.extra_info["requests_needed"] = NEEDED["requests"]
        benchmark.extra_info["amplification_vs_needed"] = round(figures["requests"] / NEEDED["requests"], 3)
    benchmark.extra_info["targets"] = THROTTLED_TARGETS
    assert not figures["workers_crashed"], figures["workers_crashed"]
