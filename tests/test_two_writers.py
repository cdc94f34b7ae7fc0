"""Two writers on one tracked blob: at most one save succeeds, and the blob then holds exactly its file.

In one process first (deterministic: re-create, resume, equal-length appends, a write after our last
append), then two processes racing round after round through tests/tracking_child.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from time import monotonic
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from azure.storage.blob.aio import ContainerClient as AsyncContainerClient
from azure.storage.blob.aio import LinearRetry as AsyncLinearRetry
from batchfiles._tracking import Engine, drive
from batchfiles.aio._tracking import TrackedSave as AsyncTrackedSave
from batchfiles.errors import TrackingError
from batchfiles.testing import Azurite
from batchfiles.tracking import TrackedSave
from helpers import LOG, MemoryBlob, append, blob_bytes, fast_retries, flush_in_memory
from hypothesis import example, given, settings
from hypothesis import strategies as st

CHILD = Path(__file__).with_name("tracking_child.py")
QUIET = {"flush_interval": 3600, "settle": 0}  # appends only on flush and close


# --- in one process -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("if_exists", ["overwrite", "resume"])
def test_the_later_save_wins_even_when_its_appends_have_the_same_length(
    container: ContainerClient, tmp_path: Path, if_exists: str
) -> None:
    """The first save's pending append meets a blob of exactly the length it expected after it (the
    second save's block is as long as its own): that is not its append landing."""
    mine, theirs = tmp_path / "mine.log", tmp_path / "theirs.log"
    mine.touch()
    theirs.touch()
    first = TrackedSave.start(container, LOG, mine, **QUIET)
    second = TrackedSave.start(container, LOG, theirs, if_exists=if_exists, **QUIET)  # replaces or resumes
    append(mine, b"mine: 1\n")
    append(theirs, b"them: 1\n")
    second.flush()
    with pytest.raises(TrackingError, match=r"'\$TaskLog/app.log' in container .* another writer"):
        first.flush()
    with pytest.raises(TrackingError):
        first.close()
    second.close()
    assert blob_bytes(container) == theirs.read_bytes()


def test_a_save_resuming_the_blob_takes_it_over(container: ContainerClient, tmp_path: Path) -> None:
    """Two saves of the same file: the one that resumed goes on, the first one stops."""
    path = tmp_path / "app.log"
    append(path, b"one\n")
    first = TrackedSave.start(container, LOG, path, **QUIET)
    first.flush()
    second = TrackedSave.start(container, LOG, path, **QUIET)
    append(path, b"two\n")
    with pytest.raises(TrackingError, match="another writer"):
        first.flush()
    second.close()
    assert second.bytes_saved == len(b"two\n")
    assert blob_bytes(container) == path.read_bytes() == b"one\ntwo\n"


def test_a_write_after_the_last_append_fails_close(container: ContainerClient, tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    append(path, b"mine\n")
    save = TrackedSave.start(container, LOG, path, **QUIET)
    save.flush()
    container.get_blob_client(LOG).append_block(b"someone else's\n")
    with pytest.raises(TrackingError, match="written to by another writer after this save's last append"):
        save.close()


def test_a_deleted_blob_fails_close(container: ContainerClient, tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    append(path, b"mine\n")
    save = TrackedSave.start(container, LOG, path, **QUIET)
    save.flush()
    container.delete_blob(LOG)
    with pytest.raises(TrackingError, match="was deleted by another writer"):
        save.close()


def test_a_resume_raced_by_an_append_is_refused(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """The blob changes between the probe and the claim of a resume: the resume stops there."""
    path = tmp_path / "app.log"
    append(path, b"one\n")
    with TrackedSave.start(container, LOG, path, **QUIET):
        pass
    raced: list[str] = []

    def another_append_before_the_claim(request: Any) -> None:  # the claim sets the blob's metadata
        if "comp=metadata" in request.http_request.url and not raced:
            raced.append(request.http_request.url)
            container.get_blob_client(LOG).append_block(b"someone else's\n")

    with (
        ContainerClient.from_connection_string(
            azurite.connection_string,
            container.container_name,
            raw_request_hook=another_append_before_the_claim,
            **fast_retries(),
        ) as hooked,
        pytest.raises(TrackingError, match="changed while this save was resuming it"),
    ):
        TrackedSave.start(hooked, LOG, path, **QUIET)
    assert raced


def test_a_lost_response_is_still_this_saves_append(tmp_path: Path) -> None:
    """The ETag changed because our own append landed: the blob's new ETag carries the chain on."""
    path = tmp_path / "app.log"
    path.touch()
    engine = Engine("container", LOG, path, flush_interval=3600)
    blob = MemoryBlob(None, "after", None)
    drive(blob, engine.opening())
    for line in (b"one\n", b"two\n", b"three\n"):
        append(path, line)
        flush_in_memory(engine, blob)
    assert blob.data == b"one\ntwo\nthree\n"
    assert engine.stats.etags == (blob.etag,)


def close_in_memory(engine: Engine, blob: Any) -> None:
    """Run steps until the engine is closed (its last step checks the ETag); raises the kept error."""
    engine.request_close(monotonic())
    while not engine.closed:
        now = max(engine.wake_at(), monotonic())  # skips the backoff
        step = engine.begin(now)
        assert step is not None
        engine.end(drive(blob, step), now)
    engine.raise_error()


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.binary(min_size=1, max_size=3)),  # to the file
        st.tuples(st.just("flush"), st.sampled_from([None, "before", "after"])),  # the append's fault
        st.tuples(st.just("append"), st.binary(min_size=1, max_size=3)),  # another writer's
        st.tuples(st.just("echo"), st.none()),  # another writer appends the bytes we are about to send
        st.tuples(st.just("recreate"), st.binary(max_size=6)),  # another writer's create, then append
        st.tuples(st.just("forge"), st.none()),  # the same, as long as the blob was
    ),
    max_size=10,
)


