"""What every command shares: the shape of a command module, exit codes, messages on stderr (redacted by
:mod:`batchfiles._errors`), and the argument types of the command line."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timedelta, timezone
from typing import Protocol

from azure.core.exceptions import AzureError

from .. import naming
from ..environment import parse_duration
from ..errors import BatchFilesError, first_line, redact
from ..files import OutputSpec, parse_spec
from ..kinds import builtin_side, parse_kind


class Command(Protocol):
    """A command of the command line: a module of :mod:`batchfiles._cli` listed in ``cli.COMMANDS``."""

    #: The command's name, as typed (``batchfiles NAME``).
    NAME: str
    #: One line: the command's description, and its line in ``batchfiles --help``.
    SUMMARY: str
    #: What ``batchfiles NAME --help`` shows after the options: the details and ``examples:``.
    EPILOG: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Its options and positionals (``--quiet`` and ``--debug`` are added for every command)."""

    def run(self, args: argparse.Namespace) -> int:
        """Do it; the exit code. Errors are raised (``UsageError`` for a usage error) and reported by main."""


# --- exit codes ---------------------------------------------------------------------------------------------

EXIT_OK = 0
#: A runtime error: missing credentials, container not prepared, access refused, missing file...
EXIT_ERROR = 1
#: A usage error (argparse's code): unknown option, bad id, bad duration...
EXIT_USAGE = 2
#: ``run``/``track``: something could not be saved (a log or an output); EX_TEMPFAIL of sysexits.h.
EXIT_NOT_SAVED = 75
#: ``run``: CMD could not be started (126: not executable, 127: not found), as in POSIX shells.
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
#: Interrupted by Ctrl-C (SIGINT) or SIGTERM before the work was done: 128 + SIGINT.
EXIT_INTERRUPTED = 130


#: Errors of one transfer (a file saved or downloaded) that a command reports and counts rather than stops on.
TRANSFER_ERRORS = (BatchFilesError, OSError, ValueError, AzureError)


class UsageError(Exception):
    """A mistake in the command line found after parsing; reported like argparse's (exit 2)."""


# --- messages -----------------------------------------------------------------------------------------------

PROG = "batchfiles"
quiet = False  # set by main from --quiet


def error(message: object) -> None:
    """``batchfiles: error: ...``: the first line of ``message``, redacted."""
    print(f"{PROG}: error: {first_line(message)}", file=sys.stderr, flush=True)


def warn(message: object) -> None:
    print(f"{PROG}: warning: {first_line(message)}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    """A progress or summary line on stderr (stdout is for data); silent with --quiet."""
    if not quiet:
        print(f"{PROG}: {redact(message)}", file=sys.stderr, flush=True)


def human_size(size: int) -> str:
    """``1.5 MiB``; bytes below 1 KiB as ``312 B``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def utc_text(when: datetime | None) -> str:
    """``2025-11-25 15:04:05Z``, or ``-`` when unknown."""
    if when is None:
        return "-"
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


# --- argument types -----------------------------------------------------------------------------------------


def job_id_arg(text: str) -> str:
    try:
        naming.container_name(text)  # validates the job id
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def task_id_arg(text: str) -> str:
    try:
        naming.blob_prefix("TaskOutput", text)  # validates the task id
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def kind_arg(text: str) -> str:
    """An output kind's text; ``$TaskOutput`` (as in blob names) is taken as ``TaskOutput``.

    Kinds are case-sensitive, so ``taskoutput`` would be a custom kind nobody finds: refused with a hint.
    """
    try:
        return parse_kind(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def job_side(kind: str | None, job_output: bool) -> bool:
    """Whether ``save`` or ``track`` saves the job's own outputs: with ``--job-output`` or a built-in job
    kind. A built-in task kind with ``--job-output`` is a :class:`UsageError`."""
    side = builtin_side(kind)
    if job_output and side == "task":
        raise UsageError(f"{kind!r} is a task output kind; drop --job-output")
    return job_output or side == "job"


def duration_arg(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``, ``1w``, or a sum such as ``1d12h``."""
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def margin_arg(text: str) -> timedelta:
    """A duration as :func:`duration_arg`, or ``0`` for none."""
    try:
        return parse_duration(text, zero=True)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600 seconds, not {text}")
    return value


def output_spec_arg(text: str) -> OutputSpec:
    """``run --output PATTERN[=KIND][@CONDITION]`` (parsed by :func:`batchfiles._patterns.parse_spec`): a task
    kind, a pattern relative to the working directory."""
    try:
        spec = parse_spec(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if builtin_side(spec.kind) == "job":
        raise argparse.ArgumentTypeError(
            f"{spec.kind!r} is a job output kind; run saves the task's outputs "
            f"(save job outputs with `batchfiles save {spec.kind} PATH`)"
        )
    if os.path.isabs(spec.pattern):
        raise argparse.ArgumentTypeError(
            f"pattern {spec.pattern!r} is absolute: patterns are relative to the working dir"
        )
    return spec
