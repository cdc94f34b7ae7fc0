"""Tracked saves: follow a growing file and append its new bytes to an append blob, each byte once.

How it is built:

- The engine lives in :mod:`batchfiles._tracking`, shared with :mod:`batchfiles.aio`: the blob parts
  (opening, resume, roll-over), the appender, and a pure schedule. It owns the Rust tracker
  (:class:`batchfiles._native.Tracker`, which follows the path through rotation and truncation) and
  decides what to send and when. Its work comes as generators that yield calls (one storage call or one
  read of the file each) and are sent back each call's result, or thrown its error: the drivers make them
  (the async one reads the file in a worker thread).
- This module is the sync driver: one daemon thread per process (:class:`_Scheduler`) serving every
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
import heapq
import itertools
import os
import threading
from time import monotonic
from typing import TYPE_CHECKING, Any, TypedDict

from azure.storage.blob import ContainerClient

from . import _errors
from ._tracking import Call, Engine, Outcome, Steps, TrackedSaveBase, drive
from ._types import PathLike
from .errors import TrackingError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["TrackOptions", "TrackedSave"]

#: At interpreter exit, how long the final flush of saves never closed may take.
_EXIT_TIMEOUT = 30.0


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

    def _run(self, save: TrackedSave, step: Steps[Outcome]) -> None:
        """Run one step without the lock, then record its outcome."""
        self.cond.release()
        try:
            outcome = drive(save._execute, step)
        finally:
            self.cond.acquire()
        save._engine.end(outcome, monotonic())
        self.wake(save)

    def _at_exit(self) -> None:
        """Saves never closed get their final flush (without settle or linger) before the process ends."""
        with self.cond:
            saves = list(self._open)
            for save in saves:
                save._engine.request_close(monotonic(), final=True)
                self.wake(save)
            self.cond.wait_for(lambda: all(save._engine.closed for save in saves), _EXIT_TIMEOUT)


_scheduler = _Scheduler()


class TrackOptions(TypedDict, total=False):
    """Options of a tracked save; the defaults are those of :meth:`TrackedSave.start`."""

    flush_interval: float
    if_exists: str
    settle: float
    linger: float


class TrackedSave(TrackedSaveBase):
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
        save = cls(container, Engine(container.container_name, blob_name, path, **options))
        with _errors.storage_errors(save._engine.container_name, blob_name):
            drive(save._execute, save._engine.opening())
        _scheduler.add(save)
        return save

    def _execute(self, call: Call) -> Any:
        result = self._method(call)(**call.kwargs)
        return result.readall() if call.reads else result

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything written to the file so far is in the blob.

        Raises the kept :attr:`error`, or :class:`TimeoutError` after ``timeout`` seconds.
        """
        with _scheduler.cond:
            ticket = self._engine.request_flush()
            _scheduler.wake(self)
            if not _scheduler.cond.wait_for(lambda: self._engine.flushed(ticket), timeout):
                raise TimeoutError(f"{self._engine.path} was not flushed within {timeout} s")

    def close(self, *, metadata: dict[str, str] | None = None) -> None:
        """Save everything up to the end of the file, then keep following it until it has not grown
        for ``settle`` seconds or ``linger`` seconds have passed; raises the kept :attr:`error`. The
        ``settle`` window counts from the last change the save saw (or its start), so a file idle for
        longer closes right after the final read, and saves closed one after another share one window.

        Last, the blob (its last part) is marked closed in its metadata (``batchfiles_closed=1``, with
        ``metadata`` beside it, e.g. an outcome), on condition that no other writer wrote to it: a
        follower (``follow``, ``batchfiles logs -f``) then stops once it has read it all. A file that
        never appeared makes ``close`` wait the whole ``linger`` and log a warning; its blob stays empty.
        Safe to call more than once. ``metadata`` that storage would refuse (names that are not
        identifiers; over 8 KiB in all with the marks) raises :class:`ValueError` at once, before anything
        is sent, and the save goes on.
        """
        with _scheduler.cond:
            self._engine.request_close(monotonic(), metadata=metadata)
            _scheduler.wake(self)
            _scheduler.cond.wait_for(lambda: self._engine.closed)
        self._engine.raise_error()

    def __enter__(self) -> TrackedSave:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
