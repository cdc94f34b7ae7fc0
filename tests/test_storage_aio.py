"""batchfiles.aio against Azurite: every method of the async twin (run with asyncio.run)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient
from batchfiles import aio, naming
from batchfiles.aio import (
    ContainerNotFoundError,
    IntegrityError,
    JobOutputKind,
    JobOutputStorage,
    OutputExistsError,
    OutputNotFoundError,
    TaskOutputKind,
    TaskOutputStorage,
)

TASK_OUTPUT = TaskOutputKind.TASK_OUTPUT


def run(test):
    """Run an async test body with a prepared job: ``test(task_storage, job_storage, service)``."""

    def wrapper(azurite, job_id, tmp_path):
        async def main():
            async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
                container = await aio.prepare_output_storage(service, job_id)
                assert container.container_name == naming.container_name(job_id)
                await aio.prepare_output_storage(service, job_id)  # idempotent
                task = TaskOutputStorage.from_connection_string(azurite.connection_string, job_id, "t1")
                job = JobOutputStorage.from_service(service, job_id)
                async with task, job:
                    await test(task, job, tmp_path)

        asyncio.run(main())

    wrapper.__name__ = test.__name__
    return wrapper


@run
async def test_save_list_get_download(task, job, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "big.bin").write_bytes(data)
    ref = await task.save(TASK_OUTPUT, tmp_path / "big.bin", "big.bin", block_size=1024 * 1024)
    assert ref.content_md5 == hashlib.md5(data).digest() and ref.size == len(data)
    assert await ref.download_bytes() == data
    target = await ref.download_to_file(tmp_path / "down" / "big.bin")
    assert target.read_bytes() == data
    small = await task.save_text(TaskOutputKind.TASK_LOG, "log line\n", "stdout.txt")
    assert small.blob_name == "t1/$TaskLog/stdout.txt"
    assert await small.download_text() == "log line\n"
    await task.save_bytes(TaskOutputKind.custom("TaskLogX"), b"x", "x.txt")
    assert [r.file_path async for r in task.list(TaskOutputKind.TASK_LOG)] == ["stdout.txt"]
    assert len([r async for r in task.list()]) == 3
    assert (await task.get("TaskOutput", "big.bin")).size == len(data)
    await job.save_text(JobOutputKind.JOB_OUTPUT, "movie", "movie.mp4")
    assert [t async for t in job.task_ids()] == ["t1"]
    assert [r.file_path async for r in job.task("t1").list(TaskOutputKind.TASK_LOG)] == ["stdout.txt"]
    assert [r.blob_name async for r in job.list()] == ["$JobOutput/movie.mp4"]


@run
async def test_small_file_save_many_and_open(task, job, tmp_path):
    for name in ["a.png", "b.png", "sub/c.png", ".hidden.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    seen: list[tuple[int, int]] = []
    refs = await task.save_many(
        TASK_OUTPUT, "**/*.png", base_dir=tmp_path, progress=lambda s, t: seen.append((s, t))
    )
    assert seen[-1][0] == seen[-1][1] == len("a.png") + len("b.png") + len("sub/c.png")
    assert sorted(r.file_path for r in refs) == ["a.png", "b.png", "sub/c.png"]
    ref = await task.save(TASK_OUTPUT, tmp_path / "a.png", "single.png", progress=lambda s, t: None)
    assert ref.content_type == "image/png"
    stream = await ref.open()
    assert await stream.read(2) == b"a."
    assert await stream.read() == b"png"
    assert await stream.read() == b""


@run
async def test_save_many_plans_everything_before_uploading(task, job, tmp_path):
    """Like the sync twin: one blob for two files, a pattern climbing out, loops, links leading out."""
    base = tmp_path / "base"
    for name in ["a/b.txt", "a\\b.txt", "c.txt", "d/x.txt"]:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(name)
    (tmp_path / "outside.txt").write_text("outside")
    os.symlink("..", base / "d" / "up")
    os.symlink("../outside.txt", base / "leak.txt")
    with pytest.raises(ValueError, match=r"would both be saved as 't1/\$TaskOutput/a/b\.txt'"):
        await task.save_many(TASK_OUTPUT, ["c.txt", "**/*.txt"], base_dir=base)
    with pytest.raises(ValueError, match="may not climb above it"):
        await task.save_many(TASK_OUTPUT, ["c.txt", "../*.txt"], base_dir=base)
    assert [r async for r in task.list()] == []
    refs = await task.save_many(TASK_OUTPUT, ["*.txt", "d/**/*.txt"], base_dir=base)
    assert [r.file_path for r in refs] == ["a/b.txt", "c.txt", "d/x.txt"]  # a\b.txt is saved as a/b.txt
    assert [r.file_path async for r in task.list()] == ["a/b.txt", "c.txt", "d/x.txt"]


@run
async def test_given_files_are_checked_like_save_many(task, job, tmp_path):
    """Like the sync twin: every name derived and every collision refused first; a repeat saved once."""
    for name in ["a.txt", "bb.txt"]:
        (tmp_path / name).write_text(name)
    a, b = str(tmp_path / "a.txt"), str(tmp_path / "bb.txt")
    with pytest.raises(ValueError, match=r"would both be saved as 't1/\$TaskOutput/x\.txt'"):
        await task.save_files(TASK_OUTPUT, [(a, "x.txt"), (b, "./x.txt")])
    with pytest.raises(ValueError, match="Azure allows 1024"):
        await task.save_files(TASK_OUTPUT, [(a, "a.txt"), (b, "n" * 1100)])
    assert [r async for r in task.list()] == []
    seen: list[tuple[int, int]] = []
    files = [(a, "x/a.txt"), (b, "bb.txt"), (a, "x/a.txt")]
    refs = await task.save_files(TASK_OUTPUT, files, progress=lambda s, t: seen.append((s, t)))
    assert [r.blob_name for r in refs] == ["t1/$TaskOutput/x/a.txt", "t1/$TaskOutput/bb.txt"]
    assert seen[-1] == (len("a.txt") + len("bb.txt"),) * 2


@run
async def test_errors_and_integrity(task, job, tmp_path):
    ref = await task.save_text(TASK_OUTPUT, "real", "r.txt")
    with pytest.raises(OutputExistsError):
        await task.save_text(TASK_OUTPUT, "again", "r.txt", overwrite=False)
    with pytest.raises(OutputExistsError):
        await task.save(TASK_OUTPUT, __file__, "r.txt", overwrite=False)
    blob = task._container.get_blob_client(ref.blob_name)
    await blob.set_http_headers(ContentSettings(content_md5=bytearray(hashlib.md5(b"other").digest())))
    with pytest.raises(IntegrityError):
        await ref.download_to_file(tmp_path / "r.txt")
    assert not (tmp_path / "r.txt").exists()
    stream = await ref.open()
    with pytest.raises(IntegrityError):
        await stream.read()
    await ref.delete()
    with pytest.raises(OutputNotFoundError):
        await task.get(TASK_OUTPUT, "r.txt")
    with pytest.raises(ValueError, match="not a task output kind"):
        await task.save_text(JobOutputKind.JOB_OUTPUT, "x", "x.txt")


def test_container_not_prepared(azurite):
    async def main():
        async with TaskOutputStorage.from_connection_string(
            azurite.connection_string, "nope", "t"
        ) as storage:
            with pytest.raises(ContainerNotFoundError, match="prepare_output_storage"):
                await storage.save_text(TASK_OUTPUT, "x", "x.txt")

    asyncio.run(main())


def test_sync_and_async_export_the_same_names():
    import batchfiles

    sync_names = {n for n in batchfiles.__all__ if n not in ("naming", "__version__")}
    assert sync_names <= set(aio.__all__)
