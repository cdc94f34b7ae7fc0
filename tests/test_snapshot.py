"""The job as one object: ``JobOutputStorage.snapshot()`` from one flat listing (tasks, outputs by kind,
a tracked log's parts folded into one, states), hostile names skipped, one request per 5,000 blobs, the
streaming form, and the aio twin."""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient, ContentSettings
from batchfiles import (
    BatchFilesError,
    IntegrityError,
    JobOutputStorage,
    OutputNotFoundError,
    aio,
    naming,
    snapshot,
)
from batchfiles._listing import Listed
from batchfiles._tracking import limits
from batchfiles.testing import ACCOUNT_NAME, Azurite
from faultproxy import FaultProxy
from hypothesis import given, settings
from hypothesis import strategies as st


def test_a_job_as_one_object(
    job: JobOutputStorage, container: ContainerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job.save_text("JobOutput", "movie", "movie.mp4")
    for task in ("task-10", "task-2"):
        job.task(task).save_text("TaskOutput", task, "frames/1.png")
    job.task("task-2").save_text("TaskPreview", "p", "thumb.png")
    # a tracked log in three parts, closed with run's outcome
    monkeypatch.setattr(limits, "MAX_BLOCKS", 1)
    log = tmp_path / "stdout.txt"
    save = job.task("task-2").save_tracked(log, "stdout.txt", flush_interval=3600, settle=0)
    for line in (b"one\n", b"two\n", b"three\n"):
        with log.open("ab") as f:
            f.write(line)
        save.flush()
    save.close(metadata={"batchfiles_exit_code": "3", "batchfiles_ended": "2026-12-06T01:00:00Z"})
    # a task still running: a tracked log left open
    open_log = tmp_path / "open.log"
    open_log.write_text("busy\n")
    running = job.task("task-1").save_tracked(open_log, "stdout.txt", flush_interval=3600, settle=0)
    running.flush()
    # hostile and stray blobs in the shared container
    for name in (
        "README",
        "t1/x",
        "$TaskLog/x",
        "bad id!/$TaskOutput/x",
        "t1/$TaskOutput/a//b",
        "t1/$/x",
    ):
        container.upload_blob(name, b"?")
    container.upload_blob("task-2/$TaskLog/ghost.log.1", b"?", metadata={limits.PART_KEY: "1"})

    skipped: list[tuple[str, str]] = []
    snap = job.snapshot(on_invalid=lambda name, why: skipped.append((name, why)))
    running.close()

    assert [o.file_path for o in snap.outputs] == ["movie.mp4"]
    assert list(snap.tasks) == ["task-1", "task-2", "task-10"]  # natural order
    two = snap.tasks["task-2"]
    assert [(str(o.kind), o.file_path) for o in two.outputs] == [
        ("TaskLog", "stdout.txt"),
        ("TaskOutput", "frames/1.png"),
        ("TaskPreview", "thumb.png"),
    ]
    (stdout,) = two.of_kind("TaskLog")
    assert stdout.size == len(b"one\ntwo\nthree\n")
    assert stdout.parts == ("task-2/$TaskLog/stdout.txt.1", "task-2/$TaskLog/stdout.txt.2")
    assert stdout.log.state == "closed" and stdout.metadata["batchfiles_exit_code"] == "3"
    assert stdout.content_md5 is None  # a log in parts has no one MD5
    assert (two.state, two.exit_code) == ("exited", 3)
    assert two.ended is not None and two.ended.year == 2026
    assert (snap.tasks["task-1"].state, snap.tasks["task-1"].exit_code) == ("running", None)
    assert snap.tasks["task-10"].state == "unknown"
    assert snap.find("task-10", "TaskOutput", "frames/1.png").size == len("task-10")
    assert snap.find(None, "JobOutput", "movie.mp4").content_md5 is not None
    assert "?" not in snap.find(None, "JobOutput", "movie.mp4").url  # never a SAS
    # told: the blobs in the conventions' space; counted only: strangers beside them
    told = ["t1/x", "$TaskLog/x", "t1/$TaskOutput/a//b", "t1/$/x", "task-2/$TaskLog/ghost.log.1"]
    assert sorted(name for name, _ in skipped) == sorted(told)
    assert snap.skipped == len(told) + len(["README", "bad id!/$TaskOutput/x"])
    assert sum(1 for _ in snap.all_outputs()) == 6


def test_the_streaming_form_hands_out_each_task_once_listed(job: JobOutputStorage) -> None:
    job.save_text("JobOutput", "j", "j.txt")
    for task in ("a", "b", "c"):
        job.task(task).save_text("TaskOutput", task, "x.txt")
    pieces = list(job.iter_snapshot())
    assert [owner for owner, _ in pieces] == [None, "a", "b", "c"]
    assert snapshot.assemble(job.container_name, pieces, 0) == job.snapshot()


def test_one_listing_request_per_page_of_5000_blobs(
    azurite: Azurite, container: ContainerClient, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert snapshot.PAGE_SIZE == 5000  # the service's most; shrunk below so the test stays small
    monkeypatch.setattr(snapshot, "PAGE_SIZE", 10)
    names = [f"task-{i % 7}/$TaskOutput/{i}.txt" for i in range(25)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: container.upload_blob(name, b""), names))
    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        conn = azurite.connection_string.replace(azurite.account_url, proxy.url_for(ACCOUNT_NAME))
        with JobOutputStorage.from_connection_string(conn, job_id) as job:
            before = proxy.counts["requests"]
            snap = job.snapshot()
            assert proxy.counts["requests"] - before == 3
            before = proxy.counts["requests"]
            first = next(job.iter_snapshot())  # the streaming form: a task after the first page
            assert proxy.counts["requests"] - before == 1 and first[0] == "task-0"
    assert len(snap.tasks) == 7 and sum(1 for _ in snap.all_outputs()) == 25


def test_the_async_twin_sees_the_same_job(azurite: Azurite, job: JobOutputStorage, job_id: str) -> None:
    job.save_text("JobOutput", "j", "j.txt")
    job.task("t1").save_text("TaskLog", "log", "stdout.txt")

    async def scenario() -> Any:
        async with aio.JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as twin:
            pieces = [piece async for piece in twin.iter_snapshot()]
            return await twin.snapshot(), pieces

    snap, pieces = asyncio.run(scenario())
    assert snap == job.snapshot()
    assert [owner for owner, _ in pieces] == [None, "t1"]


def _job_with_a_log_in_parts(
    job: JobOutputStorage, container: ContainerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> bytes:
    """task-1's stdout.txt, a tracked save in three parts; and a TaskOutput whose Content-MD5 lies."""
    monkeypatch.setattr(limits, "MAX_BLOCKS", 1)
    log = tmp_path / "stdout.txt"
    save = job.task("task-1").save_tracked(log, "stdout.txt", flush_interval=3600, settle=0)
    for line in (b"one\n", b"two\n", b"three\n"):
        with log.open("ab") as f:
            f.write(line)
        save.flush()
    save.close()
    job.task("task-1").save_text("TaskOutput", "what was saved", "out.txt")
    lie = ContentSettings(content_md5=bytearray(hashlib.md5(b"other").digest()))
    container.get_blob_client(naming.blob_name("TaskOutput", "out.txt", "task-1")).set_http_headers(lie)
    return log.read_bytes()


def test_open_reads_an_output_of_the_snapshot_in_parts_as_one(
    job: JobOutputStorage, container: ContainerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _job_with_a_log_in_parts(job, container, tmp_path, monkeypatch)
    snap = job.snapshot()
    log = snap.find("task-1", "TaskLog", "stdout.txt")
    assert log is not None and len(log.parts) == 2
    with job.open(log) as stream:
        assert stream.read(5) + stream.read() == text
    damaged = snap.find("task-1", "TaskOutput", "out.txt")
    with job.open(damaged) as stream, pytest.raises(IntegrityError):
        stream.read()
    job.task("task-1").get("TaskOutput", "out.txt").delete()
    with pytest.raises(OutputNotFoundError):
        job.open(damaged)


def test_open_of_the_async_twin(
    azurite: Azurite,
    job: JobOutputStorage,
    container: ContainerClient,
    job_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = _job_with_a_log_in_parts(job, container, tmp_path, monkeypatch)

    async def scenario() -> tuple[bytes, bytes]:
        async with aio.JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as twin:
            snap = await twin.snapshot()
            async with await twin.open(snap.find("task-1", "TaskLog", "stdout.txt")) as stream:
                first, whole = await stream.read(5), b""
                while chunk := await stream.read(3):
                    whole += chunk
            async with await twin.open(snap.find("task-1", "TaskOutput", "out.txt")) as stream:
                with pytest.raises(IntegrityError):
                    await stream.read()
            return first, whole

    first, rest = asyncio.run(scenario())
    assert first + rest == text


# --- the builder alone: any listing -------------------------------------------------------------------------


def a_blob(name: str, metadata: dict[str, str] | None = None) -> Listed:
    """A listed blob as :mod:`batchfiles._listing` parses it."""
    return Listed(name, 1, None, None, None, None, metadata or {})


SEGMENT = st.sampled_from(
    ["t1", "t2", "t10", "$TaskLog", "$TaskOutput", "$JobOutput", "x", "x.1", ".", "a b"]
)
NAMES = st.lists(st.lists(SEGMENT, min_size=1, max_size=4).map("/".join), max_size=30, unique=True)


@settings(max_examples=300, deadline=None)
@given(NAMES, st.data())
def test_every_blob_is_an_output_once_or_skipped(names: list[str], data: st.DataObject) -> None:
    listing = [
        a_blob(n, {limits.PART_KEY: "1"} if n.endswith(".1") and data.draw(st.booleans()) else {})
        for n in sorted(names)
    ]
    skipped: list[str] = []
    builder = snapshot.Builder("c", "http://127.0.0.1/a/c", lambda name, why: skipped.append(name))
    builder._skip = lambda name, why, tell=True: skipped.append(name)  # told or not: every one
    pieces = [p for props in listing for p in builder.add(props)] + builder.finish()
    owners = [owner for owner, _ in pieces]
    assert len(owners) == len(set(owners))  # each task handed out once, whole
    listed = [name for _, outputs in pieces for o in outputs for name in o.blob_names]
    assert sorted(listed + skipped) == sorted(names)  # every blob once: in an output or skipped
    for owner, outputs in pieces:
        for output in outputs:
            assert naming.blob_name(output.kind, output.file_path, owner) == output.blob_name


def test_a_part_mark_is_the_tracker_s_own_spelling() -> None:
    """``batchfiles_part`` is ``str(k)``, as a tracked save writes it: a blob ``log.01`` marked ``01`` (or
    ``+1``, ``1 ``) is not part 1 of ``log``, so it can neither hide the real part 1 nor make the log's
    parts unnamed by the conventions (which ``delete`` would refuse, for every output at once)."""
    assert snapshot.part_of("t1/$TaskLog/log.1", {limits.PART_KEY: "1"}) == ("t1/$TaskLog/log", 1)
    for mark in ("01", "001", "+1", " 1", "1 "):
        name = f"t1/$TaskLog/log.{mark}"
        assert snapshot.part_of(name, {limits.PART_KEY: mark}) == (name, 0), mark
    writer = {limits.WRITER_KEY: "w"}
    listing = [
        a_blob("t1/$TaskLog/log", writer),
        a_blob("t1/$TaskLog/log.01", {limits.PART_KEY: "01"}),
        a_blob("t1/$TaskLog/log.1", {limits.PART_KEY: "1"}),
    ]
    snap = snapshot.build("c", "http://127.0.0.1/a/c", listing, on_invalid=lambda *_: None)
    log = snap.find("t1", "TaskLog", "log")
    assert log is not None and log.parts == ("t1/$TaskLog/log.1",)
    assert snap.find("t1", "TaskLog", "log.01") is not None  # an output of its own, not lost


@pytest.mark.apis("sync", "aio")
def test_open_and_download_take_only_an_output_of_a_snapshot(job: Any, tmp_path: Path) -> None:
    """A blob name, a reference or None is a ``TypeError`` saying what they take, on sync and aio alike."""
    for wrong in (None, "t1/$TaskOutput/x.txt", {"blob_name": "x"}):
        with pytest.raises(TypeError, match=r"open takes an output of a snapshot \(OutputSnapshot\)"):
            job.open(wrong)
        with pytest.raises(TypeError, match=r"download takes an output of a snapshot \(OutputSnapshot\)"):
            job.download(wrong, tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.apis("sync", "aio")
def test_a_log_in_parts_replaced_after_the_listing_is_never_spliced(
    job: Any,
    azurite: Azurite,
    prepared: str,
    container: ContainerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``download`` of a closed log in parts whose first blob was replaced since the snapshot (its task
    run again) is an error leaving no file: never the new first blob followed by the old parts, a file that
    never was."""
    with JobOutputStorage.from_connection_string(azurite.connection_string, prepared) as writer:
        _job_with_a_log_in_parts(writer, container, tmp_path, monkeypatch)
    log = job.snapshot().find("task-1", "TaskLog", "stdout.txt")
    assert log is not None and len(log.parts) == 2
    first = container.get_blob_client(log.blob_name)
    first.delete_blob()
    first.upload_blob(b"run again\n", blob_type="AppendBlob", metadata={limits.WRITER_KEY: "other"})
    target = tmp_path / "got" / "stdout.txt"
    with pytest.raises(BatchFilesError, match="changed"):
        job.download(log, target)
    assert not target.exists() and list(target.parent.iterdir()) == []


@pytest.mark.apis("sync", "aio")
def test_on_invalid_must_be_callable_at_the_call(job: Any) -> None:
    """Not at the first hostile blob of some later listing, as a TypeError out of the middle of it."""
    for call in (
        lambda: job.snapshot(on_invalid=1),
        lambda: job.follow_logs(on_invalid="warn"),
    ):
        with pytest.raises(TypeError, match=r"on_invalid must be a function \(blob_name, reason\), not"):
            call()
