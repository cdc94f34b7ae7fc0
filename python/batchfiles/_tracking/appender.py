"""The appender of a tracked save: the file's new blocks, each appended exactly once to the blob parts.

Every append carries ``appendpos`` = the committed length of the part and ``If-Match`` = the ETag this
save's last write to it returned. On 412 the append counts as an earlier try of this very append that
landed (its response lost) only if the part still bears this save's writer token, is the committed length
plus the block long, and ends with the block; anything else is another writer (:class:`TrackingError`).
A block is committed to the tracker only once storage holds it, so a failed append is sent again later.
"""

from __future__ import annotations

import functools
import logging
from time import monotonic

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError

from .. import _saving
from .._native import Tracker
from ..errors import TrackingError
from . import limits
from .calls import BlobMethod, Call, FileCall, Steps
from .parts import Parts

logger = logging.getLogger("batchfiles")

#: Error codes of a 412 on append: the ETag (``If-Match``) or the append position condition failed.
CONDITION_CODES = ("ConditionNotMet", "AppendPositionConditionNotMet")

#: How the tracker's events are logged, with the path and the event's value.
EVENT_LOGS = {
    "rotated": (logging.INFO, "%s was rotated: reading the %d bytes left in the old file first"),
    "deleted": (logging.INFO, "%s was deleted: reading the %d bytes left in the open file"),
    "truncated": (logging.WARNING, "%s was truncated or rewritten: %d bytes not yet saved are lost"),
    "skipped": (logging.WARNING, "%s was rotated too often: %d bytes of a rotated file are lost"),
}


class Appender:
    """Polls the file's tracker (which follows the path through rotation and truncation) for ready blocks
    and appends each to the last of the parts, exactly once; counts what it saved and what was lost."""

    def __init__(self, parts: Parts, tracker: Tracker) -> None:
        self.parts = parts
        self.tracker = tracker
        self.bytes_saved = 0
        self.lost_bytes = 0
        self.polls = 0
        self.appends = 0  # append requests that stored a block (this save's, or an earlier try's)
        self.file_seen = False
        self.grew = False  # a poll saw the file change since the last :meth:`take_grew`

    @property
    def tracker(self) -> Tracker:
        """The file's tracker; replaced when a resume starts further in the file."""
        return self._tracker

    @tracker.setter
    def tracker(self, tracker: Tracker) -> None:
        self._tracker, self._changes = tracker, tracker.changes

    def take_grew(self) -> bool:
        """Whether a poll saw the file change (grow, shrink, be rewritten or replaced) since the last
        call."""
        grew, self.grew = self.grew, False
        return grew

    def send(self, min_bytes: int, started: float, retries: int | None = None) -> Steps[tuple[int, bool]]:
        """Append ready blocks (of at least ``min_bytes``) until caught up, or ``STEP_BUDGET`` s after
        ``started``. Returns the bytes appended and whether it caught up. On an error the block stays
        pending in the tracker; the bytes appended before it are in ``bytes_saved``. ``retries``: the
        client's retries of each append (None: the client's own setting)."""
        appended = 0
        while True:
            block, events, more = yield FileCall(functools.partial(self._tracker.poll, min_bytes))
            self.polls += 1
            if (changes := self._tracker.changes) != self._changes:
                self._changes, self.grew = changes, True
            self._note(events)
            if block is None:
                return appended, True
            yield from self.append(block[0], block[1], retries)
            appended += len(block[0])
            if not more:
                return appended, True
            if monotonic() - started >= limits.STEP_BUDGET:
                return appended, False

    def append(self, data: bytes, crc: str, retries: int | None = None) -> Steps[None]:
        """Append one block at the committed length, exactly once, then commit it to the tracker."""
        parts = self.parts
        if parts.full:
            yield from parts.roll_over()
        kwargs = {
            "data": data,
            "length": len(data),
            "appendpos_condition": parts.length,
            "etag": parts.etags[-1],
            "match_condition": MatchConditions.IfNotModified,
            "headers": _saving.crc_headers(crc),
        }
        if retries is not None:
            kwargs["retry_total"] = retries
        try:
            etag = (yield Call(parts.last, BlobMethod.APPEND, kwargs))["etag"]
        except HttpResponseError as err:
            if _saving.is_other_type(err):
                raise parts._changed(parts.last, "was replaced by a blob of another type") from err
            if err.status_code != 412 or err.error_code not in CONDITION_CODES:
                raise
            etag = yield from self._check_landed(data, err)
        parts.appended(etag, len(data))
        self.tracker.commit()
        self.bytes_saved += len(data)
        self.appends += 1

    def _check_landed(self, data: bytes, err: HttpResponseError) -> Steps[str]:
        """After a 412 on append: the part's new ETag if an earlier try of this very append landed (the
        part bears our token, is the committed length plus the block long, and ends with the block),
        else :class:`TrackingError`. Only appends can have changed a part bearing our token since our
        last write, so it then holds exactly what this save sent."""
        parts, size = self.parts, len(data)
        name, length = parts.last, parts.length
        props = yield Call(name, BlobMethod.GET_PROPERTIES)
        if (props.metadata or {}).get(limits.WRITER_KEY) != parts.writer:
            problem = "was replaced or resumed by another writer"
        elif props.size != length + size:
            problem = (
                f"is {props.size} bytes long, not {length} (or {length + size} with the block "
                "being appended): another writer appended to it"
            )
        else:
            kwargs = {
                "offset": length,
                "length": size,
                "etag": props.etag,
                "match_condition": MatchConditions.IfNotModified,
            }
            try:
                landed = yield Call(name, BlobMethod.DOWNLOAD, kwargs)
            except HttpResponseError as read_err:
                if read_err.status_code != 412:
                    raise
                landed = None  # changed again since its properties were read
            if landed == data:
                logger.debug("an earlier try of the append at %d to %s had landed", length, name)
                return props.etag
            problem = f"does not end with the block appended at {length}: another writer wrote to it"
        raise TrackingError(
            f"{name!r} in container {parts.container_name!r} {problem}; stopped saving {parts.path}"
        ) from err

    def _note(self, events: list[tuple[str, int]]) -> None:
        for name, value in events:
            if name == "opened":
                self.file_seen = True
                continue
            if name in ("truncated", "skipped"):
                self.lost_bytes += value
            level, message = EVENT_LOGS[name]
            logger.log(level, message, self.parts.path, value)
