"""The engine of one tracked save: composes the blob parts, the appender and the schedule.

Its work comes as generators that yield a :class:`~batchfiles._tracking.calls.Call` (one storage call) or a
:class:`~batchfiles._tracking.calls.FileCall` (one read of the file) and are sent back each call's result,
or thrown its error; the drivers (a thread in :mod:`batchfiles.tracking`, a task in :mod:`batchfiles.aio`
that reads the file in a worker thread) make the calls and hand :meth:`Engine.begin` and :meth:`Engine.end`
the time. Only the constructor opens the file (the aio driver builds the engine in a worker thread). The
engine reads the clock only to start the schedule, and its appender only to end a step after its time
budget (``limits.STEP_BUDGET``).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass, replace
from time import monotonic

from .. import _errors
from .._native import Tracker
from .._types import PathLike
from . import limits
from .appender import Appender
from .calls import FileCall, Steps
from .parts import IF_EXISTS, Parts
from .schedule import Outcome, Schedule, Step

logger = logging.getLogger("batchfiles")


def check_options(
    blob_name: str, flush_interval: float, if_exists: str, settle: float, linger: float
) -> None:
    """Raise :class:`ValueError` for a bad option of a tracked save."""
    if not isinstance(blob_name, str) or not blob_name:
        raise ValueError(f"blob_name must be a non-empty str, not {blob_name!r}")
    if if_exists not in IF_EXISTS:
        raise ValueError(f"if_exists must be one of {IF_EXISTS}, not {if_exists!r}")
    for name, value in (("flush_interval", flush_interval), ("settle", settle), ("linger", linger)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
        if value < 0 or (value == 0 and name == "flush_interval"):
            raise ValueError(f"{name} must be {'> 0' if name == 'flush_interval' else '>= 0'}, not {value}")


def check_metadata(metadata: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """Close metadata as storage takes it: names are identifiers (not batchfiles' own), values ASCII, and
    with the ``current`` metadata of the blob and the close mark, at most 8 KiB in all (storage refuses
    more, and only at the last request: this is checked before it)."""
    checked = {}
    for name, value in metadata.items():
        if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
            raise ValueError(f"metadata names must be ASCII identifiers, not {name!r}")
        if name.lower() in (limits.CLOSED_KEY, limits.WRITER_KEY, limits.PART_KEY):
            raise ValueError(f"metadata name {name!r} is batchfiles' own")
        if not (isinstance(value, str) and value.isascii() and value.isprintable()):
            raise ValueError(f"metadata values must be printable ASCII, not {value!r}")
        checked[name.lower()] = value
    # A roll-over before the close puts the part mark on the last part: room is kept for it.
    marks = {limits.CLOSED_KEY: "1", limits.PART_KEY: str(limits.MAX_PARTS_MARK)}
    size = sum(len(k) + len(v) for k, v in {**current, **checked, **marks}.items())
    if size > limits.MAX_METADATA:
        raise ValueError(
            f"metadata would be {size} bytes in all (names and values, batchfiles' own marks included); "
            f"Azure allows {limits.MAX_METADATA} per blob"
        )
    return checked


@dataclass(frozen=True)
class Stats:
    """The counts of a tracked save, and diagnostics for logs and tests."""

    bytes_saved: int  # appended by this save
    lost_bytes: int  # destroyed by truncation or too fast rotation before they could be read
    polls: int  # looks at the file (two ``stat`` calls when idle)
    failures: int  # failed steps in a row, retried so far
    writer: str  # this save's token, in the metadata of the parts it created or resumed
    etags: tuple[str, ...]  # per part, the ETag this save's last write to it returned
    appends: int = 0  # append requests that stored a block
    pressure: int = 0  # the coalescing level while storage throttles (0: none)


class Engine:
    """The state of one tracked save: the file's tracker, the parts, the schedule, the error.

    Drivers run :meth:`opening` once, then loop: :meth:`begin` a step when :meth:`wake_at` comes, run
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
        check_options(blob_name, flush_interval, if_exists, settle, linger)
        self.container_name = container_name
        self.blob_name = blob_name
        self.path = os.fspath(path)
        self._if_exists = if_exists
        self._parts = Parts(container_name, blob_name, self.path)
        tracker = Tracker(self.path, 0, limits.MAX_BLOCK)  # a directory or an unreadable file fails here
        self._appender = Appender(self._parts, tracker)
        self._schedule = Schedule(monotonic(), flush_interval=flush_interval, settle=settle, linger=linger)
        self.error: BaseException | None = None
        self._close_metadata: dict[str, str] = {}

    @property
    def parts(self) -> list[str]:
        """Blob names holding the file, in order: ``name``, then ``name.1``, ... after roll-overs."""
        return self._parts.names

    @property
    def closed(self) -> bool:
        return self._schedule.closed

    @property
    def stats(self) -> Stats:
        """A snapshot of the counts and of the ETag chain."""
        sent, parts, sched = self._appender, self._parts, self._schedule
        return Stats(
            sent.bytes_saved,
            sent.lost_bytes,
            sent.polls,
            sched.failures,
            parts.writer,
            tuple(parts.etags),
            sent.appends,
            sched.pressure,
        )

    def opening(self) -> Steps[None]:
        """Probe the blob and its parts, then resume after them, replace them, or create the blob."""
        offset = yield from self._parts.open(self._if_exists, self._appender.tracker)
        if offset:
            reopen = functools.partial(Tracker, self.path, offset, limits.MAX_BLOCK)
            self._appender.tracker = yield FileCall(reopen)

    # -- requests (from the caller's thread or task) ----------------------------------------------------

    def wake_at(self) -> float:
        """The ``monotonic()`` time the next step is due; infinite once closed."""
        return self._schedule.wake_at()

    def request_flush(self) -> int:
        """Ask for everything written so far to be sent; returns the ticket :meth:`flushed` takes."""
        return self._schedule.request_flush()

    def request_close(
        self, now: float, *, final: bool = False, metadata: dict[str, str] | None = None
    ) -> None:
        """Final flush, then poll until the file settles or the linger time is over (idempotent).
        ``final``: without settle or linger (at interpreter exit). ``metadata``: set on the last part with
        the close mark (the first close that passes some wins)."""
        if metadata and not self._close_metadata:
            self._close_metadata = check_metadata(metadata, self._parts.metadata)
        self._schedule.request_close(now, final=final)

    def flushed(self, ticket: int) -> bool:
        """Whether the flush ``ticket`` is done (or the save is closed); raises the kept error."""
        self.raise_error()
        return self._schedule.flushed(ticket)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self, error: BaseException, *, log: bool = True) -> None:
        """Keep ``error`` and close, when the save cannot go on (nothing once closed)."""
        if self.closed:
            return
        self.error = error
        self._schedule.close()
        if log:
            logger.error(
                "tracked save of %s to %s stopped: %s",
                self.path,
                self._parts.last,
                _errors.redact(str(error)),
            )

    # -- steps (from the driver) ------------------------------------------------------------------------

    def begin(self, now: float) -> Steps[Outcome] | None:
        """The step due at ``now``, or None if none is due."""
        outcome = self._schedule.begin(now)
        if outcome is None:
            return None
        if outcome.step is Step.CONFIRM:
            return self._confirm(outcome)
        return self._send(outcome, self._schedule.min_bytes(outcome.step, now, self._parts.blocks))

    def end(self, outcome: Outcome, now: float) -> None:
        """Record a step's outcome and plan the next one; keep an error that cannot be retried."""
        exc = outcome.error
        if exc is None:
            file_seen = self._appender.file_seen
            if self._schedule.succeeded(outcome, now, file_seen=file_seen) and not file_seen:
                logger.warning("%s never appeared: nothing was saved to %s", self.path, self.blob_name)
            return
        sched, transient = self._schedule, _errors.is_transient(exc)
        throttled = transient and _errors.is_throttling(exc)
        calm = not sched.pressure
        wait = _errors.retry_after(exc) if throttled else None
        delay = sched.failed(outcome, now, retry=transient, throttled=throttled, retry_after=wait)
        if delay is not None and throttled:  # said once per episode: a throttled account answers often
            logger.log(
                logging.WARNING if calm else logging.DEBUG,
                "storage is throttling the tracked save of %s to %s (%s): appending less often, in larger "
                "blocks, and trying again for up to %.0f s (next in %.1f s)",
                self.path,
                self._parts.last,
                _errors.first_line(exc),
                limits.THROTTLED_PATIENCE,
                delay,
            )
            return
        if delay is not None:
            logger.warning(
                "tracked save of %s to %s failed (%s); trying again in %.1f s",
                self.path,
                self._parts.last,
                _errors.redact(str(exc)),
                delay,
            )
            return
        what = self._parts.describe()
        if throttled:
            gave_up = (
                f"gave up saving {self.path} to {what}: storage throttled every try for "
                f"{sched.failing_for(now):.0f} s ({sched.failures} failures)"
            )
        else:
            gave_up = f"gave up saving {self.path} to {what} after {sched.failures} failures"
        self.stop(_errors.kept_error(exc, self.container_name, what, gave_up=gave_up))

    def _send(self, outcome: Outcome, min_bytes: int) -> Steps[Outcome]:
        """Send ready blocks (of at least ``min_bytes``) until caught up or out of time."""
        before = self._appender.bytes_saved
        retries = limits.THROTTLED_CLIENT_RETRIES if self._schedule.pressure else None
        try:
            appended, caught_up = yield from self._appender.send(min_bytes, outcome.started, retries)
        except Exception as exc:  # kept or retried by end(); the block stays pending in the tracker
            appended = self._appender.bytes_saved - before
            return replace(outcome, appended=appended, grew=self._appender.take_grew(), error=exc)
        return replace(outcome, appended=appended, caught_up=caught_up, grew=self._appender.take_grew())

    def _confirm(self, outcome: Outcome) -> Steps[Outcome]:
        """The last step of a close: no other writer wrote to the parts after this save; then the last
        part is marked closed (with the close metadata), on condition that its ETag is still ours."""
        try:
            yield from self._parts.check_unchanged()
            yield from self._parts.mark_closed(self._close_metadata)
        except Exception as exc:  # kept or retried by end()
            return replace(outcome, error=exc)
        return outcome
