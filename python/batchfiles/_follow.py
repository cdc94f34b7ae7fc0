"""Following live outputs without I/O: offsets, roll-over parts, close marks, replaced blobs, and what to
request next; one output (:func:`follow_blob`) or many logs of a job from one listing per poll
(:func:`follow_logs`, which hands out the public events :class:`LogData`, :class:`LogRestarted`,
:class:`LogClosed` and :class:`LogsPolled`; :func:`job_logs` sets it up for ``follow_logs`` of a job's
storage). The drivers (``storage.py``, ``aio/_storage.py``) make the requests and sleep the sleeps.

A follow is a generator. It yields :class:`Read`, :class:`Probe` and :class:`Listing` requests (the driver
sends back the result, or throws the storage error in), :class:`Sleep` s, and what it hands out. Bytes are
handed out only once read, and an offset moves only past bytes handed out, so a failed or repeated request
never duplicates or skips one. Which blobs are a job's logs, how parts fold into one log and what a log's
metadata says come from :mod:`batchfiles.snapshot`, as for ``snapshot()``.

How a follower knows where a log goes on and where it ends, from what tracked saves leave in storage:

- parts: a save goes on in ``{name}.1``, ``{name}.2``, ... (metadata ``batchfiles_part``) once a part holds
  :data:`~._tracking.limits.MAX_BLOCKS` blocks, the most an append blob takes. A part is final once it is
  full (its committed block count) or, in a listing, once the next part is there (then one more read of it
  makes sure nothing landed in between).
- the close mark: a save that closed cleanly marks its last part (``batchfiles_closed=1``), after its last
  append. A blob that is not an append blob is complete as it is. Either is read to its end, then the
  follow of it ends.
- a replaced blob: a part shorter than what was read of it, with another creation time or type, with fewer
  committed blocks, or gone, is not the blob that was followed (``if_exists="overwrite"``, a new ``run``).
  Creation times have whole seconds: a blob created again within the second, as long or longer, is told
  by its writer token (``batchfiles_writer``). A new token is also what a resumed save leaves on the blob
  it goes on with, so the next read starts :data:`RECHECK` bytes early: the blob is the one read so far
  only if those bytes are the ones read there before.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from . import _errors, _scope, _throttle
from ._tracking import limits
from .errors import OutputReplacedError
from .kinds import KindLike
from .snapshot import (
    JobSnapshot,
    LogState,
    OutputSnapshot,
    build,
    check_on_invalid,
    log_state,
    part_of,
    warn_skipped,
)

logger = logging.getLogger("batchfiles")

#: The most bytes one read asks for; a follow with more to read reads again at once.
CHUNK = 4 * 1024 * 1024
#: Failed polls in a row (each already retried by the storage client) before a follow gives up.
MAX_FAILED_POLLS = 6
#: The longest wait between failed polls, seconds.
MAX_BACKOFF = 30.0
#: ``--tail``: the first window read back from a log's end; it grows fourfold until it holds the lines.
TAIL_WINDOW = 64 * 1024
#: The last bytes read of a part that are kept, to tell a resumed blob (they are still there) from one
#: written again by another writer (they are not) when its writer token changes.
RECHECK = 4096


# --- requests and results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """Bytes ``offset`` to ``offset + length`` of ``blob`` (fewer at its end); with ``etag``, only if the
    blob changed (``If-None-Match``: 304 otherwise). Result: ``(bytes, properties)``."""

    blob: str
    offset: int
    length: int
    etag: str | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        """The ``download_blob`` options."""
        options: dict[str, Any] = {"offset": self.offset, "length": self.length, "decompress": False}
        if self.etag is not None:
            options.update(etag=f'"{self.etag}"', match_condition=MatchConditions.IfModified)
        return options


@dataclass(frozen=True)
class Probe:
    """The properties of ``blob`` (``get_blob_properties``)."""

    blob: str


@dataclass(frozen=True)
class Listing:
    """The blobs whose names start with ``prefix``, with their metadata (List Blobs, as a snapshot lists):
    a list of :class:`batchfiles._listing.Listed` records, every page of it."""

    prefix: str


@dataclass(frozen=True)
class Sleep:
    seconds: float


Request = Read | Probe | Listing
#: A follow: yields requests, sleeps and what it hands out; is sent each request's result.
Follow = Generator[Any, Any, None]


@dataclass(frozen=True)
class Info:
    """What a follower needs of a blob's properties."""

    size: int
    etag: str
    created: datetime | None  # (None: not said, as in a listing)
    append: bool | None  # an append blob: it may grow (None: not said)
    blocks: int | None  # committed blocks (None: not said)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def closed(self) -> bool:
        """Complete as it is: marked closed by its writer, or not an append blob."""
        return self.append is False or self.metadata.get(limits.CLOSED_KEY) == "1"

    @property
    def writer(self) -> str | None:
        """The token of the tracked save that created or resumed it last."""
        return self.metadata.get(limits.WRITER_KEY)

    def is_part(self, name: str, index: int) -> bool:
        """Whether the blob ``name`` with this info is part ``index`` (>= 1) of a save."""
        return part_of(name, self.metadata)[1] == index


