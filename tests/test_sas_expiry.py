"""A SAS that expires during a long task (issue 14): warned of at start, and said when storage refuses it.

Azurite enforces a SAS's expiry (403 AuthorizationFailure once ``se`` is past), so the refusals here are
real: SAS URLs signed with the emulator's account key, lasting a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, generate_container_sas
from batchfiles import (
    AuthenticationError,
    JobOutputStorage,
    TaskOutputStorage,
    _errors,
    _sas,
    naming,
    prepare_output_storage,
)
from batchfiles import aio as batchfiles_aio
from batchfiles._sas import TASK_SAS_PERMISSIONS
from batchfiles.errors import ConfigurationError, TrackingError
from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from helpers import TASK, blob_text, cli, start, wait_for
from hypothesis import given
from hypothesis import strategies as st

MARGIN_VARIABLE = _sas.ENV_SAS_MARGIN


def sas_url(azurite: Azurite, job_id: str, lasts: timedelta) -> str:
    """The job's container URL with a task SAS that expires ``lasts`` from now (whole seconds, as
    storage reads ``se``)."""
    container = naming.container_name(job_id)
    now = datetime.now(timezone.utc)
    token = generate_container_sas(
        ACCOUNT_NAME,
        container,
        account_key=ACCOUNT_KEY,
        permission=TASK_SAS_PERMISSIONS,
        start=now - timedelta(minutes=5),
        expiry=now + lasts,
    )
    return f"{azurite.account_url}/{container}?{token}"


def signature(url: str) -> str:
    return url.split("sig=", 1)[1].split("&")[0]


#: The life of a SAS that expires during a test: long enough for a save to start (and flush) before it
#: expires on a slow machine; 5 to 6 s, as ``se`` is cut to whole seconds.
SHORT = timedelta(seconds=6)


def wait_until_expired(url: str) -> None:
    expires = _sas.sas_expiry(url)
    assert expires is not None
    time.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds()) + 1.2)


@pytest.fixture
def prepared_job(service: BlobServiceClient, job_id: str) -> str:
    prepare_output_storage(service, job_id).close()
    return job_id


@pytest.fixture(autouse=True)
def no_margin_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MARGIN_VARIABLE, raising=False)


def expiry_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "batchfiles" and "SAS" in r.getMessage()]


# --- reading se= and durations ------------------------------------------------------------------------------

TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2199, 12, 31), timezones=st.just(timezone.utc)
).map(lambda t: t.replace(microsecond=0))


@given(TIMES, st.booleans())
def test_the_expiry_is_read_from_a_url_or_a_bare_token(when: datetime, bare: bool) -> None:
    token = f"sv=2024-05-04&se={quote(when.strftime('%Y-%m-%dT%H:%M:%SZ'))}&sr=c&sp=racwl&sig=abc%3D"
    text = token if bare else f"https://a.blob.core.windows.net/job-x?{token}"
    assert _sas.sas_expiry(text) == when


@given(st.text())
def test_any_text_gives_an_expiry_or_none_and_never_raises(text: str) -> None:
    for candidate in (text, f"https://h/c?se={text}", f"se={text}&se=x", f"?se={quote(text)}"):
        expires = _sas.sas_expiry(candidate)
        assert expires is None or expires.tzinfo is not None


def test_expiry_with_an_offset_a_date_or_nonsense() -> None:
    assert _sas.sas_expiry("se=2030-01-01T02:00:00%2B02:00") == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert _sas.sas_expiry("se=2030-01-01T02:00:00+02:00") == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert _sas.sas_expiry("se=2030-01-01") == datetime(2030, 1, 1, tzinfo=timezone.utc)
    for text in (
        None,
        "",
        "https://h/c",
        "https://h/c?sv=1&sig=x",
        "se=tomorrow",
        "se=0001-01-01T00:00+01:00",
    ):
        assert _sas.sas_expiry(text) is None


@given(st.lists(st.tuples(st.integers(0, 10**4), st.sampled_from("smhdw")), min_size=1, max_size=5))
def test_durations_add_up_their_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total = timedelta(seconds=sum(n * seconds[unit] for n, unit in parts))
    assert _sas.parse_duration(text, zero=True) == total
    if total:
        assert _sas.parse_duration(text) == total
    else:
        with pytest.raises(ValueError, match="positive"):
            _sas.parse_duration(text)


@pytest.mark.parametrize("text", ["", "1", "h", "1.5h", "-1h", "1h 2", "forever"])
def test_a_margin_that_is_no_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        _sas.parse_duration(text, zero=True)


def test_the_warning_says_when_and_what_to_do_only_within_the_margin() -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
    hour = timedelta(hours=1)
    assert _sas.expiry_warning("container 'job-x'", now + 2 * hour, hour, now) is None
    soon = _sas.expiry_warning("container 'job-x'", now + timedelta(minutes=20), hour, now)
    assert soon is not None
    assert "expires at 2030-01-01 12:20:00Z (in 20 min)" in soon
    assert "--expiry" in soon and "managed identity" in soon
    past = _sas.expiry_warning("container 'job-x'", now - hour, timedelta(0), now)
    assert past is not None and "expired at 2030-01-01 11:00:00Z" in past


# --- the warning at start -----------------------------------------------------------------------------------


def test_constructors_warn_of_a_sas_expiring_within_the_margin(
    azurite: Azurite, prepared_job: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, "batchfiles")
    url = sas_url(azurite, prepared_job, timedelta(minutes=30))
    with TaskOutputStorage(url, TASK) as storage:
        (message,) = expiry_warnings(caplog)
        assert f"container {storage.container_name!r}" in message
        assert "expires at" in message and "`batchfiles url JOB_ID --expiry" in message
        assert signature(url) not in caplog.text
    caplog.clear()
    with JobOutputStorage(url) as job:
        assert len(expiry_warnings(caplog)) == 1
        job.task("other")  # derived from a checked storage: no second warning
        assert len(expiry_warnings(caplog)) == 1
    caplog.clear()
    with JobOutputStorage(url, sas_margin=timedelta(minutes=10)):
        assert expiry_warnings(caplog) == []  # lasts beyond this margin
    monkeypatch.setenv(MARGIN_VARIABLE, "2h")
    with JobOutputStorage(url):
        assert len(expiry_warnings(caplog)) == 1
    caplog.clear()
    monkeypatch.setenv(MARGIN_VARIABLE, "0")  # only a SAS that has expired already
    with JobOutputStorage(url):
        assert expiry_warnings(caplog) == []
    with JobOutputStorage(sas_url(azurite, prepared_job, timedelta(days=2))):
        monkeypatch.delenv(MARGIN_VARIABLE)
        assert expiry_warnings(caplog) == []
    with TaskOutputStorage.from_connection_string(azurite.connection_string, prepared_job, TASK):
        assert expiry_warnings(caplog) == []  # no SAS at all


def test_from_environment_warns_and_a_bad_margin_is_refused(
    azurite: Azurite, prepared_job: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, "batchfiles")
    monkeypatch.setenv("BATCHFILES_CONTAINER_URL", sas_url(azurite, prepared_job, timedelta(minutes=5)))
    monkeypatch.setenv("AZ_BATCH_TASK_ID", TASK)
    monkeypatch.delenv("AZ_BATCH_JOB_ID", raising=False)
    with TaskOutputStorage.from_environment():
        assert "(in 4 min)" in expiry_warnings(caplog)[0] or "(in 5 min)" in expiry_warnings(caplog)[0]
    caplog.clear()
    with JobOutputStorage.from_environment(sas_margin=timedelta(minutes=1)):
        assert expiry_warnings(caplog) == []
    with pytest.raises(ValueError, match="negative"):
        TaskOutputStorage.from_environment(sas_margin=timedelta(seconds=-1))
    with pytest.raises(TypeError, match="timedelta"):
        JobOutputStorage.from_environment(sas_margin=3600)
    monkeypatch.setenv(MARGIN_VARIABLE, "an hour")
    with pytest.raises(ConfigurationError, match=f"{MARGIN_VARIABLE}: not a duration"):
        TaskOutputStorage.from_environment()


def test_the_async_constructors_warn_too(
    azurite: Azurite, prepared_job: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "batchfiles")
    url = sas_url(azurite, prepared_job, timedelta(minutes=30))

    async def main() -> None:
        async with batchfiles_aio.TaskOutputStorage(url, TASK):
            pass

    asyncio.run(main())
    assert len(expiry_warnings(caplog)) == 1


# --- an expired SAS, for real -------------------------------------------------------------------------------


def test_a_save_with_an_expired_sas_says_so_with_the_time_and_what_to_do(
    azurite: Azurite, prepared_job: str, tmp_path: Path
) -> None:
    url = sas_url(azurite, prepared_job, SHORT)
    path = tmp_path / "out.txt"
    path.write_text("too late\n")
    with TaskOutputStorage(url, TASK) as storage:
        storage.save("TaskOutput", path, "early.txt")  # still valid
        wait_until_expired(url)
        with pytest.raises(AuthenticationError) as raised:
            storage.save("TaskOutput", path, "late.txt")
    expires = _sas.sas_expiry(url)
    assert expires is not None
    message = str(raised.value)
    assert f"expired at {_sas.utc_text(expires)}" in message
    assert "--expiry" in message and "managed identity" in message
    assert signature(url) not in message


def test_a_refusal_of_a_sas_still_valid_is_not_called_expired(azurite: Azurite, prepared_job: str) -> None:
    url = sas_url(azurite, prepared_job, timedelta(hours=2))
    bad = url.replace(signature(url), "AAAA" + signature(url)[4:])
    with JobOutputStorage(bad) as storage, pytest.raises(AuthenticationError) as raised:
        list(storage.list())
    assert "expired at" not in str(raised.value)
    assert "check that the SAS or credential is valid" in str(raised.value)


def test_translate_error_reads_the_expiry_from_the_refused_request() -> None:
    """Without a request (a response built by hand) the generic message stays."""
    err = HttpResponseError("Server failed to authenticate the request.")
    err.status_code, err.error_code = 403, "AuthenticationFailed"
    assert "expired at" not in str(_errors.translate_error(err, "job-x", "container 'job-x'"))


def test_a_tracked_save_whose_sas_expires_midway_keeps_an_error_that_says_so(
    azurite: Azurite, prepared_job: str, tmp_path: Path
) -> None:
    url = sas_url(azurite, prepared_job, SHORT)
    path = tmp_path / "app.log"
    path.write_bytes(b"saved in time\n")
    with TaskOutputStorage(url, TASK) as storage:
        save = storage.save_tracked(path, "app.log", flush_interval=0.2, settle=0)
        save.flush()
        wait_until_expired(url)
        with open(path, "ab") as file:
            file.write(b"too late\n")
        with pytest.raises(AuthenticationError, match="expired at"):
            save.close()
    assert isinstance(save.error, AuthenticationError)
    assert not isinstance(save.error, TrackingError)  # kept at once: not worth another try


# --- the command line ---------------------------------------------------------------------------------------


def test_track_warns_at_start_and_run_exits_75_saying_the_sas_expired(
    azurite: Azurite, prepared_job: str, env: dict[str, str], tmp_path: Path
) -> None:
    node = {k: v for k, v in env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    node["BATCHFILES_CONTAINER_URL"] = sas_url(azurite, prepared_job, timedelta(minutes=20))
    (tmp_path / "app.log").write_text("x\n")
    tracking = start("track", "app.log", "--flush-interval", "0.2", env=node, cwd=tmp_path)
    try:  # SIGTERM once it has saved (its handler is set by then), not while Python still imports
        with TaskOutputStorage.from_connection_string(azurite.connection_string, prepared_job, TASK) as task:
            wait_for(lambda: blob_text(task, "TaskLog", "app.log") == "x\n", "the tracked file saved")
        tracking.terminate()
        _, stderr = tracking.communicate(timeout=30)
    finally:
        tracking.kill()
        tracking.wait()
    assert "batchfiles: warning: the SAS for container" in stderr and "expires at" in stderr
    assert signature(node["BATCHFILES_CONTAINER_URL"]) not in stderr
    assert tracking.returncode == 0, stderr
    quiet = cli("run", "--sas-margin", "10m", "--", "true", env=node, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "SAS" not in quiet.stderr  # beyond the 10 min margin
    node[MARGIN_VARIABLE] = "1h"
    assert "warning: the SAS" in cli("run", "--", "true", env=node, cwd=tmp_path).stderr
    bad = cli("run", "--sas-margin", "soon", "--", "true", env=node, cwd=tmp_path)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    # a SAS that expires while the command runs: its logs cannot all be saved (exit 75), and why
    # (7 to 8 s: `run` must start, and find the container, before it expires; the command outlives it)
    node["BATCHFILES_CONTAINER_URL"] = url = sas_url(azurite, prepared_job, timedelta(seconds=8))
    expires = _sas.sas_expiry(url)
    assert expires is not None
    wait = (expires - datetime.now(timezone.utc)).total_seconds() + 1.5
    script = f"import time; print('early', flush=True); time.sleep({wait:.1f}); print('late', flush=True)"
    ran = cli("run", "--flush-interval", "0.2", "--", "python", "-c", script, env=node, cwd=tmp_path)
    assert ran.returncode == 75, ran.stderr
    assert "batchfiles: warning: the SAS for container" in ran.stderr
    assert f"expired at {_sas.utc_text(expires)}" in ran.stderr
    assert signature(url) not in ran.stderr
