"""Progress of a transfer of many parts (files, blocks), counted from any thread."""

from __future__ import annotations

import threading

from ._types import Progress


class ProgressCounter:
    """Thread-safe bytes-sent counter calling ``callback(sent, total)``."""

    def __init__(self, total: int, callback: Progress | None) -> None:
        self.total, self.sent, self._callback = total, 0, callback
        self._lock = threading.Lock()

    def part(self) -> Progress:
        """A ``progress(done, total)`` callback for one part (a file) that adds to this counter."""
        done = [0]

        def update(now: int, _total: int) -> None:
            self.add(now - done[0])
            done[0] = now

        return update

    def add(self, n: int) -> None:
        with self._lock:
            self.sent += n
            if self._callback is not None:
                self._callback(self.sent, self.total)
