"""Print each benchmark group as a ratio against its baseline (the test whose name has `baseline`).

Then, for groups whose benchmarks record more than wall time in ``extra_info``, a detailed table:

- ``wall_s``: wall seconds per round (else pytest-benchmark's ``data`` with ``--benchmark-save-data``);
- ``cpu_s``: client CPU seconds per round (``time.process_time``), ``server_cpu_s``: Azurite's;
- ``bytes``: bytes per round, for GiB/s; ``files``: files per round, for files/s and CPU per file;
- ``rss_delta_mib`` / ``peak_mib`` / ``rss_before_mib``: peak memory of an upload run in a subprocess;
- ``targets``: ``[{"what", "metric", "op", "value"}]`` checked here, with ``metric`` one of ``speedup``
  (baseline wall / wall), ``cpu_ratio`` (client CPU / baseline's), ``gib_s`` (bytes / wall) and
  ``rss_delta_mib``; ``against`` names another benchmark of the group to compare with instead of the
  baseline, and ``info`` marks a comparison that is shown but is not a target.

Spreads are [min-max] over the rounds; a ratio's spread pairs the extremes (best and worst case).
"""

from __future__ import annotations

import json
import operator
import statistics
import sys
from pathlib import Path

DEFAULT = Path(__file__).parents[1] / ".benchmarks" / "latest.json"
GIB = 1 << 30
OPS = {">=": operator.ge, "<=": operator.le}


def main(path: Path = DEFAULT) -> int:
    data = json.loads(path.read_text())
    groups: dict[str, list[dict]] = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench["group"] or "", []).append(bench)
    print(f"{'group':<40} {'benchmark':<44} {'mean':>12}  {'vs baseline':>11}")
    for group, benches in groups.items():
        baseline = _baseline(benches)
        for b in benches:
            mean = b["stats"]["mean"]
            if baseline is None or b is baseline:
                ratio = "baseline" if b is baseline else "-"
            else:
                speedup = baseline["stats"]["mean"] / mean
                ratio = f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"
            print(f"{group:<40} {b['name']:<44} {mean * 1e3:>9.2f} ms  {ratio:>11}")

    checks: list[str] = []
    for group, benches in groups.items():
        if any(_has_details(b) for b in benches):
            checks += _details(group, benches, _baseline(benches))
    if checks:
        print("\nTargets (issue 4)")
        for line in checks:
            print(line)
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    print(
        f"\n{data.get('datetime', '')[:19]}  {machine.get('node', '')}  {cpu.get('count', '?')} CPUs  "
        f"{cpu.get('brand_raw', '')}  Python {machine.get('python_version', '')}"
    )
    return 0


def _baseline(benches: list[dict]) -> dict | None:
    return next((b for b in benches if "baseline" in b["name"]), None)


def _has_details(b: dict) -> bool:
    return any(k in b.get("extra_info", {}) for k in ("cpu_s", "bytes", "files", "rss_delta_mib", "targets"))


def _t(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _spread(values: list[float], fmt=_t) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.fmean(values))} [{fmt(min(values))}-{fmt(max(values))}]"


def _walls(b: dict) -> list[float]:
    """Wall seconds per round: as the benchmark recorded them, or pytest-benchmark's data, or its mean."""
    return b.get("extra_info", {}).get("wall_s") or b["stats"].get("data") or [b["stats"]["mean"]]


