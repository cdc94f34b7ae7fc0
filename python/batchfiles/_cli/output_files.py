"""``batchfiles output-files``: a task's Batch ``outputFiles`` JSON, named by the conventions (no storage
access)."""

from __future__ import annotations

import argparse
import json
import sys

from .. import batch
from ..environment import ENV_CONTAINER_URL
from ..errors import ConfigurationError, OutputFilesError
from . import connect
from .common import EXIT_OK, UsageError, task_id_arg

NAME = "output-files"
SUMMARY = "print a task's Batch outputFiles JSON: the node agent uploads under the conventions' names"
EPILOG = f"""\
Prints the JSON array of a task's outputFiles (Batch REST API) for tasks whose code does not change: the
node agent uploads each --output PATTERN[=KIND][@CONDITION] when the task exits, under the names
`batchfiles list` and `get` find (and `batchfiles run --output` would give). CONDITION: success,
failure, completion (default); a job KIND (JobOutput, JobPreview) goes to the job's outputs.

Patterns are the agent's, relative to the task's working directory: * and ? within a name, ** for any
folders, [abc], [!abc]; only the task directory's own files may be above it (../stdout.txt, ../std*.txt;
not ../wd/*.txt or ../**). A pattern with a wildcard keeps each match's path below its fixed folders
(out/**/*.txt: out/a/b.txt is saved as out/a/b.txt). Refused: absolute patterns, ../.. and $VAR or %VAR%
(the agent expands variables); and two patterns of one kind that can upload a working-directory file and
the task directory's file of the same name to one blob (*.txt=TaskLog with --task-logs; **/*.log with
../*.log), unless one is @success and the other @failure.

--task-logs adds ../stdout.txt, ../stderr.txt and the agent's own upload logs (../fileupload*.txt,
which it writes while uploading: they hold what was written when their turn came) as TaskLog. Not with
`batchfiles run` as the task's command: it saves its own stdout.txt and stderr.txt, live and with the exit
code, which the agent's copies would replace (storage refuses them: 409 InvalidBlobType); nor, then,
a TaskLog pattern matching stdout.txt or stderr.txt in the working directory (*.txt=TaskLog).

The container URL needs a SAS granting write (`batchfiles url JOB_ID --expiry 2d`): one that has expired,
starts more than an hour ahead (st=), is one blob's, or an account SAS without the blob service (ss=) is
refused, as is a URL with a #fragment or a port out of range; or with
--identity-reference a plain URL and a managed identity of the pool. The printed JSON holds that URL,
SAS included: treat it as a secret.

examples:
  batchfiles output-files --task-id task-1 --output 'frames/*.png' --output 'core.*=TaskLog@failure' \\
      --task-logs > outputs.json
  jq -n --slurpfile out outputs.json '{{id: "task-1", commandLine: "./render.sh", outputFiles: $out[0]}}' \\
      > task.json && az batch task create --job-id render-42 --json-file task.json

storage: --container-url URL or {ENV_CONTAINER_URL}
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task-id",
        "--task",
        dest="task_id",
        required=True,
        type=task_id_arg,
        metavar="TASK_ID",
        help="the task the outputs are of",
    )
    parser.add_argument(
        "--output",
        dest="outputs",
        action="append",
        default=[],
        metavar="PATTERN[=KIND][@CONDITION]",
        help="files the node agent uploads when the task exits (repeatable)",
    )
    parser.add_argument(
        "--task-logs",
        action="store_true",
        help="also ../stdout.txt, ../stderr.txt and the agent's upload logs, as TaskLog",
    )
    parser.add_argument(
        "--identity-reference",
        metavar="RESOURCE_ID",
        help="a managed identity of the pool that may write (with a container URL without SAS)",
    )
    parser.add_argument(
        "--container-url", metavar="URL", help=f"the job's container URL [${ENV_CONTAINER_URL}]"
    )


def run(args: argparse.Namespace) -> int:
    outputs: list[str | batch.OutputSpec] = list(args.outputs)
    if args.task_logs:
        outputs += [*batch.TASK_LOGS, *batch.UPLOAD_LOGS]
    if not outputs:
        raise UsageError("nothing to upload: give --output PATTERN[=KIND][@CONDITION] or --task-logs")
    try:
        url = connect.container_url(args)
        files = batch.output_files(url, args.task_id, outputs, identity_reference=args.identity_reference)
    except (ConfigurationError, OutputFilesError) as err:
        raise UsageError(str(err)) from None
    json.dump(files, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK
