"""Deleting a job's outputs or its container, for the sync and aio storages alike (no I/O here): the blobs
each output of a snapshot stands for, checked against the conventions and the container it was listed from;
what a SAS shows it may not delete, said before any request; what the answer to a delete means; and the
tally that becomes the result or the error."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from . import _errors, _sas, _scope, naming
from .errors import AuthenticationError, BatchFilesError, DeleteError
from .snapshot import OutputSnapshot

#: Outputs deleted at once by default (each output's blobs one after the other).
MAX_CONCURRENCY = 16


@dataclass(frozen=True)
class Blob:
    """A blob to delete: its name, and the ETag it was listed with (quoted, as ``If-Match`` takes it)."""

    name: str
    etag: str


@dataclass(frozen=True)
class Plan:
    """An output's blobs in the order they are deleted, and, for a tracked save still open (its writer may
    roll over into a new part at any time), the name of the part that would come next: if it is there, the
    output is left rather than deleted up to a part no selection would find again."""

    blobs: tuple[Blob, ...]
    next_part: str | None = None


def plan(outputs: Iterable[OutputSnapshot], container: str) -> list[Plan]:
    """Each output's blobs in the order they are deleted: the last part first, the first blob last, so that
    what a refusal leaves of a tracked log is still an output (its first blob and the parts up to a point),
    which a later selection finds again. An output given twice is deleted once.

    :class:`TypeError` for anything but an :class:`OutputSnapshot`; :class:`ValueError` for one that was not
    listed from a container of this name, whose names are not the conventions' (so no hand-made object can
    name a blob that no snapshot would call an output), or without its ETags. (The same container reached
    through another endpoint is fine; another account's container of the same name is kept safe by the
    ETags, which its blobs do not have.)
    """
    seen: set[str] = set()
    plans: list[Plan] = []
    for output in outputs:
        if not isinstance(output, OutputSnapshot):
            raise TypeError(
                f"delete takes outputs of a snapshot (OutputSnapshot), not {type(output).__name__}"
            )
        _check(output, container)
        if output.blob_name in seen:
            continue
        seen.add(output.blob_name)
        blobs = zip(output.blob_names, output.etags, strict=True)
        ordered = tuple(Blob(name, _quoted(etag)) for name, etag in reversed(list(blobs)))
        following = f"{output.blob_name}.{len(output.parts) + 1}" if output.log.state == "open" else None
        plans.append(Plan(ordered, following))
    return plans


def _check(output: OutputSnapshot, container: str) -> None:
    name = output.blob_name
    problem = _scope.path_problem(output.file_path) if isinstance(output.file_path, str) else "is not text"
    if problem is not None:
        raise ValueError(f"{name!r} is not an output: its file path {problem}")
    try:
        derived = naming.blob_name(output.kind, output.file_path, output.task_id)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name!r} is not an output: {err}") from None
    if name != derived:
        raise ValueError(f"{name!r} is not the blob of its kind, path and task ({derived!r})")
    if output.parts != tuple(f"{name}.{i}" for i in range(1, len(output.parts) + 1)):
        raise ValueError(f"the parts of {name!r} are not {name!r}.1, .2, ... in order")
    if not urlsplit(output.url).path.endswith(f"/{container}/{quote(name, safe='~/')}"):
        raise ValueError(f"{name!r} was not listed from this storage's container {container!r}")
    if len(output.etags) != len(output.blob_names) or not all(output.etags):
        raise ValueError(f"{name!r} has no ETag for each blob: delete outputs of this storage's snapshot()")


def _quoted(etag: Any) -> str:
    """A listing's ETag (``0x8D...``) as the ``If-Match`` header quotes it (``"0x8D..."``)."""
    text = str(etag)
    return text if text.startswith('"') else f'"{text}"'


def check_concurrency(max_concurrency: int) -> None:
    if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool):
        raise TypeError(f"max_concurrency must be an int, not {type(max_concurrency).__name__}")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")


# --- what a SAS shows ---------------------------------------------------------------------------------------


