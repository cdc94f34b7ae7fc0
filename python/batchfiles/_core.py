"""Logic shared by the sync and async storage APIs: arguments, names, errors, references. No I/O here."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import mimetypes
import os
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO, Union
from urllib.parse import urlsplit, urlunsplit

from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, ContainerSasPermissions, ContentSettings, generate_container_sas

from . import _native, _patterns, naming
from .errors import (
    AuthenticationError,
    BatchFilesError,
    ConfigurationError,
    ContainerNotFoundError,
    IntegrityError,
    OutputExistsError,
    OutputNotFoundError,
)
from .kinds import JobOutputKind, KindLike, OutputKind, TaskOutputKind, kind_text

PathLike = Union[str, "os.PathLike[str]"]
#: ``progress(done, total)``: bytes transferred so far, of ``total``.
Progress = Callable[[int, int], None]
#: ``on_invalid(blob_name, reason)``: told of each blob that ``list()`` skips as not an output.
OnInvalid = Callable[[str, str], None]

logger = logging.getLogger("batchfiles")

#: Files up to this size go up in one request; larger ones in blocks.
SINGLE_PUT_SIZE = 8 * 1024 * 1024
#: Default block size for large files (Azure allows up to 4,000 MiB per block).
BLOCK_SIZE = 8 * 1024 * 1024
MAX_BLOCK_SIZE = 4000 * 1024 * 1024
#: Parallel block uploads per file, and files per ``save_many``.
MAX_CONCURRENCY = 4

#: azure-storage-blob waits 15 s before its first retry by default (then 18, 24, ...): output and logs
#: want faster ones. Storage's ExponentialRetry waits initial_backoff + increment_base ** n before retry n:
#: here about 1.8, 2.6, 3.7, 5.4 and 7.9 s (±0.3), some 21 s in all before an error is raised.
RETRY_DEFAULTS: dict[str, Any] = {
    "retry_total": 5,
    "initial_backoff": 0.3,
    "increment_base": 1.5,
    "random_jitter_range": 0.3,
}

#: The permissions of the container SAS handed to tasks: read, add, create, write, list; never delete.
TASK_SAS_PERMISSIONS = ContainerSasPermissions(read=True, add=True, create=True, write=True, list=True)

ENV_JOB_ID = "AZ_BATCH_JOB_ID"
ENV_TASK_ID = "AZ_BATCH_TASK_ID"
ENV_CONTAINER_URL = "BATCHFILES_CONTAINER_URL"
ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ENV_ACCOUNT_URL = "AZURE_STORAGE_ACCOUNT_URL"


def client_kwargs(user: dict[str, Any]) -> dict[str, Any]:
    """Client options: the fast retry defaults, overridden by what the caller passed."""
    return {**RETRY_DEFAULTS, **user}


# --- URLs and secrets ---------------------------------------------------------------------------------------


def public_url(url: str) -> str:
    """``url`` without its query or anything that looks like a secret, so a SAS signature never reaches a
    message, log or ``repr``; a text that is not a URL at all (a bare SAS token) says only that."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL": keep only what comes before any query
        return redact(url.partition("?")[0])
    if not parts.scheme and "=" in parts.path:  # a bare query string ("sv=...&sig=..."), not a URL
        return "(a SAS token, not a URL)"
    return redact(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))


_SAS_SIGNATURE = re.compile(r"(?i)(sig=)[^&\s\"']+")


def redact(text: str) -> str:
    """``text`` with any SAS signature replaced."""
    return _SAS_SIGNATURE.sub(r"\1REDACTED", text)


class RedactSasFilter(logging.Filter):
    """Replaces SAS signatures in log records; urllib3 logs full request URLs at DEBUG level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(RedactSasFilter())


def _is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def check_account_url(url: str) -> None:
    """Refuse an account URL that is not ``http(s)://host...`` before any credential is asked for it."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        hostname = None
    if hostname is None or parts.scheme not in ("http", "https"):
        raise ValueError(f"not a storage account URL: {public_url(url)!r}")


