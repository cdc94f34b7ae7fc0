"""What the end-to-end tests of the command line share (test_cli_run, test_cli_transfer): a Batch node's
environment, a prepared job, and ``python -m batchfiles`` run as a subprocess. Loaded as a pytest plugin by
conftest.py, so its fixtures need no import.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from batchfiles import OutputNotFoundError, TaskOutputStorage, prepare_output_storage
from batchfiles.testing import Azurite

TASK = "task-1"
#: Upper bound of any wait in these tests; never asserted as a duration.
PATIENCE = 30.0
ENV_PREFIXES = ("AZ_BATCH_", "BATCHFILES_", "AZURE_STORAGE_", "AZURE_CLIENT_", "AZURE_TENANT_")


@pytest.fixture
def env(azurite: Azurite, job_id: str) -> dict[str, str]:
    """A Batch node's environment: job and task ids, and storage through a connection string."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    return {
        **clean,
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AZ_BATCH_JOB_ID": job_id,
        "AZ_BATCH_TASK_ID": TASK,
    }


@pytest.fixture
def bare_env() -> dict[str, str]:
    """No storage and no ids at all."""
    return {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}


@pytest.fixture
def prepared(service: BlobServiceClient, job_id: str) -> str:
    prepare_output_storage(service, job_id)
    return job_id


@pytest.fixture
def task_storage(azurite: Azurite, prepared: str):
    with TaskOutputStorage.from_connection_string(azurite.connection_string, prepared, TASK) as storage:
        yield storage


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


def slash_and_backslash(work: Path, suffix: str) -> None:
    """``a/b{suffix}`` and a file named ``a\\b{suffix}``: two files, one blob name."""
    (work / "a").mkdir(parents=True)
    (work / "a" / f"b{suffix}").write_text("slash")
    (work / f"a\\b{suffix}").write_text("backslash")


def wait_for(condition: Callable[[], object], what: str) -> object:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def blob_text(storage: TaskOutputStorage, kind: str, path: str) -> str:
    try:
        return storage.get(kind, path).download_text()
    except OutputNotFoundError:
        return ""


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("batchfiles: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def read_or_empty(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def write_script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path
