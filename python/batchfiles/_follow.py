"""Following live outputs without I/O: offsets, roll-over parts, close marks, replaced blobs, and what to
request next. The drivers (``storage.py``, ``aio/_storage.py``) make the requests and sleep the sleeps.

A follow is a generator. It yields :class:`Read`, :class:`Probe` and :class:`Listing` requests (the driver
sends back the result, or throws the storage error in), :class:`Sleep` s, and what it hands out: ``bytes``
for :func:`follow_blob`, events for :func:`follow_listing`. Bytes are handed out only once read, and an
offset moves only past bytes handed out, so a failed or repeated request never duplicates or skips one.

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
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Callable, Generator, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from . import _errors, _throttle
from ._tracking import limits
from .errors import OutputReplacedError

logger = logging.getLogger("batchfiles")

#: The most bytes one read asks for; a follow with more to read reads again at once.
CHUNK = 4 * 1024 * 1024
#: Failed polls in a row (each already retried by the storage client) before a follow gives up.
MAX_FAILED_POLLS = 6
#: The longest wait between failed polls, seconds.
MAX_BACKOFF = 30.0
#: ``--tail``: the first window read back from a log's end; it grows fourfold until it holds the lines.
TAIL_WINDOW = 64 * 1024

#: Metadata ``batchfiles run`` leaves on its logs when the command is over: its exit code (``128 + N`` if
#: signal N killed it), and when it started and ended (ISO 8601, UTC).
EXIT_CODE_KEY = "batchfiles_exit_code"
STARTED_KEY = "batchfiles_started"
ENDED_KEY = "batchfiles_ended"


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
    """The blobs whose names start with ``prefix``, with their metadata (``list_blobs``): a list."""

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
    created: datetime | None
    append: bool  # an append blob: it may grow
    blocks: int | None  # committed blocks (None in a listing)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def closed(self) -> bool:
        """Complete as it is: marked closed by its writer, or not an append blob."""
        return not self.append or self.metadata.get(limits.CLOSED_KEY) == "1"

    def part_index(self, name: str) -> tuple[str, int]:
        """(base name, part index) of the blob ``name`` with this info: see :func:`part_of`."""
        return part_of(name, self.metadata)


def part_of(name: str, metadata: dict[str, str]) -> tuple[str, int]:
    """(base name, part index) of the blob ``name``: ``base.k`` marked part ``k`` in its metadata, else
    (``name``, 0)."""
    mark = {k.lower(): v for k, v in metadata.items()}.get(limits.PART_KEY, "")
    if mark.isascii() and mark.isdigit() and mark != "0" and name.endswith(f".{mark}"):
        return name[: -len(mark) - 1], int(mark)
    return name, 0


def info_of(props: Any) -> Info:
    """The info of ``BlobProperties`` (from a listing or a probe, or a download's: then the size is the
    blob's, from the ``Content-Range`` total, not the range's)."""
    size = props.size or 0
    content_range = getattr(props, "content_range", None)
    if content_range and "/" in content_range:
        total = content_range.rpartition("/")[2]
        if total.isascii() and total.isdigit():
            size = int(total)
    return Info(
        size=size,
        etag=(props.etag or "").strip('"'),
        created=getattr(props, "creation_time", None),
        append=str(getattr(props.blob_type, "value", props.blob_type)) == "AppendBlob",
        blocks=getattr(props, "append_blob_committed_block_count", None),
        metadata={k.lower(): v for k, v in (props.metadata or {}).items()},
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
    """

    def __init__(self, name: str, start: int = 0) -> None:
        self.name = name
        self.start = start
        self.part = 0
        self.offset = 0  # in the current part
        self.position = 0
        self.info: Info | None = None  # of the current part, last seen
        self.done = False  # read to the end of a closed (or complete) blob

    def part_name(self, index: int | None = None) -> str:
        index = self.part if index is None else index
        return self.name if index == 0 else f"{self.name}.{index}"

    @property
    def unread(self) -> int:
        return self.info.size - self.offset if self.info is not None else 0

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
            if seen.append != info.append:
                raise Replaced("it is another type of blob")
            if seen.blocks is not None and info.blocks is not None and info.blocks < seen.blocks:
                raise Replaced("it has fewer blocks than before")
            if self.part and info.metadata.get(limits.PART_KEY) != str(self.part):
                raise Replaced(f"{self.part_name()!r} is no longer part {self.part} of it")
            if info.blocks is None and seen.blocks is not None:  # a listing does not say
                info = Info(info.size, info.etag, info.created, info.append, seen.blocks, info.metadata)
        self.info = info

    def skip(self) -> None:
        """Skip the bytes of the current part before ``start`` without reading them."""
        if self.info is not None and self.position < self.start:
            jump = min(self.start - self.position, self.info.size - self.offset)
            self.offset += jump
            self.position += jump

    def reset(self) -> None:
        """From the start again (the blob was replaced)."""
        self.__init__(self.name)  # type: ignore[misc]

    def take(self, offset: int, data: bytes) -> bytes:
        """Bytes read at ``offset`` of the current part: those to hand out (none before ``start``)."""
        if offset != self.offset:  # a bug: reads follow the offset
            raise AssertionError(f"read at {offset}, expected {self.offset}")
        before = self.position
        self.offset += len(data)
        self.position += len(data)
        return data[max(0, self.start - before) :] if before < self.start else data

    def next_part(self) -> None:
        self.part += 1
        self.offset = 0
        self.info = None

    def read(self, length: int | None = None, *, conditional: bool = False) -> Read:
        """The next read of the current part; ``conditional``: only if it changed, when all of it was read."""
        etag = self.info.etag if conditional and self.info is not None and self.drained else None
        return Read(self.part_name(), self.offset, CHUNK if length is None else length, etag)


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
        try:
            info = info_of((yield Probe(stream.part_name(index))))
        except Exception as exc:
            if not_found(exc):
                return total
            raise
        if index and info.metadata.get(limits.PART_KEY) != str(index):
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
    if info is not None and stream.drained and stream.full and not info.closed:
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
                info = info_of((yield Probe(name)))
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
    if info.metadata.get(limits.PART_KEY) != str(stream.part + 1):
        return None  # a blob with a part's name that is not one: wait for the part
    stream.next_part()
    return _took(stream, info, request, data)


