"""The job as one object, from one flat listing of its container: the job's own outputs, each task's outputs
by kind with a tracked log's roll-over parts folded into one, and each task's state from its logs (the
metadata ``batchfiles run`` leaves on them: read here, and written by :func:`outcome_metadata`).

:func:`JobOutputStorage.snapshot <batchfiles.JobOutputStorage.snapshot>` builds a :class:`JobSnapshot`;
``iter_snapshot`` yields the same pieces as listing pages arrive (a flat listing holds each task's blobs
together, so a task is whole once the listing has passed its folder). This module does no I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from ._scope import NotAnOutput, Scope, is_task_folder
from ._tracking import limits
from ._types import OnInvalid
from ._urls import public_url
from .kinds import OutputKind

logger = logging.getLogger("batchfiles")

__all__ = ["JobSnapshot", "LogState", "OutputSnapshot", "TaskSnapshot"]

#: Blobs a listing request asks for: the service's most.
PAGE_SIZE = 5000
#: A task's state, from its logs: ``running`` while a tracked log is open, ``exited`` once ``batchfiles run``
#: closed them with the command's exit code, ``unknown`` otherwise (no tracked logs, or never closed cleanly).
RUNNING, EXITED, UNKNOWN = "running", "exited", "unknown"

#: Metadata ``batchfiles run`` leaves on its logs when the command is over: its exit code (``128 + N`` if
#: signal N killed it), and when it started and ended (ISO 8601, UTC).
EXIT_CODE_KEY = "batchfiles_exit_code"
STARTED_KEY = "batchfiles_started"
ENDED_KEY = "batchfiles_ended"


def natural_key(text: str) -> tuple[Any, ...]:
    """Sorts ``task-2`` before ``task-10``."""
    parts = re.split(r"([0-9]+)", text)  # ASCII digits at odd places ("²".isdigit(), yet int("²") fails)
    return tuple((0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(parts) if p)


def part_of(name: str, metadata: Mapping[str, str] | None) -> tuple[str, int]:
    """(base name, part index) of the listed blob ``name``: ``base.k`` marked part ``k`` in its metadata
    (``batchfiles_part``, the key in any case, the value ``str(k)`` as a tracked save writes it: not
    ``01``) is part ``k`` of ``base``; any other blob is (``name``, 0)."""
    mark = next((v for k, v in (metadata or {}).items() if k.lower() == limits.PART_KEY), "")
    if mark.isascii() and mark.isdigit() and not mark.startswith("0") and name.endswith(f".{mark}"):
        return name[: -len(mark) - 1], int(mark)
    return name, 0


@dataclass(frozen=True)
class LogState:
    """What a log's metadata says of its writer: ``state`` is ``"open"`` (a tracked save still writing, or
    one that never closed), ``"closed"``, or None (not a tracked save's); then ``batchfiles run``'s outcome:
    the command's exit code, and when it started and ended (None where it left none)."""

    state: str | None
    exit_code: int | None = None
    started: datetime | None = None
    ended: datetime | None = None


def log_state(metadata: Mapping[str, str] | None) -> LogState:
    """The :class:`LogState` of a blob's metadata (names in any case; values that do not parse are None)."""
    metadata = {k.lower(): v for k, v in (metadata or {}).items()}
    if metadata.get(limits.CLOSED_KEY) == "1":
        state: str | None = "closed"
    elif limits.WRITER_KEY in metadata:
        state = "open"
    else:
        state = None
    code = metadata.get(EXIT_CODE_KEY, "")
    return LogState(
        state,
        int(code) if re.fullmatch(r"-?[0-9]{1,11}", code) else None,
        _parse_time(metadata.get(STARTED_KEY)),
        _parse_time(metadata.get(ENDED_KEY)),
    )


def outcome_metadata(exit_code: int, started: datetime, ended: datetime) -> dict[str, str]:
    """The metadata ``batchfiles run`` closes its logs with, as :func:`log_state` reads it."""
    return {EXIT_CODE_KEY: str(exit_code), STARTED_KEY: _iso(started), ENDED_KEY: _iso(ended)}


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class OutputSnapshot:
    """One output as listed: a blob, or a tracked save's parts (``name``, ``name.1``, ...) as one.

    ``size`` is all parts'; ``metadata`` (names lower-case) and ``log`` are the last part's, where the
    close mark and ``batchfiles run``'s outcome are; ``content_md5`` is the blob's (None for one in parts).
    ``etags``: each blob's ETag as listed, in the order of ``blob_names`` (what ``delete`` is conditional on).
    """

    task_id: str | None
    kind: OutputKind
    file_path: str
    blob_name: str
    url: str
    size: int
    content_md5: bytes | None
    content_type: str | None
    last_modified: datetime | None
    metadata: Mapping[str, str] = field(compare=False)
    parts: tuple[str, ...] = ()  # the blobs of parts 1, 2, ... in order
    etags: tuple[str | None, ...] = ()

    @property
    def blob_names(self) -> tuple[str, ...]:
        """Every blob holding the output, in order."""
        return (self.blob_name, *self.parts)

    @property
    def log(self) -> LogState:
        """What the metadata says of a tracked save: open or closed, and ``run``'s outcome."""
        return log_state(self.metadata)


@dataclass(frozen=True)
class TaskSnapshot:
    """A task's outputs (by kind, then path in natural order) and its state from its ``TaskLog`` outputs."""

    task_id: str
    outputs: tuple[OutputSnapshot, ...]

    def of_kind(self, kind: str | OutputKind) -> tuple[OutputSnapshot, ...]:
        return tuple(o for o in self.outputs if str(o.kind) == str(kind))

    @property
    def state(self) -> str:
        """:data:`RUNNING`, :data:`EXITED` or :data:`UNKNOWN`."""
        return task_state(self._logs())[0]

    @property
    def exit_code(self) -> int | None:
        """The command's exit code (the first one other than 0 among its logs), once exited."""
        return task_state(self._logs())[1]

    @property
    def started(self) -> datetime | None:
        return min((s.started for s in self._logs() if s.started), default=None)

    @property
    def ended(self) -> datetime | None:
        return max((s.ended for s in self._logs() if s.ended), default=None)

    def _logs(self) -> list[LogState]:
        return [o.log for o in self.outputs if str(o.kind) == "TaskLog"]


def task_state(states: Iterable[LogState]) -> tuple[str, int | None]:
    """A task's state and exit code from what its ``TaskLog`` outputs' metadata say."""
    states = list(states)
    codes = [s.exit_code for s in states if s.exit_code is not None]
    if codes:
        return EXITED, next((c for c in codes if c != 0), 0)
    if any(s.state == "open" for s in states):
        return RUNNING, None
    return UNKNOWN, None


@dataclass(frozen=True)
class JobSnapshot:
    """The job as one listing saw it: its own outputs, and its tasks in natural order of their ids."""

    container: str
    outputs: tuple[OutputSnapshot, ...]
    tasks: Mapping[str, TaskSnapshot]
    skipped: int = 0  # blobs that are not outputs (those in the conventions' space told to ``on_invalid``)

    def find(self, task_id: str | None, kind: str | OutputKind, path: str) -> OutputSnapshot | None:
        """The output of ``task_id`` (None: the job's) of ``kind`` at ``path``, if listed."""
        outputs = self.outputs if task_id is None else getattr(self.tasks.get(task_id), "outputs", ())
        return next((o for o in outputs if str(o.kind) == str(kind) and o.file_path == path), None)

    def all_outputs(self) -> Iterator[OutputSnapshot]:
        """The job's outputs, then each task's."""
        yield from self.outputs
        for task in self.tasks.values():
            yield from task.outputs


def checked(output: Any, call: str) -> OutputSnapshot:
    """``output`` if it is an :class:`OutputSnapshot`, else :class:`TypeError` saying what ``call`` takes."""
    if not isinstance(output, OutputSnapshot):
        raise TypeError(f"{call} takes an output of a snapshot (OutputSnapshot), not {type(output).__name__}")
    return output


def check_on_invalid(on_invalid: Any) -> None:
    """:class:`TypeError` for an ``on_invalid`` that is neither None nor callable (said at the call, not at
    the first blob that is not an output, in the middle of a listing)."""
    if on_invalid is not None and not callable(on_invalid):
        raise TypeError(f"on_invalid must be a function (blob_name, reason), not {type(on_invalid).__name__}")


def warn_skipped(name: str, reason: str) -> None:
    """A skipped blob told when there is no ``on_invalid``: a warning on the ``batchfiles`` logger."""
    logger.warning("skipped blob %r: %s", name, reason)


#: What a :class:`Builder` hands out: a task's id (None: the job's own) and its outputs.
Piece = tuple[str | None, tuple["OutputSnapshot", ...]]


@dataclass
class _Open:
    """An output being built: its first blob's properties, and its parts as they come."""

    props: Any
    kind: OutputKind
    path: str
    parts: dict[int, Any] = field(default_factory=dict)


class Builder:
    """Builds the snapshot from listed blobs (records with the ``name``, ``size``, ``last_modified``,
    ``content_md5``, ``content_type``, ``etag`` and ``metadata`` of each, as :mod:`batchfiles._listing`
    parses them from a page of List Blobs with metadata), in listing order: ``add`` returns the
    :data:`Piece` s whole once the listing has passed them (``(None, outputs)`` for the job's own, then
    ``(task_id, outputs)`` for each task); ``finish`` returns the rest. Blobs that are not outputs go to
    ``on_invalid``."""

    def __init__(self, container: str, container_url: str, on_invalid: OnInvalid | None) -> None:
        check_on_invalid(on_invalid)
        self.container, self._url = container, public_url(container_url).rstrip("/")
        self._on_invalid = on_invalid
        self._owner: str | None = None  # the task whose blobs are being listed ("" before any)
        self._started = False
        self._open: dict[str, _Open] = {}  # by blob name, of the current owner
        self._parts: list[tuple[str, int, Any]] = []
        self.skipped = 0

    def add(self, props: Any) -> list[Piece]:
        if "/" not in props.name:  # outside every task folder and kind: not told
            self._skip(props.name, "it has no $Kind segment", tell=False)
            return []
        owner = None if props.name.startswith("$") else props.name.partition("/")[0]
        done = []
        if self._started and owner != self._owner:
            done.append(self._close())
        self._started, self._owner = True, owner
        self._take(owner, props)
        return done

    def finish(self) -> list[Piece]:
        return [self._close()] if self._started else []

    def _skip(self, name: str, reason: str, *, tell: bool = True) -> None:
        """Count a blob that is not an output; tell ``on_invalid`` of it when it is in the conventions'
        space (under ``$Kind/`` or a task's folder), not of a stranger beside them (``README``)."""
        self.skipped += 1
        if not tell:
            logger.debug("skipped blob %r: %s", name, reason)
        else:
            (self._on_invalid or warn_skipped)(name, reason)

    def _take(self, owner: str | None, props: Any) -> None:
        if owner is not None and not is_task_folder(f"{owner}/"):
            self._skip(props.name, f"{owner!r} is not a task id", tell=False)
            return
        metadata = {k.lower(): v for k, v in (props.metadata or {}).items()}
        base, index = part_of(props.name, metadata)
        if index:
            self._parts.append((base, index, props))
            return
        try:
            scope = Scope(self.container, owner)
            kind, path = scope.parse(props.name)
            scope.kind(str(kind))  # a built-in kind of the other side ($TaskLog/x, t1/$JobOutput/x)
        except (NotAnOutput, ValueError) as err:
            self._skip(props.name, str(err))
            return
        self._open[props.name] = _Open(props, kind, path)

    def _close(self) -> Piece:
        for base, index, props in self._parts:
            if base in self._open:
                self._open[base].parts[index] = props
            else:  # a part whose first blob is missing is not an output
                self._skip(props.name, f"it is part {index} of {base!r}, which is not an output")
        outputs = sorted(
            (self._output(o) for o in self._open.values()),
            key=lambda o: (str(o.kind), natural_key(o.file_path)),
        )
        owner = self._owner
        self._open, self._parts = {}, []
        return owner, tuple(outputs)

    def _output(self, built: _Open) -> OutputSnapshot:
        first = built.props
        indexes = sorted(built.parts)
        # parts must follow on from 1 without a gap; what comes after a gap is not read by followers either
        chain = [i for n, i in enumerate(indexes, 1) if i == n]
        for i in indexes[len(chain) :]:
            self._skip(built.parts[i].name, f"it is part {i} of {first.name!r}, after a missing part")
        every = [first, *(built.parts[i] for i in chain)]
        last = every[-1]
        md5 = first.content_md5 if not chain else None
        modified = [p.last_modified for p in every if p.last_modified]
        return OutputSnapshot(
            task_id=self._owner,
            kind=built.kind,
            file_path=built.path,
            blob_name=first.name,
            url=f"{self._url}/{quote(first.name, safe='~/')}",
            size=sum(p.size or 0 for p in every),
            content_md5=bytes(md5) if md5 else None,
            content_type=first.content_type,
            last_modified=max(modified) if modified else None,
            metadata=MappingProxyType({k.lower(): v for k, v in (last.metadata or {}).items()}),
            parts=tuple(p.name for p in every[1:]),
            etags=tuple(getattr(p, "etag", None) for p in every),
        )


def build(
    container: str, container_url: str, listing: Iterable[Any], on_invalid: OnInvalid | None = None
) -> JobSnapshot:
    """The snapshot of a whole listing (see :class:`Builder`)."""
    builder = Builder(container, container_url, on_invalid)
    pieces = [piece for props in listing for piece in builder.add(props)] + builder.finish()
    return assemble(container, pieces, builder.skipped)


def assemble(container: str, pieces: Iterable[Piece], skipped: int) -> JobSnapshot:
    """A :class:`JobSnapshot` of the pieces a :class:`Builder` gave."""
    outputs: tuple[OutputSnapshot, ...] = ()
    tasks: dict[str, TaskSnapshot] = {}
    for owner, found in pieces:
        if owner is None:
            outputs = found
        elif found:
            tasks[owner] = TaskSnapshot(owner, found)
    ordered = {i: tasks[i] for i in sorted(tasks, key=natural_key)}
    return JobSnapshot(container, outputs, MappingProxyType(ordered), skipped)
