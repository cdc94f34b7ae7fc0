"""Following live outputs: ``follow()`` and ``follow_logs()`` (sync and aio), the close mark of tracked saves,
and the sans-IO reader of :mod:`batchfiles._follow`.

First the reader in memory against a simulated storage, with a writer acting between any two requests
(property tests), then against Azurite: a writer process with roll-over parts, start offsets, a replaced
blob, a job's logs followed through the public API, the request count of an idle follow and of a job's
listing, and faults through tests/faultproxy.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import hostile
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceResponseError
from azure.storage.blob import BlobServiceClient
from batchfiles import (
    JobOutputStorage,
    LogClosed,
    LogData,
    LogRestarted,
    LogsPolled,
    LogState,
    OutputReplacedError,
    TaskOutputStorage,
    naming,
    prepare_output_storage,
)
from batchfiles import aio as bf_aio
from batchfiles._follow import (
    Listing,
    LogSelection,
    Probe,
    Read,
    Sleep,
    follow_blob,
    follow_logs,
    select_logs,
    spans,
    tail_start,
)
from batchfiles._tracking import limits
from batchfiles.errors import TrackingError
from batchfiles.snapshot import build, log_state, part_of
from batchfiles.testing import ACCOUNT_NAME, Azurite
from faultproxy import FaultProxy
from helpers import fast_retries, wait_for
from hypothesis import example, given, settings
from hypothesis import strategies as st

CHILD = Path(__file__).with_name("follow_child.py")
TASK = "t1"
LOG = f"{TASK}/$TaskLog/app.log"


# --- the reader in memory -----------------------------------------------------------------------------------


@dataclass
class MemBlob:
    created: int
    data: bytearray = field(default_factory=bytearray)
    blocks: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    version: int = 0
    append: bool = True


class MemoryStore:
    """Blobs in memory answering a follow's requests as Azure does: 304 for an unchanged blob asked with
    ``If-None-Match``, 416 for a range at or past the end, 404 for a blob not there. A listing gives what
    batchfiles' listing parser gives (no creation time, type or block count); the writer acts as a tracked
    save: a token of its own on each blob it creates (``writer=False``: none, as a writer that is not one)."""

    def __init__(self, *, writer: bool = True) -> None:
        self.blobs: dict[str, MemBlob] = {}
        self.clock = 0
        self.requests: list[Any] = []
        self.writer = writer

    def _error(self, status: int, code: str) -> HttpResponseError:
        error = (ResourceNotFoundError if status == 404 else HttpResponseError)(f"{status} {code}")
        error.status_code, error.error_code = status, code
        return error

    def props(self, name: str, **extra: Any) -> SimpleNamespace:
        blob = self.blobs[name]
        return SimpleNamespace(
            name=name,
            size=len(blob.data),
            etag=f'"0x{blob.version:x}"',
            creation_time=blob.created,
            blob_type="AppendBlob" if blob.append else "BlockBlob",
            append_blob_committed_block_count=blob.blocks if blob.append else None,
            metadata=dict(blob.metadata),
            content_range=extra.get("content_range"),
        )

    def listed(self, name: str) -> SimpleNamespace:
        blob = self.blobs[name]
        return SimpleNamespace(
            name=name,
            size=len(blob.data),
            etag=f"0x{blob.version:x}",
            last_modified=None,
            content_md5=None,
            content_type=None,
            metadata=dict(blob.metadata),
        )

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        if isinstance(request, Listing):
            return [
                self.listed(name) for name in sorted(n for n in self.blobs if n.startswith(request.prefix))
            ]
        if request.blob not in self.blobs:
            raise self._error(404, "BlobNotFound")
        if isinstance(request, Probe):
            return self.props(request.blob)
        blob = self.blobs[request.blob]
        if request.etag is not None and request.etag == f"0x{blob.version:x}":
            raise self._error(304, "ConditionNotMet")
        if request.offset >= len(blob.data):
            raise self._error(416, "InvalidRange")
        data = bytes(blob.data[request.offset : request.offset + request.length])
        end = request.offset + request.length - 1
        return data, self.props(request.blob, content_range=f"bytes {request.offset}-{end}/{len(blob.data)}")

    # -- the writer: a tracked save's way of writing --

    def last_part(self, base: str) -> str:
        index = 0
        while f"{base}.{index + 1}" in self.blobs:
            index += 1
        return base if index == 0 else f"{base}.{index}"

    def _new(self, metadata: dict[str, str] | None = None, *, created: int | None = None) -> MemBlob:
        if created is None:
            self.clock += 1
        blob = MemBlob(self.clock if created is None else created, metadata=dict(metadata or {}))
        if self.writer:
            blob.metadata[limits.WRITER_KEY] = f"writer-{self.clock}-{len(self.requests)}"
        return blob

    def append(self, base: str, data: bytes) -> None:
        if base not in self.blobs:
            self.blobs[base] = self._new()
        name = self.last_part(base)
        blob = self.blobs[name]
        if blob.blocks >= limits.MAX_BLOCKS:
            index = 1 if name == base else int(name.rsplit(".", 1)[1]) + 1
            blob = self.blobs[f"{base}.{index}"] = self._new({limits.PART_KEY: str(index)})
        blob.data += data
        blob.blocks += 1
        blob.version += 1

    def close(self, base: str) -> None:
        if base not in self.blobs:
            self.append(base, b"")
        blob = self.blobs[self.last_part(base)]
        blob.metadata[limits.CLOSED_KEY] = "1"
        blob.version += 1

    def recreate(self, base: str, *, same_second: bool = False) -> None:
        """The save again with ``if_exists="overwrite"`` (``same_second``: created within the second of the
        blob it replaces, so with the same creation time)."""
        for name in [n for n in self.blobs if n.startswith(f"{base}.")]:
            del self.blobs[name]
        created = self.blobs[base].created if same_second and base in self.blobs else None
        blob = self.blobs[base] = self._new(created=created)
        blob.version = 1000 + self.clock + len(self.requests)

    def resume(self, base: str) -> None:
        """A save resuming the blob (``if_exists="resume"``): its token on the last part, the bytes kept."""
        if base not in self.blobs:
            return
        blob = self.blobs[self.last_part(base)]
        blob.metadata = {k: v for k, v in blob.metadata.items() if k in (limits.PART_KEY,)}
        blob.metadata[limits.WRITER_KEY] = f"resumed-{len(self.requests)}-{blob.version}"
        blob.version += 1

    def content(self, base: str) -> bytes:
        out, index = b"", 0
        while (name := base if index == 0 else f"{base}.{index}") in self.blobs:
            out += self.blobs[name].data
            index += 1
        return out


def run_in_memory(
    steps: Any, store: Any, act: Any, *, limit: int = 20_000, sleeps: list[float] | None = None
) -> list[Any]:
    """Drive a follow on ``store``; ``act(point)`` is called before every request and sleep ("request",
    "sleep") and may change the store or return an exception to fail the request with; after each poll of
    a follow of logs, ``act("polled")`` says whether to stop. ``sleeps``: gets the seconds of each sleep."""
    out: list[Any] = []
    result: Any = None
    error: BaseException | None = None
    for _ in range(limit):
        try:
            item = steps.send(result) if error is None else steps.throw(error)
        except StopIteration:
            return out
        result = error = None
        if isinstance(item, Sleep):
            if sleeps is not None:
                sleeps.append(item.seconds)
            act("sleep")
        elif isinstance(item, (Read, Probe, Listing)):
            fault = act("request")
            if fault is not None:
                error = fault
                continue
            try:
                result = store(item)
            except Exception as exc:
                error = exc
        else:
            out.append(item)
            if isinstance(item, LogsPolled) and act("polled"):
                return out
    raise AssertionError("the follow did not end")


def logs(selection: LogSelection | None = None, **options: Any) -> Any:
    """A follow of a job's logs (every task's TaskLog by default) over a :class:`MemoryStore`."""
    selection = selection or LogSelection("TaskLog")
    options = {"poll_interval": 0.01, "clock": lambda: 0.0, **options}
    return follow_logs(
        selection, lambda listing: build("job-x", "http://127.0.0.1/job-x", listing), **options
    )


def key_of(name: str) -> tuple[str, str]:
    """(task id, path) of a TaskLog blob name."""
    task, _, path = name.partition("/$TaskLog/")
    return task, path


def data_of(events: list[Any], name: str) -> bytes:
    key = key_of(name)
    return b"".join(e.data for e in events if isinstance(e, LogData) and (e.task_id, e.path) == key)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.binary(min_size=1, max_size=9)),
        st.tuples(st.just("wait"), st.none()),
        st.tuples(st.just("fault"), st.none()),
        st.tuples(st.just("resume"), st.none()),
    ),
    max_size=40,
)


class Script:
    """Writer operations done one per point of the follow, then the close marks."""

    def __init__(self, store: MemoryStore, ops: list[tuple[str, Any]], bases: list[str]) -> None:
        self.store, self.ops, self.bases, self.faults, self.turn = store, list(ops), bases, 0, 0
        self.closed_at: int | None = None  # requests made before the close marks

    def __call__(self, point: str) -> Any:
        if point == "polled":  # done once a whole poll was made after the close marks
            after = self.store.requests[self.closed_at :] if self.closed_at is not None else []
            return any(isinstance(request, Listing) for request in after)
        base = self.bases[self.turn % len(self.bases)]
        self.turn += 1
        if not self.ops:  # the close marks, before any request or sleep (between a listing and a read)
            if self.closed_at is None:
                self.closed_at = len(self.store.requests)
                for name in self.bases:
                    self.store.close(name)
            return None
        op, value = self.ops.pop(0)
        if op == "append":
            self.store.append(base, value)
        elif op == "resume":
            self.store.resume(base)
        elif op == "fault" and point == "request":
            self.faults += 1
            return ServiceResponseError("connection reset")
        return None


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(1, 3), st.integers(1, 7))
@example([("append", b"\xe2\x98"), ("append", b"\x95\n")], 1, 2)
def test_follow_blob_hands_out_every_byte_once(ops: list, max_blocks: int, chunk: int) -> None:
    """Whatever the writer does between two requests, with roll-over parts, resumes (a new writer token,
    the bytes kept) and transient failures: the bytes handed out are the blob's, once each, and the
    follow ends at the close mark."""
    store = MemoryStore()
    with (
        mock.patch.object(limits, "MAX_BLOCKS", max_blocks),
        mock.patch("batchfiles._follow.CHUNK", chunk),
        mock.patch("batchfiles._follow.MAX_FAILED_POLLS", 1000),  # faults in a row are not the point here
    ):
        steps = follow_blob(LOG, poll_interval=0.01, clock=lambda: 0.0)
        out = run_in_memory(steps, store, Script(store, ops, [LOG]))
    assert b"".join(out) == store.content(LOG)


@settings(max_examples=150, deadline=None)
@given(OPS, st.integers(1, 3), st.integers(1, 7), st.sampled_from([None, 0, 1, 3]), st.booleans())
def test_follow_logs_hands_out_every_byte_of_every_log_once(
    ops: list, max_blocks: int, chunk: int, tail: int | None, writer: bool
) -> None:
    bases = [f"t{i}/$TaskLog/stdout.txt" for i in range(3)]
    store = MemoryStore(writer=writer)
    with (
        mock.patch.object(limits, "MAX_BLOCKS", max_blocks),
        mock.patch("batchfiles._follow.CHUNK", chunk),
        mock.patch("batchfiles._follow.MAX_FAILED_POLLS", 1000),  # faults in a row are not the point here
    ):
        out = run_in_memory(logs(tail=tail), store, Script(store, ops, bases))
    for base in bases:
        got = data_of(out, base)
        if tail is None:
            assert got == store.content(base)
        else:  # started at some line of what was there when first listed: a suffix, from a line start
            content = store.content(base)
            assert content.endswith(got)
    assert not [event for event in out if isinstance(event, LogRestarted)]
    closed = {(event.task_id, event.path) for event in out if isinstance(event, LogClosed)}
    assert closed == {key_of(base) for base in bases}


def test_a_close_between_the_listing_and_the_read_ends_only_after_what_it_closed() -> None:
    """The writer's last append and its close mark land between a poll's listing and its read: the read
    says closed and bigger than listed, and the follow reads on to that size before it ends (issue 20)."""
    base = "t1/$TaskLog/stdout.txt"
    store = MemoryStore()
    store.append(base, b"first\n")
    writes = iter([lambda: (store.append(base, b"last\n"), store.close(base))])

    def act(point: str) -> Any:
        if point == "polled":
            return limits.CLOSED_KEY in store.blobs[base].metadata
        if point == "request" and store.requests and isinstance(store.requests[-1], Listing):
            next(writes, lambda: None)()  # the listing is answered: the writer goes on before the read
        return None

    out = run_in_memory(logs(), store, act)
    assert data_of(out, base) == b"first\nlast\n"
    assert [event for event in out if isinstance(event, LogClosed)] == [
        LogClosed("t1", "stdout.txt", LogState("closed"))
    ]


def test_follow_logs_reads_only_what_grew_and_lists_once_per_poll() -> None:
    store = MemoryStore()
    for i in range(50):
        store.append(f"t{i}/$TaskLog/stdout.txt", b"hello\n")
    polls = 0

    def act(point: str) -> Any:
        nonlocal polls
        if point == "polled":
            polls += 1
            if polls == 2:
                store.append("t7/$TaskLog/stdout.txt", b"more\n")
                store.requests.clear()
            return polls == 4
        return None

    run_in_memory(logs(), store, act)
    kinds = [type(request).__name__ for request in store.requests]
    assert kinds == ["Listing", "Read", "Listing"]  # one listing per poll; one read, of the log that grew


def test_a_replaced_blob_is_an_error_for_follow_and_a_restart_for_logs() -> None:
    store = MemoryStore()
    store.append(LOG, b"old one\n")
    steps = follow_blob(LOG, poll_interval=0.01, clock=lambda: 0.0)
    assert next(steps) == Read(LOG, 0, 4 * 1024 * 1024, None)
    assert steps.send(store(Read(LOG, 0, 100))) == b"old one\n"
    store.recreate(LOG)
    store.append(LOG, b"new\n")
    assert isinstance(steps.send(None), Sleep)
    request = steps.send(None)  # from offset 8, where the new blob has nothing: 416, then a probe
    with pytest.raises(HttpResponseError) as range_error:
        store(request)
    probe = steps.throw(range_error.value)
    with pytest.raises(OutputReplacedError, match=r"was replaced while it was followed \(it is 4 bytes long"):
        steps.send(store(probe))

    store = MemoryStore()
    store.append(LOG, b"old one\n")
    polls = 0

    def act(point: str) -> Any:
        nonlocal polls
        if point != "polled":
            return None
        polls += 1
        if polls == 2:
            store.recreate(LOG)
            store.append(LOG, b"new\n")
            store.close(LOG)
        return polls == 4

    out = run_in_memory(logs(), store, act)
    events = [e for e in out if not isinstance(e, LogsPolled)]
    assert events[0] == LogData(TASK, "app.log", b"old one\n")
    assert isinstance(events[1], LogRestarted) and "shorter" in events[1].reason
    assert events[2:] == [LogData(TASK, "app.log", b"new\n"), LogClosed(TASK, "app.log", LogState("closed"))]


def test_a_log_created_again_between_the_listing_and_the_read_restarts_once() -> None:
    """The read sees a new blob the poll's listing did not: the log restarts once, at the next poll with
    its fresh listing (it looped on the stale listing, with no sleep, before)."""
    store = MemoryStore()
    store.append(LOG, b"old one\n")
    polls = 0

    def act(point: str) -> Any:
        nonlocal polls
        if point == "polled":
            polls += 1
            return polls == 4
        if polls == 1 and point == "sleep" and len(store.blobs[LOG].data) == 8:
            store.append(LOG, b"more\n")  # the old log grows: the next poll reads it...
        elif polls == 1 and point == "request" and isinstance(store.requests[-1], Listing):
            store.recreate(LOG)  # ... but the task is run again between that listing and the read
            store.append(LOG, b"the new, longer log\n")
            store.close(LOG)
        return None

    out = run_in_memory(logs(), store, act)
    events = [e for e in out if not isinstance(e, LogsPolled)]
    assert events[0] == LogData(TASK, "app.log", b"old one\n")
    assert isinstance(events[1], LogRestarted) and "created again" in events[1].reason
    assert events[2:] == [
        LogData(TASK, "app.log", b"the new, longer log\n"),
        LogClosed(TASK, "app.log", LogState("closed")),
    ]


@pytest.mark.parametrize("closed_first", [False, True])
def test_a_log_replaced_within_the_second_by_a_longer_one_is_read_again_from_its_start(
    closed_first: bool,
) -> None:
    """The same creation time (storage's has whole seconds), a longer blob: its other writer token says it
    is another log, and it is read from its start, not spliced on at the old offset (the follower printed
    "old one" and then " longer log" before). Also once the old log was read to its close (run again)."""
    store = MemoryStore()
    store.append(LOG, b"old one\n")
    if closed_first:
        store.close(LOG)
    polls = 0

    def act(point: str) -> Any:
        nonlocal polls
        if point != "polled":
            return None
        polls += 1
        if polls == 1:
            store.recreate(LOG, same_second=True)
            store.append(LOG, b"the new, longer log\n")
            store.close(LOG)
        return polls == 4

    out = run_in_memory(logs(), store, act)
    events = [e for e in out if not isinstance(e, (LogsPolled, LogClosed))]
    assert events[0] == LogData(TASK, "app.log", b"old one\n")
    assert isinstance(events[1], LogRestarted) and "another writer" in events[1].reason
    assert events[2:] == [LogData(TASK, "app.log", b"the new, longer log\n")]

    store = MemoryStore()  # follow(): the same, as an error
    store.append(LOG, b"old one\n")
    steps = follow_blob(LOG, poll_interval=0.01, clock=lambda: 0.0)

    def replace(point: str) -> None:
        if point == "sleep" and store.blobs[LOG].data == b"old one\n":
            store.recreate(LOG, same_second=True)
            store.append(LOG, b"the new, longer log\n")

    with pytest.raises(OutputReplacedError, match="another writer wrote it again"):
        run_in_memory(steps, store, replace)


def test_a_resumed_log_goes_on_where_it_was() -> None:
    """A save resuming the log (a new writer token, the bytes kept), also after it was closed: read on from
    the offset, no restart, every byte once."""
    store = MemoryStore()
    store.append(LOG, b"first run\n")
    store.close(LOG)
    polls = 0

    def act(point: str) -> Any:
        nonlocal polls
        if point != "polled":
            return None
        polls += 1
        if polls == 1:
            store.resume(LOG)
            store.append(LOG, b"resumed\n")
        if polls == 2:
            store.close(LOG)
        return polls == 4

    out = run_in_memory(logs(), store, act)
    assert not [e for e in out if isinstance(e, LogRestarted)]
    assert data_of(out, LOG) == b"first run\nresumed\n"
    assert [e for e in out if isinstance(e, LogClosed)] == [
        LogClosed(TASK, "app.log", LogState("closed"))
    ] * 2


def test_a_part_listed_before_its_last_appends_is_read_to_its_end_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The listing saw part 0 before its last appends and part 1 after them: part 0 is read past its
    listed size, once, then part 1 (the same bytes were handed out again and again before)."""
    monkeypatch.setattr(limits, "MAX_BLOCKS", 2)
    store = MemoryStore()
    for data in (b"0123456789", b"ABCDE", b"part1\n"):
        store.append(LOG, data)
    store.close(LOG)

    def stale(request: Any) -> Any:
        answer = store(request)
        if isinstance(request, Listing):
            for props in answer:
                if props.name == LOG:
                    props.size = 10  # listed before "ABCDE" was appended
        return answer

    polls = 0

    def act(point: str) -> Any:
        nonlocal polls
        if point != "polled":
            return None
        polls += 1
        return polls == 3

    out = run_in_memory(logs(), stale, act)
    assert not [e for e in out if isinstance(e, LogRestarted)]
    assert data_of(out, LOG) == b"0123456789ABCDEpart1\n"


def test_an_empty_log_of_a_writer_that_is_not_a_save_is_probed_for_its_type_once() -> None:
    """The listing says no type: an empty blob without a save's token is probed once; a block blob is
    complete (closed), an append blob is not."""
    store = MemoryStore(writer=False)
    store.blobs["t1/$TaskLog/block.txt"] = MemBlob(1, append=False)
    store.blobs["t1/$TaskLog/append.txt"] = MemBlob(1)
    polls = 0

    def act(point: str) -> Any:
        nonlocal polls
        if point == "polled":
            polls += 1
            return polls == 3
        return None

    out = run_in_memory(logs(), store, act)
    assert [type(r).__name__ for r in store.requests] == ["Listing", "Probe", "Probe", "Listing", "Listing"]
    assert out[-1].logs == {("t1", "append.txt"): False, ("t1", "block.txt"): True}


def test_how_a_follow_of_logs_ends() -> None:
    """Named tasks: once each one's logs (and each path named) are found and closed; idle_timeout: once no
    log grew for that long (0: after one poll); a whole job: never by itself."""
    store = MemoryStore()
    store.append("a/$TaskLog/stdout.txt", b"a\n")
    now = [0.0]

    def act(point: str) -> Any:
        if point == "sleep":
            now[0] += 1.0
            if now[0] == 3.0:
                store.close("a/$TaskLog/stdout.txt")
            if now[0] == 5.0:
                store.append("b/$TaskLog/stdout.txt", b"b\n")
                store.close("b/$TaskLog/stdout.txt")
        return now[0] > 50 if point == "polled" else None

    def polled(selection: LogSelection, **options: Any) -> list[LogsPolled]:
        store.requests.clear()
        now[0] = 0.0
        for name in [n for n in store.blobs if n.startswith("b/")]:
            del store.blobs[name]
        store.blobs["a/$TaskLog/stdout.txt"].metadata.pop(limits.CLOSED_KEY, None)
        out = run_in_memory(logs(selection, clock=lambda: now[0], **options), store, act)
        return [e for e in out if isinstance(e, LogsPolled)]

    named = polled(select_logs(["a", "b"], "TaskLog", None))
    assert [p.ended for p in named] == [None] * 5 + ["closed"]  # b started later
    assert named[-1].logs == {("a", "stdout.txt"): True, ("b", "stdout.txt"): True}
    assert polled(select_logs(["a"], "TaskLog", ["stdout.txt", "stderr.txt"]))[-1].ended is None  # never
    once = polled(select_logs(None, "TaskLog", None), idle_timeout=0)
    assert [p.ended for p in once] == ["idle"] and once[0].logs == {("a", "stdout.txt"): False}
    idle = polled(select_logs(["a", "b"], "TaskLog", None), idle_timeout=2.5)
    assert [p.ended for p in idle] == [None, None, None, "idle"]  # a grew at 0 s; polls at 0, 1, 2, 3 s
    assert polled(select_logs(None, "TaskLog", None))[-1].ended is None  # a whole job: until stopped


def test_bad_arguments_of_a_follow_of_logs() -> None:
    with pytest.raises(TypeError, match="task_ids must be a list of task ids, not a single str"):
        select_logs("t1", "TaskLog", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="paths must be a list"):
        select_logs(None, "TaskLog", "stdout.txt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task id"):
        select_logs(["bad:task"], "TaskLog", None)
    with pytest.raises(TypeError, match="task id"):  # not "the whole job", waited for to the end of time
        select_logs([None], "TaskLog", None)  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"'\.\./x' is not the file path of an output: it has a '\.\.' seg"):
        select_logs(None, "TaskLog", ["../x"])
    with pytest.raises(ValueError, match="job output kind"):
        select_logs(None, "JobOutput", None)
    with pytest.raises(ValueError, match="task_ids is empty: give None for all"):
        select_logs([], "TaskLog", None)
    with pytest.raises(ValueError, match="tail"):
        logs(tail=-1)
    with pytest.raises(ValueError, match="idle_timeout"):
        logs(idle_timeout=-1)
    assert select_logs(["t1"], "TaskLog", None).prefix == "t1/$TaskLog/"
    assert select_logs(["t1", "t2", "t1"], "TaskLog", None) == LogSelection("TaskLog", ("t1", "t2"))


