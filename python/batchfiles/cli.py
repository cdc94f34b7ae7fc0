"""The ``batchfiles`` command line (also ``python -m batchfiles``): run a task with live logs and
conditional outputs, save and track files, prepare a job, list and fetch its outputs.

``main(argv)`` returns the exit code; ``batchfiles --help`` and ``batchfiles COMMAND --help`` say the rest.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from azure.core.exceptions import AzureError

from . import __version__, _errors
from ._cli import common, connect, run, transfer
from ._cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    duration_arg,
    job_id_arg,
    kind_arg,
    output_spec_arg,
    seconds_arg,
    task_id_arg,
)
from .errors import BatchFilesError

__all__ = ["main"]

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
  batchfiles list render-42                   # what every task saved
  batchfiles get render-42 -o results         # fetch it all, MD5-checked

Each command has its own --help with examples.

{connect.STORAGE_HELP}
{EXIT_CODES}"""

RUN_EPILOG = f"""\
CMD's stdout and stderr still reach the console; they are also written to stdout.txt and stderr.txt in
the working directory (afresh on each run; a second run in the same directory meanwhile is refused) and
saved live as TaskLog, {{task}}/$TaskLog/stdout.txt and stderr.txt: new output is in storage within
--flush-interval seconds. When CMD exits, the files matching each --output PATTERN[=KIND][@CONDITION]
are saved as KIND (default TaskOutput) if CONDITION holds:
  success     CMD exited with 0
  failure     CMD exited with anything else, or was killed
  completion  always (the default)
Patterns follow Batch's OutputFiles rules, relative to the working directory: * and ? within a name,
** for any folders, [abc]; the file keeps its relative path. A literal @ or = in a name: [@], [=].
Patterns may not climb out (../*.txt); links leading out are skipped. All patterns are expanded and all
names checked before the first upload: a pattern climbing out, or two files that would be one blob
(a/b.txt and a file named a\\b.txt) are errors, not saved (exit 75); the rest is saved.

Signals: SIGTERM, SIGINT (Ctrl-C) and SIGHUP are forwarded to CMD's process group; CMD runs in a session
of its own, so it gets a terminal's Ctrl-C once, through batchfiles. Once CMD is over, the logs and
outputs are saved even if it was stopped by a signal. If batchfiles itself is killed with SIGKILL, CMD
is not signalled. Output that background processes left behind by CMD write more than 2 s after CMD
exits is not captured.

Exit code: CMD's (128 + N if signal N killed it), or 75 if a log or an output could not be saved
(CMD's code is then printed on stderr): never 0 after lost data. 127/126: CMD not found / not runnable.

Programs that buffer their output when it is not a terminal (C stdio, Python) show it in bursts: make
them flush (python -u or PYTHONUNBUFFERED=1, stdbuf -oL CMD).

examples:
  batchfiles run -- python -u render.py --frames 1-50
  batchfiles run --output 'frames/*.png' --output 'thumbs/**/*.jpg=TaskPreview' -- ./render.sh
  batchfiles run --output 'core.*=TaskLog@failure' --output 'result.bin@success' -- ./solve input.dat
  batchfiles run --flush-interval 1 --task local-test -- sh -c 'echo hello; sleep 5; echo bye'

{connect.STORAGE_HELP}"""

SAVE_EPILOG = f"""\
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

TRACK_EPILOG = f"""\
Follows PATH like tail -F (through rotation and truncation; a file not yet there is waited for) and
appends what it gains to an append blob every --flush-interval seconds, until Ctrl-C or SIGTERM; then
saves the rest and exits. The kind is TaskLog unless --kind says otherwise. Exit code 75 if some of the
file could not be saved.

examples:
  batchfiles track progress.log &
  batchfiles track /var/log/solver.log --kind TaskLog --dest solver.log
  batchfiles track --job-output --kind Logs merge.log

{connect.STORAGE_HELP}"""

PREPARE_EPILOG = f"""\
Creates the job's container (private; an existing one is fine) and prints its name. Needs access to the
storage account: a connection string or an account URL, not a container URL.

