"""Smoke test of a built wheel's Rust extension on its own platform (`make dist-all` runs it for the aarch64
wheel under qemu, with Debian's arm64 CPython): loads `_native` from an unpacked wheel, without the rest of
the package or its dependencies, and checks hashes, names, a file read in blocks and a tracked rotation."""

import importlib.util
import os
import platform
import sys
import tempfile
from pathlib import Path
from types import ModuleType


def load(wheel_dir: str) -> ModuleType:
    """The `batchfiles._native` extension module of the wheel unpacked in `wheel_dir`."""
    found = sorted(Path(wheel_dir, "batchfiles").glob("_native*.so")) + sorted(
        Path(wheel_dir, "batchfiles").glob("_native*.pyd")
    )
    if len(found) != 1:
        raise SystemExit(f"{wheel_dir}: expected one batchfiles/_native extension, found {found}")
    spec = importlib.util.spec_from_file_location("batchfiles._native", found[0])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(native: ModuleType) -> None:
    """Known answers, a file in blocks, and a tracker following a rotation."""
    assert native.md5(b"abc").hex() == "900150983cd24fb0d6963f7d28e17f72"
    assert native.crc64_header(b"123456789") == "iJh5CoYUi64="  # CRC-64/NVME check value, little-endian
    assert native.blob_name("TaskOutput", "frames/a.png", "t1") == "t1/$TaskOutput/frames/a.png"
    assert native.container_name("Render-42") == "job-render-42"

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.bin")
        data = bytes(range(256)) * 40
        Path(path).write_bytes(data)
        reader = native.BlockReader(path, 4096)
        stat = os.stat(path)
        assert reader.identity == (stat.st_dev, stat.st_ino), (reader.identity, stat)
        blocks = []
        while (block := reader.next_block()) is not None:
            _, offset, chunk, crc = block
            assert crc == native.crc64_header(chunk) and chunk == data[offset : offset + len(chunk)]
            blocks.append(chunk)
        assert b"".join(blocks) == data and reader.md5() == native.md5(data)

        log = os.path.join(tmp, "log")
        Path(log).write_bytes(b"old\n")
        tracker = native.Tracker(log)
        block, events, _ = tracker.poll()
        assert block[0] == b"old\n" and events == [("opened", 0)], (block, events)
        tracker.commit()
        os.rename(log, log + ".1")
        Path(log).write_bytes(b"new\n")
        seen = []
        while True:
            block, events, _ = tracker.poll()
            seen += events
            if block is None:
                break
            assert block[0] == b"new\n"
            tracker.commit()
        assert seen == [("rotated", 0), ("opened", 0)], seen


if __name__ == "__main__":
    native = load(sys.argv[1])
    check(native)
    print(f"smoke test of {native.__file__} ({platform.machine()}, Python {platform.python_version()}): ok")
