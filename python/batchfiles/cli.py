"""The ``batchfiles`` command line (also ``python -m batchfiles``): run a task with live logs and
conditional outputs, save and track files, prepare a job, list, fetch and delete its outputs.

This module builds the parser from the command modules in ``COMMANDS`` (each owns its options, help and
handler: see :mod:`batchfiles._cli`) and dispatches; ``main(argv)`` returns the exit code.
``batchfiles --help`` and ``batchfiles COMMAND --help`` say the rest.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from azure.core.exceptions import AzureError

from . import __version__
from ._cli import (
    common,
    connect,
    delete,
    get,
    list_,
    logs,
    names,
    output_files,
    prepare,
    run,
    save,
    track,
    url,
    view,
)
from ._cli.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, Command, UsageError
from .errors import BatchFilesError, describe, first_line, redact

__all__ = ["main"]

#: The commands, in the order ``batchfiles --help`` lists them: each a module of ``_cli`` (see
#: :class:`batchfiles._cli.common.Command`). A new command is a new module and a line here.
COMMANDS: tuple[Command, ...] = (
    run,
    save,
    track,
    prepare,
    url,
    list_,
    get,
    logs,
    view,
    delete,
    names,
    output_files,
)

#: ``list | head``: stdout closed early, as a tool killed by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 141

EXIT_CODES = f"""\
exit codes:
  0    done ({common.PROG} run: the command succeeded and everything was saved)
  1    an error: missing credentials, container not prepared, access refused, missing file, ...
  2    a usage error: unknown option, bad id, kind or duration
  75   run, track: something could not be saved (a log or an output); the command's own exit code
       is printed on stderr
  126, 127  run: the command could not be started (not executable, not found)
  130  interrupted (Ctrl-C) before the work was done
  N    run: the command's exit code, or 128 + the signal that killed it
"""

DESCRIPTION = """\
Persist and fetch Azure Batch task outputs and live logs, named by the Azure Batch File Conventions
(containers job-{id}, blobs {task}/$TaskOutput/{path}, $JobOutput/{path}, ...), as the Azure portal and
Batch Explorer show them.
"""

MAIN_EPILOG = f"""\
a job's life:
  batchfiles prepare render-42                # the job's container (with account access)
  export BATCHFILES_CONTAINER_URL=$(batchfiles url render-42 --expiry 2d)   # for the tasks
  batchfiles run --output 'frames/*.png' -- ./render.sh    # a task's command line on a node
  batchfiles logs render-42 -f --tail 10      # every task's logs, live, until they are closed
  batchfiles list render-42                   # what every task saved
  batchfiles get render-42 -o results         # fetch it all, MD5-checked
  batchfiles delete render-42 --container     # done with it: the whole container (with account access)

Each command has its own --help with examples.

{connect.STORAGE_HELP}
{EXIT_CODES}"""


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line, ``batchfiles: error: ...``, and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        common.error(f"{message} (see `{self.prog} --help`)")
        raise SystemExit(EXIT_USAGE)


class _IntermixedParser(_Parser):
    """Options and positionals in any order (``get JOB --task T PATH``): argparse's intermixed parsing,
    for the commands without a REMAINDER (``run``, whose CMD takes everything after it)."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        if self._inside or any(action.nargs == argparse.REMAINDER for action in self._actions):
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog=common.PROG, description=DESCRIPTION, epilog=MAIN_EPILOG, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"{common.PROG} {__version__}")
    _add_common(parser, False)
    parser.set_defaults(func=None, parser=parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_IntermixedParser)
    for command in COMMANDS:
        sub = commands.add_parser(
            command.NAME,
            help=command.SUMMARY,
            description=command.SUMMARY,
            epilog=command.EPILOG,
            formatter_class=formatter,
        )
        sub.set_defaults(func=command.run, parser=sub)
        _add_common(sub, argparse.SUPPRESS)
        command.add_arguments(sub)
    return parser


def _add_common(parser: argparse.ArgumentParser, default: object) -> None:
    """--quiet and --debug, before or after the command (the command's copy must not reset the other)."""
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="no progress bars or summaries on stderr"
    )
    parser.add_argument("--debug", action="store_true", default=default, help="tracebacks and storage logs")


class _LogFormatter(logging.Formatter):
    """``batchfiles: warning: ...`` on one line; with --debug, whole records with the logger's name."""

    def __init__(self, debug: bool) -> None:
        super().__init__("%(name)s: %(message)s")
        self._debug = debug

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record) if self._debug else first_line(record.getMessage())
        return redact(f"{common.PROG}: {record.levelname.lower()}: {text}")


_handlers: list[tuple[logging.Logger, logging.Handler]] = []


def _configure_logging(debug: bool) -> None:
    """The library's warnings (retries, lost bytes) as ``batchfiles: warning: ...``; Azure SDK logs only
    with --debug."""
    for logger, handler in _handlers:
        logger.removeHandler(handler)
    _handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter(debug))
    library = logging.getLogger("batchfiles")
    library.setLevel(logging.DEBUG if debug else logging.WARNING)
    library.propagate = False
    azure = logging.getLogger("azure")
    azure.propagate = False
    if debug:
        azure.setLevel(logging.INFO)
    _handlers.extend([(library, handler), (azure, handler if debug else logging.NullHandler())])
    for logger, h in _handlers:
        logger.addHandler(h)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Usage errors raise ``SystemExit(2)``, as argparse does (``--help`` and ``--version``: ``SystemExit(0)``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    common.quiet = bool(args.quiet)
    _configure_logging(bool(args.debug))
    connect.register_all_secrets(args)
    if args.func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as err:
        args.parser.error(str(err))
    except KeyboardInterrupt:
        common.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return EXIT_BROKEN_PIPE
    except (BatchFilesError, OSError, ValueError, AzureError) as err:
        _traceback(args)
        common.error(describe(err))
    except Exception as err:
        _traceback(args)
        hint = "" if args.debug else " (run with --debug for the traceback)"
        common.error(f"unexpected {type(err).__name__}: {first_line(err)}{hint}")
    return EXIT_ERROR


def _traceback(args: argparse.Namespace) -> None:
    if args.debug:
        sys.stderr.write(redact(traceback.format_exc()))
