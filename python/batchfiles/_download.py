"""Downloads verified against their Content-MD5: into memory, or into a partial file renamed into
place once verified."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO

from . import _native
from ._progress import ProgressCounter
from ._types import Progress
from .errors import (
    IntegrityError,
)


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
        self._counter = ProgressCounter(download.size, progress)
        self._target = target
        self._buffer = bytearray()
        self._partial: Path | None = None
        self._file: BinaryIO | None = None
        self.result: bytes | Path | None = None

    def __enter__(self) -> DownloadSink:
        if self._target is not None:
            self._target.parent.mkdir(parents=True, exist_ok=True)
            self._partial, self._file = open_partial(self._target.parent)
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