def test_idle_timeout_and_a_start_from_the_end() -> None:
    store = MemoryStore()
    store.append(LOG, b"0123456789")
    now = [0.0]

    def act(point: str) -> None:
        if point == "sleep":
            now[0] += 1.0

    out = run_in_memory(follow_blob(LOG, start=-4, idle_timeout=3, clock=lambda: now[0]), store, act)
    assert out == [b"6789"]
    assert now[0] == 3.0
    out = run_in_memory(follow_blob(LOG, start=4, idle_timeout=0, clock=lambda: now[0]), store, act)
    assert out == [b"456789"]
    assert [type(r).__name__ for r in store.requests[-2:]] == ["Probe", "Read"]  # no bytes before start read


def throttled(status: int = 503, code: str = "ServerBusy") -> HttpResponseError:
    error = HttpResponseError(f"{status} {code}: The server is currently unable to receive requests.")
    error.status_code, error.error_code = status, code
    return error


class Throttling:
    """Every request fails with ``fault()`` until ``count`` have; then the writer appends and closes."""

    def __init__(self, store: MemoryStore, base: str, count: int, fault: Any = throttled) -> None:
        self.store, self.base, self.left, self.fault = store, base, count, fault
        self.sleeps: list[float] = []

    def __call__(self, point: str) -> Any:
        if point == "polled":
            return limits.CLOSED_KEY in self.store.blobs[self.base].metadata
        if point == "request" and self.left:
            self.left -= 1
            if not self.left:
                self.store.append(self.base, b"after\n")
                self.store.close(self.base)
            return self.fault()
        return None


