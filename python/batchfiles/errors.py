"""The errors of batchfiles, and how to show one safely. Bad arguments raise ValueError or TypeError;
everything else is one of these. :func:`describe`, :func:`first_line` and :func:`redact` give an error's
text without any SAS signature, account key or secret passed to :func:`register_secrets`."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AuthenticationError",
    "BatchFilesError",
    "ConfigurationError",
    "ContainerNotFoundError",
    "DeleteError",
    "IntegrityError",
    "OutputExistsError",
    "OutputFilesError",
    "OutputNotFoundError",
    "OutputReplacedError",
    "TrackingError",
    "describe",
    "first_line",
    "redact",
    "register_secrets",
]


class BatchFilesError(Exception):
    """Base of every error batchfiles raises on purpose. Messages never carry a key or SAS signature."""


class ContainerNotFoundError(BatchFilesError):
    """The job's container does not exist: run ``prepare_output_storage`` first, or check the job id."""


class OutputNotFoundError(BatchFilesError, LookupError):
    """No output of that kind and path was saved."""


class OutputExistsError(BatchFilesError, FileExistsError):
    """An output is already there and ``overwrite=False`` (or ``if_exists="fail"``) was asked for."""


class OutputReplacedError(BatchFilesError):
    """An output being followed was replaced (created again, or shorter than what was read): what was
    handed out came from the old one. Follow it again to read the new one from its start."""


class IntegrityError(BatchFilesError):
    """Downloaded or uploaded bytes do not match their checksum; no partial file is left behind."""


class AuthenticationError(BatchFilesError):
    """Storage refused the credential or SAS (expired, wrong permissions, or a wrong key)."""


class TrackingError(BatchFilesError):
    """A tracked save could not keep the blob equal to the file (another writer, or a persistent failure)."""


class ConfigurationError(BatchFilesError):
    """Storage or ids are missing from the arguments and environment; the message says where it looked."""


class OutputFilesError(BatchFilesError, ValueError):
    """An output cannot be given to the Batch service's OutputFiles under the conventions' names (a pattern
    that leaves the task directory, is absolute or holds a variable; a bad container URL or identity)."""


class DeleteError(BatchFilesError):
    """A delete left some blobs, each refused for its own sake (changed since it was listed, leased, with
    snapshots); the others were deleted. ``deleted``: how many blobs were deleted (or found gone);
    ``failures``: each blob left, by name, with the error saying why."""

    def __init__(self, message: str, deleted: int = 0, failures: Mapping[str, BatchFilesError] | None = None):
        super().__init__(message)
        self.deleted = deleted
        self.failures: Mapping[str, BatchFilesError] = dict(failures or {})


# How to show an error safely: batchfiles._errors, which shapes the errors above, does the work (imported
# when called: it imports this module).


def describe(err: BaseException) -> str:
    """What went wrong, in one redacted line (a request that reached no storage says so)."""
    from . import _errors

    return _errors.describe(err)


def first_line(message: object) -> str:
    """The first non-empty line of ``message``, redacted (the type's name when there is none)."""
    from . import _errors

    return _errors.first_line(message)


def redact(text: str) -> str:
    """``text`` without any SAS signature, account key or registered secret (each becomes ``REDACTED``)."""
    from . import _errors

    return _errors.redact(text)


def register_secrets(*values: str | None) -> None:
    """Remember the secrets in connection strings, URLs and SAS tokens (account keys, SAS signatures), so
    that every message, log line and ``repr`` of batchfiles leaves them out, wherever they appear."""
    from . import _errors

    _errors.register_secrets(*values)
