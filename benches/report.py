"""Report a pytest-benchmark JSON: each group as a ratio against its baseline (the test whose name has
`baseline`), detailed tables, and the targets. Printed, and with ``--readme PATH`` also written as Markdown
into that file between marker comments (``make bench`` does so for ``benches/README.md``)::

    python benches/report.py [.benchmarks/latest.json] [--readme benches/README.md]

For groups whose benchmarks record more than wall time in ``extra_info``, a detailed table:

- ``wall_s``: wall seconds per round (else pytest-benchmark's ``data`` with ``--benchmark-save-data``);
- ``cpu_s``: client CPU seconds per round (``time.process_time``), ``server_cpu_s``: Azurite's;
- ``bytes``: bytes per round, for GiB/s; ``files``: files per round, for files/s and CPU per file;
- ``rss_delta_mib`` / ``peak_mib`` / ``rss_before_mib``: peak memory of an upload run in a subprocess;
- ``targets``: ``[{"what", "metric", "op", "value"}]`` checked here, with ``metric`` one of ``speedup``
  (baseline wall / wall), ``wall_ratio`` (wall / baseline wall), ``cpu_ratio`` (client CPU / baseline's),
  ``gib_s`` (bytes / wall), or any number the benchmark put in ``extra_info`` (shown times the target's
  ``scale``, followed by its ``unit``); ``against`` names another benchmark of the group to compare with
  instead of the baseline, and ``info`` marks a comparison that is shown but is not a target.

Spreads are [min-max] over the rounds; a ratio's spread pairs the extremes (best and worst case).

In the README, each block ``<!-- bench:begin NAME -->`` ... ``<!-- bench:end NAME -->`` is replaced: NAME
``summary`` gets the run, the targets and the ratios, ``details`` the detailed tables. Everything outside the
markers is kept as it is. A README without both blocks is left unchanged and the report fails.
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT = Path(__file__).parents[1] / ".benchmarks" / "latest.json"
GIB = 1 << 30
OPS = {">=": operator.ge, "<=": operator.le}
BLOCKS = ("summary", "details")


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    title: str = ""


@dataclass
class Check:
    group: str
    benchmark: str
    what: str
    figure: str  # "" when there is no data
    status: str  # "met", "MISSED", "info" or "n/a"


@dataclass
class Report:
    run: str
    ratios: Table
    details: list[Table]
    checks: list[Check]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", type=Path, default=DEFAULT, help="pytest-benchmark JSON")
    parser.add_argument("--readme", type=Path, help="Markdown file whose bench blocks are replaced")
    args = parser.parse_args(argv)
    report = analyse(json.loads(args.json.read_text()))
    print(text(report))
    if args.readme is not None:
        try:
            write_blocks(args.readme, markdown(report))
        except ValueError as err:
            print(f"report.py: {err}", file=sys.stderr)
            return 1
        print(f"\nwrote {', '.join(BLOCKS)} into {args.readme}")
    return 0


# --- analysis ----------------------------------------------------------------------------------------------


def analyse(data: dict) -> Report:
    groups: dict[str, list[dict]] = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench["group"] or "", []).append(bench)
    ratios = Table(["group", "benchmark", "mean", "vs baseline"])
    details: list[Table] = []
    checks: list[Check] = []
    for group, benches in groups.items():
        baseline = _baseline(benches)
        for b in benches:
            mean = b["stats"]["mean"]
            if baseline is None or b is baseline:
                ratio = "baseline" if b is baseline else "-"
            else:
                speedup = baseline["stats"]["mean"] / mean
                ratio = f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"
            ratios.rows.append([group, b["name"], f"{mean * 1e3:.2f} ms", ratio])
        if any(_has_details(b) for b in benches):
            details.append(_details(group, benches, baseline))
            checks += _checks(group, benches, baseline)
    return Report(_run(data), ratios, details, checks)


def _run(data: dict) -> str:
    """When and where: date, machine, Python, and the versions conftest.py records."""
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    parts = [
        data.get("datetime", "")[:19].replace("T", " "),
        machine.get("node", ""),
        f"{cpu.get('count', '?')} CPUs",
        cpu.get("brand_raw", ""),
        f"Python {machine.get('python_version', '')}",
    ]
    parts += [f"{name} {version}" for name, version in machine.get("versions", {}).items()]
    knobs = " ".join(f"{k}={v}" for k, v in machine.get("bench_env", {}).items())
    return ", ".join(p for p in parts if p) + (f"; knobs: {knobs}" if knobs else "")


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


def _metric(target: dict, b: dict, base: dict | None) -> tuple[float, str] | None:
    """The value of a target's metric for ``b``, and how to print it (with its spread)."""
    metric = target["metric"]
    info = b.get("extra_info", {})
    if metric == "speedup" and base is not None:
        r = _ratio(_walls(base), _walls(b))
        return r[0], _fmt_ratio(r)
    if metric == "wall_ratio" and base is not None:
        r = _ratio(_walls(b), _walls(base))
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
    value = info.get(metric)
    if isinstance(value, (int, float)):
        return value, f"{_number(value * target.get('scale', 1))}{target.get('unit', '')}"
    return None


