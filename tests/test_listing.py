"""The library's fast listing (batchfiles._listing), under every snapshot: the SDK internal it sends pages
with, its pages parsed as azure-storage-blob lists them (odd names, metadata keys named like the listing's
own elements, markers), the client's pipeline kept (shared key, SAS, retries, throttling patience), a page
whose body broke off tried again, and the aio form's parsing off the event loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import inspect
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.blob import aio as blob_aio
from batchfiles import (
    JobOutputStorage,
    aio,
    output_storage_container_url,
    prepare_output_storage,
    snapshot,
)
from batchfiles._listing import Listed, pages, pages_async, parse_page
from batchfiles.errors import BatchFilesError, ContainerNotFoundError
from batchfiles.testing import ACCOUNT_NAME, Azurite
from faultproxy import FaultProxy
from hypothesis import given, settings
from hypothesis import strategies as st

#: Names as tasks and other tools leave them: XML's own characters, spaces, non-ASCII, a tab.
ODD_NAMES = [
    "$JobOutput/movie.mp4",
    "t1/$TaskOutput/&<>\"'.txt",
    "t1/$TaskOutput/é €/x.txt",
    "t1/$TaskOutput/a\tb.txt",
    "t1/$TaskLog/stdout.txt",
    "t2/$TaskPreview/empty.png",
    "README",
]
#: Metadata keys named as the listing's own elements: a parser that looks for them anywhere breaks.
ODD_METADATA = {"Blob": "v", "NextMarker": "zz", "Name": "n", "Properties": "p", "Mixed_Case": "Q&<>"}


@pytest.fixture
def odd_container(service: BlobServiceClient, job_id: str) -> ContainerClient:
    """The test's job, prepared, with blobs of odd names and metadata."""
    client = prepare_output_storage(service, job_id)
    for index, name in enumerate(ODD_NAMES):
        data = b"" if name.endswith("empty.png") else name.encode()
        client.upload_blob(name, data, metadata=ODD_METADATA if index % 2 else {})
    return client


def _as_listed(props: Any) -> Listed:
    """What the listing should say of a blob, from azure-storage-blob's own ``list_blobs``."""
    md5 = props.content_settings.content_md5
    return Listed(
        props.name,
        props.size,
        props.last_modified,
        bytes(md5) if md5 else None,
        props.content_settings.content_type,
        props.etag,
        dict(props.metadata),
        props.creation_time,
        props.blob_type,
    )


def test_the_sdk_internal_it_sends_pages_with_is_there(azurite: Azurite) -> None:
    """batchfiles._listing sends its pages with the generated client's ``_send_request`` (the one SDK
    internal it uses): if azure-storage-blob renames or drops it, this says so, before any other test."""
    for module in (ContainerClient, blob_aio.ContainerClient):
        client = module.from_connection_string(azurite.connection_string, "any")
        send = getattr(getattr(client, "_client", None), "_send_request", None)
        assert callable(send), (
            f"{module.__module__}: _client._send_request is gone: see batchfiles/_listing.py"
        )
        assert "stream" in inspect.signature(send).parameters


def test_pages_are_what_the_sdk_lists(odd_container: ContainerClient) -> None:
    """Every blob, in pages of 3 (markers followed), as the SDK's ``list_blobs`` has it: names, sizes,
    times, MD5s, types, ETags and metadata (keys' case kept)."""
    expected = [_as_listed(p) for p in odd_container.list_blobs(include=["metadata"])]
    listed = list(pages(odd_container, None, 3))
    assert [len(page) for page in listed] == [3, 3, 1]
    assert [b for page in listed for b in page] == expected
    assert [b.name for page in pages(odd_container, "t1/", 5000) for b in page] == [
        n for n in sorted(ODD_NAMES) if n.startswith("t1/")
    ]


def test_the_aio_form_parses_off_the_event_loop(azurite: Azurite, odd_container: ContainerClient) -> None:
    expected = [_as_listed(p) for p in odd_container.list_blobs(include=["metadata"])]
    threads: set[int] = set()

    def work(page: list[Listed]) -> list[Listed]:
        threads.add(threading.get_ident())
        return page

    async def scenario() -> tuple[list[Listed], int]:
        async with blob_aio.ContainerClient.from_connection_string(
            azurite.connection_string, odd_container.container_name
        ) as client:
            got = [b async for page in pages_async(client, None, 2, work) for b in page]
        return got, threading.get_ident()

    got, loop_thread = asyncio.run(scenario())
    assert got == expected and threads and loop_thread not in threads


