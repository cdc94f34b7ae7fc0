"""``batchfiles delete``: delete a job's outputs (selected by task, kind and path) or its whole container,
once listed, counted and confirmed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import OnInvalid, naming
from ..errors import DeleteError
from ..snapshot import OutputSnapshot
from ..storage import JobOutputStorage
from . import common, connect, selection
from .common import EXIT_ERROR, EXIT_OK, UsageError, human_size, info, kind_arg, task_id_arg

NAME = "delete"
SUMMARY = "delete a job's outputs, or its whole container (counted, then confirmed)"
EPILOG = f"""\
Lists the selection first (one listing of the container; with --task, of each task's folder), says how
many outputs, blobs and bytes it holds, and asks before deleting anything: on a terminal it waits for 'y';
off a terminal (a script, a pipe) it needs --yes. Without --task, --kind or PATH it selects every output of
the job, the job's own and every task's. PATH is an output's path under its kind, exactly as `batchfiles
list` shows it (no wildcards); `list` with the same --task and --kind shows what is selected. A --task or
PATH that selects nothing is an error, and nothing is deleted.

A live log that rolled over into parts (stdout.txt, stdout.txt.1, ...) is deleted whole. Each blob is
deleted only if unchanged since it was listed: one written meanwhile (the live log of a running task) is
left, as are blobs with snapshots or a lease; each is reported, the rest is deleted, and the exit code is 1.
A blob that is not an output (a path with '.', '..' or empty segments, a name outside the conventions) is
never deleted by a selection: it is reported and left.

--container deletes the job's container and everything in it, outputs or not. That needs the account: a
connection string, or an account URL whose Azure sign-in may delete containers. A container URL's SAS
(such as the task SAS of `batchfiles url`) can never delete its container: refused before any request.
Deleting outputs needs a SAS with the delete permission ('d' in its sp=), as the task SAS has; a SAS
without it is refused before any request.

examples:
  batchfiles delete render-42 --task frame-7                  # one task's outputs (asks first)
  batchfiles delete render-42 --kind TaskIntermediate --yes   # every task's intermediate files
  batchfiles delete render-42 --task frame-7 --task frame-8 --kind TaskOutput frames/0001.png
  batchfiles delete render-42 --container --yes               # the whole job: container and all

{connect.STORAGE_HELP}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    connect.add_job_argument(parser)
    parser.add_argument(
        "--task",
        type=task_id_arg,
        action="append",
        default=[],
        metavar="TASK_ID",
        help="only this task's outputs (repeat for several)",
    )
    parser.add_argument("--kind", type=kind_arg, metavar="KIND", help="only outputs of this kind")
    parser.add_argument(
        "path", nargs="*", metavar="PATH", help="only the outputs at these paths (under their kind)"
    )
    parser.add_argument(
        "--container", action="store_true", help="delete the job's whole container (needs the account)"
    )
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask (needed off a terminal)")
    connect.add_storage_options(parser)


def run(args: argparse.Namespace) -> int:
    """List the selection, say its size, confirm, delete; exit 1 if anything selected was left."""
    tasks = list(dict.fromkeys(args.task))
    if args.container and (tasks or args.kind or args.path):
        raise UsageError("--container deletes everything in it: drop --task, --kind and PATH")
    for path in args.path:
        if naming.destination_path(path) != path:
            raise ValueError(f"path {path!r} is not in normal form: give the file path `list` shows")
    if not args.yes and not _is_terminal():
        raise UsageError("stdin is not a terminal, so there is no one to ask: pass --yes to delete")
    with connect.job_storage(args, args.job_id, interactive=True, patient=True) as job:
        job.check_delete(container=args.container)  # a SAS that shows it may not: before any request
        if args.container:
            return _delete_container(args, job)
        return _delete_outputs(args, job, tasks)


def _is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin closed
        return False


def _delete_outputs(args: argparse.Namespace, job: JobOutputStorage, tasks: list[str]) -> int:
    skipped: dict[str, str] = {}
    chosen = _select(job, tasks, args.kind, args.path, lambda name, why: skipped.setdefault(name, why))
    for name, why in sorted(skipped.items()):
        common.warn(f"left blob {name!r}: not an output ({why})")
    missing = _missing(chosen, tasks, args.path)
    if missing:
        common.error(f"nothing deleted: job {args.job_id!r} has {', '.join(missing)}")
        return EXIT_ERROR
    if not chosen:
        kind = f" of kind {args.kind!r}" if args.kind else ""
        info(f"job {args.job_id!r} has no outputs{kind}: nothing to delete")
        return EXIT_OK
    what = f"{_count(chosen)} of job {args.job_id!r}"
    if not _confirmed(args, what):
        return EXIT_ERROR
    try:
        job.delete(chosen)
    except DeleteError as err:
        for failure in err.failures.values():
            common.error(failure)
        left = len(err.failures)
        common.error(f"{left} of {_plural(len(chosen), 'output')} left (see above); the others were deleted")
        return EXIT_ERROR
    info(f"deleted {what}")
    return EXIT_OK


def _select(
    job: JobOutputStorage,
    tasks: list[str],
    kind: str | None,
    paths: Sequence[str],
    on_invalid: OnInvalid,
) -> list[OutputSnapshot]:
    """The outputs of the selection: of each task (each task's folder listed), or of the whole job."""
    wanted = set(paths)
    chosen: list[OutputSnapshot] = []
    for task in tasks or [None]:
        for _, output in selection.outputs(job, task, kind, on_invalid):
            if not wanted or output.file_path in wanted:
                chosen.append(output)
    return chosen


def _missing(chosen: list[OutputSnapshot], tasks: list[str], paths: Sequence[str]) -> list[str]:
    """What the command line named (a task, a path) and the selection does not hold."""
    found_tasks = {output.task_id for output in chosen}
    found_paths = {output.file_path for output in chosen}
    missing = [f"no outputs of task {task!r}" for task in tasks if task not in found_tasks]
    return missing + [f"no output at {path!r}" for path in dict.fromkeys(paths) if path not in found_paths]


def _count(outputs: Sequence[OutputSnapshot]) -> str:
    """``3 outputs (4 blobs, 1.2 MiB)``."""
    blobs = sum(len(output.blob_names) for output in outputs)
    size = human_size(sum(output.size for output in outputs))
    return f"{_plural(len(outputs), 'output')} ({_plural(blobs, 'blob')}, {size})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _confirmed(args: argparse.Namespace, what: str) -> bool:
    """Whether to delete ``what``: with --yes, said and done; else asked on the terminal, where only 'y' or
    'yes' goes on."""
    if args.yes:
        info(f"deleting {what}")
        return True
    print(f"{common.PROG}: delete {what}? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if answer.strip().lower() in ("y", "yes"):
        return True
    if not answer.endswith("\n"):
        print(file=sys.stderr)  # Ctrl-D: end the prompt's line
    info("nothing deleted")
    return False


def _delete_container(args: argparse.Namespace, job: JobOutputStorage) -> int:
    snap = job.snapshot(on_invalid=lambda *_: None)  # counted as other blobs: all go with the container
    outputs = list(snap.all_outputs())
    others = f" and {_plural(snap.skipped, 'other blob')}" if snap.skipped else ""
    what = f"container {job.container_name!r} of job {args.job_id!r}: {_count(outputs)}{others}"
    if not _confirmed(args, what):
        return EXIT_ERROR
    job.delete_container()
    info(
        f"deleted {what} (storage removes the blobs in the background; the container's name cannot be "
        "used again for a while)"
    )
    return EXIT_OK