def check_container_url(url: str, credential: Any = None) -> None:
    """Refuse URLs that cannot be a container, and SAS tokens sent in clear text to another machine."""
    if not isinstance(url, str):
        raise TypeError(f"container_url must be a str, not {type(url).__name__}")
    try:
        check_account_url(url)
    except ValueError:
        raise ValueError(f"not a container URL: {public_url(url)!r}") from None
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    sas = "sig=" in parts.query.lower() or isinstance(credential, (str, AzureSasCredential))
    if parts.scheme == "http" and sas and not _is_loopback(hostname):
        raise ValueError(
            f"refusing to send a SAS over plain http to {hostname}: use https "
            "(plain http is accepted only for loopback emulators such as Azurite)"
        )


#: Azure signs user delegation keys for at most 7 days.
MAX_DELEGATION_EXPIRY = timedelta(days=7)


def sas_signing(service: Any, expiry: timedelta) -> str | None:
    """The account key to sign a SAS with, or None to use a user delegation key; checks ``expiry``."""
    if not isinstance(expiry, timedelta):
        raise TypeError(f"expiry must be a timedelta, not {type(expiry).__name__}")
    if expiry <= timedelta(0):
        raise ValueError(f"expiry must be positive, not {expiry}")
    if expiry > datetime.max.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc) - timedelta(days=1):
        raise ValueError(f"expiry {expiry} would end after the year 9999")
    key = getattr(service.credential, "account_key", None)
    if key:
        return key
    if service.credential is None or isinstance(service.credential, (str, AzureSasCredential)):
        raise ValueError(
            "a task SAS is signed with the account key or an Azure AD credential; this client has a SAS: "
            "create it with a connection string, an account key or a token credential"
        )
    if expiry > MAX_DELEGATION_EXPIRY:
        raise ValueError(f"a user delegation SAS lasts at most 7 days, not {expiry}")
    return None


def task_sas_url(service: Any, container: str, signing_key: Any, start: datetime, end: datetime) -> str:
    """The container URL with a task SAS signed by an account key (str) or a user delegation key."""
    by_account = isinstance(signing_key, str)
    sas = generate_container_sas(
        service.account_name,
        container,
        account_key=signing_key if by_account else None,
        user_delegation_key=None if by_account else signing_key,
        permission=TASK_SAS_PERMISSIONS,
        start=start,
        expiry=end,
    )
    return f"{service.url.rstrip('/')}/{container}?{sas}"


def sas_expiry(expiry: timedelta, *, delegated: bool = False) -> tuple[datetime, datetime]:
    """(start, expiry) of a SAS valid for ``expiry`` from now; the start allows 5 minutes of clock skew.

    A user delegation key may last 7 days from the server's now: a delegated SAS ends 10 minutes early
    rather than be refused for a clock a little ahead.
    """
    now = datetime.now(timezone.utc)
    end = now + expiry
    if delegated:
        end = min(end, now + MAX_DELEGATION_EXPIRY - timedelta(minutes=10))
    return now - timedelta(minutes=5), end


# --- errors -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def storage_errors(container: str, blob: str | None = None) -> Iterator[None]:
    """Turn azure-core errors into batchfiles errors that say what to do. Works around awaits too."""
    what = f"{blob!r} in container {container!r}" if blob else f"container {container!r}"
    try:
        yield
    except HttpResponseError as err:
        raise translate_error(err, container, what) from None
    except AzureError as err:  # no answer, or a broken one: DNS, refused, TLS, reset, timeout
        raise BatchFilesError(f"cannot reach storage for {what}: {redact(str(err))}") from None


