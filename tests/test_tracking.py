"""Tracked saves against Azurite: visibility, flush and close, rotation, resume, parts, bad input, aio."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient
from azure.storage.blob.aio import ContainerClient as AsyncContainerClient
from azure.storage.blob.aio import LinearRetry as AsyncLinearRetry
from batchfiles._tracking import Engine, Outcome, limits
from batchfiles.aio._tracking import TrackedSave as AsyncTrackedSave
from batchfiles.errors import OutputExistsError, TrackingError
from batchfiles.kinds import TaskOutputKind
from batchfiles.storage import TaskOutputStorage
from batchfiles.testing import Azurite
from batchfiles.tracking import TrackedSave
from helpers import LOG, append, blob_bytes, fast_retries, wait_for

CHILD = Path(__file__).with_name("tracking_child.py")


@pytest.fixture(autouse=True)
def quick_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll every 20 ms, so tests that wait for the tracker to see a change are quick."""
    monkeypatch.setattr(limits, "WATCH_INTERVAL", 0.02)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.touch()
    return path


def block_count(container: ContainerClient, name: str = LOG) -> int:
    return container.get_blob_client(name).get_blob_properties().append_blob_committed_block_count


def wait_polled(save: TrackedSave) -> None:
    """Wait until a poll of the file has started (and ended) after this call."""
    seen = save.stats.polls
    wait_for(lambda: save.stats.polls >= seen + 2, "a poll")


def tracking_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "batchfiles-tracking"]


def wait_no_tracking_thread() -> None:
    """The tracking thread ends soon after the last save closed (a save left open would keep it)."""
    wait_for(lambda: not tracking_threads(), "the tracking thread to end", timeout=5)


def make_blob(container: ContainerClient, name: str, *blocks: bytes) -> None:
    blob = container.get_blob_client(name)
    blob.create_append_blob()
    for block in blocks:
        blob.append_block(block)


# --- writing, flush, close ----------------------------------------------------------------------------------


def test_appends_are_visible_while_the_file_is_written(container: ContainerClient, log_path: Path) -> None:
    with TrackedSave.start(container, LOG, log_path, flush_interval=0.1, settle=0.1) as save:
        for i in range(5):
            line = f"line {i}\n".encode()
            append(log_path, line)
            wait_for(lambda line=line: blob_bytes(container).endswith(line), f"line {i} in the blob")
    assert blob_bytes(container) == log_path.read_bytes()
    assert save.bytes_saved == log_path.stat().st_size
    assert save.lost_bytes == 0
    props = container.get_blob_client(LOG).get_blob_properties()
    assert props.blob_type == "AppendBlob"
    assert props.content_settings.content_type == "text/plain"
    assert save.url == container.get_blob_client(LOG).url
    assert save.parts == [LOG]


def test_flush_returns_once_everything_written_is_in_the_blob(
    container: ContainerClient, log_path: Path
) -> None:
    with TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=0) as save:
        for i in range(3):
            append(log_path, f"flushed {i}\n".encode() * 100)
            save.flush(timeout=30)
            assert blob_bytes(container) == log_path.read_bytes()
    assert block_count(container) == 3


def test_close_follows_the_file_until_it_settles(container: ContainerClient, log_path: Path) -> None:
    save = TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=1.0)

    def write_a_little_longer() -> None:
        for i in range(30):
            append(log_path, f"late line {i}\n".encode())
            time.sleep(0.01)

    writer = threading.Thread(target=write_a_little_longer)
    writer.start()
    save.close()
    writer.join()
    assert blob_bytes(container) == log_path.read_bytes()
    assert log_path.read_bytes().endswith(b"late line 29\n")
    save.close()  # idempotent


