"""The native hashing, block reading and tracking bindings, against hashlib and the file system."""

from __future__ import annotations

import array
import base64
import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from batchfiles import _native
from batchfiles._native import test_support
from hypothesis import given
from hypothesis import strategies as st

CHECK_CRC = 0xAE8B14860A799888  # CRC-64/NVME of b"123456789"
BS = 1024  # small block size: fast tests, same code paths
MiB = 1024 * 1024


def header_of(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(8, "little")).decode()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def read_all(reader: _native.BlockReader) -> list[tuple[int, int, bytes, str]]:
    blocks = []
    while (block := reader.next_block()) is not None:
        blocks.append(block)
    return blocks


def other_thread_runs_during(call: Callable[[], object]) -> bool:
    """Whether another Python thread runs while ``call`` does, i.e. ``call`` releases the GIL.

    Forced GIL switches are turned off (huge switch interval), so the counting thread only gets the
    GIL when the holder releases it; the counting thread releases it on every turn (``sleep(0)``).
    """
    count = 0
    stop = False

    def spin() -> None:
        nonlocal count
        while not stop:
            count += 1
            time.sleep(0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000)
    thread = threading.Thread(target=spin)
    thread.start()
    try:
        while count == 0:
            time.sleep(0.001)
        before = count
        call()
        return count > before
    finally:
        stop = True
        thread.join()
        sys.setswitchinterval(interval)


# --- layout -------------------------------------------------------------------------------------

TEST_ONLY = {"crc64", "validate_job_id", "tracker_stats"}


def test_test_only_bindings_live_apart():
    import batchfiles._native.test_support as imported

    assert imported is test_support is _native.test_support
    assert test_support.__name__ == "batchfiles._native.test_support"
    assert {name for name in dir(test_support) if not name.startswith("_")} == TEST_ONLY
    assert not TEST_ONLY & set(dir(_native))
    assert not hasattr(_native.Tracker, "stats")


def test_the_library_never_uses_the_test_only_bindings():
    package = Path(_native.__file__).parent
    sources = [p for p in package.rglob("*.py") if "test_support" in p.read_text()]
    assert sources == []


# --- hashing ------------------------------------------------------------------------------------


def test_crc64_check_value_and_header():
    assert test_support.crc64(b"123456789") == CHECK_CRC
    assert _native.crc64_header(b"123456789") == header_of(CHECK_CRC) == "iJh5CoYUi64="
    assert test_support.crc64(b"") == 0
    assert _native.crc64_header(b"") == "AAAAAAAAAAA="


def test_every_bytes_like_object_hashes_its_bytes():
    data = b"123456789"
    for obj in (data, bytearray(data), memoryview(data), memoryview(b"xx" + data)[2:]):
        assert test_support.crc64(obj) == CHECK_CRC
        assert _native.md5(obj) == hashlib.md5(data).digest()
    strided = memoryview(b"1x2x3x4x5x6x7x8x9x")[::2]  # not contiguous
    assert test_support.crc64(strided) == CHECK_CRC
    ints = array.array("i", [1, 2, 3])  # raw bytes, like hashlib
    assert _native.md5(ints) == hashlib.md5(ints).digest()


@pytest.mark.parametrize("bad", ["123", 123, None, [1, 2]])
def test_non_buffers_are_type_errors(bad):
    for function in (test_support.crc64, _native.crc64_header, _native.md5, _native.Md5().update):
        with pytest.raises(TypeError):
            function(bad)


@given(st.binary(max_size=300))
def test_md5_matches_hashlib(data):
    assert _native.md5(data) == hashlib.md5(data).digest()


def test_md5_matches_hashlib_on_10_mib():
    data = os.urandom(10 * MiB)
    assert _native.md5(data) == hashlib.md5(data).digest()
    assert _native.md5(bytearray(data)) == hashlib.md5(data).digest()


@given(st.binary(max_size=1000), st.lists(st.integers(0, 1000), max_size=8))
def test_md5_streaming_equals_one_shot(data, cuts):
    md5 = _native.Md5()
    start = 0
    for cut in sorted(cuts):
        md5.update(data[start:cut])
        start = max(start, cut)
    md5.update(memoryview(data)[start:])
    assert md5.digest() == _native.md5(data) == hashlib.md5(data).digest()


