"""batchfiles: the Azure Batch File Conventions for Python, with a Rust core.

Tasks save outputs with :class:`TaskOutputStorage` / :class:`JobOutputStorage`; client code prepares a job
with :func:`prepare_output_storage` and hands tasks :func:`output_storage_container_url`. Async twins of
every name are in :mod:`batchfiles.aio`; name derivation alone is in :mod:`batchfiles.naming`.
"""

from . import naming
from .errors import (
    AuthenticationError,
    BatchFilesError,
    ConfigurationError,
    ContainerNotFoundError,
    IntegrityError,
    OutputExistsError,
    OutputFilesError,
    OutputNotFoundError,
    OutputReplacedError,
    TrackingError,
)
from .kinds import JobOutputKind, OutputKind, TaskOutputKind
from .storage import (
    JobOutputStorage,
    OutputFileReference,
    TaskOutputStorage,
    output_storage_container_url,
    prepare_output_storage,
)
from .tracking import TrackedSave

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BatchFilesError",
    "ConfigurationError",
    "ContainerNotFoundError",
    "IntegrityError",
    "JobOutputKind",
    "JobOutputStorage",
    "OutputExistsError",
    "OutputFileReference",
    "OutputFilesError",
    "OutputKind",
    "OutputNotFoundError",
    "OutputReplacedError",
    "TaskOutputKind",
    "TaskOutputStorage",
    "TrackedSave",
    "TrackingError",
    "__version__",
    "naming",
    "output_storage_container_url",
    "prepare_output_storage",
]