@pytest.mark.parametrize("listing", [False, True])
def test_throttling_is_waited_out_backing_off_and_said_once(listing: bool, caplog) -> None:
    """Far more throttled polls in a row than MAX_FAILED_POLLS: the follow goes on, waits as throttled
    requests wait (growing windows of full jitter, at least a poll interval), says so once, and reads on."""
    base = "t1/$TaskLog/stdout.txt"
    store = MemoryStore()
    store.append(base, b"before\n")
    act = Throttling(store, base, 40)
    sleeps: list[float] = []
    steps = logs() if listing else follow_blob(base, poll_interval=0.01, clock=lambda: 0.0)

    with mock.patch("batchfiles._throttle.throttled_backoff", side_effect=lambda n, a, r: 2.0**n):
        out = run_in_memory(steps, store, act, sleeps=sleeps)
    got = b"".join(e.data if isinstance(e, LogData) else e for e in out if isinstance(e, (LogData, bytes)))
    assert got == b"before\nafter\n"
    waits = [seconds for seconds in sleeps if seconds != 0.01]  # not the poll interval: a throttled wait
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0] and len(waits) == 40  # one throttled draw per failed poll
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "storage is throttling the account (503 ServerBusy)" in said[0], said


def test_reading_logs_once_waits_out_throttling_as_a_request_does() -> None:
    """``idle_timeout=0`` (``batchfiles logs`` without -f) is a read: after as many throttled polls in a row
    as a request's throttled retries, the error (a follow waits for as long as it lasts)."""
    from batchfiles import _throttle

    store = MemoryStore()
    store.append(LOG, b"x\n")
    act = Throttling(store, LOG, 100)
    with (
        mock.patch("batchfiles._throttle.throttled_backoff", side_effect=lambda n, a, r: 0.0),
        pytest.raises(HttpResponseError, match="ServerBusy"),
    ):
        run_in_memory(logs(idle_timeout=0), store, act)
    assert 100 - act.left == _throttle.THROTTLED_RETRIES + 1