def test_the_aio_snapshot_is_built_off_the_event_loop_and_tells_on_it(
    azurite: Azurite, odd_container: ContainerClient, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The viewer serves requests while it re-lists: the aio snapshot parses and builds in a worker thread;
    ``on_invalid`` is still called on the loop."""
    built: set[int] = set()
    add = snapshot.Builder.add

    def recording(self: snapshot.Builder, listed: Any) -> Any:
        built.add(threading.get_ident())
        return add(self, listed)

    monkeypatch.setattr(snapshot.Builder, "add", recording)
    told: list[tuple[str, int]] = []

    async def scenario() -> tuple[snapshot.JobSnapshot, int]:
        async with aio.JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as job:
            snap = await job.snapshot(on_invalid=lambda name, why: told.append((name, threading.get_ident())))
        return snap, threading.get_ident()

    snap, loop_thread = asyncio.run(scenario())
    assert built and loop_thread not in built
    assert [name for name, _ in told] == ["t1/$TaskOutput/a\tb.txt"] and {t for _, t in told} == {loop_thread}
    assert sorted(snap.tasks) == ["t1", "t2"] and [o.file_path for o in snap.outputs] == ["movie.mp4"]
    assert snap.skipped == 2  # the name with a control character, and README


def test_a_sas_stays_in_the_url_and_a_missing_container_is_said(
    azurite: Azurite, service: BlobServiceClient, odd_container: ContainerClient, job_id: str
) -> None:
    url = output_storage_container_url(service, job_id, expiry=timedelta(hours=1))
    with JobOutputStorage(url, sas_margin=timedelta(0)) as job:
        assert sum(1 for _ in job.snapshot(on_invalid=lambda name, why: None).all_outputs()) == 5
    gone = JobOutputStorage.from_connection_string(azurite.connection_string, f"{job_id}-missing")
    with gone, pytest.raises(ContainerNotFoundError):
        gone.snapshot()


def test_the_pipeline_retries_and_waits_out_throttling(
    azurite: Azurite, odd_container: ContainerClient, job_id: str
) -> None:
    """A listing through the client's pipeline: a reset and a 500 are retried; a 503 ServerBusy is
    throttling (the client's ``on_throttled`` hears of it) and waited out; with the shared key's
    signature on every try."""
    listing = lambda req: "comp=list" in req.query  # noqa: E731
    throttled: list[int] = []
    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        proxy.add_rule("reset", listing, times=1)
        proxy.add_rule("status", listing, times=1, status=500)
        proxy.add_rule("status", listing, times=1, status=503, retry_after_s=0)
        conn = azurite.connection_string.replace(azurite.account_url, proxy.url_for(ACCOUNT_NAME))
        with JobOutputStorage.from_connection_string(
            conn, job_id, on_throttled=lambda: throttled.append(1)
        ) as job:
            snap = job.snapshot()
        assert proxy.counts["reset"] == 1 and proxy.counts["status"] == 2
    assert len(throttled) == 1 and sum(1 for _ in snap.all_outputs()) == 5


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
            st.integers(0, 2**50),
            st.dictionaries(
                st.sampled_from(
                    ["Blob", "Blobs", "NextMarker", "Name", "Metadata", "k", "EnumerationResults"]
                ),
                st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8),
                max_size=3,
            ),
            st.binary(min_size=16, max_size=16) | st.none(),
        ),
        max_size=12,
    ),
    st.text(st.characters(whitelist_categories=("L", "N")), max_size=10),
    st.integers(1, 200),
)
def test_any_page_parses_back(blobs: list[Any], marker: str, slice_size: int) -> None:
    """A page as the service writes it (a name XML cannot hold percent-encoded, ``Encoded="true"``; any
    metadata, even keys named as the listing's elements), cut in any slices: every blob, and the marker."""
    when = datetime(2026, 12, 6, 5, 25, 14, tzinfo=timezone.utc)
    root = ElementTree.Element("EnumerationResults", ContainerName="c")
    ElementTree.SubElement(root, "Prefix")
    ElementTree.SubElement(root, "Marker").text = "m"
    listing = ElementTree.SubElement(root, "Blobs")
    expected = []
    for name, size, metadata, md5 in blobs:
        blob = ElementTree.SubElement(listing, "Blob")
        name_node = ElementTree.SubElement(blob, "Name")
        if any(ord(c) < 0x20 or 0xFFFE <= ord(c) <= 0xFFFF for c in name):
            name_node.text, name_node.attrib["Encoded"] = quote(name, safe=""), "true"
        else:
            name_node.text = name
        properties = ElementTree.SubElement(blob, "Properties")
        ElementTree.SubElement(properties, "Last-Modified").text = format_datetime(when, usegmt=True)
        ElementTree.SubElement(properties, "Etag").text = "0x1"
        ElementTree.SubElement(properties, "Content-Length").text = str(size)
        if md5 is not None:
            ElementTree.SubElement(properties, "Content-MD5").text = base64.b64encode(md5).decode()
        node = ElementTree.SubElement(blob, "Metadata")
        for key, value in metadata.items():
            ElementTree.SubElement(node, key).text = value
        expected.append(Listed(name, size, when, md5, None, "0x1", dict(metadata)))
    ElementTree.SubElement(root, "NextMarker").text = marker or None
    body = b'<?xml version="1.0" encoding="utf-8"?>' + ElementTree.tostring(root, encoding="utf-8")
    assert parse_page(body, slice_size) == (expected, marker or None)


TAGS = st.sampled_from(["EnumerationResults", "Blobs", "Blob", "Name", "Properties", "Content-Length", "x"])
XMLISH = st.recursive(
    st.text(max_size=5).map(lambda t: t.replace("&", "&amp;").replace("<", "&lt;")),
    lambda inner: st.tuples(TAGS, st.lists(inner, max_size=3)).map(
        lambda node: f"<{node[0]}>{''.join(node[1])}</{node[0]}>"
    ),
    max_leaves=12,
)


@given(st.binary(max_size=200) | XMLISH.map(str.encode))
def test_any_body_parses_or_is_a_parse_error(body: bytes) -> None:
    """Whatever a page holds, the parser returns records or raises ``ParseError`` (said as a
    ``BatchFilesError`` by the listing), never another error."""
    with contextlib.suppress(ElementTree.ParseError):
        parse_page(body)


@pytest.mark.parametrize(
    ("prop", "text"),
    [
        ("Content-Length", "9" * 5000),  # past int()'s 4,300 digits
        ("Last-Modified", "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"),
        ("Creation-Time", "Mon, 01 Jan 2026 00:00:00 +99999999999999999999999"),
    ],
)
def test_a_property_out_of_any_range_is_not_an_error(prop: str, text: str) -> None:
    """A hostile page's numbers too big for ``int`` or a date: the property is unknown (as one that does
    not parse), never a ``ValueError``/``OverflowError`` out of the listing."""
    body = (
        f"<EnumerationResults><Blobs><Blob><Name>a</Name><Properties><{prop}>{text}</{prop}>"
        "</Properties></Blob></Blobs><NextMarker/></EnumerationResults>"
    ).encode()
    ((blob,), marker) = parse_page(body)
    found = (blob.name, blob.size, blob.last_modified, blob.creation_time, marker)
    assert found == ("a", 0, None, None, None)


# --- a page whose body broke off ----------------------------------------------------------------------------


class _CuttingProxy:
    """Forwards each request to ``port`` on a connection of its own (answers with ``Connection: close``);
    the first ``cuts`` answers to a listing are sent with half their body, then the connection closed."""

    def __init__(self, port: int, cuts: int) -> None:
        self.upstream, self.cuts, self.listings = port, cuts, 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pool = ThreadPoolExecutor(4)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._pool.submit(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        with client, client.makefile("rb") as reader:
            request_line = reader.readline().decode("latin-1").split()
            headers: dict[str, str] = {}
            while (line := reader.readline()) not in (b"\r\n", b""):
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip()] = value.strip()
            body = reader.read(int(headers.get("Content-Length", "0") or 0))
            upstream = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=30)
            upstream.request(request_line[0], request_line[1], body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            upstream.close()
            head = [f"HTTP/1.1 {answer.status} {answer.reason}"]
            skip = ("connection", "content-length", "transfer-encoding")
            head += [f"{k}: {v}" for k, v in answer.getheaders() if k.lower() not in skip]
            head += [f"Content-Length: {len(data)}", "Connection: close"]
            if "comp=list" in request_line[1]:
                self.listings += 1
                if self.cuts > 0:
                    self.cuts -= 1
                    data = data[: len(data) // 2]
            client.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)

    def close(self) -> None:
        self._listener.close()
        self._pool.shutdown(wait=False)


def _through(azurite: Azurite, port: int) -> str:
    return azurite.connection_string.replace(azurite.account_url, f"http://127.0.0.1:{port}/{ACCOUNT_NAME}")


@pytest.fixture
def cutting(azurite: Azurite) -> Iterator[_CuttingProxy]:
    proxy = _CuttingProxy(azurite.port, cuts=2)
    yield proxy
    proxy.close()


def test_a_page_whose_body_broke_off_is_asked_again(
    azurite: Azurite, odd_container: ContainerClient, job_id: str, cutting: _CuttingProxy
) -> None:
    conn = _through(azurite, cutting.port)
    with JobOutputStorage.from_connection_string(conn, job_id) as job:
        assert sum(1 for _ in job.snapshot().all_outputs()) == 5
    assert cutting.listings == 3


def test_the_aio_form_asks_again_too(
    azurite: Azurite, odd_container: ContainerClient, job_id: str, cutting: _CuttingProxy
) -> None:
    conn = _through(azurite, cutting.port)

    async def scenario() -> int:
        async with aio.JobOutputStorage.from_connection_string(conn, job_id) as job:
            return sum(1 for _ in (await job.snapshot()).all_outputs())

    assert asyncio.run(scenario()) == 5 and cutting.listings == 3


def test_a_body_broken_off_every_time_is_an_error(
    azurite: Azurite, odd_container: ContainerClient, job_id: str
) -> None:
    proxy = _CuttingProxy(azurite.port, cuts=10)
    try:
        job = JobOutputStorage.from_connection_string(_through(azurite, proxy.port), job_id)
        with job, pytest.raises(BatchFilesError, match="cannot reach storage"):
            job.snapshot()
    finally:
        proxy.close()
    assert proxy.listings == 3
