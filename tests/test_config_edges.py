"""Configuration at the edges: a container URL of another job, secrets in bad URLs, bad account URLs, an
endpoint that never answers, and durations. Every case is a clear one-line error without a secret, never a
traceback, a hang or a save elsewhere."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.storage.blob import BlobServiceClient
from batchfiles import (
    AuthenticationError,
    BatchFilesError,
    ConfigurationError,
    JobOutputStorage,
    TaskOutputStorage,
    output_storage_container_url,
    prepare_output_storage,
    service_from_environment,
)
from batchfiles.naming import container_name
from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from hypothesis import given, settings
from hypothesis import strategies as st

SECRET = "c2VjcmV0U0lHdmFsdWU9PQ"
ENV_PREFIXES = ("AZ_BATCH_", "BATCHFILES_", "AZURE_STORAGE_", "AZURE_CLIENT_", "AZURE_TENANT_")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    return {**env, **extra}


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "batchfiles", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("batchfiles: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert SECRET not in result.stderr + result.stdout and ACCOUNT_KEY not in result.stderr + result.stdout


# --- a container URL of another job -------------------------------------------------------------------------


@pytest.fixture
def two_jobs(azurite: Azurite, service: BlobServiceClient, job_id: str) -> tuple[str, str, str]:
    """Jobs A and B, both prepared, and a task SAS URL for A's container."""
    job_a, job_b = f"{job_id}-a", f"{job_id}-b"
    for job in (job_a, job_b):
        prepare_output_storage(service, job)
    return job_a, job_b, output_storage_container_url(service, job_a, expiry=timedelta(days=2))