def _took(stream: Stream, info: Info, request: Read | None, data: bytes) -> tuple[bytes, bool]:
    """What a look at the current part gave: the bytes to hand out, and whether to look again at once."""
    if stream.part and stream.info is None and info.metadata.get(limits.PART_KEY) != str(stream.part):
        return b"", False  # a blob with a part's name that is not one: wait for the part
    stream.observe(info)
    out = stream.take(request.offset, data) if request is not None and data else b""
    stream.skip()
    if stream.drained and info.closed:
        stream.done = True
    return out, not stream.drained or (stream.full and not stream.done)


# --- many outputs: one listing per poll ---------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    """Bytes of the output ``key``, in order."""

    key: Hashable
    data: bytes


@dataclass(frozen=True)
class Restarted:
    """The output ``key`` was replaced (``why``): what follows is the new one, from its start."""

    key: Hashable
    why: str


@dataclass(frozen=True)
class Closed:
    """The output ``key`` was read to its end and is closed; ``metadata``: its last part's."""

    key: Hashable
    metadata: dict[str, str]


@dataclass(frozen=True)
class Polled:
    """A poll is done: every output seen so far (key: closed and read to its end)."""

    outputs: dict[Hashable, bool]


def follow_listing(
    prefix: str,
    select: Callable[[str], Hashable | None],
    *,
    tail: int | None = None,
    poll_interval: float = 1.0,
    clock: Callable[[], float],
    where: str = "",
    throttled_patience: int | None = None,
) -> Follow:
    """Follow every blob under ``prefix`` that ``select(name)`` gives a key (None: not followed); hands out
    :class:`Data`, :class:`Restarted`, :class:`Closed` and, after each poll, :class:`Polled`. Each poll is
    one listing (sizes, ETags, metadata of every blob); only outputs that grew are read, up to their listed
    size (or, once a read saw the close mark, up to the size seen with it). ``tail``: start each output
    found by the first poll at its last ``tail`` lines (None: from its start; outputs found later always
    start at their start). Never ends by itself: the consumer stops when :class:`Polled` says it is done.
    Throttling is waited out (``throttled_patience``: at most that many throttled polls in a row; see
    :class:`Retry`)."""
    check_options(0, poll_interval, None)
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise ValueError(f"tail must be a number of lines >= 0, not {tail!r}")
    streams: dict[str, Stream] = {}
    keys: dict[str, Hashable] = {}
    ignored: set[str] = set()
    polls = 0
    under = f" under {prefix!r}" if prefix else ""
    retry = Retry(poll_interval, f"the outputs{under}{where}", throttled_patience=throttled_patience)
    while True:
        try:
            listed = group_parts((yield Listing(prefix)))
            for name, parts in listed.items():
                if name in ignored:
                    continue
                if name not in keys:
                    key = select(name)
                    if key is None:
                        ignored.add(name)
                        continue
                    keys[name] = key
                    streams[name] = Stream(name)
                    if tail is not None and not polls:  # an output found later is read from its start
                        yield from _tail(streams[name], parts, tail, key)
                yield from _poll_listed(streams[name], parts, keys[name])
        except Exception as exc:  # transient: try again after a backoff; else raised
            yield Sleep(retry.failed(exc))
            continue
        retry.succeeded()
        polls += 1
        yield Polled({keys[name]: stream.done for name, stream in streams.items()})
        yield Sleep(poll_interval)


