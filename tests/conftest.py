"""Shared fixtures: one Azurite per test session, and a fresh job (container) per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from batchfiles.testing import Azurite

sys.path.insert(0, str(Path(__file__).parent))  # tests' own helper modules


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as server:
        yield server


@pytest.fixture
def service(azurite: Azurite) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as client:
        yield client


@pytest.fixture
def job_id(request: pytest.FixtureRequest) -> str:
    """A job id of its own for every test, so tests never share a container."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    return f"{stem}-{uuid.uuid4().hex[:8]}"
