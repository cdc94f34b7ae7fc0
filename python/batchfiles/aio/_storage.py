"""The async storage API: the names of :mod:`batchfiles.storage` over azure.storage.blob.aio, and
:class:`AsyncReader`, the stream ``open()`` returns. Listing pages are parsed and the snapshot is built in
worker threads, as are a save's file reads and a download's file writes: off the event loop."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import azure.storage.blob.aio
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

from .. import (
    _deleting,
    _download,
    _environment,
    _errors,
    _follow,
    _listing,
    _progress,
    _sas,
    _saving,
    _scope,
    _throttle,
    _types,
    _urls,
    naming,
    snapshot,
)
from .._base import JobConstructors, ReferenceBase, StorageBase, TaskConstructors
from .._errors import storage_errors
from .._types import PathLike, Progress
from ..errors import BatchFilesError
from ..kinds import KindLike, TaskOutputKind

if TYPE_CHECKING:
    from ._tracking import TrackedSave

__all__ = [
    "JobOutputStorage",
    "OutputFileReference",
    "TaskOutputStorage",
    "output_storage_container_url",
    "prepare_output_storage",
    "service_from_environment",
]


def service_from_environment(
    *, connection_string: str | None = None, account_url: str | None = None, **kwargs: Any
) -> BlobServiceClient:
    """The async twin of :func:`batchfiles.service_from_environment` (an
    ``azure.storage.blob.aio.BlobServiceClient``, signed in with azure-identity's async
    ``DefaultAzureCredential`` over an account URL)."""
    config = _environment.account_config(connection_string=connection_string, account_url=account_url)
    return _environment.service_client(azure.storage.blob.aio, config, _urls.client_kwargs(kwargs, aio=True))


async def prepare_output_storage(service: BlobServiceClient, job_id: str) -> ContainerClient:
    """Create the job's output container (private; an existing one is fine) and return its client."""
    container = service.get_container_client(naming.container_name(job_id))
    with storage_errors(container.container_name), _errors.already_exists_is_fine():
        await container.create_container()
    return container


async def output_storage_container_url(
    service: BlobServiceClient, job_id: str, *, expiry: timedelta = timedelta(days=7)
) -> str:
    """The job container's URL with a SAS for its tasks; see the sync twin for the details."""
    key = _sas.sas_signing(service, expiry)
    start, end = _sas.sas_window(expiry, delegated=key is None)
    container = naming.container_name(job_id)
    with storage_errors(container):
        delegation = None if key else await service.get_user_delegation_key(start, end)
    return _sas.task_sas_url(service, container, key or delegation, start, end)


