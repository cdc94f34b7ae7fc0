"""Issue 19's promises through batchfiles' public API and command line, on the service: these must pass.

Each records its outcome (exit code, what storage holds) before checking it, so the answers file shows a
failure too.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient
from batchfiles import TaskOutputKind, TaskOutputStorage
from live_support import Recorder, Target

MiB = 1024 * 1024
OLD_LOG = b"the first attempt's log, uploaded as a block blob\n"


def _task_env(container_url: str, task_id: str) -> dict[str, str]:
    """The environment of a task on a node: its id and its container URL, no other storage setting."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AZ_BATCH_", "AZURE_STORAGE_", "BATCHFILES_"))
    }
    env.update(BATCHFILES_CONTAINER_URL=container_url, AZ_BATCH_TASK_ID=task_id)
    return env


def _run_over_block_blob_log(
    container_url: str, container: ContainerClient, task_id: str, workdir: Path
) -> dict[str, object]:
    """``batchfiles run`` where the task's ``stdout.txt`` is already a block blob (a retried task)."""
    log = container.get_blob_client(f"{task_id}/$TaskLog/stdout.txt")
    log.upload_blob(OLD_LOG, overwrite=True)
    workdir.mkdir()
    command = [sys.executable, "-m", "batchfiles", "run", "--", "sh", "-c", "echo hi; echo ran > ran.txt"]
    done = subprocess.run(
        command,
        cwd=workdir,
        env=_task_env(container_url, task_id),
        capture_output=True,
        text=True,
        timeout=600,
    )
    local = (workdir / "stdout.txt").read_bytes() if (workdir / "stdout.txt").exists() else None
    stored = log.download_blob().readall()
    return {
        "exit_code": done.returncode,
        "command_ran": (workdir / "ran.txt").exists(),
        "local_log": local.decode() if local is not None else None,
        "blob_equals_log": stored == local,
        "blob_is_old_log": stored == OLD_LOG,
        "stderr_names_log": "stdout.txt" in done.stderr,
        "stderr_tail": done.stderr[-600:],
    }


def test_run_over_block_blob_log(
    target: Target, container: ContainerClient, prefix: str, answers: Recorder, tmp_path: Path
) -> None:
    outcome = _run_over_block_blob_log(target.url, container, prefix.rstrip("/"), tmp_path / "task")
    answers.record("run_over_block_blob_log", "run_full_sas", outcome)
    assert outcome["exit_code"] == 0, outcome
    assert outcome["command_ran"], outcome
    assert outcome["local_log"] == "hi\n", outcome
    assert outcome["blob_equals_log"], outcome


def test_run_over_block_blob_log_without_delete_right(
    target: Target, container: ContainerClient, prefix: str, answers: Recorder, tmp_path: Path
) -> None:
    """With a SAS lacking the delete right (the task SAS of ``batchfiles url`` has it): the block blob
    cannot be replaced, so ``run`` says which log it could not save and exits 75; the command runs, its
    local log intact."""
    if target.no_delete_url is None:
        pytest.skip("BATCHFILES_LIVE_CONTAINER_URL_NO_DELETE is not set")
    outcome = _run_over_block_blob_log(target.no_delete_url, container, prefix.rstrip("/"), tmp_path / "task")
    answers.record("run_over_block_blob_log", "run_sas_without_d", outcome)
    assert outcome["command_ran"], outcome
    assert outcome["local_log"] == "hi\n", outcome
    assert outcome["exit_code"] == 75, outcome
    assert outcome["stderr_names_log"], outcome


def test_save_bytes_over_64_mib(
    target: Target, container: ContainerClient, prefix: str, answers: Recorder
) -> None:
    data = os.urandom(65 * MiB + 1)
    outcome: dict[str, object] = {"size": len(data)}
    with TaskOutputStorage(target.url, prefix.rstrip("/")) as storage:
        try:
            storage.save_bytes(TaskOutputKind.TASK_OUTPUT, data, "big.bin")
            ref = storage.get(TaskOutputKind.TASK_OUTPUT, "big.bin")
            props = container.get_blob_client(f"{prefix}$TaskOutput/big.bin").get_blob_properties()
            md5 = props.content_settings.content_md5
            outcome.update(
                saved=True,
                content_md5_is_whole_md5=bool(md5) and bytes(md5) == hashlib.md5(data).digest(),
                downloaded_equal=ref.download_bytes() == data,  # MD5-verified
            )
        except Exception as err:
            outcome.update(saved=False, error=type(err).__name__, message=str(err)[:300])
            answers.record("save_bytes_over_64_mib", "save_bytes", outcome)
            raise
    answers.record("save_bytes_over_64_mib", "save_bytes", outcome)
    assert outcome["content_md5_is_whole_md5"], outcome
    assert outcome["downloaded_equal"], outcome


def test_save_many_refuses_a_trailing_dot_collision(
    target: Target, container: ContainerClient, prefix: str, answers: Recorder, tmp_path: Path
) -> None:
    (tmp_path / "report").write_text("report\n")
    (tmp_path / "report.").write_text("report with a dot\n")
    outcome: dict[str, object] = {}
    with TaskOutputStorage(target.url, prefix.rstrip("/")) as storage:
        try:
            storage.save_many(TaskOutputKind.TASK_OUTPUT, ["report", "report."], base_dir=tmp_path)
        except ValueError as err:
            outcome.update(error="ValueError", names_report_dot="report." in str(err), message=str(err)[:300])
        else:
            outcome.update(error=None)
    outcome["uploaded"] = [blob.name[len(prefix) :] for blob in container.list_blobs(name_starts_with=prefix)]
    answers.record("save_many_trailing_dot_collision", "save_many", outcome)
    assert outcome["error"] == "ValueError", outcome
    assert outcome["names_report_dot"], outcome
    assert outcome["uploaded"] == [], outcome
