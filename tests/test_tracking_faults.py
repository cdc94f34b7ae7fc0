"""Tracked saves under faults: lost responses, resets, 5xx, a dead storage, and kill -9 of the tracker.

The engine is first driven in memory with scripted failures (deterministic), then against Azurite through
tests/faultproxy.py, then in a subprocess killed at random moments while the file keeps growing.
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient
from batchfiles import naming
from batchfiles._tracking import Engine, drive, limits
from batchfiles.errors import TrackingError
from batchfiles.testing import ACCOUNT_NAME, Azurite
from batchfiles.tracking import TrackedSave
from faultproxy import FaultProxy, Request, Throttle
from helpers import LOG, MemoryBlob, append, fast_retries, flush_in_memory

CHILD = Path(__file__).with_name("tracking_child.py")
#: The ``proxy`` fixture's options (tests/conftest.py).
pytestmark = pytest.mark.fault_proxy(seed=5, delay_ms=20, deadline_s=240)


# --- the engine in memory: exactly once, decided without any network ----------------------------------------


@pytest.fixture
def memory_engine(tmp_path: Path) -> Engine:
    path = tmp_path / "app.log"
    path.touch()
    return Engine("container", LOG, path, flush_interval=3600)


def test_an_append_whose_response_was_lost_is_not_sent_again(memory_engine: Engine) -> None:
    blob = MemoryBlob(None, "after", "before")
    drive(blob, memory_engine.opening())
    append(Path(memory_engine.path), b"one\n")
    flush_in_memory(memory_engine, blob)
    append(Path(memory_engine.path), b"two\n")
    outcomes = flush_in_memory(memory_engine, blob)
    # lost response, then a retry that never reached storage, then a 412 that says the first try landed
    assert [type(o.error) for o in outcomes] == [ServiceResponseError, ServiceRequestError, type(None)]
    assert blob.data == b"one\ntwo\n"
    assert blob.applied == 2
    assert memory_engine.stats.bytes_saved == 8


def test_a_412_with_any_other_length_is_another_writer(memory_engine: Engine) -> None:
    blob = MemoryBlob()
    drive(blob, memory_engine.opening())
    blob.data = b"someone else\n"
    append(Path(memory_engine.path), b"mine\n")
    with pytest.raises(TrackingError, match="another writer"):
        flush_in_memory(memory_engine, blob)
    assert memory_engine.closed
    assert blob.data == b"someone else\n"


def test_transient_failures_back_off_then_the_error_is_kept(
    memory_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "batchfiles")
    blob = MemoryBlob(*["before"] * limits.MAX_FAILED_STEPS)
    drive(blob, memory_engine.opening())
    append(Path(memory_engine.path), b"never saved\n")
    with pytest.raises(TrackingError, match=f"after {limits.MAX_FAILED_STEPS} failures"):
        flush_in_memory(memory_engine, blob)
    retries = [r for r in caplog.records if "trying again" in r.message]
    assert [r.message.rsplit(" in ", 1)[1] for r in retries] == ["0.5 s", "1.0 s", "2.0 s", "4.0 s", "8.0 s"]
    assert caplog.records[-1].levelno == logging.ERROR
    assert blob.data == b""


def test_sas_signatures_are_kept_out_of_logs_and_errors(
    memory_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "batchfiles")
    blob = MemoryBlob(*["before"] * limits.MAX_FAILED_STEPS)
    blob.refusal = (
        "Max retries exceeded with url: /c/app.log?comp=appendblock&sv=2024&sig=SECRET%3D (refused)"
    )
    drive(blob, memory_engine.opening())
    append(Path(memory_engine.path), b"never saved\n")
    with pytest.raises(TrackingError) as raised:
        flush_in_memory(memory_engine, blob)
    assert "sig=REDACTED" in str(raised.value)
    assert "sig=REDACTED" in caplog.text
    assert "SECRET" not in str(raised.value) + caplog.text


# --- against Azurite through the fault proxy ----------------------------------------------------------------


def is_append(request: Request) -> bool:
    return "comp=appendblock" in request.query


@pytest.fixture
def container_name(service: BlobServiceClient, job_id: str) -> str:
    name = naming.container_name(job_id)
    service.create_container(name)
    return name


@pytest.fixture
def proxied(azurite: Azurite, proxy: FaultProxy, container_name: str) -> Iterator[ContainerClient]:
    url = proxy.url_for(ACCOUNT_NAME)
    with ContainerClient(url, container_name, credential=azurite.credential, **fast_retries()) as client:
        yield client


def test_a_lost_append_response_is_retried_without_duplicating(
    proxied: ContainerClient, proxy: FaultProxy, service: BlobServiceClient, tmp_path: Path
) -> None:
    path = tmp_path / "app.log"
    append(path, b"exactly once\n")
    proxy.add_rule("drop_response", is_append, times=1)
    with TrackedSave.start(proxied, LOG, path, flush_interval=3600, settle=0) as save:
        save.flush()
    blob = service.get_container_client(proxied.container_name).get_blob_client(LOG)
    assert blob.download_blob().readall() == b"exactly once\n"
    assert blob.get_blob_properties().append_blob_committed_block_count == 1
    assert proxy.counts["drop_response"] == 1


def test_a_lost_response_to_the_claim_of_a_resume_is_not_another_writer(
    proxied: ContainerClient, proxy: FaultProxy, service: BlobServiceClient, tmp_path: Path
) -> None:
    path = tmp_path / "app.log"
    append(path, b"first\n")
    with TrackedSave.start(proxied, LOG, path, flush_interval=3600, settle=0):
        pass
    append(path, b"resumed\n")
    proxy.add_rule("drop_response", lambda request: "comp=metadata" in request.query, times=1)
    with TrackedSave.start(proxied, LOG, path, flush_interval=3600, settle=0) as save:
        save.flush()
    assert proxy.counts["drop_response"] == 1
    assert save.bytes_saved == len(b"resumed\n")
    assert (
        service.get_container_client(proxied.container_name).download_blob(LOG).readall()
        == b"first\nresumed\n"
    )


def test_flush_times_out_while_storage_is_slow(
    proxied: ContainerClient, proxy: FaultProxy, service: BlobServiceClient, tmp_path: Path
) -> None:
    path = tmp_path / "app.log"
    save = TrackedSave.start(proxied, LOG, path, flush_interval=3600, settle=0)
    proxy.add_rule("delay", is_append, times=1, delay_ms=1000)
    append(path, b"slow\n")
    with pytest.raises(TimeoutError):
        save.flush(timeout=0.1)
    save.close()
    assert service.get_container_client(proxied.container_name).download_blob(LOG).readall() == b"slow\n"


@pytest.mark.parametrize(
    ("status", "gave_up"), [(500, "after 6 failures"), (503, "storage throttled every try for")]
)
def test_a_dead_storage_is_an_error_raised_by_flush_and_close(
    proxied: ContainerClient,
    proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    gave_up: str,
) -> None:
    """A fault (500 InternalError) is kept after 6 failed steps; throttling (503 ServerBusy, as storage
    answers forever here) once every step failed for the throttling patience."""
    monkeypatch.setattr(limits, "BACKOFF", (0.01, 0.01))
    monkeypatch.setattr(limits, "THROTTLED_BACKOFF", (0.01, 0.05))
    monkeypatch.setattr(limits, "THROTTLED_PATIENCE", 1.0)
    path = tmp_path / "app.log"
    save = TrackedSave.start(proxied, LOG, path, flush_interval=0.05, settle=0)
    proxy.add_rule("status", status=status)
    append(path, b"cannot be saved\n")
    started = time.monotonic()
    with pytest.raises(TrackingError, match=gave_up):
        save.flush()
    if status == 503:
        assert time.monotonic() - started >= limits.THROTTLED_PATIENCE
    assert isinstance(save.error.__cause__, HttpResponseError)
    with pytest.raises(TrackingError):
        save.close()


@pytest.mark.timeout(60)
def test_under_heavy_throttling_a_tracked_save_coalesces_and_never_gives_up(
    azurite: Azurite,
    container_name: str,
    service: BlobServiceClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another client takes most of a small account's requests, so most appends meet 503 ServerBusy
    (``Retry-After``) or 500 OperationTimedOut, more than azure-core's retries absorb: the save backs off,
    sends fewer, larger appends than it has flush intervals, keeps going, and the blob equals the file."""
    caplog.set_level(logging.WARNING, "batchfiles")
    monkeypatch.setattr(limits, "THROTTLED_BACKOFF", (0.2, 1.0))  # the schedule's numbers, scaled down:
    monkeypatch.setattr(limits, "BACKOFF", (0.05, 0.2))  # a fault would be given up on within a second
    throttle = Throttle(requests_per_s=4, burst_requests=1, retry_after_s=0.2, timeout_share=0.2)
    interval, seconds = 0.1, 6.0
    path = tmp_path / "app.log"
    stop = threading.Event()
    with FaultProxy(azurite.port, seed=14, deadline_s=50) as proxy:
        url = proxy.url_for(ACCOUNT_NAME)
        credential = azurite.credential
        with (
            ContainerClient(url, container_name, credential=credential, **fast_retries()) as client,
            ContainerClient(url, container_name, credential=credential, retry_total=0) as other,
        ):
            save = TrackedSave.start(client, LOG, path, flush_interval=interval, settle=0)
            proxy.set_throttle(throttle)  # from here on: a task opening its save got in before the rush

            def other_task() -> None:  # asks for more than the account serves
                while not stop.is_set():
                    with contextlib.suppress(HttpResponseError):
                        other.get_container_properties()
                    time.sleep(0.1)

            hog = threading.Thread(target=other_task)
            hog.start()
            pressure = 0
            try:
                started = time.monotonic()
                i = 0
                while time.monotonic() - started < seconds:
                    append(path, f"{i:05d} {'z' * (i % 40)}\n".encode())
                    i += 1
                    pressure = max(pressure, save.stats.pressure)
                    assert save.error is None, save.error
                    time.sleep(0.02)
                saved_while_throttled = save.bytes_saved
                stop.set()  # the account eases: the last flush goes through
                hog.join()
                save.close()
            finally:
                stop.set()
                hog.join()
        counts = proxy.counts
    blob = service.get_container_client(container_name).get_blob_client(LOG)
    assert blob.download_blob().readall() == path.read_bytes()
    appends = blob.get_blob_properties().append_blob_committed_block_count
    figures = {"appends": appends, "lines": i, "pressure": pressure, "saved": saved_while_throttled, **counts}
    print(f"\nheavy throttling: {figures}")
    assert appends == save.stats.appends, figures
    assert appends < seconds / interval / 2, figures  # fewer, larger appends than flush intervals
    assert pressure >= 2, figures
    assert counts["server_busy"] and counts["timed_out"], figures
    assert save.error is None
    warnings = [r.message for r in caplog.records if "throttling" in r.message]
    assert warnings, caplog.text


