"""The schedule of a tracked save: which step is due when, flush tickets, close/settle/linger, backoff,
and coalescing (as the blocks run out, and while storage throttles).

Pure: no I/O, no tracker, no clock of its own (every time is passed in) and its randomness (the jitter of
throttled retries) injected, so tests drive it with a fake clock. The engine asks :meth:`Schedule.begin`
for the step due, runs it, and reports its :class:`Outcome` with :meth:`Schedule.succeeded` or
:meth:`Schedule.failed`.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from . import limits


class Step(enum.Enum):
    """What a step does; every step but the last polls the file and sends what is ready."""

    WATCH = "watch"  # the regular look at the file: sends full blocks only
    UPLOAD = "upload"  # every flush interval: sends what the file gained (coalesced near the block limit)
    FLUSH = "flush"  # a flush or close was asked: sends everything
    CONFIRM = "confirm"  # the last step of a close: checks that no other writer wrote after this save


@dataclass(frozen=True)
class Outcome:
    """What one step did; :meth:`Schedule.begin` makes it, the engine fills in what happened."""

    step: Step
    ticket: int  # the flush requests made before the step started
    started: float
    caught_up: bool = False  # every ready block was sent
    appended: int = 0
    grew: bool = False  # the file was seen to change (grow, shrink, be replaced) during the step
    error: Exception | None = None


class Schedule:
    """When the next step of one save is due, and which; flush tickets; closing; backoff after failures.

    Flushes are tickets: :meth:`request_flush` returns the number of requests so far, and a flush step
    that began after ticket ``n`` was taken completes every ticket up to ``n``. A close is a last flush,
    then steps every ``SETTLE_POLL`` s until the file has not grown for ``settle`` s (once it was seen) or
    ``linger`` s passed since the close was asked, then the confirm step; the save is closed once that
    succeeds. The settle window counts from the last step that saw the file change (or the start), not from
    the close: a file idle for longer closes right after its final flush, and saves closed one after another
    share one window.

    Failures: a fault is retried after a doubling ``BACKOFF`` and kept after ``MAX_FAILED_STEPS`` in a
    row; throttling is retried after its ``Retry-After`` plus full jitter for ``THROTTLED_PATIENCE`` s,
    and raises the coalescing level (:attr:`pressure`), which falls back after sustained success.
    ``jitter`` returns a number in [0, 1) (default :func:`random.random`).
    """

    def __init__(
        self,
        now: float,
        *,
        flush_interval: float,
        settle: float,
        linger: float,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._interval, self._settle, self._linger = flush_interval, settle, linger
        self._jitter = jitter
        self.closed = False
        self.failures = 0  # failed steps in a row
        self._faults = 0  # of which not throttling
        self._failing_since = 0.0  # when the first of them failed
        self.pressure = 0  # the coalescing level, raised by throttling (0: none)
        self._calm_since = now  # the last throttled step, or the last fall of the level
        self._last_append = now
        self._upload_at = now + flush_interval
        self._watch_at = now + limits.WATCH_INTERVAL
        self._retry_at = 0.0
        self._flush_asked = self._flush_done = 0
        self._close_ticket = 0  # > 0 once close was asked
        self._closing_at = 0.0
        self._grew_at = now  # the last step that saw the file change; the start, before any
        self._confirming = False  # settled: only the confirm step is left

    def _plan(self) -> tuple[float, Step]:
        """When the next step is due, and which."""
        if self._confirming:
            return self._retry_at, Step.CONFIRM
        if self._flush_asked > self._flush_done:
            return self._retry_at, Step.FLUSH
        if self._close_ticket:
            return max(self._retry_at, self._upload_at), Step.FLUSH
        if self._upload_at <= self._watch_at:
            return max(self._retry_at, self._upload_at), Step.UPLOAD
        return max(self._retry_at, self._watch_at), Step.WATCH

    def wake_at(self) -> float:
        """The time the next step is due; infinite once closed."""
        return math.inf if self.closed else self._plan()[0]

    def begin(self, now: float) -> Outcome | None:
        """The step due at ``now`` (as an outcome still to fill in), or None if none is due."""
        when, step = self._plan()
        if self.closed or now < when:
            return None
        return Outcome(step, self._flush_asked, now)

    def min_bytes(self, step: Step, now: float, blocks: int) -> int:
        """Bytes a step waits for before it sends, with ``blocks`` committed in the part: none for a flush,
        a full block for a watch; a regular upload none until half the blocks are used or storage
        throttles, then more and more, unless nothing was appended for ``STALE_INTERVALS`` flush
        intervals."""
        if step is Step.WATCH:
            return limits.MAX_BLOCK
        if step is not Step.UPLOAD:
            return 0
        if now - self._last_append >= limits.STALE_INTERVALS * self._interval:  # stale: send anyway
            return 0
        wanted = 0
        if blocks >= limits.MAX_BLOCKS // 2:
            wanted = limits.COALESCE_BYTES if blocks < limits.MAX_BLOCKS * 9 // 10 else limits.MAX_BLOCK
        if self.pressure:
            wanted = max(wanted, limits.THROTTLED_BYTES << (self.pressure - 1))
        return min(wanted, limits.MAX_BLOCK)

    def succeeded(self, outcome: Outcome, now: float, *, file_seen: bool) -> bool:
        """Record a step that succeeded and plan the next one. True when a close just settled or gave up
        waiting (the confirm step is next); ``file_seen``: whether the file has ever existed."""
        self.failures = self._faults = 0
        self._retry_at = 0.0
        if outcome.step is Step.CONFIRM:
            self.closed = True
            return False
        if outcome.grew:
            self._grew_at = now
        if outcome.appended:
            self._last_append = now
            if self.pressure and now - self._calm_since >= limits.PRESSURE_RELIEF:
                self.pressure -= 1
                self._calm_since = now
        if not outcome.caught_up:  # out of time with more to send: go on after the other saves
            self._upload_at = now
            return False
        if outcome.step is Step.WATCH:  # aligned, so that one wake-up serves every save
            self._watch_at = (now // limits.WATCH_INTERVAL + 1) * limits.WATCH_INTERVAL
            return False
        self._upload_at = outcome.started + self._interval
        if outcome.step is Step.FLUSH:
            self._flush_done = max(self._flush_done, outcome.ticket)
        if not self._close_ticket or self._flush_done < self._close_ticket:
            return False
        self._upload_at = now + limits.SETTLE_POLL
        settled = file_seen and now - self._grew_at >= self._settle
        if not settled and now - self._closing_at < self._linger:
            return False
        self._confirming = True
        return True

    def failed(
        self,
        outcome: Outcome,
        now: float,
        *,
        retry: bool,
        throttled: bool = False,
        retry_after: float | None = None,
    ) -> float | None:
        """Record a step that failed: the backoff (s) before it is tried again when ``retry``, or None when
        the error should be kept (not ``retry``; ``MAX_FAILED_STEPS`` faults in a row; or ``throttled``
        with every step failing for ``THROTTLED_PATIENCE`` s). ``retry_after``: what the answer asked."""
        if not self.failures:
            self._failing_since = now
        self.failures += 1
        if outcome.grew:
            self._grew_at = now
        if outcome.appended:
            self._last_append = now
        if not retry:
            return None
        if throttled:
            self.pressure = min(self.pressure + 1, limits.MAX_PRESSURE)
            self._calm_since = now
            if now - self._failing_since >= limits.THROTTLED_PATIENCE:
                return None
            first, most = limits.THROTTLED_BACKOFF
            floor = first if retry_after is None else min(retry_after, most)
            delay = floor + self._jitter() * min(first * 2 ** min(self.failures - 1, 32), most)
        else:
            self._faults += 1
            if self._faults >= limits.MAX_FAILED_STEPS:
                return None
            first, most = limits.BACKOFF
            delay = min(first * 2 ** (self._faults - 1), most)
        self._retry_at = now + delay
        return delay

    def failing_for(self, now: float) -> float:
        """Seconds since the first of the failed steps in a row (0 when the last step succeeded)."""
        return now - self._failing_since if self.failures else 0.0

    def request_flush(self) -> int:
        """Ask for everything written so far to be sent; returns the ticket :meth:`flushed` takes."""
        self._flush_asked += 1
        return self._flush_asked

    def request_close(self, now: float, *, final: bool = False) -> None:
        """Ask for a last flush, then the settle and linger polls (idempotent). ``final``: without settle
        or linger, e.g. at interpreter exit (also when the close was asked before)."""
        if final:
            self._settle = self._linger = 0.0
        if not self._close_ticket and not self.closed:
            self._close_ticket = self.request_flush()
            self._closing_at = now

    def flushed(self, ticket: int) -> bool:
        """Whether the flush ``ticket`` is done, or the save closed."""
        return self.closed or self._flush_done >= ticket

    def close(self) -> None:
        """No step is due any more (the save stopped)."""
        self.closed = True
