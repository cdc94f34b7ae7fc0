"""Every constructor of ``TaskOutputStorage`` and ``JobOutputStorage``, sync and async, against Azurite: the
same container, scope and URL whichever way they are made, and the same refusals."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import azure.storage.blob.aio
import batchfiles
import pytest
from azure.storage.blob import BlobServiceClient
from batchfiles import ConfigurationError, aio, naming, prepare_output_storage
from batchfiles.testing import Azurite

ENV = (
    "AZ_BATCH_JOB_ID",
    "AZ_BATCH_TASK_ID",
    "BATCHFILES_CONTAINER_URL",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_URL",
)
FLAVOURS = {"sync": batchfiles, "aio": aio}
SERVICES = {"sync": BlobServiceClient, "aio": azure.storage.blob.aio.BlobServiceClient}


def close(storage: Any) -> None:
    result = storage.close()
    if inspect.isawaitable(result):
        asyncio.run(result)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def sas_url(service: BlobServiceClient, job_id: str) -> str:
    prepare_output_storage(service, job_id)
    return batchfiles.output_storage_container_url(service, job_id)


def constructors(
    flavour: str, azurite: Azurite, job_id: str, url: str, env: pytest.MonkeyPatch
) -> Iterator[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(how, make the task's storage, make the job's storage) for every constructor of ``flavour``."""
    module, conn = FLAVOURS[flavour], azurite.connection_string
    task, job = module.TaskOutputStorage, module.JobOutputStorage
    service = SERVICES[flavour].from_connection_string(conn)
    yield "url", lambda: task(url, "t1"), lambda: job(url)
    yield (
        "service",
        lambda: task.from_service(service, job_id, "t1"),
        lambda: job.from_service(service, job_id),
    )
    yield (
        "connection string",
        lambda: task.from_connection_string(conn, job_id, "t1", retry_total=1),
        lambda: job.from_connection_string(conn, job_id, retry_total=1),
    )
    yield "job.task", lambda: job(url).task("t1"), lambda: job(url)
    env.setenv("AZ_BATCH_JOB_ID", job_id)
    env.setenv("AZ_BATCH_TASK_ID", "t1")
    env.setenv("BATCHFILES_CONTAINER_URL", url)
    yield "environment (url)", task.from_environment, job.from_environment
    env.delenv("BATCHFILES_CONTAINER_URL")
    env.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    yield "environment (connection string)", task.from_environment, job.from_environment
    close(service)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_constructor_gives_the_same_storage(flavour, azurite, job_id, sas_url, clean_env):
    module = FLAVOURS[flavour]
    expected_url = sas_url.partition("?")[0]
    seen = set()
    for how, make_task, make_job in constructors(flavour, azurite, job_id, sas_url, clean_env):
        for make, cls, task_id in ((make_task, module.TaskOutputStorage, "t1"), (make_job, None, None)):
            storage = make()
            cls = cls or module.JobOutputStorage
            try:
                assert type(storage) is cls, how
                assert storage.container_name == naming.container_name(job_id), how
                assert storage.task_id == task_id, how
                assert storage.url == expected_url, how
                assert storage._scope == batchfiles._scope.Scope(storage.container_name, task_id), how
                seen.add(repr(storage))
            finally:
                close(storage)
    assert len(seen) == 2, seen  # one task's storage and one job's, whatever the constructor


def parameters(function: Callable[..., Any]) -> list[tuple[str, str, Any]]:
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(function).parameters.values()]


