"""Storage and ids from the environment of a Batch node, for ``from_environment``, and the check that a
container URL is of the job it is used for."""

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


def environment_config(*, need_task: bool) -> EnvironmentConfig:
    env = os.environ
    job_id, task_id = env.get(ENV_JOB_ID) or None, env.get(ENV_TASK_ID) or None
    if need_task and not task_id:
        raise ConfigurationError(f"no task id: {ENV_TASK_ID} is not set (it is set on Batch nodes)")
    container_url = env.get(ENV_CONTAINER_URL) or None
    if container_url:
        try:
            check_container_url(container_url)
        except ValueError as err:
            raise ConfigurationError(f"{ENV_CONTAINER_URL}: {err}") from None
        container = urlsplit(container_url).path.rstrip("/").rsplit("/", 1)[-1]
        check_job_container(container, job_id, f"{ENV_JOB_ID} is {job_id!r}", ENV_CONTAINER_URL)
        return EnvironmentConfig(job_id, task_id, container_url=container_url)
    if not job_id:
        raise ConfigurationError(
            f"no job id: {ENV_JOB_ID} is not set (it is set on Batch nodes), and no {ENV_CONTAINER_URL}"
        )
    if env.get(ENV_CONNECTION_STRING):
        return EnvironmentConfig(job_id, task_id, connection_string=env[ENV_CONNECTION_STRING])
    if env.get(ENV_ACCOUNT_URL):
        try:
            check_account_url(env[ENV_ACCOUNT_URL])
        except ValueError as err:
            raise ConfigurationError(f"{ENV_ACCOUNT_URL}: {err}") from None
        return EnvironmentConfig(job_id, task_id, account_url=env[ENV_ACCOUNT_URL])
    raise ConfigurationError(
        f"no storage configured: set {ENV_CONTAINER_URL} (a container URL with SAS), "
        f"{ENV_CONNECTION_STRING}, or {ENV_ACCOUNT_URL} (with a managed identity or other Azure credential)"
    )


def default_credential(clients: Any) -> Any:
    """``DefaultAzureCredential`` of azure-identity, async when ``clients`` is azure.storage.blob.aio."""
    if clients.__name__.endswith(".aio"):
        from azure.identity.aio import DefaultAzureCredential as AsyncCredential

        return AsyncCredential()
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