@settings(max_examples=500, deadline=None)
@given(OPERATIONS)
@example([("write", b"a"), ("flush", None), ("forge", None), ("write", b"b")])  # If-Match
@example([("write", b"a"), ("flush", None), ("write", b"b"), ("forge", None), ("echo", None)])  # the token
@example([("write", b"a"), ("flush", None), ("append", b"b")])  # close's check
@example([("write", b"a"), ("flush", "after"), ("write", b"b"), ("echo", None), ("flush", "after")])
def test_a_save_that_succeeds_leaves_exactly_its_file(operations: list[tuple[str, Any]]) -> None:
    """Whatever another writer does, and whichever responses are lost: a save either fails with a
    TrackingError or closes with the blob equal to its file; with no other writer, it never fails."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "app.log"
        path.touch()
        engine = Engine("container", LOG, path, flush_interval=3600, settle=0, linger=0)
        blob = MemoryBlob()
        drive(blob, engine.opening())
        try:
            for operation, value in operations:
                if operation == "write":
                    append(path, value)
                elif operation == "flush":
                    blob.faults = [value]
                    flush_in_memory(engine, blob)
                elif operation == "append":
                    blob.data += value
                elif operation == "echo":
                    blob.data += path.read_bytes()[engine.stats.bytes_saved :]  # one part, not resumed
                elif operation == "forge":
                    blob.data, blob.metadata = b"#" * len(blob.data), {}
                else:
                    blob.data, blob.metadata = value, {}
            close_in_memory(engine, blob)
        except TrackingError as err:
            assert engine.error is err
            assert {operation for operation, _ in operations} - {"write", "flush"}, err  # not a lost response
            return
        assert blob.data == path.read_bytes()


def test_the_aio_twin_stops_on_another_writer(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    mine, theirs = tmp_path / "mine.log", tmp_path / "theirs.log"
    append(mine, b"mine\n")
    append(theirs, b"them\n")

    async def scenario() -> None:
        async with AsyncContainerClient.from_connection_string(
            azurite.connection_string, container.container_name, **fast_retries(AsyncLinearRetry)
        ) as aio_container:
            save = await AsyncTrackedSave.start(aio_container, LOG, mine, **QUIET)
            with TrackedSave.start(container, LOG, theirs, if_exists="overwrite", **QUIET):
                pass
            with pytest.raises(TrackingError, match="another writer"):
                await save.close()

    asyncio.run(scenario())
    assert blob_bytes(container) == b"them\n"


# --- two processes ------------------------------------------------------------------------------------------

#: Rounds of the race: (record size of writer a, of writer b, if_exists, same records?, ms before the
#: first record: 0 = at once, 40 = once both saves are open, in between = either; ms between records,
#: None = random but the same for both, 0 = all at once).
VARIANTS = [
    (40, 40, "overwrite", False, 40, 0),  # 3000 bytes each at once: a length check takes theirs for ours
    (40, 40, "overwrite", False, 40, None),
    (40, 40, "overwrite", False, 0, None),
    (24, 61, "overwrite", False, 15, None),
    (40, 40, "resume", False, 40, 0),
    (40, 40, "resume", False, 15, None),
    (40, 40, "overwrite", True, 15, None),  # the very same records: still one writer only
]
ROUNDS = 28


class Writer:
    """A child process writing and saving rounds of records, as told on its stdin."""

    def __init__(self, azurite: Azurite, container: str, path: Path, seed: int) -> None:
        self.path = path
        args = [azurite.connection_string, container, LOG, str(path), "race", str(seed)]
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def tell(self, *words: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()

    def hear(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the writer ended: {self.proc.communicate(timeout=10)[1]}"
        return line

    def stop(self) -> str:
        self.proc.kill()
        return self.proc.communicate(timeout=10)[1]


def test_two_processes_racing_on_one_blob_never_both_succeed(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    writers = {
        tag: Writer(azurite, container.container_name, tmp_path / f"{tag}.log", seed)
        for seed, tag in enumerate("ab")
    }
    wins = 0
    try:
        for round_ in range(ROUNDS):
            size_a, size_b, if_exists, same, delay, pause = VARIANTS[round_ % len(VARIANTS)]
            if pause is None:
                pause = random.Random(round_).uniform(0.5, 4)  # the same for both: in step
            for (tag, writer), size in zip(writers.items(), (size_a, size_b), strict=True):
                writer.tell("go", round_, "same" if same else tag, size, if_exists, delay, f"{pause:.2f}")
            for writer in writers.values():  # both saves are open at once: the race is real
                assert writer.hear().split() == ["started", str(round_)]
            for writer in writers.values():
                writer.tell("close", round_)
            outcomes = {tag: json.loads(writer.hear()) for tag, writer in writers.items()}
            what = f"round {round_} {VARIANTS[round_ % len(VARIANTS)]}: {outcomes}"
            winners = [tag for tag, outcome in outcomes.items() if outcome["ok"]]
            assert len(winners) <= 1, what
            for outcome in outcomes.values():
                if not outcome["ok"]:
                    assert outcome["error"].startswith("TrackingError:"), what
                    assert "another writer" in outcome["error"], what
            if winners:
                wins += 1
                saved = container.download_blob(f"{round_}/{LOG}").readall()
                assert saved == Path(f"{writers[winners[0]].path}.{round_}").read_bytes(), what
    finally:
        errors = {tag: writer.stop() for tag, writer in writers.items()}
    assert wins >= ROUNDS // 2, errors
