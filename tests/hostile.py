"""Blobs as a hostile task could write them: any name, through raw HTTP, so no client normalises it.

The SDK quotes ``%`` and urllib3 removes ``.``/``..`` segments from request URLs; a task holding the job's
SAS can still send ``%2E%2E`` itself, and storage then stores a name with ``..`` in it.
"""

from __future__ import annotations

import http.client
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlsplit

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
from batchfiles import naming
from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME


def sas_url(service: BlobServiceClient, job_id: str) -> str:
    """The job container's URL with a SAS that may read, write and list (as a task's may)."""
    container = naming.container_name(job_id)
    sas = generate_container_sas(
        ACCOUNT_NAME,
        container,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, add=True, create=True, write=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(days=2),
    )
    return f"{service.url.rstrip('/')}/{container}?{sas}"


def encode(name: str) -> str:
    """The URL path of a blob name with every segment percent-encoded, ``.`` included."""
    return "/".join(
        quote(seg, safe="") if seg not in (".", "..") else seg.replace(".", "%2E") for seg in name.split("/")
    )


def _request(container_url: str, method: str, name: str, body: bytes = b"", headers: dict | None = None):
    parts = urlsplit(container_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, f"{parts.path}/{encode(name)}?{parts.query}", body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def put(container_url: str, name: str, data: bytes) -> int:
    """Store ``data`` under exactly ``name`` (as storage decodes it); the HTTP status."""
    headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06", "Content-Length": str(len(data))}
    status, _ = _request(container_url, "PUT", name, data, headers)
    return status


def get(container_url: str, name: str) -> bytes:
    """The stored bytes of exactly the blob ``name``."""
    status, data = _request(container_url, "GET", name, headers={"x-ms-version": "2021-08-06"})
    assert status == 200, (status, name)
    return data
