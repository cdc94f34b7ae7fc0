"""What a save sends and what storage's answers to it mean, for the sync and aio storages alike (no requests
here): the plan of a multi-file save (every blob name derived and collisions refused before anything is
sent), block sizes and ids, a file's or bytes' blocks, checksum headers and upload options; and whether a
refused write met a blob of another type or this upload's own earlier try that landed."""

from __future__ import annotations

import base64
import mimetypes
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from azure.storage.blob import BlobBlock, ContentSettings

from . import _native, _patterns, naming
from ._progress import ProgressCounter
from ._scope import Scope
from ._types import PathLike, Progress
from .kinds import KindLike

#: Files up to this size go up in one request; larger ones in blocks.
SINGLE_PUT_SIZE = 8 * 1024 * 1024

#: Default block size for large files (Azure allows up to 4,000 MiB per block).
BLOCK_SIZE = 8 * 1024 * 1024

MAX_BLOCK_SIZE = 4000 * 1024 * 1024

#: Parallel block uploads of one file: ``save``'s default, and the most a lone file of a multi-file save gets.
MAX_CONCURRENCY = 4


def content_type(path: str) -> str:
    """Content type from the file extension, so previews open in a browser."""
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed or "application/octet-stream"


def content_settings(name: str, md5: bytes | None) -> ContentSettings:
    return ContentSettings(content_type=content_type(name), content_md5=bytearray(md5) if md5 else None)


def md5_header(md5: bytes) -> dict[str, str]:
    """The per-request Content-MD5 header, which storage validates on arrival."""
    return {"Content-MD5": base64.b64encode(md5).decode()}


#: Azure's most blocks in a block blob.
MAX_BLOCKS = 50_000


