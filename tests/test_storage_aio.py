"""What only batchfiles.aio has: the names of the sync API, and its methods as users call them (``await``,
``async for``, ``async with``). Every storage test of test_storage.py runs on aio too, through a blocking
view (helpers.Api), which would not notice a coroutine turned into a plain method: this test would."""

from __future__ import annotations

import asyncio
import hashlib
import os

import batchfiles
from batchfiles import aio
from batchfiles.aio import JobOutputKind, JobOutputStorage, TaskOutputKind, TaskOutputStorage
from helpers import TASK

TASK_OUTPUT = TaskOutputKind.TASK_OUTPUT


def test_save_list_get_download_as_coroutines(azurite, prepared, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "big.bin").write_bytes(data)

    async def main():
        conn = azurite.connection_string
        task = TaskOutputStorage.from_connection_string(conn, prepared, TASK)
        job = JobOutputStorage.from_connection_string(conn, prepared)
        async with task, job:
            ref = await task.save(TASK_OUTPUT, tmp_path / "big.bin", "big.bin", block_size=1024 * 1024)
            assert ref.content_md5 == hashlib.md5(data).digest() and ref.size == len(data)
            assert await ref.download_bytes() == data
            target = await ref.download_to_file(tmp_path / "down" / "big.bin")
            assert target.read_bytes() == data
            async with await ref.open() as stream:
                assert await stream.read(2) == data[:2]
            small = await task.save_text(TaskOutputKind.TASK_LOG, "log line\n", "stdout.txt")
            assert small.blob_name == f"{TASK}/$TaskLog/stdout.txt"
            assert await small.download_text() == "log line\n"
            await task.save_bytes(TaskOutputKind.custom("TaskLogX"), b"x", "x.txt")
            assert [r.file_path async for r in task.list(TaskOutputKind.TASK_LOG)] == ["stdout.txt"]
            assert len([r async for r in task.list()]) == 3
            assert (await task.get("TaskOutput", "big.bin")).size == len(data)
            await job.save_text(JobOutputKind.JOB_OUTPUT, "movie", "movie.mp4")
            assert [t async for t in job.task_ids()] == [TASK]
            assert [r.file_path async for r in job.task(TASK).list(TaskOutputKind.TASK_LOG)] == ["stdout.txt"]
            assert [r.blob_name async for r in job.list()] == ["$JobOutput/movie.mp4"]
            await small.delete()

    asyncio.run(main())


def test_sync_and_async_export_the_same_names():
    sync_names = {n for n in batchfiles.__all__ if n not in ("naming", "__version__")}
    assert sync_names <= set(aio.__all__)