class OutputFileReference(ReferenceBase):
    """A saved output: its kind, path and properties, and async means to download or delete it."""

    async def _fetch(self, target: Path | None, progress: Progress | None = None) -> Any:
        """See the sync twin; files are written and hashed in a thread."""
        with storage_errors(self._blob.container_name, self.blob_name):
            first = await _first_range(self._blob)
            with _download.DownloadSink(first, self.blob_name, target, progress) as sink:
                await asyncio.to_thread(sink.write, await _download.content_of_async(first))
                read = functools.partial(_read_range, self._blob, first.properties.etag)
                await _download.read_in_order_async(read, _download.rest_of(first), sink.write)
        return sink.result

    async def download_bytes(self) -> bytes:
        """The whole output, verified against its Content-MD5 (:class:`IntegrityError` if it differs)."""
        return await self._fetch(None)

    async def download_text(self, encoding: str = "utf-8") -> str:
        return (await self.download_bytes()).decode(encoding)

    async def download_to_file(self, path: PathLike, *, progress: Progress | None = None) -> Path:
        """Download to ``path`` (folders are created); on a checksum mismatch no file is left there."""
        return await self._fetch(Path(path), progress)

    async def open(self) -> AsyncReader:
        """An async readable stream (``await stream.read(n)``); reading to the end verifies the MD5."""
        with storage_errors(self._blob.container_name, self.blob_name):
            download = await self._blob.download_blob(decompress=False)
        guard = functools.partial(storage_errors, self._blob.container_name, self.blob_name)
        return AsyncReader(download, _download.Md5Check(download, self.blob_name), guard)

    async def delete(self) -> None:
        with storage_errors(self._blob.container_name, self.blob_name):
            await self._blob.delete_blob()

    def follow(
        self, *, start: int = 0, poll_interval: float = 1.0, idle_timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """The output's bytes as they are saved (``async for``): see :meth:`TaskOutputStorage.follow`."""
        return _follow_blob(self._container, self.blob_name, start, poll_interval, idle_timeout)


async def _first_range(blob: BlobClient) -> Any:
    """The download of the blob's first range; see the sync twin."""
    try:
        return await blob.download_blob(offset=0, length=_download.RANGE_SIZE, decompress=False)
    except HttpResponseError as err:
        if err.status_code != 416:
            raise
        return await blob.download_blob(decompress=False)


async def _read_range(blob: BlobClient, etag: str, offset: int, length: int) -> bytes:
    """The bytes at ``offset`` of the blob's version ``etag``; see the sync twin."""
    condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    download = await blob.download_blob(offset=offset, length=length, decompress=False, **condition)
    return _download.check_range(await _download.content_of_async(download), length, blob.blob_name)


class AsyncReader:
    """A downloaded output read in pieces: ``await read(n)``; ``b""`` at the end, once verified (a tracked
    save in parts, from :meth:`JobOutputStorage.open`: each part verified at its end, the next one then
    asked for).

    ``async with`` (or ``await close()``) stops the download early.
    """

    def __init__(
        self,
        download: Any,
        check: _download.Md5Check,
        guard: Callable[[], Any],
        rest: AsyncIterator[tuple[Any, _download.Md5Check, Callable[[], Any]]] | None = None,
    ) -> None:
        self._chunks = download.chunks()
        self._check = check
        self._guard = guard
        self._rest = rest
        self._buffer = b""
        self._done = False

    async def __aenter__(self) -> AsyncReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._done, self._buffer = True, b""
        for stream in (self._chunks, self._rest):
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _fill(self, n: int) -> None:
        while not self._done and (n < 0 or len(self._buffer) < n):
            with self._guard():
                chunk = await anext(self._chunks, None)
            if chunk is None:
                self._check.verify()
                part = None if self._rest is None else await anext(self._rest, None)
                if part is None:
                    self._done = True
                else:
                    download, self._check, self._guard = part
                    self._chunks = download.chunks()
            else:
                self._check.update(chunk)
                self._buffer += chunk

    async def read(self, n: int = -1) -> bytes:
        await self._fill(n)
        size = len(self._buffer) if n < 0 else n
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class _OutputStorage(StorageBase):
    """The I/O of task and job storage over azure.storage.blob.aio."""

    _clients = azure.storage.blob.aio
    _aio = True
    _reference_class = OutputFileReference

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._container.close()

    async def save(
        self,
        kind: KindLike,
        path: PathLike,
        destination: str | None = None,
        *,
        overwrite: bool = True,
        progress: Progress | None = None,
        content_md5: bool = True,
        block_size: int = _saving.BLOCK_SIZE,
        max_concurrency: int = _saving.MAX_CONCURRENCY,
    ) -> OutputFileReference:
        """Save a file; see :meth:`batchfiles.TaskOutputStorage.save`. File reads run in a thread."""
        _saving.check_block_options(block_size, max_concurrency)
        blob = self._container.get_blob_client(self._scope.save_name(kind, path, destination))
        with storage_errors(self.container_name, blob.blob_name):
            if not overwrite and await blob.exists():
                raise _errors.exists_error(blob.blob_name)
            block_size = _saving.fit_block_size(os.path.getsize(path), block_size)
            reader = functools.partial(_saving.open_file, path, block_size, content_md5)
            sent = await _upload(blob, reader, block_size, overwrite, progress, max_concurrency, self._slots)
        return self._uploaded(blob, *sent)

    async def save_bytes(
        self, kind: KindLike, data: bytes, destination: str, *, overwrite: bool = True
    ) -> OutputFileReference:
        """Save ``data``; see :meth:`batchfiles.TaskOutputStorage.save_bytes`."""
        data = _saving.check_bytes(data)
        blob = self._container.get_blob_client(self._scope.blob_name(kind, destination))
        with storage_errors(self.container_name, blob.blob_name):
            if not overwrite and await blob.exists():
                raise _errors.exists_error(blob.blob_name)
            blocks = functools.partial(_saving.BytesBlocks, data, _saving.BLOCK_SIZE)
            options = (_saving.BLOCK_SIZE, overwrite, None, _saving.MAX_CONCURRENCY, self._slots)
            sent = await _upload(blob, blocks, *options)
        return self._uploaded(blob, *sent)

    async def save_text(
        self, kind: KindLike, text: str, destination: str, *, encoding: str = "utf-8", overwrite: bool = True
    ) -> OutputFileReference:
        """Save ``text`` as ``kind`` under ``destination``."""
        return await self.save_bytes(
            kind, _saving.encode_text(text, encoding), destination, overwrite=overwrite
        )

    async def save_many(
        self,
        kind: KindLike,
        patterns: str | Iterable[str],
        *,
        base_dir: PathLike = ".",
        max_concurrency: int = 8,
        overwrite: bool = True,
        progress: Progress | None = None,
    ) -> list[OutputFileReference]:
        """Save every file matching the Batch ``OutputFiles`` wildcard ``patterns``; see the sync twin.

        The walk never leaves ``base_dir``, and every blob name is derived (two files sharing one raise
        :class:`ValueError`) before anything is uploaded.
        """
        expand = _saving.expand_many
        files = await asyncio.to_thread(expand, self._scope, kind, patterns, base_dir, max_concurrency)
        return await self.save_files(
            kind, files, max_concurrency=max_concurrency, overwrite=overwrite, progress=progress
        )

    async def save_files(
        self,
        kind: KindLike,
        files: Iterable[tuple[PathLike, str]],
        *,
        max_concurrency: int = 8,
        overwrite: bool = True,
        progress: Progress | None = None,
    ) -> list[OutputFileReference]:
        """Save ``(local path, destination)`` pairs concurrently, every blob name checked first: see
        :meth:`batchfiles.TaskOutputStorage.save_files`."""
        plan = _saving.plan_files
        files, counter = await asyncio.to_thread(plan, self._scope, kind, files, max_concurrency, progress)
        slots = asyncio.Semaphore(max_concurrency)
        blocks = _saving.blocks_per_file(len(files), max_concurrency)

        async def save_one(path: str, rel: str) -> OutputFileReference:
            async with slots:
                part = counter.part()
                return await self.save(
                    kind, path, rel, overwrite=overwrite, max_concurrency=blocks, progress=part
                )

        jobs = [asyncio.ensure_future(save_one(path, rel)) for path, rel in files]
        try:
            return list(await asyncio.gather(*jobs))
        finally:
            for job in jobs:
                job.cancel()

    async def save_tracked(
        self,
        path: PathLike,
        destination: str | None = None,
        *,
        kind: KindLike | None = None,
        flush_interval: float = 5.0,
        if_exists: str = "resume",
        settle: float = 1.0,
        linger: float = 5.0,
    ) -> TrackedSave:
        """Follow a growing file and append it to an append blob; see the sync twin for the details."""
        from ._tracking import TrackedSave

        blob_name = self._scope.tracked_name(kind, path, destination)
        options = dict(flush_interval=flush_interval, if_exists=if_exists, settle=settle, linger=linger)
        return await TrackedSave.start(self._container, blob_name, path, **options)

    async def list(
        self, kind: KindLike | None = None, *, on_invalid: _types.OnInvalid | None = None
    ) -> AsyncIterator[OutputFileReference]:
        """The outputs of one kind, or of every kind, lazily (``async for``); a blob that is not an output
        is skipped and reported to ``on_invalid(blob_name, reason)``, see the sync twin."""
        prefix = self._scope.list_prefix(kind)
        with storage_errors(self.container_name):
            async for props in self._container.list_blobs(name_starts_with=prefix, include=["metadata"]):
                blob = self._container.get_blob_client(props.name)
                info = _scope.listed_info(self._scope, blob.url, props, on_invalid)
                if info is not None:
                    yield OutputFileReference(info, blob, self._container)

    async def get(self, kind: KindLike, path: str) -> OutputFileReference:
        """The output of ``kind`` at ``path``; :class:`OutputNotFoundError` if there is none, and
        :class:`ValueError` for a ``.`` or ``..`` segment in ``path``."""
        return await self._reference(self._container.get_blob_client(self._scope.get_name(kind, path)))

    def _follow(
        self, kind: KindLike, path: str, start: int, poll_interval: float, idle_timeout: float | None
    ) -> AsyncIterator[bytes]:
        name = self._scope.get_name(kind, path)
        return _follow_blob(self._container, name, start, poll_interval, idle_timeout)

    async def _reference(self, blob: BlobClient) -> OutputFileReference:
        with storage_errors(self.container_name, blob.blob_name):
            props = await blob.get_blob_properties()
        return OutputFileReference(_scope.reference_of(self._scope, blob.url, props), blob, self._container)


async def _upload(
    blob: BlobClient,
    open_reader: Callable[[], Any],
    block_size: int,
    overwrite: bool,
    progress: Progress | None,
    max_concurrency: int,
    slots: _throttle.AsyncSlots,
) -> tuple[int, dict[str, Any], Any]:
    """Upload what ``open_reader()`` cuts (opened in a thread); see the sync twin."""
    for attempt in range(2):
        reader = await asyncio.to_thread(open_reader)
        counter = _progress.ProgressCounter(reader.size, progress)
        try:
            if reader.size <= min(block_size, _saving.SINGLE_PUT_SIZE):
                data, upload = await asyncio.to_thread(_saving.single_put, blob.blob_name, reader, overwrite)
                response = await _put(blob, data, upload, overwrite, slots)
                counter.add(len(data))
            else:
                upload, response = await _put_blocks(blob, reader, overwrite, counter, max_concurrency, slots)
            return reader.size, upload, response
        except HttpResponseError as err:
            if attempt or not overwrite or not _saving.is_other_type(err):
                raise
        await _delete_other_type(blob, "BlockBlob")
    raise AssertionError("unreachable")


async def _delete_output(
    container: ContainerClient,
    output: _deleting.Plan,
    slots: _throttle.AsyncSlots,
    tally: _deleting.Tally,
    stop: asyncio.Event,
) -> None:
    """Delete an output's blobs in the order planned; see the sync twin."""
    if output.next_part is not None:
        with storage_errors(container.container_name, output.next_part):
            if await container.get_blob_client(output.next_part).exists():
                tally.refused(output.blobs[-1], _deleting.rolled_over(container.container_name, output))
                return
    for blob in output.blobs:
        refusal = await _delete_blob(container, blob, slots)
        if refusal is not None:
            tally.refused(blob, refusal)
            return
        tally.done()
        if stop.is_set():
            return


async def _delete_blob(container: ContainerClient, blob: _deleting.Blob, slots: _throttle.AsyncSlots) -> Any:
    """Delete ``blob`` if unchanged since it was listed; see the sync twin."""
    client = container.get_blob_client(blob.name)
    condition = {"etag": blob.etag, "match_condition": MatchConditions.IfNotModified}
    with storage_errors(container.container_name, blob.name):
        try:
            async with slots.slot() as hook:
                await client.delete_blob(**condition, raw_response_hook=hook)
            return None
        except HttpResponseError as err:
            if _deleting.is_gone(err) or (_deleting.may_be_gone(err) and not await client.exists()):
                return None
            refusal = _errors.cannot_delete(container.container_name, blob.name, err)
            if _deleting.is_refusal(err):
                return refusal
            raise refusal from None


async def _settle(tasks: list[asyncio.Future[Any]]) -> None:
    """Wait for ``tasks`` to end (the others, once one failed), their errors already told."""
    await asyncio.gather(*tasks, return_exceptions=True)


async def _delete_other_type(blob: BlobClient, wanted: str) -> None:
    """Delete ``blob`` if it is not a ``wanted`` blob; see the sync twin."""
    try:
        props = await blob.get_blob_properties()
    except ResourceNotFoundError:
        return
    found = _saving.blob_type(props)
    if found == wanted:
        return
    try:
        await blob.delete_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)
    except ResourceNotFoundError:
        pass
    except HttpResponseError as err:
        if _saving.is_condition_failed(err) and await _gone_or(blob, wanted):
            return
        raise _errors.cannot_replace(blob.container_name, blob.blob_name, found, err) from None


