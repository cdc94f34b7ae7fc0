"""The command line's storage options, handed to the library's ``from_environment`` and
``service_from_environment``: an option (``--container-url``, ``--connection-string``, ``--account-url``)
wins, otherwise the library looks at ``BATCHFILES_CONTAINER_URL``, ``AZURE_STORAGE_CONNECTION_STRING``,
``AZURE_STORAGE_ACCOUNT_URL`` in that order. Job and task ids come from ``--job`` / ``--task`` or
``AZ_BATCH_JOB_ID`` / ``AZ_BATCH_TASK_ID``.

Also what the commands share of it: the options themselves (storage, ids, ``--sas-margin``) and their help,
every secret they hold registered for redaction, and the retries of commands run on a client (fewer than a
node's, but as patient with throttling for ``list``, ``get`` and ``delete``, which then say once that they
wait).
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

from azure.storage.blob import BlobServiceClient

from ..environment import (
    ENV_ACCOUNT_URL,
    ENV_CONNECTION_STRING,
    ENV_CONTAINER_URL,
    ENV_JOB_ID,
    ENV_SAS_MARGIN,
    ENV_TASK_ID,
)
from ..errors import ConfigurationError, register_secrets
from ..storage import THROTTLED_RETRIES, JobOutputStorage, TaskOutputStorage, service_from_environment
from .common import info, job_id_arg, margin_arg, task_id_arg

if TYPE_CHECKING:
    from ..aio import JobOutputStorage as AsyncJobOutputStorage

#: The storage options (their ``argparse`` names, as the library's keywords) and their variables.
_SOURCES = (
    ("container_url", ENV_CONTAINER_URL),
    ("connection_string", ENV_CONNECTION_STRING),
    ("account_url", ENV_ACCOUNT_URL),
)

STORAGE_HELP = f"""\
storage (an option wins over every variable; among the variables, the first set wins):
  --container-url URL       or {ENV_CONTAINER_URL}: the job's container URL with a SAS, as printed
                            by `batchfiles url JOB_ID`; what tasks on Batch nodes are given
  --connection-string CS    or {ENV_CONNECTION_STRING}: a storage account connection string
  --account-url URL         or {ENV_ACCOUNT_URL}: https://ACCOUNT.blob.core.windows.net, signed in
                            with DefaultAzureCredential (managed identity, `az login`, environment)
  Prefer the variables for secrets: other users of a machine can see command lines.
"""


def add_storage_options(parser: argparse.ArgumentParser, *, container_url: bool = True) -> None:
    group = parser.add_argument_group("storage (see below)").add_mutually_exclusive_group()
    if container_url:
        group.add_argument(
            "--container-url", metavar="URL", help=f"container URL with SAS [${ENV_CONTAINER_URL}]"
        )
    group.add_argument(
        "--connection-string", metavar="CS", help=f"connection string [${ENV_CONNECTION_STRING}]"
    )
    group.add_argument(
        "--account-url", metavar="URL", help=f"account URL, Azure sign-in [${ENV_ACCOUNT_URL}]"
    )


def add_sas_margin_option(parser: argparse.ArgumentParser) -> None:
    """``--sas-margin``, of the commands that save for long (run, track)."""
    parser.add_argument(
        "--sas-margin",
        type=margin_arg,
        metavar="DURATION",
        help=f"warn at start if the SAS expires within DURATION (1h) [${ENV_SAS_MARGIN}]",
    )


SAS_MARGIN_HELP = f"""\
SAS expiry: a SAS that expires within --sas-margin (default ${ENV_SAS_MARGIN}, else 1h; 0: only
one already expired) is warned of at start, as saves after it expires fail (exit 75): make one that
outlasts the task (`batchfiles url JOB_ID --expiry 2d`) or use a managed identity (--account-url).
"""


def add_job_argument(parser: argparse.ArgumentParser) -> None:
    """The JOB_ID positional of the commands run on a client (prepare, url, list, get)."""
    parser.add_argument(
        "job_id",
        type=job_id_arg,
        metavar="JOB_ID",
        help="the Batch job's id (its container is named after it: see `batchfiles names`)",
    )


def add_id_options(parser: argparse.ArgumentParser, *, task: bool = True) -> None:
    group = parser.add_argument_group("ids")
    group.add_argument(
        "--job",
        metavar="JOB_ID",
        type=job_id_arg,
        help=f"the job [${ENV_JOB_ID}]; not needed with a container URL",
    )
    if task:
        group.add_argument("--task", metavar="TASK_ID", type=task_id_arg, help=f"the task [${ENV_TASK_ID}]")


def add_saving_options(parser: argparse.ArgumentParser, job_output_help: str) -> None:
    """``--job-output``, the ids and the storage: the options of the commands that save (save, track)."""
    parser.add_argument("--job-output", action="store_true", help=job_output_help)
    add_id_options(parser)
    add_storage_options(parser)


def register_all_secrets(args: argparse.Namespace) -> None:
    """Every secret the options and variables hold, used or not, so that no message can show one."""
    for name, env in _SOURCES:
        register_secrets(getattr(args, name, None), os.environ.get(env))


def _given(args: argparse.Namespace) -> dict[str, str | None]:
    """The storage options given (at most one: they are exclusive); the library walks the variables."""
    return {name: getattr(args, name, None) for name, _ in _SOURCES}


def container_url(args: argparse.Namespace) -> str:
    """The URL of ``--container-url`` or ``BATCHFILES_CONTAINER_URL``; ConfigurationError if none."""
    url = getattr(args, "container_url", None) or os.environ.get(ENV_CONTAINER_URL)
    if not url:
        raise ConfigurationError(f"no container URL: pass --container-url or set {ENV_CONTAINER_URL}")
    return url


#: Client commands (list, get, prepare, url) give up sooner than the library's retry defaults, which
#: are tuned for tasks on nodes that must not lose data; commands run on nodes keep those. A storage
#: endpoint that accepts connections but never answers costs some 35 s, not the SDK's 4 x 60 s.
INTERACTIVE_RETRY: dict[str, Any] = {"retry_total": 2, "connection_timeout": 10, "read_timeout": 10}
#: list and get keep the library's patience with throttling (its own budget of throttled retries: some
#: minutes), and say that they wait (:func:`throttling_notice`).
PATIENT_RETRY: dict[str, Any] = {**INTERACTIVE_RETRY, "retry_throttled": THROTTLED_RETRIES}


def _options(interactive: bool, patient: bool) -> dict[str, Any]:
    if not interactive:
        return {}
    if patient:
        return {**PATIENT_RETRY, "on_throttled": throttling_notice()}
    return dict(INTERACTIVE_RETRY)


def service_client(args: argparse.Namespace) -> BlobServiceClient:
    """The account's service client, for what needs the whole account (prepare, url)."""
    given = _given(args)
    return service_from_environment(
        connection_string=given["connection_string"], account_url=given["account_url"], **INTERACTIVE_RETRY
    )


