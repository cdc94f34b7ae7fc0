"""``batchfiles logs``: print the logs of a job's tasks, or follow them live (``-f``), like ``docker compose
logs``: the events of :meth:`batchfiles.JobOutputStorage.follow_logs` (one listing of the job per poll,
ranged reads of what grew), printed with prefixes or as stored."""

from __future__ import annotations

import argparse
import codecs
import math
import os
import sys
from collections.abc import Iterable
from typing import IO, Any

from .. import JobOutputStorage, LogClosed, LogData, LogRestarted, LogsPolled
from ..kinds import builtin_side
from . import common, connect
from .common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    info,
    kind_arg,
    seconds_arg,
    task_id_arg,
)

#: A log: (task id, file path).
Key = tuple[str, str]

NAME = "logs"
SUMMARY = "print a job's task logs, or follow them live (-f)"
EPILOG = f"""\
Prints every TaskLog file (stdout.txt, stderr.txt, ...) of the named tasks, or of every task of the job
when none is named; --file keeps only those paths, --kind picks another task output kind. With several
files, each line is prefixed with TASK_ID/PATH | (coloured on a terminal), as docker compose logs does;
--no-prefix prints each line as stored (the lines of one log are kept together, never mixed with
another's). One file (one task and one --file) prints its bytes as stored, as they come. Output is never
cut in the middle of a UTF-8 character; with prefixes, bytes that are not UTF-8 are printed as U+FFFD.

--tail N starts each file at its last N lines (files of tasks that start later, while following, are
printed from their start). --follow keeps printing what the logs gain while the tasks run (`batchfiles
run` saves them live, every --flush-interval seconds) and picks up tasks that start later. With tasks
named, it waits for the ones not started yet and exits 0 once each named task's logs are closed (`batchfiles
run` closes its logs when the command is over). A whole job has no last task: following it goes on until
Ctrl-C (exit 130) or --idle-timeout S, which exits 0 once no log has gained a byte for S seconds (either way
of following). When storage throttles the account, following says so once and goes on, polling less often
while it lasts (a log it cannot see is not idle: --idle-timeout counts only polls that succeeded); other
storage errors end it (exit 1).
Each poll is one listing of the job's blobs (sizes and ETags), then a ranged read of each log that grew,
so following 200 running tasks costs one listing per --poll-interval, not 200 requests.

A log replaced while it is followed (a task run again) is announced on stderr and printed again from its
start. When `batchfiles run` closed a log, its exit code is reported on stderr (`batchfiles list` shows it
too). When stdout is closed before everything was printed (`| head`), logs exits 141, as a command killed
by SIGPIPE, whatever the mode.

examples:
  batchfiles logs render-42 frame-7                  # both logs of one task, prefixed
  batchfiles logs render-42 frame-7 --file stdout.txt -f        # raw stdout, live, until the task ends
  batchfiles logs render-42 -f --tail 10             # every task, the last 10 lines of each, then live
  batchfiles logs render-42 -f --idle-timeout 600    # every task, until none has logged for 10 minutes
  batchfiles logs render-42 --file stderr.txt | grep -i error  # every task's stderr, once

{connect.STORAGE_HELP}"""

#: ANSI colours of the prefixes, one per log in turn.
COLOURS = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    connect.add_job_argument(parser)
    parser.add_argument(
        "tasks", nargs="*", type=task_id_arg, metavar="TASK_ID", help="only these tasks (default: every task)"
    )
    parser.add_argument(
        "--file", dest="files", action="append", metavar="PATH", help="only this file (repeatable)"
    )
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing what the logs gain")
    parser.add_argument("--tail", type=lines_arg, metavar="N", help="start at the last N lines of each")
    parser.add_argument(
        "--kind", type=kind_arg, default="TaskLog", metavar="KIND", help="a task output kind (TaskLog)"
    )
    parser.add_argument("--no-prefix", action="store_true", help="no TASK_ID/PATH | prefixes")
    parser.add_argument(
        "--poll-interval", type=seconds_arg, default=1.0, metavar="S", help="seconds between polls (1)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=timeout_arg,
        metavar="S",
        help="with -f: stop once no log has grown for S seconds (default: never)",
    )
    connect.add_storage_options(parser)


def lines_arg(text: str) -> int:
    if not (text.isascii() and text.isdigit()):  # "²".isdigit(), and int("²") fails
        raise argparse.ArgumentTypeError(f"not a number of lines: {text!r}")
    return int(text)


def timeout_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds more than 0, not {text}")
    return value


def run(args: argparse.Namespace) -> int:
    if builtin_side(args.kind) == "job":
        raise UsageError(f"{args.kind!r} is a job output kind; logs shows a task kind (see `batchfiles get`)")
    tasks = list(dict.fromkeys(args.tasks))
    files = list(dict.fromkeys(args.files or []))
    if args.idle_timeout is not None and not args.follow:
        raise UsageError("--idle-timeout is for following (-f)")
    with connect.job_storage(args, args.job_id, interactive=True) as job:
        events = _events(job, args, tasks, files)
        one = len(tasks) == 1 and len(files) == 1
        prefixed = not args.no_prefix and not one
        colour = prefixed and _colour(sys.stdout)
        printer = Printer(_stdout(), raw=one, prefixed=prefixed, colour=colour)
        try:
            last = _print(events, printer)
        except KeyboardInterrupt:
            printer.finish()
            return EXIT_INTERRUPTED
        printer.finish()
    if last is None or not last.logs:
        common.error(f"no {args.kind} files found{_describe(tasks, files)} in job {args.job_id!r}")
        return EXIT_ERROR
    if args.follow and last.ended == "idle":
        info(f"no log grew for {args.idle_timeout:g} s (--idle-timeout): stopped following")
    return EXIT_OK