def fit_block_size(size: int, block_size: int) -> int:
    """``block_size``, or more where a file of ``size`` bytes would need over 50,000 blocks."""
    return max(block_size, -(-size // MAX_BLOCKS))


def new_upload_id() -> str:
    """A prefix for the block ids of one upload, so two uploads of one blob can never mix their blocks."""
    return uuid.uuid4().hex[:12]


def block_id(upload_id: str, index: int) -> str:
    return base64.b64encode(f"{upload_id}-{index:010d}".encode()).decode()


def check_block_options(block_size: int, max_concurrency: int) -> None:
    if not isinstance(block_size, int) or not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise ValueError(f"block_size must be 1 to {MAX_BLOCK_SIZE} bytes, not {block_size!r}")
    if not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be a positive int, not {max_concurrency!r}")


def open_file(path: PathLike, block_size: int, md5: bool) -> Any:
    """A ``_native.BlockReader`` over the file at ``path``, once it is known to be the file checked (not
    a link swapped in since)."""
    reader = _native.BlockReader(path, block_size, md5=md5)
    _patterns.check_opened(path, reader.identity)
    return reader


class BytesBlocks:
    """Bytes in memory cut into blocks as ``_native.BlockReader`` cuts a file: ``next_block()`` gives
    ``(index, offset, data, crc64 header)`` in order, ``md5()`` the whole data's MD5 (computed up front)."""

    def __init__(self, data: bytes, block_size: int) -> None:
        self.size = len(data)
        self._data, self._block_size, self._index = memoryview(data), block_size, 0
        self._md5 = _native.md5(data)

    def next_block(self) -> tuple[int, int, bytes, str] | None:
        offset = self._index * self._block_size
        if offset >= self.size:
            return None
        chunk = bytes(self._data[offset : offset + self._block_size])
        self._index += 1
        return self._index - 1, offset, chunk, _native.crc64_header(chunk)

    def md5(self) -> bytes:
        return self._md5


def encode_text(text: str, encoding: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    return text.encode(encoding)


def check_bytes(data: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
    return bytes(data)


def name_files(
    files: Sequence[tuple[str, str]], name_of: Callable[[str], str]
) -> tuple[list[int], list[str]]:
    """Name every file before any is saved: (indexes of the files to save, problems).

    ``files`` are (local path, destination) pairs; ``name_of(destination)`` is the blob name (or any name
    unique in storage) and raises :class:`ValueError` for one that cannot be derived. The same file given
    twice under one name is kept once. Left out, and described in ``problems``: a file whose name cannot be
    derived, and every file of a name that two different files would share (so neither overwrites the other).
    """
    problems: list[str] = []
    by_name: dict[str, list[int]] = {}
    for index, (local, destination) in enumerate(files):
        try:
            name = name_of(destination)
        except UnicodeError:
            problems.append(f"cannot save {local!r}: its name is not valid UTF-8")
            continue
        except ValueError as err:
            problems.append(f"cannot save {local!r}: {err}")
            continue
        same = by_name.setdefault(name, [])
        if not any(same_file(files[other][0], local) for other in same):
            same.append(index)
    kept: list[int] = []
    for name, indexes in by_name.items():
        if len(indexes) == 1:
            kept.append(indexes[0])
            continue
        locals_ = [repr(files[i][0]) for i in indexes]
        both = "both" if len(locals_) == 2 else "all"
        problems.append(f"{', '.join(locals_[:-1])} and {locals_[-1]} would {both} be saved as {name!r}")
    return sorted(kept), problems


def same_file(a: str, b: str) -> bool:
    """Are ``a`` and ``b`` one file (the same path, or the same device and inode)?"""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def unique_names(files: Sequence[tuple[str, str]], name_of: Callable[[str], str]) -> list[tuple[str, str]]:
    """``files`` with repeats of one file dropped, once every name is derived and found unique; otherwise
    :class:`ValueError` naming the files (see :func:`name_files`), before anything is saved."""
    kept, problems = name_files(files, name_of)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(f"{problems[0]}{more}: nothing was saved")
    return [files[i] for i in kept]


def expand_many(
    scope: Scope, kind: KindLike, patterns: str | Iterable[str], base_dir: PathLike, max_concurrency: int
) -> list[tuple[str, str]]:
    """The files of a ``save_many``: (local path, path under the kind) of each match of the ``patterns``
    (:mod:`batchfiles._patterns`), once the kind and concurrency are checked (before the walk)."""
    check_block_options(BLOCK_SIZE, max_concurrency)
    scope.kind(kind)
    return _patterns.expand(patterns, base_dir)


def plan_files(
    scope: Scope,
    kind: KindLike,
    files: Iterable[tuple[PathLike, str]],
    max_concurrency: int,
    progress: Progress | None,
) -> tuple[list[tuple[str, str]], ProgressCounter]:
    """The files of a multi-file save ((local path, destination) pairs, each file once) and a progress
    counter over their total size.

    Checks the arguments and derives every blob name before returning: a name that cannot be derived or
    two files that would share a blob raise :class:`ValueError` (see :func:`unique_names`), so nothing is
    uploaded.
    """
    check_block_options(BLOCK_SIZE, max_concurrency)
    output_kind = scope.kind(kind)
    pairs = []
    for pair in files:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], str)):
            raise TypeError(f"files must hold (local path, destination) pairs, not {pair!r}")
        pairs.append((os.fspath(pair[0]), pair[1]))
    files = unique_names(pairs, lambda path: naming.blob_name(output_kind, path, scope.task_id))
    return files, ProgressCounter(sum(os.path.getsize(path) for path, _ in files), progress)


def blocks_per_file(files: int, max_concurrency: int) -> int:
    """Parallel block uploads of each file of a multi-file save: a lone file's blocks go up in parallel,
    as in ``save``; many files go up in parallel, one block at a time each."""
    return min(max_concurrency, MAX_CONCURRENCY) if files == 1 else 1


def single_put(blob_name: str, reader: Any, overwrite: bool) -> tuple[bytes, dict[str, Any]]:
    """(data, upload_blob keyword arguments) of a file small enough for one request.

    ``reader`` is a ``_native.BlockReader`` over the whole file; the request carries its Content-MD5.
    """
    block = reader.next_block()
    data = block[2] if block else b""
    if reader.next_block() is not None:
        raise OSError(f"the file saved as {blob_name!r} grew while being read")
    return data, upload_kwargs(blob_name, data, reader.md5(), overwrite)


def upload_kwargs(blob_name: str, data: bytes, md5: bytes | None, overwrite: bool) -> dict[str, Any]:
    """upload_blob options: content type, and the MD5 (of ``data`` if not given), stored with the blob and
    sent as the per-request Content-MD5 that storage validates."""
    md5 = md5 or _native.md5(data)
    return {
        "overwrite": overwrite,
        "content_settings": content_settings(blob_name, md5),
        "headers": md5_header(md5),
    }


def commit_kwargs(
    blob_name: str, reader: Any, upload_id: str, staged: list[int], overwrite: bool
) -> dict[str, Any]:
    """commit_block_list arguments for the blocks staged from ``reader``, in file order."""
    kwargs: dict[str, Any] = {
        "block_list": [BlobBlock(block_id(upload_id, i)) for i in sorted(staged)],
        "content_settings": content_settings(blob_name, reader.md5()),
    }
    if not overwrite:
        kwargs["if_none_match"] = "*"
    return kwargs


def crc_headers(crc: str) -> dict[str, str]:
    """The per-block CRC-64/NVME header that storage validates."""
    return {"x-ms-content-crc64": crc}


# --- a write refused because the blob exists: another's, or this upload's own earlier try? -----------------

#: Error codes of a write with ``overwrite=False`` refused because the blob exists.
_EXISTS_CODES = frozenset({"BlobAlreadyExists", "ConditionNotMet"})


def is_other_type(err: Exception) -> bool:
    """Whether storage refused a write because the blob is of another type (409 ``InvalidBlobType``: the
    service never changes a blob's type in place, e.g. a block blob saved over a live log's append blob)."""
    code = getattr(err, "error_code", None)
    return str(getattr(code, "value", code)) == "InvalidBlobType"


def is_condition_failed(err: Exception) -> bool:
    """Whether a conditional request was refused with 412 (the blob changed, or is gone: Azurite answers
    412 where the service answers 404 for a conditional request on a missing blob)."""
    return getattr(err, "status_code", None) == 412


def blob_type(props: Any) -> str:
    """A blob's type as text (``BlockBlob``, ``AppendBlob``, ``PageBlob``)."""
    return str(getattr(props.blob_type, "value", props.blob_type))


def may_be_own_write(err: Exception, overwrite: bool) -> bool:
    """Whether a write refused for an existing blob may be this upload's own earlier try, which landed while
    its answer was lost (the SDK then retries into its own blob): worth comparing the blob with what was sent.

    Only with ``overwrite=False``, where the save checked first that no blob was there.
    """
    code = getattr(err, "error_code", None)
    return not overwrite and str(getattr(code, "value", code)) in _EXISTS_CODES


def put_landed(props: Any, size: int, upload: dict[str, Any]) -> bool:
    """Whether the blob (its properties) holds what a single put with ``upload`` options sent."""
    stored = props.content_settings.content_md5 if props.content_settings else None
    sent = upload["content_settings"].content_md5
    return props.size == size and bool(stored) and bool(sent) and bytes(stored) == bytes(sent)


def commit_landed(committed: Sequence[Any], commit: dict[str, Any]) -> bool:
    """Whether the blob's committed blocks are exactly those of ``commit`` (their ids are this upload's)."""
    return [block.id for block in committed] == [block.id for block in commit["block_list"]]


def landed_response(props: Any) -> dict[str, Any]:
    """What an upload's response tells, from the properties of a blob found to hold it."""
    return {"etag": props.etag, "last_modified": props.last_modified}
