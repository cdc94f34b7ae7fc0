"""Class bodies shared by the sync and async APIs: properties, constructors, ``repr``. No I/O here.

The sync classes (``storage.py``) and their ``aio`` twins set ``_clients`` to the matching azure-storage-blob
module and add the I/O methods.
"""

from __future__ import annotations

from datetime import timedelta
from types import ModuleType
from typing import Any, TypeVar

from . import _environment, _native, _sas, _scope, _throttle, _urls, naming
from ._environment import EnvironmentConfig
from ._scope import ReferenceInfo, Scope


class ReferenceBase:
    """A saved output: its kind, path and properties."""

    def __init__(self, info: ReferenceInfo, blob: Any, container: Any = None) -> None:
        self._info = info
        self._blob = blob
        self._container = container  # its container's client: for the parts of a tracked save

    kind = property(lambda self: self._info.kind, doc="The output kind.")
    file_path = property(lambda self: self._info.file_path, doc="The path under the kind.")
    blob_name = property(lambda self: self._info.blob_name, doc="The full blob name.")
    url = property(lambda self: self._info.url, doc="The blob URL, never with a SAS.")
    size = property(lambda self: self._info.size, doc="Size in bytes.")
    content_md5 = property(lambda self: self._info.content_md5, doc="The stored MD5, if any.")
    content_type = property(lambda self: self._info.content_type, doc="The stored content type.")
    last_modified = property(lambda self: self._info.last_modified, doc="When it was last written.")
    metadata = property(
        lambda self: dict(self._info.metadata),
        doc="The blob's metadata: a tracked save's marks (``batchfiles_closed`` once closed), and on the "
        "logs of ``batchfiles run`` the command's outcome (``batchfiles_exit_code``, ``batchfiles_started``, "
        "``batchfiles_ended``).",
    )

    def __repr__(self) -> str:
        info = self._info
        return f"{type(self).__name__}({info.kind!r}, {info.file_path!r}, size={info.size})"


class StorageBase:
    """A job's container and whose outputs in it (a task's or the job's own)."""

    _clients: ModuleType  # azure.storage.blob or azure.storage.blob.aio
    _aio = False  # True for the aio twins: their clients get async policies
    _reference_class: type[ReferenceBase]  # the OutputFileReference of the same flavour

    def _init(
        self,
        container_url: str,
        task_id: str | None,
        credential: Any,
        sas_margin: timedelta | None,
        kwargs: dict[str, Any],
    ) -> None:
        """The one initialiser: a new client for ``container_url``, or the client passed as the private
        keyword ``_container`` (a service's or another storage's, whose connection is then shared, as
        azure-storage-blob's own ``get_container_client`` hands its pipeline over). Warns when the
        client's SAS expires within ``sas_margin`` (see :func:`batchfiles._sas.margin`)."""
        if task_id is not None:
            _native.validate_task_id(task_id)
        _sas.check_margin(sas_margin)
        container = kwargs.pop("_container", None)
        check_sas = kwargs.pop("_check_sas", True)  # False: a storage derived from one that checked
        if container is None:
            _urls.check_container_url(container_url, credential)
            options = _urls.client_kwargs(kwargs, aio=self._aio)
            container = self._clients.ContainerClient.from_container_url(container_url, credential, **options)
        credential = getattr(container, "credential", None)
        _urls.check_container_url(container.url, credential)
        self._container = container
        self._scope = Scope(container.container_name, task_id)
        if check_sas:
            what = f"container {container.container_name!r}"
            _sas.warn_if_expiring(what, container.url, credential, sas_margin)
        self._slots = _throttle.slots_for(container, aio=self._aio)  # shared by all saves through it

    @classmethod
    def _connection_string_container(cls, conn_str: str, job_id: str, kwargs: dict[str, Any]) -> Any:
        name, options = naming.container_name(job_id), _urls.client_kwargs(kwargs, aio=cls._aio)
        return cls._clients.ContainerClient.from_connection_string(conn_str, name, **options)

    @classmethod
    def _environment_container(cls, config: EnvironmentConfig, kwargs: dict[str, Any]) -> Any:
        """The container client of the storage that the environment names (see ``from_environment``)."""
        options = _urls.client_kwargs(kwargs, aio=cls._aio)
        if config.container_url:
            return cls._clients.ContainerClient.from_container_url(config.container_url, **options)
        assert config.job_id is not None  # environment_config guarantees it without a container URL
        if config.connection_string:
            return cls._connection_string_container(config.connection_string, config.job_id, kwargs)
        # A container client of its own (not a service's), so that closing the storage closes its
        # connections (a service's container client shares them, and leaves them open).
        credential = _environment.default_credential(cls._clients)
        name = naming.container_name(config.job_id)
        return cls._clients.ContainerClient(config.account_url, name, credential=credential, **options)

    def _uploaded(self, blob: Any, size: int, upload: dict[str, Any], response: Any) -> Any:
        """The reference of a blob just written (no request: all is known from the upload)."""
        info = _scope.uploaded_info(self._scope, blob, size, upload, response)
        return self._reference_class(info, blob, self._container)

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


_Task = TypeVar("_Task", bound="TaskConstructors")
_Job = TypeVar("_Job", bound="JobConstructors")


