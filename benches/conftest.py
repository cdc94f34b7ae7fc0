"""Benchmarks: each group pairs batchfiles with a named baseline measured in the same run.

Run with `make bench`; `benches/report.py` turns the JSON into tables of ratios and targets, printed and
written into benches/README.md.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # the pure-Python reference lives there


def pytest_benchmark_update_machine_info(config, machine_info: dict) -> None:
    """Records the versions the figures depend on, and the size knobs of the run, beside pytest-benchmark's
    machine info (benches/report.py shows them with the figures)."""
    from batchfiles.testing import AzuriteError, find_azurite

    versions = {}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        versions["azure-storage-blob"] = importlib.metadata.version("azure-storage-blob")
    with contextlib.suppress(AzuriteError, OSError, ValueError):
        for folder in Path(find_azurite()).resolve().parents:
            package = folder / "package.json"
            if package.is_file() and json.loads(package.read_text()).get("name") == "azurite":
                versions["Azurite"] = json.loads(package.read_text())["version"]
                break
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10, check=True)
        versions["Node"] = node.stdout.strip().lstrip("v")
    machine_info["versions"] = versions
    machine_info["bench_env"] = {
        k: v for k, v in sorted(os.environ.items()) if k.startswith("BATCHFILES_BENCH_")
    }
