"""Storage from the command line's options and the environment, through the library's constructors.

An option (``--container-url``, ``--connection-string``, ``--account-url``) wins; otherwise the variables
``BATCHFILES_CONTAINER_URL``, ``AZURE_STORAGE_CONNECTION_STRING``, ``AZURE_STORAGE_ACCOUNT_URL`` are looked
at in that order, as ``TaskOutputStorage.from_environment`` does. Job and task ids come from ``--job`` /
``--task`` or ``AZ_BATCH_JOB_ID`` / ``AZ_BATCH_TASK_ID``.
"""

from __future__ import annotations

import argparse
import inspect
import os
import threading
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from azure.storage.blob import BlobServiceClient

from .. import _environment, _errors, _sas, _throttle, _urls
from .._environment import ENV_ACCOUNT_URL, ENV_CONNECTION_STRING, ENV_CONTAINER_URL, ENV_JOB_ID, ENV_TASK_ID
from .._urls import client_kwargs
from ..errors import ConfigurationError
from ..storage import JobOutputStorage, TaskOutputStorage
from .common import info, job_id_arg, margin_arg, task_id_arg

if TYPE_CHECKING:
    from ..aio import JobOutputStorage as AsyncJobOutputStorage

S = TypeVar("S", JobOutputStorage, TaskOutputStorage)
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


def add_sas_margin_option(parser: argparse.ArgumentParser) -> None:
    """``--sas-margin``, of the commands that save for long (run, track)."""
    parser.add_argument(
        "--sas-margin",
        type=margin_arg,
        metavar="DURATION",
        help=f"warn at start if the SAS expires within DURATION (1h) [${_sas.ENV_SAS_MARGIN}]",
    )


SAS_MARGIN_HELP = f"""\
SAS expiry: a SAS that expires within --sas-margin (default ${_sas.ENV_SAS_MARGIN}, else 1h; 0: only
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
    for name, env, _ in _SOURCES:
        _errors.register_secrets(getattr(args, name, None), os.environ.get(env))


def _source(args: argparse.Namespace, allowed: tuple[str, ...], what: str) -> tuple[str, str, str]:
    """(which source: CONTAINER_URL, CONNECTION_STRING or ACCOUNT_URL; its value; the option or variable it
    came from)."""
    for name, _, flag in _SOURCES:
        if name in allowed and getattr(args, name, None):
            return name, getattr(args, name), flag
    for name, env, _ in _SOURCES:
        if name in allowed and os.environ.get(env):
            return name, os.environ[env], env
    options = " / ".join(flag for name, _, flag in _SOURCES if name in allowed)
    variables = ", ".join(env for name, env, _ in _SOURCES if name in allowed)
    extra = ""
    if CONTAINER_URL not in allowed and (
        getattr(args, CONTAINER_URL, None) or os.environ.get(ENV_CONTAINER_URL)
    ):
        extra = f" ({ENV_CONTAINER_URL}, a single container's SAS, is not enough)"
    raise ConfigurationError(f"no storage configured for {what}: pass {options} or set {variables}{extra}")


def container_url(args: argparse.Namespace, what: str) -> str:
    """The URL of ``--container-url`` or ``BATCHFILES_CONTAINER_URL``; ConfigurationError if none."""
    return _source(args, (CONTAINER_URL,), what)[1]


def task_id(args: argparse.Namespace) -> str:
    task = getattr(args, "task", None) or os.environ.get(ENV_TASK_ID)
    if not task:
        raise ConfigurationError(f"no task id: pass --task or set {ENV_TASK_ID} (Batch sets it on its nodes)")
    return task


def _need_job(job: str | None, source: str) -> str:
    if not job:
        option = "--connection-string" if source == CONNECTION_STRING else "--account-url"
        raise ConfigurationError(
            f"no job id: pass --job or set {ENV_JOB_ID} (Batch sets it on its nodes); "
            f"it names the job's container in the account of {option}"
        )
    return job


#: Client commands (list, get, prepare, url) give up sooner than the library's retry defaults, which
#: are tuned for tasks on nodes that must not lose data; commands run on nodes keep those. A storage
#: endpoint that accepts connections but never answers costs some 35 s, not the SDK's 4 x 60 s.
INTERACTIVE_RETRY: dict[str, Any] = {"retry_total": 2, "connection_timeout": 10, "read_timeout": 10}
#: list and get keep the library's patience with throttling (a budget of throttled retries of its own:
#: some minutes), and say that they wait (:class:`ThrottlingNotice`).
PATIENT_RETRY: dict[str, Any] = {**INTERACTIVE_RETRY, "retry_throttled": _throttle.THROTTLED_RETRIES}
#: The OAuth scope of Azure Storage, in every cloud.
STORAGE_SCOPE = "https://storage.azure.com/.default"


def _service(source: str, value: str, options: dict[str, Any], *, aio: bool = False) -> Any:
    """The account's service client (``aio``: azure.storage.blob.aio's, over an account URL)."""
    if source == CONNECTION_STRING:
        return BlobServiceClient.from_connection_string(value, **client_kwargs(options))
    if aio:
        from azure.storage.blob.aio import BlobServiceClient as AsyncServiceClient

        credential = _AsyncCredential(_credential(value))
        return AsyncServiceClient(value, credential, **client_kwargs(options, aio=True))
    return BlobServiceClient(value, _credential(value), **client_kwargs(options))


class _AsyncCredential:
    """The sync credential :func:`_credential` signed in with, for async clients: its tokens are fetched
    in a thread (one sign-in, one token cache, for both)."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        self._credential.close()

    async def __aenter__(self) -> _AsyncCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _credential(account_url: str) -> Any:
    """DefaultAzureCredential, with a token fetched now: without one, storage clients would retry each
    request for minutes before failing. The token is cached for the requests that follow."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential  # imported only when used: it is slow to import

    _urls.check_account_url(account_url)
    credential = DefaultAzureCredential()
    try:
        credential.get_token(STORAGE_SCOPE)
    except ClientAuthenticationError as err:
        raise _errors.sign_in_error(account_url, err) from err
    return credential


def service_client(args: argparse.Namespace, what: str) -> BlobServiceClient:
    """The account's service client, for what needs the whole account (prepare, url)."""
    source, value, _ = _source(args, (CONNECTION_STRING, ACCOUNT_URL), what)
    return _service(source, value, INTERACTIVE_RETRY)


