"""What ``batchfiles view`` shows of a job, built from one listing of its container, without I/O: the job's
own outputs, each task's outputs and state, the JSON the page reads, and the only blobs it may serve."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from .. import _follow
from .._scope import NotAnOutput, Scope, is_task_folder
from ..snapshot import EXITED, RUNNING, UNKNOWN, natural_key, task_state

#: The image types shown inline (never SVG: it can hold script), by file extension.
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
#: Task states, as the page shows them.
#: The task list's filters: ``failed`` is exited with a code other than 0.
FILTERS = ("all", RUNNING, EXITED, "failed", UNKNOWN)
#: At most this many TaskPreview thumbnails per task in the list.
THUMBNAILS = 4


def image_type(path: str) -> str | None:
    """The content type ``path`` is served inline with, or None: not an image the page shows."""
    dot = path.rfind(".")
    return IMAGE_TYPES.get(path[dot:].lower()) if dot > path.rfind("/") else None


def blob_url(task: str | None, kind: str, path: str) -> str:
    """The local server's URL of an output (never storage's): ``/blob/job/KIND/PATH`` or
    ``/blob/task/TASK/KIND/PATH``, percent-encoded."""
    where = "job" if task is None else f"task/{quote(task, safe='')}"
    return f"/blob/{where}/{quote(kind, safe='')}/{quote(path, safe='/')}"


def _iso(when: datetime | None) -> str | None:
    return (
        when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z") if when else None
    )


@dataclass
class Output:
    """One output: a blob, or a tracked save's parts (``name``, ``name.1``, ...) as one (sizes summed, served
    one after the other; the metadata is the last part's, where the close mark and ``run``'s outcome are)."""

    task: str | None
    kind: str
    path: str
    name: str  # the blob's (the first part's)
    size: int
    modified: datetime | None
    metadata: dict[str, str]
    part: int = 0
    parts: list[str] = field(default_factory=list)  # the blobs of parts 1, 2, ... in order

    def add_part(
        self, name: str, index: int, size: int, modified: datetime | None, metadata: dict[str, str]
    ) -> None:
        self.parts.append(name)
        self.size += size
        if modified and (self.modified is None or modified > self.modified):
            self.modified = modified
        if index > self.part:
            self.part, self.metadata = index, metadata

    @property
    def image(self) -> bool:
        return image_type(self.path) is not None

    def to_json(self) -> dict[str, Any]:
        state = _follow.log_state(self.metadata)
        return {
            "kind": self.kind,
            "path": self.path,
            "size": self.size,
            "modified": _iso(self.modified),
            "url": blob_url(self.task, self.kind, self.path),
            "image": self.image,
            "log": state.state,
            "exit_code": state.exit_code,
        }


@dataclass
class Task:
    """A task's outputs, and its state from its logs: ``exited`` with the code ``batchfiles run`` left on
    them, ``running`` while a tracked log is open, else ``unknown``."""

    id: str
    outputs: list[Output] = field(default_factory=list)

    def state(self) -> tuple[str, int | None]:
        return task_state(_follow.log_state(o.metadata) for o in self.outputs if o.kind == "TaskLog")

    def matches(self, wanted: str) -> bool:
        return matches(wanted, *self.state())

    def row(self) -> dict[str, Any]:
        """The task's line in the list: state, counts and sizes per kind, the first thumbnails."""
        state, code = self.state()
        previews = [o for o in self.outputs if o.kind == "TaskPreview" and o.image][:THUMBNAILS]
        modified = max((o.modified for o in self.outputs if o.modified), default=None)
        return {
            "id": self.id,
            "state": state,
            "exit_code": code,
            "kinds": kind_totals(self.outputs),
            "previews": [{"path": o.path, "url": blob_url(self.id, o.kind, o.path)} for o in previews],
            "modified": _iso(modified),
        }

    def detail(self) -> dict[str, Any]:
        """The task view: every output, grouped by kind."""
        kinds: dict[str, list[dict[str, Any]]] = {}
        for output in sorted(self.outputs, key=lambda o: (o.kind, natural_key(o.path))):
            kinds.setdefault(output.kind, []).append(output.to_json())
        return {**self.row(), "outputs": kinds}


def matches(wanted: str, state: str, code: int | None) -> bool:
    """Whether a task in ``state`` (with exit ``code``) is shown by the filter ``wanted``."""
    if wanted == "failed":
        return state == EXITED and code != 0
    return wanted == "all" or state == wanted


