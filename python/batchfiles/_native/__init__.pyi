"""The native core of batchfiles (Rust). Use the documented wrappers in batchfiles.naming instead.

Long work runs with the GIL released. The classes are safe to share between threads: calls on one
object run one at a time, a waiting thread not holding the GIL.

This module holds what the library calls. Bindings that only the tests and benchmarks call live in
the submodule :mod:`batchfiles._native.test_support` (``from batchfiles._native import test_support``).

The extension is one file, ``_native.abi3.so``; these stubs sit beside it as a stub package
(``_native/__init__.pyi``, ``_native/test_support.pyi``) so that type checkers see the submodule. The
folder holds no ``__init__.py``, so Python still imports the extension.
"""

import os
from collections.abc import Sequence
from typing import final

from typing_extensions import Buffer

from . import test_support as test_support

__version__: str
"""The version of Cargo.toml the extension was built from (``batchfiles.__version__``)."""

# Naming. Each raises ValueError naming the offending input, TypeError for a wrong argument type.

def container_name(job_id: str) -> str:
    """The container of a job's outputs: ``job-{id}``, or ``job-{prefix}-{sha1}`` when needed."""

def container_names(job_ids: Sequence[str]) -> list[str]:
    """:func:`container_name` of many ids, with the GIL released; errors name the bad index."""

def blob_prefix(kind: str, task_id: str | None = None) -> str:
    """The prefix of every blob of a kind: ``"$JobOutput"``, or ``"t1/$TaskLog"`` for task ``t1``."""

def blob_name(kind: str, path: str, task_id: str | None = None) -> str:
    """The blob name of a relative ``path`` saved as ``kind``: ``"t1/$TaskOutput/frames/1.png"``."""

def blob_names(kind: str, paths: Sequence[str], task_id: str | None = None) -> list[str]:
    """:func:`blob_name` of many paths, with the GIL released; errors name the bad index."""

def destination_path(relative_path: str) -> str:
    """The blob-relative path a local relative path is saved under (``a\\..\\b/./c`` → ``b/c``)."""

def file_path(blob_name: str) -> str:
    """The path of a blob under its kind: strips ``{task}/$Kind/`` or ``$Kind/``."""

def parse_output_name(blob_name: str, task_id: str | None = None) -> tuple[str, str]:
    """``(kind, file_path)`` of an output blob: ``{task_id}/$Kind/{path}`` of a task, ``$Kind/{path}`` of
    the job, the path in normal form (:func:`path_problem`): ``("TaskLog", "a/b.txt")``. The kind has no
    ``$``; ``task_id`` is compared, not validated. ValueError otherwise, whose text is the reason alone
    (``"it is not under t1/"``, ``"its file path has a '..' segment"``)."""

def path_problem(path: str) -> str | None:
    """Why ``path`` is not a file path in the conventions' normal form (``destination_path(p) == p``), or
    None if it is: ``"is empty"``, ``"has a control character"``, ``"has a '\\'"``, ``"is absolute"``,
    ``"has a '..' segment"``, ``"has a '.' segment"`` or ``"has an empty segment"``, the first that
    applies."""

def validate_task_id(task_id: str) -> None:
    """Raises ValueError unless ``task_id`` is a Batch task id (1-64 of ``A-Za-z0-9-_``)."""

def validate_kind(kind: str) -> None:
    """Raises ValueError unless ``kind`` is the text of an output kind (built-in or custom)."""

# Hashing. ``data`` is any bytes-like object: bytes is read in place; others (bytearray,
# memoryview, mmap, array, ...) are copied first, so they may be changed by other threads safely.
# From 64 KiB on, the hashing runs with the GIL released.

def md5(data: Buffer) -> bytes:
    """The 16-byte MD5 digest of ``data`` (the ``Content-MD5`` of a blob)."""

def crc64_header(data: Buffer) -> str:
    """The ``x-ms-content-crc64`` header of ``data``: base64 of its CRC-64/NVME's 8 little-endian bytes
    (what storage checks on Put Block and Append Block)."""

@final
class Md5:
    """Streaming MD5, for instance over a download: :meth:`update` with each chunk, then :meth:`digest`."""

    def __init__(self) -> None:
        """An MD5 over no bytes yet."""

    def update(self, data: Buffer) -> None:
        """Feeds ``data``."""

    def digest(self) -> bytes:
        """The 16-byte digest of everything fed so far; further updates may follow (no reset)."""