def test_idle_saves_close_without_waiting_a_settle_window_and_busy_ones_share_one(
    container: ContainerClient, tmp_path: Path
) -> None:
    """The settle window counts from the file's last change seen, not from the close."""
    settle = 1.5  # three windows one after another would take 4.5 s: a 1.4 s stall still tells them apart
    paths = [tmp_path / f"{i}.log" for i in range(6)]
    for path in paths:
        path.write_bytes(b"written before the save started\n")
    saves = [
        TrackedSave.start(container, f"logs/{i}.log", path, flush_interval=3600, settle=settle)
        for i, path in enumerate(paths)
    ]
    idle, busy = saves[:3], saves[3:]
    time.sleep(settle + 0.2)
    started = time.monotonic()
    for save in idle:  # their bytes are sent by the final flush: no growth, no window
        save.close()
    assert time.monotonic() - started < settle
    for path in paths[3:]:
        append(path, b"written just before the close\n")
    started = time.monotonic()
    for save in busy:  # one after another: each window counts from the same growth
        save.close()
    took = time.monotonic() - started
    assert settle <= took < 2 * settle
    for save, path in zip(saves, paths, strict=True):
        assert blob_bytes(container, save.blob_name) == path.read_bytes()
        props = container.get_blob_client(save.blob_name).get_blob_properties()
        assert props.metadata["batchfiles_closed"] == "1"


def test_close_stops_following_after_linger(container: ContainerClient, log_path: Path) -> None:
    save = TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=10, linger=0.3)
    stop = threading.Event()

    def write_forever() -> None:
        while not stop.is_set():
            append(log_path, b"endless\n")
            time.sleep(0.01)

    writer = threading.Thread(target=write_forever)
    writer.start()
    try:
        wait_for(lambda: log_path.stat().st_size > 0, "the writer")
        size_at_close = log_path.stat().st_size
        save.close()
    finally:
        stop.set()
        writer.join()
    saved = blob_bytes(container)
    assert len(saved) >= size_at_close
    assert log_path.read_bytes().startswith(saved)


@pytest.mark.parametrize("mode", ["write-close", "write-exit"])
def test_output_written_just_before_exit_is_saved(
    azurite: Azurite, container: ContainerClient, log_path: Path, mode: str
) -> None:
    args = [azurite.connection_string, container.container_name, LOG, str(log_path), mode, "500"]
    subprocess.run([sys.executable, str(CHILD), *args], check=True, timeout=60)
    assert blob_bytes(container) == log_path.read_bytes()
    assert log_path.read_bytes().endswith(b"last words 499\n")


