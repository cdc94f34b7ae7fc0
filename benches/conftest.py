"""Benchmarks: each group pairs batchfiles with a named baseline measured in the same run.

Run with `make bench`; `benches/report.py` turns the JSON into a table of ratios.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # the pure-Python reference lives there
