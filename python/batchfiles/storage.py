"""The sync API: save, list, follow, fetch and delete the outputs of Batch jobs and tasks, named by the Batch
File Conventions, and a job's snapshot.

The requests are made here; what to send and what the answers mean come from modules that make none
(``_saving``, ``_download``, ``_follow``, ``_deleting``, ``snapshot``, ``_scope``), which
:mod:`batchfiles.aio` drives too."""

from __future__ import annotations

import functools
import io
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import azure.storage.blob
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import (
    BlobClient,
    BlobServiceClient,
    ContainerClient,
)

from . import (
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
from ._base import JobConstructors, ReferenceBase, StorageBase, TaskConstructors
from ._errors import storage_errors
from ._throttle import THROTTLED_RETRIES
from ._types import PathLike, Progress
from .errors import BatchFilesError
from .kinds import KindLike, TaskOutputKind

if TYPE_CHECKING:
    from .tracking import TrackedSave

__all__ = [
    "THROTTLED_RETRIES",
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
    """The storage account's ``BlobServiceClient``, for :func:`prepare_output_storage` and
    :func:`output_storage_container_url` on the client side: from ``connection_string`` or
    ``account_url`` if given (one of them), else ``AZURE_STORAGE_CONNECTION_STRING`` or
    ``AZURE_STORAGE_ACCOUNT_URL``; an account URL is signed in with ``DefaultAzureCredential``. ``kwargs``
    go to the client (e.g. retry options), with batchfiles' retries and throttling patience as for
    storage objects. A container URL is not enough: its SAS is for one container."""
    config = _environment.account_config(connection_string=connection_string, account_url=account_url)
    return _environment.service_client(azure.storage.blob, config, _urls.client_kwargs(kwargs))


def prepare_output_storage(service: BlobServiceClient, job_id: str) -> ContainerClient:
    """Create the job's output container (private; an existing one is fine) and return its client."""
    container = service.get_container_client(naming.container_name(job_id))
    with storage_errors(container.container_name), _errors.already_exists_is_fine():
        container.create_container()
    return container


def output_storage_container_url(
    service: BlobServiceClient, job_id: str, *, expiry: timedelta = timedelta(days=7)
) -> str:
    """The job container's URL with a SAS (read, add, create, write, delete, list) for its tasks: delete
    lets a retried task replace its first attempt's logs, as storage cannot change a blob's type in place.

    Signed with the account key when the client has one, otherwise with a user delegation key obtained
    through the client's Azure AD credential (valid for at most 7 days).
    """
    key = _sas.sas_signing(service, expiry)
    start, end = _sas.sas_window(expiry, delegated=key is None)
    container = naming.container_name(job_id)
    with storage_errors(container):
        delegation = None if key else service.get_user_delegation_key(start, end)
    return _sas.task_sas_url(service, container, key or delegation, start, end)


class OutputFileReference(ReferenceBase):
    """A saved output: its kind, path and properties, and the means to download or delete it."""

    def _fetch(self, target: Path | None, progress: Progress | None = None) -> Any:
        """The first range, then the rest in parallel ranged reads of that very version (If-Match), hashed
        and written in order (see :mod:`batchfiles._download`)."""
        with storage_errors(self._blob.container_name, self.blob_name):
            first = _first_range(self._blob)
            with _download.DownloadSink(first, self.blob_name, target, progress) as sink:
                sink.write(_download.content_of(first))
                read = functools.partial(_read_range, self._blob, first.properties.etag)
                _download.read_in_order(read, _download.rest_of(first), sink.write)
        return sink.result

    def download_bytes(self) -> bytes:
        """The whole output, verified against its Content-MD5 (:class:`IntegrityError` if it differs)."""
        return self._fetch(None)

    def download_text(self, encoding: str = "utf-8") -> str:
        return self.download_bytes().decode(encoding)

    def download_to_file(self, path: PathLike, *, progress: Progress | None = None) -> Path:
        """Download to ``path`` (folders are created); on a checksum mismatch no file is left there.

        ``progress(received, total)`` is called as bytes arrive.
        """
        return self._fetch(Path(path), progress)

    def open(self) -> io.BufferedReader:
        """A readable binary stream; reading it to the end verifies the Content-MD5."""
        with storage_errors(self._blob.container_name, self.blob_name):
            download = self._blob.download_blob(decompress=False)
        check = _download.Md5Check(download, self.blob_name)
        guard = functools.partial(storage_errors, self._blob.container_name, self.blob_name)
        return io.BufferedReader(_VerifyingStream(download.chunks(), check, guard))

    def delete(self) -> None:
        with storage_errors(self._blob.container_name, self.blob_name):
            self._blob.delete_blob()

    def follow(
        self, *, start: int = 0, poll_interval: float = 1.0, idle_timeout: float | None = None
    ) -> Iterator[bytes]:
        """The output's bytes as they are saved (a live log): see :meth:`TaskOutputStorage.follow`."""
        return _follow_blob(self._container, self.blob_name, start, poll_interval, idle_timeout)


def _first_range(blob: BlobClient) -> Any:
    """The download of the blob's first range (its properties, and the whole blob's size and MD5)."""
    try:
        return blob.download_blob(offset=0, length=_download.RANGE_SIZE, decompress=False)
    except HttpResponseError as err:
        if err.status_code != 416:
            raise
        return blob.download_blob(decompress=False)  # an empty blob has no range to read


def _read_range(blob: BlobClient, etag: str, offset: int, length: int) -> bytes:
    """The bytes at ``offset`` of the blob's version ``etag`` (412 once it changed)."""
    condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    download = blob.download_blob(offset=offset, length=length, decompress=False, **condition)
    return _download.check_range(_download.content_of(download), length, blob.blob_name)


#: A blob being read: its chunks, the check of its Content-MD5, and the errors context of its name.
_Part = tuple[Iterator[bytes], _download.Md5Check, Callable[[], Any]]


class _VerifyingStream(io.RawIOBase):
    """A blob's chunks as a raw stream, verified at its end; then each of ``rest`` (opened as the reading
    reaches it: the next parts of a tracked save)."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        check: _download.Md5Check,
        guard: Callable[[], Any],
        rest: Iterator[_Part] | None = None,
    ) -> None:
        self._chunks, self._check, self._guard, self._buffer = chunks, check, guard, b""
        self._rest = rest if rest is not None else iter(())

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer:
            with self._guard():
                chunk = next(self._chunks, None)
            if chunk is None:
                self._check.verify()
                part = next(self._rest, None)
                if part is None:
                    return 0
                self._chunks, self._check, self._guard = part
                continue
            self._check.update(chunk)
            self._buffer = chunk
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class _OutputStorage(StorageBase):
    """The I/O of task and job storage over azure.storage.blob."""

    _clients = azure.storage.blob
    _reference_class = OutputFileReference

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    # --- saving ---------------------------------------------------------------------------------------------

    def save(
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
        """Save the file at ``path`` as ``kind``, streamed in blocks with checksums computed in Rust.

        A relative ``path`` is stored under :func:`naming.destination_path` of itself; an absolute one
        needs ``destination``. The blob's Content-MD5 is the whole file's (``content_md5=False`` skips it);
        each block carries a CRC-64 that storage verifies. ``progress(sent, total)`` is called as it goes.
        """
        _saving.check_block_options(block_size, max_concurrency)
        blob = self._container.get_blob_client(self._scope.save_name(kind, path, destination))

        with storage_errors(self.container_name, blob.blob_name):
            if not overwrite and blob.exists():
                raise _errors.exists_error(blob.blob_name)
            block_size = _saving.fit_block_size(os.path.getsize(path), block_size)
            reader = functools.partial(_saving.open_file, path, block_size, content_md5)
            sent = _upload(blob, reader, block_size, overwrite, progress, max_concurrency, self._slots)
        return self._uploaded(blob, *sent)

    def save_bytes(
        self, kind: KindLike, data: bytes, destination: str, *, overwrite: bool = True
    ) -> OutputFileReference:
        """Save ``data`` as ``kind`` under ``destination``: with its Content-MD5 in one request, or, over 8
        MiB, in blocks that each carry a CRC-64, committed with the whole data's Content-MD5."""
        data = _saving.check_bytes(data)
        blob = self._container.get_blob_client(self._scope.blob_name(kind, destination))
        with storage_errors(self.container_name, blob.blob_name):
            if not overwrite and blob.exists():
                raise _errors.exists_error(blob.blob_name)
            blocks = functools.partial(_saving.BytesBlocks, data, _saving.BLOCK_SIZE)
            options = (_saving.BLOCK_SIZE, overwrite, None, _saving.MAX_CONCURRENCY, self._slots)
            sent = _upload(blob, blocks, *options)
        return self._uploaded(blob, *sent)

    def save_text(
        self, kind: KindLike, text: str, destination: str, *, encoding: str = "utf-8", overwrite: bool = True
    ) -> OutputFileReference:
        """Save ``text`` as ``kind`` under ``destination``."""
        return self.save_bytes(kind, _saving.encode_text(text, encoding), destination, overwrite=overwrite)

    def save_many(
        self,
        kind: KindLike,
        patterns: str | Iterable[str],
        *,
        base_dir: PathLike = ".",
        max_concurrency: int = 8,
        overwrite: bool = True,
        progress: Progress | None = None,
    ) -> list[OutputFileReference]:
        """Save every file matching the Batch ``OutputFiles`` wildcard ``patterns`` under ``base_dir``,
        in parallel; each keeps its path relative to ``base_dir``.

        ``*``, ``?``, ``[abc]``, ``[a-c]``, ``[!abc]`` match within a name, ``**`` any number of folders;
        dot-names match only where the pattern names the dot; ``[*]`` escapes. A pattern may not climb
        above ``base_dir`` (``../*.txt``) nor be absolute (:class:`ValueError`). The walk never leaves
        ``base_dir``: a folder link is followed only to a folder inside it, each folder is walked once (link
        loops end), and a file linking outside is skipped with a warning (logger ``batchfiles``).

        Every blob name is derived before anything is uploaded: a file whose name cannot be derived, or two
        files that would share a blob (``a/b.txt`` and a file named ``a\\b.txt``), raise
        :class:`ValueError` naming them, and nothing is saved. ``progress(sent, total)`` counts the bytes of
        all files. On the first upload error, files not started yet are not saved, and it is raised.
        """
        files = _saving.expand_many(self._scope, kind, patterns, base_dir, max_concurrency)
        return self.save_files(
            kind, files, max_concurrency=max_concurrency, overwrite=overwrite, progress=progress
        )

    def save_files(
        self,
        kind: KindLike,
        files: Iterable[tuple[PathLike, str]],
        *,
        max_concurrency: int = 8,
        overwrite: bool = True,
        progress: Progress | None = None,
    ) -> list[OutputFileReference]:
        """Save ``(local path, destination)`` pairs in parallel, as :meth:`save_many` saves what its patterns
        match: every blob name is derived first, and two files that would share a blob (or a name that
        cannot be one) raise :class:`ValueError` and nothing is saved; a file given twice under one
        destination is saved once. ``progress(sent, total)`` counts the bytes of all files. On the first
        upload error, files not started yet are not saved, and it is raised."""
        files, counter = _saving.plan_files(self._scope, kind, files, max_concurrency, progress)
        blocks = _saving.blocks_per_file(len(files), max_concurrency)
        with ThreadPoolExecutor(max_concurrency) as pool:
            options = {"overwrite": overwrite, "max_concurrency": blocks}
            jobs = [pool.submit(self.save, kind, p, r, progress=counter.part(), **options) for p, r in files]
            try:
                return [job.result() for job in jobs]
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise

    def save_tracked(
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
        """Follow a growing file (a log) and append what it gains to an append blob, exactly once.

        ``kind`` defaults to ``TaskLog`` for a task (a job must name one). New bytes are in the blob within
        ``flush_interval`` seconds; ``close()`` (or leaving the ``with``) saves the rest, following the file
        until it has not grown for ``settle`` seconds or ``linger`` seconds have passed. ``if_exists``:
        ``"resume"`` continues a blob that holds a prefix of the file, ``"overwrite"`` starts afresh,
        ``"fail"`` raises :class:`OutputExistsError`. See :class:`batchfiles.tracking.TrackedSave`.
        """
        from .tracking import TrackedSave

        blob_name = self._scope.tracked_name(kind, path, destination)
        options = dict(flush_interval=flush_interval, if_exists=if_exists, settle=settle, linger=linger)
        return TrackedSave.start(self._container, blob_name, path, **options)

    # --- finding --------------------------------------------------------------------------------------------

    def list(
        self, kind: KindLike | None = None, *, on_invalid: _types.OnInvalid | None = None
    ) -> Iterator[OutputFileReference]:
        """The outputs of one kind, or of every kind, lazily.

        Only a blob whose file path is in the conventions' normal form (``naming.destination_path(p) == p``:
        no ``.``, ``..`` or empty segments, no ``\\``) is an output. Any other blob under the prefix is
        skipped, and ``on_invalid(blob_name, reason)`` is called for it (by default a warning is logged on
        the ``batchfiles`` logger).
        """
        prefix = self._scope.list_prefix(kind)
        with storage_errors(self.container_name):
            for props in self._container.list_blobs(name_starts_with=prefix, include=["metadata"]):
                blob = self._container.get_blob_client(props.name)
                info = _scope.listed_info(self._scope, blob.url, props, on_invalid)
                if info is not None:
                    yield OutputFileReference(info, blob, self._container)

    def get(self, kind: KindLike, path: str) -> OutputFileReference:
        """The output of ``kind`` at ``path``; :class:`OutputNotFoundError` if there is none.

        ``path`` is the output's file path; a ``.`` or ``..`` segment in it raises :class:`ValueError`.
        """
        return self._reference(self._container.get_blob_client(self._scope.get_name(kind, path)))

    def _follow(
        self, kind: KindLike, path: str, start: int, poll_interval: float, idle_timeout: float | None
    ) -> Iterator[bytes]:
        name = self._scope.get_name(kind, path)
        return _follow_blob(self._container, name, start, poll_interval, idle_timeout)

    def _reference(self, blob: BlobClient) -> OutputFileReference:
        with storage_errors(self.container_name, blob.blob_name):
            props = blob.get_blob_properties()
        return OutputFileReference(_scope.reference_of(self._scope, blob.url, props), blob, self._container)


def _upload(
    blob: BlobClient,
    open_reader: Callable[[], Any],
    block_size: int,
    overwrite: bool,
    progress: Progress | None,
    max_concurrency: int,
    slots: _throttle.Slots,
) -> tuple[int, dict[str, Any], Any]:
    """Upload what ``open_reader()`` cuts into ``block_size`` blocks (a ``BlockReader`` or
    ``BytesBlocks``): in one request if it is one block of at most 8 MiB, else in blocks. A blob of another
    type in the way (a live log's append blob), which storage cannot overwrite, is deleted and the upload
    made again, when ``overwrite``. Returns (size, upload options, response)."""
    for attempt in range(2):
        reader = open_reader()
        counter = _progress.ProgressCounter(reader.size, progress)
        try:
            if reader.size <= min(block_size, _saving.SINGLE_PUT_SIZE):
                data, upload = _saving.single_put(blob.blob_name, reader, overwrite)
                response = _put(blob, data, upload, overwrite, slots)
                counter.add(len(data))
            else:
                upload, response = _put_blocks(blob, reader, overwrite, counter, max_concurrency, slots)
            return reader.size, upload, response
        except HttpResponseError as err:
            if attempt or not overwrite or not _saving.is_other_type(err):
                raise
        _delete_other_type(blob, "BlockBlob")
    raise AssertionError("unreachable")


def _delete_output(
    container: ContainerClient,
    output: _deleting.Plan,
    slots: _throttle.Slots,
    tally: _deleting.Tally,
    stop: threading.Event,
) -> None:
    """Delete an output's blobs in the order planned, until one is refused (the output's earlier blobs then
    stay, so what is left is still an output) or the delete stops; an open live log that went on in a new
    part since it was listed is left whole."""
    if output.next_part is not None:
        with storage_errors(container.container_name, output.next_part):
            if container.get_blob_client(output.next_part).exists():
                tally.refused(output.blobs[-1], _deleting.rolled_over(container.container_name, output))
                return
    for blob in output.blobs:
        refusal = _delete_blob(container, blob, slots)
        if refusal is not None:
            tally.refused(blob, refusal)
            return
        tally.done()
        if stop.is_set():
            return


def _delete_blob(container: ContainerClient, blob: _deleting.Blob, slots: _throttle.Slots) -> Any:
    """Delete ``blob`` if unchanged since it was listed. None once it is gone; the error of a refusal for the
    blob's own sake (see :func:`_deleting.is_refusal`); any other failure is raised."""
    client = container.get_blob_client(blob.name)
    condition = {"etag": blob.etag, "match_condition": MatchConditions.IfNotModified}
    with storage_errors(container.container_name, blob.name):
        try:
            with slots.slot() as hook:
                client.delete_blob(**condition, raw_response_hook=hook)
            return None
        except HttpResponseError as err:
            if _deleting.is_gone(err) or (_deleting.may_be_gone(err) and not client.exists()):
                return None
            refusal = _errors.cannot_delete(container.container_name, blob.name, err)
            if _deleting.is_refusal(err):
                return refusal
            raise refusal from None


def _delete_other_type(blob: BlobClient, wanted: str) -> None:
    """Delete ``blob`` if it is not a ``wanted`` blob, on condition that it is unchanged since looked at.
    A 412 may answer a retry of a delete that landed (its answer lost): then what is there now decides."""
    try:
        props = blob.get_blob_properties()
    except ResourceNotFoundError:
        return
    found = _saving.blob_type(props)
    if found == wanted:
        return
    try:
        blob.delete_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)
    except ResourceNotFoundError:
        pass
    except HttpResponseError as err:
        if _saving.is_condition_failed(err) and _gone_or(blob, wanted):
            return
        raise _errors.cannot_replace(blob.container_name, blob.blob_name, found, err) from None


def _gone_or(blob: BlobClient, wanted: str) -> bool:
    """Whether ``blob`` is missing, or now a ``wanted`` blob."""
    try:
        return _saving.blob_type(blob.get_blob_properties()) == wanted
    except ResourceNotFoundError:
        return True


def _put_blocks(
    blob: BlobClient,
    reader: Any,
    overwrite: bool,
    counter: _progress.ProgressCounter,
    max_concurrency: int,
    slots: _throttle.Slots,
) -> tuple[dict[str, Any], Any]:
    """Stage blocks from ``max_concurrency`` threads, each request in one of ``slots`` (fewer at once while
    the account throttles); the reader (under a lock) cuts and hashes them.

    Any error (or Ctrl-C) stops every thread after its current block; nothing is committed then.
    Returns the commit's options and response.
    """
    lock = threading.Lock()
    failed = threading.Event()
    upload_id, staged = _saving.new_upload_id(), []

    def worker() -> None:
        try:
            while not failed.is_set():
                with lock:
                    block = reader.next_block()
                if block is None:
                    return
                index, _, data, crc = block
                del block  # hold one block per thread, not two, while the next is read
                with slots.slot() as hook:
                    blob.stage_block(
                        _saving.block_id(upload_id, index),
                        data,
                        headers=_saving.crc_headers(crc),
                        raw_response_hook=hook,
                    )
                staged.append(index)
                counter.add(len(data))
                del data
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_concurrency) as pool:
        jobs = [pool.submit(worker) for _ in range(max_concurrency)]
        try:
            for job in jobs:
                job.result()
        except BaseException:
            failed.set()
            raise
    commit = _saving.commit_kwargs(blob.blob_name, reader, upload_id, staged, overwrite)
    try:
        with slots.slot() as hook:
            return commit, blob.commit_block_list(**commit, raw_response_hook=hook)
    except HttpResponseError as err:
        if not _saving.may_be_own_write(err, overwrite):
            raise
        committed, _ = blob.get_block_list("committed")
        if not _saving.commit_landed(committed, commit):
            raise
        return commit, _saving.landed_response(blob.get_blob_properties())


def _put(
    blob: BlobClient, data: bytes, upload: dict[str, Any], overwrite: bool, slots: _throttle.Slots
) -> Any:
    """``upload_blob`` in one of ``slots``; with ``overwrite=False``, a refusal because the blob exists is
    checked against what was sent, so an earlier try of this very put (its answer lost) is not taken for
    another's blob."""
    try:
        with slots.slot() as hook:
            return blob.upload_blob(data, **upload, raw_response_hook=hook)
    except HttpResponseError as err:
        if not _saving.may_be_own_write(err, overwrite):
            raise
        props = blob.get_blob_properties()
        if not _saving.put_landed(props, len(data), upload):
            raise
        return _saving.landed_response(props)


def _follow_blob(
    container: ContainerClient, name: str, start: int, poll_interval: float, idle_timeout: float | None
) -> Iterator[bytes]:
    """The follow of the blob ``name`` (options checked now, not at the first ``next``)."""
    _follow.check_options(start, poll_interval, idle_timeout)
    options = dict(start=start, poll_interval=poll_interval, idle_timeout=idle_timeout)
    where = f" in container {container.container_name!r}"
    steps = _follow.follow_blob(name, clock=time.monotonic, where=where, **options)
    return _drive_follow(container, steps, name)


def _drive_follow(
    container: ContainerClient, steps: _follow.Follow, blob: str | None = None
) -> Iterator[Any]:
    """Run a follow (see :mod:`batchfiles._follow`): make its requests, sleep its sleeps, and yield what
    it hands out. A storage error it raises comes out as a batchfiles error."""
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
                time.sleep(item.seconds)
            elif isinstance(item, _follow.Request):
                try:
                    result = _follow_request(container, item)
                except Exception as exc:  # the follow decides: waited for, tried again, or raised
                    error = exc
            else:
                yield item
    finally:
        steps.close()


def _follow_request(container: ContainerClient, request: _follow.Request) -> Any:
    if isinstance(request, _follow.Listing):  # as a snapshot lists: parsed by batchfiles._listing
        pages = _listing.pages(container, request.prefix or None, snapshot.PAGE_SIZE)
        return [listed for page in pages for listed in page]
    blob = container.get_blob_client(request.blob)
    if isinstance(request, _follow.Probe):
        return blob.get_blob_properties()
    download = blob.download_blob(**request.kwargs)
    return download.readall(), download.properties


class TaskOutputStorage(TaskConstructors, _OutputStorage):
    """The outputs of one task: ``{task_id}/$Kind/{path}`` in the job's container.

    ``TaskOutputStorage(container_url_with_sas, task_id)``; or ``from_service(service, job_id, task_id)``,
    ``from_connection_string(conn_str, job_id, task_id)``, ``from_environment()`` (on a Batch node).
    """

    def follow(
        self,
        path: str,
        *,
        kind: KindLike = TaskOutputKind.TASK_LOG,
        start: int = 0,
        poll_interval: float = 1.0,
        idle_timeout: float | None = None,
    ) -> Iterator[bytes]:
        """The output at ``path`` as it is saved, like ``tail -f``: an iterator of ``bytes`` chunks, in
        order, every byte of the output exactly once.

        ``start`` is a byte offset (negative: from the end as it is now). Every ``poll_interval`` seconds
        it reads what is new: a ranged read from the last offset; an unchanged blob costs one small
        conditional request. It waits for an output not saved yet, and reads a tracked save's roll-over
        parts (``path.1``, ...) as one stream. It ends once it has read a blob its writer closed (tracked
        saves mark their blob on a clean close; a blob that is not an append blob is complete as it is),
        after ``idle_timeout`` seconds without new bytes (0: as soon as it has caught up), or when the
        caller stops. A blob replaced meanwhile (created again, or shorter than what was read) raises
        :class:`~batchfiles.errors.OutputReplacedError`; transient storage errors are retried.
        """
        return self._follow(kind, path, start, poll_interval, idle_timeout)


class JobOutputStorage(JobConstructors, _OutputStorage):
    """The job's own outputs: ``$Kind/{path}`` in the job's container.

    ``JobOutputStorage(container_url_with_sas)``; or ``from_service(service, job_id)``,
    ``from_connection_string(conn_str, job_id)``, ``from_environment()``.
    """

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
    ) -> Iterator[bytes]:
        """The job's output of ``kind`` at ``path`` as it is saved: see :meth:`TaskOutputStorage.follow`."""
        return self._follow(kind, path, start, poll_interval, idle_timeout)

    def task_ids(self) -> Iterator[str]:
        """The tasks of the job that have saved anything."""
        with storage_errors(self.container_name):
            for item in self._container.walk_blobs(delimiter="/"):
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
    ) -> Iterator[_follow.LogEvent]:
        """The logs of the job's tasks as they are saved, many at once, like ``docker compose logs -f``: an
        iterator of events. :class:`~batchfiles.LogData` holds bytes of one log (every byte once, in
        order); :class:`~batchfiles.LogRestarted` says a log was replaced (a task run again) and is read
        again from its start; :class:`~batchfiles.LogClosed` says a log was read to its close (with
        ``batchfiles run``'s exit code); :class:`~batchfiles.LogsPolled` ends each poll.

        ``task_ids``: only these tasks (None: every task, those that start later too); ``kind``: a task
        output kind (``TaskLog``); ``paths``: only these file paths. Each poll (every ``poll_interval``
        seconds) is one listing of the job, read as :meth:`snapshot` reads it (a log's roll-over parts are
        one log), then a ranged read of each log that grew: following 200 tasks is not 200 requests a
        poll. ``tail``: each log found by the first poll starts at its last ``tail`` lines.

        It ends after a :class:`~batchfiles.LogsPolled` whose ``ended`` is set: with ``task_ids``, once
        each task's logs (each of ``paths``, if given) are found and closed; after ``idle_timeout``
        seconds in which no log grew (``0``: once the logs as they are now were read); a whole job
        otherwise goes on until the caller stops. Throttling is waited out for as long as it lasts (with
        ``idle_timeout=0``, as long as a request waits), transient errors are retried, and bytes are
        handed out only once read. A blob that is not an output is told to ``on_invalid(blob_name,
        reason)`` once (by default a warning on the ``batchfiles`` logger). Bad arguments raise
        :class:`ValueError` or :class:`TypeError` at the call.
        """
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

    def snapshot(
        self, *, on_invalid: _types.OnInvalid | None = None, task_id: str | None = None
    ) -> snapshot.JobSnapshot:
        """The whole job from one flat listing of its container (5,000 blobs a request, with metadata):
        its own outputs, and each task's outputs by kind, a tracked log's parts folded into one, and its
        state (running, exited with a code, started, ended). Immutable; see :mod:`batchfiles.snapshot`.
        A blob that is not an output is skipped and told to ``on_invalid(blob_name, reason)`` (by default
        a warning on the ``batchfiles`` logger). ``task_id``: only that task's folder is listed (the
        snapshot then holds that task alone, if it saved anything)."""
        builder = snapshot.Builder(self.container_name, self._container.url, on_invalid)
        pieces = list(self._pieces(builder, _scope.snapshot_prefix(task_id)))
        return snapshot.assemble(self.container_name, pieces, builder.skipped)

    def iter_snapshot(
        self, *, on_invalid: _types.OnInvalid | None = None, task_id: str | None = None
    ) -> Iterator[snapshot.Piece]:
        """:meth:`snapshot`'s pieces as the listing's pages arrive: ``(None, outputs)`` for the job's own
        outputs, then ``(task_id, outputs)`` for each task once the listing has passed its folder (a
        flat listing holds a task's blobs together), in listing order. ``task_id``: as for
        :meth:`snapshot`."""
        prefix = _scope.snapshot_prefix(task_id)
        return self._pieces(snapshot.Builder(self.container_name, self._container.url, on_invalid), prefix)

    def _pieces(self, builder: snapshot.Builder, prefix: str = "") -> Iterator[snapshot.Piece]:
        """The builder's pieces as the listing's pages arrive (parsed by :mod:`batchfiles._listing`)."""
        with storage_errors(self.container_name):
            for page in _listing.pages(self._container, prefix or None, snapshot.PAGE_SIZE):
                for listed in page:
                    yield from builder.add(listed)
        yield from builder.finish()

    # --- cleaning up -----------------------------------------------------------------------------------

    def check_delete(self, *, container: bool = False) -> None:
        """Raise :class:`AuthenticationError`, without any request, when this storage's SAS shows that it
        may not delete: its permissions (``sp``) have no ``d``; or, for the container itself
        (``container``), it is a SAS for the container (``sr=c``, such as the task SAS of
        :func:`output_storage_container_url`, which may delete blobs but never its container) or an account
        SAS without the container resource type. Storage decides for a key, Azure AD or a stored access
        policy; its refusal is said as clearly. :meth:`delete` and :meth:`delete_container` check this
        first; call it to know before listing."""
        _deleting.check_permission(
            self._container.url, self._container.credential, self.container_name, container=container
        )

    def delete(
        self,
        outputs: Iterable[snapshot.OutputSnapshot],
        *,
        max_concurrency: int = _deleting.MAX_CONCURRENCY,
    ) -> int:
        """Delete exactly these outputs of this job's :meth:`snapshot` (or ``iter_snapshot``): every blob of
        each, a tracked log's parts included; returns the number of blobs deleted.

        Select them from the snapshot (by task, kind, path): a blob the snapshot did not call an output (a
        hostile or foreign name) can never be deleted this way, as each output's names are checked against
        the conventions and the container (:class:`ValueError` otherwise). Each delete is conditional on the
        ETag listed: a blob replaced or appended to since then (a live log still being written) is left, and
        the output's earlier blobs with it, so what is left is still an output; so is a live log that went on
        in a new part since it was listed. A blob already gone counts as deleted (a retried delete whose
        answer was lost finds it so). A blob with snapshots or a lease is never deleted: batchfiles says so
        and leaves it.

        ``max_concurrency`` outputs are deleted at once (each output's blobs one after another, its last
        part first), in the throttling limits shared with saves. Blobs refused for their own sake (changed,
        leased, with snapshots) are left while the rest is deleted, then :class:`DeleteError` says which
        (``error.failures``) and how many were deleted (``error.deleted``). Anything else (access refused,
        storage unreachable) stops the delete at once and is raised, saying how many blobs were deleted
        before it. A SAS that shows it may not delete is refused before any request (:meth:`check_delete`).
        """
        plans = _deleting.plan(outputs, self.container_name)
        _deleting.check_concurrency(max_concurrency)
        self.check_delete()
        tally = _deleting.Tally(plans)
        items, lock, stop = iter(plans), threading.Lock(), threading.Event()

        def worker() -> None:
            try:
                while not stop.is_set():
                    with lock:
                        output = next(items, None)
                    if output is None:
                        return
                    _delete_output(self._container, output, self._slots, tally, stop)
            except BaseException:
                stop.set()
                raise

        with ThreadPoolExecutor(max_concurrency) as pool:
            jobs = [pool.submit(worker) for _ in range(min(max_concurrency, len(plans)))]
            try:
                for job in jobs:
                    job.result()
            except BatchFilesError as err:
                raise tally.stopped(err) from None
            except BaseException:
                stop.set()
                raise
        return tally.result()

    def delete_container(self) -> None:
        """Delete the job's container and everything in it, outputs or not (storage removes its blobs in the
        background; the name cannot be used again for a while). A container already gone (or being
        deleted) counts as deleted. A leased container is left, and said so. Needs the account's
        credentials or an account SAS: a SAS for the container, such as the tasks', is refused before any
        request (:meth:`check_delete`)."""
        self.check_delete(container=True)
        with storage_errors(self.container_name):
            try:
                self._container.delete_container()
            except HttpResponseError as err:
                if not _deleting.container_gone(err):
                    raise _errors.cannot_delete(self.container_name, None, err) from None

    def download(
        self, output: snapshot.OutputSnapshot, path: PathLike, *, progress: Progress | None = None
    ) -> Path:
        """Download an output of this job's :meth:`snapshot` to ``path`` (folders are created), without
        asking for its properties first. One blob is read as :meth:`OutputFileReference.download_to_file`
        reads it, checked against its Content-MD5. A tracked save in parts (``output.parts``) becomes one
        file, its blobs read one after the other, each checked against its own Content-MD5 where it has one
        (a live log's append blobs have none), and each as listed (its ETag; but the growing last part of
        a log still open), so a log replaced since the snapshot is an error ("changed"), never parts of two
        versions joined. On any error no file is left at ``path``.
        ``progress(received, total)`` is called as bytes arrive."""
        output = snapshot.checked(output, "download")
        target = Path(path)
        if not output.parts:
            reference = OutputFileReference(
                _scope.snapshot_info(output),
                self._container.get_blob_client(output.blob_name),
                self._container,
            )
            return reference.download_to_file(target, progress=progress)
        target.parent.mkdir(parents=True, exist_ok=True)
        counter = _progress.ProgressCounter(output.size, progress)
        partial, file = _download.open_partial(target.parent)
        try:
            with file:
                for name, condition in zip(output.blob_names, _download.as_listed(output), strict=True):
                    with storage_errors(self.container_name, name):
                        blob = self._container.get_blob_client(name)
                        download = blob.download_blob(decompress=False, **condition)
                        check = _download.Md5Check(download, name)
                        for chunk in download.chunks():
                            check.update(chunk)
                            file.write(chunk)
                            counter.add(len(chunk))
                    check.verify()
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def open(self, output: snapshot.OutputSnapshot) -> io.BufferedReader:
        """An output of this job's :meth:`snapshot` as a readable binary stream, without asking for its
        properties first: its blob, or a tracked save's parts one after the other (``output.blob_names``),
        each verified against its own Content-MD5, where it has one, as the reading passes its end
        (:class:`IntegrityError` then). The first blob is asked for here (one gone since the snapshot:
        :class:`OutputNotFoundError`), each next part when the reading reaches it; the bytes are the blobs'
        as they are then (a live log may have grown since the snapshot)."""
        output = snapshot.checked(output, "open")
        parts = (_open_part(self._container, name) for name in output.parts)
        return io.BufferedReader(_VerifyingStream(*_open_part(self._container, output.blob_name), parts))


def _open_part(container: ContainerClient, name: str) -> _Part:
    """The download of the blob ``name`` (its first request sent), to be read in chunks and verified."""
    with storage_errors(container.container_name, name):
        download = container.get_blob_client(name).download_blob(decompress=False)
    guard = functools.partial(storage_errors, container.container_name, name)
    return download.chunks(), _download.Md5Check(download, name), guard