def info_of(props: Any) -> Info:
    """The info of ``BlobProperties`` (a probe's, or a download's: then the size is the blob's, from the
    ``Content-Range`` total, not the range's) or of a listed blob (:class:`batchfiles._listing.Listed`,
    which may not say its creation time or type: a blob bearing a tracked save's writer token is an append
    blob, as tracked saves write no other)."""
    size = props.size or 0
    content_range = getattr(props, "content_range", None)
    if content_range and "/" in content_range:
        total = content_range.rpartition("/")[2]
        if total.isascii() and total.isdigit():
            size = int(total)
    metadata = {k.lower(): v for k, v in (props.metadata or {}).items()}
    kind = getattr(props, "blob_type", None)
    if kind is not None:
        append: bool | None = str(getattr(kind, "value", kind)) == "AppendBlob"
    else:
        append = True if limits.WRITER_KEY in metadata else None
    return Info(
        size=size,
        etag=(props.etag or "").strip('"'),
        created=getattr(props, "creation_time", None),
        append=append,
        blocks=getattr(props, "append_blob_committed_block_count", None),
        metadata=metadata,
    )


def status(err: BaseException) -> int | None:
    return err.status_code if isinstance(err, HttpResponseError) else None


def not_found(err: BaseException) -> bool:
    """A blob that is not there (a missing container is an error, not a blob to wait for)."""
    if not isinstance(err, ResourceNotFoundError):
        return False
    code = str(getattr(err.error_code, "value", err.error_code) or "")
    return code != "ContainerNotFound"


class Replaced(Exception):
    """The blob followed was replaced; ``str()`` says how."""


class ShortRead(Exception):
    """A read returned fewer bytes than the blob holds there: read again (treated as transient)."""


# --- options ------------------------------------------------------------------------------------------------


def check_options(start: int, poll_interval: float, idle_timeout: float | None) -> None:
    """Raise :class:`ValueError` (or :class:`TypeError`) for a bad option of ``follow``."""
    if isinstance(start, bool) or not isinstance(start, int):
        raise TypeError(f"start must be an int (a byte offset), not {type(start).__name__}")
    for name, value in (("poll_interval", poll_interval), ("idle_timeout", idle_timeout)):
        if value is None and name == "idle_timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
        if value < 0 or (value == 0 and name == "poll_interval"):
            raise ValueError(f"{name} must be {'> 0' if name == 'poll_interval' else '>= 0'}, not {value}")


# --- one followed output ------------------------------------------------------------------------------------


