"""CPU time of a process tree from /proc, for benchmarks that measure Azurite's and their workers' share."""

from __future__ import annotations

import os
from pathlib import Path


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants, from /proc (0 where unavailable)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except (OSError, IndexError, ValueError):
            pass
    return total
