"""``batchfiles list``: a job's outputs, as a table or JSON lines (``list_``: not the builtin)."""

from __future__ import annotations

import argparse
import base64
import json

from ..snapshot import OutputSnapshot
from . import common, connect, selection
from .common import EXIT_OK, human_size, info, utc_text

NAME = "list"
SUMMARY = "list a job's outputs: a table, or JSON lines"
EPILOG = f"""\
Without --task: the job's own outputs, then every task's. A table (task, kind, path, size, modified
time in UTC), or with --json one JSON object a line: job, task (null for the job's own), kind, path,
size, content_md5 (base64, null if none), last_modified (ISO 8601), url (no SAS), blob, parts (the blobs
of a live log's roll-over parts, after blob: [] for most), and for live logs state, exit_code, started,
ended (null otherwise).

Live logs (saved by `batchfiles run` or `track`) get a STATUS column: open while they are written (or if
their writer died), closed once saved to the end, and for `run`'s logs "exit N": the command's exit code.
A live log that rolled over into parts (name, name.1, ...) is one row: the size of all its parts.

The job is read from one listing of its container (5,000 blobs a request; with --task, of that task's
folder); a blob in it that is not an output is skipped with a warning.

When storage throttles the account, it says so once on stderr and waits, trying again for some minutes
before it gives up.

examples:
  batchfiles list render-42
  batchfiles list render-42 --task frame-7 --kind TaskLog
  batchfiles list render-42 --json | jq -r 'select(.size > 1000000) | .path'

{connect.STORAGE_HELP}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    selection.add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    connect.add_storage_options(parser)


def run(args: argparse.Namespace) -> int:
    """The table (or JSON lines) of the selection; then a warning for each blob skipped as not an output."""
    skipped: list[tuple[str, str]] = []
    with connect.job_storage(args, args.job_id, interactive=True, patient=True) as job:
        found = selection.outputs(job, args.task, args.kind, lambda name, why: skipped.append((name, why)))
        if args.json:
            count = 0
            for count, (task, ref) in enumerate(found, 1):  # noqa: B007 - count is used below
                print(_json_line(args.job_id, task, ref))
        else:
            rows = list(found)
            count = len(rows)
            if rows:
                _print_table(rows, with_task=args.task is None)
    for blob_name, reason in sorted(skipped):  # printed once the listing is done, in a stable order
        common.warn(f"skipped blob {blob_name!r}: {reason}")
    if not count:
        info(f"no outputs found for job {args.job_id!r}" + (f", task {args.task!r}" if args.task else ""))
    return EXIT_OK


def _json_line(job_id: str, task: str | None, ref: OutputSnapshot) -> str:
    md5 = base64.b64encode(ref.content_md5).decode() if ref.content_md5 else None
    modified = ref.last_modified.isoformat() if ref.last_modified else None
    record = {
        "job": job_id,
        "task": task,
        "kind": str(ref.kind),
        "path": ref.file_path,
        "size": ref.size,
        "content_md5": md5,
        "last_modified": modified,
        "url": ref.url,
        "blob": ref.blob_name,
        "parts": list(ref.parts),
    }
    state = ref.log
    record.update(
        state=state.state,
        exit_code=state.exit_code,
        started=state.started.isoformat() if state.started else None,
        ended=state.ended.isoformat() if state.ended else None,
    )
    return json.dumps(record, ensure_ascii=False)


def status_text(ref: OutputSnapshot) -> str:
    """A live log's state for the table: ``open``, ``closed``, ``exit N`` (``run``'s); ``-`` otherwise
    (read from its last part, where the close mark and the outcome are)."""
    state = ref.log
    if state.exit_code is not None:
        return f"exit {state.exit_code}"
    return state.state or "-"


def _print_table(rows: list[selection.Selected], *, with_task: bool) -> None:
    statuses = [status_text(ref) for _, ref in rows]
    with_status = any(status != "-" for status in statuses)
    header = ["TASK"] if with_task else []
    header += ["KIND", "PATH", "SIZE", "MODIFIED (UTC)"] + (["STATUS"] if with_status else [])
    table = [header]
    for (task, ref), status in zip(rows, statuses, strict=True):
        cells = [task if task is not None else "(job)"] if with_task else []
        cells += [str(ref.kind), ref.file_path, human_size(ref.size), utc_text(ref.last_modified)]
        table.append(cells + ([status] if with_status else []))
    size_column = header.index("SIZE")
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [
            cell.rjust(width) if i == size_column else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
