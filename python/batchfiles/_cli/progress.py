"""Progress bars (tqdm, the optional ``cli`` extra) for transfers of more than a few MiB on a terminal.

No bar when stderr is not a terminal (a pipe, a file, a Batch node's stderr.txt), with ``--quiet``, for
small transfers, or when tqdm is not installed; the transfer is the same either way.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from . import common

#: Transfers smaller than this draw no bar.
MIN_BYTES = 4 * 1024 * 1024


class Progress:
    """A bar over ``total`` bytes, fed from any thread, drawn from the first bytes on (so a transfer
    refused before it starts shows none); does nothing when no bar is drawn."""

    def __init__(self, total: int, description: str) -> None:
        self._bar: Any = None
        self._lock = threading.Lock()
        self._sent: dict[object, int] = {}
        self._total, self._description = total, description
        self._allowed = not common.quiet and _stderr_is_terminal()  # False once closed

    @property
    def drawn(self) -> bool:
        return self._bar is not None

    def advance(self, n: int) -> None:
        if not n or not self._allowed:
            return
        with self._lock:
            if self._bar is None and self._allowed and self._total >= MIN_BYTES:
                self._bar = _bar(self._total, self._description)
                self._allowed = self._bar is not None
            if self._bar is not None:
                self._bar.update(n)

    def grow(self, n: int, description: str) -> None:
        """Add ``n`` bytes to the total, now described as ``description``: for transfers planned while a
        listing goes on (a bar is drawn once the total is large enough)."""
        with self._lock:
            self._total += n
            self._description = description
            if self._bar is not None:
                self._bar.total = self._total
                self._bar.set_description(description, refresh=True)

    def callback(self, key: object) -> Callable[[int, int], None]:
        """A ``progress(sent, total)`` callback for one file of the transfer (the library's signature)."""

        def progress(sent: int, total: int) -> None:
            with self._lock:
                delta = sent - self._sent.get(key, 0)
                self._sent[key] = sent
            self.advance(delta)

        return progress

    def close(self) -> None:
        with self._lock:
            self._allowed = False
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bar(total: int, description: str) -> Any:
    """A tqdm bar on stderr, or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total,
        desc=description,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
