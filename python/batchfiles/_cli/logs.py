"""``batchfiles logs``: print the logs of a job's tasks, or follow them live (``-f``), like ``docker compose
logs``: one listing of the job per poll, ranged reads of what grew (see :mod:`batchfiles._follow`)."""

from __future__ import annotations

import argparse
import codecs
import os
import sys
import time
from collections.abc import Hashable
from typing import IO, Any

from .. import _follow
from .._scope import NotAnOutput, Scope, path_problem
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
run` saves them live, every --flush-interval seconds), picks up tasks that start later, and exits 0 once
every log it follows is closed: `batchfiles run` closes its logs when the command is over. With tasks
named, it waits for the ones not started yet; with none named, it ends once every log it has seen is
closed. Ctrl-C exits 130.
Each poll is one listing of the job's blobs (sizes and ETags), then a ranged read of each log that grew,
so following 200 running tasks costs one listing per --poll-interval, not 200 requests.

A log replaced while it is followed (a task run again) is announced on stderr and printed again from its
start. When `batchfiles run` closed a log, its exit code is reported on stderr (`batchfiles list` shows it
too).

examples:
  batchfiles logs render-42 frame-7                  # both logs of one task, prefixed
  batchfiles logs render-42 frame-7 --file stdout.txt -f        # raw stdout, live, until the task ends
  batchfiles logs render-42 -f --tail 10             # every task, the last 10 lines of each, then live
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
    connect.add_storage_options(parser)


def lines_arg(text: str) -> int:
    if not (text.isascii() and text.isdigit()):  # "²".isdigit(), and int("²") fails
        raise argparse.ArgumentTypeError(f"not a number of lines: {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    if builtin_side(args.kind) == "job":
        raise UsageError(f"{args.kind!r} is a job output kind; logs shows a task kind (see `batchfiles get`)")
    tasks = list(dict.fromkeys(args.tasks))
    files = list(dict.fromkeys(args.files or []))
    for path in files:
        problem = path_problem(path)
        if problem is not None:
            raise UsageError(f"--file {path!r} is not the path of an output: it {problem}")
    with connect.job_storage(args, "logs", args.job_id, interactive=True) as job:
        selection = Selection(job.container_name, args.kind, tasks, files)
        one = len(tasks) == 1 and len(files) == 1
        prefixed = not args.no_prefix and not one
        colour = prefixed and _colour(sys.stdout)
        printer = Printer(_stdout(), raw=one, prefixed=prefixed, colour=colour)
        where = f" in container {job.container_name!r}"
        steps = _follow.follow_listing(
            selection.prefix,
            selection.key,
            tail=args.tail,
            poll_interval=args.poll_interval,
            clock=time.monotonic,
            where=where,
        )
        reported: set[str] = set()
        seen = False
        try:
            for event in job._drive(steps):
                if isinstance(event, _follow.Data):
                    printer.write(event.key, event.data)
                elif isinstance(event, _follow.Restarted):
                    printer.end(event.key)
                    common.warn(f"{_name(event.key)} was replaced ({event.why}): printing it from its start")
                elif isinstance(event, _follow.Closed):
                    printer.end(event.key)
                    _report_outcome(event, reported)
                elif isinstance(event, _follow.Polled):
                    seen = bool(event.outputs)
                    if not args.follow or selection.finished(event.outputs):
                        break
        except KeyboardInterrupt:
            printer.finish()
            return EXIT_INTERRUPTED
        printer.finish()
    if not seen:
        common.error(f"no {args.kind} files found{selection.describe()} in job {args.job_id!r}")
        return EXIT_ERROR
    return EXIT_OK


class Selection:
    """Which blobs are followed: the kind's files of the tasks named (or of every task), at the paths named
    (or all); keys are (task id, path)."""

    def __init__(self, container: str, kind: str, tasks: list[str], files: list[str]) -> None:
        self.container, self.kind, self.tasks, self.files = container, kind, tasks, files
        self._tasks = set(tasks)
        self._files = set(files)
        # one task: only its blobs are listed; otherwise the whole container, in one listing
        self.prefix = f"{tasks[0]}/${kind}/" if len(tasks) == 1 else ""

    def key(self, blob_name: str) -> Hashable | None:
        task, slash, _ = blob_name.partition("/")
        if not slash or (self._tasks and task not in self._tasks):
            return None
        try:
            kind, path = Scope(self.container, task).parse(blob_name)
        except (NotAnOutput, ValueError):
            return None
        if str(kind) != self.kind or (self._files and path not in self._files):
            return None
        return (task, path)

    def finished(self, outputs: dict[Hashable, bool]) -> bool:
        """Whether following is over: every log seen is closed, and every task (and file) named was seen."""
        if not outputs or not all(outputs.values()):
            return False
        seen = set(outputs)
        seen_tasks = {task for task, _ in seen}  # type: ignore[misc]
        if not self._tasks <= seen_tasks:
            return False
        return not self._tasks or all((task, path) in seen for task in self._tasks for path in self._files)

    def describe(self) -> str:
        tasks = f" of task{'s' if len(self.tasks) > 1 else ''} {', '.join(self.tasks)}" if self.tasks else ""
        files = f" at {', '.join(self.files)}" if self.files else ""
        return f"{files}{tasks}"


def _name(key: Hashable) -> str:
    task, path = key  # type: ignore[misc]
    return f"{task}/{path}"


def _report_outcome(event: _follow.Closed, reported: set[str]) -> None:
    """``task T exited with N`` on stderr, once per task, when ``run`` left its outcome on a log."""
    task = event.key[0]  # type: ignore[index]
    state = _follow.log_state(event.metadata)
    if state.exit_code is not None and task not in reported:
        reported.add(task)
        info(f"task {task} exited with {state.exit_code}")


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
        self._pending: dict[Hashable, bytes] = {}  # raw: an incomplete character; lines: a partial line
        self._decoders: dict[Hashable, Any] = {}
        self._partial: dict[Hashable, str] = {}  # prefixed: a line without its end yet
        self._order: dict[Hashable, int] = {}
        self._width = 0

    def write(self, key: Hashable, data: bytes) -> None:
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

    def end(self, key: Hashable) -> None:
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

    def _line(self, key: Hashable, line: str) -> bytes:
        name = _name(key).ljust(self._width)
        if self.colour:
            name = f"\033[{COLOURS[self._order[key] % len(COLOURS)]}m{name}\033[0m"
        return f"{name} | {line}\n".encode("utf-8", "replace")

    def _emit(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.out.flush()


def _stdout() -> IO[bytes]:
    return sys.stdout.buffer


def _colour(stream: Any) -> bool:
    """Colours on a terminal, unless ``NO_COLOR`` is set or the terminal is dumb."""
    isatty = getattr(stream, "isatty", None)
    dumb = os.environ.get("TERM") == "dumb"
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR") and not dumb