def check_permission(url: str, credential: Any, container_name: str, *, container: bool = False) -> None:
    """Raise :class:`AuthenticationError` when the SAS of a client (in ``url``, or its ``credential``) shows
    that it may not delete: no ``d`` in its permissions (``sp``), or, for the container itself
    (``container``), a SAS for the container or a blob (``sr``; a service SAS can never delete its
    container) or an account SAS without the container resource type (``srt`` without ``c``).

    Nothing is said of a client without a SAS (an account key, Azure AD: storage decides) nor of a SAS whose
    permissions are in a stored access policy (``si``, no ``sp``). Only ``sp``, ``sr`` and ``srt`` are shown,
    never the signature."""
    sas = _sas.credential_sas(url, credential)
    if not sas:
        return
    params = parse_qs(sas.partition("?")[2] if "?" in sas else sas, keep_blank_values=True)
    if "sig" not in params:
        return
    what = f"container {container_name!r}" if container else f"blobs of container {container_name!r}"
    permissions = params.get("sp", [None])[0]
    if permissions is not None and "d" not in permissions:
        raise AuthenticationError(
            f"this SAS may not delete {what}: its permissions (sp={permissions}) have no 'd'; "
            f"{_errors.DELETE_CONTAINER_RIGHTS if container else _errors.DELETE_RIGHTS}"
        )
    if not container:
        return
    resource = params.get("sr", [None])[0]
    if resource is not None:
        scope = "the container" if resource == "c" else "a blob"
        raise AuthenticationError(
            f"a SAS for {scope} (sr={resource}) may not delete {what}, whatever its permissions: "
            f"{_errors.DELETE_CONTAINER_RIGHTS}"
        )
    types = params.get("srt", [None])[0]
    if types is not None and "c" not in types:
        raise AuthenticationError(
            f"this account SAS may not delete {what}: its resource types (srt={types}) have no 'c' "
            "(container)"
        )


# --- answers ------------------------------------------------------------------------------------------------


def is_gone(err: Any) -> bool:
    """A delete answered 404: the blob is gone (a retried delete whose first answer was lost, or deleted by
    someone else, or its container deleted): done."""
    return getattr(err, "status_code", None) == 404


def may_be_gone(err: Any) -> bool:
    """A conditional delete answered 412 ``ConditionNotMet``: the blob changed since it was listed, or it is
    gone (Azurite answers 412, not 404, for ``If-Match`` on a missing blob): worth a look."""
    return getattr(err, "status_code", None) == 412 and _errors._code(err) == "ConditionNotMet"


def is_refusal(err: Any) -> bool:
    """A delete refused for the blob's own sake (409: snapshots, a policy; 412: changed, leased): that blob
    is left and the others go on. Any other failure (access refused, storage unreachable, throttled
    beyond the retries) stops the whole delete."""
    return getattr(err, "status_code", None) in (409, 412)


def container_gone(err: Any) -> bool:
    """A container delete answered 404 ``ContainerNotFound`` or 409 ``ContainerBeingDeleted``: done."""
    return _errors._code(err) in ("ContainerNotFound", "ContainerBeingDeleted")


def rolled_over(container: str, output: Plan) -> BatchFilesError:
    """The refusal of an open tracked save that went on in a new part since it was listed."""
    first = output.blobs[-1].name
    return BatchFilesError(
        f"{first!r} in container {container!r} is a live log still being written: it went on in "
        f"{output.next_part!r} since it was listed; not deleted, list again to delete what is there now"
    )


class Tally:
    """What a delete did: blobs deleted (or found gone), and the blobs refused with their errors."""

    def __init__(self, plans: list[Plan]) -> None:
        self.total = sum(len(output.blobs) for output in plans)
        self.deleted = 0
        self.failures: dict[str, BatchFilesError] = {}
        self._lock = threading.Lock()

    def done(self) -> None:
        with self._lock:
            self.deleted += 1

    def refused(self, blob: Blob, error: BatchFilesError) -> None:
        with self._lock:
            self.failures[blob.name] = error

    def result(self) -> int:
        """The number of blobs deleted, or :class:`DeleteError` if any was refused."""
        if not self.failures:
            return self.deleted
        first = next(iter(self.failures.values()))
        more = len(self.failures) - 1
        message = f"{self.total - self.deleted} of {self.total} blobs left ({self.deleted} deleted): {first}"
        if more:
            message += f" (and {more} more refused)"
        raise DeleteError(message, self.deleted, self.failures)

    def stopped(self, error: BatchFilesError) -> BatchFilesError:
        """``error``, which stopped the delete, saying how many blobs were deleted before it."""
        if not self.deleted:
            return error
        try:
            return type(error)(f"{error} ({self.deleted} of {self.total} blobs were deleted before it)")
        except Exception:  # an error class of another shape: as it is
            return error
