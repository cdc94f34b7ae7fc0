"""``batchfiles save``: files (or patterns) saved as outputs of the task or of the job, through the
library's multi-file save."""

from __future__ import annotations

import argparse
import os

from .. import files as local_files
from .. import naming
from . import common, connect
from .common import EXIT_OK, UsageError, human_size, info, kind_arg
from .progress import Progress

NAME = "save"
SUMMARY = "save files as outputs of the task (or of the job)"
EPILOG = f"""\
Each PATH is a file or a pattern (Batch's OutputFiles rules: *, ?, ** for any folders); every file keeps
its path relative to the working directory (../x.txt is saved as x.txt; an absolute path under its
name). Patterns may not climb out of the working directory; links leading out are skipped. Two different
files that would be one blob (x.txt and ../x.txt) are refused, exit 1, before anything is saved. --dest
names the single file in storage. JobOutput and JobPreview (or --job-output) save the job's own
outputs. Prints the blob name of each file saved.

examples:
  batchfiles save TaskOutput result.bin
  batchfiles save TaskPreview 'thumbs/*.jpg'
  batchfiles save TaskOutput /scratch/out.bin --dest results/out.bin
  batchfiles save JobOutput contact-sheet.png
  batchfiles save --job-output Reports 'summary/**'

{connect.STORAGE_HELP}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind", type=kind_arg, metavar="KIND", help="TaskOutput, TaskPreview, TaskLog, ..., or your own"
    )
    parser.add_argument("paths", nargs="+", metavar="PATH_OR_PATTERN", help="files or patterns to save")
    parser.add_argument("--dest", metavar="NAME", help="the single file's path in storage (under its kind)")
    connect.add_saving_options(parser, "save as the job's own output (implied by Job* kinds)")


def run(args: argparse.Namespace) -> int:
    job_side = common.job_side(args.kind, args.job_output)
    files = files_to_save(args.paths, args.dest)
    total = sum(os.path.getsize(local) for local, _ in files)
    label = f"{len(files)} file{'s' if len(files) != 1 else ''}"
    storage = connect.saving_storage(args, job_side)
    with storage, Progress(total, f"saving {label}") as bar:
        refs = storage.save_files(args.kind, files, progress=bar.callback(None))
    for ref in refs:
        print(ref.blob_name)
    info(f"saved {label} ({human_size(total)}) to container {storage.container_name!r}")
    return EXIT_OK


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
        elif local_files.is_pattern(path):
            matches = local_files.expand(path, ".")
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
            if not any(local_files.same_file(local, seen) for seen in distinct):
                distinct.append(local)
        if len(distinct) != 1:
            raise UsageError(f"--dest names one file, but {len(distinct)} files were given")
        return [(distinct[0], dest)]
    return local_files.unique_names(files, naming.destination_path)
