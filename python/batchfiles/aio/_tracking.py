"""The async twin of :class:`batchfiles.tracking.TrackedSave`: the same engine, over azure.storage.blob.aio.

Each save is driven by one task in the caller's event loop. Opening and polling the file (a ``stat`` when
idle, a read and CRC of at most 4 MiB otherwise) run in a worker thread (``asyncio.to_thread``), never on
the event loop: a slow or stalled disk holds up the save, not the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from azure.storage.blob.aio import ContainerClient

from .. import _errors
from .._tracking import Call, Engine, FileCall, StepRunner, Steps, TrackedSaveBase
from .._types import PathLike
from ..tracking import TrackOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["TrackedSave"]

T = TypeVar("T")


async def _drive(execute: Callable[[Call], Any], steps: Steps[T]) -> T:
    """Run ``steps``, awaiting each storage call made with ``execute`` and each file read in a worker
    thread, and handing back its result or error."""
    run = StepRunner(steps)
    while (call := run.next()) is not None:
        try:
            if isinstance(call, FileCall):
                run.result = await asyncio.to_thread(call.read)
            else:
                run.result = await execute(call)
        except Exception as exc:  # the engine decides: handled, retried later, or kept
            run.error = exc
    return run.value


class TrackedSave(TrackedSaveBase):
    """A file followed and appended to an append blob exactly once; ``async with``.

    See :class:`batchfiles.tracking.TrackedSave`: the same behaviour, with ``await`` on ``start``,
    ``flush`` and ``close``.
    """

    def __init__(self, container: ContainerClient, engine: Engine) -> None:
        """Private: use :meth:`start`."""
        super().__init__(container, engine)
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, container: ContainerClient, blob_name: str, path: PathLike, **options: Unpack[TrackOptions]
    ) -> TrackedSave:
        """Start following ``path`` into the append blob ``blob_name``; options as in the sync twin."""
        engine = await asyncio.to_thread(Engine, container.container_name, blob_name, path, **options)
        save = cls(container, engine)
        with _errors.storage_errors(save._engine.container_name, blob_name):
            await _drive(save._execute, save._engine.opening())
        save._task = asyncio.get_running_loop().create_task(
            save._run(), name=f"batchfiles-tracking {blob_name}"
        )
        return save

    async def _execute(self, call: Call) -> Any:
        result = await self._method(call)(**call.kwargs)
        return await result.readall() if call.reads else result

    async def _run(self) -> None:
        """Sleep until the next step is due or a request comes, run it, tell the waiters; until closed."""
        engine = self._engine
        while not engine.closed:
            self._wake.clear()
            step = engine.begin(monotonic())
            if step is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), engine.wake_at() - monotonic())
                continue
            engine.end(await _drive(self._execute, step), monotonic())
            async with self._progress:
                self._progress.notify_all()

    async def _wait(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wake the task and wait until ``done()`` or the task's end; False after ``timeout`` seconds."""
        assert self._task is not None
        self._wake.set()

        async def notified() -> None:
            async with self._progress:
                await self._progress.wait_for(done)

        waiter = asyncio.ensure_future(notified())
        try:
            await asyncio.wait({waiter, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if waiter.done() and not waiter.cancelled():
            waiter.result()  # raises the kept error
            return True
        self._reap()
        return done()

    def _reap(self) -> None:
        """If the task ended before the save was closed (it failed or was cancelled), stop the save with
        an error, so ``flush`` and ``close`` raise instead of waiting forever."""
        task = self._task
        if task is None or not task.done():
            return
        exc = asyncio.CancelledError("cancelled") if task.cancelled() else task.exception()
        if exc is not None:
            self._engine.stop(_errors.stopped_error(f"the task saving {self._engine.path} ended", exc))

    async def flush(self, timeout: float | None = None) -> None:
        """Return once everything written so far is in the blob; raises the kept :attr:`error`, or
        :class:`TimeoutError` after ``timeout`` seconds."""
        ticket = self._engine.request_flush()
        if not await self._wait(lambda: self._engine.flushed(ticket), timeout):
            raise TimeoutError(f"{self._engine.path} was not flushed within {timeout} s")

    async def close(self, *, metadata: dict[str, str] | None = None) -> None:
        """Final flush, then follow the file until it settles (no change seen for ``settle`` s, counted
        from the last change, not from the call) or ``linger`` passed, then mark the blob
        closed (with ``metadata``); raises the kept :attr:`error`. Safe to call more than once. Metadata
        storage would refuse raises :class:`ValueError` at once; see the sync twin."""
        self._engine.request_close(monotonic(), metadata=metadata)
        await self._wait(lambda: self._engine.closed)
        if self._task is not None:
            await asyncio.wait({self._task})  # it ends once closed
            self._reap()
        self._engine.raise_error()

    async def __aenter__(self) -> TrackedSave:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
