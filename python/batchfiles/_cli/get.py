"""``batchfiles get``: download a job's outputs, MD5-checked, each to a local file of its own."""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from stat import S_ISREG

from .. import Progress as ProgressCallback
from .. import naming
from ..snapshot import OutputSnapshot
from ..storage import JobOutputStorage
from . import common, connect, selection
from .common import EXIT_ERROR, EXIT_OK, TRANSFER_ERRORS, UsageError, human_size, info, seconds_arg
from .progress import Progress

NAME = "get"
SUMMARY = "download a job's outputs, MD5-checked"
EPILOG = f"""\
Downloads every output of the selection (or those at PATH) under DIR as DIR/{{task}}/{{Kind}}/{{path}},
and the job's own outputs as DIR/{{Kind}}/{{path}}: the folder is the kind without its $ (t1/TaskOutput,
not t1/$TaskOutput, which shells would expand). Each file is checked against the MD5 stored with it;
a mismatch leaves no file. Existing files are replaced. Prints each file's local path. A live log that
rolled over into parts (stdout.txt, stdout.txt.1, ...) is downloaded whole, as one file.

The job is read from one listing of its container (5,000 blobs a request; with --task, of that task's
folder), and downloads start as soon as the listing has passed a task. A blob that is not an output (a
path with '.', '..' or empty segments, which batchfiles never saves, or a blob outside the conventions)
or that would share its local file with another is skipped with an error line; the rest is downloaded,
and the exit code is 1.

--skip-existing leaves a local file as it is when it already holds the output: its MD5 equals the blob's
Content-MD5. An output without one (a live log: append blobs have no Content-MD5, nor has a log in parts
as a whole) is left when the local file has its size and, as get sets it, its time of last change. Any
other local file is replaced.

--follow downloads outputs as they appear or change, one listing per --poll-interval, until Ctrl-C (exit
130) or --idle-timeout S (exit 0 once nothing new was listed for S seconds).

When storage throttles the account, it says so once on stderr and waits, trying again for some minutes
before it gives up.

examples:
  batchfiles get render-42 -o results                       # everything
  batchfiles get render-42 -o results --skip-existing       # again: only what is new or changed
  batchfiles get render-42 -o results --follow --idle-timeout 600   # while the job runs
  batchfiles get render-42 --task frame-7 --kind TaskOutput frames/0007.png
  batchfiles get render-42 --kind TaskLog stderr.txt -o logs  # every task's stderr.txt

{connect.STORAGE_HELP}"""

#: Parallel downloads.
TRANSFER_CONCURRENCY = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    selection.add_arguments(parser)
    parser.add_argument(
        "path", nargs="?", metavar="PATH", help="only the outputs at this path (under their kind)"
    )
    parser.add_argument("-o", "--output-dir", default=".", metavar="DIR", help="where to put them (.)")
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave a local file that already holds the output (same MD5) as it is",
    )
    parser.add_argument(
        "-f", "--follow", action="store_true", help="download outputs as they appear, until Ctrl-C"
    )
    parser.add_argument(
        "--poll-interval", type=seconds_arg, default=2.0, metavar="S", help="with --follow: seconds (2)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=seconds_arg,
        metavar="S",
        help="with --follow: stop once nothing new was listed for S seconds",
    )
    connect.add_storage_options(parser)


def run(args: argparse.Namespace) -> int:
    """Download the selection; a blob that is not an output, or has no target of its own, is skipped and
    reported, everything else is downloaded, and the exit code is then 1."""
    if (args.idle_timeout is not None or args.poll_interval != 2.0) and not args.follow:
        raise UsageError("--poll-interval and --idle-timeout are for following (--follow)")
    if args.path is not None and naming.destination_path(args.path) != args.path:
        raise ValueError(f"path {args.path!r} has a '.' or '..' segment: give the file path `list` shows")
    with connect.job_storage(args, args.job_id, interactive=True, patient=True) as job:
        getter = Getter(job, Path(args.output_dir), skip_existing=args.skip_existing, following=args.follow)
        if args.follow:
            return _follow(args, getter)
        with getter:
            getter.poll(args)
        return getter.report(args)


