"""The Batch service's OutputFiles, named by the conventions: a task's ``outputFiles`` (REST API JSON) whose
uploads, made by the node agent when the task exits, land where ``list``/``get`` and ``save_many`` put them.

No dependency on azure-batch: :func:`output_files` returns plain dicts, which azure-batch 15.x models take
as they are (``BatchTaskCreateOptions(..., output_files=...)``); :func:`to_batch_models` converts them when
azure-batch is installed.

How the node agent names what it uploads (the REST API's rules, and one assumption):

- ``filePattern`` is relative to the task's working directory (``wd`` in the task directory, whose files
  ``stdout.txt``, ``stderr.txt`` and the agent's upload logs are ``../NAME``);
- a pattern without a wildcard names one file, and ``path`` is its whole blob name;
- a pattern with a wildcard (``*``, ``**``, ``?`` or ``[``; an escape such as ``[*]`` counts) uploads each
  match under ``path``, the pattern's fixed directory prefix left out (documented: ``../std*.txt`` with path
  ``mytask`` gives ``mytask/stderr.txt``);
- **assumption** (the documentation is silent): a match keeps its path below that fixed prefix, folders
  included, so ``out/**/*.txt`` matching ``out/a/b.txt`` gives ``{path}/a/b.txt``.

So a wildcard pattern gets ``path = {task}/$Kind/{fixed prefix}`` (``..`` dropped) and a plain one
``{task}/$Kind/{its path}``: the blobs are those ``save_many(kind, pattern)`` would write for the same files
(job kinds: ``$Kind/...``).

Refused, with :class:`~batchfiles.errors.OutputFilesError`: absolute patterns, patterns that climb out of the
task directory (more than one leading ``..``), patterns with ``$`` or ``%VAR%`` (the agent expands
environment variables first, so their names cannot be known here), control characters or a ``[`` never
closed or a ``[^`` set (which the agent may read either way); patterns that reach into a folder of the task
directory (``../wd/*.txt``, ``../**``: names ``save_many`` never gives); a container URL with a ``#fragment``
or a port out of range; a SAS that has expired, whose expiry or start is not a time, that starts more than
an hour ahead, grants no write, or is an account SAS without the blob service (``ss=``); two patterns of
one kind that can upload a working-directory file and the task directory's of the same name to one blob
(``*.txt=TaskLog`` with ``../stdout.txt=TaskLog``, ``**/*.log`` with ``../*.log``: decided by the names both
can match, :func:`batchfiles._patterns.common_name`; not ``@success`` with ``@failure``).

Not covered: the agent uploads a matched file under its name as it is, so a name the conventions would
refuse or change (control characters; a ``\\`` in a Linux file name) is uploaded where ``list`` skips it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import _errors, _sas, _urls, naming
from ._patterns import CONDITIONS, RECURSIVE, OutputSpec, common_name, is_pattern, parse_spec
from .errors import OutputFilesError
from .kinds import JobOutputKind, OutputKind, builtin_side

__all__ = [
    "CONDITIONS",
    "TASK_LOGS",
    "UPLOAD_LOGS",
    "OutputSpec",
    "output_files",
    "to_batch_models",
]

#: ``uploadCondition`` of each condition, as the REST API reference spells them (the service reads them
#: case-insensitively; azure-batch 15.x's enum sends them in lower case).
UPLOAD_CONDITIONS = {"success": "taskSuccess", "failure": "taskFailure", "completion": "taskCompletion"}

#: The task's console output, kept in the task directory by the node agent: TaskLog, whatever the exit code.
#: Not with ``batchfiles run`` as the command, which saves its own stdout.txt and stderr.txt there, live.
TASK_LOGS = (
    OutputSpec("../stdout.txt", "TaskLog", "completion"),
    OutputSpec("../stderr.txt", "TaskLog", "completion"),
)
#: The node agent's own logs of these uploads (``fileuploadout.txt``, ``fileuploaderr.txt``), to diagnose a
#: failed upload: TaskLog. The agent writes them while it uploads, so what is saved is what it had written
#: when it came to them; its lines about later uploads are not in the saved copy.
UPLOAD_LOGS = (OutputSpec("../fileupload*.txt", "TaskLog", "completion"),)

_ENV_VARIABLE = re.compile(r"\$|%[^%/\\]+%")
_ABSOLUTE = re.compile(r"^(?:[/\\]|[A-Za-z]:[/\\]|[A-Za-z]:\Z)")
_IDENTITY = re.compile(
    r"/subscriptions/[^/?#\s]+/resourceGroups/[^/?#\s]+/providers/Microsoft\.ManagedIdentity/"
    r"userAssignedIdentities/[^/?#\s]+",
    re.IGNORECASE,
)
#: How far ahead a SAS's start time (``st=``) may be: a task can run, and its uploads start, as soon as it
#: is added; the service allows for some clock skew.
START_AHEAD = timedelta(hours=1)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def output_files(
    container_url: str,
    task_id: str,
    outputs: str | OutputSpec | Iterable[str | OutputSpec],
    *,
    identity_reference: str | None = None,
    upload_headers: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """A task's ``outputFiles`` (Batch REST API JSON): each of ``outputs`` uploaded by the node agent under
    the conventions' names, in the job's container at ``container_url``.

    ``outputs``: ``PATTERN[=KIND][@CONDITION]`` texts (as ``batchfiles run --output`` takes them) or
    :class:`OutputSpec` objects; add :data:`TASK_LOGS` and :data:`UPLOAD_LOGS` for the task's logs.
    ``container_url``: with a SAS granting write (``output_storage_container_url``), or plain with
    ``identity_reference``, the resource id of a user-assigned managed identity of the pool that may write.
    ``upload_headers``: headers of every upload (e.g. ``{"x-ms-blob-content-type": "image/png"}``).

    Raises :class:`~batchfiles.errors.OutputFilesError` (a ``ValueError``) for what cannot be named by the
    conventions; its message never holds the SAS.
    """
    container = _container(container_url, identity_reference, upload_headers)
    try:
        naming.blob_prefix("TaskOutput", task_id)
    except (TypeError, ValueError) as err:
        raise OutputFilesError(f"bad task id: {err}") from None
    files: list[dict[str, Any]] = []
    uploads: list[_Upload] = []
    for spec in _specs(outputs):
        pattern, path = _pattern_and_path(spec, task_id)
        upload = _Upload(
            spec, pattern, naming.blob_prefix(spec.kind, None if _job_side(spec.kind) else task_id)
        )
        for other in uploads:
            _check_no_overlap(other, upload)
        uploads.append(upload)
        entry = {
            "filePattern": pattern,
            "destination": {"container": {"containerUrl": container_url, "path": path, **container}},
            "uploadOptions": {"uploadCondition": UPLOAD_CONDITIONS[spec.condition]},
        }
        if entry not in files:
            files.append(entry)
    return files


def to_batch_models(files: Iterable[Mapping[str, Any]]) -> list[Any]:
    """azure-batch's ``OutputFile`` models (azure-batch 15 or later) of :func:`output_files`' dicts."""
    try:
        from azure.batch.models import OutputFile, OutputFileUploadConfiguration  # noqa: F401 - 15.x only
    except ImportError:
        raise ImportError(
            "to_batch_models needs azure-batch 15 or later (pip install 'azure-batch>=15'); "
            "the dicts of output_files need nothing: pass them to any client or REST call as they are"
        ) from None
    return [OutputFile(copy.deepcopy(dict(file))) for file in files]


def _specs(outputs: str | OutputSpec | Iterable[str | OutputSpec]) -> list[OutputSpec]:
    if isinstance(outputs, (str, OutputSpec)):
        outputs = [outputs]
    specs: list[OutputSpec] = []
    for output in outputs:
        if isinstance(output, OutputSpec):
            specs.append(output)
        elif isinstance(output, str):
            try:
                specs.append(parse_spec(output))
            except ValueError as err:
                raise OutputFilesError(str(err)) from None
        else:
            raise TypeError(f"an output is a str or an OutputSpec, not {type(output).__name__}")
    if not specs:
        raise OutputFilesError("no outputs given")
    return specs


def _pattern_and_path(spec: OutputSpec, task_id: str) -> tuple[str, str]:
    """(``filePattern``, ``path``) of one output: the pattern normalised (``/`` separators, ``.`` gone,
    ``a/..`` resolved), and where the agent must put its files for them to get the conventions' names."""
    text = spec.pattern
    problem = _pattern_problem(text)
    if problem:
        raise OutputFilesError(f"pattern {text!r} {problem}")
    climbs, parts = 0, []
    for part in text.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            climbs += 1
    if climbs > 1:
        raise OutputFilesError(
            f"pattern {text!r} climbs out of the task directory: patterns are relative to the task's "
            "working directory, and only its task directory's own files (../stdout.txt) may be named"
        )
    if not parts:
        raise OutputFilesError(f"pattern {text!r} names no file once '.' and '..' are resolved")
    if climbs and (len(parts) > 1 or parts[0] == RECURSIVE):
        raise OutputFilesError(
            f"pattern {text!r} reaches into a folder of the task directory: above the working directory "
            "only the task directory's own files may be named (../stdout.txt, ../std*.txt); name the "
            "working directory's files relative to it (wd/*.txt is *.txt), so they get save_many's names"
        )
    kind = spec.kind
    task = None if _job_side(kind) else task_id
    wild = next((i for i, part in enumerate(parts) if is_pattern(part)), None)
    try:
        if wild is None:
            path = naming.blob_name(kind, "/".join(parts), task)
        else:
            path = naming.blob_prefix(kind, task)
            if wild:
                path += "/" + naming.destination_path("/".join(parts[:wild]))
    except ValueError as err:
        raise OutputFilesError(f"pattern {text!r} cannot be named by the conventions: {err}") from None
    return "../" * climbs + "/".join(parts), path


