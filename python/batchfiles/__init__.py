"""batchfiles: the Azure Batch File Conventions for Python, with a Rust core.

Tasks save outputs with :class:`TaskOutputStorage` / :class:`JobOutputStorage`; client code prepares a job
with :func:`prepare_output_storage` and hands tasks :func:`output_storage_container_url`; a job's outputs
and its tasks' states are read as one :class:`JobSnapshot`, and its logs followed live with
:meth:`JobOutputStorage.follow_logs`. The async twins, under the same names, are in :mod:`batchfiles.aio`;
name derivation alone is in :mod:`batchfiles.naming`.
"""

from . import naming
from ._follow import LogClosed, LogData, LogRestarted, LogsPolled
from ._native import __version__
from ._types import OnInvalid, Progress
from .errors import (
    AuthenticationError,
    BatchFilesError,
    ConfigurationError,
    ContainerNotFoundError,
    DeleteError,
    IntegrityError,
    OutputExistsError,
    OutputFilesError,
    OutputNotFoundError,
    OutputReplacedError,
    TrackingError,
)
from .kinds import JobOutputKind, OutputKind, TaskOutputKind
from .snapshot import JobSnapshot, LogState, OutputSnapshot, TaskSnapshot
from .storage import (
    JobOutputStorage,
    OutputFileReference,
    TaskOutputStorage,
    output_storage_container_url,
    prepare_output_storage,
    service_from_environment,
)
from .tracking import TrackedSave

__all__ = [
    "AuthenticationError",
    "BatchFilesError",
    "ConfigurationError",
    "ContainerNotFoundError",
    "DeleteError",
    "IntegrityError",
    "JobOutputKind",
    "JobOutputStorage",
    "JobSnapshot",
    "LogClosed",
    "LogData",
    "LogRestarted",
    "LogState",
    "LogsPolled",
    "OnInvalid",
    "OutputExistsError",
    "OutputFileReference",
    "OutputFilesError",
    "OutputKind",
    "OutputNotFoundError",
    "OutputReplacedError",
    "OutputSnapshot",
    "Progress",
    "TaskOutputKind",
    "TaskOutputStorage",
    "TaskSnapshot",
    "TrackedSave",
    "TrackingError",
    "__version__",
    "naming",
    "output_storage_container_url",
    "prepare_output_storage",
    "service_from_environment",
]