@pytest.mark.slow
def test_thousands_of_appends_through_faults_save_every_byte_once(
    proxied: ContainerClient, proxy: FaultProxy, service: BlobServiceClient, tmp_path: Path
) -> None:
    proxy.set_random({"reset": 0.03, "status": 0.03, "delay": 0.01, "drop_response": 0.04})
    path = tmp_path / "app.log"
    save = TrackedSave.start(proxied, LOG, path, flush_interval=0.001, settle=0.2)

    size = 0
    for i in range(2500):
        line = f"{i:06d} {'x' * (i % 50)}\n".encode()
        append(path, line)
        size += len(line)
        while i % 10 and save.bytes_saved < size and save.error is None:  # mostly one line per append
            time.sleep(0.0005)
    save.close()
    proxy.clear()
    blob = service.get_container_client(proxied.container_name).get_blob_client(LOG)
    assert blob.download_blob().readall() == path.read_bytes()
    assert save.lost_bytes == 0
    counts = proxy.counts
    appends = blob.get_blob_properties().append_blob_committed_block_count
    faults = sum(counts[fault] for fault in ("reset", "status", "delay", "drop_response"))
    print(f"{appends} appends, {counts['requests']} requests, {faults} faults: {counts}")
    assert appends >= 2000
    assert counts["drop_response"] >= 20
    assert faults >= 0.1 * counts["requests"]


