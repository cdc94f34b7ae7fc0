"""``batchfiles logs``: print the logs of a job's tasks, or follow them live (``-f``), like ``docker compose
logs``: one listing of the job per poll, ranged reads of what grew (see :mod:`batchfiles._follow`)."""

from __future__ import annotations

import argparse
import codecs
import math
import os
import sys
import time
from collections.abc import Callable, Hashable, Iterator
from typing import IO, Any

from .. import _follow, _throttle
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
    for path in files:
        problem = path_problem(path)
        if problem is not None:
            raise UsageError(f"--file {path!r} is not the path of an output: it {problem}")
    if args.idle_timeout is not None and not args.follow:
        raise UsageError("--idle-timeout is for following (-f)")
    with connect.job_storage(args, args.job_id, interactive=True) as job:
        selection = Selection(job.container_name, args.kind, tasks, files)
        one = len(tasks) == 1 and len(files) == 1
        prefixed = not args.no_prefix and not one
        colour = prefixed and _colour(sys.stdout)
        printer = Printer(_stdout(), raw=one, prefixed=prefixed, colour=colour)
        steps = _follow.follow_listing(
            selection.prefix,
            selection.key,
            tail=args.tail,
            poll_interval=args.poll_interval,
            clock=time.monotonic,
            where=f" in container {job.container_name!r}",
            # printing once is a read like `get`: it waits out throttling as long as the library's requests
            throttled_patience=None if args.follow else _throttle.THROTTLED_RETRIES,
        )
        watch = Watch(selection, args.follow, args.idle_timeout)
        try:
            _print(job._drive(steps), printer, watch)
        except KeyboardInterrupt:
            printer.finish()
            return EXIT_INTERRUPTED
        printer.finish()
    if not watch.seen:
        common.error(f"no {args.kind} files found{selection.describe()} in job {args.job_id!r}")
        return EXIT_ERROR
    if watch.idle:
        info(f"no log grew for {args.idle_timeout:g} s (--idle-timeout): stopped following")
    return EXIT_OK


def _print(events: Iterator[Any], printer: Printer, watch: Watch) -> None:
    """Print a follow's events until ``watch`` says it is over."""
    reported: set[str] = set()
    for event in events:
        if isinstance(event, _follow.Data):
            printer.write(event.key, event.data)
            watch.grew()
        elif isinstance(event, _follow.Restarted):
            printer.end(event.key)
            common.warn(f"{_name(event.key)} was replaced ({event.why}): printing it from its start")
        elif isinstance(event, _follow.Closed):
            printer.end(event.key)
            _report_outcome(event, reported)
        elif isinstance(event, _follow.Polled) and watch.over(event.outputs):
            return


class Watch:
    """When printing is over: after one poll; following named tasks, once their logs are closed;
    following a whole job, never; following either way, once no log grew for ``idle_timeout`` seconds."""

    def __init__(
        self,
        selection: Selection,
        follow: bool,
        idle_timeout: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.selection, self.follow, self.idle_timeout, self.clock = selection, follow, idle_timeout, clock
        self.grew_at = clock()
        self.seen = False  # a log was found
        self.idle = False  # it ended by the idle timeout

    def grew(self) -> None:
        self.grew_at = self.clock()

    def over(self, outputs: dict[Hashable, bool]) -> bool:
        """Whether printing is over, after a poll that found ``outputs`` (key: closed and read to its end)."""
        self.seen = bool(outputs)
        if not self.follow or self.selection.finished(outputs):
            return True
        if self.idle_timeout is not None and self.clock() - self.grew_at >= self.idle_timeout:
            self.idle = True
        return self.idle


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
        """Whether following is over: tasks were named, each (and each file named) was seen, and every log
        seen is closed. A whole job is never over: its tasks may start at any time."""
        if not self._tasks or not outputs or not all(outputs.values()):
            return False
        seen = set(outputs)
        seen_tasks = {task for task, _ in seen}  # type: ignore[misc]
        if not self._tasks <= seen_tasks:
            return False
        return all((task, path) in seen for task in self._tasks for path in self._files)

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