class Stream:
    """One followed output: its blob and parts, how far it was read, and what was seen of it.

    ``position`` counts the bytes of the parts before the current one plus ``offset``, read or skipped;
    bytes before ``start`` (absolute; negative: from the end, resolved by the first look) are skipped.
    ``recent`` holds the last bytes read of the current part, up to ``offset``; ``check`` is set when the
    part's writer token changed after bytes of it were read: the next read starts at ``recent``.
    """

    def __init__(self, name: str, start: int = 0) -> None:
        self.name = name
        self.start = start
        self.part = 0
        self.offset = 0  # in the current part
        self.position = 0
        self.info: Info | None = None  # of the current part, last seen
        self.done = False  # read to the end of a closed (or complete) blob
        self.recent = b""
        self.check = False

    def part_name(self, index: int | None = None) -> str:
        index = self.part if index is None else index
        return self.name if index == 0 else f"{self.name}.{index}"

    @property
    def drained(self) -> bool:
        return self.info is not None and self.offset >= self.info.size

    @property
    def full(self) -> bool:
        """The current part takes no more blocks: the save goes on in the next part."""
        return self.info is not None and (self.info.blocks or 0) >= limits.MAX_BLOCKS

    def observe(self, info: Info) -> None:
        """Take the current part's latest properties; :class:`Replaced` if it is not the blob read so far."""
        seen = self.info
        if seen is not None:
            if info.size < self.offset:
                raise Replaced(f"it is {info.size} bytes long, shorter than the {self.offset} already read")
            if seen.created and info.created and seen.created != info.created:
                raise Replaced("it was created again")
            if None not in (seen.append, info.append) and seen.append != info.append:
                raise Replaced("it is another type of blob")
            if seen.blocks is not None and info.blocks is not None and info.blocks < seen.blocks:
                raise Replaced("it has fewer blocks than before")
            if self.part and info.metadata.get(limits.PART_KEY) != str(self.part):
                raise Replaced(f"{self.part_name()!r} is no longer part {self.part} of it")
            if info.writer != seen.writer and self.offset:
                if not self.recent:  # bytes skipped, not read: nothing to compare
                    raise Replaced("another writer wrote it")
                self.check = True
            if None in (info.created, info.append, info.blocks):  # what a listing does not say
                created = seen.created if info.created is None else info.created
                append = seen.append if info.append is None else info.append
                blocks = seen.blocks if info.blocks is None else info.blocks
                info = Info(info.size, info.etag, created, append, blocks, info.metadata)
        self.info = info

    def skip(self) -> None:
        """Skip the bytes of the current part before ``start`` without reading them."""
        if self.info is not None and self.position < self.start:
            jump = min(self.start - self.position, self.info.size - self.offset)
            if jump:
                self.offset += jump
                self.position += jump
                self.recent = b""

    def reset(self) -> None:
        """From the start again (the blob was replaced)."""
        self.__init__(self.name)  # type: ignore[misc]

    def take(self, offset: int, data: bytes) -> bytes:
        """Bytes read at ``offset`` of the current part: those to hand out (none before ``start``). While
        ``check`` is set, a read must start at ``recent`` and begin with those bytes (else
        :class:`Replaced`); one that started at the offset, sent before the new writer was seen, is not
        used (the next read checks)."""
        if self.check:
            if offset == self.offset:
                return b""
            back = len(self.recent)
            if offset != self.offset - back:  # a bug: reads follow the offset
                raise AssertionError(f"read at {offset}, expected {self.offset - back}")
            if data[:back] != self.recent:
                raise Replaced("another writer wrote it again")
            self.check = False
            data = data[back:]
        elif offset != self.offset:  # a bug: reads follow the offset
            raise AssertionError(f"read at {offset}, expected {self.offset}")
        before = self.position
        self.offset += len(data)
        self.position += len(data)
        self.recent = data[-RECHECK:] if len(data) >= RECHECK else (self.recent + data)[-RECHECK:]
        return data[max(0, self.start - before) :] if before < self.start else data

    def next_part(self) -> None:
        self.part += 1
        self.offset = 0
        self.info = None
        self.recent = b""
        self.check = False

    def read(self, length: int | None = None, *, conditional: bool = False) -> Read:
        """The next read of the current part; ``conditional``: only if it changed, when all of it was read.
        While ``check`` is set, the read starts ``len(recent)`` bytes early."""
        length = CHUNK if length is None else length
        if self.check:
            back = len(self.recent)
            return Read(self.part_name(), self.offset - back, back + length)
        etag = self.info.etag if conditional and self.info is not None and self.drained else None
        return Read(self.part_name(), self.offset, length, etag)


def checked_read(request: Read, result: tuple[bytes, Any]) -> tuple[bytes, Info]:
    """The bytes and info of a read; :class:`ShortRead` if fewer bytes came than the blob holds there."""
    data, props = result
    info = info_of(props)
    expected = max(0, min(request.length, info.size - request.offset))
    if len(data) != expected:
        raise ShortRead(f"{request.blob}: {len(data)} bytes at {request.offset}, expected {expected}")
    return data, info


