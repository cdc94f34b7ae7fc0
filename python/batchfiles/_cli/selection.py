"""The outputs ``list``, ``get`` and ``delete`` look at, read from the job's snapshot as its listing goes on
(one flat listing of the container; with ``--task``, of that task's folder alone): the job's own and every
task's, or one task's, of one kind or of all."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from .. import OnInvalid
from ..kinds import builtin_side
from ..snapshot import OutputSnapshot
from ..storage import JobOutputStorage
from . import connect
from .common import UsageError, kind_arg, task_id_arg

#: One selected output: its task's id (None: the job's own) and the output.
Selected = tuple[str | None, OutputSnapshot]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """JOB_ID, ``--task`` and ``--kind``: the selection."""
    connect.add_job_argument(parser)
    parser.add_argument("--task", type=task_id_arg, metavar="TASK_ID", help="only this task's outputs")
    parser.add_argument("--kind", type=kind_arg, metavar="KIND", help="only outputs of this kind")


def _applies(kind: str | None, task: bool) -> bool:
    """Whether a --kind filter can match a task's outputs (``task``) or the job's own."""
    return builtin_side(kind) != ("job" if task else "task")


def pieces(
    job: JobOutputStorage, task: str | None, kind: str | None, on_invalid: OnInvalid
) -> Iterator[tuple[str | None, list[OutputSnapshot]]]:
    """Each owner's selected outputs (None: the job's own) as soon as the listing has passed them: the
    job's first, then task by task in listing order; an owner's outputs in blob name order, as listed.
    A tracked log's parts are one output.

    ``on_invalid(blob_name, reason)`` is told of each blob of the listing that is not an output.
    """
    if task is not None and not _applies(kind, task=True):
        raise UsageError(f"{kind!r} is a job output kind; drop --task to see the job's own outputs")
    for owner, outputs in job.iter_snapshot(on_invalid=on_invalid, task_id=task):
        if not _applies(kind, task=owner is not None):
            continue
        chosen = sorted(
            (output for output in outputs if kind is None or str(output.kind) == kind),
            key=lambda output: output.blob_name,
        )
        if chosen:
            yield owner, chosen


def outputs(
    job: JobOutputStorage, task: str | None, kind: str | None, on_invalid: OnInvalid
) -> Iterator[Selected]:
    """Every output of the selection, in the order of :func:`pieces`, as the listing goes on."""
    for owner, chosen in pieces(job, task, kind, on_invalid):
        for output in chosen:
            yield owner, output