@final
class BlockReader:
    """Reads a regular file in blocks for Put Block: each block with its CRC-64 header, and the
    whole file's MD5. The file read and the hashing run with the GIL released.

    The file's size is taken at open. If the file turns out shorter or longer than that, reading
    raises :class:`OSError` ("file changed while being read") and no further block is returned,
    so a partial upload is never presented as complete. After any error every later
    :meth:`next_block` raises too. Threads may share a reader: each call gets the next block.

    Raises :class:`OSError` subclasses with ``errno`` and ``filename`` set when the file cannot be
    opened (:class:`FileNotFoundError`, :class:`PermissionError`, :class:`IsADirectoryError`, ...),
    :class:`OSError` for a FIFO or device, and :class:`ValueError` unless
    ``1 <= block_size <= 4000 MiB``.
    """

    def __init__(self, path: str | os.PathLike[str], block_size: int, *, md5: bool = True) -> None:
        """Opens ``path``; with ``md5``, the whole file's MD5 is computed along the way."""

    @property
    def size(self) -> int:
        """The file's size when it was opened."""

    @property
    def identity(self) -> tuple[int, int] | None:
        """(device, inode) of the file opened (Unix; None elsewhere): which file is read, whatever its path
        leads to by now."""

    @property
    def bytes_read(self) -> int:
        """Bytes returned in blocks so far."""

    def next_block(self) -> tuple[int, int, bytes, str] | None:
        """``(index, offset, data, crc64_header)`` of the next block, or None after the last one.

        Every block has ``block_size`` bytes except a shorter last one; an empty file has none.
        """

    def md5(self) -> bytes | None:
        """The whole file's 16-byte MD5 once the last block was returned (for an empty file: once
        :meth:`next_block` returned None); None before that, after an error, or with ``md5=False``."""

@final
class Tracker:
    """Follows a growing file like ``tail -F`` and cuts its new bytes into append blocks, exactly
    once: :meth:`poll` returns the pending block, the same one until :meth:`commit`.

    The file at ``path`` (if any) is opened now and read from ``start_offset`` (bytes already
    saved); a missing path is waited for. Blocks hold at most ``max_block`` bytes
    (1 to 100 MiB, else :class:`ValueError`). :meth:`poll` and :meth:`read_range` do file I/O with
    the GIL released. I/O errors raise :class:`OSError` (subclasses with ``errno`` where the OS
    gave one); a directory or other non-regular file at the path raises :class:`OSError`.
    Calls from several threads run one at a time.
    """

    def __init__(self, path: str | os.PathLike[str], start_offset: int = 0, max_block: int = 4194304) -> None:
        """Follows ``path``, resuming at ``start_offset``, cutting blocks of up to ``max_block`` bytes."""

    def poll(self, min_bytes: int = 0) -> tuple[tuple[bytes, str, int] | None, list[tuple[str, int]], bool]:
        """Looks at the path and the open files; returns ``(block, events, more)``.

        ``block`` is ``(data, crc64_header, file_offset)`` or None. A new block is cut only when
        at least ``min_bytes`` (capped at ``max_block``) are unread, or the file being read is
        finished (rotated or deleted); 0 flushes whatever is unread. ``events``, oldest first, are
        ``("opened", offset)``, ``("rotated", unread)``, ``("deleted", unread)``,
        ``("truncated", lost)`` and ``("skipped", lost)``; each is reported once. ``more``: once
        the block is committed, the next poll with the same ``min_bytes`` has a block ready.
        """

    def commit(self) -> int:
        """Marks the pending block as saved and returns its length (0 when none was pending)."""

    def read_range(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` of the file being read (fewer at its end), e.g. to
        compare with what was saved before a restart. :class:`FileNotFoundError` when none is open."""

    @property
    def changes(self) -> int:
        """Changes seen since the tracker was created, counted by polls: a file that grew, shrank or was
        rewritten, or a new file at the path (the file found at the start is none)."""

    @property
    def offset(self) -> int:
        """Committed bytes of the file being read: the ``start_offset`` to resume with (0 if none)."""