def test_a_path_that_does_not_exist_yet_is_waited_for(container: ContainerClient, tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    with TrackedSave.start(container, LOG, path, flush_interval=0.05, settle=0.2) as save:
        time.sleep(0.1)
        append(path, b"appeared\n")
        wait_for(lambda: blob_bytes(container) == b"appeared\n", "the new file in the blob")
    assert save.bytes_saved == len(b"appeared\n")


def test_a_file_that_never_appears_is_waited_for_until_linger(
    container: ContainerClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "batchfiles")
    save = TrackedSave.start(container, LOG, tmp_path / "never.log", flush_interval=0.05, linger=0.3)
    started = time.monotonic()
    save.close()
    assert time.monotonic() - started >= 0.3
    assert save.bytes_saved == 0
    assert blob_bytes(container) == b""
    assert "never appeared" in caplog.text


def test_one_thread_serves_every_save_and_ends_with_the_last(
    container: ContainerClient, tmp_path: Path
) -> None:
    wait_no_tracking_thread()
    saves = []
    for i in range(5):
        path = tmp_path / f"log{i}.txt"
        append(path, f"file {i}\n".encode())
        saves.append(TrackedSave.start(container, f"logs/{i}.txt", path, flush_interval=0.05, settle=0))
    assert len(tracking_threads()) == 1
    for save in saves:
        save.close()
    wait_no_tracking_thread()
    for i in range(5):
        assert blob_bytes(container, f"logs/{i}.txt") == f"file {i}\n".encode()


def test_a_dead_tracking_thread_fails_the_open_saves_and_the_next_save_starts_another(
    container: ContainerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "batchfiles")
    wait_no_tracking_thread()
    end, broken = Engine.end, []

    def end_broken_once(engine: Engine, outcome: Outcome, now: float) -> None:
        if not broken:
            broken.append(engine)
            raise RuntimeError("a bug near https://acct.blob.core.windows.net/c/b?sv=1&sig=SECRET")
        end(engine, outcome, now)

    saves = [TrackedSave.start(container, f"logs/{i}.log", tmp_path / f"{i}.log") for i in range(2)]
    monkeypatch.setattr(Engine, "end", end_broken_once)  # the next step of either save
    with pytest.raises(TrackingError, match="the tracking thread stopped"):
        saves[0].flush(timeout=10)  # not a TimeoutError: the error is kept at once
    for save in saves:
        with pytest.raises(TrackingError):
            save.close()  # raises at once, never waits for a thread that is gone
        assert isinstance(save.error.__cause__, RuntimeError)
        assert "SECRET" not in str(save.error)
    assert "SECRET" not in caplog.text
    wait_no_tracking_thread()

    path = tmp_path / "next.log"
    append(path, b"saved by a new thread\n")
    with TrackedSave.start(container, "logs/next.log", path, flush_interval=3600, settle=0):
        pass
    assert blob_bytes(container, "logs/next.log") == b"saved by a new thread\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_a_forked_child_does_not_hang_on_or_save_the_parents_saves(
    azurite: Azurite, container: ContainerClient, log_path: Path
) -> None:
    args = [azurite.connection_string, container.container_name, LOG, str(log_path), "fork", "50"]
    result = subprocess.run([sys.executable, str(CHILD), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "process this one was forked from" in result.stdout
    assert blob_bytes(container) == log_path.read_bytes()
    assert log_path.read_bytes().endswith(b"last words 49\n")
    assert blob_bytes(container, f"{LOG}.child") == b"saved by the child\n"


# --- rotation matrix: the blob is everything written, less the bytes counted as lost ------------------------


def rename_and_create(path: Path, save: TrackedSave) -> tuple[bytes, int]:
    append(path, b"first file\n" * 3)
    path.rename(path.with_name("app.log.1"))
    append(path, b"second file\n")
    return b"first file\n" * 3 + b"second file\n", 0


def several_rotations_in_one_interval(path: Path, save: TrackedSave) -> tuple[bytes, int]:
    written = b""
    for i in range(4):
        data = f"file {i}\n".encode() * (i + 1)
        append(path, data)
        written += data
        wait_polled(save)  # the tracker opened this file: it will read it to its end after the rename
        path.rename(path.with_name(f"app.log.{i + 1}"))
    return written, 0


def copytruncate(path: Path, save: TrackedSave) -> tuple[bytes, int]:
    lost = b"copied, then truncated before it was saved\n" * 10
    append(path, lost)
    wait_polled(save)
    shutil.copy(path, path.with_name("app.log.1"))
    os.truncate(path, 0)
    wait_polled(save)
    append(path, b"after the truncation\n")
    return b"after the truncation\n", len(lost)


def truncate_to_zero_after_a_flush(path: Path, save: TrackedSave) -> tuple[bytes, int]:
    append(path, b"saved before the truncation\n")
    save.flush()
    os.truncate(path, 0)
    wait_polled(save)
    append(path, b"new start\n")
    return b"saved before the truncation\nnew start\n", 0


def delete_while_open(path: Path, save: TrackedSave) -> tuple[bytes, int]:
    with open(path, "ab") as handle:
        handle.write(b"written before the delete\n")
        handle.flush()
        wait_polled(save)
        path.unlink()
        handle.write(b"written to the deleted file\n")
        handle.flush()
        wait_polled(save)
    append(path, b"a new file at the path\n")
    return b"written before the delete\nwritten to the deleted file\na new file at the path\n", 0


def replaced_by_a_file_with_the_same_first_bytes(path: Path, save: TrackedSave) -> tuple[bytes, int]:
    first, second = b"HEADER v1\nold body\n", b"HEADER v1\nnew body, a little longer\n"
    append(path, first)
    wait_polled(save)
    path.unlink()
    append(path, second)
    return first + second, 0


@pytest.mark.parametrize(
    "scenario",
    [
        rename_and_create,
        several_rotations_in_one_interval,
        copytruncate,
        truncate_to_zero_after_a_flush,
        delete_while_open,
        replaced_by_a_file_with_the_same_first_bytes,
    ],
)
def test_rotation_matrix(
    container: ContainerClient,
    log_path: Path,
    scenario: Callable[[Path, TrackedSave], tuple[bytes, int]],
) -> None:
    with TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=0.2) as save:
        expected, lost = scenario(log_path, save)
    assert blob_bytes(container) == expected
    assert save.lost_bytes == lost
    assert save.bytes_saved == len(expected)


def test_truncation_losses_are_logged(
    container: ContainerClient, log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "batchfiles")
    with TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=0.1) as save:
        copytruncate(log_path, save)
    assert "truncated" in caplog.text
    assert "430 bytes not yet saved are lost" in caplog.text


