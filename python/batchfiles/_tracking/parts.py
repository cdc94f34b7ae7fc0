"""The blob parts of a tracked save: opening (probe, resume check, claim, create or replace), roll-over to
the next part, and the ETag chain that shows whether another writer wrote to them."""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings

from .. import _errors, _saving
from .._native import Tracker
from ..errors import OutputExistsError, TrackingError
from . import limits
from .calls import BlobMethod, Call, FileCall, Steps

logger = logging.getLogger("batchfiles")

#: The values of ``if_exists``: what a save does with a blob that exists.
IF_EXISTS = ("resume", "overwrite", "fail")


def content_type(blob_name: str) -> str:
    """``text/plain`` for logs (mimetypes does not know ``.log``), otherwise from the extension."""
    return "text/plain" if blob_name.lower().endswith((".log", ".txt")) else _saving.content_type(blob_name)


def resumed_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """A resumed part's metadata: others' keys and the part mark; batchfiles' own other keys (the old
    writer token, the close mark, an outcome) go, since the blob grows again."""
    own = limits.OWN_PREFIX
    return {k: v for k, v in (metadata or {}).items() if not k.startswith(own) or k == limits.PART_KEY}


def is_part(props: Any, index: int) -> bool:
    """Whether blob properties are those of part ``index`` (>= 1) of a tracked save."""
    return (props.metadata or {}).get(limits.PART_KEY) == str(index)


