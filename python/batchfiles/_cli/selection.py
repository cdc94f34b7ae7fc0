"""The outputs ``list`` and ``get`` look at: a job's own and every task's, or one task's, of one kind or
of all, listed in parallel."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from .._types import OnInvalid
from ..kinds import builtin_side
from ..storage import JobOutputStorage, OutputFileReference, TaskOutputStorage
from . import connect
from .common import UsageError, kind_arg, task_id_arg

#: Parallel listings (one per task).
LIST_CONCURRENCY = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """JOB_ID, ``--task`` and ``--kind``: the selection."""
    connect.add_job_argument(parser)
    parser.add_argument("--task", type=task_id_arg, metavar="TASK_ID", help="only this task's outputs")
    parser.add_argument("--kind", type=kind_arg, metavar="KIND", help="only outputs of this kind")


def _applies(kind: str | None, task: bool) -> bool:
    """Whether a --kind filter can match a task's outputs (``task``) or the job's own."""
    return builtin_side(kind) != ("job" if task else "task")


def _scopes(
    job: JobOutputStorage, task: str | None, kind: str | None
) -> Iterator[tuple[str | None, JobOutputStorage | TaskOutputStorage]]:
    """(task id or None, storage) of what to look at: one task, or the job's own outputs and every task's."""
    if task is not None:
        if not _applies(kind, task=True):
            raise UsageError(f"{kind!r} is a job output kind; drop --task to see the job's own outputs")
        yield task, job.task(task)
        return
    if _applies(kind, task=False):
        yield None, job
    if _applies(kind, task=True):
        for task_id in job.task_ids():
            yield task_id, job.task(task_id)


def outputs(
    job: JobOutputStorage, task: str | None, kind: str | None, on_invalid: OnInvalid
) -> Iterator[tuple[str | None, OutputFileReference]]:
    """Every output of the selection, the job's first, then task by task; tasks are listed in parallel.

    ``on_invalid(blob_name, reason)`` is told of each blob skipped as not an output (from any thread).
    """

    def listing(
        scope: tuple[str | None, JobOutputStorage | TaskOutputStorage],
    ) -> list[tuple[str | None, OutputFileReference]]:
        task_id, storage = scope
        return [(task_id, ref) for ref in storage.list(kind, on_invalid=on_invalid)]

    with ThreadPoolExecutor(LIST_CONCURRENCY) as pool:
        for chunk in pool.map(listing, _scopes(job, task, kind)):
            yield from chunk