# --- if_exists: resume, overwrite, fail ---------------------------------------------------------------------


def test_resume_continues_after_the_saved_prefix_without_resending_it(
    container: ContainerClient, log_path: Path
) -> None:
    content = b"".join(f"line {i:05d}\n".encode() for i in range(10_000))  # 110 KB: tail check is 64 KiB
    append(log_path, content)
    make_blob(container, LOG, content[:50_000], content[50_000:100_000])  # a save cut short by a crash
    with TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=0) as save:
        append(log_path, b"after the restart\n")
    assert blob_bytes(container) == log_path.read_bytes()
    assert save.bytes_saved == len(content) - 100_000 + len(b"after the restart\n")
    assert block_count(container) == 3  # the two saved blocks, then one for everything after them


@pytest.mark.parametrize(
    "saved",
    [b"not the same start\n", b"line 1\nline 2\nline 3\n" + b"more than the file holds\n"],
    ids=["other-content", "longer-than-the-file"],
)
def test_resume_replaces_a_blob_that_is_not_a_prefix(
    container: ContainerClient, log_path: Path, caplog: pytest.LogCaptureFixture, saved: bytes
) -> None:
    caplog.set_level(logging.WARNING, "batchfiles")
    append(log_path, b"line 1\nline 2\nline 3\n")
    make_blob(container, LOG, saved)
    with TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=0):
        pass
    assert blob_bytes(container) == log_path.read_bytes()
    assert "replacing it" in caplog.text


def test_resume_replaces_a_block_blob(container: ContainerClient, log_path: Path) -> None:
    append(log_path, b"log\n")
    container.upload_blob(LOG, b"log\n")
    with TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=0):
        pass
    assert container.get_blob_client(LOG).get_blob_properties().blob_type == "AppendBlob"
    assert blob_bytes(container) == b"log\n"


def test_overwrite_starts_afresh(container: ContainerClient, log_path: Path) -> None:
    append(log_path, b"line 1\n")
    make_blob(container, LOG, b"line 1\n")
    with TrackedSave.start(
        container, LOG, log_path, flush_interval=3600, if_exists="overwrite", settle=0
    ) as save:
        pass
    assert blob_bytes(container) == b"line 1\n"
    assert save.bytes_saved == len(b"line 1\n")


def test_fail_raises_when_the_blob_exists(container: ContainerClient, log_path: Path) -> None:
    make_blob(container, LOG, b"earlier\n")
    with pytest.raises(OutputExistsError, match="if_exists='fail'"):
        TrackedSave.start(container, LOG, log_path, if_exists="fail")
    assert blob_bytes(container) == b"earlier\n"
    wait_no_tracking_thread()


def test_another_writer_is_an_error_never_an_overwrite(container: ContainerClient, log_path: Path) -> None:
    save = TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=0)
    append(log_path, b"mine\n")
    save.flush()
    container.get_blob_client(LOG).append_block(b"someone else's\n")
    append(log_path, b"mine again\n")
    with pytest.raises(TrackingError, match="another writer"):
        save.flush()
    assert isinstance(save.error, TrackingError)
    with pytest.raises(TrackingError):
        save.close()
    assert blob_bytes(container) == b"mine\nsomeone else's\n"