def test_md5_digest_does_not_reset():
    md5 = _native.Md5()
    assert md5.digest() == hashlib.md5().digest()
    md5.update(b"ab")
    assert md5.digest() == hashlib.md5(b"ab").digest()
    md5.update(bytearray(b"c"))
    assert md5.digest() == hashlib.md5(b"abc").digest()
    big = os.urandom(MiB)
    md5.update(big)
    assert md5.digest() == hashlib.md5(b"abc" + big).digest()


def test_gil_test_detects_a_call_holding_the_gil():
    assert not other_thread_runs_during(lambda: sum(range(3_000_000)))


def test_crc64_and_md5_release_the_gil_on_big_data():
    data = bytes(256 * MiB)
    assert other_thread_runs_during(lambda: test_support.crc64(data))
    assert other_thread_runs_during(lambda: _native.md5(data[: 64 * MiB]))


# --- BlockReader --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, BS - 1, BS, BS + 1, 3 * BS + 5])
def test_block_reader_returns_the_file_in_blocks(tmp_path, size):
    data = os.urandom(size)
    reader = _native.BlockReader(write(tmp_path / "f", data), BS)
    assert reader.size == size
    assert reader.md5() is None
    blocks = read_all(reader)

    assert b"".join(block[2] for block in blocks) == data
    for i, (index, offset, chunk, header) in enumerate(blocks):
        assert (index, offset) == (i, i * BS)
        assert len(chunk) == min(BS, size - offset)
        assert header == _native.crc64_header(chunk)
    assert len(blocks) == -(-size // BS)
    assert reader.md5() == hashlib.md5(data).digest()
    assert reader.bytes_read == size
    assert reader.next_block() is None


def test_block_reader_md5_is_known_with_the_last_block(tmp_path):
    data = os.urandom(2 * BS)
    reader = _native.BlockReader(write(tmp_path / "f", data), BS)
    reader.next_block()
    assert reader.md5() is None
    reader.next_block()
    assert reader.md5() == hashlib.md5(data).digest()


def test_block_reader_without_md5(tmp_path):
    reader = _native.BlockReader(str(write(tmp_path / "f", b"x" * (BS + 1))), BS, md5=False)
    assert len(read_all(reader)) == 2
    assert reader.md5() is None


def test_block_reader_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        _native.BlockReader(tmp_path / "missing", BS)
    assert missing.value.errno == 2
    assert missing.value.filename == str(tmp_path / "missing")
    with pytest.raises(IsADirectoryError):
        _native.BlockReader(tmp_path, BS)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_block_reader_refuses_a_fifo_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        _native.BlockReader(tmp_path / "fifo", BS)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anything")
def test_block_reader_permission_error(tmp_path):
    path = write(tmp_path / "secret", b"x")
    path.chmod(0)
    with pytest.raises(PermissionError):
        _native.BlockReader(path, BS)


@pytest.mark.parametrize("block_size", [0, -1, 4000 * MiB + 1])
def test_block_reader_bad_block_sizes(tmp_path, block_size):
    with pytest.raises(ValueError, match="block_size"):
        _native.BlockReader(write(tmp_path / "f", b"x"), block_size)


def test_block_reader_accepts_the_largest_block_size(tmp_path):
    reader = _native.BlockReader(write(tmp_path / "f", b"abc"), 4000 * MiB)
    assert read_all(reader)[0][2] == b"abc"


def test_a_file_that_shrinks_raises(tmp_path):
    path = write(tmp_path / "f", os.urandom(3 * BS + 5))
    reader = _native.BlockReader(path, BS)
    os.truncate(path, BS + 3)
    assert reader.next_block()[1] == 0
    with pytest.raises(OSError, match="file changed while being read"):
        reader.next_block()
    with pytest.raises(OSError, match="earlier read"):
        reader.next_block()
    assert reader.md5() is None
    assert reader.bytes_read == BS


@pytest.mark.parametrize("size", [0, 5, BS, 2 * BS])
def test_a_file_that_grows_raises_instead_of_ending(tmp_path, size):
    path = write(tmp_path / "f", os.urandom(size))
    reader = _native.BlockReader(path, BS)
    append(path, b"late")
    for _ in range(max(0, -(-size // BS) - 1)):
        reader.next_block()
    with pytest.raises(OSError, match="file changed while being read"):
        reader.next_block()  # the block that would end the file, or the end itself
    assert reader.md5() is None


def test_block_reader_from_many_threads_returns_each_block_once(tmp_path):
    data = os.urandom(64 * BS + 7)
    reader = _native.BlockReader(write(tmp_path / "f", data), BS)
    found: list[tuple[int, int, bytes, str]] = []

    def work() -> None:
        while (block := reader.next_block()) is not None:
            found.append(block)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found.sort()
    assert [block[0] for block in found] == list(range(65))
    assert b"".join(block[2] for block in found) == data
    assert reader.md5() == hashlib.md5(data).digest()


def test_block_reader_releases_the_gil(tmp_path):
    path = tmp_path / "big"
    with path.open("wb") as f:
        f.truncate(64 * MiB)
    reader = _native.BlockReader(path, 64 * MiB)
    assert other_thread_runs_during(reader.next_block)
    assert reader.md5() == hashlib.md5(bytes(64 * MiB)).digest()


# --- Tracker ------------------------------------------------------------------------------------


def test_tracker_drains_appends_once(tmp_path):
    path = write(tmp_path / "log", b"hello ")
    tracker = _native.Tracker(path)
    block, events, more = tracker.poll()
    assert block == (b"hello ", _native.crc64_header(b"hello "), 0)
    assert events == [("opened", 0)]
    assert more is False
    assert tracker.commit() == 6
    assert tracker.commit() == 0
    assert tracker.poll() == (None, [], False)

    append(path, b"world")
    block, events, _ = tracker.poll()
    assert (block[0], block[2], events) == (b"world", 6, [])
    assert tracker.offset == 6
    tracker.commit()
    assert tracker.offset == 11
    stats = test_support.tracker_stats(tracker)
    assert (stats["bytes_read"], stats["bytes_committed"]) == (11, 11)


def test_tracker_returns_an_uncommitted_block_again(tmp_path):
    path = write(tmp_path / "log", b"0123456789")
    tracker = _native.Tracker(str(path), max_block=4)
    first = tracker.poll()
    assert first[0][0] == b"0123"
    assert first[2] is True
    append(path, b"more")
    assert tracker.poll()[0] == first[0]
    assert tracker.offset == 0
    assert tracker.commit() == 4
    assert tracker.poll()[0][:1] == (b"4567",)


def test_tracker_min_bytes_holds_small_appends_back(tmp_path):
    path = write(tmp_path / "log", b"abc")
    tracker = _native.Tracker(path, max_block=8)
    assert tracker.poll(5) == (None, [("opened", 0)], False)
    append(path, b"de")
    assert tracker.poll(5)[0][0] == b"abcde"


def test_tracker_rotation_gives_the_old_tail_first(tmp_path):
    path = write(tmp_path / "log", b"old1\n")
    tracker = _native.Tracker(path)
    tracker.poll()
    tracker.commit()

    append(path, b"old2\n")
    path.rename(tmp_path / "log.1")
    write(path, b"new1\n")
    block, events, more = tracker.poll()
    assert (block[0], block[2], events, more) == (b"old2\n", 5, [("rotated", 5)], True)
    tracker.commit()
    block, events, more = tracker.poll()
    assert (block[0], block[2], events, more) == (b"new1\n", 0, [("opened", 0)], False)
    assert test_support.tracker_stats(tracker)["rotations"] == 1


def test_tracker_truncation_counts_lost_bytes(tmp_path):
    path = write(tmp_path / "log", b"0123456789")
    tracker = _native.Tracker(path, max_block=4)
    tracker.poll()
    tracker.commit()
    os.truncate(path, 0)
    append(path, b"xy")
    block, events, _ = tracker.poll()
    assert events == [("truncated", 6)]
    assert (block[0], block[2]) == (b"xy", 0)
    stats = test_support.tracker_stats(tracker)
    assert (stats["truncations"], stats["lost_bytes"]) == (1, 6)


def test_tracker_deleted_file_is_read_to_its_end(tmp_path):
    path = write(tmp_path / "log", b"abc")
    tracker = _native.Tracker(path)
    tracker.poll()
    tracker.commit()
    append(path, b"def")
    path.unlink()
    block, events, _ = tracker.poll()
    assert (block[0], events) == (b"def", [("deleted", 3)])
    tracker.commit()
    assert tracker.poll() == (None, [], False)
    with pytest.raises(FileNotFoundError):
        tracker.read_range(0, 1)


def test_tracker_waits_for_a_missing_path(tmp_path):
    path = tmp_path / "log"
    tracker = _native.Tracker(path)
    assert tracker.poll() == (None, [], False)
    assert tracker.offset == 0
    write(path, b"late")
    assert tracker.poll()[:2] == ((b"late", _native.crc64_header(b"late"), 0), [("opened", 0)])


def test_tracker_resumes_and_reads_ranges(tmp_path):
    path = write(tmp_path / "log", b"0123456789")
    tracker = _native.Tracker(path, start_offset=4)
    assert tracker.offset == 4
    assert tracker.read_range(0, 4) == b"0123"
    assert tracker.read_range(8, 100) == b"89"
    assert tracker.read_range(50, 5) == b""
    block, events, _ = tracker.poll()
    assert (block[0], block[2], events) == (b"456789", 4, [("opened", 4)])


def test_tracker_stats_keys(tmp_path):
    tracker = _native.Tracker(write(tmp_path / "log", b"x"))
    tracker.poll()
    stats = test_support.tracker_stats(tracker)
    assert list(stats) == [
        "bytes_read",
        "bytes_committed",
        "lost_bytes",
        "rotations",
        "truncations",
        "reads",
        "changes",
    ]
    assert stats["bytes_read"] == 1
    assert stats["reads"] >= 1
    assert stats["changes"] == tracker.changes == 0


def test_tracker_counts_changes_seen_and_hands_out_one_bytes_object_per_block(tmp_path):
    path = write(tmp_path / "log", b"there at the start\n")
    tracker = _native.Tracker(path, max_block=16)
    first = tracker.poll()[0][0]
    assert first == b"there at the sta"
    assert tracker.poll()[0][0] is first  # the very object, read once, until committed
    tracker.commit()
    assert tracker.poll()[0][0] == b"rt\n"
    tracker.commit()
    assert tracker.changes == 0
    with open(path, "ab") as file:
        file.write(b"more\n")
    assert tracker.poll(1 << 20) == (None, [], False)  # too little to cut: seen all the same
    assert tracker.changes == 1
    tracker.poll(1 << 20)
    assert tracker.changes == 1
    assert tracker.poll()[0][0] == b"more\n"


@pytest.mark.parametrize(
    "kwargs",
    [{"max_block": 0}, {"max_block": -1}, {"max_block": 100 * MiB + 1}, {"start_offset": -1}],
)
def test_tracker_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        _native.Tracker(tmp_path / "log", **kwargs)


def test_tracker_bad_call_arguments(tmp_path):
    tracker = _native.Tracker(write(tmp_path / "log", b"abc"))
    with pytest.raises(ValueError):
        tracker.poll(-1)
    with pytest.raises(ValueError):
        tracker.read_range(-1, 1)
    with pytest.raises(ValueError):
        tracker.read_range(0, -1)
    with pytest.raises(TypeError):
        tracker.poll("1")


def test_tracker_directory_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        _native.Tracker(tmp_path)
    path = tmp_path / "log"
    tracker = _native.Tracker(path)
    path.mkdir()
    with pytest.raises(OSError):
        tracker.poll()
    path.rmdir()
    write(path, b"ok")
    assert tracker.poll()[0][0] == b"ok"


def test_tracker_poll_releases_the_gil(tmp_path):
    path = tmp_path / "log"
    with path.open("wb") as f:
        f.truncate(100 * MiB)
    tracker = _native.Tracker(path, max_block=100 * MiB)
    assert other_thread_runs_during(tracker.poll)


def test_block_reader_knows_which_file_it_opened(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    st = os.stat(path)
    assert _native.BlockReader(path, 4).identity == (st.st_dev, st.st_ino)