def _follow(args: argparse.Namespace, getter: Getter) -> int:
    """Poll until Ctrl-C (raised to main: exit 130) or ``--idle-timeout`` seconds without anything new."""
    info("following the job's outputs (Ctrl-C to stop)")
    last_new = time.monotonic()
    with getter:
        while True:
            if getter.poll(args):
                last_new = time.monotonic()
            elif args.idle_timeout is not None and time.monotonic() - last_new >= args.idle_timeout:
                info(f"nothing new for {args.idle_timeout:g} s (--idle-timeout): stopped following")
                break
            time.sleep(args.poll_interval)
    return getter.report(args, following=True)


def local_target(out_dir: Path, task: str | None, output: OutputSnapshot) -> Path:
    """``DIR/{task}/{Kind}/{path}`` or ``DIR/{Kind}/{path}`` (no ``$``: it would need quoting in shells).

    Outputs are only made of file paths in normal form; as a second guard, the path goes through the
    conventions' own normalisation and the target must resolve inside DIR (ValueError saying why not).
    """
    try:
        relative = naming.destination_path(output.file_path)
    except ValueError as err:
        raise ValueError(f"refusing its file path: {err}") from None
    parts = ([task] if task is not None else []) + [str(output.kind), *relative.split("/")]
    target = out_dir.joinpath(*parts)
    if not target.resolve().is_relative_to(out_dir.resolve()):
        raise ValueError(f"refusing to save it outside {str(out_dir)!r}")
    return target


def holds(target: Path, output: OutputSnapshot) -> bool:
    """Whether the local file ``target`` already holds ``output``: its MD5 is the blob's Content-MD5; for
    an output without one, its size is the output's and its time of last change the output's (as
    :func:`_stamp` sets it after a download). Only a regular file can (a FIFO is never opened: that would
    wait for a writer); one that cannot be read does not."""
    try:
        stat = target.stat()
    except OSError:
        return False
    if not S_ISREG(stat.st_mode) or stat.st_size != output.size:
        return False
    if output.content_md5 is not None:
        md5 = hashlib.md5()
        try:
            with target.open("rb") as file:
                while chunk := file.read(1024 * 1024):
                    md5.update(chunk)
        except OSError:
            return False
        return md5.digest() == output.content_md5
    return output.last_modified is not None and stat.st_mtime_ns == _ns(output.last_modified)


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def _stamp(target: Path, output: OutputSnapshot) -> None:
    """Give a downloaded output without a Content-MD5 its time of last change, so that ``--skip-existing``
    knows the file later."""
    if output.content_md5 is None and output.last_modified is not None:
        ns = _ns(output.last_modified)
        os.utime(target, ns=(ns, ns))


def _version(output: OutputSnapshot) -> tuple[int, datetime | None, bytes | None]:
    """What tells a listed output from an older listing of it (``--follow``)."""
    return output.size, output.last_modified, output.content_md5