@pytest.mark.parametrize(
    ("status", "code", "polls"), [(500, "InternalError", 6), (403, "AuthorizationFailure", 1)]
)
def test_other_failures_still_end_a_follow(status: int, code: str, polls: int) -> None:
    """Throttling is waited out; other errors are not: a 500 after MAX_FAILED_POLLS polls, a 403 at once."""
    store = MemoryStore()
    store.append(LOG, b"x\n")
    act = Throttling(store, LOG, 100, lambda: throttled(status, code))
    with pytest.raises(HttpResponseError, match=code):
        run_in_memory(follow_blob(LOG, poll_interval=0.01, clock=lambda: 0.0), store, act)
    assert 100 - act.left == polls


@given(st.binary(max_size=60).map(lambda b: b.replace(b"\x00", b"\n")), st.integers(0, 8), st.integers(0, 60))
def test_tail_start_is_tails(data: bytes, lines: int, cut: int) -> None:
    *ended, last = data.split(b"\n")  # lines as tail has them: ended by \n, the last one maybe not
    lines_of = [line + b"\n" for line in ended] + ([last] if last else [])
    expected = b"".join(lines_of[max(0, len(lines_of) - lines) :]) if lines else b""
    start = tail_start(data, lines, at_start=True)
    assert start is not None and data[start:] == expected
    window = data[min(cut, len(data)) :]
    begin = tail_start(window, lines, at_start=False)
    if begin is not None:  # a window that holds the lines gives the same start
        assert window[begin:] == expected


