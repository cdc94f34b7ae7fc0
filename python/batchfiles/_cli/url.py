"""``batchfiles url``: a job container's URL with a SAS, for its tasks."""

from __future__ import annotations

import argparse

from azure.core.exceptions import AzureError

from .. import naming
from ..storage import output_storage_container_url
from . import common, connect
from .common import EXIT_OK, duration_arg

NAME = "url"
SUMMARY = "print a job container URL with a SAS, for its tasks"
EPILOG = f"""\
Prints the job container's URL with a SAS (read, add, create, write, delete, list) for its tasks to use
as BATCHFILES_CONTAINER_URL (delete: a retried task replaces its first attempt's logs). The URL is a
secret: hand it to the job (e.g. as an environment setting), do not log it. Signed with the account key,
or with a user delegation key when signed in with an Azure credential (then at most 7 days). Durations:
90s, 30m, 12h, 7d, 1w, 1d12h.

examples:
  batchfiles url render-42
  batchfiles url render-42 --expiry 12h

{connect.STORAGE_HELP}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    connect.add_job_argument(parser)
    parser.add_argument(
        "--expiry", type=duration_arg, default="7d", metavar="DURATION", help="how long it is valid (7d)"
    )
    connect.add_storage_options(parser, container_url=False)


def run(args: argparse.Namespace) -> int:
    with connect.service_client(args) as service:
        sas_url = output_storage_container_url(service, args.job_id, expiry=args.expiry)
        container = naming.container_name(args.job_id)
        try:
            exists = service.get_container_client(container).exists()
        except AzureError:  # a credential that may sign but not read: no warning then
            exists = True
    if not exists:
        common.warn(
            f"container {container!r} does not exist yet: "
            f"run `batchfiles prepare {args.job_id}` before tasks use this URL"
        )
    print(sas_url)
    return EXIT_OK
