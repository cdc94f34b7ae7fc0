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
    if not parts:
        raise ValueError(path)
    return "/".join(parts)


def blob_name(kind: str, path: str, task_id: str | None = None) -> str:
    if task_id is not None and not _TASK_ID.match(task_id):
        raise ValueError(task_id)
    prefix = f"{task_id}/${kind}" if task_id is not None else f"${kind}"
    name = f"{prefix}/{destination_path(path)}"
    if len(name) > 1024 or name.count("/") + 1 > 254:
        raise ValueError(path)
    return name
