"""The one place errors are shaped: secrets redacted from text and logs, azure-core errors translated
into the :mod:`batchfiles.errors` tree with a message that says what to do."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from .errors import (
    AuthenticationError,
    BatchFilesError,
    ContainerNotFoundError,
    IntegrityError,
    OutputExistsError,
    OutputNotFoundError,
)

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


@contextlib.contextmanager
def already_exists_is_fine() -> Iterator[None]:
    """Ignore the error of creating a container that exists; any other 409 still raises."""
    try:
        yield
    except ResourceExistsError as err:
        if str(getattr(err.error_code, "value", err.error_code)) != "ContainerAlreadyExists":
            raise


def exists_error(blob_name: str) -> OutputExistsError:
    return OutputExistsError(f"output {blob_name!r} already exists (overwrite=False)")


# Background operations (tracked saves). This import joins the ones above once the concurrent edits of this
# file are merged.
from .errors import TrackingError  # noqa: E402

#: Error codes of failures worth retrying although their status is 4xx (bytes damaged on the way).
RETRIED_CODES = frozenset({"Crc64Mismatch", "Md5Mismatch"})


def is_transient(exc: BaseException) -> bool:
    """Whether a failed storage call is worth another try: connection errors, 408, 429, 5xx, damaged bytes."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return exc.status_code in (408, 429) or exc.status_code >= 500 or exc.error_code in RETRIED_CODES
    return isinstance(exc, AzureError)


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