@dataclass(frozen=True)
class _Upload:
    """One output as the node agent uploads it: where its files are and where they land."""

    spec: OutputSpec
    pattern: str  #: ``filePattern``, normalised: relative to the working directory, ``../NAME`` above it
    prefix: str  #: the blob prefix of its kind: every file lands at ``{prefix}/{its path from its root}``

    @property
    def in_task_directory(self) -> bool:
        return self.pattern.startswith("../")

    def root_name(self) -> str | None:
        """The name pattern of the files it can upload from its root folder (the working directory, or the
        task directory for ``../``), or None if it only reaches into folders: ``*.txt`` for ``**/*.txt``,
        ``*`` for ``**`` (not a dot-name)."""
        parts = self.pattern.removeprefix("../").split("/")
        if any(part != RECURSIVE for part in parts[:-1]):
            return None
        return "*" if parts[-1] == RECURSIVE else parts[-1]


def _check_no_overlap(first: _Upload, second: _Upload) -> None:
    """Refuse two outputs that can upload two files to one blob: a working-directory file and the task
    directory's file of the same name, under the same kind (``*.txt=TaskLog`` and ``../stdout.txt=TaskLog``;
    ``**/*.log`` and ``../*.log``); the agent would upload both, one over the other. Decided by what the
    patterns can match (every file lands at ``{kind's prefix}/{its path from its root}``, so two files
    share a blob only from the two roots); not when only one can run (``@success`` and ``@failure``)."""
    if first.in_task_directory == second.in_task_directory or first.prefix != second.prefix:
        return
    if {first.spec.condition, second.spec.condition} == {"success", "failure"}:
        return
    wd, task = (second, first) if first.in_task_directory else (first, second)
    wd_name, task_name = wd.root_name(), task.root_name()
    if not (wd_name and task_name):
        return
    logs = [
        log for log in ("stdout.txt", "stderr.txt") if all(fnmatchcase(log, p) for p in (wd_name, task_name))
    ]
    name = logs[0] if logs else common_name(wd_name, task_name)
    if name is None:
        return
    hint = (
        "; with `batchfiles run` as the command leave ../stdout.txt and ../stderr.txt (--task-logs) out: it "
        "saves its own logs live, and storage refuses the agent's copy over them"
        if logs
        else ""
    )
    raise OutputFilesError(
        f"patterns {str(first.spec)!r} and {str(second.spec)!r} would upload two files to one blob: the "
        f"working directory's {name!r} and the task directory's ('../{name}') both go to "
        f"{wd.prefix}/{name}; give them different kinds or patterns, or @success and @failure{hint}"
    )


