"""The benchmarks' size knobs: ``BATCHFILES_BENCH_<NAME>`` from the environment, else a default, and the
quick mode (``BATCHFILES_BENCH_QUICK=1``, ``make bench-quick``) that picks smaller defaults for CI."""

from __future__ import annotations

import os

#: ``BATCHFILES_BENCH_QUICK`` set to anything but empty or ``0``: small sizes and few rounds.
QUICK = os.environ.get("BATCHFILES_BENCH_QUICK", "") not in ("", "0")


def knob(name: str, full: float, quick: float | None = None) -> float:
    """``BATCHFILES_BENCH_<name>`` if set, else ``quick`` in quick mode (when given), else ``full``."""
    value = os.environ.get(f"BATCHFILES_BENCH_{name}")
    if value is not None:
        return float(value)
    return quick if QUICK and quick is not None else full
