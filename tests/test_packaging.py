"""One version in one place (Cargo.toml), and the benchmarks' quick mode that CI runs."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import batchfiles
import batchfiles._native
import pytest

ROOT = Path(__file__).parents[1]


def _cargo_version() -> str:
    return re.search(r'(?m)^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text())[1]


def test_the_version_is_written_once_in_cargo_toml() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    project = pyproject[pyproject.index("[project]") : pyproject.index("\n[", pyproject.index("[project]"))]
    assert re.search(r'(?m)^dynamic = \[.*"version".*\]', project)
    assert not re.search(r"(?m)^version\s*=", project)
    assert not re.search(
        r"__version__\s*=\s*['\"]\d+\.", (ROOT / "python/batchfiles/__init__.py").read_text()
    )


def test_the_installed_version_is_cargo_toml_s() -> None:
    assert batchfiles.__version__ == importlib.metadata.version("batchfiles") == _cargo_version()


def test_version_from_the_sources_is_cargo_toml_s(tmp_path: Path) -> None:
    """Run from a checkout's sources, ``--version`` is Cargo.toml's, not that of another batchfiles
    installed in the environment (here a stale 9.9.9 on the path first)."""
    info = tmp_path / "site" / "batchfiles-9.9.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: batchfiles\nVersion: 9.9.9\n")
    # A checkout's sources with their compiled extension (a fresh clone's python/ has none: take the one
    # this test imports).
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "python", checkout / "python", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Cargo.toml", checkout / "Cargo.toml")
    native = Path(batchfiles._native.__file__)
    shutil.copy(native, checkout / "python" / "batchfiles" / native.name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(info.parent), str(checkout / "python")])}
    command = [sys.executable, "-m", "batchfiles", "--version"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == f"batchfiles {_cargo_version()}"


@pytest.fixture
def knobs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "benches"))
    for name in [n for n in list(os.environ) if n.startswith("BATCHFILES_BENCH_")]:
        monkeypatch.delenv(name)

    def load(**env: str):
        for name, value in env.items():
            monkeypatch.setenv(f"BATCHFILES_BENCH_{name}", value)
        sys.modules.pop("knobs", None)
        return importlib.import_module("knobs")

    yield load
    sys.modules.pop("knobs", None)


@pytest.mark.parametrize(("quick", "expected"), [("", 512.0), ("0", 512.0), ("1", 64.0), ("yes", 64.0)])
def test_bench_quick_mode_picks_the_quick_default(knobs, quick: str, expected: float) -> None:
    assert knobs(QUICK=quick).knob("TRACK_MIB", 512, 64) == expected


def test_bench_knob_set_wins_over_quick_mode(knobs) -> None:
    module = knobs(QUICK="1", TRACK_MIB="128")
    assert module.knob("TRACK_MIB", 512, 64) == 128.0
    assert module.knob("IDLE_S", 30) == 30.0  # no quick default: the full one
