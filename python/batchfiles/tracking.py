"""Tracked saves: follow a growing file and append its new bytes to an append blob, each byte once.

How it is built:

- :class:`_Engine` is the sans-IO core, shared with :mod:`batchfiles.aio`. It owns the Rust tracker
  (:class:`batchfiles._native.Tracker`, which follows the path through rotation and truncation) and
  decides what to send and when. Its work comes as generators that yield :class:`_Call` s (one storage
  call each) and are sent back each call's result, or thrown its error.
- The sync driver is one daemon thread per process (:class:`_Scheduler`) serving every
  :class:`TrackedSave`; the async driver is one task per save in the caller's event loop.

Exactly once, and one writer: every append carries ``appendpos`` = the committed length of the blob and
``If-Match`` = the ETag this save's own last write to it returned (its create, its last append, or the
claim of a resumed blob). The Rust tracker returns the same pending bytes until they are committed, so a
failed append is sent again later. Any other write to the blob (another writer's append, a re-create, a
resume by another save) changes the ETag, so the next append meets 412. Then the append counts as an
earlier try of this very append that landed (its response lost) only if the blob still bears this save's
writer token (metadata set by whoever created or resumed it last), its length is the committed length plus
the block, and its last bytes are the block (only appends can change a blob that still bears our token, so
it then holds exactly what this save sent, whoever sent the block). Anything else is a
:class:`~batchfiles.errors.TrackingError` naming the blob, kept and raised by ``flush`` and ``close``.
``close`` also checks, last, that every part still has the ETag this save left it with. So of two saves
open at once on one blob, at most one succeeds, and the blob then holds exactly its file.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import heapq
import itertools
import logging
import math
import os
import secrets
import threading
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from time import monotonic
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from . import _errors, _saving, _urls
from ._native import Tracker
from ._types import PathLike
from .errors import OutputExistsError, TrackingError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["TrackOptions", "TrackedSave"]

logger = logging.getLogger("batchfiles")

T = TypeVar("T")
#: Work of an engine: yields the calls to make, is sent their results, returns a ``T``.
Steps = Generator["_Call", Any, T]

IF_EXISTS = ("resume", "overwrite", "fail")

#: Committed blocks an append blob holds (Azure's limit); past it the save goes on in ``{name}.1``, ...
_MAX_BLOCKS = 50_000
#: Metadata marking part ``k >= 1`` (value ``str(k)``), so a blob that merely has a part's name (a rotated
#: ``app.log.1`` saved on its own, another tracked save) is never counted, deleted or overwritten as one.
_PART_KEY = "batchfiles_part"
#: Metadata holding the token of the save writing a blob: set when a save creates a part or resumes one.
_WRITER_KEY = "batchfiles_writer"
#: Error codes of a 412 on append: the ETag (``If-Match``) or the append position condition failed.
_CONDITION_CODES = ("ConditionNotMet", "AppendPositionConditionNotMet")
#: Largest append block (Azure's classic limit, accepted by every service version).
_MAX_BLOCK = 4 * 1024 * 1024
#: Once half the blocks are used, regular uploads wait for this many bytes (flushes never wait)...
_COALESCE_BYTES = 1024 * 1024
#: ... unless nothing was appended for this many flush intervals.
_STALE_INTERVALS = 10
#: Every save is polled this often (2 ``stat`` calls when idle) to see rotations and send full blocks.
_WATCH_INTERVAL = 0.25
#: While closing, the file is polled this often until it settles or the linger time is over.
_SETTLE_POLL = 0.05
#: One step sends for at most this long before other saves get their turn.
_STEP_BUDGET = 0.5
#: A storage error is kept (and the save stopped) after this many failed steps in a row...
_MAX_FAILED_STEPS = 6
#: ... retried after a backoff doubling from the first value up to the second (seconds).
_BACKOFF = (0.5, 30.0)
#: How many last bytes of an existing blob are compared with the file before resuming.
_RESUME_CHECK = 64 * 1024
#: At interpreter exit, how long the final flush of saves never closed may take.
_EXIT_TIMEOUT = 30.0

#: How the tracker's events are logged, with the path and the event's value.
_EVENT_LOGS = {
    "rotated": (logging.INFO, "%s was rotated: reading the %d bytes left in the old file first"),
    "deleted": (logging.INFO, "%s was deleted: reading the %d bytes left in the open file"),
    "truncated": (logging.WARNING, "%s was truncated or rewritten: %d bytes not yet saved are lost"),
    "skipped": (logging.WARNING, "%s was rotated too often: %d bytes of a rotated file are lost"),
}


@dataclass(frozen=True)
class _Call:
    """One storage call for a driver: ``container.get_blob_client(blob).<method>(**kwargs)``.

    ``read``: the call returns a downloader whose ``readall()`` is the result.
    """

    blob: str
    method: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    read: bool = False


class _Run:
    """Steps a generator of calls: set ``result`` or ``error`` for the last call, then ``next()``."""

    def __init__(self, steps: Steps[T]) -> None:
        self._steps = steps
        self.result: Any = None
        self.error: BaseException | None = None
        self.value: Any = None

    def next(self) -> _Call | None:
        """The next call to make, or None once the generator returned (its value is in ``value``)."""
        result, error, self.result, self.error = self.result, self.error, None, None
        try:
            return self._steps.send(result) if error is None else self._steps.throw(error)
        except StopIteration as stop:
            self.value = stop.value
            return None


@dataclass(frozen=True)
class _Outcome:
    """What one step did; :meth:`_Engine.end` schedules the next one from it."""

    kind: str  # "watch", "upload" or "flush"
    ticket: int  # the flush requests made before the step started
    started: float
    caught_up: bool = False  # every ready block was sent
    appended: int = 0
    error: Exception | None = None


def _check_options(
    blob_name: str, flush_interval: float, if_exists: str, settle: float, linger: float
) -> None:
    if not isinstance(blob_name, str) or not blob_name:
        raise ValueError(f"blob_name must be a non-empty str, not {blob_name!r}")
    if if_exists not in IF_EXISTS:
        raise ValueError(f"if_exists must be one of {IF_EXISTS}, not {if_exists!r}")
    for name, value in (("flush_interval", flush_interval), ("settle", settle), ("linger", linger)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
        if value < 0 or (value == 0 and name == "flush_interval"):
            raise ValueError(f"{name} must be {'> 0' if name == 'flush_interval' else '>= 0'}, not {value}")


def _content_type(blob_name: str) -> str:
    """``text/plain`` for logs (mimetypes does not know ``.log``), otherwise from the extension."""
    return "text/plain" if blob_name.lower().endswith((".log", ".txt")) else _saving.content_type(blob_name)


class _Engine:
    """The sans-IO state of one tracked save: the blob's parts and length, the schedule, the outcome.

    Drivers call :meth:`opening` once, then loop: :meth:`begin` a step when :meth:`wake_at` comes, run
    it, and hand its outcome to :meth:`end`. The sync driver holds a lock around :meth:`begin`,
    :meth:`end` and the requests, never around a step. Only the driver touches the tracker.
    """

    def __init__(
        self,
        container_name: str,
        blob_name: str,
        path: PathLike,
        *,
        flush_interval: float = 5.0,
        if_exists: str = "resume",
        settle: float = 1.0,
        linger: float = 5.0,
    ) -> None:
        _check_options(blob_name, flush_interval, if_exists, settle, linger)
        self.container_name = container_name
        self.blob_name = blob_name
        self.path = os.fspath(path)
        self._tracker = Tracker(self.path, 0, _MAX_BLOCK)  # a directory or an unreadable file fails here
        self._if_exists = if_exists
        self._interval, self._settle, self._linger = flush_interval, settle, linger
        self._writer = secrets.token_hex(16)  # this save's token, in the metadata of the parts it writes
        self._etags: list[str] = []  # per part, the ETag this save's last write to it returned
        self._part = 0  # index of the part being appended to
        self._length = 0  # its committed length: the next appendpos
        self._blocks = 0  # its committed block count
        self.bytes_saved = 0
        self.lost_bytes = 0
        self.polls = 0
        self.error: BaseException | None = None
        self.closed = False
        self._seen_file = False
        now = monotonic()
        self._last_append = now
        self._upload_at = now + flush_interval
        self._watch_at = now + _WATCH_INTERVAL
        self._retry_at = 0.0
        self._failures = 0
        self._flush_asked = self._flush_done = 0
        self._close_ticket = 0  # > 0 once close was asked
        self._closing_at = self._grew_at = 0.0
        self._confirming = False  # settled: a last step checks that no other writer touched the parts

    # -- names ------------------------------------------------------------------------------------------

    def part_name(self, index: int) -> str:
        return self.blob_name if index == 0 else f"{self.blob_name}.{index}"

    @property
    def parts(self) -> list[str]:
        """Blob names holding the file, in order: ``name``, then ``name.1``, ... after roll-overs."""
        return [self.part_name(index) for index in range(self._part + 1)]

    # -- opening: fail, resume or (re)create ------------------------------------------------------------

    def opening(self) -> Steps[None]:
        """Probe the blob and its parts, then resume after them, replace them, or create the blob."""
        parts = yield from self._existing_parts()
        if not parts:
            self._etags = [(yield from self._create(0))]
            return
        if self._if_exists == "fail":
            raise OutputExistsError(f"output {self.blob_name!r} already exists (if_exists='fail')")
        if self._if_exists == "resume":
            if (yield from self._holds_prefix(parts)):
                yield from self._resume(parts)
                return
            logger.warning(
                "%s does not hold the start of %s: replacing it (if_exists='resume')",
                self.blob_name,
                self.path,
            )
        yield from self._replace(len(parts))

    def _existing_parts(self) -> Steps[list[Any]]:
        """Properties of the blob and of its parts ``name.1``, ... up to the first one missing or not
        marked as that part."""
        found: list[Any] = []
        while True:
            try:
                props = yield _Call(self.part_name(len(found)), "get_blob_properties")
            except ResourceNotFoundError:
                return found
            if found and not _is_part(props, len(found)):
                return found
            found.append(props)

    def _holds_prefix(self, parts: list[Any]) -> Steps[bool]:
        """Whether the parts are append blobs whose concatenation is a prefix of the file, judged by
        their last bytes (up to ``_RESUME_CHECK``) against the file's bytes at the same offsets."""
        if any(props.blob_type != "AppendBlob" for props in parts):
            return False
        total = sum(props.size for props in parts)
        if total == 0:
            return True
        last = max(index for index, props in enumerate(parts) if props.size)
        tail = min(parts[last].size, _RESUME_CHECK)
        try:
            expected = self._tracker.read_range(total - tail, tail)
        except OSError:  # no file at the path yet
            return False
        if len(expected) < tail:
            return False
        kwargs = {"offset": parts[last].size - tail, "length": tail}
        return (yield _Call(self.part_name(last), "download_blob", kwargs, read=True)) == expected

    def _resume(self, parts: list[Any]) -> Steps[None]:
        """Claim the last part (our token in its metadata, if its ETag is still the one probed), then go on
        after the parts: a save still writing to them meets 412 on its next append."""
        name = self.part_name(len(parts) - 1)
        metadata = {**(parts[-1].metadata or {}), _WRITER_KEY: self._writer}
        condition = {"etag": parts[-1].etag, "match_condition": MatchConditions.IfNotModified}
        try:
            etag = (yield _Call(name, "set_blob_metadata", {"metadata": metadata, **condition}))["etag"]
        except HttpResponseError as err:
            if err.status_code != 412:
                raise
            now = yield _Call(name, "get_blob_properties")  # an earlier try landed, its response lost?
            if (now.metadata or {}).get(_WRITER_KEY) != self._writer or now.size != parts[-1].size:
                raise TrackingError(
                    f"{name!r} in container {self.container_name!r} changed while this save was resuming "
                    f"it: another writer is writing to it; stopped saving {self.path}"
                ) from err
            etag = now.etag
        self._etags = [props.etag for props in parts[:-1]] + [etag]
        total = sum(props.size for props in parts)
        self._part = len(parts) - 1
        self._length = parts[-1].size
        self._blocks = parts[-1].append_blob_committed_block_count or 0
        self._tracker = Tracker(self.path, total, _MAX_BLOCK)
        logger.info("resuming the tracked save of %s at byte %d of %s", self.path, total, self.blob_name)

    def _replace(self, count: int) -> Steps[None]:
        """Delete the parts after the first (last first), then create the blob afresh."""
        for index in reversed(range(1, count)):
            with contextlib.suppress(ResourceNotFoundError):
                yield _Call(self.part_name(index), "delete_blob")
        self._etags = [(yield from self._create(0))]

    def _create(self, index: int) -> Steps[str]:
        """Create part ``index`` empty, bearing this save's token; returns its ETag. A part after the
        first is marked, and replaces only a blob marked as that part (an earlier try, or a leftover of an
        earlier save), never another blob."""
        name = self.part_name(index)
        metadata = {_WRITER_KEY: self._writer}
        kwargs: dict[str, Any] = {
            "content_settings": ContentSettings(content_type=_content_type(self.blob_name)),
            "metadata": metadata,
        }
        if index:
            metadata[_PART_KEY] = str(index)
            try:
                created = yield _Call(
                    name, "create_append_blob", {**kwargs, "match_condition": MatchConditions.IfMissing}
                )
                return created["etag"]
            except ResourceExistsError:
                pass
            if not _is_part((yield _Call(name, "get_blob_properties")), index):
                raise TrackingError(
                    f"{name!r} exists and is not part {index} of {self.blob_name!r}: stopped saving "
                    f"{self.path} rather than overwrite it"
                )
        return (yield _Call(name, "create_append_blob", kwargs))["etag"]

    # -- schedule ---------------------------------------------------------------------------------------

    def _plan(self) -> tuple[float, str]:
        """When the next step is due, and its kind: "confirm" (the last one), "flush" (min 0), "upload"
        (regular) or "watch"."""
        if self._confirming:
            return self._retry_at, "confirm"
        if self._flush_asked > self._flush_done:
            return self._retry_at, "flush"
        if self._close_ticket:
            return max(self._retry_at, self._upload_at), "flush"
        if self._upload_at <= self._watch_at:
            return max(self._retry_at, self._upload_at), "upload"
        return max(self._retry_at, self._watch_at), "watch"

    def wake_at(self) -> float:
        """The ``monotonic()`` time the next step is due; infinite once closed."""
        return math.inf if self.closed else self._plan()[0]

    def request_flush(self) -> int:
        """Ask for everything written so far to be sent; returns the ticket :meth:`flushed` takes."""
        self._flush_asked += 1
        return self._flush_asked

    def request_close(self, now: float) -> None:
        """Final flush, then poll until the file settles or the linger time is over (idempotent)."""
        if not self._close_ticket and not self.closed:
            self._close_ticket = self.request_flush()
            self._closing_at = self._grew_at = now

    def flushed(self, ticket: int) -> bool:
        """Whether the flush ``ticket`` is done (or the save is closed); raises the kept error."""
        self.raise_error()
        return self.closed or self._flush_done >= ticket

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self, error: BaseException, *, log: bool = True) -> None:
        """Keep ``error`` and close, when the save cannot go on (nothing once closed)."""
        if self.closed:
            return
        self.error, self.closed = error, True
        if log:
            logger.error(
                "tracked save of %s to %s stopped: %s",
                self.path,
                self.part_name(self._part),
                _errors.redact(str(error)),
            )

    def begin(self, now: float) -> Steps[_Outcome] | None:
        """The step due at ``now``, or None if none is due."""
        when, kind = self._plan()
        if self.closed or now < when:
            return None
        if kind == "confirm":
            return self._confirm(_Outcome(kind, self._flush_asked, now))
        min_bytes = {"flush": 0, "upload": self._min_bytes(now), "watch": _MAX_BLOCK}[kind]
        return self._step(_Outcome(kind, self._flush_asked, now), min_bytes)

    def end(self, outcome: _Outcome, now: float) -> None:
        """Record a step's outcome and plan the next one."""
        if outcome.error is not None:
            self._failed(outcome.error, now)
            return
        self._failures, self._retry_at = 0, 0.0
        if outcome.kind == "confirm":
            self.closed = True
            return
        if outcome.appended:
            self._grew_at = now
        if not outcome.caught_up:  # out of time with more to send: go on after the other saves
            self._upload_at = now
            return
        if outcome.kind == "watch":
            self._watch_at = (now // _WATCH_INTERVAL + 1) * _WATCH_INTERVAL  # one wake-up for every save
            return
        self._upload_at = outcome.started + self._interval
        if outcome.kind == "flush":
            self._flush_done = max(self._flush_done, outcome.ticket)
        if self._close_ticket and self._flush_done >= self._close_ticket:
            self._upload_at = now + _SETTLE_POLL
            self._check_settled(now)

    def _min_bytes(self, now: float) -> int:
        """Bytes a regular upload waits for: none until half the blocks are used, then more and more,
        unless nothing was appended for ``_STALE_INTERVALS`` flush intervals."""
        if self._blocks < _MAX_BLOCKS // 2 or now - self._last_append >= _STALE_INTERVALS * self._interval:
            return 0
        return _COALESCE_BYTES if self._blocks < _MAX_BLOCKS * 9 // 10 else _MAX_BLOCK

    def _check_settled(self, now: float) -> None:
        """While closing: confirm (then close) once the file has not grown for ``settle`` s, or ``linger``
        s passed."""
        settled = self._seen_file and now - self._grew_at >= self._settle
        if not settled and now - self._closing_at < self._linger:
            return
        if not self._seen_file:
            logger.warning("%s never appeared: nothing was saved to %s", self.path, self.blob_name)
        self._confirming = True

    def _failed(self, exc: Exception, now: float) -> None:
        """Retry a transient failure after a backoff; keep anything else, or too many in a row."""
        self._failures += 1
        if _errors.is_transient(exc) and self._failures < _MAX_FAILED_STEPS:
            delay = min(_BACKOFF[0] * 2 ** (self._failures - 1), _BACKOFF[1])
            self._retry_at = now + delay
            logger.warning(
                "tracked save of %s to %s failed (%s); trying again in %.1f s",
                self.path,
                self.part_name(self._part),
                _errors.redact(str(exc)),
                delay,
            )
            return
        self.stop(self._kept_error(exc))

    def _kept_error(self, exc: Exception) -> BaseException:
        what = f"{self.part_name(self._part)!r} in container {self.container_name!r}"
        gave_up = f"gave up saving {self.path} to {what} after {self._failures} failures"
        return _errors.kept_error(exc, self.container_name, what, gave_up=gave_up)

    # -- sending ----------------------------------------------------------------------------------------

    def _step(self, outcome: _Outcome, min_bytes: int) -> Steps[_Outcome]:
        """Send ready blocks (of at least ``min_bytes``) until caught up or out of time."""
        appended = 0
        try:
            while True:
                block, events, more = self._tracker.poll(min_bytes)
                self.polls += 1
                self._note(events)
                if block is None:
                    break
                yield from self._append(block[0], block[1])
                appended += len(block[0])
                if not more:
                    break
                if monotonic() - outcome.started >= _STEP_BUDGET:
                    return replace(outcome, appended=appended)
        except Exception as exc:  # kept or retried by end(); the block stays pending in the tracker
            return replace(outcome, appended=appended, error=exc)
        return replace(outcome, appended=appended, caught_up=True)

    def _append(self, data: bytes, crc: str) -> Steps[None]:
        """Append one block at the committed length, exactly once."""
        if self._blocks >= _MAX_BLOCKS:
            self._etags.append((yield from self._create(self._part + 1)))
            self._part, self._length, self._blocks = self._part + 1, 0, 0
            logger.info(
                "%s is full: the tracked save of %s goes on in %s", self.blob_name, self.path, self.parts[-1]
            )
        kwargs = {
            "data": data,
            "length": len(data),
            "appendpos_condition": self._length,
            "etag": self._etags[-1],
            "match_condition": MatchConditions.IfNotModified,
            "headers": _saving.crc_headers(crc),
        }
        try:
            etag = (yield _Call(self.part_name(self._part), "append_block", kwargs))["etag"]
        except HttpResponseError as err:
            if err.status_code != 412 or err.error_code not in _CONDITION_CODES:
                raise
            etag = yield from self._check_landed(data, err)
        self._etags[-1] = etag
        self._tracker.commit()
        self._length += len(data)
        self._blocks += 1
        self.bytes_saved += len(data)
        self._last_append = monotonic()

    def _check_landed(self, data: bytes, err: HttpResponseError) -> Steps[str]:
        """After a 412 on append: the blob's new ETag if an earlier try of this very append landed (the
        blob bears our token, is the committed length plus the block long, and ends with the block),
        else :class:`TrackingError`. Only appends can have changed a blob bearing our token since our
        last write, so it then holds exactly what this save sent."""
        name, size = self.part_name(self._part), len(data)
        props = yield _Call(name, "get_blob_properties")
        if (props.metadata or {}).get(_WRITER_KEY) != self._writer:
            problem = "was replaced or resumed by another writer"
        elif props.size != self._length + size:
            problem = (
                f"is {props.size} bytes long, not {self._length} (or {self._length + size} with the block "
                "being appended): another writer appended to it"
            )
        else:
            kwargs = {
                "offset": self._length,
                "length": size,
                "etag": props.etag,
                "match_condition": MatchConditions.IfNotModified,
            }
            try:
                landed = yield _Call(name, "download_blob", kwargs, read=True)
            except HttpResponseError as read_err:
                if read_err.status_code != 412:
                    raise
                landed = None  # changed again since its properties were read
            if landed == data:
                logger.debug("an earlier try of the append at %d to %s had landed", self._length, name)
                return props.etag
            problem = f"does not end with the block appended at {self._length}: another writer wrote to it"
        raise TrackingError(
            f"{name!r} in container {self.container_name!r} {problem}; stopped saving {self.path}"
        ) from err

    def _confirm(self, outcome: _Outcome) -> Steps[_Outcome]:
        """The last step of a close: every part must still have the ETag this save's last write to it
        returned, else another writer wrote to it after us (:class:`TrackingError`)."""
        try:
            for index, etag in enumerate(self._etags):
                name = self.part_name(index)
                try:
                    props = yield _Call(name, "get_blob_properties")
                except ResourceNotFoundError as err:
                    if err.error_code != "BlobNotFound":
                        raise
                    props = None
                if props is None or props.etag != etag:
                    problem = "was deleted" if props is None else "was written to"
                    raise TrackingError(
                        f"{name!r} in container {self.container_name!r} {problem} by another writer after "
                        f"this save's last append; {self.path} is not what it holds"
                    )
        except Exception as exc:  # kept or retried by end()
            return replace(outcome, error=exc)
        return outcome

    def _note(self, events: list[tuple[str, int]]) -> None:
        for name, value in events:
            if name == "opened":
                self._seen_file = True
                continue
            if name in ("truncated", "skipped"):
                self.lost_bytes += value
            level, message = _EVENT_LOGS[name]
            logger.log(level, message, self.path, value)


def _is_part(props: Any, index: int) -> bool:
    """Whether blob properties are those of part ``index`` (>= 1) of a tracked save."""
    return (props.metadata or {}).get(_PART_KEY) == str(index)


def _drive(execute: Any, steps: Steps[T]) -> T:
    """Run ``steps``, making each call with ``execute`` and handing back its result or error."""
    run = _Run(steps)
    while (call := run.next()) is not None:
        try:
            run.result = execute(call)
        except Exception as exc:  # the engine decides: handled, retried later, or kept
            run.error = exc
    return run.value


class _Scheduler:
    """The one daemon thread that drives every sync :class:`TrackedSave` of the process.

    It sleeps on a condition variable until the earliest step is due, runs it, and ends once no save
    is open. Steps come from a heap of (wake time, order, save): an entry is pushed whenever a save's
    wake time may have changed (a step ended, a flush or close was asked); an entry gone stale is
    dropped when it comes up, since its engine has nothing due then.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._open: set[TrackedSave] = set()
        self._queue: list[tuple[float, int, TrackedSave]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        atexit.register(self._at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def add(self, save: TrackedSave) -> None:
        with self.cond:
            self._open.add(save)
            self.wake(save)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="batchfiles-tracking", daemon=True)
                self._thread.start()

    def wake(self, save: TrackedSave) -> None:
        """Queue ``save`` at its wake time and wake the waiters; call with ``cond`` held."""
        if save._engine.closed:
            self._open.discard(save)
        else:
            heapq.heappush(self._queue, (save._engine.wake_at(), next(self._order), save))
        self.cond.notify_all()

    def _loop(self) -> None:
        with self.cond:
            try:
                while self._open:
                    when, _, save = self._queue[0]
                    now = monotonic()
                    if when > now:
                        self.cond.wait(when - now)
                        continue
                    heapq.heappop(self._queue)
                    step = save._engine.begin(now)
                    if step is not None:
                        self._run(save, step)
            except BaseException as exc:  # a bug: fail the open saves, so flush and close raise it
                for save in self._open:
                    save._engine.stop(_errors.stopped_error("the tracking thread stopped", exc))
            finally:  # the next save starts a new thread
                self._open.clear()
                self._queue.clear()
                self._thread = None
                self.cond.notify_all()

    def _after_fork(self) -> None:
        """In a forked child: no thread, a fresh lock (the parent's may be held), and the inherited saves
        stopped with an error (the parent saves them; a second writer would break both)."""
        self.cond = threading.Condition()
        inherited, self._open, self._queue, self._thread = self._open, set(), [], None
        for save in inherited:
            error = TrackingError(f"{save._engine.path} is saved by the process this one was forked from")
            save._engine.stop(error, log=False)

    def _run(self, save: TrackedSave, step: Steps[_Outcome]) -> None:
        """Run one step without the lock, then record its outcome."""
        self.cond.release()
        try:
            outcome = _drive(save._execute, step)
        finally:
            self.cond.acquire()
        save._engine.end(outcome, monotonic())
        self.wake(save)

    def _at_exit(self) -> None:
        """Saves never closed get their final flush (without settle or linger) before the process ends."""
        with self.cond:
            saves = list(self._open)
            for save in saves:
                save._engine._settle = save._engine._linger = 0.0
                save._engine.request_close(monotonic())
                self.wake(save)
            self.cond.wait_for(lambda: all(save._engine.closed for save in saves), _EXIT_TIMEOUT)


_scheduler = _Scheduler()


class TrackOptions(TypedDict, total=False):
    """Options of a tracked save; the defaults are those of :meth:`TrackedSave.start`."""

    flush_interval: float
    if_exists: str
    settle: float
    linger: float


class _TrackedSaveBase:
    """What the sync and async :class:`TrackedSave` share: the engine, and read-only properties."""

    def __init__(self, container: Any, engine: _Engine) -> None:
        """Private: use ``start``."""
        self._engine = engine
        self._blob = functools.cache(container.get_blob_client)
        self._url = _urls.public_url(self._blob(engine.blob_name).url)

    @property
    def bytes_saved(self) -> int:
        """Bytes this save appended (not counting those a resumed blob already held)."""
        return self._engine.bytes_saved

    @property
    def lost_bytes(self) -> int:
        """Bytes that truncation or too fast rotation destroyed before they could be read."""
        return self._engine.lost_bytes

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the save, raised again by ``flush`` and ``close``."""
        return self._engine.error

    @property
    def blob_name(self) -> str:
        return self._engine.blob_name

    @property
    def parts(self) -> list[str]:
        """The blob names holding the file, in order: ``blob_name``, then ``blob_name.1``, ... (each
        append blob holds at most 50,000 blocks; the save coalesces appends long before that)."""
        return self._engine.parts

    @property
    def url(self) -> str:
        """The blob's URL, without any SAS."""
        return self._url

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._engine.path!r} -> {self.blob_name!r}>"


class TrackedSave(_TrackedSaveBase):
    """A file followed and appended to an append blob exactly once. A context manager.

    Every ``flush_interval`` seconds what the file gained is appended to the blob (full 4 MiB blocks go
    at once). The path is followed like ``tail -F``: through rotation (the old file is read to its end
    first), deletion, and truncation (bytes that could not be read are counted in :attr:`lost_bytes` and
    logged); a path that does not exist yet is waited for. One background thread serves every tracked
    save of the process; an idle save costs two ``stat`` calls every 0.25 s.

    One writer per blob: a save that finds another writer's work on its blob (an append, a re-create, a
    save that resumed it) stops with :class:`~batchfiles.errors.TrackingError`, and ``close`` checks,
    last, that nothing was written after its final append. So of two saves open at once on one blob at
    most one succeeds (usually the later one), and the blob then holds exactly its file.
    """

    @classmethod
    def start(
        cls, container: ContainerClient, blob_name: str, path: PathLike, **options: Unpack[TrackOptions]
    ) -> TrackedSave:
        """Start following ``path`` into the append blob ``blob_name`` of ``container``.

        Options: ``flush_interval=5.0`` seconds between appends. ``if_exists="resume"`` continues a blob
        (and its parts) that holds the start of the file, without sending those bytes again (a save still
        writing to it then stops with :class:`~batchfiles.errors.TrackingError`), and replaces any other
        blob with a warning; ``"overwrite"`` always starts afresh; ``"fail"`` raises
        :class:`~batchfiles.errors.OutputExistsError`. ``settle=1.0`` and ``linger=5.0``: see
        :meth:`close`. A directory or unreadable file raises :class:`OSError`, a bad option
        :class:`ValueError`; then nothing is left running.
        """
        save = cls(container, _Engine(container.container_name, blob_name, path, **options))
        with _errors.storage_errors(save._engine.container_name, blob_name):
            _drive(save._execute, save._engine.opening())
        _scheduler.add(save)
        return save

    def _execute(self, call: _Call) -> Any:
        result = getattr(self._blob(call.blob), call.method)(**call.kwargs)
        return result.readall() if call.read else result

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything written to the file so far is in the blob.

        Raises the kept :attr:`error`, or :class:`TimeoutError` after ``timeout`` seconds.
        """
        with _scheduler.cond:
            ticket = self._engine.request_flush()
            _scheduler.wake(self)
            if not _scheduler.cond.wait_for(lambda: self._engine.flushed(ticket), timeout):
                raise TimeoutError(f"{self._engine.path} was not flushed within {timeout} s")

    def close(self) -> None:
        """Save everything up to the end of the file, then keep following it until it has not grown
        for ``settle`` seconds or ``linger`` seconds have passed; raises the kept :attr:`error`.

        A file that never appeared makes ``close`` wait the whole ``linger`` and log a warning; its
        blob stays empty. Safe to call more than once.
        """
        with _scheduler.cond:
            self._engine.request_close(monotonic())
            _scheduler.wake(self)
            _scheduler.cond.wait_for(lambda: self._engine.closed)
        self._engine.raise_error()

    def __enter__(self) -> TrackedSave:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