# --- block limit: parts -------------------------------------------------------------------------------------


def test_block_limit_rolls_over_to_parts_and_resume_continues_there(
    container: ContainerClient, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_BLOCKS", 3)

    def save_lines(first: int, count: int, **options: str) -> TrackedSave:
        with TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=0, **options) as save:
            for i in range(first, first + count):
                append(log_path, f"line {i}\n".encode())
                save.flush()
        return save

    save = save_lines(0, 8)
    assert save.parts == [LOG, f"{LOG}.1", f"{LOG}.2"]
    assert [block_count(container, part) for part in save.parts] == [3, 3, 2]
    metadata = [container.get_blob_client(part).get_blob_properties().metadata for part in save.parts]
    assert [m.pop(limits.WRITER_KEY) for m in metadata] == [save.stats.writer] * 3  # the writer
    closed = {limits.CLOSED_KEY: "1"}  # the close mark, on the last part only
    assert metadata == [{}, {limits.PART_KEY: "1"}, {limits.PART_KEY: "2", **closed}]
    assert b"".join(blob_bytes(container, part) for part in save.parts) == log_path.read_bytes()

    resumed = save_lines(8, 2)
    assert resumed.parts == [LOG, f"{LOG}.1", f"{LOG}.2", f"{LOG}.3"]
    assert resumed.bytes_saved == len(b"line 8\nline 9\n")
    assert b"".join(blob_bytes(container, part) for part in resumed.parts) == log_path.read_bytes()

    fresh = save_lines(10, 1, if_exists="overwrite")
    assert fresh.parts == [LOG]
    assert blob_bytes(container) == log_path.read_bytes()
    assert [b.name for b in container.list_blobs()] == [LOG]


@pytest.mark.parametrize(
    ("if_exists", "second_run"),
    [("resume", b"first run\nappended\n"), ("resume", b"another start\n"), ("overwrite", b"first run\n")],
    ids=["resume", "resume-replacing", "overwrite"],
)
def test_a_saved_rotated_log_named_like_a_part_is_left_alone(
    azurite: Azurite,
    container: ContainerClient,
    job_id: str,
    log_path: Path,
    if_exists: str,
    second_run: bytes,
) -> None:
    with TaskOutputStorage.from_connection_string(azurite.connection_string, job_id, "task-1") as task:
        task.save_text(TaskOutputKind.TASK_LOG, "rotated\n", "app.log.1")  # logrotate's, saved on its own
        log_path.write_bytes(b"first run\n")
        with task.save_tracked(log_path, "app.log", flush_interval=3600, settle=0):
            pass
        log_path.write_bytes(second_run)
        with task.save_tracked(
            log_path, "app.log", if_exists=if_exists, flush_interval=3600, settle=0
        ) as save:
            pass
    assert save.parts == [save.blob_name]
    assert blob_bytes(container, save.blob_name) == second_run
    assert blob_bytes(container, f"{save.blob_name}.1") == b"rotated\n"


def test_a_log_tracked_as_name_dot_1_is_not_a_part_of_name(
    container: ContainerClient, tmp_path: Path
) -> None:
    log, log_1 = tmp_path / "b.log", tmp_path / "b.log.1"
    append(log, b"b.log\n")
    append(log_1, b"b.log.1, tracked on its own\n")
    for path in (log, log_1):
        with TrackedSave.start(container, f"logs/{path.name}", path, flush_interval=3600, settle=0):
            pass
    append(log, b"resumed\n")
    with TrackedSave.start(container, "logs/b.log", log, flush_interval=3600, settle=0) as resumed:
        pass
    assert resumed.parts == ["logs/b.log"]
    assert resumed.bytes_saved == len(b"resumed\n")  # b.log.1's size is not part of the offset
    with TrackedSave.start(
        container, "logs/b.log", log, if_exists="overwrite", flush_interval=3600, settle=0
    ):
        pass
    assert blob_bytes(container, "logs/b.log") == log.read_bytes()
    assert blob_bytes(container, "logs/b.log.1") == log_1.read_bytes()


