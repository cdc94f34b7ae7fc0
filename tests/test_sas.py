"""The container SAS handed to tasks: signed with the account key, or with a user delegation key over OAuth.

The user delegation path runs against a second Azurite serving HTTPS with ``--oauth basic`` (see
``oauth_helpers``), which checks the delegation SAS signature and its permissions like Azure does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import batchfiles
import batchfiles.aio
import pytest
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.storage.blob import BlobServiceClient
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient
from batchfiles import (
    AuthenticationError,
    OutputNotFoundError,
    TaskOutputKind,
    TaskOutputStorage,
    output_storage_container_url,
    prepare_output_storage,
)
from batchfiles.testing import Azurite
from oauth_helpers import (
    OBJECT_ID,
    STORAGE_SCOPE,
    TENANT_ID,
    AsyncStaticTokenCredential,
    Certificate,
    StaticTokenCredential,
    loopback_certificate,
)

OUT = TaskOutputKind.TASK_OUTPUT


def sas_params(url: str) -> dict[str, str]:
    """The SAS query parameters of ``url``, one value each."""
    query = parse_qs(urlsplit(url).query, strict_parsing=True)
    assert all(len(v) == 1 for v in query.values()), query
    return {k: v[0] for k, v in query.items()}


def with_signature(url: str, sig: str) -> str:
    """``url`` with its ``sig`` replaced (kept URL-encoded as the SDK sends it)."""
    head, _, tail = url.partition("&sig=")
    assert head and tail and "&" not in tail, url
    return f"{head}&sig={sig}"


def forged_signature(url: str) -> str:
    """``url`` with a different (still well-formed) signature."""
    sig = sas_params(url)["sig"]
    return with_signature(url, ("B" if sig[0] == "A" else "A") + sig[1:])


def assert_task_permissions(params: dict[str, str]) -> None:
    assert params["sr"] == "c"
    # read, add, create, write, delete (a blob of another type is replaced by deleting it), list
    assert params["sp"] == "racwdl"


def assert_no_secret(sig: str, *texts: str) -> None:
    assert len(sig) > 20
    for text in texts:
        assert sig not in text
        assert "sig=" not in text


# --- fixtures: Azurite over HTTPS with OAuth ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return loopback_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def oauth_azurite(tls: Certificate) -> Iterator[Azurite]:
    with Azurite(https_cert=tls.cert, https_key=tls.key, oauth="basic") as server:
        yield server


@pytest.fixture
def oauth_service(oauth_azurite: Azurite, tls: Certificate) -> Iterator[BlobServiceClient]:
    credential = StaticTokenCredential()
    with BlobServiceClient(
        oauth_azurite.account_url, credential=credential, connection_verify=tls.cert
    ) as client:
        yield client


# --- signed with the account key ----------------------------------------------------------------------------


def test_account_key_sas_allows_what_tasks_do(service: BlobServiceClient, job_id: str):
    prepare_output_storage(service, job_id)
    url = output_storage_container_url(service, job_id)

    params = sas_params(url)
    assert_task_permissions(params)
    assert "skoid" not in params  # signed with the account key, not a delegation key
    assert url.startswith(f"{service.url.rstrip('/')}/{batchfiles.naming.container_name(job_id)}?")

    with TaskOutputStorage(url, "t1") as storage:
        ref = storage.save_text(OUT, "frame one", "frames/0001.txt")
        assert [r.file_path for r in storage.list()] == ["frames/0001.txt"]
        assert [r.file_path for r in storage.list(OUT)] == ["frames/0001.txt"]
        got = storage.get(OUT, "frames/0001.txt")
        assert got.download_text() == "frame one"
        listed = next(iter(storage.list()))
        ref.delete()  # to replace a blob of another type
        with pytest.raises(OutputNotFoundError) as refused:
            storage.get(OUT, "frames/0001.txt")

        assert_no_secret(
            params["sig"],
            repr(storage),
            storage.url,
            ref.url,
            got.url,
            listed.url,
            repr(ref),
            str(refused.value),
        )


def test_account_key_sas_with_a_wrong_signature_is_refused(service: BlobServiceClient, job_id: str):
    prepare_output_storage(service, job_id)
    url = output_storage_container_url(service, job_id)
    with (
        TaskOutputStorage(forged_signature(url), "t1") as storage,
        pytest.raises(AuthenticationError),
    ):
        storage.save_text(OUT, "x", "x.txt")


# --- signed with a user delegation key (OAuth) --------------------------------------------------------------


def test_oauth_azurite_checks_bearer_tokens(oauth_azurite: Azurite, tls: Certificate):
    """The delegation tests below mean something only if Azurite really validates the tokens."""
    for bad in ({"aud": "https://example.com"}, {"iss": "https://example.com/"}, {"exp": 1_000_000}):
        with (
            BlobServiceClient(
                oauth_azurite.account_url, credential=StaticTokenCredential(**bad), connection_verify=tls.cert
            ) as client,
            pytest.raises(ClientAuthenticationError),
        ):
            next(iter(client.list_containers()))


def test_user_delegation_sas_allows_what_tasks_do(
    oauth_service: BlobServiceClient, tls: Certificate, job_id: str
):
    prepare_output_storage(oauth_service, job_id)
    url = output_storage_container_url(oauth_service, job_id)

    assert oauth_service.credential.scopes and all(
        s == (STORAGE_SCOPE,) for s in oauth_service.credential.scopes
    )
    params = sas_params(url)
    assert_task_permissions(params)
    assert params["skoid"] == OBJECT_ID
    assert params["sktid"] == TENANT_ID
    assert params["sks"] == "b"
    assert params["ske"] == params["se"]
    assert urlsplit(url).scheme == "https"

    with TaskOutputStorage(url, "t1", connection_verify=tls.cert) as storage:
        ref = storage.save_text(OUT, "frame one", "frames/0001.txt")
        storage.save_text(OUT, "frame two", "frames/0002.txt")
        assert sorted(r.file_path for r in storage.list(OUT)) == ["frames/0001.txt", "frames/0002.txt"]
        got = storage.get(OUT, "frames/0002.txt")
        assert got.download_text() == "frame two"
        ref.delete()
        with pytest.raises(OutputNotFoundError) as refused:
            storage.get(OUT, "frames/0001.txt")
        assert_no_secret(params["sig"], repr(storage), storage.url, ref.url, got.url, str(refused.value))


def test_user_delegation_sas_is_really_checked(
    oauth_service: BlobServiceClient, tls: Certificate, job_id: str
):
    """Azurite verifies the delegation signature: a tampered one, or another identity's, is refused."""
    prepare_output_storage(oauth_service, job_id)
    url = output_storage_container_url(oauth_service, job_id)
    for forged in (
        forged_signature(url),
        url.replace(f"skoid={OBJECT_ID}", "skoid=00000000-0000-0000-0000-000000000000"),
    ):
        assert forged != url
        with (
            TaskOutputStorage(forged, "t1", connection_verify=tls.cert) as storage,
            pytest.raises(AuthenticationError),
        ):
            storage.save_text(OUT, "x", "x.txt")