# --- kill -9 ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_saves_the_file_exactly(
    azurite: Azurite, service: BlobServiceClient, container_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "app.log"
    path.touch()
    rng = random.Random(9)
    stop = threading.Event()

    def write_lines() -> None:
        i = 0
        while not stop.is_set():
            append(path, f"line {i} {'y' * rng.randrange(200)}\n".encode())
            i += 1
            time.sleep(0.002)

    writer = threading.Thread(target=write_lines)
    writer.start()
    command = [
        sys.executable,
        str(CHILD),
        azurite.connection_string,
        container_name,
        LOG,
        str(path),
        "follow",
    ]
    try:
        for round_ in range(24):
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if round_ % 4:  # killed at a random moment of its save, however slow the machine
                ready, _, _ = select.select([child.stdout], [], [], 30)
                assert ready and child.stdout.readline() == b"started\n"
                time.sleep(rng.uniform(0, 0.3))
            else:  # killed blind, maybe before it saved anything
                time.sleep(rng.uniform(0.05, 0.5))
            child.send_signal(signal.SIGKILL)
            _, stderr = child.communicate(timeout=30)
            assert child.returncode == -signal.SIGKILL
            for trouble in (b"replacing", b"another writer", b"stopped"):  # always resumed, never failed
                assert trouble not in stderr, stderr.decode()
    finally:
        stop.set()
        writer.join()
    container = service.get_container_client(container_name)
    saved_before = container.get_blob_client(LOG).get_blob_properties().size
    assert saved_before > 0
    with TrackedSave.start(container, LOG, path, flush_interval=3600, settle=0) as save:
        pass
    assert container.download_blob(LOG).readall() == path.read_bytes()
    assert save.bytes_saved == path.stat().st_size - saved_before