def _job(args: argparse.Namespace, job: str | None) -> tuple[str | None, str]:
    """The job id (the command's JOB_ID, ``--job`` or ``AZ_BATCH_JOB_ID``) and where it came from."""
    if job:
        return job, f"the job is {job!r}"
    for value, origin in ((getattr(args, "job", None), "--job"), (os.environ.get(ENV_JOB_ID), ENV_JOB_ID)):
        if value:
            return value, f"{origin} is {value!r}"
    return None, ""


def _checked(storage: S, args: argparse.Namespace, job: str | None, origin: str) -> S:
    """``storage`` from a container URL (taken from ``origin``), which must be of the job's container
    when a job is known."""
    job_id, job_origin = _job(args, job)
    try:
        _environment.check_job_container(storage.container_name, job_id, job_origin, origin)
    except ConfigurationError:
        closing = storage.close()
        if inspect.iscoroutine(closing):  # an aio storage: it has not opened a connection yet
            closing.close()
        raise
    return storage


@overload
def job_storage(
    args: argparse.Namespace,
    what: str,
    job: str | None = None,
    *,
    interactive: bool = False,
    patient: bool = False,
    aio: Literal[False] = False,
) -> JobOutputStorage: ...


@overload
def job_storage(
    args: argparse.Namespace,
    what: str,
    job: str | None = None,
    *,
    interactive: bool = False,
    patient: bool = False,
    aio: Literal[True],
) -> AsyncJobOutputStorage: ...


def job_storage(
    args: argparse.Namespace,
    what: str,
    job: str | None = None,
    *,
    interactive: bool = False,
    patient: bool = False,
    aio: bool = False,
) -> JobOutputStorage | AsyncJobOutputStorage:
    """The job's storage; the job (``job``, ``--job`` or ``AZ_BATCH_JOB_ID``), when known, must be the
    one whose container a container URL is of. ``interactive``: retry less (:data:`INTERACTIVE_RETRY`),
    but with ``patient`` as long as the library when throttled (:data:`PATIENT_RETRY`).
    ``aio``: a :class:`batchfiles.aio.JobOutputStorage` (needs the ``aio`` extra), else the sync one.
    """
    options = (PATIENT_RETRY if patient else INTERACTIVE_RETRY) if interactive else {}
    margin = getattr(args, "sas_margin", None)
    source, value, origin = _source(args, (CONTAINER_URL, CONNECTION_STRING, ACCOUNT_URL), what)
    cls: Any = JobOutputStorage
    if aio:
        from ..aio import JobOutputStorage as cls
    if source == CONTAINER_URL:
        return _checked(cls(value, sas_margin=margin, **options), args, job, origin)
    job = _need_job(_job(args, job)[0], source)
    if source == CONNECTION_STRING:
        return cls.from_connection_string(value, job, sas_margin=margin, **options)
    return cls.from_service(_service(source, value, options, aio=aio), job, sas_margin=margin)


class ThrottlingNotice:
    """Says once on stderr, at the first throttled answer to ``storage``'s requests, that the command waits
    for storage (its retry policy tells of each; keep this object as long as the storage)."""

    def __init__(self, storage: JobOutputStorage) -> None:
        self._said = threading.Lock()
        policy = getattr(getattr(storage._container, "_config", None), "retry_policy", None)
        if isinstance(policy, _throttle._Throttled):
            policy.add_listener(self.heard)

    def heard(self) -> None:
        if self._said.acquire(blocking=False):  # never released: once
            info("storage is throttling the account: waiting and trying again (this can take minutes)")


def task_storage(args: argparse.Namespace, what: str) -> TaskOutputStorage:
    """The task's storage: task from ``--task`` or ``AZ_BATCH_TASK_ID``; job as for :func:`job_storage`."""
    source, value, origin = _source(args, (CONTAINER_URL, CONNECTION_STRING, ACCOUNT_URL), what)
    task, margin = task_id(args), getattr(args, "sas_margin", None)
    if source == CONTAINER_URL:
        return _checked(TaskOutputStorage(value, task, sas_margin=margin), args, None, origin)
    job = _need_job(_job(args, None)[0], source)
    if source == CONNECTION_STRING:
        return TaskOutputStorage.from_connection_string(value, job, task, sas_margin=margin)
    return TaskOutputStorage.from_service(_service(source, value, {}), job, task, sas_margin=margin)


def saving_storage(
    args: argparse.Namespace, what: str, job_side: bool
) -> JobOutputStorage | TaskOutputStorage:
    """The job's storage for its own outputs (``job_side``: see ``common.job_side``), else the task's."""
    return job_storage(args, what) if job_side else task_storage(args, what)