async def _gone_or(blob: BlobClient, wanted: str) -> bool:
    """Whether ``blob`` is missing, or now a ``wanted`` blob."""
    try:
        return _saving.blob_type(await blob.get_blob_properties()) == wanted
    except ResourceNotFoundError:
        return True


async def _put_blocks(
    blob: BlobClient,
    reader: Any,
    overwrite: bool,
    counter: _progress.ProgressCounter,
    max_concurrency: int,
    slots: _throttle.AsyncSlots,
) -> tuple[dict[str, Any], Any]:
    """Stage blocks from ``max_concurrency`` tasks, each request in one of ``slots``; the reader cuts and
    hashes them in a thread."""
    lock = asyncio.Lock()
    upload_id, staged = _saving.new_upload_id(), []

    async def worker() -> None:
        while True:
            async with lock:
                block = await asyncio.to_thread(reader.next_block)
            if block is None:
                return
            index, _, data, crc = block
            del block  # hold one block per task, not two, while the next is read
            async with slots.slot() as hook:
                await blob.stage_block(
                    _saving.block_id(upload_id, index),
                    data,
                    headers=_saving.crc_headers(crc),
                    raw_response_hook=hook,
                )
            staged.append(index)
            counter.add(len(data))
            del data

    workers = [asyncio.ensure_future(worker()) for _ in range(max_concurrency)]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
    commit = _saving.commit_kwargs(blob.blob_name, reader, upload_id, staged, overwrite)
    try:
        async with slots.slot() as hook:
            return commit, await blob.commit_block_list(**commit, raw_response_hook=hook)
    except HttpResponseError as err:
        if not _saving.may_be_own_write(err, overwrite):
            raise
        committed, _ = await blob.get_block_list("committed")
        if not _saving.commit_landed(committed, commit):
            raise
        return commit, _saving.landed_response(await blob.get_blob_properties())


