"""What the tests of ``batchfiles view`` share (test_view, test_view_browser and the view benchmarks,
benches/test_bench_view*.py): tiny PNGs, a job of many tasks made fast, and the server run as ``python -m
batchfiles view`` in a subprocess, stopped with Ctrl-C (SIGINT), or in a thread of the test's process."""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from azure.storage.blob import BlobServiceClient, ContainerClient
from batchfiles import naming
from batchfiles._tracking import limits
from batchfiles.snapshot import outcome_metadata

CHROMIUM = "/usr/bin/chromium"
ENV_PREFIXES = ("AZ_BATCH_", "BATCHFILES_", "AZURE_STORAGE_", "AZURE_CLIENT_", "AZURE_TENANT_")


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour (8-bit RGB), built with zlib and struct."""
    raw = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def task_id(index: int) -> str:
    return f"task-{index}"


def put_log(
    container: ContainerClient,
    task: str,
    text: str,
    *,
    exit_code: int | None = None,
    open_: bool = False,
    name: str = "stdout.txt",
) -> None:
    """A task's log (``stdout.txt``) as a tracked save leaves it: an append blob, open (a writer's mark) or
    closed with ``run``'s outcome (``exit_code``)."""
    metadata = {limits.WRITER_KEY: "test"}
    if not open_:
        metadata[limits.CLOSED_KEY] = "1"
        if exit_code is not None:
            now = datetime.now(timezone.utc)
            metadata.update(outcome_metadata(exit_code, now, now))
    blob = container.get_blob_client(naming.blob_name("TaskLog", name, task))
    blob.upload_blob(text.encode(), blob_type="AppendBlob", metadata=metadata, overwrite=True)


def make_job(
    service: BlobServiceClient, job: str, tasks: int, *, failed: tuple[int, ...] = ()
) -> ContainerClient:
    """A job of ``tasks`` tasks, each with a TaskPreview PNG and a closed log (exit 3 for ``failed``, else 0),
    written from a few threads (a 1,000-task job in seconds)."""
    container = service.get_container_client(naming.container_name(job))
    if not container.exists():
        container.create_container()

    def one(index: int) -> None:
        task = task_id(index)
        thumb = png(24, 16, ((index * 37) % 256, (index * 91) % 256, 180))
        container.upload_blob(naming.blob_name("TaskPreview", "thumb.png", task), thumb, overwrite=True)
        put_log(container, task, f"task {index} line 1\n", exit_code=3 if index in failed else 0)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(tasks)))
    return container


def view_env(**storage: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    return {**clean, **storage}


@dataclass
class Served:
    url: str
    port: int
    proc: subprocess.Popen[str]
    stderr: str = ""


@contextmanager
def serve(job: str, env: dict[str, str], *args: str, timeout: float = 30.0) -> Iterator[Served]:
    """``batchfiles view JOB --no-browser`` on a free port until the block ends, then Ctrl-C (SIGINT): it
    must stop cleanly (exit 0, no traceback); ``Served.stderr`` has what it printed."""
    command = [sys.executable, "-m", "batchfiles", "view", job, "--no-browser", *args]
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C must reach it even when the tests run with SIGINT ignored (nohup make test &)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    line = ""
    while not line and time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            line = proc.stdout.readline().strip()
    if not line.startswith("http://127.0.0.1:"):
        proc.kill()
        raise AssertionError(f"view did not start: {line!r} {proc.communicate()[1]!r}")
    served = Served(line, int(line.rsplit(":", 1)[1].strip("/")), proc)
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, served.stderr = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, served.stderr = proc.communicate()
            raise AssertionError("view did not stop on Ctrl-C within 15 s") from None
    assert proc.returncode == 0, served.stderr
    assert "Traceback" not in served.stderr, served.stderr


@contextmanager
def serve_in_thread(connection_string: str, job: str, timeout: float = 30.0) -> Iterator[str]:
    """:func:`batchfiles.view.serve` in a thread of this process (an event loop of its own), so a test can
    patch the server's code; yields the page's URL, and stops the server (cancelled) when the block ends."""
    import asyncio

    from batchfiles.aio import JobOutputStorage
    from batchfiles.view import serve as serve_view

    urls: list[str] = []
    started = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()

    def ready(url: str) -> None:
        urls.append(url)
        started.set()

    storage = JobOutputStorage.from_connection_string(connection_string, job)
    task = loop.create_task(serve_view(storage, job, ready=ready))

    def run() -> None:
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # the test reports it
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        if not started.wait(timeout) or not urls:
            raise AssertionError(f"view did not start: {failure!r}")
        yield urls[0]
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
    assert not failure, failure
