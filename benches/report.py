"""Print each benchmark group as a ratio against its baseline (the test whose name has `baseline`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT = Path(__file__).parents[1] / ".benchmarks" / "latest.json"


def main(path: Path = DEFAULT) -> int:
    data = json.loads(path.read_text())
    groups: dict[str, list[dict]] = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench["group"] or "", []).append(bench)
    print(f"{'group':<40} {'benchmark':<44} {'mean':>12}  {'vs baseline':>11}")
    for group, benches in groups.items():
        baseline = next((b for b in benches if "baseline" in b["name"]), None)
        for b in benches:
            mean = b["stats"]["mean"]
            if baseline is None or b is baseline:
                ratio = "baseline" if b is baseline else "-"
            else:
                ratio = f"{baseline['stats']['mean'] / mean:.1f}x faster"
            print(f"{group:<40} {b['name']:<44} {mean * 1e3:>9.2f} ms  {ratio:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*(Path(a) for a in sys.argv[1:])))
