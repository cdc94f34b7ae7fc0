"""Signals in ``run`` and ``track``: forwarded to ``run``'s command while it runs; afterwards (and in
``track``) they stop the saving."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any

#: Signals ``run`` forwards to the command (SIGHUP where it exists).
FORWARDED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


class Interrupted(Exception):
    """A signal arrived while saving, once there was nothing left to forward it to: stop saving."""


def handled_signals() -> list[int]:
    """The forwarded signals not ignored by whoever started us (``nohup`` ignores SIGHUP: so do we, and
    CMD inherits that)."""
    return [signum for signum in FORWARDED if signal.getsignal(signum) != signal.SIG_IGN]


class Forwarding:
    """While the command runs, SIGTERM, SIGINT and SIGHUP go to its process group; afterwards they stop
    the saving (:class:`Interrupted`). The command runs in a session of its own, so a terminal's Ctrl-C
    reaches it once, through us, and not twice."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.command_done = False
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Forwarding:
        for signum in handled_signals():
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        for signum in self.received:  # arrived while it was being started
            self._forward(signum)

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        if self.command_done:
            raise Interrupted(signal.Signals(signum).name)
        if self.proc is not None:
            self._forward(signum)

    def _forward(self, signum: int) -> None:
        assert self.proc is not None
        if self.proc.returncode is not None:
            return
        try:
            if hasattr(os, "killpg"):
                os.killpg(self.proc.pid, signum)
            else:  # pragma: no cover - Windows
                self.proc.send_signal(signum)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(OSError):
                self.proc.send_signal(signum)