class Retry:
    """Failed polls in a row: the wait before the next, or the error that ends the follow.

    Throttling (``_errors.is_throttling``: the account is over its limits) is waited out for as long as it
    lasts (or ``throttled_patience`` throttled polls in a row, if set), each wait drawn as the throttling
    module draws a throttled request's (:func:`._throttle.throttled_backoff`), and said once as a warning.
    Other transient failures end the follow after :data:`MAX_FAILED_POLLS` in a row; any other error at once.
    """

    def __init__(
        self,
        poll_interval: float,
        what: str,
        *,
        throttled_patience: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.poll_interval, self.what, self.patience = poll_interval, what, throttled_patience
        self.rng = rng or random.Random()
        self.failures = 0  # failed polls in a row, throttled ones not counted
        self.throttled = 0  # throttled polls in a row
        self.said = False  # that storage is throttling

    def succeeded(self) -> None:
        self.failures = self.throttled = 0

    def failed(self, exc: Exception) -> float:
        """The wait before trying again; raises ``exc`` if it is not transient or too many failed."""
        if _errors.is_throttling(exc):
            return self._throttled(exc)
        if not (_errors.is_transient(exc) or isinstance(exc, ShortRead)):
            raise exc
        self.failures += 1
        if self.failures >= MAX_FAILED_POLLS:
            raise exc
        delay = min(self.poll_interval * 2 ** (self.failures - 1), MAX_BACKOFF)
        logger.warning(
            "following %s failed (%s); trying again in %.1f s", self.what, _errors.first_line(exc), delay
        )
        return delay

    def _throttled(self, exc: Exception) -> float:
        if self.patience is not None and self.throttled >= self.patience:
            raise exc
        wait = _throttle.throttled_backoff(self.throttled, _errors.retry_after(exc), self.rng)
        self.throttled += 1
        level = logging.DEBUG if self.said else logging.WARNING
        self.said = True
        logger.log(
            level, "%s: following %s waits it out, polling less often", _errors.throttling(exc), self.what
        )
        return max(wait, self.poll_interval)


# --- one blob: a conditional read per poll ------------------------------------------------------------------


def follow_blob(
    name: str,
    *,
    start: int = 0,
    poll_interval: float = 1.0,
    idle_timeout: float | None = None,
    clock: Callable[[], float],
    where: str = "",
) -> Follow:
    """Follow the blob ``name`` and its parts; hands out ``bytes``. Each poll is one read of the current
    part from the offset, conditional on its ETag: an unchanged blob costs one small request (a 304).
    Ends once a closed blob is read to its end, or after ``idle_timeout`` seconds without new bytes (0:
    as soon as it is caught up; looked at only after a poll that succeeded); :class:`OutputReplacedError`
    if the blob is replaced. Throttling is waited out for as long as it lasts (see :class:`Retry`)."""
    check_options(start, poll_interval, idle_timeout)
    stream = Stream(name, start)
    retry = Retry(poll_interval, f"{name!r}{where}")
    located = start >= 0
    grew_at = clock()
    while True:
        try:
            if not located:
                stream.start = max(0, (yield from _total(stream)) + start)
                located = True
            data, more = yield from _poll_blob(stream)
        except Replaced as why:
            raise OutputReplacedError(
                f"{stream.part_name()!r}{where} was replaced while it was followed ({why}) after "
                f"{stream.position} bytes: follow it again to read the new one"
            ) from None
        except Exception as exc:  # transient: try again after a backoff; else raised
            yield Sleep(retry.failed(exc))
            continue
        retry.succeeded()
        if data:
            grew_at = clock()
            yield data
        if stream.done:
            return
        if more:
            continue
        if idle_timeout is not None and clock() - grew_at >= idle_timeout:
            return
        yield Sleep(poll_interval)


def _total(stream: Stream) -> Generator[Any, Any, int]:
    """The bytes of the blob and its parts now (0 if there is none yet): for a start from the end."""
    total, index = 0, 0
    while True:
        name = stream.part_name(index)
        try:
            info = info_of((yield Probe(name)))
        except Exception as exc:
            if not_found(exc):
                return total
            raise
        if index and not info.is_part(name, index):
            return total
        total += info.size
        if (info.blocks or 0) < limits.MAX_BLOCKS:
            return total
        index += 1


def _poll_blob(stream: Stream) -> Generator[Any, Any, tuple[bytes, bool]]:
    """One look at the current part: (the bytes to hand out, whether to read again at once). Past a full
    part, the next one is looked for first; while it is not there, the full part may still get the close
    mark (a save rolls over only when it appends again), so it is looked at too."""
    info = stream.info
    if info is not None and stream.drained and stream.full and not info.closed and not stream.check:
        moved = yield from _next_part(stream)
        if moved is not None:
            return moved
    name = stream.part_name()
    request, data = None, b""
    try:
        if stream.info is None and stream.position < stream.start:  # skip to start without reading
            info = info_of((yield Probe(name)))
        else:
            request = stream.read(conditional=True)
            try:
                data, info = checked_read(request, (yield request))
            except HttpResponseError as err:
                if status(err) == 304:
                    return b"", False
                if status(err) != 416:  # nothing at the offset: changed without growing, or shorter
                    raise
                request, info = None, info_of((yield Probe(name)))
    except Exception as exc:
        if not not_found(exc):
            raise
        if stream.info is not None:
            raise Replaced(f"{name!r} was deleted") from None
        return b"", False  # not there yet
    return _took(stream, info, request, data)


def _next_part(stream: Stream) -> Generator[Any, Any, tuple[bytes, bool] | None]:
    """Read the start of the part after the current (full) one and go on there; None if it is not there."""
    request = Read(stream.part_name(stream.part + 1), 0, CHUNK)
    try:
        try:
            data, info = checked_read(request, (yield request))
        except HttpResponseError as err:
            if status(err) != 416:  # empty yet
                raise
            data, info = b"", info_of((yield Probe(request.blob)))
    except Exception as exc:
        if not_found(exc):
            return None
        raise
    if not info.is_part(request.blob, stream.part + 1):
        return None  # a blob with a part's name that is not one: wait for the part
    stream.next_part()
    return _took(stream, info, request, data)


def _took(stream: Stream, info: Info, request: Read | None, data: bytes) -> tuple[bytes, bool]:
    """What a look at the current part gave: the bytes to hand out, and whether to look again at once."""
    if stream.part and stream.info is None and not info.is_part(stream.part_name(), stream.part):
        return b"", False  # a blob with a part's name that is not one: wait for the part
    stream.observe(info)
    out = stream.take(request.offset, data) if request is not None and data else b""
    stream.skip()
    if stream.drained and info.closed and not stream.check:
        stream.done = True
    return out, stream.check or not stream.drained or (stream.full and not stream.done)


# --- many logs of a job: one listing per poll ---------------------------------------------------------------

#: A followed log: (task id, file path).
LogKey = tuple[str, str]


@dataclass(frozen=True)
class LogData:
    """Bytes of the log at ``path`` of task ``task_id``, in order: every byte of a log is handed out once,
    in chunks that may end inside a line or a UTF-8 character."""

    task_id: str
    path: str
    data: bytes


@dataclass(frozen=True)
class LogRestarted:
    """The log was replaced (``reason`` says how: a task run again with a fresh log): the
    :class:`LogData` that follow are the new log's, from its start."""

    task_id: str
    path: str
    reason: str


@dataclass(frozen=True)
class LogClosed:
    """The log was read to its end and is complete: its writer closed it (or it is not an append blob).
    ``log`` is what its last part's metadata says: ``log.exit_code``, ``log.started`` and ``log.ended``
    when ``batchfiles run`` wrote it."""

    task_id: str
    path: str
    log: LogState


@dataclass(frozen=True)
class LogsPolled:
    """A poll is done (one listing, then a read of each log that grew). ``logs`` maps each log found so
    far, ``(task_id, path)``, to whether it is closed and read to its end. ``ended`` is None while the
    follow goes on, else why it ends after this poll: ``"closed"`` (each named task's logs, and each
    named path, were found and are closed) or ``"idle"`` (no log grew for ``idle_timeout`` seconds)."""

    logs: Mapping[LogKey, bool]
    ended: str | None = None


#: What :func:`follow_logs` hands out.
LogEvent = LogData | LogRestarted | LogClosed | LogsPolled


@dataclass(frozen=True)
class LogSelection:
    """Which logs a follow reads: the outputs of task kind ``kind`` of the tasks ``task_ids`` (None: every
    task, those that start later too), at the file paths ``paths`` (None: all)."""

    kind: str
    task_ids: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None

    @property
    def prefix(self) -> str:
        """What each poll lists: one task's outputs of the kind, or the whole container."""
        tasks = self.task_ids or ()
        return f"{tasks[0]}/${self.kind}/" if len(tasks) == 1 else ""

    def outputs(self, job: JobSnapshot) -> Iterator[OutputSnapshot]:
        """The selected outputs of a snapshot, in its order (tasks, then paths, in natural order)."""
        tasks = set(self.task_ids) if self.task_ids is not None else None
        paths = set(self.paths) if self.paths is not None else None
        for task in job.tasks.values():
            if tasks is not None and task.task_id not in tasks:
                continue
            for output in task.of_kind(self.kind):
                if paths is None or output.file_path in paths:
                    yield output

    def finished(self, logs: Mapping[LogKey, bool]) -> bool:
        """Whether a follow of named tasks is over: each task (and each path named, of each) was found and
        every log found is closed. A whole job is never over: its tasks may start at any time."""
        if self.task_ids is None or not logs or not all(logs.values()):
            return False
        if not set(self.task_ids) <= {task for task, _ in logs}:
            return False
        return all((task, path) in logs for task in self.task_ids for path in self.paths or ())


def select_logs(task_ids: Iterable[str] | None, kind: KindLike, paths: Iterable[str] | None) -> LogSelection:
    """The :class:`LogSelection` of ``follow_logs``' arguments: :class:`ValueError` for a bad task id, a
    job kind, a path that is not an output's or an empty list, :class:`TypeError` for a ``str`` given as a
    list."""
    for name, what, value in (("task_ids", "task ids", task_ids), ("paths", "paths", paths)):
        if isinstance(value, (str, bytes)):
            raise TypeError(f"{name} must be a list of {what}, not a single {type(value).__name__}")
    tasks = None if task_ids is None else tuple(dict.fromkeys(task_ids))
    for task in tasks or ():
        if not isinstance(task, str):  # None would pass as a snapshot's "every task"
            raise TypeError(f"task_ids must hold task ids (str), not {type(task).__name__}")
        _scope.snapshot_prefix(task)  # ValueError for a bad task id
    chosen = None if paths is None else tuple(dict.fromkeys(paths))
    for name, value in (("task_ids", tasks), ("paths", chosen)):
        if value == ():
            raise ValueError(f"{name} is empty: give None for all")
    for path in chosen or ():
        problem = _scope.path_problem(path) if isinstance(path, str) else "is not a str"
        if problem is not None:
            raise ValueError(f"{path!r} is not the file path of an output: it {problem}")
    text = str(_scope.Scope("", "task").kind(kind))  # ValueError for a job kind
    return LogSelection(text, tasks, chosen)


class _Tally:
    """Bytes handed out since the last look (for ``idle_timeout``)."""

    def __init__(self) -> None:
        self.bytes = 0

    def data(self, key: LogKey, data: bytes) -> LogData:
        self.bytes += len(data)
        return LogData(key[0], key[1], data)


def follow_logs(
    selection: LogSelection,
    build: Callable[[list[Any]], JobSnapshot],
    *,
    tail: int | None = None,
    poll_interval: float = 1.0,
    idle_timeout: float | None = None,
    clock: Callable[[], float],
    where: str = "",
) -> Follow:
    """Follow the logs ``selection`` names (options checked now, not at the first ``next``); hands out
    :data:`LogEvent` s. Each poll is one listing (sizes, ETags and metadata of every blob), made into the
    job's snapshot by ``build`` (which blobs are which task's outputs, a log's parts as one); then only
    logs that grew are read, up to their listed size (or, once a read saw the close mark, up to the size
    seen with it). ``tail``: start each log found by the first poll at its last ``tail`` lines (None:
    from its start; logs found later always start at their start). After each poll :class:`LogsPolled`;
    the follow ends after the one that says ``ended``. ``idle_timeout`` is looked at after polls that
    succeeded; with 0 the follow reads the logs as they are and ends, and waits out throttling only as
    long as a request does (:data:`._throttle.THROTTLED_RETRIES` throttled polls in a row), else for as
    long as it lasts."""
    check_options(0, poll_interval, idle_timeout)
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise ValueError(f"tail must be a number of lines >= 0, not {tail!r}")
    options = dict(tail=tail, poll_interval=poll_interval, idle_timeout=idle_timeout, clock=clock)
    return _follow_logs(selection, build, where=where, **options)


def _follow_logs(
    selection: LogSelection,
    build: Callable[[list[Any]], JobSnapshot],
    *,
    tail: int | None,
    poll_interval: float,
    idle_timeout: float | None,
    clock: Callable[[], float],
    where: str,
) -> Follow:
    streams: dict[LogKey, Stream] = {}
    untailed: set[LogKey] = set()  # found by the first poll, not started at their tail yet
    polls = 0
    patience = _throttle.THROTTLED_RETRIES if idle_timeout == 0 else None
    retry = Retry(poll_interval, f"the {selection.kind} files{where}", throttled_patience=patience)
    tally = _Tally()
    grew_at = clock()
    while True:
        try:
            listing = yield Listing(selection.prefix)
            job = build(listing)
            listed = {props.name: props for props in listing}
            for output in selection.outputs(job):
                key = (output.task_id or "", output.file_path)
                parts = [info_of(listed[name]) for name in output.blob_names]
                stream = streams.get(key)
                if stream is None:
                    stream = streams[key] = Stream(output.blob_name)
                    if tail is not None and not polls:  # one found later is read from its start
                        untailed.add(key)
                if key in untailed:
                    restarted = yield from _restarting(
                        _tail(stream, parts, tail or 0, key, tally), stream, key
                    )
                    untailed.discard(key)
                    if restarted:
                        continue
                yield from _restarting(_poll_listed(stream, parts, key, tally), stream, key)
        except Exception as exc:  # transient: try again after a backoff; else raised
            yield Sleep(retry.failed(exc))
            continue
        retry.succeeded()
        polls += 1
        if tally.bytes:
            tally.bytes, grew_at = 0, clock()
        logs = MappingProxyType({key: stream.done for key, stream in streams.items()})
        ended = None
        if selection.finished(logs):
            ended = "closed"
        elif idle_timeout is not None and clock() - grew_at >= idle_timeout:
            ended = "idle"
        yield LogsPolled(logs, ended)
        if ended is not None:
            return
        yield Sleep(poll_interval)


def _restarting(steps: Generator[Any, Any, None], stream: Stream, key: LogKey) -> Generator[Any, Any, bool]:
    """Run ``steps`` on ``stream``; if they find it replaced, it starts again from 0 at the next poll,
    whose listing shows the new blob (this one's is older than the read that saw it replaced): True then,
    with :class:`LogRestarted` if bytes of it were read (one replaced before is just read from its start)."""
    try:
        yield from steps
    except Replaced as why:
        begun = stream.position or stream.part
        stream.reset()
        if begun:
            yield LogRestarted(key[0], key[1], str(why))
        return True
    return False


def _poll_listed(stream: Stream, parts: list[Info], key: LogKey, tally: _Tally) -> Generator[Any, Any, None]:
    """Read what the log gained, as the listing says. A log read to its close is looked at again only if
    the listing shows it changed (run again, or resumed)."""
    if stream.done and not _reopened(stream, parts):
        return
    while not stream.done:
        if not (yield from _read_listed(stream, parts, key, tally)):
            return


def _reopened(stream: Stream, parts: list[Info]) -> bool:
    """Whether a log read to its close changed since (:class:`Replaced` if it is not the same blob)."""
    if stream.part >= len(parts):
        raise Replaced(f"{stream.part_name()!r} was deleted")
    info = parts[stream.part]
    assert stream.info is not None
    if info.etag == stream.info.etag and stream.part + 1 == len(parts):
        return False
    stream.observe(info)
    if stream.check or not info.closed or stream.part + 1 < len(parts) or not stream.drained:
        stream.done = False
    return not stream.done


def _read_listed(stream: Stream, parts: list[Info], key: LogKey, tally: _Tally) -> Generator[Any, Any, bool]:
    """Read the current part up to its listed size, then go on to the next part if there is one; True to
    look again (a part was finished)."""
    if stream.part >= len(parts):
        if stream.info is not None:  # the part read so far is gone
            raise Replaced(f"{stream.part_name()!r} was deleted")
        return False
    stream.observe(parts[stream.part])
    stream.skip()
    # what grew since the listing is read at the next poll (one read per log a poll), unless a read saw the
    # close mark: then the log ends at the size seen with it, which may be past the listed one
    yield from _read_to(stream, key, parts[stream.part].size, tally)
    while stream.info is not None and stream.info.closed and not stream.drained:
        yield from _read_to(stream, key, stream.info.size, tally)
    if stream.info is not None and stream.info.append is None:  # nothing read, the listing did not say
        stream.observe((yield from _look(stream.part_name(), Probe(stream.part_name()))))
    info = stream.info
    assert info is not None
    if info.closed:
        stream.done = True
        yield LogClosed(key[0], key[1], log_state(info.metadata))
        return False
    if stream.part + 1 < len(parts):  # the next part is there: this one is final, read to its end now
        # (past its listed size: the listing may have passed it before its last appends)
        while (yield from _read_more(stream, key, CHUNK, tally)):
            pass
        stream.next_part()
        return True
    return False


def _read_to(stream: Stream, key: LogKey, end: int, tally: _Tally) -> Generator[Any, Any, None]:
    """Read the current part up to ``end`` (at most CHUNK a read), handing out what was read; while the
    part's writer is to be checked, read at least once."""
    while stream.offset < end or stream.check:
        if not (yield from _read_more(stream, key, max(0, min(end - stream.offset, CHUNK)), tally)):
            return


def _read_more(stream: Stream, key: LogKey, length: int, tally: _Tally) -> Generator[Any, Any, bool]:
    """One read of the current part from its offset, handing out what it gave; whether to read on (it
    gave bytes, or the part's writer is still to be checked). Nothing at the offset (416) is looked at
    with a probe: a shorter blob is a replaced one."""
    request = stream.read(length)
    try:
        data, info = checked_read(request, (yield from _look(request.blob, request)))
    except HttpResponseError as err:
        if status(err) != 416:
            raise
        data, info = b"", (yield from _look(request.blob, Probe(request.blob)))
    stream.observe(info)
    out = stream.take(request.offset, data) if data else b""
    if out:
        yield tally.data(key, out)
    return bool(data) or stream.check


def _look(name: str, request: Read | Probe) -> Generator[Any, Any, Any]:
    """The result of a read or probe of a listed part, for a ``Probe`` as an :class:`Info`; a part deleted
    since the listing is :class:`Replaced`."""
    try:
        result = yield request
    except Exception as exc:
        if not_found(exc):
            raise Replaced(f"{name!r} was deleted") from None
        raise
    return info_of(result) if isinstance(request, Probe) else result


def _tail(
    stream: Stream, parts: list[Info], lines: int, key: LogKey, tally: _Tally
) -> Generator[Any, Any, None]:
    """Start ``stream`` at the last ``lines`` lines of the parts (read back from their end in growing
    windows), handing them out; then it goes on from the end."""
    sizes = [info.size for info in parts]
    total = sum(sizes)
    window = TAIL_WINDOW
    while True:
        first = max(0, total - window)
        data, seen = b"", {}
        for index, offset, length in spans(sizes, first, total):
            request = Read(stream.part_name(index), offset, length)
            chunk, seen[index] = checked_read(request, (yield from _look(request.blob, request)))
            data += chunk
        begin = tail_start(data, lines, at_start=first == 0)
        if begin is not None:
            break
        window *= 4
    last = len(parts) - 1  # go on from the end of the last part
    stream.part, stream.offset, stream.info = last, 0, None
    stream.position, stream.start = total - sizes[last], total
    stream.observe(parts[last])
    if last in seen:  # what a read says and the listing does not (the blob's type)
        stream.observe(seen[last])
    stream.skip()
    stream.recent = data[len(data) - min(len(data), sizes[last]) :][-RECHECK:]  # read, of the last part
    if begin < len(data):
        yield tally.data(key, data[begin:])


def spans(sizes: list[int], first: int, end: int) -> list[tuple[int, int, int]]:
    """(part, offset in it, length) of the bytes ``first`` to ``end`` of parts of ``sizes``."""
    out, base = [], 0
    for index, size in enumerate(sizes):
        lo, hi = max(first, base), min(end, base + size)
        if lo < hi:
            out.append((index, lo - base, hi - lo))
        base += size
    return out


def tail_start(data: bytes, lines: int, *, at_start: bool) -> int | None:
    """Where the last ``lines`` lines of ``data`` begin (a last line without a newline counts), as
    ``tail -n`` has it; None if ``data`` does not hold them all and is not the start of the output."""
    if lines == 0:
        return len(data)
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        newline = data.rfind(b"\n", 0, end)
        if newline < 0:
            return 0 if at_start else None
        end = newline
    return end + 1


def job_logs(
    container: str,
    container_url: str,
    task_ids: Iterable[str] | None,
    kind: KindLike,
    paths: Iterable[str] | None,
    *,
    tail: int | None,
    poll_interval: float,
    idle_timeout: float | None,
    on_invalid: Callable[[str, str], None] | None,
    clock: Callable[[], float],
) -> Follow:
    """The follow of ``JobOutputStorage.follow_logs`` (sync and aio) on a container, its arguments checked
    now: a blob of the listings that is not an output is told to ``on_invalid`` once."""
    selection = select_logs(task_ids, kind, paths)
    tell = once_each(on_invalid)
    options = dict(tail=tail, poll_interval=poll_interval, idle_timeout=idle_timeout, clock=clock)
    where = f" in container {container!r}"
    return follow_logs(
        selection, lambda listing: build(container, container_url, listing, tell), where=where, **options
    )


def once_each(on_invalid: Callable[[str, str], None] | None) -> Callable[[str, str], None]:
    """``on_invalid`` (by default a warning on the ``batchfiles`` logger) told of each blob once, however
    many polls list it."""
    check_on_invalid(on_invalid)
    told: set[str] = set()

    def tell(blob_name: str, reason: str) -> None:
        if blob_name in told:
            return
        told.add(blob_name)
        (on_invalid or warn_skipped)(blob_name, reason)

    return tell
