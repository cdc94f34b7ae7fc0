"""benches/report.py: its tables go into the README's generated blocks; the prose around them is kept."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
REPORT = REPO / "benches" / "report.py"
README = REPO / "benches" / "README.md"
BLOCK = re.compile(r"(<!-- bench:begin (\w+) -->\n)(.*?)(<!-- bench:end \2 -->)", re.DOTALL)


def bench(name: str, group: str, mean: float, **extra_info: object) -> dict:
    return {"name": name, "group": group, "stats": {"mean": mean}, "extra_info": extra_info}


RUN = {
    "datetime": "2030-01-02T03:04:05.123456",
    "machine_info": {
        "node": "box",
        "cpu": {"count": 2, "brand_raw": "Test CPU"},
        "python_version": "3.11.7",
        "versions": {"Azurite": "9.9.9"},
        "bench_env": {"BATCHFILES_BENCH_GIB": "0.03"},
    },
    "benchmarks": [
        bench(
            "test_names_rust",
            "names x10",
            0.01,
            targets=[{"what": "vs reference >= 5x", "metric": "speedup", "op": ">=", "value": 5}],
        ),
        bench("test_names_baseline_python", "names x10", 0.1),
        bench(
            "test_save|pipe",
            "save 1 GiB",
            2.0,
            wall_s=[1.9, 2.1],
            cpu_s=[1.0, 1.2],
            bytes=1 << 30,
            targets=[{"what": "client CPU <= 0.5x", "metric": "cpu_ratio", "op": "<=", "value": 0.5}],
        ),
        bench("test_save_baseline", "save 1 GiB", 1.0, wall_s=[1.0, 1.0], cpu_s=[1.0, 1.0], bytes=1 << 30),
    ],
}


def report(tmp_path: Path, readme: Path) -> subprocess.CompletedProcess[str]:
    data = tmp_path / "latest.json"
    data.write_text(json.dumps(RUN))
    command = [sys.executable, str(REPORT), str(data), "--readme", str(readme)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def blocks(text: str) -> dict[str, str]:
    return {m[2]: m[3] for m in BLOCK.finditer(text)}


def prose(text: str) -> str:
    """The text with every generated block emptied."""
    return BLOCK.sub(r"\1\4", text)


def test_the_readme_has_one_summary_and_one_details_block():
    text = README.read_text()
    assert [m[2] for m in BLOCK.finditer(text)] == ["summary", "details"]


def test_report_replaces_the_blocks_and_keeps_the_prose(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text())
    before = readme.read_text()

    done = report(tmp_path, readme)
    assert done.returncode == 0, done.stderr
    after = readme.read_text()
    assert prose(after) == prose(before)
    summary, details = blocks(after)["summary"], blocks(after)["details"]
    assert "Pasted by hand" not in summary and "2026-11-25" not in summary
    assert "2030-01-02 03:04:05, box, 2 CPUs, Test CPU, Python 3.11.7, Azurite 9.9.9" in summary
    assert "knobs: BATCHFILES_BENCH_GIB=0.03" in summary
    assert "| names x10 | `test_names_rust` | vs reference >= 5x | 10.00x [10.00-10.00] | met |" in summary
    missed = "| save 1 GiB | `test_save\\|pipe` | client CPU <= 0.5x | 1.10x [1.00-1.20] | **missed** |"
    assert missed in summary  # a | in a cell is escaped
    assert "| names x10 | `test_names_baseline_python` | 100.00 ms | baseline |" in summary
    assert "**save 1 GiB  (rounds: 2; mean [min-max])**" in details
    assert "| `test_save_baseline` | 1.00 s [1.00 s-1.00 s] | baseline |" in details
    assert "[MISSED] save 1 GiB: test_save|pipe: client CPU <= 0.5x: 1.10x [1.00-1.20]" in done.stdout

    assert report(tmp_path, readme).returncode == 0
    assert readme.read_text() == after  # a second run of the same JSON changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "# Benchmarks\n\nProse only.\n",
        "<!-- bench:begin summary -->\nold\n<!-- bench:end summary -->\n",  # no details block
        "<!-- bench:begin summary -->\n<!-- bench:end summary -->\n" * 2
        + "<!-- bench:begin details -->\n<!-- bench:end details -->\n",
    ],
)
def test_a_readme_without_exactly_one_of_each_block_is_left_alone(tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    done = report(tmp_path, readme)
    assert done.returncode == 1
    assert "bench:begin" in done.stderr and "nothing written" in done.stderr
    assert readme.read_text() == text