examples:
  batchfiles prepare render-42
  AZURE_STORAGE_ACCOUNT_URL=https://myaccount.blob.core.windows.net batchfiles prepare render-42

{connect.STORAGE_HELP}"""

URL_EPILOG = f"""\
Prints the job container's URL with a SAS (read, add, create, write, list; no delete) for its tasks to
use as BATCHFILES_CONTAINER_URL. The URL is a secret: hand it to the job (e.g. as an environment
setting), do not log it. Signed with the account key, or with a user delegation key when signed in with
an Azure credential (then at most 7 days). Durations: 90s, 30m, 12h, 7d, 1w, 1d12h.

examples:
  batchfiles url render-42
  batchfiles url render-42 --expiry 12h

{connect.STORAGE_HELP}"""

LIST_EPILOG = f"""\
Without --task: the job's own outputs, then every task's. A table (task, kind, path, size, modified
time in UTC), or with --json one JSON object a line: job, task (null for the job's own), kind, path,
size, content_md5 (base64, null if none), last_modified (ISO 8601), url (no SAS), blob.

examples:
  batchfiles list render-42
  batchfiles list render-42 --task frame-7 --kind TaskLog
  batchfiles list render-42 --json | jq -r 'select(.size > 1000000) | .path'

{connect.STORAGE_HELP}"""

GET_EPILOG = f"""\
Downloads every output of the selection (or those at PATH) under DIR as DIR/{{task}}/{{Kind}}/{{path}},
and the job's own outputs as DIR/{{Kind}}/{{path}}: the folder is the kind without its $ (t1/TaskOutput,
not t1/$TaskOutput, which shells would expand). Each file is checked against the MD5 stored with it;
a mismatch leaves no file. Existing files are replaced. Prints each file's local path. A blob that is
not an output (a path with '.', '..' or empty segments, which batchfiles never saves) or that would share
its local file with another is skipped with an error line; the rest is downloaded, and the exit code is 1.

examples:
  batchfiles get render-42 -o results                       # everything
  batchfiles get render-42 --task frame-7 --kind TaskOutput frames/0007.png
  batchfiles get render-42 --kind TaskLog stderr.txt -o logs  # every task's stderr.txt

{connect.STORAGE_HELP}"""

NAMES_EPILOG = """\
Prints the container name of each job id, one a line, in order (no storage access). Without ids, reads
them from standard input, one a line.

examples:
  batchfiles names MyJob my_job-bob        # job-myjob, job-my-job-bob-e04620bc...
  az batch job list --query '[].id' -o tsv | batchfiles names
