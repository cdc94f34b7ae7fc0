"""Fixtures of the live contract tests, and the gate that keeps them out of every other run.

The tests here are collected only when the command line names this folder (``make test-live`` runs
``pytest tests/live --confcutdir=tests/live``): a plain ``pytest`` (``make test``, CI) reaches this folder
through ``testpaths`` and ignores it, whatever the environment holds. Named, they are skipped unless
``BATCHFILES_LIVE_CONTAINER_URL`` is set, and no request is made before that is checked.

With a SAS in that URL, every request uses it. Without one, the account key in
``BATCHFILES_LIVE_ACCOUNT_KEY`` signs two SAS of the suite's own for the container: one with every right it
needs (racwdl) and one without delete. No test builds ``DefaultAzureCredential``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.storage.blob import ContainerClient
from live_support import (
    DEFAULT_ANSWERS,
    ENV_ACCOUNT_KEY,
    ENV_ANSWERS,
    ENV_NO_DELETE,
    ENV_URL,
    Recorder,
    Target,
    public_url,
)

HERE = Path(__file__).resolve().parent


def _named(config: pytest.Config) -> bool:
    """Whether the command line names this folder or something in it."""
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if HERE in collection_path.resolve().parents and not _named(config):
        return True
    return None


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _signed_urls(url: str) -> tuple[str, str]:
    """Two SAS URLs of the container at ``url`` (racwdl, and racwl), signed with the account key in
    ``BATCHFILES_LIVE_ACCOUNT_KEY``."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    key = os.environ.get(ENV_ACCOUNT_KEY)
    account_url, _, container = public_url(url).rstrip("/").rpartition("/")
    host = urlsplit(account_url).hostname or ""  # acct.blob.core.windows.net, or path-style on loopback
    account = account_url.rpartition("/")[2] if _is_loopback(host) else host.split(".")[0]
    if not container or account_url.endswith(":/") or not account:
        raise pytest.UsageError(f"{ENV_URL} is not a container URL: {public_url(url)}")
    if not key:
        raise pytest.UsageError(f"{ENV_URL} has no SAS: set {ENV_ACCOUNT_KEY} to the account's key")
    expiry = datetime.now(timezone.utc) + timedelta(hours=2)

    def signed(delete: bool) -> str:
        rights = ContainerSasPermissions(
            read=True, add=True, create=True, write=True, delete=delete, list=True
        )
        sas = generate_container_sas(account, container, account_key=key, permission=rights, expiry=expiry)
        return f"{account_url}/{container}?{sas}"

    return signed(True), signed(False)


@pytest.fixture(scope="session")
def target() -> Target:
    url = os.environ.get(ENV_URL)
    if not url:
        pytest.skip(
            f"{ENV_URL} is not set: the live suite runs only against an account (tests/live/README.md)"
        )
    host = urlsplit(url).hostname or ""
    if socket.getaddrinfo.__module__ != "socket" and not _is_loopback(host):
        pytest.exit(
            "the live suite was run with tests/conftest.py, which keeps tests on loopback: run "
            "`make test-live` (pytest tests/live --confcutdir=tests/live)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    if "sig=" in urlsplit(url).query.lower():
        return Target(url, os.environ.get(ENV_NO_DELETE) or None, public_url(url))
    full, no_delete = _signed_urls(url)
    return Target(full, no_delete, public_url(url))


@pytest.fixture(scope="session")
def answers(target: Target) -> Recorder:
    path = Path(os.environ.get(ENV_ANSWERS) or DEFAULT_ANSWERS).resolve()
    return Recorder(path, target.service)


@pytest.fixture(scope="session")
def container(target: Target) -> Iterator[ContainerClient]:
    """The container, one request per call (no retries): the answers are the service's first ones."""
    with target.container() as client:
        yield client


@pytest.fixture
def no_delete_container(target: Target) -> Iterator[ContainerClient]:
    if target.no_delete_url is None:
        pytest.skip(f"{ENV_NO_DELETE} is not set")
    with target.container(no_delete=True) as client:
        yield client


@pytest.fixture
def prefix(target: Target) -> Iterator[str]:
    """A blob prefix of the test's own (``batchfiles-live-<hex>/``); every blob under it is deleted after."""
    name = f"batchfiles-live-{uuid.uuid4().hex[:16]}/"
    yield name
    with target.container(retry=True) as client:
        for blob in client.list_blobs(name_starts_with=name):
            client.delete_blob(blob.name)
