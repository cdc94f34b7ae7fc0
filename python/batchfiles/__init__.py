"""batchfiles: the Azure Batch File Conventions for Python, with a Rust core.

Tasks save outputs with :class:`TaskOutputStorage` / :class:`JobOutputStorage`; client code prepares a job
with :func:`prepare_output_storage` and hands tasks :func:`output_storage_container_url`. Async twins of
every name are in :mod:`batchfiles.aio`; name derivation alone is in :mod:`batchfiles.naming`.
"""

import importlib.metadata as _metadata

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

try:  # the installed distribution's, set from Cargo.toml when the wheel is built
    __version__ = _metadata.version("batchfiles")
except _metadata.PackageNotFoundError:  # pragma: no cover - sources on the path without an installed package
    __version__ = "0+unknown"

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