def translate_error(err: HttpResponseError, container: str, what: str) -> BatchFilesError:
    code = getattr(err, "error_code", None) or ""
    code = str(getattr(code, "value", code))  # StorageErrorCode members print as their enum name
    if code == "ContainerNotFound":
        return ContainerNotFoundError(
            f"container {container!r} does not exist: run prepare_output_storage for the job "
            "(`batchfiles prepare JOB_ID`) or check the job id"
        )
    if isinstance(err, ResourceNotFoundError):
        return OutputNotFoundError(f"no output {what}")
    if code == "BlobAlreadyExists":
        return OutputExistsError(f"output {what} already exists (overwrite=False)")
    if code == "ConditionNotMet":
        return BatchFilesError(f"{what} changed while it was being read: try again")
    if isinstance(err, ClientAuthenticationError) and err.status_code is None:  # from the credential
        return AuthenticationError(f"could not get a token for {what}: {redact(err.message or str(err))}")
    if isinstance(err, ClientAuthenticationError) or err.status_code in (401, 403):
        return AuthenticationError(
            f"storage refused access to {what} ({code or err.status_code}): check that the SAS or credential "
            "is valid, not expired, and allows this operation"
        )
    if code in ("Md5Mismatch", "Crc64Mismatch", "InvalidMd5"):
        return IntegrityError(f"storage rejected {what}: the data did not match its checksum ({code})")
    return BatchFilesError(f"storage error on {what}: {code or err.status_code} {err.reason or ''}".strip())


# --- kinds and names ----------------------------------------------------------------------------------------

_TASK_KINDS = frozenset(str(k) for k in TaskOutputKind.BUILTIN)
_JOB_KINDS = frozenset(str(k) for k in JobOutputKind.BUILTIN)


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
        wrong, side = (_JOB_KINDS, "task") if self.task_id is not None else (_TASK_KINDS, "job")
        if isinstance(kind, OutputKind) and not isinstance(kind, self.kind_class):
            raise ValueError(f"{kind!r} is not a {side} output kind; use {self.kind_class.__name__}")
        if isinstance(kind, str) and text in wrong:
            raise ValueError(
                f"{text!r} is a {'job' if side == 'task' else 'task'} output kind, not a {side} output kind"
            )
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

    def tracked_name(self, kind: KindLike | None, path: PathLike, destination: str | None) -> str:
        """The blob of a tracked file: a task's default kind is ``TaskLog``; a job must name one."""
        if kind is None:
            if self.task_id is None:
                raise TypeError("save_tracked on job storage needs kind= (e.g. JobOutputKind.custom('Logs'))")
            kind = TaskOutputKind.TASK_LOG
        return self.save_name(kind, path, destination)

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

        An output's file path is in the conventions' normal form (see :func:`path_problem`).
        """
        rest = blob_name
        if self.task_id is not None:
            task, _, rest = blob_name.partition("/")
            if task != self.task_id:
                raise NotAnOutput(f"it is not under {self.task_id}/")
        kind, slash, path = rest.partition("/")
        if not kind.startswith("$"):
            raise NotAnOutput("it has no $Kind segment")
        try:
            parsed = self.kind_class(kind[1:])
        except ValueError as err:
            raise NotAnOutput(str(err)) from None
        if not slash or not path:
            raise NotAnOutput("it has no file path after its kind")
        problem = path_problem(path)
        if problem is not None:
            raise NotAnOutput(f"its file path {problem}")
        return parsed, path


class NotAnOutput(ValueError):
    """A blob name that is not an output of a scope; ``str()`` is the reason."""


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a file path in the conventions' normal form (``destination_path(p) == p``: no
    ``.``, ``..`` or empty segments, no ``\\``, no control characters, not absolute), or None if it is."""
    try:
        if naming.destination_path(path) == path:
            return None
    except ValueError:
        pass
    if not path:
        return "is empty"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in path):  # Unicode Cc, as in Rust's is_control
        return "has a control character"
    if "\\" in path:
        return "has a '\\'"
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        return "is absolute"
    segments = path.split("/")
    for segment, what in (("..", "a '..' segment"), (".", "a '.' segment"), ("", "an empty segment")):
        if segment in segments:
            return f"has {what}"
    return "is not in normal form"


def is_task_folder(prefix: str) -> bool:
    """Is a top-level ``walk_blobs`` prefix (``"t1/"``) the folder of a task's outputs?"""
    if not prefix.endswith("/"):
        return False
    try:
        _native.validate_task_id(prefix[:-1])
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def already_exists_is_fine() -> Iterator[None]:
    """Ignore the error of creating a container that exists; any other 409 still raises."""
    try:
        yield
    except ResourceExistsError as err:
        if str(getattr(err.error_code, "value", err.error_code)) != "ContainerAlreadyExists":
            raise


