"""``batchfiles run``: a command with its logs saved live and its outputs saved when it exits, by
condition."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from typing import IO, Any

from .. import files as local_files
from .. import naming
from ..errors import BatchFilesError, ContainerNotFoundError, first_line

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]
from ..snapshot import outcome_metadata
from ..storage import TaskOutputStorage
from . import common, connect
from .common import (
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    EXIT_NOT_SAVED,
    TRANSFER_ERRORS,
    OutputSpec,
    UsageError,
    human_size,
    info,
    output_spec_arg,
    seconds_arg,
)
from .signals import Forwarding, Interrupted

NAME = "run"
SUMMARY = "run a command, saving its logs live and its outputs when it exits"
EPILOG = f"""\
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
run's own stdout.txt and stderr.txt are never outputs: a pattern matching them ('*.txt=TaskLog') leaves
them out, saying so once on stderr; they are saved live and closed with the exit code, which a copy
saved over them would wipe.
Patterns may not climb out (../*.txt); links leading out are skipped. All patterns are expanded and all
names checked before the first upload: a pattern climbing out, or two files that would be one blob
(a/b.txt and a file named a\\b.txt) are errors, not saved (exit 75); the rest is saved.

Signals: SIGTERM, SIGINT (Ctrl-C) and SIGHUP are forwarded to CMD's process group; CMD runs in a session
of its own, so it gets a terminal's Ctrl-C once, through batchfiles. Once CMD is over, the logs and
outputs are saved even if it was stopped by a signal. If batchfiles itself is killed with SIGKILL, CMD
is not signalled. Output that background processes left behind by CMD write more than 2 s after CMD
exits is not captured.

When CMD is over, the logs are closed and marked with its exit code and when it started and ended
(metadata shown by `batchfiles list`; `batchfiles logs -f` stops once they are closed).

Exit code: CMD's (128 + N if signal N killed it), or 75 if a log or an output could not be saved
(CMD's code is then printed on stderr): never 0 after lost data. A log that cannot be saved live (a blob
in its way that the SAS may not replace) does not stop CMD: it runs, that log is saved whole when it ends
(without the outcome), and the exit code is 75. 127/126: CMD not found / not runnable.

Programs that buffer their output when it is not a terminal (C stdio, Python) show it in bursts: make
them flush (python -u or PYTHONUNBUFFERED=1, stdbuf -oL CMD).

examples:
  batchfiles run -- python -u render.py --frames 1-50
  batchfiles run --output 'frames/*.png' --output 'thumbs/**/*.jpg=TaskPreview' -- ./render.sh
  batchfiles run --output 'core.*=TaskLog@failure' --output 'result.bin@success' -- ./solve input.dat
  batchfiles run --flush-interval 1 --task local-test -- sh -c 'echo hello; sleep 5; echo bye'

{connect.SAS_MARGIN_HELP}
{connect.STORAGE_HELP}"""

#: The log files ``run`` writes in the working directory and saves live as TaskLog.
LOGS = ("stdout.txt", "stderr.txt")
#: After the command exits, how long its output pipes are still read (a background process it left
#: behind may hold them open).
DRAIN_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "batchfiles run [--output PATTERN[=KIND][@CONDITION]]... [options] -- CMD [ARGS...]"
    parser.add_argument(
        "--output",
        dest="outputs",
        action="append",
        type=output_spec_arg,
        metavar="PATTERN[=KIND][@CONDITION]",
        help="files to save when CMD exits (repeatable); CONDITION: success, failure, completion (default)",
    )
    parser.add_argument(
        "--flush-interval", type=seconds_arg, default=5.0, metavar="S", help="seconds between log saves (5)"
    )
    connect.add_sas_margin_option(parser)
    connect.add_id_options(parser)
    connect.add_storage_options(parser)
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]", help="the command to run"
    )


# --- the tee ------------------------------------------------------------------------------------------------


class _Tee(threading.Thread):
    """Copies one of the command's pipes to our console stream and to a log file, chunk by chunk.

    The log file is unbuffered, so the tracked save sees every chunk at once. A console that goes away
    (a closed pipe) is dropped and the log goes on; a log file that fails (disk full) is an error.
    """

    def __init__(self, pipe: IO[bytes], console: IO[bytes] | None, log: IO[bytes]) -> None:
        super().__init__(name=f"batchfiles-tee-{log.name}", daemon=True)
        self._pipe, self._console, self._log = pipe, console, log
        self.log_name = log.name
        self._lock = threading.Lock()
        self._detached = False
        self.error: OSError | None = None

    def run(self) -> None:
        fd = self._pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 64 * 1024)
            except OSError:
                chunk = b""
            if not chunk:
                return
            with self._lock:
                if self._detached:
                    return
                self._write(chunk)

    def _write(self, chunk: bytes) -> None:
        if self._console is not None:
            try:
                self._console.write(chunk)
                self._console.flush()
            except (OSError, ValueError):
                self._console = None
        if self.error is None:
            try:
                view = memoryview(chunk)
                while view:
                    view = view[self._log.write(view) :]
            except OSError as err:
                self.error = err

    def detach(self) -> None:
        """Stop writing (the thread may still be blocked reading a pipe a background process holds)."""
        with self._lock:
            self._detached = True


# --- run ----------------------------------------------------------------------------------------------------


def exit_status(returncode: int) -> int:
    """A shell's view of an exit: the code, or 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("no command to run: give it after --, e.g. `batchfiles run -- python render.py`")
    with connect.task_storage(args) as storage:
        return _Run(storage, command, args.outputs or [], args.flush_interval).execute()


class _Run:
    def __init__(
        self, storage: TaskOutputStorage, command: list[str], specs: list[OutputSpec], interval: float
    ):
        self.storage, self.command, self.specs, self.interval = storage, command, specs, interval
        self.problems: list[str] = []
        self.not_live: dict[str, str] = {}  # log file -> why it could not be saved live
        self.log_identities: set[tuple[int, int]] = set()  # (device, inode) of the log files

    def execute(self) -> int:
        files = _open_logs()
        for file in files:
            stat = os.fstat(file.fileno())
            self.log_identities.add((stat.st_dev, stat.st_ino))
        try:
            trackers = self._track(files)
        except BaseException:
            for file in files:
                file.close()
            raise
        with Forwarding() as signals:
            started = datetime.now(timezone.utc)
            status = self._run_command(files, signals)
            outcome = outcome_metadata(status, started, datetime.now(timezone.utc))
            try:
                signals.command_done = True
                self._close_logs(files, trackers, outcome)
                saved = self._save_outputs(status)
            except Interrupted as signal_name:
                return self._abandon(f"interrupted by {signal_name} while saving", status)
            except KeyboardInterrupt:
                return self._abandon("interrupted while saving", status)
        return self._report(status, trackers, saved)

    def _track(self, files: list[IO[bytes]]) -> list[Any]:
        """Start the live saves of the logs, one per file (None where it could not start). A job without
        a container stops us here, before the command runs. A log that cannot be saved live (a blob in its
        way that this SAS may not replace, say) does not: the command runs all the same, and that log is
        saved whole once it ends (see :meth:`_close_logs`)."""
        trackers: list[Any] = []
        options = dict(kind="TaskLog", flush_interval=self.interval, if_exists="overwrite", settle=0.0)
        try:
            for file in files:
                try:
                    trackers.append(self.storage.save_tracked(file.name, **options))
                except ContainerNotFoundError:
                    raise
                except TRANSFER_ERRORS as err:
                    trackers.append(None)
                    self.not_live[file.name] = first_line(err)
        except BaseException:
            for tracker in trackers:
                with contextlib.suppress(Exception):
                    tracker.close()
            raise
        return trackers

    def _run_command(self, files: list[IO[bytes]], signals: Forwarding) -> int:
        """Run the command, teeing its output; its exit status (127/126 if it could not be started)."""
        try:
            proc = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
        except OSError as err:
            status = EXIT_NOT_FOUND if isinstance(err, FileNotFoundError) else EXIT_CANNOT_EXECUTE
            message = f"{common.PROG}: error: cannot run {self.command[0]!r}: {err.strerror or err}\n"
            files[1].write(message.encode())
            sys.stderr.write(message)
            sys.stderr.flush()
            return status
        signals.started(proc)
        assert proc.stdout is not None and proc.stderr is not None
        consoles = [_binary(sys.stdout), _binary(sys.stderr)]
        tees = [
            _Tee(pipe, console, file)
            for pipe, console, file in zip((proc.stdout, proc.stderr), consoles, files, strict=True)
        ]
        for tee in tees:
            tee.start()
        returncode = proc.wait()
        deadline = time.monotonic() + DRAIN_SECONDS
        for tee, pipe in zip(tees, (proc.stdout, proc.stderr), strict=True):
            tee.join(max(0.0, deadline - time.monotonic()))
            tee.detach()
            if not tee.is_alive():  # never close a pipe a thread still reads: its fd could be reused
                pipe.close()
            if tee.error is not None:
                self.problems.append(f"could not write {tee.log_name}: {tee.error}")
        return exit_status(returncode)

    def _close_logs(self, files: list[IO[bytes]], trackers: list[Any], outcome: dict[str, str]) -> None:
        """Close the live saves, marking the logs with the command's ``outcome`` (exit code, start and end),
        then the files (their locks keep another ``run`` out until then). A log that was not saved live is
        saved whole now (a block blob over a block blob needs no delete right), and is still a problem."""
        try:
            for file, tracker in zip(files, trackers, strict=True):
                if tracker is None:
                    self._save_whole(file.name)
                    continue
                try:
                    tracker.close(metadata=outcome)
                except TRANSFER_ERRORS as err:
                    self.problems.append(f"live log {tracker.blob_name!r} is incomplete: {err}")
                    continue
                if tracker.lost_bytes:
                    self.problems.append(f"live log {tracker.blob_name!r} lost {tracker.lost_bytes} bytes")
        finally:
            for file in files:
                file.close()

    def _save_whole(self, log: str) -> None:
        blob = naming.blob_name("TaskLog", log, self.storage.task_id)
        why = self.not_live[log]
        try:
            self.storage.save("TaskLog", log)
        except TRANSFER_ERRORS as err:
            where = os.path.abspath(log)
            self.problems.append(f"log {blob!r} not saved ({why}; {first_line(err)}); it is kept in {where}")
            return
        self.problems.append(f"log {blob!r} not saved live ({why}): saved when the command ended")

    def _save_outputs(self, status: int) -> tuple[int, int]:
        """Save the outputs whose condition holds; (files, bytes) saved.

        Every applicable pattern is expanded and every blob name derived before anything is uploaded. A
        pattern that cannot be used (it climbs above the working directory), a file that cannot be named,
        and files that would share a blob (across patterns of one kind) are problems, named; none of those
        files is saved, the rest is. A file matched by several patterns of one kind is saved once.

        Run's own stdout.txt and stderr.txt (at their path, or a link to them) are never outputs: they are
        saved live and closed with the exit code, and a copy saved as TaskLog would replace the live log (a
        block blob over it: its exit code and close mark gone). Matching them is said once, on stderr.
        """
        planned: list[tuple[OutputSpec, list[tuple[str, str]]]] = []
        warned: set[object] = set()  # a link skipped is warned of once
        left_out = False  # run's own logs left out of the patterns: said once
        for spec in self.specs:
            if not spec.applies(status):
                continue
            try:
                files = local_files.expand(spec.pattern, ".", warned=warned)
            except TRANSFER_ERRORS as err:
                self.problems.append(f"--output {str(spec)!r} not saved: {err}")
                continue
            if not files:
                common.warn(f"--output {str(spec)!r}: no file matches {spec.pattern!r}")
            kept = [(path, rel) for path, rel in files if not self._is_own_log(path, rel, str(spec.kind))]
            if len(kept) < len(files) and not left_out:
                left_out = True
                common.info(
                    f"--output leaves out {' and '.join(LOGS)} (and, as TaskLog, files named as their "
                    f"roll-over parts, {LOGS[0]}.1, ...): they are this run's own logs, saved live with the "
                    f"exit code as TaskLog ({naming.blob_prefix('TaskLog', self.storage.task_id)}/)"
                )
            planned.append((spec, kept))
        saving: list[list[tuple[str, str]]] = [[] for _ in planned]  # what each spec saves
        for kind in dict.fromkeys(spec.kind for spec, _ in planned):
            entries = [
                (n, file) for n, (spec, files) in enumerate(planned) if spec.kind == kind for file in files
            ]
            kept, problems = local_files.name_files(
                [file for _, file in entries],
                lambda path, kind=kind: naming.blob_name(kind, path, self.storage.task_id),
            )
            self.problems.extend(f"--output ({kind}): {problem}: not saved" for problem in problems)
            for i in kept:
                saving[entries[i][0]].append(entries[i][1])
        count = size = 0
        for (spec, _), files in zip(planned, saving, strict=True):
            if not files:
                continue
            try:
                refs = self.storage.save_files(spec.kind, files)
            except TRANSFER_ERRORS as err:
                self.problems.append(f"--output {str(spec)!r} not saved: {err}")
                continue
            count += len(refs)
            size += sum(ref.size for ref in refs)
        return count, size

    def _is_own_log(self, path: str, rel: str, kind: str) -> bool:
        """Is the file ``path`` (``rel`` to the working directory) one of run's own logs: at their path
        (whatever the command made of it), or another name of the same file? Saved as TaskLog, a file
        named as one of their roll-over parts (``stdout.txt.1``) would replace that part: left out too."""
        if rel in LOGS or getattr(path, "identity", None) in self.log_identities:
            return True
        return kind == "TaskLog" and _LOG_PART.fullmatch(rel) is not None

    def _abandon(self, why: str, status: int) -> int:
        common.error(f"{why}: logs or outputs may be incomplete (the command exited with {status})")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_NOT_SAVED)  # saves still running in other threads are abandoned, not awaited

    def _report(self, status: int, trackers: list[Any], saved: tuple[int, int]) -> int:
        for problem in self.problems:
            common.error(problem)
        if self.problems:
            common.error(
                f"not everything was saved; exiting with {EXIT_NOT_SAVED} (the command exited with {status})"
            )
            return EXIT_NOT_SAVED
        logs = ", ".join(f"{t.blob_name} ({human_size(t.bytes_saved)})" for t in trackers if t)
        outputs = f"{saved[0]} output{'s' if saved[0] != 1 else ''} ({human_size(saved[1])})"
        info(f"the command exited with {status}; saved {logs} and {outputs}")
        return status


