"""The one place errors are shaped: every secret redacted from text and logs, azure-core errors (storage
and credential) translated into the :mod:`batchfiles.errors` tree with a message that says what to do,
the one-line description a command line prints, and which failures are worth trying again. Callers only
format what this gives them."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from urllib.parse import parse_qs

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from . import _sas, _throttle
from ._throttle import is_throttled
from .errors import (
    AuthenticationError,
    BatchFilesError,
    ContainerNotFoundError,
    IntegrityError,
    OutputExistsError,
    OutputNotFoundError,
    TrackingError,
)

#: Secrets that follow a keyword: a SAS signature in a URL or token, a connection string's key or SAS.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(sig=)[^&\s'\"]+"),
    re.compile(r"(?i)(AccountKey=)[^;\s'\"]+"),
    re.compile(r"(?i)(SharedAccessSignature=)[^;\s'\"]+"),
)
#: A registered secret shorter than this is removed only where a pattern finds it (a short one would
#: blank out ordinary words).
_MIN_SECRET = 8
_secrets: set[str] = set()
_by_length: tuple[str, ...] = ()  # _secrets, longest first, so a secret's part never hides the rest


def register_secrets(*values: str | None) -> None:
    """Remember the secrets in connection strings, URLs and SAS tokens (account keys, SAS signatures, whole
    SAS queries) so that :func:`redact` removes them wherever they appear, keyword or not."""
    global _by_length
    for value in values:
        if not value:
            continue
        for part in value.split(";"):
            key, _, secret = part.partition("=")
            if key.strip().lower() in ("accountkey", "sharedaccesssignature") and secret:
                _secrets.add(secret.strip())
        query = value.partition("?")[2] if "?" in value else value  # a URL, or a bare SAS token
        signatures = parse_qs(query).get("sig", []) + re.findall(r"(?:^|[&?])sig=([^&#\s]+)", query)
        _secrets.update(signatures)
        if signatures:
            _secrets.add(query)
    _by_length = tuple(sorted((s for s in _secrets if len(s) >= _MIN_SECRET), key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` without any SAS signature, account key or registered secret (each becomes ``REDACTED``).

    The keyword patterns go first: a registered secret that ends where ``sig=`` begins cannot then break
    the keyword and leave the signature behind; ``REDACTED`` itself never forms a keyword or a secret.
    """
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1REDACTED", text)
    for secret in _by_length:
        text = text.replace(secret, "REDACTED")
    return text