@given(st.lists(st.integers(0, 9), min_size=1, max_size=5), st.integers(0, 50), st.integers(0, 50))
def test_spans_cover_a_range_of_parts(sizes: list[int], a: int, b: int) -> None:
    total = sum(sizes)
    first, end = sorted((min(a, total), min(b, total)))
    data = bytes(range(total))
    parts = [data[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(len(sizes))]
    pieces = [parts[index][offset : offset + length] for index, offset, length in spans(sizes, first, end)]
    assert b"".join(pieces) == data[first:end]


def test_log_state_reads_runs_outcome() -> None:
    state = log_state(
        {"batchfiles_closed": "1", "Batchfiles_Exit_Code": "3", "batchfiles_ended": "2025-01-02T03:04:05Z"}
    )
    assert (state.state, state.exit_code, state.ended.year) == ("closed", 3, 2025)
    assert log_state({"batchfiles_writer": "x"}).state == "open"
    assert log_state({"batchfiles_exit_code": "nope", "batchfiles_started": "never"}) == log_state({})


@given(st.dictionaries(st.sampled_from(["batchfiles_exit_code", "batchfiles_part"]), st.text(max_size=14)))
@example({"batchfiles_exit_code": "²", "batchfiles_part": "²"})
def test_hostile_metadata_is_read_or_ignored(metadata: dict[str, str]) -> None:
    """Another writer's metadata ("²".isdigit() is true, int("²") fails) is read as a number or ignored."""
    code = log_state(metadata).exit_code
    assert code is None or code == int(metadata["batchfiles_exit_code"])
    name, index = part_of("a.log." + metadata.get("batchfiles_part", ""), metadata)
    assert index == 0 or name == "a.log"


# --- against Azurite ----------------------------------------------------------------------------------------


@pytest.fixture
def storage(azurite: Azurite, service: BlobServiceClient, job_id: str) -> Iterator[TaskOutputStorage]:
    prepare_output_storage(service, job_id)
    with TaskOutputStorage.from_connection_string(azurite.connection_string, job_id, TASK) as task:
        yield task


def start_child(azurite: Azurite, job_id: str, path: Path, max_blocks: int, lines: int, pause_ms: int):
    args = [azurite.connection_string, naming.container_name(job_id), LOG, str(path)]
    args += [str(max_blocks), str(lines), str(pause_ms)]
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent
    )


