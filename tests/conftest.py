"""Shared fixtures: one Azurite per test session, a fresh job (container) per test and what is made on it (a
task's and the job's storage, on the sync or the aio API; the container; a fault proxy; a Batch node's
environment); tests stay on loopback. Shared functions are in helpers.py.

Nothing in a test may reach past loopback. In this process, resolving any other host name or address
fails. For this process and every child it starts, azure-identity's managed identity is pointed at a
closed loopback port (its App Service variables), so a ``DefaultAzureCredential`` built by the CLI or the
library fails at once instead of probing the instance metadata endpoint.

The strict pass (``BATCHFILES_TEST_STRICT=1``, ``make test-strict``): the session's ``azurite`` is a
:class:`StrictAzurite`, whose endpoint is a strict :class:`faultproxy.FaultProxy` in front of Azurite, so the
tests meet the real Azure Blob service's rules where Azurite is lenient (see tests/faultproxy.py). A test's
own ``FaultProxy(azurite.port, ...)`` then forwards to the strict proxy, and its throttled answers carry no
``Retry-After`` (``faultproxy.STRICT_TEST_PASS``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from batchfiles import naming, prepare_output_storage
from batchfiles.testing import Azurite

sys.path.insert(0, str(Path(__file__).parent))  # tests' own helper modules
from faultproxy import STRICT_TEST_PASS, FaultProxy
from helpers import ENV_PREFIXES, SYNC, TASK, Api, blocking_aio, fast_retries
from strict_azurite import StrictAzurite

#: A loopback port nothing listens on, as the managed-identity endpoint of every process of the tests.
os.environ.update(IDENTITY_ENDPOINT="http://127.0.0.1:9/msi/token", IDENTITY_HEADER="batchfiles-tests")
for _name in ("MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT"):
    os.environ.pop(_name, None)


def is_loopback(host: object) -> bool:
    """Whether ``host`` (a name or an address, str or bytes) is this machine's loopback."""
    if host is None:
        return True  # a passive socket (bind to all) or the local host
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text.split("%")[0]).is_loopback
    except ValueError:
        return False


_getaddrinfo = socket.getaddrinfo


def _loopback_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if not is_loopback(host):
        raise OSError(f"tests stay on loopback: refused to resolve {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_getaddrinfo


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as server:
        if not STRICT_TEST_PASS:
            yield server
            return
        strict = FaultProxy(server.port, strict=server.connection_string, deadline_s=24 * 3600.0)
        with strict:
            yield StrictAzurite(server, strict)


@pytest.fixture(scope="session")
def upstream(azurite: Azurite) -> Azurite:
    """The real Azurite: in the strict pass the one behind the session's strict proxy, else ``azurite``."""
    return getattr(azurite, "upstream", azurite)


@pytest.fixture
def service(azurite: Azurite) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as client:
        yield client


@pytest.fixture
def job_id(request: pytest.FixtureRequest) -> str:
    """A job id of its own for every test, so tests never share a container."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def prepared(service: BlobServiceClient, job_id: str) -> str:
    """The test's job id, its container made by ``prepare_output_storage``."""
    prepare_output_storage(service, job_id)
    return job_id


@pytest.fixture
def container(azurite: Azurite, prepared: str) -> Iterator[ContainerClient]:
    """The prepared job's container, through a client of its own that retries fast (as raw writes of
    another tool, or a TrackedSave's own client)."""
    name = naming.container_name(prepared)
    with ContainerClient.from_connection_string(azurite.connection_string, name, **fast_retries()) as client:
        yield client


# --- the public API, sync and aio ---------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.apis("sync", "aio")`` (on a test or a module): the test runs once per API named, each
    through the ``api`` fixture (and ``task``, ``job``, which use it). One name: no parametrisation."""
    mark = metafunc.definition.get_closest_marker("apis")
    if mark is not None and len(mark.args) > 1 and "api" in metafunc.fixturenames:
        metafunc.parametrize("api", mark.args, indirect=True)


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    """The public API the test calls: ``batchfiles`` (sync), or ``batchfiles.aio`` through a blocking view
    (see helpers.Api) when the ``apis`` mark names it."""
    mark = request.node.get_closest_marker("apis")
    name = getattr(request, "param", mark.args[0] if mark else "sync")
    if name == "sync":
        yield SYNC
        return
    assert name == "aio", name
    with blocking_aio() as blocking:
        yield blocking


@pytest.fixture
def task(api: Api, azurite: Azurite, prepared: str) -> Iterator[Any]:
    """Task ``helpers.TASK``'s storage in the prepared job, on the test's ``api``."""
    with api.TaskOutputStorage.from_connection_string(azurite.connection_string, prepared, TASK) as storage:
        yield storage


@pytest.fixture
def job(api: Api, azurite: Azurite, prepared: str) -> Iterator[Any]:
    """The prepared job's storage, on the test's ``api``."""
    with api.JobOutputStorage.from_connection_string(azurite.connection_string, prepared) as storage:
        yield storage


# --- faults -------------------------------------------------------------------------------------------------


@pytest.fixture
def proxy(request: pytest.FixtureRequest, azurite: Azurite) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of the session's Azurite, made with the keyword arguments of the
    test's (or its module's) ``fault_proxy`` mark: ``pytestmark = pytest.mark.fault_proxy(seed=5)``."""
    mark = request.node.get_closest_marker("fault_proxy")
    with FaultProxy(azurite.port, **(mark.kwargs if mark else {})) as server:
        yield server


# --- the command line's environment -------------------------------------------------------------------------


@pytest.fixture
def env(azurite: Azurite, job_id: str) -> dict[str, str]:
    """A Batch node's environment: job and task ids, and storage through a connection string."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    return {
        **clean,
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AZ_BATCH_JOB_ID": job_id,
        "AZ_BATCH_TASK_ID": TASK,
    }


@pytest.fixture
def bare_env() -> dict[str, str]:
    """No storage and no ids at all."""
    return {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
