"""Storage from the command line's options and the environment, through the library's constructors.

An option (``--container-url``, ``--connection-string``, ``--account-url``) wins; otherwise the variables
``BATCHFILES_CONTAINER_URL``, ``AZURE_STORAGE_CONNECTION_STRING``, ``AZURE_STORAGE_ACCOUNT_URL`` are looked
at in that order, as ``TaskOutputStorage.from_environment`` does. Job and task ids come from ``--job`` /
``--task`` or ``AZ_BATCH_JOB_ID`` / ``AZ_BATCH_TASK_ID``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from azure.storage.blob import BlobServiceClient

from .. import naming
from .._core import (
    ENV_ACCOUNT_URL,
    ENV_CONNECTION_STRING,
    ENV_CONTAINER_URL,
    ENV_JOB_ID,
    ENV_TASK_ID,
    client_kwargs,
)
from ..errors import ConfigurationError
from ..storage import JobOutputStorage, TaskOutputStorage
from .common import job_id_arg, register_secrets, task_id_arg

CONTAINER_URL, CONNECTION_STRING, ACCOUNT_URL = "container_url", "connection_string", "account_url"
_SOURCES = (
    (CONTAINER_URL, ENV_CONTAINER_URL, "--container-url"),
    (CONNECTION_STRING, ENV_CONNECTION_STRING, "--connection-string"),
    (ACCOUNT_URL, ENV_ACCOUNT_URL, "--account-url"),
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


def register_all_secrets(args: argparse.Namespace) -> None:
    """Every secret the options and variables hold, used or not, so that no message can show one."""
    for name, env, _ in _SOURCES:
        register_secrets(getattr(args, name, None), os.environ.get(env))


def _source(args: argparse.Namespace, allowed: tuple[str, ...], what: str) -> tuple[str, str]:
    for name, _, _ in _SOURCES:
        if name in allowed and getattr(args, name, None):
            return name, getattr(args, name)
    for name, env, _ in _SOURCES:
        if name in allowed and os.environ.get(env):
            return name, os.environ[env]
    options = " / ".join(flag for name, _, flag in _SOURCES if name in allowed)
    variables = ", ".join(env for name, env, _ in _SOURCES if name in allowed)
    extra = ""
    if CONTAINER_URL not in allowed and (
        getattr(args, CONTAINER_URL, None) or os.environ.get(ENV_CONTAINER_URL)
    ):
        extra = f" ({ENV_CONTAINER_URL}, a single container's SAS, is not enough)"
    raise ConfigurationError(f"no storage configured for {what}: pass {options} or set {variables}{extra}")


def task_id(args: argparse.Namespace) -> str:
    task = getattr(args, "task", None) or os.environ.get(ENV_TASK_ID)
    if not task:
        raise ConfigurationError(f"no task id: pass --task or set {ENV_TASK_ID} (Batch sets it on its nodes)")
    return task


def _need_job(job: str | None, kind: str) -> str:
    if not job:
        source = "--connection-string" if kind == CONNECTION_STRING else "--account-url"
        raise ConfigurationError(
            f"no job id: pass --job or set {ENV_JOB_ID} (Batch sets it on its nodes); "
            f"it names the job's container in the account of {source}"
        )
    return job


#: Client commands (list, get, prepare, url) give up sooner than the library's retry defaults, which
#: are tuned for tasks on nodes that must not lose data; commands run on nodes keep those.
INTERACTIVE_RETRY: dict[str, Any] = {"retry_total": 3}
#: The OAuth scope of Azure Storage, in every cloud.
STORAGE_SCOPE = "https://storage.azure.com/.default"


def _service(kind: str, value: str, options: dict[str, Any]) -> BlobServiceClient:
    if kind == CONNECTION_STRING:
        return BlobServiceClient.from_connection_string(value, **client_kwargs(options))
    return BlobServiceClient(value, _credential(value), **client_kwargs(options))


def _credential(account_url: str) -> Any:
    """DefaultAzureCredential, with a token fetched now: without one, storage clients would retry each
    request for minutes before failing. The token is cached for the requests that follow."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential  # imported only when used: it is slow to import

    credential = DefaultAzureCredential()
    try:
        credential.get_token(STORAGE_SCOPE)
    except ClientAuthenticationError as err:
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        raise ConfigurationError(
            f"no Azure sign-in for {account_url}: {first} (use a managed identity, `az login`, "
            f"AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or a connection string or container URL)"
        ) from err
    return credential


def service_client(args: argparse.Namespace, what: str) -> BlobServiceClient:
    """The account's service client, for what needs the whole account (prepare, url)."""
    kind, value = _source(args, (CONNECTION_STRING, ACCOUNT_URL), what)
    return _service(kind, value, INTERACTIVE_RETRY)


def _check_container(storage: JobOutputStorage | TaskOutputStorage, job: str | None) -> None:
    """A job named on the command line must be the one whose container the URL is of."""
    if job and storage.container_name != naming.container_name(job):
        name = storage.container_name
        storage.close()
        raise ConfigurationError(
            f"the container URL is of container {name!r}, but job {job!r} "
            f"is in container {naming.container_name(job)!r}"
        )


def job_storage(
    args: argparse.Namespace, what: str, job: str | None = None, *, interactive: bool = False
) -> JobOutputStorage:
    """The job's storage; ``job`` (or ``--job``), if given, must match a container URL's container.

    Without a container URL the job is ``job``, ``--job`` or ``AZ_BATCH_JOB_ID``. ``interactive``: retry
    less (:data:`INTERACTIVE_RETRY`).
    """
    options = INTERACTIVE_RETRY if interactive else {}
    kind, value = _source(args, (CONTAINER_URL, CONNECTION_STRING, ACCOUNT_URL), what)
    job = job or getattr(args, "job", None)
    if kind == CONTAINER_URL:
        storage = JobOutputStorage(value, **options)
        _check_container(storage, job)
        return storage
    job = _need_job(job or os.environ.get(ENV_JOB_ID), kind)
    if kind == CONNECTION_STRING:
        return JobOutputStorage.from_connection_string(value, job, **options)
    return JobOutputStorage.from_service(_service(kind, value, options), job)


def task_storage(args: argparse.Namespace, what: str) -> TaskOutputStorage:
    """The task's storage: task from ``--task`` or ``AZ_BATCH_TASK_ID``; job as for :func:`job_storage`."""
    kind, value = _source(args, (CONTAINER_URL, CONNECTION_STRING, ACCOUNT_URL), what)
    task, job = task_id(args), getattr(args, "job", None)
    if kind == CONTAINER_URL:
        storage = TaskOutputStorage(value, task)
        _check_container(storage, job)
        return storage
    job = _need_job(job or os.environ.get(ENV_JOB_ID), kind)
    if kind == CONNECTION_STRING:
        return TaskOutputStorage.from_connection_string(value, job, task)
    return TaskOutputStorage.from_service(_service(kind, value, {}), job, task)