def _ratio(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """mean(num) / mean(den), and its range pairing the extremes."""
    return (
        statistics.fmean(num) / statistics.fmean(den),
        min(num) / max(den),
        max(num) / min(den),
    )


def _fmt_ratio(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.2f}x [{r[1]:.2f}-{r[2]:.2f}]"


def _metric(metric: str, b: dict, base: dict | None) -> tuple[float, str] | None:
    """The value of a target's metric for ``b``, and how to print it (with its spread)."""
    info = b.get("extra_info", {})
    if metric == "speedup" and base is not None:
        r = _ratio(_walls(base), _walls(b))
        return r[0], _fmt_ratio(r)
    if metric == "cpu_ratio" and base is not None and info.get("cpu_s") and base["extra_info"].get("cpu_s"):
        r = _ratio(info["cpu_s"], base["extra_info"]["cpu_s"])
        return r[0], _fmt_ratio(r)
    if metric == "gib_s" and "bytes" in info:
        walls = _walls(b)
        value = info["bytes"] / GIB / statistics.fmean(walls)
        low, high = info["bytes"] / GIB / max(walls), info["bytes"] / GIB / min(walls)
        return value, f"{value:.2f} GiB/s [{low:.2f}-{high:.2f}]"
    if metric == "rss_delta_mib" and "rss_delta_mib" in info:
        return info["rss_delta_mib"], f"{info['rss_delta_mib']:.1f} MiB"
    return None


def _details(group: str, benches: list[dict], base: dict | None) -> list[str]:
    rounds = sorted({len(_walls(b)) for b in benches})
    print(f"\n{group}  (rounds: {'/'.join(map(str, rounds))}; mean [min-max])")
    cols = [("benchmark", 48)]
    rows = []
    for b in benches:
        info = b.get("extra_info", {})
        row = {"benchmark": b["name"], "wall": _spread(_walls(b))}
        if base is not None:
            row["wall vs baseline"] = "baseline" if b is base else _fmt_ratio(_ratio(_walls(base), _walls(b)))
        if info.get("cpu_s"):
            row["client CPU"] = _spread(info["cpu_s"])
            if base is not None and base["extra_info"].get("cpu_s"):
                row["CPU / baseline CPU"] = (
                    "baseline"
                    if b is base
                    else _fmt_ratio(_ratio(info["cpu_s"], base["extra_info"]["cpu_s"]))
                )
        if info.get("server_cpu_s"):
            row["Azurite CPU"] = _spread(info["server_cpu_s"])
        if info.get("bytes"):
            walls = _walls(b)
            row["GiB/s (wall)"] = f"{info['bytes'] / GIB / statistics.fmean(walls):.2f}"
            if info.get("cpu_s"):
                row["GiB/s (CPU)"] = f"{info['bytes'] / GIB / statistics.fmean(info['cpu_s']):.2f}"
        if info.get("files"):
            row["files/s"] = f"{info['files'] / statistics.fmean(_walls(b)):.0f}"
            if info.get("cpu_s"):
                row["client CPU/file"] = f"{statistics.fmean(info['cpu_s']) / info['files'] * 1e3:.2f} ms"
        if "rss_delta_mib" in info:
            row["peak RSS - before"] = f"{info['rss_delta_mib']:.1f} MiB"
            row["peak RSS"] = f"{info['peak_mib']:.0f} MiB"
        rows.append(row)
    for row in rows:
        for key in row:
            if key not in dict(cols):
                cols.append((key, 0))
    widths = {k: max([w, len(k), *(len(str(r.get(k, ""))) for r in rows)]) for k, w in cols}
    print("  ".join(f"{k:<{widths[k]}}" for k, _ in cols))
    for row in rows:
        print("  ".join(f"{row.get(k, '-')!s:<{widths[k]}}" for k, _ in cols))

    checks = []
    by_name = {b["name"]: b for b in benches}
    for b in benches:
        for target in b.get("extra_info", {}).get("targets") or []:
            got = _metric(target["metric"], b, by_name.get(target.get("against", ""), base))
            if got is None:
                checks.append(f"  [n/a   ] {group}: {b['name']}: {target['what']} (no data)")
                continue
            met = OPS[target["op"]](got[0], target["value"])
            status = "info  " if target.get("info") else "met   " if met else "MISSED"
            checks.append(f"  [{status}] {group}: {b['name']}: {target['what']}: {got[1]}")
    return checks


if __name__ == "__main__":
    sys.exit(main(*(Path(a) for a in sys.argv[1:])))
