"""The real service's rules where Azurite is lenient (issue 19), held by the library and the command line:
each scenario runs against Azurite itself and through a strict proxy that answers as Azure does.

- A blob's type cannot change in place: a save over a live log (append blob) and a live log over a saved
  file (block blob: a retried task's first attempt) replace the blob, with the task SAS's delete right.
- A name segment ending in '.' is refused before anything is sent (Azure would store it without the dot).
- ``save_bytes`` of any size goes up in blocks with the whole data's Content-MD5.
- Close metadata over 8 KiB is refused before anything is sent; the save goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
from batchfiles import (
    AuthenticationError,
    BatchFilesError,
    OutputExistsError,
    TaskOutputStorage,
    aio,
    naming,
    output_storage_container_url,
    prepare_output_storage,
)
from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from faultproxy import FaultProxy
from helpers import TASK, assert_one_line_error, cli
from strict_azurite import StrictAzurite

MIB = 1 << 20


@pytest.fixture(scope="module", params=["azurite", "strict"])
def target(request: pytest.FixtureRequest, azurite: Azurite) -> Iterator[Azurite]:
    """Azurite itself, or Azurite behind a strict proxy (the real service's answers)."""
    upstream = getattr(azurite, "upstream", azurite)
    if request.param == "azurite":
        yield upstream
        return
    with FaultProxy(upstream.port, strict=upstream.connection_string, deadline_s=3600) as proxy:
        yield StrictAzurite(upstream, proxy)


@pytest.fixture
def service(target: Azurite) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(target.connection_string) as client:
        yield client


@pytest.fixture
def task(target: Azurite, service: BlobServiceClient, job_id: str) -> Iterator[TaskOutputStorage]:
    prepare_output_storage(service, job_id)
    with TaskOutputStorage.from_connection_string(target.connection_string, job_id, TASK) as storage:
        yield storage


def sas_url(target: Azurite, job_id: str, *, delete: bool, write: bool = True) -> str:
    """A container SAS URL like the task SAS of ``batchfiles url``, with or without delete (or write)."""
    container = naming.container_name(job_id)
    permission = ContainerSasPermissions(
        read=True, add=write, create=write, write=write, delete=delete, list=True
    )
    expiry = datetime.now(timezone.utc) + timedelta(days=2)  # no warning that it ends soon
    sas = generate_container_sas(
        ACCOUNT_NAME, container, account_key=ACCOUNT_KEY, permission=permission, expiry=expiry
    )
    return f"{target.account_url}/{container}?{sas}"


def blob_type(storage: TaskOutputStorage, kind: str, path: str) -> str:
    props = storage._container.get_blob_client(naming.blob_name(kind, path, TASK)).get_blob_properties()
    return str(getattr(props.blob_type, "value", props.blob_type))


# --- a blob's type ------------------------------------------------------------------------------------------


def test_save_replaces_a_live_log(task: TaskOutputStorage, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("live\n")
    with task.save_tracked(log, "app.log", flush_interval=0.2):
        pass
    assert blob_type(task, "TaskLog", "app.log") == "AppendBlob"
    log.write_text("saved whole\n")
    ref = task.save("TaskLog", log, "app.log")
    assert ref.download_text() == "saved whole\n"
    assert blob_type(task, "TaskLog", "app.log") == "BlockBlob"


def test_save_bytes_replaces_a_live_log_async(
    target: Azurite, task: TaskOutputStorage, job_id: str, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.write_text("live\n")
    with task.save_tracked(log, "app.log", flush_interval=0.2):
        pass

    async def scenario() -> str:
        async with aio.TaskOutputStorage.from_connection_string(
            target.connection_string, job_id, TASK
        ) as storage:
            ref = await storage.save_bytes("TaskLog", b"bytes\n", "app.log")
            return await ref.download_text()

    assert asyncio.run(scenario()) == "bytes\n"
    assert blob_type(task, "TaskLog", "app.log") == "BlockBlob"


@pytest.mark.parametrize("if_exists", ["resume", "overwrite"])
def test_a_live_log_replaces_a_saved_file(task: TaskOutputStorage, tmp_path: Path, if_exists: str) -> None:
    task.save_text("TaskLog", "first attempt\n", "stdout.txt")
    log = tmp_path / "stdout.txt"
    log.write_text("second attempt\n")
    with task.save_tracked(log, "stdout.txt", if_exists=if_exists, flush_interval=0.2) as save:
        pass
    assert save.bytes_saved == len("second attempt\n")
    assert task.get("TaskLog", "stdout.txt").download_text() == "second attempt\n"
    assert blob_type(task, "TaskLog", "stdout.txt") == "AppendBlob"


def test_a_live_log_over_a_saved_file_with_if_exists_fail_is_refused(
    task: TaskOutputStorage, tmp_path: Path
) -> None:
    task.save_text("TaskLog", "first attempt\n", "stdout.txt")
    log = tmp_path / "stdout.txt"
    log.write_text("second attempt\n")
    with pytest.raises(OutputExistsError):
        task.save_tracked(log, "stdout.txt", if_exists="fail")
    assert task.get("TaskLog", "stdout.txt").download_text() == "first attempt\n"


def test_without_the_delete_right_a_blob_of_another_type_is_not_replaced(
    target: Azurite, task: TaskOutputStorage, job_id: str, tmp_path: Path
) -> None:
    task.save_text("TaskLog", "first attempt\n", "stdout.txt")
    log = tmp_path / "stdout.txt"
    log.write_text("second attempt\n")
    no_delete = TaskOutputStorage(sas_url(target, job_id, delete=False), TASK)
    with no_delete, pytest.raises(AuthenticationError, match="needs the delete permission") as refused:
        no_delete.save_tracked(log, "stdout.txt", flush_interval=0.2)
    assert "BlockBlob" in str(refused.value) and "sig=" not in str(refused.value)
    assert task.get("TaskLog", "stdout.txt").download_text() == "first attempt\n"


def test_a_save_over_a_live_log_without_the_delete_right(
    target: Azurite, task: TaskOutputStorage, job_id: str, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.write_text("live\n")
    with task.save_tracked(log, "app.log", flush_interval=0.2):
        pass
    with TaskOutputStorage(sas_url(target, job_id, delete=False), TASK) as no_delete:
        if not isinstance(target, StrictAzurite):  # Azurite changes the type in place
            assert no_delete.save_text("TaskLog", "whole\n", "app.log").download_text() == "whole\n"
            return
        with pytest.raises(AuthenticationError, match=r"is an AppendBlob.*needs the delete permission"):
            no_delete.save_text("TaskLog", "whole\n", "app.log")
    assert task.get("TaskLog", "app.log").download_text() == "live\n"


@pytest.fixture
def dropping(target: Azurite) -> Iterator[FaultProxy]:
    """A proxy in front of the target that drops the answer of the first DELETE (it is applied)."""
    with FaultProxy(target.port, deadline_s=300) as proxy:
        proxy.add_rule("drop_response", lambda request: request.method == "DELETE", times=1)
        yield proxy


def test_a_lost_answer_to_the_delete_does_not_fail_the_replacement(
    target: Azurite, task: TaskOutputStorage, dropping: FaultProxy, job_id: str, tmp_path: Path
) -> None:
    # The retried conditional DELETE finds no blob: Azurite answers 412, the service 404.
    conn = target.connection_string.replace(target.account_url, dropping.url_for(ACCOUNT_NAME))
    log = tmp_path / "stdout.txt"
    log.write_text("second attempt\n")
    with TaskOutputStorage.from_connection_string(conn, job_id, TASK) as through:
        through.save_text("TaskLog", "first attempt\n", "stdout.txt")
        with through.save_tracked(log, "stdout.txt", flush_interval=0.2):
            pass
        assert dropping.counts["drop_response"] == 1
        dropping.add_rule("drop_response", lambda request: request.method == "DELETE", times=1)
        assert through.save_text("TaskLog", "whole\n", "stdout.txt").download_text() == "whole\n"
        strict = isinstance(target, StrictAzurite)  # Azurite overwrites an append blob: no delete
        assert dropping.counts["drop_response"] == (2 if strict else 1)


def test_a_blob_with_snapshots_is_not_deleted_to_replace_it(task: TaskOutputStorage, tmp_path: Path) -> None:
    ref = task.save_text("TaskLog", "first attempt\n", "stdout.txt")
    task._container.get_blob_client(ref.blob_name).create_snapshot()
    log = tmp_path / "stdout.txt"
    log.write_text("second attempt\n")
    with pytest.raises(BatchFilesError, match=r"has snapshots.*does not delete it"):
        task.save_tracked(log, "stdout.txt")
    assert task.get("TaskLog", "stdout.txt").download_text() == "first attempt\n"


# --- `batchfiles run` of a retried task ---------------------------------------------------------------------


def node_env(url: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZ_BATCH_", "BATCHFILES_", "AZURE_"))}
    return {**clean, "BATCHFILES_CONTAINER_URL": url, "AZ_BATCH_TASK_ID": TASK}


SCRIPT = "print('second attempt', flush=True); import sys; sys.exit(3)"


def test_run_replaces_the_first_attempts_log_with_the_task_sas(
    target: Azurite, service: BlobServiceClient, task: TaskOutputStorage, job_id: str, tmp_path: Path
) -> None:
    task.save_text("TaskLog", "first attempt\n", "stdout.txt")  # as OutputFiles uploads it at exit
    url = output_storage_container_url(service, job_id)
    result = cli("run", "--", sys.executable, "-c", SCRIPT, env=node_env(url), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert task.get("TaskLog", "stdout.txt").download_text() == "second attempt\n"
    assert blob_type(task, "TaskLog", "stdout.txt") == "AppendBlob"
    assert task.get("TaskLog", "stdout.txt").metadata["batchfiles_exit_code"] == "3"


def test_run_without_the_delete_right_runs_the_command_and_exits_75(
    target: Azurite, task: TaskOutputStorage, job_id: str, tmp_path: Path
) -> None:
    task.save_text("TaskLog", "first attempt\n", "stdout.txt")
    url = sas_url(target, job_id, delete=False)
    result = cli("run", "--", sys.executable, "-c", SCRIPT, env=node_env(url), cwd=tmp_path)
    assert "second attempt" in result.stdout  # the command ran
    assert (tmp_path / "stdout.txt").read_text() == "second attempt\n"  # its log is kept
    assert result.returncode == 75, result.stderr
    assert f"log '{TASK}/$TaskLog/stdout.txt' not saved live" in result.stderr
    assert "needs the delete permission" in result.stderr and "saved when the command ended" in result.stderr
    assert "(the command exited with 3)" in result.stderr
    assert "Traceback" not in result.stderr and "sig=" not in result.stderr
    # A block blob over a block blob needs no delete right: the log is saved whole at the end.
    assert task.get("TaskLog", "stdout.txt").download_text() == "second attempt\n"
    assert blob_type(task, "TaskLog", "stdout.txt") == "BlockBlob"
    assert task.get("TaskLog", "stderr.txt").download_text() == ""  # the other log was saved live


def test_run_keeps_a_log_it_cannot_save_at_all_in_its_local_file(
    target: Azurite, task: TaskOutputStorage, job_id: str, tmp_path: Path
) -> None:
    url = sas_url(target, job_id, delete=False, write=False)  # a foreign SAS that may only read
    result = cli("run", "--", sys.executable, "-c", SCRIPT, env=node_env(url), cwd=tmp_path)
    assert "second attempt" in result.stdout  # the command ran
    assert (tmp_path / "stdout.txt").read_text() == "second attempt\n"
    assert result.returncode == 75, result.stderr
    assert f"it is kept in {tmp_path / 'stdout.txt'}" in result.stderr
    assert "Traceback" not in result.stderr and "sig=" not in result.stderr


# --- names ending in '.' ------------------------------------------------------------------------------------


def test_report_and_report_dot_are_refused_before_upload(
    target: Azurite, task: TaskOutputStorage, job_id: str, tmp_path: Path
) -> None:
    (tmp_path / "report").write_text("one")
    (tmp_path / "report.").write_text("two")
    with pytest.raises(ValueError, match=r"report\.'.*ending in '\.'.*nothing was saved"):
        task.save_many("TaskOutput", ["report", "report."], base_dir=tmp_path)
    env = node_env(sas_url(target, job_id, delete=True))
    result = cli("save", "TaskOutput", "report", "report.", env=env, cwd=tmp_path)
    assert_one_line_error(result, 1, "report.'", "ending in '.'")
    assert list(task.list()) == []


# --- save_bytes of any size ---------------------------------------------------------------------------------


def test_save_bytes_over_64_mib(target: Azurite, task: TaskOutputStorage) -> None:
    data = os.urandom(64 * MIB + 1)
    ref = task.save_bytes("TaskOutput", data, "big.bin")
    assert ref.size == len(data)
    assert bytes(ref.content_md5) == hashlib.md5(data).digest()
    assert ref.download_bytes() == data  # verified against the Content-MD5 too


def test_save_bytes_in_blocks_async(target: Azurite, task: TaskOutputStorage, job_id: str) -> None:
    data = os.urandom(9 * MIB)  # two blocks

    async def scenario() -> bytes:
        async with aio.TaskOutputStorage.from_connection_string(
            target.connection_string, job_id, TASK
        ) as storage:
            ref = await storage.save_bytes("TaskOutput", data, "big.bin")
            assert bytes(ref.content_md5) == hashlib.md5(data).digest()
            return await ref.download_bytes()

    assert asyncio.run(scenario()) == data


# --- metadata -----------------------------------------------------------------------------------------------


def test_close_metadata_over_8_kib_is_refused_before_anything_is_sent(
    task: TaskOutputStorage, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.write_text("all of it\n")
    save = task.save_tracked(log, "app.log", flush_interval=0.2)
    with pytest.raises(ValueError, match="8192"):
        save.close(metadata={"note": "x" * 8192})
    with pytest.raises(ValueError, match="identifiers"):
        save.close(metadata={"not-an-identifier": "x"})
    save.close(metadata={"note": "x" * 7000})  # with the marks, under 8 KiB
    ref = task.get("TaskLog", "app.log")
    assert ref.download_text() == "all of it\n"
    assert ref.metadata["batchfiles_closed"] == "1" and len(ref.metadata["note"]) == 7000