def kind_totals(outputs: Iterable[Output]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for output in outputs:
        total = totals.setdefault(output.kind, {"count": 0, "bytes": 0})
        total["count"] += 1
        total["bytes"] += output.size
    return dict(sorted(totals.items()))


@dataclass
class Snapshot:
    """The job as one listing saw it, with what requests read of it computed once (:meth:`index`), where
    the snapshot is built: off the server's event loop, so a request costs a slice and a ``json.dumps``."""

    container: str
    job_outputs: list[Output] = field(default_factory=list)
    tasks: dict[str, Task] = field(default_factory=dict)  # in natural order of their ids
    skipped: int = 0  # blobs that are not outputs
    listed: datetime | None = None  # when the listing was made
    _ids: dict[str, list[str]] = field(default_factory=dict, repr=False)  # per filter, in order
    _rows: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _summary: dict[str, Any] = field(default_factory=dict, repr=False)

    def index(self) -> None:
        """Each task's row, the task ids of each filter, and the job's summary."""
        self._rows = {task_id: task.row() for task_id, task in self.tasks.items()}
        self._ids = {name: [] for name in FILTERS}
        for task_id, row in self._rows.items():
            for name in FILTERS:
                if matches(name, row["state"], row["exit_code"]):
                    self._ids[name].append(task_id)
        every = [o for t in self.tasks.values() for o in t.outputs]
        outputs = sorted(self.job_outputs, key=lambda o: (o.kind, natural_key(o.path)))
        self._summary = {
            "container": self.container,
            "tasks": {name: len(ids) for name, ids in self._ids.items()},
            "job_kinds": kind_totals(self.job_outputs),
            "task_kinds": kind_totals(every),
            "job_outputs": [o.to_json() for o in outputs],
            "skipped": self.skipped,
            "listed": self.listed.isoformat(timespec="milliseconds") if self.listed else None,
        }

    def find(self, task: str | None, kind: str, path: str) -> Output | None:
        """The output of ``task`` (None: the job's) of ``kind`` at ``path``, if the listing has it."""
        outputs = self.job_outputs if task is None else getattr(self.tasks.get(task), "outputs", [])
        return next((o for o in outputs if o.kind == kind and o.path == path), None)

    def summary(self, job_id: str) -> dict[str, Any]:
        if not self._summary:
            self.index()
        return {"job_id": job_id, **self._summary}

    def page(self, offset: int, limit: int, wanted: str = "all") -> dict[str, Any]:
        if not self._ids:
            self.index()
        ids = self._ids[wanted]
        rows = [self._rows[i] for i in ids[offset : offset + limit]]
        return {"total": len(ids), "offset": offset, "tasks": rows}


def snapshot(container: str, listing: Iterable[Any], listed: datetime | None = None) -> Snapshot:
    """The snapshot of a listing of ``container`` (``BlobProperties`` with metadata, or the view's own
    :class:`._listing.Listed`) made at ``listed``, indexed. Only names in the conventions' normal form are
    outputs (the library's own parser says which); the rest are counted. Pure CPU: the server runs it in
    a worker thread."""
    snap = Snapshot(container, listed=listed)
    found: dict[str, Output] = {}
    parts: list[tuple[str, int, Any]] = []
    tasks: dict[str, Task] = {}
    for props in listing:
        metadata = {k.lower(): v for k, v in (props.metadata or {}).items()}
        base, index = _follow.part_of(props.name, metadata)
        if index:
            parts.append((base, index, props))
            continue
        task, slash, _ = props.name.partition("/")
        task_id = None if props.name.startswith("$") else task
        if task_id is not None and not (slash and is_task_folder(f"{task}/")):
            snap.skipped += 1
            continue
        try:
            scope = Scope(container, task_id)
            kind, path = scope.parse(props.name)
            scope.kind(str(kind))  # a built-in kind of the other side ($TaskLog/x, t1/$JobOutput/x): not one
        except (NotAnOutput, ValueError):
            snap.skipped += 1
            continue
        output = Output(task_id, str(kind), path, props.name, props.size or 0, props.last_modified, metadata)
        found[props.name] = output
        if task_id is None:
            snap.job_outputs.append(output)
        else:
            tasks.setdefault(task_id, Task(task_id)).outputs.append(output)
    for base, index, props in sorted(parts, key=lambda p: p[1]):
        if base in found:  # a part whose first blob is missing is not shown
            metadata = {k.lower(): v for k, v in (props.metadata or {}).items()}
            found[base].add_part(props.name, index, props.size or 0, props.last_modified, metadata)
    snap.tasks = {i: tasks[i] for i in sorted(tasks, key=natural_key)}
    snap.index()
    return snap