async def _put(
    blob: BlobClient, data: bytes, upload: dict[str, Any], overwrite: bool, slots: _throttle.AsyncSlots
) -> Any:
    """``upload_blob`` in one of ``slots``; see the sync twin."""
    try:
        async with slots.slot() as hook:
            return await blob.upload_blob(data, **upload, raw_response_hook=hook)
    except HttpResponseError as err:
        if not _saving.may_be_own_write(err, overwrite):
            raise
        props = await blob.get_blob_properties()
        if not _saving.put_landed(props, len(data), upload):
            raise
        return _saving.landed_response(props)


def _follow_blob(
    container: ContainerClient, name: str, start: int, poll_interval: float, idle_timeout: float | None
) -> AsyncIterator[bytes]:
    """The follow of the blob ``name`` (options checked now, not at the first ``anext``)."""
    _follow.check_options(start, poll_interval, idle_timeout)
    options = dict(start=start, poll_interval=poll_interval, idle_timeout=idle_timeout)
    where = f" in container {container.container_name!r}"
    steps = _follow.follow_blob(name, clock=time.monotonic, where=where, **options)
    return _drive_follow(container, steps, name)


async def _drive_follow(
    container: ContainerClient, steps: _follow.Follow, blob: str | None = None
) -> AsyncIterator[Any]:
    """Run a follow (see :mod:`batchfiles._follow`), awaiting its requests and sleeps; the twin of
    :func:`batchfiles.storage._drive_follow`."""
    result: Any = None
    error: Exception | None = None
    try:
        while True:
            with storage_errors(container.container_name, blob):
                try:
                    item = steps.send(result) if error is None else steps.throw(error)
                except StopIteration:
                    return
            result = error = None
            if isinstance(item, _follow.Sleep):
                await asyncio.sleep(item.seconds)
            elif isinstance(item, _follow.Request):
                try:
                    result = await _follow_request(container, item)
                except Exception as exc:  # the follow decides: waited for, tried again, or raised
                    error = exc
            else:
                yield item
    finally:
        steps.close()


