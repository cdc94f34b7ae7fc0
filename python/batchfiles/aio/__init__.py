"""The async API of batchfiles: the same names as :mod:`batchfiles`, over azure.storage.blob.aio.

async with TaskOutputStorage.from_environment() as storage:
    await storage.save(TaskOutputKind.TASK_OUTPUT, "frame_0001.png")
"""

from .._follow import LogClosed, LogData, LogRestarted, LogsPolled
from .._types import OnInvalid, Progress
from ..errors import (
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
from ..kinds import JobOutputKind, OutputKind, TaskOutputKind
from ..snapshot import JobSnapshot, LogState, OutputSnapshot, TaskSnapshot
from ._storage import (
    AsyncReader,
    JobOutputStorage,
    OutputFileReference,
    TaskOutputStorage,
    output_storage_container_url,
    prepare_output_storage,
    service_from_environment,
)
from ._tracking import TrackedSave

__all__ = [
    "AsyncReader",
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
    "output_storage_container_url",
    "prepare_output_storage",
    "service_from_environment",
]
