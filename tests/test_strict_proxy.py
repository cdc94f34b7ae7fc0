"""The strict mode of the fault proxy: each rule answers as the Azure Blob service does, against Azurite
through the proxy with plain azure-storage-blob clients, and the same proxy without ``strict`` stays as
lenient as Azurite (so each rule is really what strict adds)."""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import (
    BlobClient,
    BlobServiceClient,
    BlobType,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)
from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from faultproxy import MIB, STRICT_TEST_PASS, FaultProxy, Rule, Throttle

#: No retries: every answer of the proxy reaches the test as it is.
NO_RETRY = {"retry_total": 0}


@pytest.fixture(scope="module")
def strict(upstream: Azurite) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.port, strict=upstream.connection_string, deadline_s=600) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def lenient(upstream: Azurite) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.port, deadline_s=600) as proxy:
        yield proxy


def _service(proxy: FaultProxy) -> BlobServiceClient:
    return BlobServiceClient(
        proxy.url_for(ACCOUNT_NAME), {"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY}, **NO_RETRY
    )


@pytest.fixture
def names(upstream: Azurite) -> Iterator[tuple[str, ContainerClient]]:
    """A new container's name, and a client of it straight to Azurite (to see what is really stored)."""
    name = f"strict-{uuid.uuid4().hex[:12]}"
    with BlobServiceClient.from_connection_string(upstream.connection_string) as service:
        direct = service.create_container(name)
        yield name, direct
        direct.delete_container()


def _container(proxy: FaultProxy, name: str) -> ContainerClient:
    return _service(proxy).get_container_client(name)


def _code(error: HttpResponseError) -> str | None:
    return error.response.headers.get("x-ms-error-code") if error.response is not None else None


def test_strict_flag_and_api(strict: FaultProxy, lenient: FaultProxy) -> None:
    assert strict.strict and not lenient.strict
    assert not strict.throttle_retry_after
    assert lenient.throttle_retry_after is (not STRICT_TEST_PASS)
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(1, strict="AccountName=a;AccountKey=a2V5;BlobEndpoint=http://10.0.0.1:10000/a;")
    with pytest.raises(ValueError, match="BlobEndpoint"):
        FaultProxy(1, strict="AccountName=a;AccountKey=a2V5;")


# -- 1. blob type ------------------------------------------------------------------------------------------


def test_put_blob_of_another_type_is_refused(
    strict: FaultProxy, lenient: FaultProxy, names: tuple[str, ContainerClient]
) -> None:
    name, direct = names
    before = strict.strict_hits["blob_type"]
    blob = _container(strict, name).get_blob_client("log.txt")
    blob.upload_blob(b"block")
    with pytest.raises(HttpResponseError) as refused:
        blob.create_append_blob()
    assert refused.value.status_code == 409 and _code(refused.value) == "InvalidBlobType"
    blob.upload_blob(b"again", overwrite=True)  # the same type: overwritten as usual
    blob.delete_blob()
    blob.create_append_blob()
    blob.append_block(b"live")
    with pytest.raises(HttpResponseError) as refused:
        blob.upload_blob(b"block over append", overwrite=True)
    assert refused.value.status_code == 409 and _code(refused.value) == "InvalidBlobType"
    blob.create_append_blob()  # an append blob over an append blob: emptied, as on the service
    assert direct.get_blob_client("log.txt").get_blob_properties().size == 0
    assert strict.strict_hits["blob_type"] == before + 2
    with pytest.raises(ResourceExistsError):  # the condition fails first, as without strict
        blob.upload_blob(b"new only")

    # Azurite alone converts the blob silently.
    other = _container(lenient, name).get_blob_client("log.txt")
    other.upload_blob(b"block over append", overwrite=True)
    assert direct.get_blob_client("log.txt").get_blob_properties().blob_type == BlobType.BLOCKBLOB
    other.create_append_blob()
    assert direct.get_blob_client("log.txt").get_blob_properties().blob_type == BlobType.APPENDBLOB


@pytest.mark.parametrize("through", ["strict", "lenient"])
def test_block_and_append_operations_on_the_other_type_are_refused_by_azurite_too(
    through: str, request: pytest.FixtureRequest, names: tuple[str, ContainerClient]
) -> None:
    """Already faithful on Azurite (so strict need not emulate it): this test notices if that changes."""
    proxy: FaultProxy = request.getfixturevalue(through)
    container = _container(proxy, names[0])
    append, block = container.get_blob_client("append"), container.get_blob_client("block")
    append.create_append_blob()
    block.upload_blob(b"block")
    before = proxy.strict_hits.get("blob_type", 0)
    for operation in (
        lambda: append.stage_block("YWJj", b"abc"),
        lambda: append.commit_block_list([]),
        lambda: block.append_block(b"abc"),
    ):
        with pytest.raises(HttpResponseError) as refused:
            operation()
        assert (refused.value.status_code, _code(refused.value)) == (409, "InvalidBlobType")
    assert proxy.strict_hits.get("blob_type", 0) == before


# -- 2. trailing dots --------------------------------------------------------------------------------------


def test_trailing_dots_are_stored_without_them(
    strict: FaultProxy, lenient: FaultProxy, names: tuple[str, ContainerClient], upstream: Azurite
) -> None:
    name, direct = names
    container = _container(strict, name)
    direct.get_blob_client("a/report").upload_blob(b"first")
    before = strict.strict_hits["trailing_dots"]
    container.get_blob_client("a/report.").upload_blob(b"second", overwrite=True)
    container.get_blob_client("dir../notes..").upload_blob(b"notes")
    assert sorted(b.name for b in direct.list_blobs()) == ["a/report", "dir/notes"]
    assert direct.get_blob_client("a/report").download_blob().readall() == b"second"
    # Reads, properties and deletes of a dotted name reach the stripped one, as on the service.
    assert container.get_blob_client("a/report.").download_blob().readall() == b"second"
    assert container.get_blob_client("dir./notes.").get_blob_properties().size == 5
    container.get_blob_client("dir./notes.").delete_blob()
    # An append blob, block by block, and a block blob committed from blocks.
    log = container.get_blob_client("logs/out.")
    log.create_append_blob()
    log.append_block(b"one ")
    log.append_block(b"two")
    blocks = container.get_blob_client("big.")
    blocks.stage_block("YWJj", b"abc")
    blocks.commit_block_list(["YWJj"])
    assert direct.get_blob_client("logs/out").download_blob().readall() == b"one two"
    assert direct.get_blob_client("big").download_blob().readall() == b"abc"
    assert sorted(b.name for b in direct.list_blobs()) == ["a/report", "big", "logs/out"]
    assert strict.strict_hits["trailing_dots"] > before

    # A container SAS signs no blob name: the same holds.
    sas = generate_container_sas(
        ACCOUNT_NAME,
        name,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, write=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    with ContainerClient.from_container_url(f"{strict.url_for(ACCOUNT_NAME)}/{name}?{sas}") as by_sas:
        by_sas.get_blob_client("sas.").upload_blob(b"sas")
        assert by_sas.get_blob_client("sas.").download_blob().readall() == b"sas"
    assert direct.get_blob_client("sas").exists() and not direct.get_blob_client("sas.").exists()

    # Azurite alone keeps the dots.
    _container(lenient, name).get_blob_client("kept.").upload_blob(b"kept")
    assert direct.get_blob_client("kept.").exists() and not direct.get_blob_client("kept").exists()


def test_percent_encoded_trailing_dots(strict: FaultProxy, names: tuple[str, ContainerClient]) -> None:
    name, direct = names
    blob = _container(strict, name).get_blob_client("report")
    url = blob.url.replace("/report", "/report%2E%2e")
    with BlobClient.from_blob_url(url, {"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY}) as dotted:
        dotted.upload_blob(b"encoded")
    assert [b.name for b in direct.list_blobs()] == ["report"]


# -- 3. metadata -------------------------------------------------------------------------------------------


def _metadata_of_size(size: int) -> dict[str, str]:
    return {"big": "v" * (size - len("big"))}


def test_metadata_over_8_kib_is_refused(
    strict: FaultProxy, lenient: FaultProxy, names: tuple[str, ContainerClient]
) -> None:
    name, direct = names
    container = _container(strict, name)
    blob = container.get_blob_client("meta")
    blob.upload_blob(b"x", metadata=_metadata_of_size(8192))  # exactly 8 KiB: accepted
    too_big = _metadata_of_size(8193)
    before = strict.strict_hits["metadata_size"]
    operations = {
        "put blob": lambda: blob.upload_blob(b"x", overwrite=True, metadata=too_big),
        "set metadata": lambda: blob.set_blob_metadata(too_big),
        "put block list": lambda: container.get_blob_client("committed").commit_block_list(
            [], metadata=too_big
        ),
        "create append blob": lambda: container.get_blob_client("log").create_append_blob(metadata=too_big),
        "copy": lambda: container.get_blob_client("copy").start_copy_from_url(blob.url, metadata=too_big),
        "several pairs": lambda: blob.set_blob_metadata({f"k{i}": "v" * 1000 for i in range(9)}),
    }
    for what, operation in operations.items():
        with pytest.raises(HttpResponseError) as refused:
            operation()
        assert (refused.value.status_code, _code(refused.value)) == (400, "MetadataTooLarge"), what
    assert strict.strict_hits["metadata_size"] == before + len(operations)
    assert direct.get_blob_client("meta").get_blob_properties().metadata == _metadata_of_size(8192)

    _container(lenient, name).get_blob_client("meta").set_blob_metadata(too_big)  # Azurite takes it
    assert direct.get_blob_client("meta").get_blob_properties().metadata == too_big


@pytest.mark.parametrize("bad", ["1st", "with-dash", "dot.ted"])
def test_metadata_names_must_be_identifiers(
    bad: str, strict: FaultProxy, names: tuple[str, ContainerClient]
) -> None:
    blob = _container(strict, names[0]).get_blob_client("meta")
    blob.upload_blob(b"x", metadata={"_ok_Name1": "v"})
    with pytest.raises(HttpResponseError) as refused:
        blob.set_blob_metadata({bad: "v"})
    assert (refused.value.status_code, _code(refused.value)) == (400, "InvalidMetadata")


# -- 4. ranged GET past the end ----------------------------------------------------------------------------


def test_range_starting_at_the_end_is_416(
    strict: FaultProxy, lenient: FaultProxy, names: tuple[str, ContainerClient]
) -> None:
    name, direct = names
    direct.get_blob_client("five").upload_blob(b"hello")
    direct.get_blob_client("empty").upload_blob(b"")
    blob = _container(strict, name).get_blob_client("five")
    assert blob.download_blob(offset=4, length=10).readall() == b"o"
    for offset in (5, 6, 100):
        with pytest.raises(HttpResponseError) as refused:
            blob.download_blob(offset=offset, length=1).readall()
        assert (refused.value.status_code, _code(refused.value)) == (416, "InvalidRange")
        assert refused.value.response.headers["Content-Range"] == "bytes */5"
    with pytest.raises(HttpResponseError) as refused:
        _container(strict, name).get_blob_client("empty").download_blob(offset=0, length=1).readall()
    assert refused.value.status_code == 416
    assert refused.value.response.headers["Content-Range"] == "bytes */0"
    assert _container(strict, name).get_blob_client("empty").download_blob().readall() == b""

    # Azurite alone: 206 with no bytes for a range starting exactly at the end.
    assert (
        _container(lenient, name).get_blob_client("five").download_blob(offset=5, length=1).readall() == b""
    )


# -- 5. throttling without Retry-After ---------------------------------------------------------------------


def _raw_get(proxy: FaultProxy, path: str = "/") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_throttled_answers_carry_no_retry_after_when_strict(upstream: Azurite) -> None:
    throttle = Throttle(requests_per_s=0.01, burst_requests=1, retry_after_s=2)
    conn = upstream.connection_string
    with FaultProxy(upstream.port, strict=conn, throttle=throttle, deadline_s=60) as proxy:
        _raw_get(proxy)
        busy = _raw_get(proxy)
        assert busy.status == 503 and busy.getheader("Retry-After") is None
        proxy.set_throttle(None)
        proxy.add_rule("status", times=1, retry_after_s=3)  # a rule asking for it still gets it
        assert _raw_get(proxy).getheader("Retry-After") == "3"
        proxy.set_random({"status": 1.0})
        assert _raw_get(proxy).getheader("Retry-After") is None
    with FaultProxy(upstream.port, throttle=throttle, throttle_retry_after=True, deadline_s=60) as proxy:
        _raw_get(proxy)
        assert _raw_get(proxy).getheader("Retry-After") == "2"
    with FaultProxy(upstream.port, rules=[Rule("status", retry_after_s=1)], deadline_s=60) as proxy:
        assert _raw_get(proxy).getheader("Retry-After") == "1"


# -- 6. Append Block over 4 MiB ----------------------------------------------------------------------------


def test_append_block_over_4_mib_is_413(
    strict: FaultProxy, lenient: FaultProxy, names: tuple[str, ContainerClient]
) -> None:
    name, direct = names
    blob = _container(strict, name).get_blob_client("log")
    blob.create_append_blob()
    blob.append_block(b"x" * (4 * MIB))
    with pytest.raises(HttpResponseError) as refused:
        blob.append_block(b"x" * (4 * MIB + 1))
    assert (refused.value.status_code, _code(refused.value)) == (413, "RequestBodyTooLarge")
    assert direct.get_blob_client("log").get_blob_properties().size == 4 * MIB
    _container(lenient, name).get_blob_client("log").append_block(b"x" * (5 * MIB))  # Azurite takes it


# -- 7. expired SAS ----------------------------------------------------------------------------------------


def test_expired_sas_is_authentication_failed(
    strict: FaultProxy, lenient: FaultProxy, names: tuple[str, ContainerClient]
) -> None:
    name, direct = names
    direct.get_blob_client("x").upload_blob(b"x")
    now = datetime.now(timezone.utc)
    sas = generate_container_sas(
        ACCOUNT_NAME,
        name,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, list=True),
        start=now - timedelta(hours=2),
        expiry=now - timedelta(hours=1),
    )
    codes = {}
    for proxy in (strict, lenient):
        with ContainerClient.from_container_url(
            f"{proxy.url_for(ACCOUNT_NAME)}/{name}?{sas}", **NO_RETRY
        ) as c:
            with pytest.raises(HttpResponseError) as refused:
                c.get_blob_client("x").download_blob().readall()
            assert refused.value.status_code == 403
            codes[proxy.strict] = _code(refused.value)
            if proxy.strict:
                assert "Signature not valid in the specified time frame" in str(refused.value)
    assert codes == {True: "AuthenticationFailed", False: "AuthorizationFailure"}


# -- chaining and counting ---------------------------------------------------------------------------------


def test_a_proxy_in_front_of_the_strict_one_gets_strict_answers(
    strict: FaultProxy, names: tuple[str, ContainerClient]
) -> None:
    name, direct = names
    before = strict.counts["strict"]
    with FaultProxy(strict.port, seed=1, deadline_s=60) as front:
        container = _container(front, name)
        container.get_blob_client("chained.").upload_blob(b"x")
        with pytest.raises(HttpResponseError) as refused:
            container.get_blob_client("chained").create_append_blob()
        assert _code(refused.value) == "InvalidBlobType"
        assert front.counts["strict"] == 0
    assert [b.name for b in direct.list_blobs()] == ["chained"]
    assert strict.counts["strict"] == before + 2


# -- more: blob name limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("blob", ["n" * 1025, "/".join(["s"] * 255)], ids=["1025-characters", "255-segments"])
def test_blob_names_beyond_the_service_limits_are_refused(
    blob: str, strict: FaultProxy, lenient: FaultProxy, names: tuple[str, ContainerClient]
) -> None:
    name, direct = names
    _container(strict, name).get_blob_client("n" * 1024).upload_blob(b"at the limit")
    _container(strict, name).get_blob_client("/".join(["s"] * 254)).upload_blob(b"at the limit")
    with pytest.raises(HttpResponseError) as refused:
        _container(strict, name).get_blob_client(blob).upload_blob(b"x")
    assert (refused.value.status_code, _code(refused.value)) == (400, "OutOfRangeInput")
    _container(lenient, name).get_blob_client(blob).upload_blob(b"x")  # Azurite takes it
    assert direct.get_blob_client(blob).exists()
