"""What the sync and async :class:`~batchfiles.tracking.TrackedSave` share: the engine behind read-only
properties, and the blob client method that makes each call."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .. import _urls
from .calls import Call, client_method
from .engine import Engine, Stats


class TrackedSaveBase:
    """The engine of a save, its read-only properties, and the clients of its blobs."""

    def __init__(self, container: Any, engine: Engine) -> None:
        """Private: use ``start``."""
        self._engine = engine
        self._blob = functools.cache(container.get_blob_client)
        self._url = _urls.public_url(self._blob(engine.blob_name).url)

    def _method(self, call: Call) -> Callable[..., Any]:
        """The blob client method that makes ``call`` (sync or async, as the container's clients are)."""
        return client_method(self._blob(call.blob), call.method)

    @property
    def bytes_saved(self) -> int:
        """Bytes this save appended (not counting those a resumed blob already held)."""
        return self._engine.stats.bytes_saved

    @property
    def lost_bytes(self) -> int:
        """Bytes that truncation or too fast rotation destroyed before they could be read."""
        return self._engine.stats.lost_bytes

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

    @property
    def stats(self) -> Stats:
        """Diagnostics, for logs and tests: beside :attr:`bytes_saved` and :attr:`lost_bytes`, the polls of
        the file so far, the failed steps in a row, this save's writer token (in the metadata of the parts
        it wrote) and the ETag of its last write to each part. A snapshot; it may grow between versions."""
        return self._engine.stats

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._engine.path!r} -> {self.blob_name!r}>"