def group_parts(listing: Iterable[Any]) -> dict[str, list[Info]]:
    """Listed blobs by base name: the infos of ``name``, ``name.1``, ... up to the first part missing."""
    found: dict[str, dict[int, Info]] = {}
    for props in listing:
        info = info_of(props)
        base, index = info.part_index(props.name)
        found.setdefault(base, {})[index] = info
    grouped: dict[str, list[Info]] = {}
    for base, parts in found.items():
        if 0 not in parts:
            continue  # parts whose first is not there: being replaced, or not a save's
        index, chain = 0, []
        while index in parts:
            chain.append(parts[index])
            index += 1
        grouped[base] = chain
    return grouped


def _poll_listed(stream: Stream, parts: list[Info], key: Hashable) -> Generator[Any, Any, None]:
    """Read what the output gained, as the listing says; a replaced output starts again from 0 at the next
    poll, whose listing shows the new blob (this one's is older than the read that saw it replaced)."""
    while not stream.done:
        try:
            more = yield from _read_listed(stream, parts, key)
        except Replaced as why:
            stream.reset()
            yield Restarted(key, str(why))
            return
        if not more:
            return


def _read_listed(stream: Stream, parts: list[Info], key: Hashable) -> Generator[Any, Any, bool]:
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
    yield from _read_to(stream, key, parts[stream.part].size)
    while stream.info is not None and stream.info.closed and not stream.drained:
        yield from _read_to(stream, key, stream.info.size)
    info = stream.info
    assert info is not None
    if info.closed:
        stream.done = True
        yield Closed(key, info.metadata)
        return False
    if stream.part + 1 < len(parts):  # the next part is there: this one is final, read to its end now
        while True:  # (past its listed size: the listing may have passed it before its last appends)
            request = stream.read()
            try:
                data, info = checked_read(request, (yield request))
            except HttpResponseError as err:
                if status(err) != 416:
                    raise
                data, info = b"", info_of((yield Probe(request.blob)))
            stream.observe(info)
            if not data:
                break
            yield Data(key, stream.take(request.offset, data))
        stream.next_part()
        return True
    return False


def _read_to(stream: Stream, key: Hashable, end: int) -> Generator[Any, Any, None]:
    """Read the current part up to ``end`` (at most CHUNK a read), handing out what was read."""
    while stream.offset < end:
        yield from _read_more(stream, key, min(end - stream.offset, CHUNK))


def _read_more(stream: Stream, key: Hashable, length: int) -> Generator[Any, Any, None]:
    request = stream.read(length)
    data, info = checked_read(request, (yield request))
    stream.observe(info)
    if data:
        out = stream.take(request.offset, data)
        if out:
            yield Data(key, out)


def _tail(stream: Stream, parts: list[Info], lines: int, key: Hashable) -> Generator[Any, Any, None]:
    """Start ``stream`` at the last ``lines`` lines of the parts (read back from their end in growing
    windows), handing them out; then it goes on from the end."""
    sizes = [info.size for info in parts]
    total = sum(sizes)
    window = TAIL_WINDOW
    while True:
        first = max(0, total - window)
        data = b""
        for index, offset, length in spans(sizes, first, total):
            request = Read(stream.part_name(index), offset, length)
            chunk, _ = checked_read(request, (yield request))
            data += chunk
        begin = tail_start(data, lines, at_start=first == 0)
        if begin is not None:
            break
        window *= 4
    last = len(parts) - 1  # go on from the end of the last part
    stream.part, stream.offset, stream.info = last, 0, None
    stream.position, stream.start = total - sizes[last], total
    stream.observe(parts[last])
    stream.skip()
    if begin < len(data):
        yield Data(key, data[begin:])


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


# --- what run leaves on its logs ----------------------------------------------------------------------------


def outcome_metadata(exit_code: int, started: datetime, ended: datetime) -> dict[str, str]:
    """The metadata ``batchfiles run`` closes its logs with."""
    return {
        EXIT_CODE_KEY: str(exit_code),
        STARTED_KEY: _iso(started),
        ENDED_KEY: _iso(ended),
    }


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LogState:
    """What a log blob's metadata says of its writer: ``state`` is ``"open"`` (a tracked save still
    writing, or one that never closed), ``"closed"``, or None (not a tracked save's); ``run``'s outcome."""

    state: str | None
    exit_code: int | None = None
    started: datetime | None = None
    ended: datetime | None = None


def log_state(metadata: dict[str, str] | None) -> LogState:
    metadata = {k.lower(): v for k, v in (metadata or {}).items()}
    if metadata.get(limits.CLOSED_KEY) == "1":
        state: str | None = "closed"
    elif limits.WRITER_KEY in metadata:
        state = "open"
    else:
        state = None
    code = metadata.get(EXIT_CODE_KEY, "")
    return LogState(
        state,
        int(code) if re.fullmatch(r"-?[0-9]{1,11}", code) else None,
        _parse_time(metadata.get(STARTED_KEY)),
        _parse_time(metadata.get(ENDED_KEY)),
    )


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
