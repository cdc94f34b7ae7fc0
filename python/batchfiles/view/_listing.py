"""The job's listing for ``batchfiles view``, read without holding up the server: each page of List Blobs is
fetched on the event loop through the container client's own pipeline (its credential, retries and
throttling patience), and parsed in a worker thread.

azure-storage-blob's ``list_blobs`` parses its pages on the event loop, into a full ``BlobProperties`` per
blob: about 0.4 ms of CPU per blob, seconds for a job of thousands of tasks, during which the server
answered nothing. The page's XML is parsed here with ElementTree into :class:`Listed` records that hold only
what the view reads of a blob (name, size, time, metadata).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote
from xml.etree import ElementTree

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest

#: Blobs per page (the service's most).
PAGE = 5000
#: Bytes of a page's XML parsed in one call.
SLICE = 64 * 1024


@dataclass
class Listed:
    """What the view reads of a listed blob (the attributes of ``BlobProperties`` of the same names)."""

    name: str
    size: int
    last_modified: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)


async def list_blobs(container: Any, prefix: str | None = None) -> list[Listed]:
    """Every blob of ``container`` (an ``azure.storage.blob.aio.ContainerClient``) whose name starts with
    ``prefix``, with its metadata. Raises azure-core's errors, as ``list_blobs`` does."""
    listed: list[Listed] = []
    marker: str | None = None
    while True:
        body = await _page(container, prefix, marker)
        page, marker = await asyncio.to_thread(parse_page, body)
        listed.extend(page)
        if not marker:
            return listed


async def _page(container: Any, prefix: str | None, marker: str | None) -> bytes:
    """One page of List Blobs, as the service sent it (its SAS, if any, stays in the client's URL)."""
    params = {"restype": "container", "comp": "list", "include": "metadata", "maxresults": str(PAGE)}
    if prefix:
        params["prefix"] = prefix
    if marker:
        params["marker"] = marker
    base, _, query = container.url.partition("?")
    parts = [p for p in query.split("&") if p] + [f"{k}={quote(v, safe='')}" for k, v in params.items()]
    request = HttpRequest(
        "GET",
        f"{base}?{'&'.join(parts)}",
        headers={"x-ms-version": container.api_version, "Accept": "application/xml"},
    )
    # stream=True: azure-core then leaves the body alone (no XML parse on the loop); read here
    response = await container._client._send_request(request, stream=True)
    try:
        body = await response.read()
    finally:
        await response.close()
    if response.status_code != 200:
        raise _error(response)
    return bytes(body)


def _error(response: Any) -> HttpResponseError:
    """The azure-core error of a failed listing, with the service's ``x-ms-error-code`` (as the SDK's)."""
    code = response.headers.get("x-ms-error-code")
    status = response.status_code
    kind: type[HttpResponseError] = HttpResponseError
    if status == 404:
        kind = ResourceNotFoundError
    elif status in (401, 403):
        kind = ClientAuthenticationError
    error = kind(message=f"{code or 'error'} (HTTP {status}) listing the container", response=response)
    error.error_code = code
    return error


def parse_page(body: bytes) -> tuple[list[Listed], str | None]:
    """The blobs of one page of List Blobs, and the marker of the next page (None: the last). Parsed in
    slices of :data:`SLICE` bytes: one C call over a whole page (5 MB) would hold the GIL, and so the
    server's event loop, for as long as it runs."""
    parser = ElementTree.XMLPullParser(events=("start", "end"))
    listed: list[Listed] = []
    marker: str | None = None
    depth = 0
    for at in range(0, len(body), SLICE):
        parser.feed(body[at : at + SLICE])
        for event, node in parser.read_events():
            if event == "start":
                depth += 1
                continue
            depth -= 1
            if (
                depth == 2 and node.tag == "Blob"
            ):  # EnumerationResults/Blobs/Blob (a metadata key may be "Blob")
                listed.append(_listed(node))
                node.clear()
            elif depth == 1 and node.tag == "NextMarker":
                marker = node.text or None
    parser.close()
    return listed, marker


def _listed(blob: ElementTree.Element) -> Listed:
    name_node = blob.find("Name")
    name = "" if name_node is None else name_node.text or ""
    if name_node is not None and name_node.get("Encoded") == "true":  # characters XML cannot hold
        name = unquote(name)
    size = blob.findtext("Properties/Content-Length") or "0"
    metadata = blob.find("Metadata")
    return Listed(
        name=name,
        size=int(size) if size.isascii() and size.isdigit() else 0,
        last_modified=_http_date(blob.findtext("Properties/Last-Modified")),
        metadata={m.tag: m.text or "" for m in metadata} if metadata is not None else {},
    )


def _http_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
