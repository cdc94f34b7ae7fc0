"""Names of the Batch File Conventions, derived by the Rust core.

Every function raises :class:`ValueError` naming the offending input, and :class:`TypeError` for an
argument of the wrong type. The bulk functions cross into Rust once and release the GIL.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import _native
from .kinds import KindLike, kind_text

__all__ = [
    "blob_name",
    "blob_names",
    "blob_prefix",
    "container_name",
    "container_names",
    "destination_path",
    "file_path",
]


def container_name(job_id: str) -> str:
    """The container of a job's outputs: ``job-{id}``, or ``job-{prefix}-{sha1}`` for ids that are not
    valid container names as they are (``"MyJob"`` → ``"job-myjob"``)."""
    return _native.container_name(job_id)


def container_names(job_ids: Sequence[str]) -> list[str]:
    """:func:`container_name` of many ids at once; an error names the index of the bad id."""
    return _native.container_names(job_ids)


def blob_prefix(kind: KindLike, task_id: str | None = None) -> str:
    """The prefix of every blob of a kind: ``"$JobOutput"``, or ``"t1/$TaskLog"`` for task ``t1``."""
    return _native.blob_prefix(kind_text(kind), task_id)


def blob_name(kind: KindLike, path: str, task_id: str | None = None) -> str:
    """The blob name of a relative ``path`` saved as ``kind``: ``"t1/$TaskOutput/frames/1.png"``.

    ``path`` is normalised with :func:`destination_path`.
    """
    return _native.blob_name(kind_text(kind), path, task_id)


def blob_names(kind: KindLike, paths: Sequence[str], task_id: str | None = None) -> list[str]:
    """:func:`blob_name` of many paths at once; an error names the index of the bad path."""
    return _native.blob_names(kind_text(kind), paths, task_id)


def destination_path(relative_path: str) -> str:
    """The blob-relative path a local relative path is saved under.

    ``\\`` separates like ``/``; ``.`` and empty segments vanish; ``a/../b`` is ``b``; a ``..`` that would
    climb above the start is dropped (``../../x`` → ``x``). Absolute paths (a leading ``/`` or ``\\``; on
    Windows also a drive, ``C:``), control characters and paths that name nothing raise :class:`ValueError`;
    elsewhere ``a:b`` is an ordinary name.
    """
    return _native.destination_path(relative_path)


def file_path(blob_name: str) -> str:
    """The path of a blob under its kind: strips ``{task}/$Kind/`` or ``$Kind/``."""
    return _native.file_path(blob_name)
