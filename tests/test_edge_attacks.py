"""Attacks on the fixed edges (issue 9) by a fresh reviewer, each of which broke a promise until fixed: a
folder swapped for a link after the walk, a lost answer taken for "already exists", a silent endpoint, a URL
that is not a container's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from batchfiles import OutputExistsError, TaskOutputStorage, prepare_output_storage
from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from faultproxy import FaultProxy


@pytest.fixture
def task(service: BlobServiceClient, job_id: str) -> TaskOutputStorage:
    prepare_output_storage(service, job_id)
    return TaskOutputStorage.from_service(service, job_id, "t1")


# --- a folder replaced by a link between the walk and the upload ---


def test_a_folder_swapped_for_an_outside_link_after_the_walk_is_not_uploaded(
    task: TaskOutputStorage, tmp_path: Path
) -> None:
    """The walk checks links, but each file is then opened by name: a concurrent process that replaces a
    walked folder with a link to outside base_dir gets the outside file uploaded."""
    base, secret = tmp_path / "base", tmp_path / "secret"
    (base / "d").mkdir(parents=True)
    secret.mkdir()
    (secret / "b.txt").write_text("SECRET")
    (base / "a.txt").write_text("a")
    (base / "d" / "b.txt").write_text("b")
    swapped = threading.Event()

    def swap(sent: int, total: int) -> None:  # stands for another process acting mid-save
        if not swapped.is_set():
            swapped.set()
            for child in (base / "d").iterdir():
                child.unlink()
            (base / "d").rmdir()
            (base / "d").symlink_to(secret)

    try:
        refs = task.save_many("TaskOutput", "**/*.txt", base_dir=base, max_concurrency=1, progress=swap)
    except (OSError, ValueError):
        return  # refusing is fine
    assert swapped.is_set()
    saved = {ref.file_path: ref.download_bytes() for ref in refs}
    assert b"SECRET" not in saved.values(), saved


# --- overwrite=False and a lost response ---


@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    with FaultProxy(azurite.port, seed=3, deadline_s=60) as server:
        yield server


@pytest.fixture
def proxied_task(proxy: FaultProxy, service: BlobServiceClient, job_id: str) -> Iterator[TaskOutputStorage]:
    prepare_output_storage(service, job_id)
    credential = {"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY}
    fast = {"retry_total": 3, "initial_backoff": 0.05, "increment_base": 1.1, "random_jitter_range": 0.01}
    with BlobServiceClient(proxy.url_for(ACCOUNT_NAME), credential, **fast) as client:
        yield TaskOutputStorage.from_service(client, job_id, "t1")


@pytest.mark.parametrize("size", [5, 3 * 1024 * 1024], ids=["single-put", "block-list"])
def test_overwrite_false_with_a_lost_response_is_not_a_false_already_exists(
    proxy: FaultProxy, proxied_task: TaskOutputStorage, tmp_path: Path, size: int
) -> None:
    """The first try lands, its response is lost, the retry meets 409/412: the save says "already exists"
    about its own bytes (and save_many stops the rest of the set)."""
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(size))
    writes = ("comp=blocklist",) if size > 5 else ("",)
    proxy.add_rule(
        "drop_response",
        lambda r: r.method == "PUT" and "comp=block&" not in r.query and all(w in r.query for w in writes),
        times=1,
    )
    try:
        ref = proxied_task.save("TaskOutput", path, "f.bin", overwrite=False, block_size=1024 * 1024)
    except OutputExistsError as err:
        pytest.fail(f"a lost response turned into a false error: {err}")
    assert ref.download_bytes() == path.read_bytes()


# --- a storage endpoint that accepts connections and never answers ---


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


def test_cli_list_against_a_silent_endpoint_ends_within_seconds(silent_port: int, tmp_path: Path) -> None:
    """`batchfiles list` waited 4 x 60 s (the SDK's read timeout, retried) before it said anything."""
    url = f"http://127.0.0.1:{silent_port}/{ACCOUNT_NAME}/job-x?sv=2021-08-06&sig=abc"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZ_BATCH_", "BATCHFILES_", "AZURE_"))}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "batchfiles", "list", "x", "--container-url", url],
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


# --- a container URL with more path than a container ---


@pytest.mark.parametrize(
    "url",
    [
        "https://acct.blob.core.windows.net/job-a/t1/$TaskOutput/x.txt?sv=1&sig=abc",  # a blob URL pasted
        "https://acct.blob.core.windows.net/job-a/extra?sv=1&sig=abc",
        "https://acct.blob.core.windows.net/Job_A?sv=1&sig=abc",  # not a container name at all
    ],
)
def test_a_url_that_is_not_a_container_url_is_refused(url: str) -> None:
    """The SDK takes the last path segment as the container: a pasted blob URL silently becomes container
    'x.txt' (another container, reachable with an account SAS or credential)."""
    with pytest.raises(ValueError):
        TaskOutputStorage(url, "t1")
