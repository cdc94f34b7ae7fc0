"""``batchfiles prepare``: create a job's output container."""

from __future__ import annotations

import argparse

from ..storage import prepare_output_storage
from . import connect
from .common import EXIT_OK

NAME = "prepare"
SUMMARY = "create a job's output container; prints its name"
EPILOG = f"""\
Creates the job's container (private; an existing one is fine) and prints its name. Needs access to the
storage account: a connection string or an account URL, not a container URL.

examples:
  batchfiles prepare render-42
  AZURE_STORAGE_ACCOUNT_URL=https://myaccount.blob.core.windows.net batchfiles prepare render-42

{connect.STORAGE_HELP}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    connect.add_job_argument(parser)
    connect.add_storage_options(parser, container_url=False)


def run(args: argparse.Namespace) -> int:
    with connect.service_client(args) as service:
        container = prepare_output_storage(service, args.job_id)
    print(container.container_name)
    return EXIT_OK
