"""The calls the engine of a tracked save asks for, and the runner that steps its work.

The engine's work comes as generators (:data:`Steps`) that yield a :class:`Call` (one storage call) or a
:class:`FileCall` (one read of the file followed), and are sent back each call's result or thrown its
error. A driver runs them with :class:`StepRunner` (:func:`drive` is the sync loop): storage calls on a
sync or async blob client, file reads in its own thread (the async driver: in a worker thread, never on
the event loop).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
#: Work of an engine: yields the calls to make, is sent their results, returns a ``T``.
Steps = Generator["Call | FileCall", Any, T]


class BlobMethod(enum.Enum):
    """The blob client methods the engine calls: the same on the sync and async clients."""

    GET_PROPERTIES = "get_blob_properties"
    DOWNLOAD = "download_blob"  # the result is the downloader's ``readall()``
    SET_METADATA = "set_blob_metadata"
    CREATE = "create_append_blob"
    APPEND = "append_block"
    DELETE = "delete_blob"


@dataclass(frozen=True)
class Call:
    """One storage call: ``method`` of the client of ``blob``, with ``kwargs``."""

    blob: str
    method: BlobMethod
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def reads(self) -> bool:
        """Whether the call returns a downloader whose ``readall()`` is the result."""
        return self.method is BlobMethod.DOWNLOAD


@dataclass(frozen=True)
class FileCall:
    """One read of the file followed (a poll of its tracker, a range, a reopen): ``read()``'s result."""

    read: Callable[[], Any]


def client_method(blob: Any, method: BlobMethod) -> Callable[..., Any]:
    """The bound method of a sync or async blob client that makes a call of ``method``."""
    methods: dict[BlobMethod, Callable[..., Any]] = {
        BlobMethod.GET_PROPERTIES: blob.get_blob_properties,
        BlobMethod.DOWNLOAD: blob.download_blob,
        BlobMethod.SET_METADATA: blob.set_blob_metadata,
        BlobMethod.CREATE: blob.create_append_blob,
        BlobMethod.APPEND: blob.append_block,
        BlobMethod.DELETE: blob.delete_blob,
    }
    return methods[method]


class StepRunner:
    """Steps a generator of calls: set ``result`` or ``error`` for the last call, then :meth:`next`."""

    def __init__(self, steps: Steps[Any]) -> None:
        self._steps = steps
        self.result: Any = None
        self.error: BaseException | None = None
        self.value: Any = None

    def next(self) -> Call | FileCall | None:
        """The next call to make, or None once the generator returned (its value is in ``value``)."""
        result, error, self.result, self.error = self.result, self.error, None, None
        try:
            return self._steps.send(result) if error is None else self._steps.throw(error)
        except StopIteration as stop:
            self.value = stop.value
            return None


def drive(execute: Callable[[Call], Any], steps: Steps[T]) -> T:
    """Run ``steps``, making each storage call with ``execute`` and each file read here, and handing back
    its result or error."""
    run = StepRunner(steps)
    while (call := run.next()) is not None:
        try:
            run.result = call.read() if isinstance(call, FileCall) else execute(call)
        except Exception as exc:  # the engine decides: handled, retried later, or kept
            run.error = exc
    return run.value
