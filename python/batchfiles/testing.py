"""Run Azurite, the Azure Storage emulator, for tests, benchmarks and demos.

    with Azurite() as azurite:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)

Azurite comes from npm (``npm ci`` in a project whose ``package.json`` pins ``azurite``). The
``azurite-blob`` executable is looked up in ``$BATCHFILES_AZURITE``, then in ``node_modules/.bin`` of the
current directory and its parents, then of the virtualenv's folder and its parents, then on ``PATH``.
It listens on a free loopback port, keeps its data in memory and is stopped (with every child process) on
:meth:`Azurite.stop`, at interpreter exit, and on Linux when the Python process dies.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

__all__ = ["ACCOUNT_KEY", "ACCOUNT_NAME", "Azurite", "AzuriteError", "find_azurite"]

#: The well-known development account of Azurite and the Azure Storage emulator.
ACCOUNT_NAME = "devstoreaccount1"
#: Its well-known (public) key.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    """Azurite could not be found or started."""


def find_azurite() -> str:
    """The path of the ``azurite-blob`` executable, or :class:`AzuriteError` saying where it looked."""
    explicit = os.environ.get("BATCHFILES_AZURITE")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise AzuriteError(f"BATCHFILES_AZURITE={explicit!r} is not an executable file")
        return explicit
    for start in (Path.cwd().resolve(), Path(sys.prefix).resolve()):  # the project, or the venv inside it
        for folder in (start, *start.parents):
            candidate = folder / "node_modules" / ".bin" / "azurite-blob"
            if candidate.is_file():
                return str(candidate)
    found = shutil.which("azurite-blob")
    if found:
        return found
    raise AzuriteError(
        "azurite-blob not found: run `npm ci` in the project (its package.json pins azurite), "
        "or set BATCHFILES_AZURITE to the azurite-blob executable"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to stop the child when the parent dies, so no Azurite outlives a killed test run."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Azurite:
    """An in-memory Azurite blob service on a free loopback port.

    :param https_cert: with ``https_key``, serve HTTPS with this PEM certificate (needed for OAuth).
    :param oauth: Azurite's OAuth level (``"basic"``), which accepts bearer tokens over HTTPS.
    """

    def __init__(
        self,
        *,
        executable: str | None = None,
        https_cert: str | None = None,
        https_key: str | None = None,
        oauth: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.executable = executable
        self.https_cert = https_cert
        self.https_key = https_key
        self.oauth = oauth
        self.startup_timeout = startup_timeout
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.https_cert else "http"

    @property
    def account_url(self) -> str:
        """``http://127.0.0.1:PORT/devstoreaccount1``."""
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.account_url};"
        )

    @property
    def credential(self) -> dict[str, str]:
        """The shared key as a credential for ``BlobServiceClient(account_url, credential=...)``."""
        return {"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY}

    def start(self) -> Azurite:
        """Start Azurite and wait until it accepts connections; a port taken meanwhile is retried."""
        if self._proc is not None:
            return self
        executable = self.executable or find_azurite()
        last_error = ""
        for _ in range(3):
            self.port = _free_port()
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as Azurite
            self._proc = subprocess.Popen(
                self._command(executable),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            atexit.register(self.stop)
            last_error = self._wait_ready()
            if not last_error:
                return self
            self.stop()
        raise AzuriteError(f"Azurite did not start: {last_error}")

    def _command(self, executable: str) -> list[str]:
        cmd = [
            executable,
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
            "--loose",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
        ]
        if self.https_cert and self.https_key:
            cmd += ["--cert", self.https_cert, "--key", self.https_key]
        if self.oauth:
            cmd += ["--oauth", self.oauth]
        return cmd

    def _wait_ready(self) -> str:
        """Empty once Azurite accepts connections; otherwise why it did not."""
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                assert self._stderr is not None
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace")
                return f"exited with {self._proc.returncode}: {err.strip()[-500:]}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return ""
            except OSError:
                time.sleep(0.05)
        return f"no answer on port {self.port} within {self.startup_timeout} s"

    def stop(self) -> None:
        """Stop Azurite and every process it started. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
