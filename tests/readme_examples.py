"""The README's Python examples, run in order against a given Azurite, with the checks of what they made.

Used by tests/test_readme.py (the package under test) and, as a script, by tests/installed/ in a clean
virtualenv that has only the built wheel and its runtime dependencies (no pytest there)::

    python tests/readme_examples.py CONNECTION_STRING WORKDIR
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from batchfiles import TaskOutputKind, TaskOutputStorage

README = Path(__file__).parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


@contextlib.contextmanager
def _kept_environment(workdir: Path) -> Iterator[None]:
    """The working directory and the environment as they were, afterwards."""
    saved, cwd = dict(os.environ), Path.cwd()
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)


def run_examples(connection_string: str, workdir: Path) -> None:
    """Runs every ``python`` block of the README in ``workdir``, the task's blocks (``from_environment()``)
    with the variables Batch would set, then checks what they saved and fetched; AssertionError if not."""
    blocks = python_blocks()
    assert len(blocks) >= 4
    with _kept_environment(workdir):
        for name in ["frames/frame_0001.png", "thumbs/a.png", "thumbs/b.png"]:
            (workdir / name).parent.mkdir(exist_ok=True)
            (workdir / name).write_bytes(b"\x89PNG " + name.encode())
        namespace: dict = {}
        for block in blocks:
            os.environ["AZURE_STORAGE_CONNECTION_STRING"] = connection_string
            if "from_environment()" in block and "url" in namespace:  # the task side, as Batch would run it
                os.environ.update(
                    AZ_BATCH_JOB_ID="render-42",
                    AZ_BATCH_TASK_ID="frame-1",
                    BATCHFILES_CONTAINER_URL=namespace["url"],
                )
                del os.environ["AZURE_STORAGE_CONNECTION_STRING"]
            exec(compile(block, str(README), "exec"), namespace)
    assert (workdir / "out/frame-1/TaskOutput/frames/frame_0001.png").read_bytes().startswith(b"\x89PNG")
    thumbs = workdir / "out/frame-1/TaskPreview/thumbs"
    assert sorted(p.name for p in thumbs.iterdir()) == ["a.png", "b.png"]
    task = TaskOutputStorage.from_connection_string(connection_string, "render-42", "frame-1")
    assert task.get(TaskOutputKind.TASK_LOG, "summary.txt").download_text() == "done\n"
    assert task.get(TaskOutputKind.TASK_LOG, "render.log").download_text() == "frame 1 done\n"


if __name__ == "__main__":
    run_examples(sys.argv[1], Path(sys.argv[2]).resolve())
    import batchfiles

    print(f"{len(python_blocks())} README examples ran with {batchfiles.__file__}")
