"""The command line and the viewer use only batchfiles' public API, as a separate package would: no private
module of the library, no private method or attribute of a library object (issue 22)."""

from __future__ import annotations

import ast
from pathlib import Path

import batchfiles
import batchfiles.environment
import batchfiles.errors
import batchfiles.files
import pytest

PACKAGE = Path(batchfiles.__file__).parent
CLIENTS = sorted(
    [*PACKAGE.joinpath("_cli").glob("*.py"), *PACKAGE.joinpath("view").glob("*.py"), PACKAGE / "cli.py"]
)
#: Private names of other libraries that are theirs to document: ``os._exit`` is how a process ends now.
ALLOWED = {("os", "_exit")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def reaches(path: Path) -> list[str]:
    """Where ``path`` imports a private module of batchfiles (its own package aside) or reads a private
    attribute of anything but ``self``, ``cls``, ``super()`` or an allowed name."""
    tree = ast.parse(path.read_text(), str(path))
    own = path.parent.name  # "_cli", "view", or "batchfiles" for cli.py
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = (node.module or "").split(".")
            up = node.level - (0 if own == "batchfiles" else 1)  # levels above the package of the module
            if up > 0 and parts[0] and _private(parts[0]) and parts[0] != "_cli":
                found.append(f"{path.name}:{node.lineno} imports batchfiles.{node.module}")
            if up > 0 and not parts[0]:
                found += [
                    f"{path.name}:{node.lineno} imports batchfiles.{a.name}"
                    for a in node.names
                    if _private(a.name)
                ]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            value = node.value
            if isinstance(value, ast.Name) and (
                value.id in ("self", "cls") or (value.id, node.attr) in ALLOWED
            ):
                continue
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
                continue
            found.append(f"{path.name}:{node.lineno} reads .{node.attr}")
    return found


@pytest.mark.parametrize("path", CLIENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_command_line_and_the_viewer_use_the_public_api_only(path: Path) -> None:
    assert reaches(path) == []


def test_the_check_sees_a_reach(tmp_path: Path) -> None:
    module = tmp_path / "_cli" / "bad.py"
    module.parent.mkdir()
    module.write_text(
        "from .. import _saving\nfrom .._errors import redact\nx = storage._container\nself._ok = 1\n"
    )
    assert reaches(module) == [
        "bad.py:1 imports batchfiles._saving",
        "bad.py:2 imports batchfiles._errors",
        "bad.py:3 reads ._container",
    ]


def test_what_they_use_is_public_and_documented() -> None:
    for module in (batchfiles.files, batchfiles.environment, batchfiles.errors):
        assert module.__doc__
        for name in module.__all__:
            assert not _private(name)
            value = getattr(module, name)
            assert isinstance(value, str) or value.__doc__, f"{module.__name__}.{name}"
    assert {"OnInvalid", "Progress"} <= set(batchfiles.__all__)