def test_the_public_signatures_stay():
    url, task_id, service, job_id, conn, kwargs = (
        ("container_url", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("task_id", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("service", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("job_id", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("conn_str", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("kwargs", "VAR_KEYWORD", inspect.Parameter.empty),
    )
    credential = ("credential", "KEYWORD_ONLY", None)
    margin = ("sas_margin", "KEYWORD_ONLY", None)  # every constructor warns of a SAS about to expire
    for module in FLAVOURS.values():
        task, job = module.TaskOutputStorage, module.JobOutputStorage
        assert parameters(task) == [url, task_id, credential, margin, kwargs]
        assert parameters(job) == [url, credential, margin, kwargs]
        assert parameters(task.from_service) == [service, job_id, task_id, margin]
        assert parameters(job.from_service) == [service, job_id, margin]
        assert parameters(task.from_connection_string) == [conn, job_id, task_id, margin, kwargs]
        assert parameters(job.from_connection_string) == [conn, job_id, margin, kwargs]
        sources = ("container_url", "connection_string", "account_url")
        given = [(name, "KEYWORD_ONLY", None) for name in sources]
        ids = [("job_id", "KEYWORD_ONLY", None), ("task_id", "KEYWORD_ONLY", None)]
        assert parameters(task.from_environment) == [*ids, *given, margin, kwargs]
        assert parameters(job.from_environment) == [ids[0], *given, margin, kwargs]
        assert parameters(module.service_from_environment) == [*given[1:], kwargs]
        assert parameters(job.task)[1:] == [task_id]  # after self


def test_job_task_shares_the_connection(azurite, sas_url):
    for module in FLAVOURS.values():
        job = module.JobOutputStorage(sas_url)
        task = job.task("t1")
        assert task._container is job._container
        assert (type(task), task.task_id, task.url) == (module.TaskOutputStorage, "t1", job.url)
        close(job)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_constructor_refuses_bad_ids(flavour, azurite, job_id, sas_url, clean_env):
    module, conn = FLAVOURS[flavour], azurite.connection_string
    task, job = module.TaskOutputStorage, module.JobOutputStorage
    service = SERVICES[flavour].from_connection_string(conn)
    for make in [
        lambda: task(sas_url, "bad task"),
        lambda: task.from_service(service, job_id, "a/b"),
        lambda: task.from_connection_string(conn, job_id, ""),
        lambda: job(sas_url).task("bad:task"),
    ]:
        with pytest.raises(ValueError, match="task id"):
            make()
    for make in [
        lambda: task.from_service(service, "bad job", "t1"),
        lambda: task.from_connection_string(conn, "bad job", "t1"),
        lambda: job.from_service(service, "bad job"),
        lambda: job.from_connection_string(conn, "bad job"),
    ]:
        with pytest.raises(ValueError, match="job id"):
            make()
    close(service)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_from_environment_still_refuses_mismatches(flavour, azurite, sas_url, clean_env):
    module = FLAVOURS[flavour]
    clean_env.setenv("BATCHFILES_CONTAINER_URL", sas_url)
    clean_env.setenv("AZ_BATCH_JOB_ID", "another-job")
    clean_env.setenv("AZ_BATCH_TASK_ID", "t1")
    for cls in (module.TaskOutputStorage, module.JobOutputStorage):
        with pytest.raises(ConfigurationError, match="another job") as info:
            cls.from_environment()
        assert "sig=" not in str(info.value)
    clean_env.setenv("AZ_BATCH_TASK_ID", "bad task")
    clean_env.delenv("AZ_BATCH_JOB_ID")
    with pytest.raises(ValueError, match="task id"):
        module.TaskOutputStorage.from_environment()
    clean_env.delenv("AZ_BATCH_TASK_ID")
    with pytest.raises(ConfigurationError, match="AZ_BATCH_TASK_ID"):
        module.TaskOutputStorage.from_environment()
    close(module.JobOutputStorage.from_environment())  # a job's storage needs no task


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    "url",
    [
        "https://acct.blob.core.windows.net/job-a/t1/$TaskOutput/x.txt?sv=1&sig=abc",  # a blob URL pasted
        "https://acct.blob.core.windows.net/job-a/extra?sv=1&sig=abc",
        "https://acct.blob.core.windows.net/Job_A?sv=1&sig=abc",  # not a container name at all
    ],
)
def test_a_url_that_is_not_a_container_url_is_refused(url: str, flavour: str) -> None:
    """The SDK takes the last path segment as the container: a pasted blob URL silently becomes container
    'x.txt' (another container, reachable with an account SAS or credential)."""
    with pytest.raises(ValueError):
        FLAVOURS[flavour].TaskOutputStorage(url, "t1")
