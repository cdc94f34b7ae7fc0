"""Where storage and ids come from: the values given or the environment of a Batch node, walked in one
order for ``from_environment`` and ``service_from_environment`` (the command line passes its options to
them); the account's service client and the ``DefaultAzureCredential`` an account URL is signed in with
(built when asked for, signed in at the first request); and the check that a container URL is of the job it
is used for."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import naming
from ._errors import redact
from ._urls import check_account_url, check_container_url
from .errors import (
    ConfigurationError,
)

ENV_JOB_ID = "AZ_BATCH_JOB_ID"

ENV_TASK_ID = "AZ_BATCH_TASK_ID"

ENV_CONTAINER_URL = "BATCHFILES_CONTAINER_URL"

ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"

ENV_ACCOUNT_URL = "AZURE_STORAGE_ACCOUNT_URL"


@dataclass(frozen=True)
class EnvironmentConfig:
    """Where ``from_environment`` finds its storage: exactly one of the three sources is set."""

    job_id: str | None
    task_id: str | None
    container_url: str | None = field(default=None, repr=False)
    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None


def check_job_container(container: str, job_id: str | None, job_source: str, url_source: str) -> None:
    """A container URL must be of the job's own container: one left over from another job would save there.

    ``job_source`` says where the job id came from (``"--job is 'j'"``), ``url_source`` where the URL did.
    """
    if job_id and naming.container_name(job_id) != container:
        raise ConfigurationError(
            f"{url_source} is for container {redact(container)!r}, but {job_source}, whose container is "
            f"{naming.container_name(job_id)!r}: is the URL left over from another job?"
        )


def environment_config(
    *,
    need_task: bool,
    job_id: str | None = None,
    task_id: str | None = None,
    container_url: str | None = None,
    connection_string: str | None = None,
    account_url: str | None = None,
) -> EnvironmentConfig:
    """Where ``from_environment`` (and the command line, which passes its options here) finds its storage
    and ids: a value given wins over its variable; with no storage given, the first variable set of
    ``BATCHFILES_CONTAINER_URL``, ``AZURE_STORAGE_CONNECTION_STRING``, ``AZURE_STORAGE_ACCOUNT_URL``."""
    env = os.environ
    sources = {
        "container_url": container_url,
        "connection_string": connection_string,
        "account_url": account_url,
    }
    given = [name for name, value in sources.items() if value]
    if len(given) > 1:
        raise ConfigurationError(f"give one storage, not {' and '.join(given)}")
    job_origin = "the job id given" if job_id else ENV_JOB_ID
    job_id = job_id or env.get(ENV_JOB_ID) or None
    task_id = task_id or env.get(ENV_TASK_ID) or None
    if need_task and not task_id:
        raise ConfigurationError(
            f"no task id: none given and {ENV_TASK_ID} is not set (Batch sets it on its nodes)"
        )
    if not given:
        container_url = env.get(ENV_CONTAINER_URL) or None
        connection_string = None if container_url else env.get(ENV_CONNECTION_STRING) or None
        account_url = None if container_url or connection_string else env.get(ENV_ACCOUNT_URL) or None
    if container_url:
        origin = "the container URL given" if given else ENV_CONTAINER_URL
        try:
            check_container_url(container_url)
        except ValueError as err:
            raise ConfigurationError(f"{origin}: {err}") from None
        container = urlsplit(container_url).path.rstrip("/").rsplit("/", 1)[-1]
        check_job_container(container, job_id, f"{job_origin} is {job_id!r}", origin)
        return EnvironmentConfig(job_id, task_id, container_url=container_url)
    if not (connection_string or account_url):
        raise ConfigurationError(
            "no storage configured: give a container URL with a SAS, a connection string or an account "
            f"URL, or set {ENV_CONTAINER_URL} (the container URL that `batchfiles url` prints), "
            f"{ENV_CONNECTION_STRING}, or {ENV_ACCOUNT_URL} (signed in with a managed identity or other "
            "Azure credential)"
        )
    if not job_id:
        raise ConfigurationError(
            f"no job id: none given and {ENV_JOB_ID} is not set (Batch sets it on its nodes); it names the "
            "job's container in the account (a container URL needs none)"
        )
    if connection_string:
        return EnvironmentConfig(job_id, task_id, connection_string=connection_string)
    assert account_url is not None
    try:
        check_account_url(account_url)
    except ValueError as err:
        origin = "the account URL given" if given else ENV_ACCOUNT_URL
        raise ConfigurationError(f"{origin}: {err}") from None
    return EnvironmentConfig(job_id, task_id, account_url=account_url)


def account_config(
    *, connection_string: str | None = None, account_url: str | None = None
) -> EnvironmentConfig:
    """The storage account for ``service_from_environment``: ``connection_string`` or ``account_url`` if
    given, else ``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_URL`` (a container URL is not
    enough: its SAS is for one container)."""
    if connection_string and account_url:
        raise ConfigurationError("give one storage account, not connection_string and account_url")
    given = bool(connection_string or account_url)
    if not given:
        connection_string = os.environ.get(ENV_CONNECTION_STRING) or None
        account_url = None if connection_string else os.environ.get(ENV_ACCOUNT_URL) or None
    if connection_string:
        return EnvironmentConfig(None, None, connection_string=connection_string)
    if account_url:
        try:
            check_account_url(account_url)
        except ValueError as err:
            origin = "the account URL given" if given else ENV_ACCOUNT_URL
            raise ConfigurationError(f"{origin}: {err}") from None
        return EnvironmentConfig(None, None, account_url=account_url)
    extra = ""
    if os.environ.get(ENV_CONTAINER_URL):
        extra = f" ({ENV_CONTAINER_URL}, a single container's SAS, is not enough)"
    raise ConfigurationError(
        f"no storage account configured: give a connection string or an account URL, or set "
        f"{ENV_CONNECTION_STRING} or {ENV_ACCOUNT_URL}{extra}"
    )


def service_client(clients: Any, config: EnvironmentConfig, options: dict[str, Any]) -> Any:
    """The account's ``BlobServiceClient`` (of ``clients``: azure.storage.blob or its aio twin) from a
    connection string, or from an account URL signed in with ``DefaultAzureCredential`` (built now, signed
    in at the first request; a credential that cannot sign in fails that request at once)."""
    if config.connection_string:
        return clients.BlobServiceClient.from_connection_string(config.connection_string, **options)
    return clients.BlobServiceClient(config.account_url, default_credential(clients), **options)


def default_credential(clients: Any) -> Any:
    """``DefaultAzureCredential`` of azure-identity, async when ``clients`` is azure.storage.blob.aio."""
    if clients.__name__.endswith(".aio"):
        from azure.identity.aio import DefaultAzureCredential as AsyncCredential

        return AsyncCredential()
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