def _number(value: float) -> str:
    """Three significant digits, without an exponent: 0.00412, 0.41, 487, 1001."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _details(group: str, benches: list[dict], base: dict | None) -> Table:
    rounds = sorted({len(_walls(b)) for b in benches})
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
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    title = f"{group}  (rounds: {'/'.join(map(str, rounds))}; mean [min-max])"
    return Table(columns, [[row.get(k, "-") for k in columns] for row in rows], title)


def _checks(group: str, benches: list[dict], base: dict | None) -> list[Check]:
    checks = []
    by_name = {b["name"]: b for b in benches}
    for b in benches:
        for target in b.get("extra_info", {}).get("targets") or []:
            got = _metric(target, b, by_name.get(target.get("against", ""), base))
            if got is None:
                checks.append(Check(group, b["name"], target["what"], "", "n/a"))
                continue
            met = OPS[target["op"]](got[0], target["value"])
            status = "info" if target.get("info") else "met" if met else "MISSED"
            checks.append(Check(group, b["name"], target["what"], got[1], status))
    return checks


# --- output ------------------------------------------------------------------------------------------------


def text(report: Report) -> str:
    """The report as printed: aligned columns."""
    out = [_aligned(report.ratios)]
    for table in report.details:
        out += ["", table.title, _aligned(table)]
    if report.checks:
        out += ["", "Targets"]
        for c in report.checks:
            figure = f": {c.figure}" if c.figure else " (no data)"
            out.append(f"  [{c.status:<6}] {c.group}: {c.benchmark}: {c.what}{figure}")
    out += ["", report.run]
    return "\n".join(out)


def _aligned(table: Table) -> str:
    widths = [max(len(c), *(len(r[i]) for r in table.rows)) for i, c in enumerate(table.columns)]
    lines = [table.columns, *table.rows]
    return "\n".join(
        "  ".join(f"{v:<{w}}" for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


STATUS_MD = {"met": "met", "MISSED": "**missed**", "info": "info", "n/a": "no data"}


def markdown(report: Report) -> dict[str, str]:
    """The README blocks, by name."""
    summary = [f"Run of {report.run}.", ""]
    if report.checks:
        targets = Table(["Group", "Benchmark", "Target", "Figure", ""])
        for c in report.checks:
            targets.rows.append([c.group, f"`{c.benchmark}`", c.what, c.figure or "-", STATUS_MD[c.status]])
        summary += [_md_table(targets), ""]
    ratios = Table(["Group", "Benchmark", "Mean", "vs baseline"])
    ratios.rows = [[g, f"`{name}`", mean, ratio] for g, name, mean, ratio in report.ratios.rows]
    summary.append(_md_table(ratios))
    details: list[str] = []
    for table in report.details:
        rows = [[f"`{row[0]}`", *row[1:]] for row in table.rows]
        details += [f"**{_md_cell(table.title)}**", "", _md_table(Table(table.columns, rows)), ""]
    return {"summary": "\n".join(summary), "details": "\n".join(details).rstrip() or "(no detailed tables)"}


def _md_cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    lines = [table.columns, ["---"] * len(table.columns), *table.rows]
    return "\n".join("| " + " | ".join(_md_cell(v) for v in line) + " |" for line in lines)


def _markers(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- bench:begin {name} -->\n)(.*?)(<!-- bench:end {name} -->)", re.DOTALL)


def write_blocks(path: Path, blocks: dict[str, str]) -> None:
    """Replaces each block's text between its markers in ``path``; all blocks or none (ValueError)."""
    content = path.read_text()
    for name, body in blocks.items():
        found = _markers(name).findall(content)
        if len(found) != 1:
            raise ValueError(
                f"{path} must hold one '<!-- bench:begin {name} -->' ... '<!-- bench:end {name} -->' block, "
                f"found {len(found)}; nothing written"
            )
        content = _markers(name).sub(lambda m, body=body: f"{m[1]}\n{body}\n\n{m[3]}", content)
    path.write_text(content)


if __name__ == "__main__":
    sys.exit(main())
