"""What users install, each in a clean virtualenv (no system site-packages, nothing from python/):

- the wheel in dist/ (``make dist``) with only its runtime dependencies from the registry: it is what gets
  imported, its version is Cargo.toml's, the command line works against Azurite (``--version``, ``prepare``,
  ``save``, ``list``, ``get``, a one-line usage error), and the README's examples run
  (tests/readme_examples.py, with azure-batch installed beside the wheel for its OutputFiles example; the
  one that starts an Azurite finds the project's through ``$BATCHFILES_AZURITE``);
- the sdist in dist/ builds into a wheel with pip (maturin from the registry, as on a node with Rust), which
  imports and derives a container name.

Run by ``make test-installed`` (not part of ``make test``'s collection: see ``norecursedirs``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from batchfiles import naming
from batchfiles.testing import Azurite, find_azurite

ROOT = Path(__file__).parents[2]
DIST = ROOT / "dist"
#: The one place the version is written.
VERSION = re.search(r'(?m)^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text())[1]
#: Variables that would let the clean virtualenv see anything but itself.
LEAKS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "BATCHFILES_AZURITE")

pytestmark = pytest.mark.timeout(900)


def _built(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {DIST}, found {found}: run `make dist`"
    return found[0]


class Venv:
    """A virtualenv of its own in ``folder``, whose commands run with a clean environment in a folder
    outside the project."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bin = folder / "bin"
        self.cwd = folder.parent / "work"
        self.cwd.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in LEAKS and not k.startswith("AZURE_STORAGE_")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return {**env, **extra}

    def run(self, *args: str | Path, check: bool = True, timeout: float = 300, **extra: str):
        cmd = [str(a) for a in args]
        if not Path(cmd[0]).is_absolute():
            cmd[0] = str(self.bin / cmd[0])
        done = subprocess.run(
            cmd, cwd=self.cwd, env=self.env(**extra), capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    def pip(self, *args: str | Path) -> None:
        self.run("python", "-m", "pip", "--disable-pip-version-check", "-q", *args, timeout=600)

    def python(self, code: str, **extra: str) -> str:
        return self.run("python", "-c", code, **extra).stdout


@pytest.fixture(scope="module")
def wheel() -> Path:
    found = _built("batchfiles-*.whl")
    assert found.name.startswith(f"batchfiles-{VERSION}-cp310-abi3-"), found.name
    assert "manylinux_2_17_x86_64" in found.name, found.name
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    venv = Venv(tmp_path_factory.mktemp("wheel") / "venv")
    venv.pip("install", wheel)
    yield venv


IMPORTED = """
import importlib.metadata, json, sys
import batchfiles, batchfiles._native
from batchfiles import naming
print(json.dumps({
    "file": batchfiles.__file__, "native": batchfiles._native.__file__, "prefix": sys.prefix,
    "version": batchfiles.__version__, "metadata": importlib.metadata.version("batchfiles"),
    "container": naming.container_name("Render_42"),
    "installed": sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions()),
}))
"""


def test_the_wheel_is_what_gets_imported_with_one_version(installed: Venv) -> None:
    got = json.loads(installed.python(IMPORTED))
    assert Path(got["file"]).is_relative_to(installed.folder), got["file"]
    assert Path(got["native"]).is_relative_to(installed.folder), got["native"]
    assert Path(got["prefix"]).resolve() == installed.folder.resolve()
    assert got["version"] == got["metadata"] == VERSION
    assert got["container"] == naming.container_name("Render_42")
    # Only the runtime dependencies: no test tools, no extras (the command line works without tqdm).
    assert "batchfiles" in got["installed"] and "azure-storage-blob" in got["installed"]
    assert not {"pytest", "hypothesis", "tqdm", "aiohttp", "maturin"} & set(got["installed"])


def test_version_on_the_command_line(installed: Venv) -> None:
    assert installed.run("batchfiles", "--version").stdout.strip() == f"batchfiles {VERSION}"
    assert installed.run("python", "-m", "batchfiles", "--version").stdout.strip() == f"batchfiles {VERSION}"


def test_command_line_against_azurite(installed: Venv, azurite: Azurite) -> None:
    storage = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    node = {**storage, "AZ_BATCH_JOB_ID": "smoke-1", "AZ_BATCH_TASK_ID": "task-1"}
    installed.run("batchfiles", "prepare", "smoke-1", **storage)
    (installed.cwd / "frames").mkdir(exist_ok=True)
    (installed.cwd / "frames" / "f1.png").write_bytes(b"\x89PNG frame 1")
    installed.run("batchfiles", "save", "TaskOutput", "frames/*.png", **node)
    lines = installed.run("batchfiles", "list", "smoke-1", "--json", **storage).stdout.splitlines()
    listed = [json.loads(line) for line in lines]
    assert [(o["task"], o["kind"], o["path"]) for o in listed] == [("task-1", "TaskOutput", "frames/f1.png")]
    installed.run("batchfiles", "get", "smoke-1", "-o", "fetched", **storage)
    assert (installed.cwd / "fetched/task-1/TaskOutput/frames/f1.png").read_bytes() == b"\x89PNG frame 1"
    bad = installed.run("batchfiles", "list", "no spaces allowed", check=False, **storage)
    assert bad.returncode == 2, bad
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr, bad.stderr


#: What the README's examples import besides the wheel (its OutputFiles example builds azure-batch's models),
#: at the version of the test extra.
README_NEEDS = re.findall(r'"(azure-batch==[^"]+)"', (ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def readme_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel with what the README's examples say to install beside it, in a virtualenv of its own."""
    assert README_NEEDS, "pyproject.toml's test extra pins azure-batch"
    venv = Venv(tmp_path_factory.mktemp("readme") / "venv")
    venv.pip("install", wheel, *README_NEEDS)
    return venv


def test_readme_examples(readme_venv: Venv, azurite: Azurite) -> None:
    installed = readme_venv
    script = ROOT / "tests" / "readme_examples.py"
    workdir = installed.cwd / "readme"
    workdir.mkdir()
    done = installed.run(
        "python", script, azurite.connection_string, workdir, BATCHFILES_AZURITE=find_azurite()
    )
    ran = re.search(r"(?m)^\d+ README examples ran with (.+)$", done.stdout)  # after what they print
    assert ran and Path(ran[1]).is_relative_to(installed.folder), done.stdout


def test_testing_says_where_it_looked_for_azurite(installed: Venv) -> None:
    """From a folder without node_modules and no $BATCHFILES_AZURITE: a clear error, not a hang."""
    code = (
        "from batchfiles import testing\n"
        "try: testing.Azurite().start()\nexcept Exception as e: print(repr(e))"
    )
    out = installed.python(code, PATH=f"{installed.bin}{os.pathsep}/usr/bin:/bin")
    assert "AzuriteError" in out and "BATCHFILES_AZURITE" in out, out


def test_the_sdist_builds_a_working_wheel(tmp_path: Path) -> None:
    sdist = _built("batchfiles-*.tar.gz")
    assert sdist.name == f"batchfiles-{VERSION}.tar.gz"
    venv = Venv(tmp_path / "venv")
    # As a node with Rust would: pip builds it in isolation with maturin from the registry. The cargo target
    # folder is kept under target/ so a second run reuses the compiled dependencies.
    target = {"CARGO_TARGET_DIR": str(ROOT / "target" / "sdist-check")}
    venv.run(
        "python",
        "-m",
        "pip",
        "--disable-pip-version-check",
        "-q",
        "wheel",
        "--no-deps",
        "-w",
        tmp_path / "built",
        sdist,
        timeout=900,
        **target,
    )
    built = _built_in(tmp_path / "built")
    assert built.name.startswith(f"batchfiles-{VERSION}-cp310-abi3-linux_x86_64"), built.name
    venv.pip("install", built)
    got = json.loads(venv.python(IMPORTED))
    assert Path(got["file"]).is_relative_to(venv.folder)
    assert got["version"] == VERSION
    assert got["container"] == naming.container_name("Render_42")


def _built_in(folder: Path) -> Path:
    found = sorted(folder.glob("batchfiles-*.whl"))
    assert len(found) == 1, found
    return found[0]