async def _follow_request(container: ContainerClient, request: _follow.Request) -> Any:
    if isinstance(request, _follow.Listing):  # as a snapshot lists: parsed (off the loop) by _listing
        pages = _listing.pages_async(container, request.prefix or None, snapshot.PAGE_SIZE, list)
        return [listed async for page in pages for listed in page]
    blob = container.get_blob_client(request.blob)
    if isinstance(request, _follow.Probe):
        return await blob.get_blob_properties()
    download = await blob.download_blob(**request.kwargs)
    return await download.readall(), download.properties


class TaskOutputStorage(TaskConstructors, _OutputStorage):
    """The outputs of one task (async); see :class:`batchfiles.TaskOutputStorage`."""

    def follow(
        self,
        path: str,
        *,
        kind: KindLike = TaskOutputKind.TASK_LOG,
        start: int = 0,
        poll_interval: float = 1.0,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[bytes]:
        """The output at ``path`` as it is saved (``async for chunk in storage.follow(...)``); see
        :meth:`batchfiles.TaskOutputStorage.follow`."""
        return self._follow(kind, path, start, poll_interval, idle_timeout)


class JobOutputStorage(JobConstructors, _OutputStorage):
    """The job's own outputs (async); see :class:`batchfiles.JobOutputStorage`."""

    def task(self, task_id: str) -> TaskOutputStorage:
        """The storage of one task of this job, on this storage's connection (close this one, not it)."""
        return TaskOutputStorage._from_container(self._container, task_id)

    def follow(
        self,
        path: str,
        *,
        kind: KindLike,
        start: int = 0,
        poll_interval: float = 1.0,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[bytes]:
        """The job's output of ``kind`` at ``path`` as it is saved; see the sync twin."""
        return self._follow(kind, path, start, poll_interval, idle_timeout)

    async def task_ids(self) -> AsyncIterator[str]:
        """The tasks of the job that have saved anything."""
        with storage_errors(self.container_name):
            async for item in self._container.walk_blobs(delimiter="/"):
                if _scope.is_task_folder(item.name):
                    yield item.name[:-1]

    def follow_logs(
        self,
        task_ids: Iterable[str] | None = None,
        *,
        kind: KindLike = TaskOutputKind.TASK_LOG,
        paths: Iterable[str] | None = None,
        tail: int | None = None,
        poll_interval: float = 1.0,
        idle_timeout: float | None = None,
        on_invalid: _types.OnInvalid | None = None,
    ) -> AsyncIterator[_follow.LogEvent]:
        """The logs of the job's tasks as they are saved, many at once (``async for event in
        job.follow_logs(...)``): one listing per poll, the same events; see
        :meth:`batchfiles.JobOutputStorage.follow_logs`."""
        steps = _follow.job_logs(
            self.container_name,
            self._container.url,
            task_ids,
            kind,
            paths,
            tail=tail,
            poll_interval=poll_interval,
            idle_timeout=idle_timeout,
            on_invalid=on_invalid,
            clock=time.monotonic,
        )
        return _drive_follow(self._container, steps)

    async def snapshot(
        self, *, on_invalid: _types.OnInvalid | None = None, task_id: str | None = None
    ) -> snapshot.JobSnapshot:
        """The whole job from one flat listing; see :meth:`batchfiles.JobOutputStorage.snapshot`. The
        listing's pages are parsed, and the snapshot built, in a worker thread: the event loop stays free
        (``on_invalid`` is called on it)."""
        snapshot.check_on_invalid(on_invalid)
        told: list[tuple[str, str]] = []
        builder = self._builder(told)
        prefix = _scope.snapshot_prefix(task_id)
        pieces = [piece async for page in self._pages(builder, told, on_invalid, prefix) for piece in page]
        return await asyncio.to_thread(snapshot.assemble, self.container_name, pieces, builder.skipped)

    def iter_snapshot(
        self, *, on_invalid: _types.OnInvalid | None = None, task_id: str | None = None
    ) -> AsyncIterator[snapshot.Piece]:
        """The snapshot's pieces as pages arrive (``async for``); see the sync twin. Each page is parsed
        in a worker thread, as for :meth:`snapshot`."""
        snapshot.check_on_invalid(on_invalid)
        prefix = _scope.snapshot_prefix(task_id)
        told: list[tuple[str, str]] = []
        return self._pieces(self._pages(self._builder(told), told, on_invalid, prefix))

    def _builder(self, told: list[tuple[str, str]]) -> snapshot.Builder:
        """A builder that keeps the blobs it skips in ``told`` (to be told on the event loop)."""
        return snapshot.Builder(
            self.container_name, self._container.url, lambda name, why: told.append((name, why))
        )

    @staticmethod
    async def _pieces(pages: AsyncIterator[list[snapshot.Piece]]) -> AsyncIterator[snapshot.Piece]:
        async for page in pages:
            for piece in page:
                yield piece

    async def _pages(
        self,
        builder: snapshot.Builder,
        told: list[tuple[str, str]],
        on_invalid: _types.OnInvalid | None,
        prefix: str,
    ) -> AsyncIterator[list[snapshot.Piece]]:
        """The builder's pieces, a page's at a time, as the pages arrive: each page parsed
        (:mod:`batchfiles._listing`) and added to ``builder`` in a worker thread; the blobs skipped
        meanwhile then told to ``on_invalid``."""

        def add(page: list[_listing.Listed]) -> list[snapshot.Piece]:
            return [piece for listed in page for piece in builder.add(listed)]

        def tell() -> None:
            for name, why in told:
                (on_invalid or snapshot.warn_skipped)(name, why)
            told.clear()

        pages = _listing.pages_async(self._container, prefix or None, snapshot.PAGE_SIZE, add)
        with storage_errors(self.container_name):
            async for pieces in pages:
                tell()
                yield pieces
        pieces = builder.finish()
        tell()
        yield pieces

    # --- cleaning up -----------------------------------------------------------------------------------

    def check_delete(self, *, container: bool = False) -> None:
        """Raise :class:`AuthenticationError`, without any request, when this storage's SAS shows that it
        may not delete (no request, so not a coroutine); see :meth:`batchfiles.JobOutputStorage.check_delete`.
        """
        _deleting.check_permission(
            self._container.url, self._container.credential, self.container_name, container=container
        )

    async def delete(
        self,
        outputs: Iterable[snapshot.OutputSnapshot],
        *,
        max_concurrency: int = _deleting.MAX_CONCURRENCY,
    ) -> int:
        """Delete exactly these outputs of this job's snapshot, every blob of each, each conditional on the
        ETag listed; the number of blobs deleted. See :meth:`batchfiles.JobOutputStorage.delete`."""
        plans = _deleting.plan(outputs, self.container_name)
        _deleting.check_concurrency(max_concurrency)
        self.check_delete()
        tally = _deleting.Tally(plans)
        items = iter(plans)
        stop = asyncio.Event()

        async def worker() -> None:
            try:
                while not stop.is_set() and (output := next(items, None)) is not None:
                    await _delete_output(self._container, output, self._slots, tally, stop)
            except BaseException:
                stop.set()
                raise

        workers = [asyncio.ensure_future(worker()) for _ in range(min(max_concurrency, len(plans)))]
        try:
            await asyncio.gather(*workers)
        except BatchFilesError as err:
            await _settle(workers)
            raise tally.stopped(err) from None
        except BaseException:
            stop.set()
            for task in workers:
                task.cancel()
            await _settle(workers)
            raise
        return tally.result()

    async def delete_container(self) -> None:
        """Delete the job's container and everything in it; see
        :meth:`batchfiles.JobOutputStorage.delete_container`."""
        self.check_delete(container=True)
        with storage_errors(self.container_name):
            try:
                await self._container.delete_container()
            except HttpResponseError as err:
                if not _deleting.container_gone(err):
                    raise _errors.cannot_delete(self.container_name, None, err) from None

    async def download(
        self, output: snapshot.OutputSnapshot, path: PathLike, *, progress: Progress | None = None
    ) -> Path:
        """Download an output of this job's snapshot to ``path``, a tracked save in parts as one file; see
        :meth:`batchfiles.JobOutputStorage.download`."""
        output = snapshot.checked(output, "download")
        target = Path(path)
        if not output.parts:
            reference = OutputFileReference(
                _scope.snapshot_info(output),
                self._container.get_blob_client(output.blob_name),
                self._container,
            )
            return await reference.download_to_file(target, progress=progress)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        counter = _progress.ProgressCounter(output.size, progress)
        partial, file = await asyncio.to_thread(_download.open_partial, target.parent)
        try:
            with file:
                for name, condition in zip(output.blob_names, _download.as_listed(output), strict=True):
                    with storage_errors(self.container_name, name):
                        blob = self._container.get_blob_client(name)
                        download = await blob.download_blob(decompress=False, **condition)
                        check = _download.Md5Check(download, name)
                        async for chunk in download.chunks():
                            check.update(chunk)
                            await asyncio.to_thread(file.write, chunk)
                            counter.add(len(chunk))
                    check.verify()
            await asyncio.to_thread(os.replace, partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    async def open(self, output: snapshot.OutputSnapshot) -> AsyncReader:
        """An output of this job's snapshot as an async readable stream (``await stream.read(n)``), a
        tracked save's parts one after the other, each verified at its end; see
        :meth:`batchfiles.JobOutputStorage.open`."""
        output = snapshot.checked(output, "open")

        async def rest() -> AsyncIterator[tuple[Any, _download.Md5Check, Callable[[], Any]]]:
            for name in output.parts:
                yield await _open_part(self._container, name)

        return AsyncReader(*await _open_part(self._container, output.blob_name), rest())


async def _open_part(
    container: ContainerClient, name: str
) -> tuple[Any, _download.Md5Check, Callable[[], Any]]:
    """The download of the blob ``name`` (its first request sent), to be read in chunks and verified."""
    with storage_errors(container.container_name, name):
        download = await container.get_blob_client(name).download_blob(decompress=False)
    guard = functools.partial(storage_errors, container.container_name, name)
    return download, _download.Md5Check(download, name), guard
