"""A tiny renderer for the demo: Mandelbrot frames as real PNG files, with the standard library only.

python demo/render.py frame FRAME OUT.png THUMB.png   # render one frame and its thumbnail
python demo/render.py sheet OUT.png THUMB.png...      # a contact sheet of thumbnails
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

WIDTH, HEIGHT, THUMB = 320, 200, 4  # thumbnails are 1/4 of the frame in each direction

Pixels = list[bytearray]  # rows of RGB bytes


def render(frame: int, width: int = WIDTH, height: int = HEIGHT) -> Pixels:
    """Frame ``frame`` of a slow zoom into the Mandelbrot set."""
    zoom = 1.5**frame
    cx, cy = -0.743643887, 0.131825904
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            c = complex(
                cx + (x - width / 2) * 3.0 / (width * zoom), cy + (y - height / 2) * 2.0 / (height * zoom)
            )
            z, n = 0j, 0
            while abs(z) <= 2 and n < 60:
                z, n = z * z + c, n + 1
            row += bytes((n * 4 % 256, n * 9 % 256, (255 - n * 4) % 256)) if n < 60 else b"\0\0\0"
        rows.append(row)
    return rows


def shrink(rows: Pixels, factor: int = THUMB) -> Pixels:
    """Every ``factor``-th pixel of every ``factor``-th row."""
    return [bytearray(b for x in range(0, len(r), 3 * factor) for b in r[x : x + 3]) for r in rows[::factor]]


def sheet(thumbs: list[Pixels], columns: int = 4) -> Pixels:
    """Thumbnails side by side, ``columns`` to a row (black where a row is short)."""
    height, width = len(thumbs[0]), len(thumbs[0][0])
    rows: Pixels = []
    for start in range(0, len(thumbs), columns):
        group = thumbs[start : start + columns]
        for y in range(height):
            rows.append(bytearray(b"".join(t[y] for t in group).ljust(width * columns, b"\0")))
    return rows


def png(rows: Pixels) -> bytes:
    """An 8-bit RGB PNG of ``rows``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", len(rows[0]) // 3, len(rows), 8, 2, 0, 0, 0)
    raw = b"".join(b"\0" + bytes(r) for r in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def read_png(path: Path) -> Pixels:
    """The rows of a PNG written by :func:`png` (filter type 0 only)."""
    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw, stride = zlib.decompress(idat), 1 + 3 * width
    return [bytearray(raw[y * stride + 1 : (y + 1) * stride]) for y in range(height)]


def main(argv: list[str]) -> int:
    if argv[:1] == ["frame"] and len(argv) == 4:
        rows = render(int(argv[1]))
        Path(argv[2]).write_bytes(png(rows))
        Path(argv[3]).write_bytes(png(shrink(rows)))
        return 0
    if argv[:1] == ["sheet"] and len(argv) >= 3:
        Path(argv[1]).write_bytes(png(sheet([read_png(Path(p)) for p in argv[2:]])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