class TaskConstructors(StorageBase):
    """The constructors of ``TaskOutputStorage``, sync and async alike."""

    def __init__(
        self,
        container_url: str,
        task_id: str,
        *,
        credential: Any = None,
        sas_margin: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        """From a container URL with a SAS (or with ``credential``) and the task id.

        Every constructor logs a warning (logger ``"batchfiles"``) when the SAS expires within
        ``sas_margin`` (default: ``BATCHFILES_SAS_MARGIN``, else 1 hour; ``timedelta(0)``: only when it
        has expired already): saves after that would fail."""
        self._init(container_url, task_id, credential, sas_margin, kwargs)

    @classmethod
    def _from_container(
        cls: type[_Task],
        container: Any,
        task_id: str,
        sas_margin: timedelta | None = None,
        *,
        check: bool = False,
    ) -> _Task:
        """Over an existing container client (its connection shared); ``check``: warn of its SAS's expiry
        (not for a storage derived from one that did)."""
        return cls(container.url, task_id, _container=container, sas_margin=sas_margin, _check_sas=check)

    @classmethod
    def from_service(
        cls: type[_Task], service: Any, job_id: str, task_id: str, *, sas_margin: timedelta | None = None
    ) -> _Task:
        """From a ``BlobServiceClient`` of the job's storage account."""
        container = service.get_container_client(naming.container_name(job_id))
        return cls._from_container(container, task_id, sas_margin, check=True)

    @classmethod
    def from_connection_string(
        cls: type[_Task],
        conn_str: str,
        job_id: str,
        task_id: str,
        *,
        sas_margin: timedelta | None = None,
        **kwargs: Any,
    ) -> _Task:
        """From a storage connection string; ``kwargs`` go to the blob client (e.g. retry options)."""
        _sas.check_margin(sas_margin)
        container = cls._connection_string_container(conn_str, job_id, kwargs)
        return cls._from_container(container, task_id, sas_margin, check=True)

    @classmethod
    def from_environment(
        cls: type[_Task],
        *,
        job_id: str | None = None,
        task_id: str | None = None,
        container_url: str | None = None,
        connection_string: str | None = None,
        account_url: str | None = None,
        sas_margin: timedelta | None = None,
        **kwargs: Any,
    ) -> _Task:
        """For code on a Batch node: ids from ``AZ_BATCH_JOB_ID`` and ``AZ_BATCH_TASK_ID``, storage from
        ``BATCHFILES_CONTAINER_URL``, ``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_URL``
        (the first set; an account URL is signed in with ``DefaultAzureCredential``, e.g. the node's managed
        identity). A value passed wins over its variable (at most one of ``container_url``,
        ``connection_string``, ``account_url``), as the command line's options do. A container URL must be
        of the job's container when the job id is known. ``kwargs`` go to the blob client (e.g. retry
        options); warns when the SAS expires within ``sas_margin`` (see the constructor)."""
        _sas.check_margin(sas_margin)
        config = _environment.environment_config(
            need_task=True,
            job_id=job_id,
            task_id=task_id,
            container_url=container_url,
            connection_string=connection_string,
            account_url=account_url,
        )
        assert config.task_id is not None  # need_task: environment_config guarantees it
        container = cls._environment_container(config, kwargs)
        return cls._from_container(container, config.task_id, sas_margin, check=True)


class JobConstructors(StorageBase):
    """The constructors of ``JobOutputStorage``, sync and async alike."""

    def __init__(
        self,
        container_url: str,
        *,
        credential: Any = None,
        sas_margin: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        """From a container URL with a SAS (or with ``credential``); ``sas_margin``: as for
        ``TaskOutputStorage``."""
        self._init(container_url, None, credential, sas_margin, kwargs)

    @classmethod
    def _from_container(
        cls: type[_Job], container: Any, sas_margin: timedelta | None = None, *, check: bool = False
    ) -> _Job:
        """Over an existing container client (its connection shared); ``check``: as for the task's."""
        return cls(container.url, _container=container, sas_margin=sas_margin, _check_sas=check)

    @classmethod
    def from_service(
        cls: type[_Job], service: Any, job_id: str, *, sas_margin: timedelta | None = None
    ) -> _Job:
        """From a ``BlobServiceClient`` of the job's storage account."""
        container = service.get_container_client(naming.container_name(job_id))
        return cls._from_container(container, sas_margin, check=True)

    @classmethod
    def from_connection_string(
        cls: type[_Job], conn_str: str, job_id: str, *, sas_margin: timedelta | None = None, **kwargs: Any
    ) -> _Job:
        """From a storage connection string; ``kwargs`` go to the blob client (e.g. retry options)."""
        _sas.check_margin(sas_margin)
        container = cls._connection_string_container(conn_str, job_id, kwargs)
        return cls._from_container(container, sas_margin, check=True)

    @classmethod
    def from_environment(
        cls: type[_Job],
        *,
        job_id: str | None = None,
        container_url: str | None = None,
        connection_string: str | None = None,
        account_url: str | None = None,
        sas_margin: timedelta | None = None,
        **kwargs: Any,
    ) -> _Job:
        """Like ``TaskOutputStorage.from_environment``, without the task."""
        _sas.check_margin(sas_margin)
        config = _environment.environment_config(
            need_task=False,
            job_id=job_id,
            container_url=container_url,
            connection_string=connection_string,
            account_url=account_url,
        )
        return cls._from_container(cls._environment_container(config, kwargs), sas_margin, check=True)
