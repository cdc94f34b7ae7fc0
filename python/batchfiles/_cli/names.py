"""``batchfiles names``: the container names of job ids (no storage access)."""

from __future__ import annotations

import argparse
import sys

from .. import naming
from .common import EXIT_OK, UsageError

NAME = "names"
SUMMARY = "print the container names of job ids"
EPILOG = """\
Prints the container name of each job id, one a line, in order (no storage access). Without ids, reads
them from standard input, one a line.

examples:
  batchfiles names MyJob my_job-bob        # job-myjob, job-my-job-bob-e04620bc...
  az batch job list --query '[].id' -o tsv | batchfiles names
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="job ids (or one a line on stdin)")


def run(args: argparse.Namespace) -> int:
    ids = args.job_ids
    if not ids:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("give job ids as arguments, or one per line on standard input")
        ids = [line.strip() for line in sys.stdin if line.strip()]
    out = sys.stdout
    for name in naming.container_names(ids):
        out.write(name + "\n")
    return EXIT_OK