def test_a_follower_reads_a_writer_process_byte_for_byte(
    azurite: Azurite, storage: TaskOutputStorage, job_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started before the blob exists; the writer rolls over to parts (2 blocks each) and splits a
    multibyte character across appends; the follower ends by itself at the close mark."""
    monkeypatch.setattr(limits, "MAX_BLOCKS", 2)  # the follower knows parts are full as the writer does
    chunks: list[bytes] = []
    follower = threading.Thread(target=lambda: chunks.extend(storage.follow("app.log", poll_interval=0.02)))
    follower.start()
    time.sleep(0.2)
    path = tmp_path / "app.log"
    child = start_child(azurite, job_id, path, 2, 60, 15)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    parts = json.loads(out.splitlines()[-1])
    follower.join(30)
    assert not follower.is_alive(), "the close mark did not end the follow"
    assert len(parts) >= 3, parts
    assert b"".join(chunks) == path.read_bytes()
    assert "☕".encode() in b"".join(chunks)
    last = storage._container.get_blob_client(parts[-1]).get_blob_properties()
    assert last.metadata[limits.CLOSED_KEY] == "1"


def test_start_offsets_idle_timeout_and_a_complete_block_blob(storage: TaskOutputStorage) -> None:
    storage.save_bytes("TaskLog", b"0123456789", "block.txt")  # not an append blob: complete as it is
    assert b"".join(storage.follow("block.txt")) == b"0123456789"
    assert b"".join(storage.follow("block.txt", start=-3)) == b"789"
    assert b"".join(storage.follow("block.txt", start=4)) == b"456789"
    assert b"".join(storage.follow("block.txt", start=99)) == b""
    ref = storage.get("TaskLog", "block.txt")
    assert b"".join(ref.follow(start=8)) == b"89"
    blob = storage._container.get_blob_client(LOG)
    blob.create_append_blob()
    blob.append_block(b"open log\n")  # never closed: idle_timeout ends the follow
    started = time.monotonic()
    assert b"".join(storage.follow("app.log", idle_timeout=0.3, poll_interval=0.05)) == b"open log\n"
    assert 0.3 <= time.monotonic() - started < 5
    assert b"".join(storage.follow("app.log", idle_timeout=0)) == b"open log\n"


def test_bad_options_are_refused_at_the_call(storage: TaskOutputStorage, service, job_id) -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        storage.follow("app.log", poll_interval=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        storage.follow("app.log", idle_timeout=-1)
    with pytest.raises(TypeError, match="start"):
        storage.follow("app.log", start=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'\.\.' segment"):
        storage.follow("../x")
    with pytest.raises(TypeError, match="kind"):
        JobOutputStorage.from_service(service, job_id).follow("x.log")  # type: ignore[call-arg]


def test_a_job_output_and_the_aio_twin_follow_too(
    azurite: Azurite, storage: TaskOutputStorage, job_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "job.log"
    path.write_bytes(b"job log\n")
    with JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as job:
        with job.save_tracked(path, "job.log", kind="JobLog", flush_interval=0.05, settle=0):
            pass
        assert b"".join(job.follow("job.log", kind="JobLog")) == b"job log\n"

    async def main() -> tuple[bytes, bytes]:
        async with bf_aio.JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as job:
            got = [chunk async for chunk in job.follow("job.log", kind="JobLog", start=4)]
            ref = await job.get("JobLog", "job.log")
            whole = [chunk async for chunk in ref.follow()]
        return b"".join(got), b"".join(whole)

    assert asyncio.run(main()) == (b"log\n", b"job log\n")


def test_the_aio_twin_follows_a_live_save(
    azurite: Azurite, storage: TaskOutputStorage, job_id: str, tmp_path
):
    path = tmp_path / "app.log"
    path.touch()

    async def main() -> bytes:
        async with bf_aio.TaskOutputStorage.from_connection_string(
            azurite.connection_string, job_id, TASK
        ) as t:
            got: list[bytes] = []

            async def follow() -> None:
                got.extend([chunk async for chunk in t.follow("app.log", poll_interval=0.02)])

            follower = asyncio.ensure_future(follow())
            await asyncio.sleep(0.1)
            save = await t.save_tracked(path, "app.log", flush_interval=0.02, settle=0)
            for i in range(20):
                with open(path, "ab") as file:
                    file.write(f"async {i}\n".encode())
                await asyncio.sleep(0.01)
            await save.close()
            await asyncio.wait_for(follower, 20)
            return b"".join(got)

    assert asyncio.run(main()) == path.read_bytes()


def test_a_replaced_log_raises(storage: TaskOutputStorage, tmp_path: Path) -> None:
    blob = storage._container.get_blob_client(LOG)
    blob.create_append_blob()
    blob.append_block(b"first run, a long line\n")  # a writer that died: not closed
    follow = storage.follow("app.log", poll_interval=0.02)
    assert next(follow) == b"first run, a long line\n"
    path = tmp_path / "app.log"
    path.write_bytes(b"second\n")
    with storage.save_tracked(path, "app.log", flush_interval=0.05, settle=0, if_exists="overwrite"):
        pass
    with pytest.raises(OutputReplacedError, match="shorter than the 23 already read"):
        next(follow)


# --- the close mark -----------------------------------------------------------------------------------------


def test_the_close_mark_is_set_with_metadata_and_a_resume_removes_it(
    storage: TaskOutputStorage, tmp_path: Path
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"one\n")
    save = storage.save_tracked(path, "app.log", flush_interval=0.05, settle=0)
    ref = storage.get("TaskLog", "app.log")
    assert log_state(ref.metadata).state == "open"
    save.close(metadata={"batchfiles_exit_code": "3", "Note": "ok"})
    metadata = storage.get("TaskLog", "app.log").metadata
    assert metadata[limits.CLOSED_KEY] == "1" and metadata["batchfiles_exit_code"] == "3"
    assert metadata["note"] == "ok"
    other = storage.save_tracked(path, "x.log", settle=0)
    with pytest.raises(ValueError, match="batchfiles' own"):
        other.close(metadata={"batchfiles_closed": "0"})
    other.close()  # a bad argument left it open

    path.write_bytes(b"one\ntwo\n")
    resumed = storage.save_tracked(path, "app.log", flush_interval=0.05, settle=0)
    resumed.flush()
    metadata = storage.get("TaskLog", "app.log").metadata
    assert limits.CLOSED_KEY not in metadata and "batchfiles_exit_code" not in metadata
    assert metadata["note"] == "ok"  # others' metadata stays
    resumed.close()


def test_a_blob_another_writer_wrote_to_is_not_marked_closed(
    storage: TaskOutputStorage, tmp_path: Path
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"mine\n")
    save = storage.save_tracked(path, "app.log", flush_interval=3600, settle=0)
    save.flush()
    storage._container.get_blob_client(LOG).append_block(b"someone else's\n")
    with pytest.raises(TrackingError, match="written to by another writer"):
        save.close()
    assert limits.CLOSED_KEY not in storage.get("TaskLog", "app.log").metadata


# --- requests per poll --------------------------------------------------------------------------------------


class Counter:
    """A raw response hook: (method, whether conditional, query, status) of each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bool, str, int]] = []

    def __call__(self, response: Any) -> None:
        http = response.http_request
        conditional = "If-None-Match" in http.headers
        self.requests.append(
            (http.method, conditional, http.url.partition("?")[2], response.http_response.status_code)
        )


