"""A small pure-Python reference of the conventions' naming rules, to check the Rust core against."""

from __future__ import annotations

import hashlib
import re
import sys

_PLAIN = re.compile(r"^[a-z0-9][-a-z0-9]*$")
_JOB_ID = re.compile(r"^[A-Za-z0-9_:-]{1,128}$")
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Absolute: a leading separator; on Windows also a drive prefix (elsewhere ``a:b`` is a plain name).
_ABSOLUTE = re.compile(r"^([/\\]|[A-Za-z]:)" if sys.platform == "win32" else r"^[/\\]")


def container_name(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise ValueError(job_id)
    lower = job_id.lower()
    if len(lower) <= 59 and _PLAIN.match(lower) and not lower.endswith("-") and "--" not in lower:
        return f"job-{lower}"
    digest = hashlib.sha1(lower.encode()).hexdigest()
    safe = re.sub(r"[:_-]+", "-", lower).strip("-")[:15].strip("-") or "job"
    return f"job-{safe}-{digest}"


def destination_path(path: str) -> str:
    if not path or re.search(r"[\x00-\x1f\x7f-\x9f]", path) or _ABSOLUTE.match(path):
        raise ValueError(path)
    parts: list[str] = []
    for seg in re.split(r"[/\\]", path):
        if seg == "..":
            if parts:
                parts.pop()
        elif seg not in ("", "."):
            parts.append(seg)
    if not parts or any(part.endswith(".") for part in parts):
        raise ValueError(path)  # Azure would store a segment ending in "." without its dots
    return "/".join(parts)


def blob_name(kind: str, path: str, task_id: str | None = None) -> str:
    if task_id is not None and not _TASK_ID.match(task_id):
        raise ValueError(task_id)
    prefix = f"{task_id}/${kind}" if task_id is not None else f"${kind}"
    name = f"{prefix}/{destination_path(path)}"
    if len(name) > 1024 or name.count("/") + 1 > 254:
        raise ValueError(path)
    return name


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode Cc, as Rust's char::is_control


def path_problem(path: str) -> str | None:
    """The first reason ``path`` is not in normal form (``destination_path(p) == p``), or None."""
    segments = path.split("/")
    checks = [
        (not path, "is empty"),
        (_CONTROL.search(path), "has a control character"),
        ("\\" in path, "has a '\\'"),
        (_ABSOLUTE.match(path), "is absolute"),
        (".." in segments, "has a '..' segment"),
        ("." in segments, "has a '.' segment"),
        ("" in segments, "has an empty segment"),
        (any(s.endswith(".") for s in segments), "has a segment ending in '.'"),
    ]
    return next((why for failed, why in checks if failed), None)


def parse_output_name(blob_name: str, task_id: str | None = None) -> tuple[str, str]:
    """(kind, file path) of an output blob; ValueError(reason) otherwise. An invalid kind's reason is
    just ``"output kind"`` (the core's reason starts so and names the problem too)."""
    rest = blob_name
    if task_id is not None:
        task, _, rest = blob_name.partition("/")
        if task != task_id:
            raise ValueError(f"it is not under {task_id}/")
    kind, _, path = rest.partition("/")
    if not kind.startswith("$"):
        raise ValueError("it has no $Kind segment")
    kind = kind[1:]
    invalid = re.search(r"[/\\\x00-\x1f\x7f-\x9f]", kind)
    if kind in ("", ".", "..") or kind.endswith(".") or kind.startswith("$") or invalid:
        raise ValueError("output kind")
    if not path:
        raise ValueError("it has no file path after its kind")
    problem = path_problem(path)
    if problem is not None:
        raise ValueError(f"its file path {problem}")
    return kind, path
