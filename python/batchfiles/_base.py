"""Class bodies shared by the sync and async APIs: properties, constructors, ``repr``. No I/O here.

The sync classes (``storage.py``) and their ``aio`` twins set ``_clients`` to the matching azure-storage-blob
module and add the I/O methods.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import _environment, _native, _scope, _urls, naming
from ._scope import ReferenceInfo, Scope


class ReferenceBase:
    """A saved output: its kind, path and properties."""

    def __init__(self, info: ReferenceInfo, blob: Any) -> None:
        self._info = info
        self._blob = blob

    kind = property(lambda self: self._info.kind, doc="The output kind.")
    file_path = property(lambda self: self._info.file_path, doc="The path under the kind.")
    blob_name = property(lambda self: self._info.blob_name, doc="The full blob name.")
    url = property(lambda self: self._info.url, doc="The blob URL, never with a SAS.")
    size = property(lambda self: self._info.size, doc="Size in bytes.")
    content_md5 = property(lambda self: self._info.content_md5, doc="The stored MD5, if any.")
    content_type = property(lambda self: self._info.content_type, doc="The stored content type.")
    last_modified = property(lambda self: self._info.last_modified, doc="When it was last written.")

    def __repr__(self) -> str:
        info = self._info
        return f"{type(self).__name__}({info.kind!r}, {info.file_path!r}, size={info.size})"


class StorageBase:
    """A job's container and whose outputs in it (a task's or the job's own)."""

    _clients: ModuleType  # azure.storage.blob or azure.storage.blob.aio
    _reference_class: type[ReferenceBase]  # the OutputFileReference of the same flavour
    _needs_task: bool

    def __init__(self, container: Any, task_id: str | None) -> None:
        if task_id is not None:
            _native.validate_task_id(task_id)
        _urls.check_container_url(container.url, getattr(container, "credential", None))
        self._container = container
        self._scope = Scope(container.container_name, task_id)

    @classmethod
    def _of(cls, container: Any, task_id: str | None = None):
        self = cls.__new__(cls)
        StorageBase.__init__(self, container, task_id if cls._needs_task else None)
        return self

    @classmethod
    def _container_from_url(cls, container_url: str, credential: Any, kwargs: dict[str, Any]) -> Any:
        _urls.check_container_url(container_url, credential)
        options = _urls.client_kwargs(kwargs)
        return cls._clients.ContainerClient.from_container_url(container_url, credential, **options)

    @classmethod
    def _from_service(cls, service: Any, job_id: str, task_id: str | None = None):
        return cls._of(service.get_container_client(naming.container_name(job_id)), task_id)

    @classmethod
    def _from_connection_string(cls, conn_str: str, job_id: str, task_id: str | None, kwargs: dict[str, Any]):
        name, options = naming.container_name(job_id), _urls.client_kwargs(kwargs)
        return cls._of(
            cls._clients.ContainerClient.from_connection_string(conn_str, name, **options), task_id
        )

    @classmethod
    def _from_environment(cls, kwargs: dict[str, Any]):
        config = _environment.environment_config(need_task=cls._needs_task)
        if config.container_url:
            return cls._of(cls._container_from_url(config.container_url, None, kwargs), config.task_id)
        assert config.job_id is not None  # environment_config guarantees it without a container URL
        if config.connection_string:
            return cls._from_connection_string(
                config.connection_string, config.job_id, config.task_id, kwargs
            )
        credential = _environment.default_credential(cls._clients)
        service = cls._clients.BlobServiceClient(
            config.account_url, credential, **_urls.client_kwargs(kwargs)
        )
        return cls._from_service(service, config.job_id, config.task_id)

    def _uploaded(self, blob: Any, size: int, upload: dict[str, Any], response: Any) -> Any:
        """The reference of a blob just written (no request: all is known from the upload)."""
        return self._reference_class(_scope.uploaded_info(self._scope, blob, size, upload, response), blob)

    @property
    def container_name(self) -> str:
        return self._container.container_name

    @property
    def task_id(self) -> str | None:
        return self._scope.task_id

    @property
    def url(self) -> str:
        """The container URL, without any SAS."""
        return _urls.public_url(self._container.url)

    def __repr__(self) -> str:
        task = f", task_id={self._scope.task_id!r}" if self._scope.task_id is not None else ""
        return f"{type(self).__name__}({self.url!r}{task})"


class TaskConstructors:
    """The constructors of ``TaskOutputStorage``, sync and async alike."""

    _needs_task = True

    def __init__(self, container_url: str, task_id: str, *, credential: Any = None, **kwargs: Any) -> None:
        """From a container URL with a SAS (or with ``credential``) and the task id."""
        container = self._container_from_url(container_url, credential, kwargs)  # type: ignore[attr-defined]
        StorageBase.__init__(self, container, task_id)  # type: ignore[arg-type]

    @classmethod
    def from_service(cls, service: Any, job_id: str, task_id: str):
        """From a ``BlobServiceClient`` of the job's storage account."""
        return cls._from_service(service, job_id, task_id)  # type: ignore[attr-defined]

    @classmethod
    def from_connection_string(cls, conn_str: str, job_id: str, task_id: str, **kwargs: Any):
        """From a storage connection string; ``kwargs`` go to the blob client (e.g. retry options)."""
        return cls._from_connection_string(conn_str, job_id, task_id, kwargs)  # type: ignore[attr-defined]

    @classmethod
    def from_environment(cls, **kwargs: Any):
        """For code on a Batch node: ids from ``AZ_BATCH_JOB_ID`` and ``AZ_BATCH_TASK_ID``, storage from
        ``BATCHFILES_CONTAINER_URL``, ``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_URL``
        (with ``DefaultAzureCredential``, e.g. the node's managed identity)."""
        return cls._from_environment(kwargs)  # type: ignore[attr-defined]


class JobConstructors:
    """The constructors of ``JobOutputStorage``, sync and async alike."""

    _needs_task = False

    def __init__(self, container_url: str, *, credential: Any = None, **kwargs: Any) -> None:
        """From a container URL with a SAS (or with ``credential``)."""
        container = self._container_from_url(container_url, credential, kwargs)  # type: ignore[attr-defined]
        StorageBase.__init__(self, container, None)  # type: ignore[arg-type]

    @classmethod
    def from_service(cls, service: Any, job_id: str):
        """From a ``BlobServiceClient`` of the job's storage account."""
        return cls._from_service(service, job_id)  # type: ignore[attr-defined]

    @classmethod
    def from_connection_string(cls, conn_str: str, job_id: str, **kwargs: Any):
        """From a storage connection string; ``kwargs`` go to the blob client (e.g. retry options)."""
        return cls._from_connection_string(conn_str, job_id, None, kwargs)  # type: ignore[attr-defined]

    @classmethod
    def from_environment(cls, **kwargs: Any):
        """Like ``TaskOutputStorage.from_environment``, without the task."""
        return cls._from_environment(kwargs)  # type: ignore[attr-defined]
