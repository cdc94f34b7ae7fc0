"""Whose outputs and what they are called: a task's or the job's scope, its kinds and blob names, the
prefix a listing asks for, and the references built from listed, saved or snapshot blobs (only for names in
the conventions' normal form)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import _native, naming
from ._types import OnInvalid, PathLike
from ._urls import public_url
from .kinds import JobOutputKind, KindLike, OutputKind, TaskOutputKind, builtin_side, kind_text

logger = logging.getLogger("batchfiles")


@dataclass(frozen=True)
class Scope:
    """Whose outputs: a task's (``task_id``) or the job's own (``task_id is None``)."""

    container: str
    task_id: str | None = None

    @property
    def kind_class(self) -> type[OutputKind]:
        return TaskOutputKind if self.task_id is not None else JobOutputKind

    def kind(self, kind: KindLike) -> OutputKind:
        """The kind object of ``kind``; a built-in kind of the other side (job vs task) is refused."""
        text = kind_text(kind)
        side = "task" if self.task_id is not None else "job"
        if isinstance(kind, OutputKind) and not isinstance(kind, self.kind_class):
            raise ValueError(f"{kind!r} is not a {side} output kind; use {self.kind_class.__name__}")
        other = builtin_side(text) if isinstance(kind, str) else None
        if other not in (None, side):
            raise ValueError(f"{text!r} is a {other} output kind, not a {side} output kind")
        return self.kind_class(text)

    def blob_name(self, kind: KindLike, path: str) -> str:
        """The blob name of ``path`` (a path under the kind) saved as ``kind``."""
        return naming.blob_name(self.kind(kind), path, self.task_id)

    def save_name(self, kind: KindLike, path: PathLike, destination: str | None) -> str:
        """The blob name a local file is saved under: ``destination``, or ``path`` if it is relative."""
        if destination is not None:
            return self.blob_name(kind, destination)
        path = os.fspath(path)
        if os.path.isabs(path):
            raise ValueError(f"path {path!r} is absolute: pass destination= to name it in storage")
        return self.blob_name(kind, path)

    def log_kind(self, kind: KindLike | None, what: str) -> KindLike:
        """``kind``, or a task's default ``TaskLog`` (for ``what``: a job must name one)."""
        if kind is None:
            if self.task_id is None:
                raise TypeError(f"{what} on job storage needs kind= (e.g. JobOutputKind.custom('Logs'))")
            kind = TaskOutputKind.TASK_LOG
        return kind

    def tracked_name(self, kind: KindLike | None, path: PathLike, destination: str | None) -> str:
        """The blob of a tracked file: a task's default kind is ``TaskLog``; a job must name one."""
        return self.save_name(self.log_kind(kind, "save_tracked"), path, destination)

    def list_prefix(self, kind: KindLike | None) -> str:
        """The listing prefix; it ends with ``/`` so ``$TaskOutput`` never matches ``$TaskOutputX``."""
        if kind is None:
            return f"{self.task_id}/$" if self.task_id is not None else "$"
        return naming.blob_prefix(self.kind(kind), self.task_id) + "/"

    def get_name(self, kind: KindLike, path: str) -> str:
        """The blob name ``get(kind, path)`` reads: a ``.`` or ``..`` segment is refused, not resolved, so
        ``q/../b`` never silently stands for ``b``."""
        if isinstance(path, str) and any(seg in (".", "..") for seg in re.split(r"[/\\]", path)):
            raise ValueError(f"path {path!r} has a '.' or '..' segment: give the file path list() shows")
        return self.blob_name(kind, path)

    def parse(self, blob_name: str) -> tuple[OutputKind, str]:
        """(kind, file path) of an output blob of this scope; :class:`NotAnOutput` says why another is not.

        An output's file path is in the conventions' normal form (see :func:`path_problem`); the rule is
        the native ``parse_output_name``.
        """
        try:
            kind, path = _native.parse_output_name(blob_name, self.task_id)
        except ValueError as err:
            raise NotAnOutput(str(err)) from None
        return self.kind_class(kind), path


