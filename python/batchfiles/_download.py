"""Downloads verified against their Content-MD5: into memory, or into a partial file renamed into
place once verified. A large blob is read in ranges from several threads (or tasks) and hashed and written
in order by the caller, a bounded number of ranges ahead."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from azure.core import MatchConditions

from . import _native
from ._progress import ProgressCounter
from ._types import Progress
from .errors import (
    IntegrityError,
)

if TYPE_CHECKING:
    from .snapshot import OutputSnapshot

MIB = 1024 * 1024
#: The first request reads up to this much; the rest of a larger blob is read in ranges of this size (the
#: size of the blocks saves cut), in parallel.
RANGE_SIZE = 8 * MIB
#: Ranges read at once...
RANGE_CONCURRENCY = 8
#: ... and read ahead of the one being hashed and written. Memory holds at most RANGES_AHEAD + 1 ranges (the
#: one being written too), plus, while a reading thread joins a range's pieces (the SDK's answer), one more
#: per thread: (10 + 1 + 8) x 8 MiB = 152 MiB whatever the blob's size. Each range is one bytes object, the
#: SDK's own (:func:`content_of`), never copied again in Python.
RANGES_AHEAD = 10


def as_listed(output: OutputSnapshot) -> list[dict[str, Any]]:
    """For each of a snapshot output's blobs (``blob_names``), the condition of reading it as listed
    (``If-Match`` its ETag), so that parts of two versions (a log replaced since, its task run again) are
    never joined into a file that never was; none for the last blob of a tracked save still open, which
    grows."""
    quoted = [etag if not etag or etag.startswith('"') else f'"{etag}"' for etag in output.etags]
    conditions = [{"etag": e, "match_condition": MatchConditions.IfNotModified} if e else {} for e in quoted]
    if output.log.state == "open" and conditions:
        conditions[-1] = {}
    return conditions + [{}] * (len(output.blob_names) - len(conditions))


def blob_size(download: Any) -> int:
    """The whole blob's size, from the answer to its first read (``Content-Range: bytes 0-9/100``)."""
    content_range = download.properties.content_range
    return int(content_range.rpartition("/")[2]) if content_range else download.size


def rest_of(download: Any) -> list[tuple[int, int]]:
    """(offset, length) of the ranges of the blob after what its first read returned."""
    total = blob_size(download)
    return [(at, min(RANGE_SIZE, total - at)) for at in range(download.size, total, RANGE_SIZE)]


class _Kept:
    """A write-only stream that keeps the objects written to it, by reference."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data)
        return len(data)

    def content(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)


def content_of(download: Any) -> bytes:
    """The bytes of a download answered in one response, without the copy ``readall()`` makes (into a
    ``BytesIO``): ``readinto`` hands over the response's bytes object as it is."""
    kept = _Kept()
    download.readinto(kept)
    return kept.content()


async def content_of_async(download: Any) -> bytes:
    """:func:`content_of` for an ``aio`` download."""
    kept = _Kept()
    await download.readinto(kept)
    return kept.content()


def check_range(data: bytes, length: int, what: str) -> bytes:
    if len(data) != length:
        raise IntegrityError(f"{what}: a ranged read returned {len(data)} bytes instead of {length}")
    return data


def read_in_order(
    read: Callable[[int, int], bytes], spans: Sequence[tuple[int, int]], consume: Callable[[bytes], None]
) -> None:
    """``read(offset, length)`` each span from :data:`RANGE_CONCURRENCY` threads, at most
    :data:`RANGES_AHEAD` spans ahead of the one ``consume`` takes, in order, on this thread. On any error
    the spans not started are dropped, the running ones awaited, and the error raised."""
    if not spans:
        return
    pending: deque[Future[bytes]] = deque()
    with ThreadPoolExecutor(min(RANGE_CONCURRENCY, len(spans))) as pool:
        try:
            for span in spans:
                pending.append(pool.submit(read, *span))
                if len(pending) >= RANGES_AHEAD:
                    consume(pending.popleft().result())
            while pending:
                consume(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()


async def read_in_order_async(
    read: Callable[[int, int], Awaitable[bytes]],
    spans: Sequence[tuple[int, int]],
    consume: Callable[[bytes], None],
) -> None:
    """:func:`read_in_order` with tasks: at most :data:`RANGES_AHEAD` reads at once; ``consume`` runs in a
    thread, off the event loop."""
    pending: deque[asyncio.Task[bytes]] = deque()
    try:
        for span in spans:
            pending.append(asyncio.ensure_future(read(*span)))
            if len(pending) >= RANGES_AHEAD:
                await asyncio.to_thread(consume, await pending.popleft())
        while pending:
            await asyncio.to_thread(consume, await pending.popleft())
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class Md5Check:
    """Checks streamed bytes against the blob's Content-MD5 (nothing to check when it has none)."""

    def __init__(self, download: Any, what: str) -> None:
        settings = download.properties.content_settings
        expected = settings.content_md5 if settings else None
        self.expected = bytes(expected) if expected else None
        self.what = what
        self._md5 = _native.Md5() if self.expected else None

    def update(self, chunk: bytes) -> None:
        if self._md5 is not None:
            self._md5.update(chunk)

    def verify(self) -> None:
        if self._md5 is not None and self._md5.digest() != self.expected:
            raise IntegrityError(f"{self.what}: downloaded bytes do not match the blob's Content-MD5")


class DownloadSink:
    """Where downloaded chunks go: memory, or a partial file (in the target's folder) renamed to ``target``
    once verified.

    Used as a context manager; on any error the partial file is removed, so no unverified file is left.
    """

    def __init__(
        self, download: Any, what: str, target: Path | None = None, progress: Progress | None = None
    ) -> None:
        self._check = Md5Check(download, what)
        self._counter = ProgressCounter(blob_size(download), progress)
        self._target = target
        self._buffer = bytearray()
        self._partial: Path | None = None
        self._file: BinaryIO | None = None
        self.result: bytes | Path | None = None

    def __enter__(self) -> DownloadSink:
        if self._target is not None:
            folder = self._target.parent
            try:  # many files go to folders that exist: create a folder only when it is missing
                self._partial, self._file = open_partial(folder)
            except FileNotFoundError:
                folder.mkdir(parents=True, exist_ok=True)
                self._partial, self._file = open_partial(folder)
        return self

    def write(self, chunk: bytes) -> None:
        self._check.update(chunk)
        self._counter.add(len(chunk))
        if self._file is not None:
            self._file.write(chunk)
        else:
            self._buffer += chunk

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()
        try:
            if exc_type is None:
                self._check.verify()
                if self._partial is not None and self._target is not None:
                    os.replace(self._partial, self._target)
                    self.result = self._target
                else:
                    self.result = bytes(self._buffer)
        finally:
            if self._partial is not None:
                self._partial.unlink(missing_ok=True)


def open_partial(folder: Path) -> tuple[Path, BinaryIO]:
    """A new file in ``folder`` with a short unique name (``.{16 hex}.partial``), so a target name of up
    to 255 bytes still has room; created exclusively, with the usual permissions (umask), unlike mkstemp."""
    for _ in range(100):
        path = folder / f".{secrets.token_hex(8)}.partial"
        try:
            return path, open(path, "xb")
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a partial download in {str(folder)!r}")
