"""A Batch node agent's OutputFiles, simulated from the documented rules (REST API ``OutputFile``), for tests.

Written apart from batchfiles' own walker (``batchfiles._patterns``), so that the two can be compared:

- a task directory holds ``wd`` (the working directory, where the command runs), ``stdout.txt`` and
  ``stderr.txt`` (the command's output), and the agent's upload logs ``fileuploadout.txt`` /
  ``fileuploaderr.txt``, which it writes while it uploads;
- ``filePattern`` is relative to ``wd``; ``$VAR`` is expanded first; only ``/`` separates (Linux);
  ``*`` any characters in a name, ``**`` any folders (none included), ``?`` one character, ``[abc]``,
  ``[a-c]``, ``[!abc]``; ``abc[*]`` matches ``abc*``; a name starting with ``.`` only where the pattern
  names the dot (for folders as for files);
- a pattern without a wildcard uploads that one file to the blob ``path``; a pattern with one uploads each
  match to ``{path}/{name}``, ``name`` being its path below the pattern's fixed folders (documented for
  ``../std*.txt`` -> ``{path}/stderr.txt``; for ``**`` the folders below are kept: batchfiles' assumption);
- ``uploadCondition`` (any case) against the exit code: taskSuccess 0, taskFailure not 0, taskCompletion any.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from azure.storage.blob import ContainerClient

_WILDCARD = re.compile(r"[*?[]")


class NodeAgent:
    """One task's directory on a node: run its command, then upload its ``outputFiles``."""

    def __init__(self, task_dir: Path) -> None:
        self.task_dir = Path(task_dir)
        self.wd = self.task_dir / "wd"
        self.wd.mkdir(parents=True, exist_ok=True)
        self.uploaded: list[str] = []

    def run(self, command: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 30) -> int:
        """Run ``command`` in ``wd``, its output in the task directory's stdout.txt and stderr.txt."""
        with open(self.task_dir / "stdout.txt", "wb") as out, open(self.task_dir / "stderr.txt", "wb") as err:
            return subprocess.run(
                command, cwd=self.wd, stdout=out, stderr=err, env=env, timeout=timeout
            ).returncode

    def select(self, pattern: str) -> list[tuple[Path, str | None]]:
        """(file, its name below the fixed folders; None for a pattern without wildcard) of each match."""
        pattern = os.path.expandvars(pattern)
        segments = [s for s in pattern.split("/") if s not in ("", ".")]
        first = next((i for i, s in enumerate(segments) if _WILDCARD.search(s)), None)
        if first is None:
            file = self.wd.joinpath(*segments)
            return [(file, None)] if file.is_file() else []
        base = self.wd.joinpath(*segments[:first])
        regex = re.compile(_pattern_regex(segments[first:]))
        found = []
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if path.is_symlink():
                    continue
                rel = path.relative_to(base).as_posix()
                if regex.fullmatch(rel):
                    found.append((path, rel))
        return found

    def upload(self, output_files: list[dict[str, Any]], exit_code: int) -> list[str]:
        """Upload what each output file selects, if its condition holds for ``exit_code``; the blob names."""
        names: list[str] = []
        out = open(self.task_dir / "fileuploadout.txt", "a", buffering=1)  # noqa: SIM115 - written as it goes
        err = open(self.task_dir / "fileuploaderr.txt", "a", buffering=1)  # noqa: SIM115
        try:
            for spec in output_files:
                condition = spec["uploadOptions"]["uploadCondition"].lower()
                if not _holds(condition, exit_code):
                    out.write(f"skipped {spec['filePattern']}: {condition}, exit code {exit_code}\n")
                    continue
                destination = spec["destination"]["container"]
                assert "identityReference" not in destination, "no managed identity here"
                path = destination.get("path")
                with ContainerClient.from_container_url(destination["containerUrl"]) as container:
                    for file, name in self.select(spec["filePattern"]):
                        blob = (path or file.name) if name is None else (f"{path}/{name}" if path else name)
                        out.write(f"uploading {file} to {blob}\n")
                        try:
                            with open(file, "rb") as data:
                                container.upload_blob(blob, data, overwrite=True)
                        except Exception as exc:  # the agent logs and goes on
                            err.write(f"{blob}: {type(exc).__name__}\n")
                            continue
                        names.append(blob)
        finally:
            out.close()
            err.close()
        self.uploaded += names
        return names


def _holds(condition: str, exit_code: int) -> bool:
    if condition == "tasksuccess":
        return exit_code == 0
    if condition == "taskfailure":
        return exit_code != 0
    assert condition == "taskcompletion", condition
    return True


def _pattern_regex(segments: list[str]) -> str:
    """A regex of the ``/``-separated paths below the fixed folders that the rest of a pattern matches."""
    out = ""
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            out += r"(?:(?!\.)[^/]+/)*"
            if last:
                out += r"(?!\.)[^/]+"
            continue
        out += _segment_regex(segment) + ("" if last else "/")
    return out


def _segment_regex(segment: str) -> str:
    """One name: ``*``, ``?``, ``[...]`` (``[!...]`` negated); a leading dot only if the segment has one."""
    out = "" if segment.startswith(".") else r"(?!\.)"
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out += re.escape(c)
            else:
                body = segment[i + 1 : end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                chars = "".join("\\" + ch if ch in "\\^][" else ch for ch in body)
                out += f"[{'^/' if negate else ''}{chars}]"
                i = end
        else:
            out += re.escape(c)
        i += 1
    return out