def content_type(path: str) -> str:
    """Content type from the file extension, so previews open in a browser."""
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed or "application/octet-stream"


def content_settings(name: str, md5: bytes | None) -> ContentSettings:
    return ContentSettings(content_type=content_type(name), content_md5=bytearray(md5) if md5 else None)


def md5_header(md5: bytes) -> dict[str, str]:
    """The per-request Content-MD5 header, which storage validates on arrival."""
    return {"Content-MD5": base64.b64encode(md5).decode()}


#: Azure's most blocks in a block blob.
MAX_BLOCKS = 50_000


def fit_block_size(size: int, block_size: int) -> int:
    """``block_size``, or more where a file of ``size`` bytes would need over 50,000 blocks."""
    return max(block_size, -(-size // MAX_BLOCKS))


def new_upload_id() -> str:
    """A prefix for the block ids of one upload, so two uploads of one blob can never mix their blocks."""
    return uuid.uuid4().hex[:12]


def block_id(upload_id: str, index: int) -> str:
    return base64.b64encode(f"{upload_id}-{index:010d}".encode()).decode()


def check_block_options(block_size: int, max_concurrency: int) -> None:
    if not isinstance(block_size, int) or not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise ValueError(f"block_size must be 1 to {MAX_BLOCK_SIZE} bytes, not {block_size!r}")
    if not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be a positive int, not {max_concurrency!r}")


def encode_text(text: str, encoding: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    return text.encode(encoding)


def check_bytes(data: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
    return bytes(data)


# --- save_many ----------------------------------------------------------------------------------------------


def name_files(
    files: Sequence[tuple[str, str]], name_of: Callable[[str], str]
) -> tuple[list[int], list[str]]:
    """Name every file before any is saved: (indexes of the files to save, problems).

    ``files`` are (local path, destination) pairs; ``name_of(destination)`` is the blob name (or any name
    unique in storage) and raises :class:`ValueError` for one that cannot be derived. The same file given
    twice under one name is kept once. Left out, and described in ``problems``: a file whose name cannot be
    derived, and every file of a name that two different files would share (so neither overwrites the other).
    """
    problems: list[str] = []
    by_name: dict[str, list[int]] = {}
    for index, (local, destination) in enumerate(files):
        try:
            name = name_of(destination)
        except UnicodeError:
            problems.append(f"cannot save {local!r}: its name is not valid UTF-8")
            continue
        except ValueError as err:
            problems.append(f"cannot save {local!r}: {err}")
            continue
        same = by_name.setdefault(name, [])
        if not any(same_file(files[other][0], local) for other in same):
            same.append(index)
    kept: list[int] = []
    for name, indexes in by_name.items():
        if len(indexes) == 1:
            kept.append(indexes[0])
            continue
        locals_ = [repr(files[i][0]) for i in indexes]
        both = "both" if len(locals_) == 2 else "all"
        problems.append(f"{', '.join(locals_[:-1])} and {locals_[-1]} would {both} be saved as {name!r}")
    return sorted(kept), problems


def same_file(a: str, b: str) -> bool:
    """Are ``a`` and ``b`` one file (the same path, or the same device and inode)?"""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def unique_names(files: Sequence[tuple[str, str]], name_of: Callable[[str], str]) -> list[tuple[str, str]]:
    """``files`` with repeats of one file dropped, once every name is derived and found unique; otherwise
    :class:`ValueError` naming the files (see :func:`name_files`), before anything is saved."""
    kept, problems = name_files(files, name_of)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(f"{problems[0]}{more}: nothing was saved")
    return [files[i] for i in kept]


def plan_many(
    scope: Scope,
    kind: KindLike,
    patterns: str | Iterable[str],
    base_dir: PathLike,
    max_concurrency: int,
    progress: Progress | None,
) -> tuple[list[tuple[str, str]], ProgressCounter]:
    """The files of a ``save_many`` ((local path, path under the kind) pairs) and a progress counter over
    their total size.

    Checks the arguments, expands every pattern (:mod:`batchfiles._patterns`) and derives every blob name
    before returning: a bad pattern, a name that cannot be derived or two files that would share a blob
    raise :class:`ValueError`, so nothing is uploaded.
    """
    check_block_options(BLOCK_SIZE, max_concurrency)
    output_kind = scope.kind(kind)
    files = _patterns.expand(patterns, base_dir)
    files = unique_names(files, lambda path: naming.blob_name(output_kind, path, scope.task_id))
    return files, ProgressCounter(sum(os.path.getsize(path) for path, _ in files), progress)


# --- environment --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentConfig:
    """Where ``from_environment`` finds its storage: exactly one of the three sources is set."""

    job_id: str | None
    task_id: str | None
    container_url: str | None = field(default=None, repr=False)
    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None


def check_job_container(container: str, job_id: str | None, job_source: str, url_source: str) -> None:
    """A container URL must be of the job's own container: one left over from another job would save there.

    ``job_source`` says where the job id came from (``"--job is 'j'"``), ``url_source`` where the URL did.
    """
    if job_id and naming.container_name(job_id) != container:
        raise ConfigurationError(
            f"{url_source} is for container {redact(container)!r}, but {job_source}, whose container is "
            f"{naming.container_name(job_id)!r}: is the URL left over from another job?"
        )


def environment_config(*, need_task: bool) -> EnvironmentConfig:
    env = os.environ
    job_id, task_id = env.get(ENV_JOB_ID) or None, env.get(ENV_TASK_ID) or None
    if need_task and not task_id:
        raise ConfigurationError(f"no task id: {ENV_TASK_ID} is not set (it is set on Batch nodes)")
    container_url = env.get(ENV_CONTAINER_URL) or None
    if container_url:
        try:
            check_container_url(container_url)
        except ValueError as err:
            raise ConfigurationError(f"{ENV_CONTAINER_URL}: {err}") from None
        container = urlsplit(container_url).path.rstrip("/").rsplit("/", 1)[-1]
        check_job_container(container, job_id, f"{ENV_JOB_ID} is {job_id!r}", ENV_CONTAINER_URL)
        return EnvironmentConfig(job_id, task_id, container_url=container_url)
    if not job_id:
        raise ConfigurationError(
            f"no job id: {ENV_JOB_ID} is not set (it is set on Batch nodes), and no {ENV_CONTAINER_URL}"
        )
    if env.get(ENV_CONNECTION_STRING):
        return EnvironmentConfig(job_id, task_id, connection_string=env[ENV_CONNECTION_STRING])
    if env.get(ENV_ACCOUNT_URL):
        try:
            check_account_url(env[ENV_ACCOUNT_URL])
        except ValueError as err:
            raise ConfigurationError(f"{ENV_ACCOUNT_URL}: {err}") from None
        return EnvironmentConfig(job_id, task_id, account_url=env[ENV_ACCOUNT_URL])
    raise ConfigurationError(
        f"no storage configured: set {ENV_CONTAINER_URL} (a container URL with SAS), "
        f"{ENV_CONNECTION_STRING}, or {ENV_ACCOUNT_URL} (with a managed identity or other Azure credential)"
    )


# --- references and downloads -------------------------------------------------------------------------------


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


class Md5Check:
    """Checks streamed bytes against the blob's Content-MD5 (nothing to check when it has none)."""

    def __init__(self, download: Any, what: str) -> None:
        settings = download.properties.content_settings
        expected = settings.content_md5 if settings else None
        self.expected = bytes(expected) if expected else None
        self.what = what
        self._md5 = _native.Md5() if self.expected else None

    def update(self, chunk: bytes) -> None:
        if self._md5 is not None:
            self._md5.update(chunk)

    def verify(self) -> None:
        if self._md5 is not None and self._md5.digest() != self.expected:
            raise IntegrityError(f"{self.what}: downloaded bytes do not match the blob's Content-MD5")


class DownloadSink:
    """Where downloaded chunks go: memory, or a partial file (in the target's folder) renamed to ``target``
    once verified.

    Used as a context manager; on any error the partial file is removed, so no unverified file is left.
    """

    def __init__(
        self, download: Any, what: str, target: Path | None = None, progress: Progress | None = None
    ) -> None:
        self._check = Md5Check(download, what)
        self._counter = ProgressCounter(download.size, progress)
        self._target = target
        self._buffer = bytearray()
        self._partial: Path | None = None
        self._file: BinaryIO | None = None
        self.result: bytes | Path | None = None

    def __enter__(self) -> DownloadSink:
        if self._target is not None:
            self._target.parent.mkdir(parents=True, exist_ok=True)
            self._partial, self._file = open_partial(self._target.parent)
        return self

    def write(self, chunk: bytes) -> None:
        self._check.update(chunk)
        self._counter.add(len(chunk))
        if self._file is not None:
            self._file.write(chunk)
        else:
            self._buffer += chunk

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()
        try:
            if exc_type is None:
                self._check.verify()
                if self._partial is not None and self._target is not None:
                    os.replace(self._partial, self._target)
                    self.result = self._target
                else:
                    self.result = bytes(self._buffer)
        finally:
            if self._partial is not None:
                self._partial.unlink(missing_ok=True)


def open_partial(folder: Path) -> tuple[Path, BinaryIO]:
    """A new file in ``folder`` with a short unique name (``.{16 hex}.partial``), so a target name of up
    to 255 bytes still has room; created exclusively, with the usual permissions (umask), unlike mkstemp."""
    for _ in range(100):
        path = folder / f".{secrets.token_hex(8)}.partial"
        try:
            return path, open(path, "xb")
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a partial download in {str(folder)!r}")


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


def single_put(blob_name: str, reader: Any, overwrite: bool) -> tuple[bytes, dict[str, Any]]:
    """(data, upload_blob keyword arguments) of a file small enough for one request.

    ``reader`` is a ``_native.BlockReader`` over the whole file; the request carries its Content-MD5.
    """
    block = reader.next_block()
    data = block[2] if block else b""
    if reader.next_block() is not None:
        raise OSError(f"the file saved as {blob_name!r} grew while being read")
    return data, upload_kwargs(blob_name, data, reader.md5(), overwrite)


def upload_kwargs(blob_name: str, data: bytes, md5: bytes | None, overwrite: bool) -> dict[str, Any]:
    """upload_blob options: content type, and the MD5 (of ``data`` if not given), stored with the blob and
    sent as the per-request Content-MD5 that storage validates."""
    md5 = md5 or _native.md5(data)
    return {
        "overwrite": overwrite,
        "content_settings": content_settings(blob_name, md5),
        "headers": md5_header(md5),
    }


def commit_kwargs(
    blob_name: str, reader: Any, upload_id: str, staged: list[int], overwrite: bool
) -> dict[str, Any]:
    """commit_block_list arguments for the blocks staged from ``reader``, in file order."""
    kwargs: dict[str, Any] = {
        "block_list": [BlobBlock(block_id(upload_id, i)) for i in sorted(staged)],
        "content_settings": content_settings(blob_name, reader.md5()),
    }
    if not overwrite:
        kwargs["if_none_match"] = "*"
    return kwargs


def crc_headers(crc: str) -> dict[str, str]:
    """The per-block CRC-64/NVME header that storage validates."""
    return {"x-ms-content-crc64": crc}


def exists_error(blob_name: str) -> OutputExistsError:
    return OutputExistsError(f"output {blob_name!r} already exists (overwrite=False)")


def default_credential(clients: Any) -> Any:
    """``DefaultAzureCredential`` of azure-identity, async when ``clients`` is azure.storage.blob.aio."""
    if clients.__name__.endswith(".aio"):
        from azure.identity.aio import DefaultAzureCredential as AsyncCredential

        return AsyncCredential()
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