class RedactSecretsFilter(logging.Filter):
    """Redacts log records, arguments included (an exception's ``%r`` can hold a URL); urllib3 logs full
    request URLs at DEBUG level."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: logging reports it later; keep no argument unredacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        return True


logging.getLogger("urllib3.connectionpool").addFilter(RedactSecretsFilter())


def first_line(message: object) -> str:
    """The first non-empty line of ``message``, redacted (the type's name when there is none)."""
    lines = (line.strip() for line in str(message).splitlines())
    return redact(next((line for line in lines if line), type(message).__name__))


@contextlib.contextmanager
def storage_errors(container: str, blob: str | None = None) -> Iterator[None]:
    """Turn azure-core errors into batchfiles errors that say what to do. Works around awaits too."""
    what = _what(container, blob)
    try:
        yield
    except HttpResponseError as err:
        raise translate_error(err, container, what) from None
    except AzureError as err:  # no answer, or a broken one: DNS, refused, TLS, reset, timeout
        raise BatchFilesError(f"cannot reach storage for {what}: {redact(str(err))}") from None


def translate_error(err: HttpResponseError, container: str, what: str) -> BatchFilesError:
    code = _code(err)
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
        return AuthenticationError(
            f"no Azure sign-in for {what}: {first_line(err.message or err)} (use a managed identity, "
            "`az login`, AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or a connection string or "
            "container URL)"
        )
    if isinstance(err, ClientAuthenticationError) or err.status_code in (401, 403):
        expires = _sas.expired(_request_url(err))
        if expires is not None:
            return AuthenticationError(
                f"the SAS for {what} expired at {_sas.utc_text(expires)}: storage refused it "
                f"({code or err.status_code}); {_sas.ADVICE}"
            )
        return AuthenticationError(
            f"storage refused access to {what} ({code or err.status_code}): check that the SAS or credential "
            "is valid, not expired, and allows this operation"
        )
    if is_throttled(err.status_code, code):
        return BatchFilesError(
            f"storage throttled the account: gave up on {what} when its retries ran out "
            f"({code or err.status_code}: the account is over its request or bandwidth limits; try again "
            "later, or spread the load over time or over more accounts)"
        )
    if code == "InvalidBlobType":
        return BatchFilesError(
            f"{what} is a blob of another type (a live log is an append blob, a saved file a block blob), "
            "which storage cannot change in place: delete it first, or use another name"
        )
    if code == "MetadataTooLarge":
        return BatchFilesError(f"storage refused the metadata of {what}: over 8 KiB in all ({code})")
    if code in ("Md5Mismatch", "Crc64Mismatch", "InvalidMd5"):
        return IntegrityError(f"storage rejected {what}: the data did not match its checksum ({code})")
    return BatchFilesError(f"storage error on {what}: {code or err.status_code} {err.reason or ''}".strip())


def _request_url(err: HttpResponseError) -> str | None:
    """The URL of the request ``err`` answers (its query holds the SAS, if one was used)."""
    url = getattr(getattr(getattr(err, "response", None), "request", None), "url", None)
    return url if isinstance(url, str) else None


def describe(err: BaseException) -> str:
    """What went wrong, in one redacted line: a request that reached no storage says so, and a credential
    that failed before any request (the context of ``err``, not its cause) adds its own first line."""
    if isinstance(err, ServiceRequestError):
        return first_line(f"cannot reach storage: {err}")
    line = first_line(err)
    context = err.__context__
    if isinstance(context, ClientAuthenticationError) and context.status_code is None and not err.__cause__:
        reason = first_line(context)
        if reason not in line:
            line = f"{line} [{reason}]"
    return line


@contextlib.contextmanager
def already_exists_is_fine() -> Iterator[None]:
    """Ignore the error of creating a container that exists; any other 409 still raises."""
    try:
        yield
    except ResourceExistsError as err:
        if str(getattr(err.error_code, "value", err.error_code)) != "ContainerAlreadyExists":
            raise


def cannot_replace(container: str, blob: str, blob_type: str, err: HttpResponseError) -> BatchFilesError:
    """The error of replacing ``blob``, of another type, when storage refused to delete it: a 403 means
    the SAS or credential lacks the delete permission that the replacement needs."""
    what = _what(container, blob)
    code = _code(err)
    if err.status_code == 412 and code != "LeaseIdMissing":
        return BatchFilesError(
            f"{what} changed while batchfiles was replacing it (another writer: a live log still open?); "
            "nothing was saved"
        )
    if code in ("SnapshotsPresent", "LeaseIdMissing"):
        held = "has snapshots" if code == "SnapshotsPresent" else "is leased"
        return BatchFilesError(
            f"{what} is {'an' if blob_type[:1] in 'AEIOU' else 'a'} {blob_type} that {held}, and storage "
            f"cannot change a blob's type in place: batchfiles does not delete it ({code}); delete it "
            "yourself, or use another name"
        )
    if err.status_code not in (401, 403):
        return translate_error(err, container, what)
    return AuthenticationError(
        f"{what} is {'an' if blob_type[:1] in 'AEIOU' else 'a'} {blob_type}, and storage cannot change a "
        f"blob's type in place: replacing it needs the delete permission, which this SAS or credential "
        f"does not have ({_code(err) or err.status_code}; the task SAS of `batchfiles url` has it)"
    )


#: What deleting needs, said when storage refuses a delete for want of it: of blobs, and of the container.
DELETE_RIGHTS = (
    "deleting needs the delete permission: a SAS with 'd' in its permissions (sp=), or with Azure AD a role "
    "that may delete blobs (Storage Blob Data Contributor)"
)
DELETE_CONTAINER_RIGHTS = (
    "deleting a container needs the account: its key (a connection string), an account SAS with 'd', or "
    "with Azure AD a role that may delete containers (Storage Blob Data Contributor); a SAS for the "
    "container, such as the task SAS of `batchfiles url`, never may"
)


def cannot_delete(container: str, blob: str | None, err: HttpResponseError) -> BatchFilesError:
    """The error of a delete of ``blob`` (None: the container) that storage refused: a blob that changed
    since it was listed, a lease, snapshots (batchfiles never deletes those silently), or a SAS or
    credential that may not delete."""
    what = _what(container, blob)
    code = _code(err)
    if code.startswith("LeaseIdMissing") or code.startswith("LeaseIdMismatch"):
        return BatchFilesError(
            f"{what} is leased: batchfiles does not delete it ({code}); break the lease first, or leave it"
        )
    if code == "SnapshotsPresent":
        return BatchFilesError(
            f"{what} has snapshots: batchfiles does not delete them ({code}); delete them yourself, or "
            "leave it"
        )
    if err.status_code == 412:
        return BatchFilesError(
            f"{what} changed since it was listed (a live log still being written?): not deleted; list "
            f"again to delete what is there now ({code or 412})"
        )
    if err.status_code in (401, 403) and _sas.expired(_request_url(err)) is None:  # expired: said as such
        rights = DELETE_RIGHTS if blob else DELETE_CONTAINER_RIGHTS
        return AuthenticationError(f"storage refused to delete {what} ({code or err.status_code}): {rights}")
    return translate_error(err, container, what)


def _what(container: str, blob: str | None) -> str:
    return f"{blob!r} in container {container!r}" if blob else f"container {container!r}"


def _code(err: HttpResponseError) -> str:
    """The error's ``x-ms-error-code`` as text ('' without one)."""
    code = getattr(err, "error_code", None) or ""
    return str(getattr(code, "value", code))  # StorageErrorCode members print as their enum name


def exists_error(blob_name: str) -> OutputExistsError:
    return OutputExistsError(f"output {blob_name!r} already exists (overwrite=False)")


# --- failures of background work (tracked saves): worth another try, or kept ------------------------------

#: Error codes of failures worth retrying although their status is 4xx (bytes damaged on the way).
RETRIED_CODES = frozenset({"Crc64Mismatch", "Md5Mismatch"})


def is_transient(exc: BaseException) -> bool:
    """Whether a failed storage call is worth another try: connection errors, 408, 429, 5xx, damaged bytes."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return exc.status_code in (408, 429) or exc.status_code >= 500 or exc.error_code in RETRIED_CODES
    return isinstance(exc, AzureError)


def is_throttling(exc: BaseException) -> bool:
    """Whether a failed storage call is the service asking to slow down, not a fault: 429, 503 (ServerBusy,
    "the service is unavailable"), and 500 OperationTimedOut. Worth many more tries, further apart."""
    if not isinstance(exc, HttpResponseError) or exc.status_code is None:
        return False
    return is_throttled(exc.status_code, str(getattr(exc.error_code, "value", exc.error_code) or ""))


def throttling(exc: BaseException) -> str:
    """A throttling answer in a few words: ``storage is throttling the account (503 ServerBusy)``."""
    status = getattr(exc, "status_code", None)
    code = _code(exc) if isinstance(exc, HttpResponseError) else ""
    answer = " ".join(str(part) for part in (status, code) if part)
    return f"storage is throttling the account ({answer or type(exc).__name__})"


def retry_after(exc: BaseException) -> float | None:
    """The seconds a throttling answer's ``Retry-After`` asks to wait (see :func:`_throttle.retry_after`), or
    None when it has none or it cannot be read."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        return _throttle.retry_after(headers) if headers is not None else None
    except Exception:  # a headers object that is not a mapping
        return None


def kept_error(exc: Exception, container: str, what: str, *, gave_up: str) -> BaseException:
    """The error an operation that retries in the background keeps for its failure ``exc`` on ``what``: a
    transient one (retried until it gave up) as :class:`TrackingError` ``"{gave_up}: {exc}"``, an HTTP
    error translated, anything else (already a batchfiles error, an :class:`OSError`) as it is."""
    if is_transient(exc):
        error: BaseException = TrackingError(f"{gave_up}: {redact(str(exc))}")
    elif isinstance(exc, HttpResponseError):
        error = translate_error(exc, container, what)
    else:
        return exc
    error.__cause__ = exc
    return error


def stopped_error(what: str, exc: BaseException) -> TrackingError:
    """The error kept by a background operation whose thread or task ended: ``what`` happened, because of
    ``exc`` (a bug or a cancellation)."""
    error = TrackingError(f"{what}: {redact(repr(exc))}")
    error.__cause__ = exc
    return error
