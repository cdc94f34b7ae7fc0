"""``batchfiles get``: download a job's outputs, MD5-checked, each to a local file of its own."""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import naming
from .._types import OnInvalid
from ..storage import OutputFileReference
from . import common, connect, selection
from .common import EXIT_ERROR, EXIT_OK, TRANSFER_ERRORS, human_size, info
from .progress import Progress

NAME = "get"
SUMMARY = "download a job's outputs, MD5-checked"
EPILOG = f"""\
Downloads every output of the selection (or those at PATH) under DIR as DIR/{{task}}/{{Kind}}/{{path}},
and the job's own outputs as DIR/{{Kind}}/{{path}}: the folder is the kind without its $ (t1/TaskOutput,
not t1/$TaskOutput, which shells would expand). Each file is checked against the MD5 stored with it;
a mismatch leaves no file. Existing files are replaced. Prints each file's local path. A blob that is
not an output (a path with '.', '..' or empty segments, which batchfiles never saves) or that would share
its local file with another is skipped with an error line; the rest is downloaded, and the exit code is 1.

When storage throttles the account, it says so once on stderr and waits, trying again for some minutes
before it gives up.

examples:
  batchfiles get render-42 -o results                       # everything
  batchfiles get render-42 --task frame-7 --kind TaskOutput frames/0007.png
  batchfiles get render-42 --kind TaskLog stderr.txt -o logs  # every task's stderr.txt

{connect.STORAGE_HELP}"""

#: Parallel downloads.
TRANSFER_CONCURRENCY = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    selection.add_arguments(parser)
    parser.add_argument(
        "path", nargs="?", metavar="PATH", help="only the outputs at this path (under their kind)"
    )
    parser.add_argument("-o", "--output-dir", default=".", metavar="DIR", help="where to put them (.)")
    connect.add_storage_options(parser)


def run(args: argparse.Namespace) -> int:
    """Download the selection; a blob that is not an output, or has no target of its own, is skipped and
    reported, everything else is downloaded, and the exit code is then 1."""
    out_dir = Path(args.output_dir)
    found: list[tuple[str, str]] = []

    def skip(blob_name: str, reason: str) -> None:
        found.append((blob_name, reason))

    with connect.job_storage(args, "get", args.job_id, interactive=True, patient=True) as job:
        notice = connect.ThrottlingNotice(job)  # noqa: F841 - kept while the storage is used
        if args.path is not None and args.task is not None and args.kind is not None:
            refs = [(args.task, job.task(args.task).get(args.kind, args.path))]
        else:
            refs = [
                (task, ref)
                for task, ref in selection.outputs(job, args.task, args.kind, skip)
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
            except TRANSFER_ERRORS as err:
                bar.close()
                common.error(f"{ref.blob_name}: {err}")
                failures += 1
    if failures:
        common.error(f"{failures} of {len(plan)} downloads failed")
        return EXIT_ERROR
    info(f"downloaded {label} ({human_size(total)}), each checked against its Content-MD5")
    return EXIT_OK
