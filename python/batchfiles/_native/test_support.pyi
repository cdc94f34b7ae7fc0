"""Native bindings that only the tests and benchmarks call (the library never imports this module).

``data`` is any bytes-like object, as for :func:`batchfiles._native.md5`; from 64 KiB on, the CRC is
computed with the GIL released.
"""

from typing_extensions import Buffer

from . import Tracker

def crc64(data: Buffer) -> int:
    """CRC-64/NVME of ``data`` (the CRC Azure checks in ``x-ms-content-crc64``)."""

def validate_job_id(job_id: str) -> None:
    """Raises ValueError unless ``job_id`` is a Batch job id (1-128 of ``A-Za-z0-9-_:``), with the
    message :func:`batchfiles._native.container_name` gives for it."""

def tracker_stats(tracker: Tracker) -> dict[str, int]:
    """A tracker's running totals since it was made: ``bytes_read``, ``bytes_committed``,
    ``lost_bytes``, ``rotations``, ``truncations``, ``reads``."""
