"""What several test modules share (their fixtures are in conftest.py): waiting and fast retries, the command
line run as ``python -m batchfiles``, tracked logs and an append blob in memory, and :class:`Api`, the sync
API or a blocking view of ``batchfiles.aio``, so that one test body runs against both.

Also imported by the subprocess scripts beside it (tracking_child.py, follow_child.py).
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.storage.blob
import batchfiles
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContainerClient, LinearRetry
from batchfiles import OutputNotFoundError, TaskOutputStorage
from batchfiles._tracking import BlobMethod, Call, Engine, Outcome, drive

#: The task id of the tests' task storage (fixtures ``task``, ``env``).
TASK = "task-1"
#: Upper bound of any wait in the tests; never asserted as a duration.
PATIENCE = 30.0
#: Variables that configure batchfiles or Azure: left out of the environment of the command line's runs.
ENV_PREFIXES = ("AZ_BATCH_", "BATCHFILES_", "AZURE_STORAGE_", "AZURE_CLIENT_", "AZURE_TENANT_")


# --- waiting and retries ------------------------------------------------------------------------------------


def wait_for(
    condition: Callable[[], Any], what: str, *, timeout: float = PATIENCE, every: float = 0.02
) -> Any:
    """Poll ``condition`` every ``every`` s until it returns something true, and return that; fail the test
    after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def fast_retries(policy: type = LinearRetry) -> dict[str, Any]:
    """Client options retrying 8 times, 20 ms apart (ExponentialRetry waits over 1 s once retrying).

    ``policy``: ``azure.storage.blob.aio.LinearRetry`` for an async client.
    """
    return {"retry_policy": policy(backoff=0.02, random_jitter_range=0.01, retry_total=8)}


#: Options of a batchfiles storage that keep batchfiles' retry policy but wait about 0.1 s before a retry,
#: not 1.8 s and more (batchfiles._urls.RETRY_DEFAULTS): for tests of faults that are retried.
QUICK_RETRIES = {"initial_backoff": 0.01, "increment_base": 0.1, "random_jitter_range": 0.01}


# --- the command line, as a subprocess ----------------------------------------------------------------------