@pytest.mark.parametrize("marked", [False, True], ids=["another-blob", "a-leftover-part"])
def test_roll_over_replaces_only_a_leftover_part(
    container: ContainerClient, log_path: Path, monkeypatch: pytest.MonkeyPatch, marked: bool
) -> None:
    monkeypatch.setattr(limits, "MAX_BLOCKS", 1)
    metadata = {limits.PART_KEY: "1"} if marked else None
    container.upload_blob(f"{LOG}.1", b"not this save's\n", metadata=metadata)  # with no part 0: not found
    save = TrackedSave.start(container, LOG, log_path, flush_interval=3600, settle=0)
    append(log_path, b"line 0\n")
    save.flush()
    append(log_path, b"line 1\n")  # the block limit is reached: goes to part 1
    if marked:
        save.close()
        assert save.parts == [LOG, f"{LOG}.1"]
        assert blob_bytes(container, f"{LOG}.1") == b"line 1\n"
        return
    with pytest.raises(TrackingError, match="is not part 1"):
        save.flush()
    with pytest.raises(TrackingError):
        save.close()
    assert blob_bytes(container, f"{LOG}.1") == b"not this save's\n"


# --- bad input ----------------------------------------------------------------------------------------------


def test_a_directory_or_a_fifo_is_refused_at_start(container: ContainerClient, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo):
        with pytest.raises(OSError, match=r"directory|not a regular file"):
            TrackedSave.start(container, LOG, path)
    wait_no_tracking_thread()
    assert not list(container.list_blobs())


PERMISSION_CHECK = """
import sys
from azure.storage.blob import ContainerClient
from batchfiles.tracking import TrackedSave
try:
    TrackedSave.start(ContainerClient.from_connection_string(sys.argv[1], "c"), "b", sys.argv[2])
except PermissionError as err:
    print("PermissionError", err)
"""


def test_an_unreadable_file_is_refused_at_start(azurite: Azurite, log_path: Path) -> None:
    log_path.chmod(0)
    command = [sys.executable, "-c", PERMISSION_CHECK, azurite.connection_string, str(log_path)]
    if os.geteuid() == 0:  # root reads everything, unless it runs without capabilities
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv to drop the capabilities")
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("PermissionError"), result.stderr


@pytest.mark.parametrize(
    "options",
    [
        {"if_exists": "append"},
        {"flush_interval": 0},
        {"flush_interval": float("nan")},
        {"settle": -1},
        {"linger": "5"},
    ],
)
def test_bad_options_are_refused(container: ContainerClient, log_path: Path, options: dict) -> None:
    with pytest.raises(ValueError):
        TrackedSave.start(container, LOG, log_path, **options)
    with pytest.raises(ValueError, match="blob_name"):
        TrackedSave.start(container, "", log_path)
    wait_no_tracking_thread()


# --- the aio twin -------------------------------------------------------------------------------------------


def test_aio_twin_follows_flushes_and_resumes(
    azurite: Azurite, container: ContainerClient, log_path: Path
) -> None:
    async def scenario() -> None:
        async with AsyncContainerClient.from_connection_string(
            azurite.connection_string, container.container_name, **fast_retries(AsyncLinearRetry)
        ) as aio_container:
            async with await AsyncTrackedSave.start(
                aio_container, LOG, log_path, flush_interval=0.05, settle=0.2
            ) as save:
                append(log_path, b"async line\n")
                await save.flush(timeout=30)
                assert blob_bytes(container) == b"async line\n"
                append(log_path, b"sent without a flush\n")
                while not blob_bytes(container).endswith(b"flush\n"):
                    await asyncio.sleep(0.01)
            assert save.bytes_saved == len(b"async line\nsent without a flush\n")
            append(log_path, b"resumed\n")
            resumed = await AsyncTrackedSave.start(
                aio_container, LOG, log_path, flush_interval=3600, settle=0
            )
            await resumed.close()
            await resumed.close()
            assert resumed.bytes_saved == len(b"resumed\n")
            with pytest.raises(OutputExistsError):
                await AsyncTrackedSave.start(aio_container, LOG, log_path, if_exists="fail")

    asyncio.run(scenario())
    assert blob_bytes(container) == log_path.read_bytes() == b"async line\nsent without a flush\nresumed\n"