@dataclass
class Getter:
    """Downloads outputs from a pool as the listing hands them out: each local target is taken once, an
    output whose target another output has too is skipped (both are), and with ``skip_existing`` a local
    file that already holds its output is left as it is. ``following``: a skipped blob is said at once
    (a follow ends with Ctrl-C, before any summary), else in :meth:`report`."""

    job: JobOutputStorage
    out_dir: Path
    skip_existing: bool = False
    following: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # blob name: why
    downloaded: int = 0
    up_to_date: int = 0
    failures: int = 0
    listed: int = 0
    _targets: dict[Path, str] = field(default_factory=dict)  # local file: blob name (of this poll)
    _versions: dict[str, tuple[int, datetime | None, bytes | None]] = field(default_factory=dict)
    # the job's own outputs wait for the end of the listing: one may have the local file of a task's output
    _waiting: dict[Path, OutputSnapshot] = field(default_factory=dict)
    _running: list[tuple[OutputSnapshot, Future[Path]]] = field(default_factory=list)
    _pool: ThreadPoolExecutor | None = None
    _bar: Progress | None = None
    _bytes: int = 0

    def __enter__(self) -> Getter:
        self._pool = ThreadPoolExecutor(TRANSFER_CONCURRENCY)
        self._bar = Progress(0, "downloading")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._pool is not None and self._bar is not None
        self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)
        self._bar.__exit__(*exc)

    def skip(self, blob_name: str, reason: str) -> None:
        if blob_name in self.skipped:
            return
        self.skipped[blob_name] = reason
        if self.following:
            if self._bar is not None:
                self._bar.close()
            common.error(f"skipped blob {blob_name!r}: {reason}")

    def poll(self, args: argparse.Namespace) -> bool:
        """One listing of the selection, each output downloaded as soon as it is listed (the job's own at
        the end); waits for the downloads. True if any output was new or changed since the last poll."""
        self._targets.clear()
        changed = False
        for task, output in selection.outputs(self.job, args.task, args.kind, self.skip):
            if args.path is not None and output.file_path != args.path:
                continue
            self.listed += 1
            new = self._versions.get(output.blob_name) != _version(output)
            self._versions[output.blob_name] = _version(output)
            changed |= new
            self._add(task, output, download=new)
        for target, waiting in self._waiting.items():
            self._start(target, waiting)
        self._waiting.clear()
        self._collect(block=True)
        return changed

    def _add(self, task: str | None, output: OutputSnapshot, *, download: bool = True) -> None:
        """Take the output's local file (one unchanged since the last poll too: it still has it), then
        download it if ``download``."""
        try:
            target = local_target(self.out_dir, task, output)
        except ValueError as err:
            self.skip(output.blob_name, str(err))
            return
        other = self._targets.setdefault(target, output.blob_name)
        if other != output.blob_name:  # a job's output and a task's: neither has the file to itself
            self._waiting.pop(target, None)
            for blob, partner in ((output.blob_name, other), (other, output.blob_name)):
                self.skip(blob, f"it and {partner!r} would all be saved as {str(target)!r}")
            return
        if not download:
            return
        if task is None:
            self._waiting[target] = output
        else:
            self._start(target, output)

    def _start(self, target: Path, output: OutputSnapshot) -> None:
        assert self._pool is not None and self._bar is not None
        if self.skip_existing and holds(target, output):
            self.up_to_date += 1
            return
        started = self.downloaded + self.failures + len(self._running) + 1
        self._bar.grow(output.size, f"downloading {started} file{'s' if started != 1 else ''}")
        callback = self._bar.callback(target)
        self._running.append((output, self._pool.submit(self._download, output, target, callback)))
        self._collect(block=False)

    def _download(self, output: OutputSnapshot, target: Path, callback: ProgressCallback) -> Path:
        path = self.job.download(output, target, progress=callback)
        _stamp(path, output)
        return path

    def _collect(self, *, block: bool) -> None:
        """Print the paths of finished downloads, in the order they were started; report failures."""
        assert self._bar is not None
        while self._running and (block or self._running[0][1].done()):
            output, job = self._running.pop(0)
            try:
                print(job.result(), flush=True)
                self.downloaded += 1
                self._bytes += output.size
            except TRANSFER_ERRORS as err:
                self._bar.close()
                common.error(f"{output.blob_name}: {err}")
                self.failures += 1

    def report(self, args: argparse.Namespace, *, following: bool = False) -> int:
        """The skipped blobs and the summary; the exit code."""
        for blob_name, reason in sorted(self.skipped.items()) if not self.following else ():
            common.error(f"skipped blob {blob_name!r}: {reason}")
        if not self.listed and not following:
            what = f"no output {args.path!r}" if args.path is not None else "no outputs"
            where = f" of task {args.task!r}" if args.task else ""
            kind = f" of kind {args.kind!r}" if args.kind else ""
            common.error(f"{what}{kind} found in job {args.job_id!r}{where}")
            return EXIT_ERROR
        label = f"{self.downloaded} file{'s' if self.downloaded != 1 else ''}"
        kept = f"; {self.up_to_date} already there" if self.up_to_date else ""
        if self.failures:
            common.error(f"{self.failures} of {self.failures + self.downloaded} downloads failed")
        else:
            size = human_size(self._bytes)
            info(f"downloaded {label} ({size}), each checked against its Content-MD5{kept}")
        if self.skipped:
            count = len(self.skipped)
            common.error(f"{count} blob{'s' if count != 1 else ''} skipped (see above)")
        return EXIT_ERROR if self.failures or self.skipped else EXIT_OK
