"""The README's Python examples run, in order, against Azurite: what a newcomer copies must work."""

from __future__ import annotations

import re
from pathlib import Path

from batchfiles import TaskOutputKind, TaskOutputStorage

README = Path(__file__).parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_examples_run(azurite, tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    for name in ["frames/frame_0001.png", "thumbs/a.png", "thumbs/b.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"\x89PNG " + name.encode())
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    namespace: dict = {}
    for block in blocks:
        if "from_environment()" in block and "url" in namespace:  # the task side, as Batch would run it
            monkeypatch.setenv("AZ_BATCH_JOB_ID", "render-42")
            monkeypatch.setenv("AZ_BATCH_TASK_ID", "frame-1")
            monkeypatch.setenv("BATCHFILES_CONTAINER_URL", namespace["url"])
            monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
        exec(compile(block, str(README), "exec"), namespace)
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    assert (tmp_path / "out/frame-1/TaskOutput/frames/frame_0001.png").read_bytes().startswith(b"\x89PNG")
    thumbs = tmp_path / "out/frame-1/TaskPreview/thumbs"
    assert sorted(p.name for p in thumbs.iterdir()) == ["a.png", "b.png"]
    task = TaskOutputStorage.from_connection_string(azurite.connection_string, "render-42", "frame-1")
    assert task.get(TaskOutputKind.TASK_LOG, "summary.txt").download_text() == "done\n"
    assert task.get(TaskOutputKind.TASK_LOG, "render.log").download_text() == "frame 1 done\n"
