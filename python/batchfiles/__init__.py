"""batchfiles: the Azure Batch File Conventions for Python, with a Rust core.

Tasks save outputs with :class:`TaskOutputStorage` / :class:`JobOutputStorage`; client code prepares a job
with :func:`prepare_output_storage` and hands tasks :func:`output_storage_container_url`. Async twins of
every name are in :mod:`batchfiles.aio`; name derivation alone is in :mod:`batchfiles.naming`.
"""

import importlib.metadata as _metadata
import re as _re
from pathlib import Path as _Path

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
from .snapshot import JobSnapshot, OutputSnapshot, TaskSnapshot
from .storage import (
    JobOutputStorage,
    OutputFileReference,
    TaskOutputStorage,
    output_storage_container_url,
    prepare_output_storage,
    service_from_environment,
)
from .tracking import TrackedSave


def _version() -> str:
    """Cargo.toml's: read there when these are a checkout's sources (on the path, or installed editable),
    else the installed distribution's, which the wheel's build took from it."""
    cargo = _Path(__file__).resolve().parents[2] / "Cargo.toml"
    if cargo.is_file():
        found = _re.search(r'(?m)^version = "([^"]+)"', cargo.read_text(encoding="utf-8"))
        if found:
            return found[1]
    try:
        return _metadata.version("batchfiles")
    except _metadata.PackageNotFoundError:  # pragma: no cover - neither a checkout nor installed
        return "0+unknown"


__version__ = _version()

__all__ = [
    "AuthenticationError",
    "BatchFilesError",
    "ConfigurationError",
    "ContainerNotFoundError",
    "IntegrityError",
    "JobOutputKind",
    "JobOutputStorage",
    "JobSnapshot",
    "OutputExistsError",
    "OutputFileReference",
    "OutputFilesError",
    "OutputKind",
    "OutputNotFoundError",
    "OutputReplacedError",
    "OutputSnapshot",
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