def _events(job: JobOutputStorage, args: argparse.Namespace, tasks: list[str], files: list[str]) -> Any:
    """The follow of the logs asked for: printing once reads them as they are (``idle_timeout=0``: a read,
    as patient with throttling as the library's requests); following ends as the library's does."""
    try:
        return job.follow_logs(
            tasks or None,
            kind=args.kind,
            paths=files or None,
            tail=args.tail,
            poll_interval=args.poll_interval,
            idle_timeout=args.idle_timeout if args.follow else 0,
        )
    except ValueError as err:  # a --file that is not an output's path
        raise UsageError(str(err)) from None


def _print(events: Iterable[Any], printer: Printer) -> LogsPolled | None:
    """Print a follow's events until it ends; its last poll."""
    reported: set[str] = set()
    last = None
    for event in events:
        if isinstance(event, LogData):
            printer.write((event.task_id, event.path), event.data)
        elif isinstance(event, LogRestarted):
            printer.end((event.task_id, event.path))
            common.warn(
                f"{event.task_id}/{event.path} was replaced ({event.reason}): printing it from its start"
            )
        elif isinstance(event, LogClosed):
            printer.end((event.task_id, event.path))
            if event.log.exit_code is not None and event.task_id not in reported:  # once per task
                reported.add(event.task_id)
                info(f"task {event.task_id} exited with {event.log.exit_code}")
        elif isinstance(event, LogsPolled):
            last = event
    return last


def _describe(tasks: list[str], files: list[str]) -> str:
    where = f" of task{'s' if len(tasks) > 1 else ''} {', '.join(tasks)}" if tasks else ""
    return (f" at {', '.join(files)}" if files else "") + where


def _name(key: Key) -> str:
    task, path = key
    return f"{task}/{path}"


# --- printing -----------------------------------------------------------------------------------------------


def complete_utf8(data: bytes) -> int:
    """The length of the longest prefix of ``data`` that does not end inside a UTF-8 character: the rest
    (at most 3 bytes) waits for the next chunk. Bytes that are not UTF-8 never wait."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its character complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4 if byte < 0xF8 else 1
            return len(data) - back if back < need else len(data)
    return len(data)


class Printer:
    """Writes the logs' bytes to ``out`` in one of three ways: ``raw`` (one log: its bytes, never ending a
    write inside a UTF-8 character); whole lines of each log as stored (several logs, no prefixes); or
    decoded lines, each prefixed with its log's name (``prefixed``). A partial line waits for its end."""

    def __init__(self, out: IO[bytes], *, raw: bool = False, prefixed: bool, colour: bool) -> None:
        self.out, self.raw, self.prefixed, self.colour = out, raw and not prefixed, prefixed, colour
        self._pending: dict[Key, bytes] = {}  # raw: an incomplete character; lines: a partial line
        self._decoders: dict[Key, Any] = {}
        self._partial: dict[Key, str] = {}  # prefixed: a line without its end yet
        self._order: dict[Key, int] = {}
        self._width = 0

    def write(self, key: Key, data: bytes) -> None:
        if not self.prefixed:
            data = self._pending.pop(key, b"") + data
            cut = complete_utf8(data) if self.raw else data.rfind(b"\n") + 1
            if cut < len(data):
                self._pending[key] = data[cut:]
            self._emit(data[:cut])
            return
        decoder = self._decoders.get(key)
        if decoder is None:
            decoder = self._decoders[key] = codecs.getincrementaldecoder("utf-8")(errors="replace")
            self._order[key] = len(self._order)
            self._width = max(self._width, len(_name(key)))
        text = self._partial.pop(key, "") + decoder.decode(data)
        lines = text.split("\n")
        if lines[-1]:
            self._partial[key] = lines[-1]
        self._emit(b"".join(self._line(key, line) for line in lines[:-1]))

    def end(self, key: Key) -> None:
        """The log ended or starts again: what waits of it is printed (a partial line gets its end)."""
        if not self.prefixed:
            rest = self._pending.pop(key, b"")
            self._emit(rest if self.raw or not rest else rest + b"\n")
            return
        decoder = self._decoders.pop(key, None)
        tail = self._partial.pop(key, "") + (decoder.decode(b"", final=True) if decoder else "")
        if tail:
            self._emit(self._line(key, tail))

    def finish(self) -> None:
        for key in list(self._pending) + list(self._decoders):
            self.end(key)

    def _line(self, key: Key, line: str) -> bytes:
        name = _name(key).ljust(self._width)
        if self.colour:
            name = f"\033[{COLOURS[self._order[key] % len(COLOURS)]}m{name}\033[0m"
        return f"{name} | {line}\n".encode("utf-8", "replace")

    def _emit(self, data: bytes) -> None:
        """Write all of ``data``: a pipe whose reader went away takes part of a write without an error,
        and the next write raises :class:`BrokenPipeError` (exit 141, whatever the mode)."""
        while data:
            data = data[self.out.write(data) :]
        self.out.flush()


def _stdout() -> IO[bytes]:
    return sys.stdout.buffer


def _colour(stream: Any) -> bool:
    """Colours on a terminal, unless ``NO_COLOR`` is set or the terminal is dumb."""
    isatty = getattr(stream, "isatty", None)
    dumb = os.environ.get("TERM") == "dumb"
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR") and not dumb
