"""Type aliases of the API: local paths, and the callbacks of transfers and listings."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]

#: ``progress(done, total)``: bytes transferred so far, of ``total``.
Progress = Callable[[int, int], None]

#: ``on_invalid(blob_name, reason)``: told of each blob that a listing (``list()``, ``snapshot()``,
#: ``follow_logs()``) skips as not an output.
OnInvalid = Callable[[str, str], None]
