"""The container's blobs listed fast, for snapshots and ``follow_logs``: each page of List Blobs (with
metadata) is fetched through the container client's own pipeline (its credential, retries and throttling
patience) and parsed here with ElementTree, in slices, into :class:`Listed` records holding only what a
snapshot or a follow reads of a blob. The aio form parses each page, and runs the caller's work on it, in a
worker thread, so the event loop stays free.

Why not ``ContainerClient.list_blobs``: it deserialises each page into a full ``BlobProperties`` per blob,
about 0.4 ms of CPU per blob (on the event loop, for the aio client); this parser takes about a tenth of that.

SDK internal, here alone: azure-storage-blob has no public call that sends a request through a client's
pipeline and leaves the body unparsed (``list_blobs`` and the generated ``list_blob_flat_segment`` always
deserialise it; ``list_blob_names`` has no metadata). So a page is sent with the generated client's
``_send_request`` (``container._client``, the "send_request" of Azure's generated clients, documented there
but underscored in azure-storage-blob), through the same policies as every SDK call. tests/test_listing.py
fails if azure-storage-blob changes it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote
from xml.etree import ElementTree

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest

from .errors import BatchFilesError

#: Bytes of a page's XML parsed in one call: one C call over a whole page (about 5 MB for 5,000 blobs with
#: metadata) would hold the GIL, and so an event loop in another thread, for as long as it runs.
SLICE = 64 * 1024
#: Tries of a page whose body broke off after a 200 (the pipeline retried the rest: with ``stream=True`` it
#: hands the answer over before its body is read), and the seconds before the second and third.
BODY_TRIES = 3
BODY_BACKOFF = (0.5, 2.0)

T = TypeVar("T")


@dataclass(slots=True)
class Listed:
    """What a snapshot (and a follow) reads of a listed blob: ``BlobProperties``' attributes of the same
    names, and its ``content_settings``' ``content_md5`` and ``content_type``; ``metadata`` as stored
    (keys' case kept); ``etag`` as a listing gives it (no quotes); ``blob_type`` as the service names it
    (``BlockBlob``, ``AppendBlob``)."""

    name: str
    size: int
    last_modified: datetime | None
    content_md5: bytes | None
    content_type: str | None
    etag: str | None
    metadata: dict[str, str]
    creation_time: datetime | None = None
    blob_type: str | None = None


def pages(container: Any, prefix: str | None, page_size: int) -> Iterator[list[Listed]]:
    """The blobs of ``container`` (an ``azure.storage.blob.ContainerClient``) whose names start with
    ``prefix``, a page of at most ``page_size`` at a time, in name order. Raises azure-core's errors, as
    ``list_blobs`` does."""
    marker: str | None = None
    while True:
        listed, marker = _parsed(container, _page(container, prefix, marker, page_size))
        yield listed
        if not marker:
            return


async def pages_async(
    container: Any, prefix: str | None, page_size: int, work: Callable[[list[Listed]], T]
) -> AsyncIterator[T]:
    """:func:`pages` over an ``azure.storage.blob.aio.ContainerClient``: each page is fetched on the event
    loop, then parsed and handed to ``work`` in a worker thread; yields what ``work`` returns, page by
    page (``work`` runs once at a time, in listing order)."""

    def parse_and_work(body: bytes) -> tuple[T, str | None]:
        listed, marker = _parsed(container, body)
        return work(listed), marker

    marker: str | None = None
    while True:
        body = await _page_async(container, prefix, marker, page_size)
        result, marker = await asyncio.to_thread(parse_and_work, body)
        yield result
        if not marker:
            return


def _request(container: Any, prefix: str | None, marker: str | None, page_size: int) -> HttpRequest:
    """List Blobs of one page; a SAS, if any, stays in the client's URL (the pipeline signs the rest)."""
    params = {"restype": "container", "comp": "list", "include": "metadata", "maxresults": str(page_size)}
    if prefix:
        params["prefix"] = prefix
    if marker:
        params["marker"] = marker
    base, _, query = container.url.partition("?")
    parts = [p for p in query.split("&") if p] + [f"{k}={quote(v, safe='')}" for k, v in params.items()]
    return HttpRequest(
        "GET",
        f"{base}?{'&'.join(parts)}",
        headers={"x-ms-version": container.api_version, "Accept": "application/xml"},
    )


def _page(container: Any, prefix: str | None, marker: str | None, page_size: int) -> bytes:
    """One page, as the service sent it. ``stream=True``: azure-core then leaves the body alone (its
    ``ContentDecodePolicy`` would parse all of it into a tree first)."""
    for attempt in range(1, BODY_TRIES + 1):
        request = _request(container, prefix, marker, page_size)
        response = container._client._send_request(request, stream=True)  # the SDK internal: see above
        try:
            if response.status_code != 200:
                raise _error(response)
            try:
                return bytes(response.read())
            except AzureError as err:
                _broke_off(err, attempt)
        finally:
            response.close()
        time.sleep(BODY_BACKOFF[attempt - 1])
    raise AssertionError("unreachable")


async def _page_async(container: Any, prefix: str | None, marker: str | None, page_size: int) -> bytes:
    """:func:`_page` over an aio client."""
    for attempt in range(1, BODY_TRIES + 1):
        request = _request(container, prefix, marker, page_size)
        response = await container._client._send_request(request, stream=True)  # the SDK internal
        try:
            if response.status_code != 200:
                raise _error(response)
            try:
                return bytes(await response.read())
            except AzureError as err:
                _broke_off(err, attempt)
        finally:
            await response.close()
        await asyncio.sleep(BODY_BACKOFF[attempt - 1])
    raise AssertionError("unreachable")


def _broke_off(err: AzureError, attempt: int) -> None:
    """A page's body broke off (a reset, a short read): asked again, up to :data:`BODY_TRIES` in all."""
    if attempt >= BODY_TRIES:
        raise ServiceResponseError(
            f"the answer to a listing broke off {attempt} times ({type(err).__name__})", error=err
        ) from None


def _error(response: Any) -> HttpResponseError:
    """The azure-core error of a failed listing, with the service's ``x-ms-error-code``, of the class the
    SDK would raise (:func:`batchfiles._errors.storage_errors` translates it)."""
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


def _parsed(container: Any, body: bytes) -> tuple[list[Listed], str | None]:
    try:
        return parse_page(body)
    except ElementTree.ParseError as err:
        raise BatchFilesError(
            f"the listing of container {container.container_name!r} is not the XML storage sends ({err})"
        ) from None


def parse_page(body: bytes, slice_size: int = SLICE) -> tuple[list[Listed], str | None]:
    """The blobs of one page of List Blobs (``include=metadata``), and the marker of the next page (None:
    the last). Parsed in slices of ``slice_size`` bytes. ``ElementTree.ParseError`` if it is not XML.

    Only elements' ends are looked at (half the events of a parse that tracks depth): a ``Blob`` with
    children is one of ``EnumerationResults/Blobs`` (a metadata value named ``Blob`` is text, never an
    element with children), and the marker is the root's own ``NextMarker`` child, read at the root's end
    (the last event)."""
    parser = ElementTree.XMLPullParser(events=("end",))
    listed: list[Listed] = []
    dates: dict[str, datetime | None] = {}  # many blobs of a page share their second
    marker: str | None = None
    for at in range(0, len(body), slice_size):
        parser.feed(body[at : at + slice_size])
        for _, node in parser.read_events():
            tag = node.tag
            if tag == "Blob" and len(node):
                listed.append(_listed(node, dates))
                node.clear()
            elif tag == "EnumerationResults" and len(node):
                marker = node.findtext("NextMarker") or None
    parser.close()
    return listed, marker


def _listed(blob: ElementTree.Element, dates: dict[str, datetime | None]) -> Listed:
    name, size, modified, md5, content_type, etag = "", 0, None, None, None, None
    created = blob_type = None
    metadata: dict[str, str] = {}
    for child in blob:
        tag = child.tag
        if tag == "Name":
            name = child.text or ""
            if child.get("Encoded") == "true":  # characters XML cannot hold, percent-encoded
                name = unquote(name)
        elif tag == "Properties":
            for prop in child:
                what, text = prop.tag, prop.text
                if not text:
                    continue
                if what == "Content-Length":
                    size = int(text) if text.isascii() and text.isdigit() and len(text) < 20 else 0
                elif what in ("Last-Modified", "Creation-Time"):
                    if text not in dates:
                        dates[text] = _http_date(text)
                    if what == "Last-Modified":
                        modified = dates[text]
                    else:
                        created = dates[text]
                elif what == "Content-MD5":
                    md5 = _md5(text)
                elif what == "Content-Type":
                    content_type = text
                elif what == "Etag":
                    etag = text
                elif what == "BlobType":
                    blob_type = text
        elif tag == "Metadata":
            metadata = {m.tag: m.text or "" for m in child}
    return Listed(name, size, modified, md5, content_type, etag, metadata, created, blob_type)


def _md5(text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True) or None
    except (binascii.Error, ValueError):
        return None


def _http_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):
        return None
