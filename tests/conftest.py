"""Shared fixtures: one Azurite per test session, a fresh job (container) per test; tests stay on loopback.

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

import pytest
from azure.storage.blob import BlobServiceClient
from batchfiles.testing import Azurite

sys.path.insert(0, str(Path(__file__).parent))  # tests' own helper modules
from faultproxy import STRICT_TEST_PASS, FaultProxy
from strict_azurite import StrictAzurite

#: Fixtures of the command line's end-to-end tests (env, bare_env, prepared, task_storage).
pytest_plugins = ["cli_helpers"]

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


@pytest.fixture
def service(azurite: Azurite) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as client:
        yield client


@pytest.fixture
def job_id(request: pytest.FixtureRequest) -> str:
    """A job id of its own for every test, so tests never share a container."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    return f"{stem}-{uuid.uuid4().hex[:8]}"