@overload
def job_storage(
    args: argparse.Namespace,
    job: str | None = None,
    *,
    interactive: bool = False,
    patient: bool = False,
    aio: Literal[False] = False,
) -> JobOutputStorage: ...


@overload
def job_storage(
    args: argparse.Namespace,
    job: str | None = None,
    *,
    interactive: bool = False,
    patient: bool = False,
    aio: Literal[True],
) -> AsyncJobOutputStorage: ...


def job_storage(
    args: argparse.Namespace,
    job: str | None = None,
    *,
    interactive: bool = False,
    patient: bool = False,
    aio: bool = False,
) -> JobOutputStorage | AsyncJobOutputStorage:
    """The job's storage, through ``JobOutputStorage.from_environment``: the options given win over the
    variables; the job is ``job``, ``--job`` or ``AZ_BATCH_JOB_ID``. ``interactive``: retry less
    (:data:`INTERACTIVE_RETRY`), but with ``patient`` as long as the library when throttled, saying so
    (:data:`PATIENT_RETRY`). ``aio``: a :class:`batchfiles.aio.JobOutputStorage` (needs the ``aio``
    extra), else the sync one."""
    cls: Any = JobOutputStorage
    if aio:
        from ..aio import JobOutputStorage as cls
    job = job or getattr(args, "job", None)
    margin = getattr(args, "sas_margin", None)
    return cls.from_environment(
        job_id=job, sas_margin=margin, **_given(args), **_options(interactive, patient)
    )


def throttling_notice() -> Callable[[], None]:
    """A callback for ``on_throttled`` that says once on stderr that the command waits for storage."""
    said = threading.Lock()

    def heard() -> None:
        if said.acquire(blocking=False):  # never released: once
            info("storage is throttling the account: waiting and trying again (this can take minutes)")

    return heard


def task_storage(args: argparse.Namespace) -> TaskOutputStorage:
    """The task's storage, through ``TaskOutputStorage.from_environment``: task from ``--task`` or
    ``AZ_BATCH_TASK_ID``; job and storage as for :func:`job_storage`."""
    margin = getattr(args, "sas_margin", None)
    return TaskOutputStorage.from_environment(
        job_id=getattr(args, "job", None),
        task_id=getattr(args, "task", None),
        sas_margin=margin,
        **_given(args),
    )


def saving_storage(args: argparse.Namespace, job_side: bool) -> JobOutputStorage | TaskOutputStorage:
    """The job's storage for its own outputs (``job_side``: see ``common.job_side``), else the task's."""
    return job_storage(args) if job_side else task_storage(args)
