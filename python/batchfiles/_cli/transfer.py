"""The commands that move or show things once: prepare, url, names, list, get, save."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.core.exceptions import AzureError

from .. import _patterns, _saving, naming
from .._types import OnInvalid
from ..errors import BatchFilesError
from ..storage import (
    JobOutputStorage,
    OutputFileReference,
    TaskOutputStorage,
    output_storage_container_url,
    prepare_output_storage,
)
from . import common, connect
from .common import EXIT_ERROR, EXIT_OK, UsageError, human_size, info, utc_text
from .progress import Progress

Storage = JobOutputStorage | TaskOutputStorage
#: Parallel listings (one per task) and parallel file transfers.
LIST_CONCURRENCY = 8
TRANSFER_CONCURRENCY = 4

# --- prepare, url, names ------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> int:
    with connect.service_client(args, "prepare") as service:
        container = prepare_output_storage(service, args.job_id)
    print(container.container_name)
    return EXIT_OK


def url(args: argparse.Namespace) -> int:
    with connect.service_client(args, "url") as service:
        sas_url = output_storage_container_url(service, args.job_id, expiry=args.expiry)
        container = naming.container_name(args.job_id)
        try:
            exists = service.get_container_client(container).exists()
        except AzureError:  # a credential that may sign but not read: no warning then
            exists = True
    if not exists:
        common.warn(
            f"container {container!r} does not exist yet: "
            f"run `batchfiles prepare {args.job_id}` before tasks use this URL"
        )
    print(sas_url)
    return EXIT_OK


def names(args: argparse.Namespace) -> int:
    ids = args.job_ids
    if not ids:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("give job ids as arguments, or one per line on standard input")
        ids = [line.strip() for line in sys.stdin if line.strip()]
    out = sys.stdout
    for name in naming.container_names(ids):
        out.write(name + "\n")
    return EXIT_OK


# --- list ---------------------------------------------------------------------------------------------------


def _applies(kind: str | None, task: bool) -> bool:
    """Whether a --kind filter can match a task's outputs (``task``) or the job's own."""
    if kind is None:
        return True
    return kind not in (common.JOB_KINDS if task else common.TASK_KINDS)


def _scopes(
    job: JobOutputStorage, task: str | None, kind: str | None
) -> Iterator[tuple[str | None, Storage]]:
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

    def listing(scope: tuple[str | None, Storage]) -> list[tuple[str | None, OutputFileReference]]:
        task_id, storage = scope
        return [(task_id, ref) for ref in storage.list(kind, on_invalid=on_invalid)]

    with ThreadPoolExecutor(LIST_CONCURRENCY) as pool:
        for chunk in pool.map(listing, _scopes(job, task, kind)):
            yield from chunk


def _json_line(job_id: str, task: str | None, ref: OutputFileReference) -> str:
    md5 = base64.b64encode(ref.content_md5).decode() if ref.content_md5 else None
    modified = ref.last_modified.isoformat() if ref.last_modified else None
    record = {
        "job": job_id,
        "task": task,
        "kind": str(ref.kind),
        "path": ref.file_path,
        "size": ref.size,
        "content_md5": md5,
        "last_modified": modified,
        "url": ref.url,
        "blob": ref.blob_name,
    }
    return json.dumps(record, ensure_ascii=False)


def list_outputs(args: argparse.Namespace) -> int:
    """The table (or JSON lines) of the selection; then a warning for each blob skipped as not an output."""
    skipped: list[tuple[str, str]] = []
    with connect.job_storage(args, "list", args.job_id, interactive=True) as job:
        found = outputs(job, args.task, args.kind, lambda name, why: skipped.append((name, why)))
        if args.json:
            count = 0
            for count, (task, ref) in enumerate(found, 1):  # noqa: B007 - count is used below
                print(_json_line(args.job_id, task, ref))
        else:
            rows = list(found)
            count = len(rows)
            if rows:
                _print_table(rows, with_task=args.task is None)
    for blob_name, reason in sorted(skipped):  # listed in parallel: printed once done, in a stable order
        common.warn(f"skipped blob {blob_name!r}: {reason}")
    if not count:
        info(f"no outputs found for job {args.job_id!r}" + (f", task {args.task!r}" if args.task else ""))
    return EXIT_OK


def _print_table(rows: list[tuple[str | None, OutputFileReference]], *, with_task: bool) -> None:
    header = ["TASK"] if with_task else []
    header += ["KIND", "PATH", "SIZE", "MODIFIED (UTC)"]
    table = [header]
    for task, ref in rows:
        cells = [task if task is not None else "(job)"] if with_task else []
        cells += [str(ref.kind), ref.file_path, human_size(ref.size), utc_text(ref.last_modified)]
        table.append(cells)
    size_column = len(header) - 2
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [
            cell.rjust(width) if i == size_column else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


# --- get ----------------------------------------------------------------------------------------------------


def local_target(out_dir: Path, task: str | None, ref: OutputFileReference) -> Path:
    """``DIR/{task}/{Kind}/{path}`` or ``DIR/{Kind}/{path}`` (no ``$``: it would need quoting in shells).

    References are only made of file paths in normal form; as a second guard, the path goes through the
    conventions' own normalisation and the target must resolve inside DIR (ValueError saying why not).
    """
    try:
        relative = naming.destination_path(ref.file_path)
    except ValueError as err:
        raise ValueError(f"refusing its file path: {err}") from None
    parts = ([task] if task is not None else []) + [str(ref.kind), *relative.split("/")]
    target = out_dir.joinpath(*parts)
    if not target.resolve().is_relative_to(out_dir.resolve()):
        raise ValueError(f"refusing to save it outside {str(out_dir)!r}")
    return target


def plan_downloads(
    out_dir: Path, refs: list[tuple[str | None, OutputFileReference]], skip: OnInvalid
) -> list[tuple[OutputFileReference, Path]]:
    """(reference, local target) of each download; a blob without a target of its own is ``skip``ped:
    one that would land outside DIR, and every one of two or more that would land on the same file."""
    targets: dict[Path, list[OutputFileReference]] = {}
    for task, ref in refs:
        try:
            targets.setdefault(local_target(out_dir, task, ref), []).append(ref)
        except ValueError as err:
            skip(ref.blob_name, str(err))
    plan = []
    for target, same in targets.items():
        if len(same) == 1:
            plan.append((same[0], target))
            continue
        for ref in same:
            others = ", ".join(repr(other.blob_name) for other in same if other is not ref)
            skip(ref.blob_name, f"it and {others} would all be saved as {str(target)!r}")
    return plan


def get(args: argparse.Namespace) -> int:
    """Download the selection; a blob that is not an output, or has no target of its own, is skipped and
    reported, everything else is downloaded, and the exit code is then 1."""
    out_dir = Path(args.output_dir)
    found: list[tuple[str, str]] = []

    def skip(blob_name: str, reason: str) -> None:
        found.append((blob_name, reason))

    with connect.job_storage(args, "get", args.job_id, interactive=True) as job:
        if args.path is not None and args.task is not None and args.kind is not None:
            refs = [(args.task, job.task(args.task).get(args.kind, args.path))]
        else:
            refs = [
                (task, ref)
                for task, ref in outputs(job, args.task, args.kind, skip)
                if args.path is None or ref.file_path == args.path
            ]
        found.sort()  # listed in parallel: a stable order
        plan = plan_downloads(out_dir, refs, skip)
        for blob_name, reason in found:
            common.error(f"skipped blob {blob_name!r}: {reason}")
        if not refs:
            what = f"no output {args.path!r}" if args.path is not None else "no outputs"
            where = f" of task {args.task!r}" if args.task else ""
            kind = f" of kind {args.kind!r}" if args.kind else ""
            common.error(f"{what}{kind} found in job {args.job_id!r}{where}")
            return EXIT_ERROR
        code = _download_all(plan) if plan else EXIT_OK
    if found:
        common.error(f"{len(found)} blob{'s' if len(found) != 1 else ''} skipped (see above)")
        return EXIT_ERROR
    return code


def _download_all(plan: list[tuple[OutputFileReference, Path]]) -> int:
    total = sum(ref.size for ref, _ in plan)
    label = f"{len(plan)} file{'s' if len(plan) != 1 else ''}"
    failures = 0
    with Progress(total, f"downloading {label}") as bar, ThreadPoolExecutor(TRANSFER_CONCURRENCY) as pool:
        jobs = [
            (ref, pool.submit(ref.download_to_file, target, progress=bar.callback(target)))
            for ref, target in plan
        ]
        for ref, job in jobs:
            try:
                print(job.result())
            except (OSError, ValueError, AzureError, BatchFilesError) as err:
                bar.close()
                common.error(f"{ref.blob_name}: {err}")
                failures += 1
    if failures:
        common.error(f"{failures} of {len(plan)} downloads failed")
        return EXIT_ERROR
    info(f"downloaded {label} ({human_size(total)}), each checked against its Content-MD5")
    return EXIT_OK


# --- save ---------------------------------------------------------------------------------------------------


def files_to_save(paths: list[str], dest: str | None) -> list[tuple[str, str]]:
    """(local path, destination) of each file to save; every path checked, and every destination found
    unique, before any upload.

    A file keeps its relative path, normalised by the library (``../x.txt`` is saved as ``x.txt``); an
    absolute one is saved under its name. A pattern follows the Batch OutputFiles rules, relative to the
    working directory, which it may not climb above; it must match something. The same file given twice is
    saved once; two different files that would be saved under one name raise :class:`ValueError` naming
    them (exit 1), and nothing is saved.
    """
    files: list[tuple[str, str]] = []
    for path in paths:
        if os.path.isfile(path):
            files.append((path, os.path.basename(path) if os.path.isabs(path) else path))
        elif _patterns.is_pattern(path):
            matches = _patterns.expand(path, ".")
            if not matches:
                raise FileNotFoundError(f"no file matches {path!r}")
            files.extend(matches)
        elif os.path.isdir(path):
            raise IsADirectoryError(
                f"{path!r} is a folder: give its files with a pattern such as '{path}/**'"
            )
        else:
            raise FileNotFoundError(f"no such file: {path!r}")
    if dest is not None:
        distinct: list[str] = []
        for local, _ in files:
            if not any(_saving.same_file(local, seen) for seen in distinct):
                distinct.append(local)
        if len(distinct) != 1:
            raise UsageError(f"--dest names one file, but {len(distinct)} files were given")
        return [(distinct[0], dest)]
    return _saving.unique_names(files, naming.destination_path)


def save(args: argparse.Namespace) -> int:
    job_side = args.job_output or args.kind in common.JOB_KINDS
    if args.job_output and args.kind in common.TASK_KINDS:
        raise UsageError(f"{args.kind!r} is a task output kind; drop --job-output")
    files = files_to_save(args.paths, args.dest)
    total = sum(os.path.getsize(local) for local, _ in files)
    label = f"{len(files)} file{'s' if len(files) != 1 else ''}"
    storage: Storage = connect.job_storage(args, "save") if job_side else connect.task_storage(args, "save")
    with storage:
        # every blob name derived (a name too long for storage is refused) before any upload
        _saving.unique_names(files, lambda d: naming.blob_name(args.kind, d, storage.task_id))
        with Progress(total, f"saving {label}") as bar:
            if len(files) == 1:
                local, dest = files[0]
                refs = [storage.save(args.kind, local, dest, progress=bar.callback(local))]
            else:
                with ThreadPoolExecutor(8) as pool:
                    jobs = [
                        pool.submit(
                            storage.save,
                            args.kind,
                            local,
                            dest,
                            progress=bar.callback(local),
                            max_concurrency=1,
                        )
                        for local, dest in files
                    ]
                    refs = [job.result() for job in jobs]
    for ref in refs:
        print(ref.blob_name)
    info(f"saved {label} ({human_size(total)}) to container {storage.container_name!r}")
    return EXIT_OK
