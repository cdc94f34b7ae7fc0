"""What ``batchfiles view`` shows of a job, without I/O: presentation over the library's
:class:`~batchfiles.snapshot.JobSnapshot` (which says what is an output, its parts and each task's state):
the JSON the page reads, the task list's filters and pages, and the job's summary, computed once per
snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from ..kinds import OutputKind
from ..snapshot import EXITED, RUNNING, UNKNOWN, JobSnapshot, OutputSnapshot, TaskSnapshot, task_state

#: The image types shown inline (never SVG: it can hold script), by file extension.
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
#: The task list's filters: ``failed`` is exited with a code other than 0.
FILTERS = ("all", RUNNING, EXITED, "failed", UNKNOWN)
#: At most this many TaskPreview thumbnails per task in the list.
THUMBNAILS = 4


def image_type(path: str) -> str | None:
    """The content type ``path`` is served inline with, or None: not an image the page shows."""
    dot = path.rfind(".")
    return IMAGE_TYPES.get(path[dot:].lower()) if dot > path.rfind("/") else None


def blob_url(task: str | None, kind: str | OutputKind, path: str) -> str:
    """The local server's URL of an output (never storage's): ``/blob/job/KIND/PATH`` or
    ``/blob/task/TASK/KIND/PATH``, percent-encoded."""
    where = "job" if task is None else f"task/{quote(task, safe='')}"
    return f"/blob/{where}/{quote(str(kind), safe='')}/{quote(path, safe='/')}"


def _iso(when: datetime | None) -> str | None:
    return (
        when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z") if when else None
    )


def _url(output: OutputSnapshot) -> str:
    return blob_url(output.task_id, output.kind, output.file_path)


def output_json(output: OutputSnapshot) -> dict[str, Any]:
    """An output as the page shows it: a tracked log's parts are one, its state the last part's."""
    log = output.log
    return {
        "kind": str(output.kind),
        "path": output.file_path,
        "size": output.size,
        "modified": _iso(output.last_modified),
        "url": _url(output),
        "image": image_type(output.file_path) is not None,
        "log": log.state,
        "exit_code": log.exit_code,
    }


def task_row(task: TaskSnapshot) -> dict[str, Any]:
    """The task's line in the list: state, counts and sizes per kind, the first thumbnails."""
    state, code = task_state(o.log for o in task.outputs if str(o.kind) == "TaskLog")  # task.state, once
    previews = [o for o in task.outputs if str(o.kind) == "TaskPreview" and image_type(o.file_path)]
    modified = max((o.last_modified for o in task.outputs if o.last_modified), default=None)
    return {
        "id": task.task_id,
        "state": state,
        "exit_code": code,
        "kinds": kind_totals(task.outputs),
        "previews": [{"path": o.file_path, "url": _url(o)} for o in previews[:THUMBNAILS]],
        "modified": _iso(modified),
    }


def task_detail(task: TaskSnapshot, row: dict[str, Any] | None = None) -> dict[str, Any]:
    """The task view: its row, and every output grouped by kind (in the snapshot's order: by kind, then
    path in natural order)."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for output in task.outputs:
        kinds.setdefault(str(output.kind), []).append(output_json(output))
    return {**(row or task_row(task)), "outputs": kinds}


def matches(wanted: str, state: str, code: int | None) -> bool:
    """Whether a task in ``state`` (with exit ``code``) is shown by the filter ``wanted``."""
    if wanted == "failed":
        return state == EXITED and code != 0
    return wanted == "all" or state == wanted


def kind_totals(outputs: Iterable[OutputSnapshot]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for output in outputs:
        total = totals.setdefault(str(output.kind), {"count": 0, "bytes": 0})
        total["count"] += 1
        total["bytes"] += output.size
    return dict(sorted(totals.items()))


class View:
    """The job as the page reads it, from one snapshot made at ``listed``: each task's row, the task ids
    each filter shows, and the job's summary, computed here once (the server builds a ``View`` in a worker
    thread), so a request costs a slice and a ``json.dumps``."""

    def __init__(self, job: JobSnapshot, listed: datetime | None = None) -> None:
        self.job, self.listed = job, listed
        self._rows = {task_id: task_row(task) for task_id, task in job.tasks.items()}
        self._ids: dict[str, list[str]] = {name: [] for name in FILTERS}
        for task_id, row in self._rows.items():
            for name in FILTERS:
                if matches(name, row["state"], row["exit_code"]):
                    self._ids[name].append(task_id)
        self._summary = {
            "container": job.container,
            "tasks": {name: len(ids) for name, ids in self._ids.items()},
            "job_kinds": kind_totals(job.outputs),
            "task_kinds": kind_totals(o for t in job.tasks.values() for o in t.outputs),
            "job_outputs": [output_json(o) for o in job.outputs],
            "skipped": job.skipped,
            "listed": listed.isoformat(timespec="milliseconds") if listed else None,
        }

    def find(self, task: str | None, kind: str, path: str) -> OutputSnapshot | None:
        """The output of ``task`` (None: the job's) of ``kind`` at ``path``, if the listing has it."""
        return self.job.find(task, kind, path)

    def summary(self, job_id: str) -> dict[str, Any]:
        return {"job_id": job_id, **self._summary}

    def page(self, offset: int, limit: int, wanted: str = "all") -> dict[str, Any]:
        ids = self._ids[wanted]
        rows = [self._rows[i] for i in ids[offset : offset + limit]]
        return {"total": len(ids), "offset": offset, "tasks": rows}

    def task(self, task_id: str) -> dict[str, Any] | None:
        """The task view of ``task_id``, or None: no output of it listed."""
        task = self.job.tasks.get(task_id)
        return None if task is None else task_detail(task, self._rows[task_id])


def view(job: JobSnapshot, listed: datetime | None = None) -> View:
    """The :class:`View` of ``job``: pure CPU, run by the server in a worker thread."""
    return View(job, listed)