class NotAnOutput(ValueError):
    """A blob name that is not an output of a scope; ``str()`` is the reason."""


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a file path in the conventions' normal form (``destination_path(p) == p``: no
    ``.``, ``..`` or empty segments, none ending in ``.``, no ``\\``, no control characters, not absolute), or
    None if it is."""
    return _native.path_problem(path)


def is_task_folder(prefix: str) -> bool:
    """Is a top-level ``walk_blobs`` prefix (``"t1/"``) the folder of a task's outputs?"""
    if not prefix.endswith("/"):
        return False
    try:
        _native.validate_task_id(prefix[:-1])
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ReferenceInfo:
    """What is known of a saved output without reading it; only an output in normal form has one."""

    kind: OutputKind
    file_path: str
    blob_name: str
    url: str
    size: int
    content_md5: bytes | None
    content_type: str | None
    last_modified: datetime | None
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problem = path_problem(self.file_path)
        if problem is None and not self.blob_name.endswith(f"${self.kind}/{self.file_path}"):
            problem = "is not the end of its blob name"
        if problem is not None:
            raise ValueError(f"{self.blob_name!r} is not an output: its file path {problem}")


def reference_info(scope: Scope, blob_url: str, props: Any) -> ReferenceInfo:
    """The info of a listed or fetched blob (``BlobProperties``); :class:`NotAnOutput` if it is not an
    output of ``scope`` (outside the conventions, or a file path not in normal form)."""
    kind, file_path = scope.parse(props.name)
    settings = props.content_settings
    md5 = settings.content_md5 if settings else None
    return ReferenceInfo(
        kind=kind,
        file_path=file_path,
        blob_name=props.name,
        url=public_url(blob_url),
        size=props.size or 0,
        content_md5=bytes(md5) if md5 else None,
        content_type=settings.content_type if settings else None,
        last_modified=props.last_modified,
        metadata=dict(props.metadata or {}),
    )


def listed_info(
    scope: Scope, blob_url: str, props: Any, on_invalid: OnInvalid | None
) -> ReferenceInfo | None:
    """The info of a listed blob, or None for a blob that is not an output: ``on_invalid(name, reason)``
    is told of it, or else a warning is logged on the ``batchfiles`` logger."""
    try:
        return reference_info(scope, blob_url, props)
    except NotAnOutput as err:
        if on_invalid is not None:
            on_invalid(props.name, str(err))
        else:
            logger.warning("skipped blob %r: %s", props.name, err)
        return None


def snapshot_info(output: Any) -> ReferenceInfo:
    """The info of an output of a :mod:`batchfiles.snapshot` (its first blob's, for one in parts), without
    asking storage again."""
    return ReferenceInfo(
        kind=output.kind,
        file_path=output.file_path,
        blob_name=output.blob_name,
        url=output.url,
        size=output.size,
        content_md5=output.content_md5,
        content_type=output.content_type,
        last_modified=output.last_modified,
        metadata=dict(output.metadata),
    )


def snapshot_prefix(task_id: str | None) -> str:
    """What a snapshot lists: the whole container, or one task's folder (ValueError for a bad task id)."""
    if task_id is None:
        return ""
    _native.validate_task_id(task_id)
    return f"{task_id}/"


def uploaded_info(scope: Scope, blob: Any, size: int, upload: dict[str, Any], response: Any) -> ReferenceInfo:
    """The info of a blob just written with the ``upload`` options, without asking storage again."""
    try:
        kind, file_path = scope.parse(blob.blob_name)
    except NotAnOutput as err:
        raise ValueError(f"{blob.blob_name!r} is not an output blob of {scope}: {err}") from None
    settings = upload["content_settings"]
    return ReferenceInfo(
        kind=kind,
        file_path=file_path,
        blob_name=blob.blob_name,
        url=public_url(blob.url),
        size=size,
        content_md5=bytes(settings.content_md5) if settings.content_md5 else None,
        content_type=settings.content_type,
        last_modified=response.get("last_modified"),
    )


def reference_of(scope: Scope, blob_url: str, props: Any) -> ReferenceInfo:
    """The info of a blob whose name this scope derived; ValueError if it is not an output."""
    try:
        return reference_info(scope, blob_url, props)
    except NotAnOutput as err:
        raise ValueError(f"{props.name!r} is not an output blob of {scope}: {err}") from None