def test_refused_delegation_key_is_an_authentication_error_naming_the_code(
    oauth_azurite: Azurite, tls: Certificate, job_id: str
):
    credential = StaticTokenCredential(aud="https://example.com")
    with (
        BlobServiceClient(
            oauth_azurite.account_url, credential=credential, connection_verify=tls.cert
        ) as client,
        pytest.raises(AuthenticationError) as refused,
    ):
        output_storage_container_url(client, job_id)
    assert "(AuthenticationFailed)" in str(refused.value)
    assert "StorageErrorCode" not in str(refused.value)


def test_user_delegation_sas_async(oauth_azurite: Azurite, tls: Certificate, job_id: str):
    aio = batchfiles.aio

    async def scenario() -> None:
        async with (
            AsyncStaticTokenCredential() as credential,
            AsyncBlobServiceClient(
                oauth_azurite.account_url, credential=credential, connection_verify=tls.cert
            ) as service,
        ):
            await aio.prepare_output_storage(service, job_id)
            url = await aio.output_storage_container_url(service, job_id, expiry=timedelta(hours=1))
            assert credential.scopes and all(s == (STORAGE_SCOPE,) for s in credential.scopes)

        params = sas_params(url)
        assert_task_permissions(params)
        assert (params["skoid"], params["sktid"]) == (OBJECT_ID, TENANT_ID)

        async with aio.TaskOutputStorage(url, "t1", connection_verify=tls.cert) as storage:
            ref = await storage.save_text(OUT, "async frame", "frames/0001.txt")
            assert [r.file_path async for r in storage.list()] == ["frames/0001.txt"]
            got = await storage.get(OUT, "frames/0001.txt")
            assert await got.download_text() == "async frame"
            await ref.delete()
            with pytest.raises(aio.OutputNotFoundError) as refused:
                await storage.get(OUT, "frames/0001.txt")
            assert_no_secret(params["sig"], repr(storage), storage.url, ref.url, str(refused.value))

    asyncio.run(scenario())