def _pattern_problem(text: str) -> str | None:
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "has a control character"
    if _ABSOLUTE.match(text):
        return "is absolute: patterns are relative to the task's working directory"
    if _ENV_VARIABLE.search(text):
        return (
            "holds an environment variable ($VAR or %VAR%): the node agent expands them first, so the "
            "names of its files are not known here (name the files relative to the working directory)"
        )
    if "[^" in text:
        return "has a '[^' set, which the node agent may read as a negation, save_many not: write [!...]"
    if any(_unclosed_bracket(part) for part in text.replace("\\", "/").split("/")):
        return "has a '[' without its ']' (a literal '[' is written [[])"
    return None


def _unclosed_bracket(segment: str) -> bool:
    """Has ``segment`` a ``[`` set that is never closed (``[!]...]`` and ``[]...]`` hold a literal ``]``)?"""
    i = segment.find("[")
    while i >= 0:
        j = i + 2 if segment[i + 1 : i + 2] == "!" else i + 1
        j += 1 if segment[j : j + 1] == "]" else 0
        close = segment.find("]", j)
        if close < 0:
            return True
        i = segment.find("[", close + 1)
    return False


def _check_sas(url: str, public: str, query: str) -> None:
    """Refuse a SAS that has expired, whose expiry is not a time, that grants no write or not this container's
    blobs (the uploads would fail after the task has run); warn of one that expires within the hour."""
    if "se" in parse_qs(query) and _sas.sas_expiry(url) is None:
        raise OutputFilesError(
            f"the SAS of {public!r} has an expiry (se=) that is not one time: storage would refuse the "
            "node agent's uploads; make one with `batchfiles url JOB --expiry 2d`"
        )
    expired = _sas.expired(url)
    if expired is not None:
        raise OutputFilesError(
            f"the SAS of {public!r} expired at {_sas.utc_text(expired)}: the node agent's uploads would "
            "fail; make one that outlasts the job (`batchfiles url JOB --expiry 2d`)"
        )
    fields = parse_qs(query)
    permissions = fields.get("sp", [None])[0]
    if permissions is not None and not set(permissions) & {"w", "c"}:
        raise OutputFilesError(
            f"the SAS of {public!r} grants no write (sp={permissions}): the uploads would fail"
        )
    resource = fields.get("sr", [None])[0]
    if resource in {"b", "bs", "bv"}:
        raise OutputFilesError(
            f"the SAS of {public!r} is one blob's (sr={resource}): storage would refuse the node agent's "
            "uploads to the others; give the container's (`batchfiles url JOB --expiry 2d`)"
        )
    services = fields.get("ss", [None])[0]
    if services is not None and "b" not in services:
        raise OutputFilesError(
            f"the account SAS of {public!r} grants no access to the blob service (ss={services}, no 'b'): "
            "the uploads would fail"
        )
    if "st" in fields:
        start = _sas_time(fields["st"])
        latest = datetime.now(timezone.utc) + START_AHEAD
        if start is None or start > latest or start >= (_sas.sas_expiry(url) or start + START_AHEAD):
            raise OutputFilesError(
                f"the SAS of {public!r} starts at {fields['st'][0]!r} (st=): not one time, after its expiry, "
                f"or more than {START_AHEAD.seconds // 3600} hour ahead; the node agent's uploads, as soon "
                "as a task ends, would be refused until then; make one that starts now (`batchfiles url JOB "
                "--expiry 2d`)"
            )
    types = fields.get("srt", [None])[0]
    if types is not None and "o" not in types:
        raise OutputFilesError(
            f"the account SAS of {public!r} grants no access to blobs (srt={types}, no 'o'): the uploads "
            "would fail"
        )
    _sas.warn_if_expiring(f"the node agent's uploads to {public}", url)


