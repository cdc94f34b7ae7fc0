"""``batchfiles track``: one growing file (a log) saved live until interrupted."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from . import common, connect
from .common import (
    EXIT_NOT_SAVED,
    EXIT_OK,
    TRANSFER_ERRORS,
    UsageError,
    human_size,
    info,
    kind_arg,
    seconds_arg,
)
from .signals import Interrupted, handled_signals

NAME = "track"
SUMMARY = "save a growing file (a log) live, until interrupted"
EPILOG = f"""\
Follows PATH like tail -F (through rotation and truncation; a file not yet there is waited for) and
appends what it gains to an append blob every --flush-interval seconds, until Ctrl-C or SIGTERM; then
saves the rest and exits. The kind is TaskLog unless --kind says otherwise. Exit code 75 if some of the
file could not be saved.

examples:
  batchfiles track progress.log &
  batchfiles track /var/log/solver.log --kind TaskLog --dest solver.log
  batchfiles track --job-output --kind Logs merge.log

{connect.SAS_MARGIN_HELP}
{connect.STORAGE_HELP}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="the file to follow")
    parser.add_argument("--kind", type=kind_arg, metavar="KIND", help="its kind (TaskLog)")
    parser.add_argument("--dest", metavar="NAME", help="its path in storage (PATH, or its name if absolute)")
    parser.add_argument(
        "--flush-interval", type=seconds_arg, default=5.0, metavar="S", help="seconds between saves (5)"
    )
    parser.add_argument(
        "--if-exists",
        choices=("resume", "overwrite", "fail"),
        default="resume",
        help="a blob already there: resume after what it holds of the file (default), overwrite, or fail",
    )
    connect.add_saving_options(parser, "save as the job's own output (needs --kind)")
    connect.add_sas_margin_option(parser)


def run(args: argparse.Namespace) -> int:
    job_side = common.job_side(args.kind, args.job_output)
    if job_side and args.kind is None:
        raise UsageError("--job-output needs --kind: a job has no default log kind")
    dest = args.dest
    if dest is None and os.path.isabs(args.path):
        dest = os.path.basename(args.path)
    storage = connect.saving_storage(args, job_side)
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():  # a second signal: stop waiting for the last flush
            raise Interrupted(signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, handle) for signum in handled_signals()}
    try:
        with storage:
            tracker = storage.save_tracked(
                args.path, dest, kind=args.kind, flush_interval=args.flush_interval, if_exists=args.if_exists
            )
            info(
                f"saving {args.path} live to {tracker.blob_name}; Ctrl-C or SIGTERM stops after a last flush"
            )
            while not stop.wait(0.5) and tracker.error is None:
                pass
            try:
                tracker.close()  # raises the error that stopped the save, if any
            except TRANSFER_ERRORS as err:
                common.error(f"{args.path} was not saved completely: {err}")
                return EXIT_NOT_SAVED
    except Interrupted as signal_name:
        common.error(
            f"interrupted by {signal_name} during the last flush: {args.path} may not be saved completely"
        )
        sys.stderr.flush()
        os._exit(EXIT_NOT_SAVED)  # the save's thread would otherwise flush at exit, for up to 30 s
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if tracker.lost_bytes:
        common.error(
            f"{tracker.lost_bytes} bytes of {args.path} were lost (the file was truncated or rotated "
            "before they could be read)"
        )
        return EXIT_NOT_SAVED
    info(f"saved {human_size(tracker.bytes_saved)} of {args.path} to {tracker.blob_name}")
    return EXIT_OK