"""


JOB_ID_HELP = "the Batch job's id (its container is named after it: see `batchfiles names`)"


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

    def command(
        name: str, summary: str, epilog: str, func, usage: str | None = None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=epilog,
            formatter_class=formatter,
            usage=usage,
        )
        sub.set_defaults(func=func, parser=sub)
        _add_common(sub, argparse.SUPPRESS)
        return sub

    p = command(
        "run",
        "run a command, saving its logs live and its outputs when it exits",
        RUN_EPILOG,
        run.run,
        usage="batchfiles run [--output PATTERN[=KIND][@CONDITION]]... [options] -- CMD [ARGS...]",
    )
    p.add_argument(
        "--output",
        dest="outputs",
        action="append",
        type=output_spec_arg,
        metavar="PATTERN[=KIND][@CONDITION]",
        help="files to save when CMD exits (repeatable); CONDITION: success, failure, completion (default)",
    )
    p.add_argument(
        "--flush-interval", type=seconds_arg, default=5.0, metavar="S", help="seconds between log saves (5)"
    )
    connect.add_id_options(p)
    connect.add_storage_options(p)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]", help="the command to run")

    p = command("save", "save files as outputs of the task (or of the job)", SAVE_EPILOG, transfer.save)
    p.add_argument(
        "kind", type=kind_arg, metavar="KIND", help="TaskOutput, TaskPreview, TaskLog, ..., or your own"
    )
    p.add_argument("paths", nargs="+", metavar="PATH_OR_PATTERN", help="files or patterns to save")
    p.add_argument("--dest", metavar="NAME", help="the single file's path in storage (under its kind)")
    p.add_argument(
        "--job-output", action="store_true", help="save as the job's own output (implied by Job* kinds)"
    )
    connect.add_id_options(p)
    connect.add_storage_options(p)

    p = command("track", "save a growing file (a log) live, until interrupted", TRACK_EPILOG, run.track)
    p.add_argument("path", metavar="PATH", help="the file to follow")
    p.add_argument("--kind", type=kind_arg, metavar="KIND", help="its kind (TaskLog)")
    p.add_argument("--dest", metavar="NAME", help="its path in storage (PATH, or its name if absolute)")
    p.add_argument(
        "--flush-interval", type=seconds_arg, default=5.0, metavar="S", help="seconds between saves (5)"
    )
    p.add_argument(
        "--if-exists",
        choices=("resume", "overwrite", "fail"),
        default="resume",
        help="a blob already there: resume after what it holds of the file (default), overwrite, or fail",
    )
    p.add_argument("--job-output", action="store_true", help="save as the job's own output (needs --kind)")
    connect.add_id_options(p)
    connect.add_storage_options(p)

    p = command(
        "prepare", "create a job's output container; prints its name", PREPARE_EPILOG, transfer.prepare
    )
    p.add_argument("job_id", type=job_id_arg, metavar="JOB_ID", help=JOB_ID_HELP)
    connect.add_storage_options(p, container_url=False)

    p = command("url", "print a job container URL with a SAS, for its tasks", URL_EPILOG, transfer.url)
    p.add_argument("job_id", type=job_id_arg, metavar="JOB_ID", help=JOB_ID_HELP)
    p.add_argument(
        "--expiry", type=duration_arg, default="7d", metavar="DURATION", help="how long it is valid (7d)"
    )
    connect.add_storage_options(p, container_url=False)

    p = command("list", "list a job's outputs: a table, or JSON lines", LIST_EPILOG, transfer.list_outputs)
    p.add_argument("job_id", type=job_id_arg, metavar="JOB_ID", help=JOB_ID_HELP)
    p.add_argument("--task", type=task_id_arg, metavar="TASK_ID", help="only this task's outputs")
    p.add_argument("--kind", type=kind_arg, metavar="KIND", help="only outputs of this kind")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    connect.add_storage_options(p)

    p = command("get", "download a job's outputs, MD5-checked", GET_EPILOG, transfer.get)
    p.add_argument("job_id", type=job_id_arg, metavar="JOB_ID", help=JOB_ID_HELP)
    p.add_argument("path", nargs="?", metavar="PATH", help="only the outputs at this path (under their kind)")
    p.add_argument("--task", type=task_id_arg, metavar="TASK_ID", help="only this task's outputs")
    p.add_argument("--kind", type=kind_arg, metavar="KIND", help="only outputs of this kind")
    p.add_argument("-o", "--output-dir", default=".", metavar="DIR", help="where to put them (.)")
    connect.add_storage_options(p)

    p = command("names", "print the container names of job ids", NAMES_EPILOG, transfer.names)
    p.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="job ids (or one a line on stdin)")
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
        text = super().format(record) if self._debug else _errors.first_line(record.getMessage())
        return _errors.redact(f"{common.PROG}: {record.levelname.lower()}: {text}")


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
        common.error(_errors.describe(err))
    except Exception as err:
        _traceback(args)
        hint = "" if args.debug else " (run with --debug for the traceback)"
        common.error(f"unexpected {type(err).__name__}: {_errors.first_line(err)}{hint}")
    return EXIT_ERROR


def _traceback(args: argparse.Namespace) -> None:
    if args.debug:
        sys.stderr.write(_errors.redact(traceback.format_exc()))