def test_an_idle_follow_costs_one_small_conditional_request_per_poll(
    azurite: Azurite, storage: TaskOutputStorage, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = storage._container.get_blob_client(LOG)
    blob.create_append_blob()
    blob.append_block(b"hello\n")
    counter = Counter()
    with TaskOutputStorage.from_connection_string(
        azurite.connection_string, job_id, TASK, raw_response_hook=counter
    ) as counted:
        follow = counted.follow("app.log", poll_interval=0.02)
        assert next(follow) == b"hello\n"
        sleeps: list[float] = []
        real_sleep = time.sleep

        def sleep(seconds: float) -> None:  # the 8th idle poll's sleep: the log grows
            sleeps.append(seconds)
            if len(sleeps) == 8:
                blob.append_block(b"grew\n")
            real_sleep(seconds)

        monkeypatch.setattr(time, "sleep", sleep)
        counter.requests.clear()
        assert next(follow) == b"grew\n"  # through the idle polls, until it grew
        monkeypatch.undo()
        follow.close()
    assert len(sleeps) >= 8  # idle polls
    assert len(counter.requests) == len(sleeps)  # one request per poll
    assert {(method, conditional) for method, conditional, _, _ in counter.requests} == {("GET", True)}
    assert [status for *_, status in counter.requests] == [304] * (len(sleeps) - 1) + [206]


def test_a_job_is_followed_with_one_listing_per_poll(
    azurite: Azurite, service: BlobServiceClient, job_id: str
) -> None:
    writer = prepare_output_storage(service, job_id)
    counter = Counter()
    with JobOutputStorage.from_connection_string(
        azurite.connection_string, job_id, raw_response_hook=counter
    ) as job:
        for i in range(30):
            blob = writer.get_blob_client(f"task-{i}/$TaskLog/stdout.txt")
            blob.create_append_blob()
            blob.append_block(f"task {i}\n".encode())
        polls, grown = 0, []
        for event in job.follow_logs(poll_interval=0.01):
            if isinstance(event, LogsPolled):
                polls += 1
                if polls == 1:
                    counter.requests.clear()
                if polls == 3:
                    writer.get_blob_client("task-7/$TaskLog/stdout.txt").append_block(b"more\n")
                if polls == 6:
                    break
            elif polls >= 3 and isinstance(event, LogData):
                grown.append(event)
    listings = [r for r in counter.requests if "comp=list" in r[2]]
    assert len(listings) == 5 and len(counter.requests) == 6  # 5 polls: 5 listings and 1 read of what grew
    assert grown == [LogData("task-7", "stdout.txt", b"more\n")]


@pytest.mark.parametrize("use_aio", [False, True], ids=["sync", "aio"])
def test_follow_logs_of_a_job_through_the_public_api(
    azurite: Azurite, service: BlobServiceClient, job_id: str, tmp_path: Path, use_aio: bool
) -> None:
    """Two tasks' tracked logs (one in roll-over parts), a third task that starts while they are followed,
    a log run again, a hostile blob told once: ``follow_logs(task_ids)`` ends once the named tasks' logs are
    closed; sync and aio hand out the same events."""
    writer = prepare_output_storage(service, job_id)
    for task, text in (("a", b"alpha\n"), ("b", b"beta\n" * 3)):
        path = tmp_path / f"{task}.log"
        path.write_bytes(text)
        with TaskOutputStorage.from_connection_string(azurite.connection_string, job_id, task) as storage:
            save = storage.save_tracked(path, "stdout.txt", flush_interval=0.05, settle=0)
            save.close(metadata={"batchfiles_exit_code": "3"} if task == "b" else None)
    writer.get_blob_client("b/$TaskOutput/result.txt").upload_blob(b"not a log")
    assert hostile.put(hostile.sas_url(service, job_id), "a/$TaskLog/../x.txt", b"climbs") == 201
    told: list[str] = []

    def start_c() -> None:
        with TaskOutputStorage.from_connection_string(azurite.connection_string, job_id, "c") as storage:
            storage.save_bytes("TaskLog", b"gamma\n", "stdout.txt")  # a block blob: complete as it is

    def events_of(collected: list[Any]) -> list[Any]:
        return [e for e in collected if not isinstance(e, LogsPolled)]

    options = dict(kind="TaskLog", poll_interval=0.02, on_invalid=lambda name, why: told.append(name))
    if not use_aio:
        with JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as job:
            collected = []
            for event in job.follow_logs(["a", "b", "c"], **options):
                collected.append(event)
                if isinstance(event, LogsPolled) and len(collected) < 10 and not event.ended:
                    start_c()
    else:

        async def main() -> list[Any]:
            async with bf_aio.JobOutputStorage.from_connection_string(
                azurite.connection_string, job_id
            ) as job:
                collected = []
                async for event in job.follow_logs(["a", "b", "c"], **options):
                    collected.append(event)
                    if isinstance(event, LogsPolled) and len(collected) < 10 and not event.ended:
                        await asyncio.to_thread(start_c)
                return collected

        collected = asyncio.run(main())
    polls = [e for e in collected if isinstance(e, LogsPolled)]
    assert [p.ended for p in polls] == [None, "closed"]
    assert polls[-1].logs == {("a", "stdout.txt"): True, ("b", "stdout.txt"): True, ("c", "stdout.txt"): True}
    got = events_of(collected)
    assert [e for e in got if isinstance(e, LogData)] == [
        LogData("a", "stdout.txt", b"alpha\n"),
        LogData("b", "stdout.txt", b"beta\n" * 3),
        LogData("c", "stdout.txt", b"gamma\n"),
    ]
    closed = {e.task_id: e.log for e in got if isinstance(e, LogClosed)}
    assert closed["a"].state == "closed" and closed["a"].exit_code is None
    assert closed["b"].exit_code == 3 and closed["c"] == LogState(None)  # c: not a tracked save's
    assert told == ["a/$TaskLog/../x.txt"]  # once, though listed by both polls


def test_follow_logs_refuses_bad_arguments_at_the_call(azurite: Azurite, service, job_id: str) -> None:
    prepare_output_storage(service, job_id)
    with JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as job:
        with pytest.raises(TypeError, match="task_ids"):
            job.follow_logs("t1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"'\.\.' segment"):
            job.follow_logs(paths=["../x"])
        with pytest.raises(ValueError, match="poll_interval"):
            job.follow_logs(poll_interval=0)
        with pytest.raises(ValueError, match="job output kind"):
            bf_aio.JobOutputStorage.from_connection_string(azurite.connection_string, job_id).follow_logs(
                kind="JobOutput"
            )


# --- faults -------------------------------------------------------------------------------------------------


@pytest.mark.fault_proxy(seed=11, delay_ms=20, deadline_s=240)
def test_faults_never_duplicate_or_skip_a_byte(
    azurite: Azurite,
    storage: TaskOutputStorage,
    proxy: FaultProxy,
    job_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resets, 503s and dropped responses on the follower's requests (single blob and listing)."""
    monkeypatch.setattr(limits, "MAX_BLOCKS", 4)
    container = naming.container_name(job_id)
    url = f"{proxy.url_for(ACCOUNT_NAME)}/{container}"
    got: list[bytes] = []
    listed: list[bytes] = []
    with (
        TaskOutputStorage(url, TASK, credential=azurite.credential, **fast_retries()) as through,
        JobOutputStorage(url, credential=azurite.credential, **fast_retries()) as job,
    ):

        def follow_logs() -> None:
            for event in job.follow_logs([TASK], paths=["app.log"], poll_interval=0.01):
                if isinstance(event, LogData):
                    listed.append(event.data)

        followers = [
            threading.Thread(target=lambda: got.extend(through.follow("app.log", poll_interval=0.01))),
            threading.Thread(target=follow_logs),
        ]
        proxy.set_random({"reset": 0.08, "status": 0.08, "drop_response": 0.08})
        for follower in followers:
            follower.start()
        path = tmp_path / "app.log"
        with storage.save_tracked(path, "app.log", flush_interval=0.01, settle=0):
            for i in range(300):
                with open(path, "ab") as file:
                    file.write(f"{i:05d} {'é' * (i % 5)}\n".encode())
                if i % 10 == 0:
                    time.sleep(0.05)  # long enough for some 100 polls, so each fault comes often
        for follower in followers:
            follower.join(60)
            assert not follower.is_alive()
    counts = proxy.counts
    assert counts["drop_response"] >= 5 and counts["reset"] >= 5 and counts["status"] >= 5, counts
    assert b"".join(got) == path.read_bytes()
    assert b"".join(listed) == path.read_bytes()
    assert len(storage._container.get_blob_client(f"{LOG}.1").download_blob().readall()) > 0  # parts


@pytest.mark.fault_proxy(seed=11, delay_ms=20, deadline_s=240)
def test_the_aio_follow_the_view_uses_waits_out_throttling(
    azurite: Azurite, storage: TaskOutputStorage, proxy: FaultProxy, job_id: str, monkeypatch
) -> None:
    """Issue 20: the view's live logs follow through ``batchfiles.aio``: far more throttled answers than a
    follow allows failed polls, and it reads the log to its close mark (throttled waits scaled down)."""
    from azure.storage.blob.aio import LinearRetry as AsyncLinearRetry
    from batchfiles import _throttle

    monkeypatch.setattr(_throttle, "THROTTLED_WINDOW", (0.01, 0.05))
    monkeypatch.setattr(_throttle, "NO_RETRY_AFTER", 0.01)  # answers without Retry-After
    blob = storage._container.get_blob_client(LOG)
    blob.create_append_blob()
    blob.append_block(b"before\n")
    url = f"{proxy.url_for(ACCOUNT_NAME)}/{naming.container_name(job_id)}"
    proxy.add_rule("status", times=80, status=503)

    async def main() -> bytes:
        options = fast_retries(AsyncLinearRetry)
        async with bf_aio.TaskOutputStorage(url, TASK, credential=azurite.credential, **options) as t:
            got = []
            async for chunk in t.follow("app.log", poll_interval=0.02):
                got.append(chunk)
            return b"".join(got)

    def close_when_throttled() -> None:
        wait_for(lambda: proxy.counts["status"] >= 80, "80 throttled answers")
        blob.append_block(b"after\n")
        blob.set_blob_metadata({limits.CLOSED_KEY: "1"})

    writer = threading.Thread(target=close_when_throttled)
    writer.start()
    try:
        assert asyncio.run(asyncio.wait_for(main(), 60)) == b"before\nafter\n"
    finally:
        writer.join(60)


def test_a_closed_log_in_parts_is_one_closed_output(
    storage: TaskOutputStorage, azurite: Azurite, job_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_BLOCKS", 1)
    path = tmp_path / "app.log"
    path.touch()
    with storage.save_tracked(path, "app.log", flush_interval=3600, settle=0) as save:
        for line in (b"one\n", b"two\n", b"three\n"):
            with open(path, "ab") as file:
                file.write(line)
            save.flush()
    save_parts = save.parts
    refs = sorted(storage.list("TaskLog"), key=lambda ref: ref.blob_name)
    assert [ref.blob_name for ref in refs] == save_parts
    with JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as job:
        (output,) = job.snapshot().tasks[TASK].outputs  # what list, get and logs read
    assert output.blob_names == tuple(save_parts) and output.log.state == "closed"
    assert b"".join(storage.follow("app.log")) == b"one\ntwo\nthree\n"