class Parts:
    """The append blobs holding one file: ``name``, then ``name.1``, ... after roll-overs.

    It keeps this save's writer token (in the metadata of every part it creates or resumes), the ETag
    chain (per part, the ETag this save's last write to it returned), and the committed length and block
    count of the last part, the one appended to.
    """

    def __init__(self, container_name: str, blob_name: str, path: str) -> None:
        self.container_name, self.blob_name, self.path = container_name, blob_name, path
        self.writer = secrets.token_hex(16)
        self.etags: list[str] = []
        self.index = 0  # of the last part
        self.length = 0  # its committed length: the next appendpos
        self.blocks = 0  # its committed block count
        self.metadata: dict[str, str] = {}  # the last part's, as this save last set it

    def name(self, index: int) -> str:
        return self.blob_name if index == 0 else f"{self.blob_name}.{index}"

    @property
    def names(self) -> list[str]:
        """Blob names holding the file, in order."""
        return [self.name(index) for index in range(self.index + 1)]

    @property
    def last(self) -> str:
        """The name of the part appended to."""
        return self.name(self.index)

    def describe(self) -> str:
        """The last part, for messages: ``'name' in container 'c'``."""
        return f"{self.last!r} in container {self.container_name!r}"

    # -- opening: fail, resume or (re)create ------------------------------------------------------------

    def open(self, if_exists: str, file: Tracker) -> Steps[int]:
        """Probe the blob and its parts, then resume after them, replace them, or create the blob. Returns
        how many bytes of the file the parts already hold (0 unless resumed); ``file`` reads them."""
        parts = yield from self._existing()
        if not parts:
            self.etags = [(yield from self._create(0))]
            return 0
        if if_exists == "fail":
            raise OutputExistsError(f"output {self.blob_name!r} already exists (if_exists='fail')")
        if if_exists == "resume":
            if (yield from self._holds_prefix(parts, file)):
                return (yield from self._claim(parts))
            logger.warning(
                "%s does not hold the start of %s: replacing it (if_exists='resume')",
                self.blob_name,
                self.path,
            )
        yield from self._replace(parts)
        return 0

    def _existing(self) -> Steps[list[Any]]:
        """Properties of the blob and of its parts ``name.1``, ... up to the first one missing or not
        marked as that part."""
        found: list[Any] = []
        while True:
            try:
                props = yield Call(self.name(len(found)), BlobMethod.GET_PROPERTIES)
            except ResourceNotFoundError:
                return found
            if found and not is_part(props, len(found)):
                return found
            found.append(props)

    def _holds_prefix(self, parts: list[Any], file: Tracker) -> Steps[bool]:
        """Whether the parts are append blobs whose concatenation is a prefix of the file, judged by
        their last bytes (up to ``RESUME_CHECK``) against the file's bytes at the same offsets."""
        if any(props.blob_type != "AppendBlob" for props in parts):
            return False
        total = sum(props.size for props in parts)
        if total == 0:
            return True
        last = max(index for index, props in enumerate(parts) if props.size)
        tail = min(parts[last].size, limits.RESUME_CHECK)
        try:
            expected = yield FileCall(functools.partial(file.read_range, total - tail, tail))
        except OSError:  # no file at the path yet
            return False
        if len(expected) < tail:
            return False
        kwargs = {"offset": parts[last].size - tail, "length": tail}
        return (yield Call(self.name(last), BlobMethod.DOWNLOAD, kwargs)) == expected

    def _claim(self, parts: list[Any]) -> Steps[int]:
        """Claim the last part (our token in its metadata, if its ETag is still the one probed), then go on
        after the parts: a save still writing to them meets 412 on its next append. Returns their size."""
        name = self.name(len(parts) - 1)
        metadata = {**resumed_metadata(parts[-1].metadata), limits.WRITER_KEY: self.writer}
        condition = {"etag": parts[-1].etag, "match_condition": MatchConditions.IfNotModified}
        try:
            etag = (yield Call(name, BlobMethod.SET_METADATA, {"metadata": metadata, **condition}))["etag"]
        except HttpResponseError as err:
            if err.status_code != 412:
                raise
            now = yield Call(name, BlobMethod.GET_PROPERTIES)  # an earlier try landed, its response lost?
            if (now.metadata or {}).get(limits.WRITER_KEY) != self.writer or now.size != parts[-1].size:
                raise TrackingError(
                    f"{name!r} in container {self.container_name!r} changed while this save was resuming "
                    f"it: another writer is writing to it; stopped saving {self.path}"
                ) from err
            etag = now.etag
        self.metadata = metadata
        self.etags = [props.etag for props in parts[:-1]] + [etag]
        total = sum(props.size for props in parts)
        self.index = len(parts) - 1
        self.length = parts[-1].size
        self.blocks = parts[-1].append_blob_committed_block_count or 0
        logger.info("resuming the tracked save of %s at byte %d of %s", self.path, total, self.blob_name)
        return total

    def _replace(self, parts: list[Any]) -> Steps[None]:
        """Delete the parts after the first (last first), then create the blob afresh. A first blob of
        another type (a block blob: an earlier attempt's log saved whole, by OutputFiles or ``save``) is
        deleted first, if unchanged since probed: storage cannot turn it into an append blob in place."""
        for index in reversed(range(1, len(parts))):
            with contextlib.suppress(ResourceNotFoundError):
                yield Call(self.name(index), BlobMethod.DELETE)
        yield from self._delete_other_type(0, parts[0])
        self.etags = [(yield from self._create(0))]

    def _delete_other_type(self, index: int, props: Any) -> Steps[None]:
        """Delete part ``index`` if it is not an append blob (storage cannot make it one in place), on
        condition that it is unchanged since ``props`` were read."""
        found = _saving.blob_type(props)
        if found == "AppendBlob":
            return
        name = self.name(index)
        condition = {"etag": props.etag, "match_condition": MatchConditions.IfNotModified}
        try:
            yield Call(name, BlobMethod.DELETE, condition)
        except ResourceNotFoundError:
            pass
        except HttpResponseError as err:
            if _saving.is_condition_failed(err):  # a retry of a delete that landed?
                try:
                    now = yield Call(name, BlobMethod.GET_PROPERTIES)
                except ResourceNotFoundError:
                    return
                if _saving.blob_type(now) == "AppendBlob":
                    return
            raise _errors.cannot_replace(self.container_name, name, found, err) from None

    def _create(self, index: int) -> Steps[str]:
        """Create part ``index`` empty, bearing this save's token; returns its ETag. A part after the
        first is marked, and replaces only a blob marked as that part (an earlier try, or a leftover of an
        earlier save), never another blob."""
        name = self.name(index)
        metadata = {limits.WRITER_KEY: self.writer}
        kwargs: dict[str, Any] = {
            "content_settings": ContentSettings(content_type=content_type(self.blob_name)),
            "metadata": metadata,
        }
        if index:
            metadata[limits.PART_KEY] = str(index)
        self.metadata = metadata  # the part created is the last one
        if index:
            try:
                created = yield Call(
                    name, BlobMethod.CREATE, {**kwargs, "match_condition": MatchConditions.IfMissing}
                )
                return created["etag"]
            except ResourceExistsError:
                pass
            props = yield Call(name, BlobMethod.GET_PROPERTIES)
            if not is_part(props, index):
                raise TrackingError(
                    f"{name!r} exists and is not part {index} of {self.blob_name!r}: stopped saving "
                    f"{self.path} rather than overwrite it"
                )
            yield from self._delete_other_type(index, props)
        return (yield Call(name, BlobMethod.CREATE, kwargs))["etag"]

    # -- writing ----------------------------------------------------------------------------------------

    @property
    def full(self) -> bool:
        """Whether the last part holds as many blocks as an append blob can."""
        return self.blocks >= limits.MAX_BLOCKS

    def roll_over(self) -> Steps[None]:
        """Go on in the next part, created empty."""
        self.etags.append((yield from self._create(self.index + 1)))
        self.index, self.length, self.blocks = self.index + 1, 0, 0
        logger.info("%s is full: the tracked save of %s goes on in %s", self.blob_name, self.path, self.last)

    def appended(self, etag: str, size: int) -> None:
        """Record a block of ``size`` bytes committed to the last part, which now has ``etag``."""
        self.etags[-1] = etag
        self.length += size
        self.blocks += 1

    def check_unchanged(self) -> Steps[None]:
        """Every part before the last must still have the ETag this save's last write to it returned,
        else another writer wrote to it after us (:class:`TrackingError`). The last one is checked by
        :meth:`mark_closed`."""
        for index, etag in enumerate(self.etags[:-1]):
            name = self.name(index)
            try:
                props = yield Call(name, BlobMethod.GET_PROPERTIES)
            except ResourceNotFoundError as err:
                if err.error_code != "BlobNotFound":
                    raise
                props = None
            if props is None or props.etag != etag:
                raise self._changed(name, "was deleted" if props is None else "was written to")

    def mark_closed(self, extra: dict[str, str]) -> Steps[None]:
        """Mark the last part closed (:data:`~limits.CLOSED_KEY`, with ``extra`` metadata), if it still has
        the ETag of this save's last write: else another writer wrote to it after us
        (:class:`TrackingError`). A 412 after a lost response is an earlier try that landed when the part
        has exactly this metadata and the committed length."""
        name = self.last
        metadata = {**self.metadata, **extra, limits.CLOSED_KEY: "1"}
        condition = {"etag": self.etags[-1], "match_condition": MatchConditions.IfNotModified}
        try:
            etag = (yield Call(name, BlobMethod.SET_METADATA, {"metadata": metadata, **condition}))["etag"]
        except ResourceNotFoundError as err:
            if err.error_code != "BlobNotFound":
                raise
            raise self._changed(name, "was deleted") from err
        except HttpResponseError as err:
            if err.status_code != 412:
                raise
            try:
                now = yield Call(name, BlobMethod.GET_PROPERTIES)
            except ResourceNotFoundError:
                raise self._changed(name, "was deleted") from err
            if (now.metadata or {}) != metadata or now.size != self.length:
                raise self._changed(name, "was written to") from err
            etag = now.etag
        self.etags[-1] = etag
        self.metadata = metadata

    def _changed(self, name: str, problem: str) -> TrackingError:
        return TrackingError(
            f"{name!r} in container {self.container_name!r} {problem} by another writer after "
            f"this save's last append; {self.path} is not what it holds"
        )