# --- arguments ----------------------------------------------------------------------------------------------


async def async_container_url(azurite: Azurite, job_id: str, expiry: object) -> str:
    async with AsyncBlobServiceClient.from_connection_string(azurite.connection_string) as service:
        return await batchfiles.aio.output_storage_container_url(service, job_id, expiry=expiry)  # type: ignore[arg-type]


@pytest.mark.parametrize("expiry", [timedelta(0), timedelta(seconds=-1), -timedelta(days=7)])
def test_non_positive_expiry_is_a_value_error(
    azurite: Azurite, service: BlobServiceClient, job_id: str, expiry: timedelta
):
    with pytest.raises(ValueError, match="expiry"):
        output_storage_container_url(service, job_id, expiry=expiry)
    with pytest.raises(ValueError, match="expiry"):
        asyncio.run(async_container_url(azurite, job_id, expiry))


@pytest.mark.parametrize("expiry", [3600, 7.0, "7d", None])
def test_expiry_must_be_a_timedelta(
    azurite: Azurite, service: BlobServiceClient, job_id: str, expiry: object
):
    with pytest.raises(TypeError, match="timedelta"):
        output_storage_container_url(service, job_id, expiry=expiry)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timedelta"):
        asyncio.run(async_container_url(azurite, job_id, expiry))


def test_bad_expiry_is_refused_before_asking_for_a_delegation_key(oauth_azurite: Azurite, tls: Certificate):
    credential = StaticTokenCredential()
    with BlobServiceClient(
        oauth_azurite.account_url, credential=credential, connection_verify=tls.cert
    ) as client:
        with pytest.raises(ValueError):
            output_storage_container_url(client, "job-1", expiry=timedelta(0))
        with pytest.raises(TypeError):
            output_storage_container_url(client, "job-1", expiry=60)  # type: ignore[arg-type]
    assert credential.scopes == []  # no token requested, so no request made


# --- SAS over plain http ------------------------------------------------------------------------------------

SECRET = "c2VjcmV0LXNpZ25hdHVyZS1kby1ub3QtbGVhaw%3D%3D"


@pytest.mark.parametrize(
    "url",
    [
        f"http://example.com/job-x?sv=2025-01-05&sr=c&sp=racwl&sig={SECRET}",
        f"http://example.com:80/job-x?sig={SECRET}&sv=2025-01-05",
        f"http://localhost.example.com/job-x?sv=2025-01-05&sig={SECRET}",
        f"http://10.0.0.4:10000/devstoreaccount1/job-x?sv=2025-01-05&sig={SECRET}",
    ],
)
def test_sas_over_plain_http_to_another_host_is_refused(url: str):
    for storage_class in (TaskOutputStorage, batchfiles.aio.TaskOutputStorage):
        with pytest.raises(ValueError, match="https") as refused:
            storage_class(url, "t1")
        assert SECRET not in str(refused.value)
        assert "c2VjcmV0" not in str(refused.value)


@pytest.mark.parametrize("host", ["127.0.0.1:10000", "localhost:10000", "[::1]:10000"])
def test_sas_over_plain_http_to_loopback_is_allowed(host: str):
    storage = TaskOutputStorage(f"http://{host}/devstoreaccount1/job-x?sv=2025-01-05&sig={SECRET}", "t1")
    assert storage.container_name == "job-x"
    assert SECRET not in repr(storage)
    storage.close()


def test_sas_credential_over_plain_http_to_another_host_is_refused():
    with pytest.raises(ValueError, match="https"):
        TaskOutputStorage("http://example.com/job-x", "t1", credential=f"sv=2025-01-05&sig={SECRET}")


def test_user_delegation_sas_is_limited_to_seven_days(oauth_azurite: Azurite, tls: Certificate):
    with (
        BlobServiceClient(
            oauth_azurite.account_url, credential=StaticTokenCredential(), connection_verify=tls.cert
        ) as client,
        pytest.raises(ValueError, match="7 days"),
    ):
        output_storage_container_url(client, "job-x", expiry=timedelta(days=8))


def test_a_client_holding_a_sas_cannot_sign_one(azurite: Azurite):
    with (
        BlobServiceClient(
            azurite.account_url, credential=AzureSasCredential(f"sv=2025-01-05&sig={SECRET}")
        ) as client,
        pytest.raises(ValueError, match="account key or an Azure AD credential") as info,
    ):
        output_storage_container_url(client, "job-x")
    assert SECRET not in str(info.value)
