"""Which answers of two runs of the live suite differ (the service's against the strict proxy's, say).

    python tests/live/compare.py live-answers.json strict-answers.json

Prints one line per scenario step whose answers differ (status, error code, headers, what the step noted),
or that only one file holds; exits 1 if there is any, else 0. Free texts (messages, stderr) are not compared.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: Free texts, which differ in wording or paths from run to run.
IGNORED = frozenset({"message", "stderr_tail"})


def steps(path: str | Path) -> dict[str, dict[str, Any]]:
    """``scenario/step`` -> answer, of an answers file."""
    scenarios = json.loads(Path(path).read_text(encoding="utf-8"))["scenarios"]
    return {
        f"{name}/{step}": answer for name, answers in scenarios.items() for step, answer in answers.items()
    }


def _diff(first: dict[str, Any], second: dict[str, Any], where: str = "") -> list[str]:
    found = []
    for key in sorted((set(first) | set(second)) - IGNORED):
        a, b = first.get(key), second.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _diff(a, b, f"{where}{key}.")
        elif a != b:
            found.append(f"{where}{key} {a!r} != {b!r}")
    return found


def differences(first: str | Path, second: str | Path) -> list[str]:
    """One line per step that differs between the answers files ``first`` and ``second``."""
    a, b = steps(first), steps(second)
    lines = []
    for key in sorted(set(a) | set(b)):
        if key not in b or key not in a:
            lines.append(f"{key}: only in {first if key in a else second}")
        elif found := _diff(a[key], b[key]):
            lines.append(f"{key}: " + "; ".join(found))
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    lines = differences(*argv)
    print("\n".join(lines) if lines else "no differences")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