def default_sigint() -> None:
    """In a child, before it runs: SIGINT back to its default, so that Ctrl-C (``send_signal(SIGINT)``)
    reaches it however the tests were started (``nohup make test &`` and some CI runners ignore SIGINT,
    and an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchfiles", *args]


def cli(*args: str, env: dict[str, str], cwd: Path | None = None, stdin: str | None = None):
    """Run the command line to its end; stdout and stderr as text."""
    return subprocess.run(
        command(*args),
        env=env,
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=default_sigint,
    )


def start(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """Start the command line in the background, its stdout and stderr piped as text."""
    return subprocess.Popen(
        command(*args),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("batchfiles: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def slash_and_backslash(work: Path, suffix: str) -> None:
    """``a/b{suffix}`` and a file named ``a\\b{suffix}``: two files, one blob name."""
    (work / "a").mkdir(parents=True)
    (work / "a" / f"b{suffix}").write_text("slash")
    (work / f"a\\b{suffix}").write_text("backslash")


def blob_text(storage: TaskOutputStorage, kind: str, path: str) -> str:
    try:
        return storage.get(kind, path).download_text()
    except OutputNotFoundError:
        return ""


def read_or_empty(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def write_script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


# --- tracked logs -------------------------------------------------------------------------------------------

#: The blob of the tracked-save tests.
LOG = "$TaskLog/app.log"


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


def blob_bytes(container: ContainerClient, name: str = LOG) -> bytes:
    return container.download_blob(name).readall()


class MemoryBlob:
    """``Call`` s of the tracking engine against an append blob held in memory, with ETags and metadata;
    appends fail as ``faults`` says, in turn: "before" (not applied), "after" (applied, then the response is
    lost), None (fine). Assigning ``data`` (another writer) changes the ETag, as any write does."""

    refusal = "connection refused"

    def __init__(self, *faults: str | None) -> None:
        self._data: bytes | None = None
        self.version = 0
        self.metadata: dict[str, str] = {}
        self.faults = list(faults)
        self.applied = 0

    @property
    def data(self) -> bytes | None:
        return self._data

    @data.setter
    def data(self, value: bytes | None) -> None:
        self._data = value
        self.version += 1

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def __call__(self, call: Call) -> Any:
        if call.method is BlobMethod.CREATE:
            self.data, self.metadata = b"", dict(call.kwargs.get("metadata") or {})
            return {"etag": self.etag}
        if self.data is None:
            raise ResourceNotFoundError("BlobNotFound")
        if call.method is BlobMethod.GET_PROPERTIES:
            return SimpleNamespace(
                size=len(self.data), blob_type="AppendBlob", etag=self.etag, metadata=dict(self.metadata)
            )
        if call.method is BlobMethod.SET_METADATA:  # the close mark
            if call.kwargs["etag"] != self.etag:
                error = HttpResponseError("412 The condition specified using HTTP conditional header(s) ...")
                error.status_code, error.error_code = 412, "ConditionNotMet"
                raise error
            self.metadata = dict(call.kwargs["metadata"])
            self.version += 1
            return {"etag": self.etag}
        if call.method is BlobMethod.DOWNLOAD:
            assert call.kwargs["etag"] == self.etag
            start = call.kwargs["offset"]
            return self.data[start : start + call.kwargs["length"]]
        assert call.method is BlobMethod.APPEND
        fault = self.faults.pop(0) if self.faults else None
        if fault == "before":
            raise ServiceRequestError(self.refusal)
        if call.kwargs["etag"] != self.etag or call.kwargs["appendpos_condition"] != len(self.data):
            error = HttpResponseError(
                "412 The condition specified using HTTP conditional header(s) is not met."
            )
            error.status_code, error.error_code = 412, "ConditionNotMet"
            raise error
        self.data += call.kwargs["data"]
        self.applied += 1
        if fault == "after":
            raise ServiceResponseError("response lost")
        return {"etag": self.etag}


def flush_in_memory(engine: Engine, blob: MemoryBlob) -> list[Outcome]:
    """Run flush steps (skipping the backoff) until the flush is done or the engine stops."""
    ticket = engine.request_flush()
    outcomes = []
    while not engine.flushed(ticket):
        step = engine.begin(engine.wake_at())
        assert step is not None
        outcomes.append(drive(blob, step))
        engine.end(outcomes[-1], engine.wake_at())
    return outcomes


# --- one test body, sync and aio ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    """The public API a test calls, sync or aio, with the same names: ``batchfiles`` itself, or
    ``batchfiles.aio`` seen through :class:`Blocking` (so the test's calls return what the coroutines do).
    ``BlobServiceClient`` is azure-storage-blob's of the same flavour (the one ``from_service`` takes)."""

    name: str
    TaskOutputStorage: Any
    JobOutputStorage: Any
    prepare_output_storage: Any
    output_storage_container_url: Any
    BlobServiceClient: Any

    def __repr__(self) -> str:
        return self.name


SYNC = Api(
    "sync",
    batchfiles.TaskOutputStorage,
    batchfiles.JobOutputStorage,
    batchfiles.prepare_output_storage,
    batchfiles.output_storage_container_url,
    azure.storage.blob.BlobServiceClient,
)

#: Modules whose objects :class:`Blocking` wraps (their methods are coroutines).
_ASYNC_MODULES = ("batchfiles.aio", "azure.storage.blob.aio")


class Blocking:
    """A blocking view of an object of ``batchfiles.aio`` (or of azure-storage-blob's aio), for one test
    body on both APIs: a call runs its coroutine to the end on ``runner``'s event loop and returns the
    result, itself viewed so (an async iterator becomes a lazy iterator, a list a list of views); ``with``
    enters the async context manager. Arguments that are views are passed on as the objects they view."""

    def __init__(self, target: Any, runner: _Runner) -> None:
        self._target = target
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if callable(value) and not isinstance(value, type):
            return lambda *args, **kwargs: self._runner.call(value, args, kwargs)
        return self._runner.view(value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._runner.call(self._target, args, kwargs)

    def __enter__(self) -> Blocking:
        self._runner.run(self._target.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.run(self._target.__aexit__(*exc))

    def __repr__(self) -> str:
        return repr(self._target)


class _Runner:
    """One event loop, run for each call of a :class:`Blocking`; remembers the clients it made, to close
    them at the end (a test may leave one open, as it may with the sync API)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.made: list[Any] = []

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def call(self, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = function(*map(_target, args), **{k: _target(v) for k, v in kwargs.items()})
        if inspect.isawaitable(result):
            result = self.run(result)
        elif hasattr(result, "__aexit__"):  # a client made by a constructor
            self.made.append(result)
        return self.view(result)

    def view(self, value: Any) -> Any:
        if isinstance(value, AsyncIterator):
            return self._iterate(value)
        if isinstance(value, list):
            return [self.view(item) for item in value]
        if type(value).__module__.startswith(_ASYNC_MODULES):
            return Blocking(value, self)
        return value

    def _iterate(self, iterator: AsyncIterator[Any]) -> Iterator[Any]:
        while True:
            try:
                item = self.run(anext(iterator))
            except StopAsyncIteration:
                return
            yield self.view(item)

    def close(self) -> None:
        try:
            for client in reversed(self.made):
                self.run(client.close())
            self.run(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()


def _target(value: Any) -> Any:
    return value._target if isinstance(value, Blocking) else value


@contextmanager
def blocking_aio() -> Iterator[Api]:
    """``batchfiles.aio`` as an :class:`Api` of blocking calls, on an event loop of its own."""
    import azure.storage.blob.aio  # here: the subprocess scripts import this module, and need no aio
    from batchfiles import aio

    runner = _Runner()
    try:
        yield Api(
            "aio",
            Blocking(aio.TaskOutputStorage, runner),
            Blocking(aio.JobOutputStorage, runner),
            Blocking(aio.prepare_output_storage, runner),
            Blocking(aio.output_storage_container_url, runner),
            Blocking(azure.storage.blob.aio.BlobServiceClient, runner),
        )
    finally:
        runner.close()
