"""The Azurite harness: real storage for tests, benchmarks and the demo."""

from __future__ import annotations

import os
import signal

import pytest
from azure.storage.blob import BlobServiceClient
from batchfiles import naming
from batchfiles.testing import Azurite, AzuriteError


def test_smoke_container_upload_list_download(service: BlobServiceClient, job_id: str):
    container = service.create_container(naming.container_name(job_id))
    name = naming.blob_name("TaskOutput", "frames/0001.txt", "task-1")
    container.upload_blob(name, b"frame one")
    assert [b.name for b in container.list_blobs()] == ["task-1/$TaskOutput/frames/0001.txt"]
    assert container.download_blob(name).readall() == b"frame one"


def test_stop_leaves_no_process():
    server = Azurite().start()
    pid = server._proc.pid
    assert server.port and server.account_url.endswith(f":{server.port}/devstoreaccount1")
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_executable_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("BATCHFILES_AZURITE", str(tmp_path / "nope"))
    with pytest.raises(AzuriteError, match="BATCHFILES_AZURITE"):
        Azurite().start()


def test_process_exits_with_the_context(azurite: Azurite):
    with Azurite() as other:
        pid = other._proc.pid
        assert other.port != azurite.port
    with pytest.raises(ProcessLookupError):
        os.kill(pid, signal.SIG_DFL)