def test_aio_twin_closes_an_idle_save_without_a_settle_window(
    azurite: Azurite, container: ContainerClient, log_path: Path
) -> None:
    settle = 0.6
    append(log_path, b"written before the save started\n")

    async def scenario() -> float:
        async with AsyncContainerClient.from_connection_string(
            azurite.connection_string, container.container_name, **fast_retries(AsyncLinearRetry)
        ) as aio_container:
            saves = [
                await AsyncTrackedSave.start(aio_container, f"{LOG}.{i}", log_path, settle=settle)
                for i in range(3)
            ]
            await asyncio.sleep(settle + 0.2)
            started = time.monotonic()
            for save in saves:
                await save.close()
            return time.monotonic() - started

    assert asyncio.run(scenario()) < settle
    for i in range(3):
        assert blob_bytes(container, f"{LOG}.{i}") == log_path.read_bytes()


def test_aio_twin_raises_the_kept_error(azurite: Azurite, container: ContainerClient, log_path: Path) -> None:
    async def scenario() -> None:
        async with AsyncContainerClient.from_connection_string(
            azurite.connection_string, container.container_name, **fast_retries(AsyncLinearRetry)
        ) as aio_container:
            save = await AsyncTrackedSave.start(aio_container, LOG, log_path, flush_interval=3600, settle=0)
            container.get_blob_client(LOG).append_block(b"intruder\n")
            append(log_path, b"mine\n")
            with pytest.raises(TrackingError, match="another writer"):
                await save.flush()
            with pytest.raises(TrackingError):
                await save.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("end", ["cancelled", "failed"])
def test_aio_flush_and_close_raise_once_the_task_ended(
    azurite: Azurite, container: ContainerClient, log_path: Path, end: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(engine: Engine, now: float) -> None:
        raise RuntimeError("a bug")

    async def scenario() -> None:
        async with AsyncContainerClient.from_connection_string(
            azurite.connection_string, container.container_name, **fast_retries(AsyncLinearRetry)
        ) as aio_container:
            save = await AsyncTrackedSave.start(aio_container, LOG, log_path, flush_interval=3600, settle=0)
            if end == "cancelled":  # before it even started
                (task,) = [t for t in asyncio.all_tasks() if t.get_name() == f"batchfiles-tracking {LOG}"]
                task.cancel()
            else:
                monkeypatch.setattr(Engine, "begin", broken)  # its next step
            append(log_path, b"never saved\n")
            with pytest.raises(TrackingError, match="ended"):
                await save.flush(timeout=10)  # not a TimeoutError
            with pytest.raises(TrackingError, match="ended"):
                await asyncio.wait_for(save.close(), 10)
            cause = asyncio.CancelledError if end == "cancelled" else RuntimeError
            assert isinstance(save.error.__cause__, cause)

    asyncio.run(scenario())


def test_the_async_driver_reads_the_file_off_the_event_loop(container, tmp_path):
    """Opening and polling the file are file calls the engine yields, which the async driver makes in a
    worker thread: a slow disk holds up the save, not the event loop (its other tasks, a viewer)."""
    from batchfiles._tracking import FileCall
    from batchfiles.aio._tracking import _drive

    def steps():
        return (yield FileCall(threading.get_ident))

    async def where() -> tuple[int, int]:
        return threading.get_ident(), await _drive(None, steps())  # type: ignore[arg-type]

    loop_thread, read_thread = asyncio.run(where())
    assert read_thread != loop_thread
    engine = Engine(container.container_name, "log.txt", tmp_path / "log.txt")
    calls = engine.opening()
    assert not any(isinstance(call, FileCall) for call in [next(calls)])  # the probe: a storage call
    (tmp_path / "log.txt").write_bytes(b"x")
    step = engine.begin(engine.wake_at())
    assert step is not None and isinstance(next(step), FileCall)  # the poll