def test_cli_refuses_a_container_url_of_another_job_in_the_environment(two_jobs, service, tmp_path):
    job_a, job_b, url_a = two_jobs
    (tmp_path / "out.txt").write_text("out")
    env = clean_env(BATCHFILES_CONTAINER_URL=url_a, AZ_BATCH_JOB_ID=job_b, AZ_BATCH_TASK_ID="t1")
    for command in (
        ["save", "TaskOutput", "out.txt"],
        ["save", "JobOutput", "out.txt"],
        ["run", "--", "true"],
        ["track", "out.txt"],
    ):
        result = run_cli(*command, env=env, cwd=tmp_path)
        needles = ("BATCHFILES_CONTAINER_URL is for container", f"AZ_BATCH_JOB_ID is {job_b!r}")
        assert_one_line(result, 1, *needles)
    container_a = service.get_container_client(JobOutputStorage(url_a).container_name)
    assert list(container_a.list_blobs()) == []  # nothing saved in the other job's container
    # The job named on the command line wins over the variable; the same check applies to it.
    result = run_cli("save", "TaskOutput", "out.txt", "--job", job_a, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli("list", job_b, env=env, cwd=tmp_path)
    assert_one_line(result, 1, f"the job id given is {job_b!r}")


def test_library_refuses_a_container_url_of_another_job(two_jobs, monkeypatch):
    _, job_b, url_a = two_jobs
    monkeypatch.setenv("BATCHFILES_CONTAINER_URL", url_a)
    monkeypatch.setenv("AZ_BATCH_JOB_ID", job_b)
    monkeypatch.setenv("AZ_BATCH_TASK_ID", "t1")
    with pytest.raises(ConfigurationError, match="left over from another job") as caught:
        TaskOutputStorage.from_environment()
    assert "sig=" not in str(caught.value)


# --- one path from options and variables to storage ---------------------------------------------------------


def test_a_value_given_wins_over_its_variable(two_jobs, azurite, monkeypatch):
    """``from_environment``'s keywords are what the command line's options hand it: each wins over its
    variable, and the storage variables are not looked at once one storage is given."""
    _, job_b, url_a = two_jobs
    for name in [n for n in os.environ if n.startswith(ENV_PREFIXES)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BATCHFILES_CONTAINER_URL", url_a)
    monkeypatch.setenv("AZ_BATCH_JOB_ID", job_b)
    monkeypatch.setenv("AZ_BATCH_TASK_ID", "t-env")
    given = TaskOutputStorage.from_environment(
        connection_string=azurite.connection_string, job_id=job_b, task_id="t-given"
    )
    with given:
        assert (given.container_name, given.task_id) == (container_name(job_b), "t-given")
    with pytest.raises(ConfigurationError, match="give one storage, not container_url and account_url"):
        JobOutputStorage.from_environment(container_url=url_a, account_url="https://a.blob.core.windows.net")
    monkeypatch.delenv("AZ_BATCH_JOB_ID")
    with pytest.raises(ConfigurationError, match="no job id: none given and AZ_BATCH_JOB_ID is not set"):
        JobOutputStorage.from_environment(connection_string=azurite.connection_string)
    with pytest.raises(ConfigurationError, match=r"the job id given is .* left over from another job"):
        JobOutputStorage.from_environment(job_id=job_b)  # the URL of the variable, the job given


def test_service_from_environment(azurite, monkeypatch):
    for name in [n for n in os.environ if n.startswith(ENV_PREFIXES)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BATCHFILES_CONTAINER_URL", "https://a.blob.core.windows.net/job-x?sig=" + SECRET)
    with pytest.raises(ConfigurationError, match="single container's SAS, is not enough") as caught:
        service_from_environment()
    assert SECRET not in str(caught.value)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    with service_from_environment() as service:
        prepare_output_storage(service, "svc-env")
        assert service.get_container_client("job-svc-env").exists()


class _NoSignIn:
    """A credential of a node without any sign-in."""

    def __init__(self) -> None:
        self.asked = 0

    def get_token(self, *scopes: str, **kwargs: object) -> object:
        self.asked += 1
        raise ClientAuthenticationError("no managed identity on this node")

    get_token_info = get_token


def test_a_credential_that_cannot_sign_in_fails_the_first_request_at_once():
    """Not after minutes of retries (the retry policy takes a credential's failure as final; azure-identity
    retries its own transient failures), and the message says where to sign in."""
    credential = _NoSignIn()
    storage = TaskOutputStorage("https://127.0.0.1:9/devstoreaccount1/job-x", "t1", credential=credential)
    with (
        storage,
        pytest.raises(AuthenticationError, match=r"no Azure sign-in for .*no managed identity.*az login"),
    ):
        storage.save_bytes("TaskOutput", b"x", "a.txt")
    assert credential.asked == 1


# --- secrets in messages ------------------------------------------------------------------------------------

NOT_URLS = [
    f"st=2020-01-01&sig={SECRET}",
    f"?sv=2024&sig={SECRET}",
    f"sig={SECRET}",
    f"http://[::1/job-j?sig={SECRET}",
    f"http://[bad?sig={SECRET}",
    f"ftp://host/job-j?sig={SECRET}",
    f"job-j?sig={SECRET}",
]


@pytest.mark.parametrize("url", NOT_URLS)
def test_library_messages_never_hold_a_signature(url, monkeypatch):
    for make in (lambda: TaskOutputStorage(url, "t1"), lambda: JobOutputStorage(url)):
        with pytest.raises(ValueError, match="not a container URL") as caught:
            make()
        assert SECRET not in str(caught.value)
    monkeypatch.setenv("BATCHFILES_CONTAINER_URL", url)
    monkeypatch.setenv("AZ_BATCH_TASK_ID", "t1")
    for job in ("j", None):
        if job:
            monkeypatch.setenv("AZ_BATCH_JOB_ID", job)
        else:
            monkeypatch.delenv("AZ_BATCH_JOB_ID", raising=False)
        with pytest.raises(ConfigurationError, match="BATCHFILES_CONTAINER_URL") as caught:
            TaskOutputStorage.from_environment()
        assert SECRET not in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(alphabet="abcdefghijklmnopqrstuvwxyz:/?&=.[]-_%0123456789", max_size=30),
    after=st.text(alphabet="abcdefghijklmnopqrstuvwxyz&=./[]", max_size=10),
    scheme=st.sampled_from(["", "http://", "https://", "ftp://", "http://[", "https://[::1"]),
)
def test_no_container_url_error_holds_its_signature(before, after, scheme):
    url = f"{scheme}{before}sig={SECRET}{after}"
    try:
        TaskOutputStorage(url, "t1").close()
    except (ValueError, BatchFilesError) as err:
        assert SECRET not in str(err)


@pytest.mark.parametrize("url", NOT_URLS)
def test_cli_bad_container_url_is_one_line_without_secret(url, tmp_path):
    (tmp_path / "out.txt").write_text("out")
    env = clean_env(BATCHFILES_CONTAINER_URL=url, AZ_BATCH_TASK_ID="t1")
    result = run_cli("save", "TaskOutput", "out.txt", env=env, cwd=tmp_path)
    assert_one_line(result, 1, "not a container URL")


@pytest.mark.parametrize("url", ["http://[bad", "http://[::1", "no-scheme", f"http://[x?sig={SECRET}"])
def test_bad_account_url_is_refused_before_any_sign_in(url, tmp_path, monkeypatch):
    # Refused before DefaultAzureCredential is built: nothing probes a managed-identity endpoint.
    result = run_cli("list", "j", env=clean_env(AZURE_STORAGE_ACCOUNT_URL=url), cwd=tmp_path)
    assert_one_line(result, 1, "not a storage account URL")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", url)
    monkeypatch.setenv("AZ_BATCH_JOB_ID", "j")
    monkeypatch.delenv("BATCHFILES_CONTAINER_URL", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(ConfigurationError, match="not a storage account URL") as caught:
        JobOutputStorage.from_environment()
    assert SECRET not in str(caught.value)


# --- an endpoint that accepts connections and never answers ----------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for sock in [*held, listener]:
        sock.close()


#: The command line with its client timeouts cut to 1 s (its retries as they are), so the test waits 3 tries
#: of 1 s, not of 10: the values themselves are checked beside it.
QUICK_CLI = """
import sys
from batchfiles._cli import connect
for options in (connect.INTERACTIVE_RETRY, connect.PATIENT_RETRY):
    options.update(connection_timeout=1, read_timeout=1)
from batchfiles.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_list_against_a_silent_endpoint_ends_within_seconds(silent_port: int, tmp_path: Path) -> None:
    """`batchfiles list` waited 4 x 60 s (the SDK's read timeout, retried) before it said anything; now a
    few tries of at most 10 s each (cut to 1 s here), then one line."""
    from batchfiles._cli import connect

    assert connect.INTERACTIVE_RETRY == {"retry_total": 2, "connection_timeout": 10, "read_timeout": 10}
    assert connect.PATIENT_RETRY["read_timeout"] == 10
    url = f"http://127.0.0.1:{silent_port}/{ACCOUNT_NAME}/job-x?sv=2021-08-06&sig=abc"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZ_BATCH_", "BATCHFILES_", "AZURE_"))}
    try:
        result = subprocess.run(
            [sys.executable, "-c", QUICK_CLI, "list", "x", "--container-url", url],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,  # a bound against a hang (the SDK alone would wait 4 x 60 s), not a speed target
        )
    except subprocess.TimeoutExpired:
        pytest.fail("`batchfiles list` against a silent endpoint was still waiting after 90 s")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("batchfiles: error: ") and len(result.stderr.splitlines()) == 1


# --- durations ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expiry", ["1000000000d", "99999999999999999999w", "999999990d"])
def test_huge_expiry_is_one_line(expiry, azurite, tmp_path):
    env = clean_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)
    result = run_cli("url", "j", "--expiry", expiry, env=env, cwd=tmp_path)
    assert result.returncode in (1, 2), result.stderr
    assert_one_line(result, result.returncode, "expiry")


def test_library_refuses_an_expiry_past_year_9999(service):
    with pytest.raises(ValueError, match="year 9999"):
        output_storage_container_url(service, "j", expiry=timedelta(days=999_999_990))
