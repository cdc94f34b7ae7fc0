"""Downloads of large outputs in parallel ranged reads: equal bytes, verified, one version of the blob, no
partial file left on failure; through faults and the strict proxy (416 for a range at a blob's end)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient, ContentSettings
from batchfiles import (
    BatchFilesError,
    IntegrityError,
    TaskOutputStorage,
    _download,
    _throttle,
    aio,
    storage,
)
from batchfiles.testing import Azurite
from faultproxy import FaultProxy
from helpers import QUICK_RETRIES, TASK

RANGE = 64 * 1024  # small ranges, so a few MiB make many
#: The ``proxy`` fixture's options (tests/conftest.py).
pytestmark = pytest.mark.fault_proxy(seed=7, deadline_s=300)


@pytest.fixture(autouse=True)
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_download, "RANGE_SIZE", RANGE)
    monkeypatch.setattr(_download, "RANGES_AHEAD", 3)
    monkeypatch.setattr(_download, "RANGE_CONCURRENCY", 2)


@pytest.fixture
def proxied_task(proxy: FaultProxy, azurite: Azurite, prepared: str) -> Iterator[TaskOutputStorage]:
    """The task's storage through the fault proxy, to count or fail its requests (retried at once)."""
    url = proxy.url_for("devstoreaccount1")
    conn = azurite.connection_string.replace(azurite.account_url, url)
    with TaskOutputStorage.from_connection_string(conn, prepared, TASK, **QUICK_RETRIES) as s:
        yield s


def ranged_gets(proxy: FaultProxy) -> int:
    return proxy.counts["forwarded"]


@pytest.mark.parametrize("size", [0, 1, RANGE - 1, RANGE, RANGE + 1, 10 * RANGE + 7])
def test_downloads_equal_the_saved_bytes(task: TaskOutputStorage, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    ref = task.save_bytes("TaskOutput", data, "x.bin")
    assert ref.download_bytes() == data
    target = ref.download_to_file(tmp_path / "out" / "x.bin")
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]  # no partial file left


def test_a_large_blob_is_read_in_ranges_with_progress(
    proxied_task: TaskOutputStorage, proxy: FaultProxy, tmp_path: Path
) -> None:
    data = os.urandom(10 * RANGE + 7)
    ref = proxied_task.save_bytes("TaskOutput", data, "x.bin")
    before = ranged_gets(proxy)
    seen: list[tuple[int, int]] = []
    ref.download_to_file(tmp_path / "x.bin", progress=lambda done, total: seen.append((done, total)))
    assert ranged_gets(proxy) - before == 11  # the first range, then 10 more
    assert seen[-1] == (len(data), len(data)) and all(t == len(data) for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_resets_and_5xx_on_ranges_are_retried(
    proxied_task: TaskOutputStorage, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_throttle, "THROTTLED_WINDOW", (0.01, 0.01))  # a 503 is throttling: waits shrunk
    monkeypatch.setattr(_throttle, "NO_RETRY_AFTER", 0.01)
    data = os.urandom(20 * RANGE)
    ref = proxied_task.save_bytes("TaskOutput", data, "x.bin")

    def later_range(request: Any) -> bool:  # a range after the first (under If-Match)
        return request.method == "GET" and "if-match" in request.headers

    for fault, status in (("reset", 503), ("status", 500), ("status", 503), ("drop_response", 503)):
        proxy.add_rule(fault, later_range, times=1, status=status)
    try:
        assert hashlib.md5(ref.download_bytes()).digest() == hashlib.md5(data).digest()
    finally:
        proxy.clear()
    assert (proxy.counts["reset"], proxy.counts["status"], proxy.counts["drop_response"]) == (1, 2, 1)


def test_a_blob_replaced_while_read_is_an_error_and_leaves_no_file(
    task: TaskOutputStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = task.save_bytes("TaskOutput", os.urandom(5 * RANGE), "x.bin")
    read_range = storage._read_range

    def replaced_first(blob, etag, offset, length):  # type: ignore[no-untyped-def]
        task.save_bytes("TaskOutput", os.urandom(5 * RANGE), "x.bin")  # a new version meanwhile
        return read_range(blob, etag, offset, length)

    monkeypatch.setattr(storage, "_read_range", replaced_first)
    with pytest.raises(BatchFilesError, match="changed while it was being read"):
        ref.download_to_file(tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a partial file


def test_a_damaged_blob_leaves_no_file(
    task: TaskOutputStorage, container: ContainerClient, tmp_path: Path
) -> None:
    data = os.urandom(4 * RANGE)
    task.save_bytes("TaskOutput", data, "x.bin")
    blob = container.get_blob_client(f"{TASK}/$TaskOutput/x.bin")
    blob.set_http_headers(ContentSettings(content_md5=bytearray(hashlib.md5(b"other").digest())))
    with pytest.raises(IntegrityError):
        task.get("TaskOutput", "x.bin").download_to_file(tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []


def test_async_downloads_in_ranges(azurite: Azurite, prepared: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        conn = azurite.connection_string
        async with aio.TaskOutputStorage.from_connection_string(conn, prepared, TASK) as task:
            for size in (0, RANGE + 1, 7 * RANGE + 3):
                data = os.urandom(size)
                ref = await task.save_bytes("TaskOutput", data, f"{size}.bin")
                assert await ref.download_bytes() == data
                target = await ref.download_to_file(tmp_path / f"{size}.bin")
                assert target.read_bytes() == data

    asyncio.run(scenario())


class _Answered:
    """A download whose bytes arrived in one response (as the SDK's after its first request)."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = parts

    def readinto(self, stream) -> int:  # type: ignore[no-untyped-def]
        return sum(stream.write(part) for part in self.parts)


def test_a_range_is_the_answers_bytes_object_not_a_copy() -> None:
    data = os.urandom(3 * RANGE)
    assert _download.content_of(_Answered(data)) is data
    assert _download.content_of(_Answered()) == b""
    assert _download.content_of(_Answered(b"ab", b"cd")) == b"abcd"


def test_downloads_into_existing_and_missing_folders(task: TaskOutputStorage, tmp_path: Path) -> None:
    data = os.urandom(RANGE + 1)
    ref = task.save_bytes("TaskOutput", data, "x.bin")
    for target in (tmp_path / "x.bin", tmp_path / "a" / "b" / "x.bin", tmp_path / "a" / "y.bin"):
        assert ref.download_to_file(target).read_bytes() == data
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OSError):
        ref.download_to_file(tmp_path / "file" / "x.bin")  # a file where a folder should be