#: The blob names of the roll-over parts of run's logs, under TaskLog.
_LOG_PART = re.compile("|".join(rf"{re.escape(log)}\.[1-9][0-9]*" for log in LOGS))


def _open_logs() -> list[IO[bytes]]:
    """The log files, emptied, once this process holds an exclusive lock on each (where ``fcntl``
    exists): a second ``run`` in the same directory is refused before it truncates or saves anything."""
    files: list[IO[bytes]] = []
    try:
        for name in LOGS:
            files.append(open(name, "ab", buffering=0))  # noqa: SIM115 - not truncated before the lock
            if fcntl is not None:
                _lock(files[-1], name)
        for file in files:
            file.truncate(0)
    except BaseException:
        for file in files:
            file.close()
        raise
    return files


def _lock(file: IO[bytes], name: str) -> None:
    """An exclusive lock on ``file`` until it is closed (not inherited by the command); a file system
    without locks is used unlocked."""
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BatchFilesError(
            f"another `batchfiles run` is writing {name} in {os.getcwd()}: run each task in its own "
            "working directory"
        ) from None
    except OSError:  # ENOLCK, EOPNOTSUPP: no locks here
        pass


def _binary(stream: Any) -> IO[bytes] | None:
    return getattr(stream, "buffer", None) if stream is not None else None
