"""CPU time and CPU placement of a process tree from /proc, for benchmarks that measure Azurite's and their
workers' share, or keep them off the client's cores."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants, from /proc (0 where unavailable)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Run every thread of ``pid`` and its live descendants on ``cpus`` only (their new threads follow)."""
    for p in _tree(pid):
        for task in _listdir(f"/proc/{p}/task"):
            with contextlib.suppress(OSError):  # a thread that just ended
                os.sched_setaffinity(int(task), cpus)


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        for task in _listdir(f"/proc/{p}/task"):
            with contextlib.suppress(OSError, ValueError):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
    return seen


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