def _sas_time(values: list[str]) -> datetime | None:
    """A SAS field's one time (``st=2026-01-01T00:00:00Z``), in UTC; None if it is not one time."""
    if len(values) != 1:
        return None
    text = values[0].strip().replace(" ", "+")  # an offset's unescaped "+" arrives as a space
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _job_side(kind: str | OutputKind) -> bool:
    return isinstance(kind, JobOutputKind) or (isinstance(kind, str) and builtin_side(kind) == "job")


def _container(url: str, identity: str | None, headers: Mapping[str, str] | None) -> dict[str, Any]:
    """The container's ``identityReference`` and ``uploadHeaders``, its URL and credentials checked."""
    try:
        _urls.check_container_url(url)
    except ValueError as err:
        raise OutputFilesError(str(err)) from None
    public = _urls.public_url(url)
    if "#" in url:
        raise OutputFilesError(
            f"container URL {public!r} holds a '#fragment': the node agent would put its blob names after "
            "it (the SAS included, if it follows); give the URL without one"
        )
    try:
        port = urlsplit(url).port
    except ValueError:  # not a number, or above 65535
        port = -1
    if port is not None and not 0 < port < 65536:
        raise OutputFilesError(f"container URL {public!r} has a port out of range (1-65535)")
    if "@" in urlsplit(url).netloc:
        raise OutputFilesError(f"container URL {public!r} holds a user name or password: give a SAS URL")
    query = urlsplit(url).query
    has_sas = "sig=" in query.lower()
    if has_sas:
        _check_sas(url, public, query)
    extra: dict[str, Any] = {}
    if identity is not None:
        if not isinstance(identity, str) or not _IDENTITY.fullmatch(identity):
            raise OutputFilesError(
                f"identity_reference must be a user-assigned managed identity's resource id, "
                "/subscriptions/SUB/resourceGroups/GROUP/providers/Microsoft.ManagedIdentity/"
                f"userAssignedIdentities/NAME, not {_errors.redact(repr(identity))}"
            )
        if has_sas:
            raise OutputFilesError(
                f"container URL {public!r} has a SAS and an identity_reference is given: give one (a plain "
                "URL with the pool's managed identity, or a SAS URL)"
            )
        parts = urlsplit(url)
        if parts.scheme == "http" and not _urls._is_loopback(parts.hostname or ""):
            raise OutputFilesError(
                f"container URL {public!r} is plain http: the node agent would send the managed identity's "
                "token in clear, and storage refuses it (use https)"
            )
        extra["identityReference"] = {"resourceId": identity}
    elif not has_sas:
        raise OutputFilesError(
            f"container URL {public!r} has no SAS: the node agent needs one granting write "
            "(output_storage_container_url, `batchfiles url JOB`), or identity_reference (a managed identity "
            "of the pool)"
        )
    if headers:
        if not isinstance(headers, Mapping):
            raise TypeError(f"upload_headers must be a mapping, not {type(headers).__name__}")
        for name, value in headers.items():
            good_value = isinstance(value, str) and not any(c in value for c in "\r\n\x00")
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name) or not good_value:
                raise OutputFilesError(
                    f"bad upload header {name!r}: names are HTTP tokens, values one-line str"
                )
        extra["uploadHeaders"] = [{"name": name, "value": value} for name, value in headers.items()]
    return extra
