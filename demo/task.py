"""A render task of the demo job: what a renderer run by `batchfiles run` on a Batch node would do.

    python demo/task.py FIRST LAST [--fail-at FRAME]

Renders frames FIRST..LAST into frames/ and their thumbnails into thumbs/, printing progress lines
(which `batchfiles run` saves live as the task's log). With --fail-at it writes crash-report.txt and
exits with code 3 at that frame, like a renderer that ran out of memory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from render import png, render, shrink


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=int)
    parser.add_argument("last", type=int)
    parser.add_argument("--fail-at", type=int)
    args = parser.parse_args()
    Path("frames").mkdir(exist_ok=True)
    Path("thumbs").mkdir(exist_ok=True)
    for frame in range(args.first, args.last + 1):
        print(f"rendering frame {frame}...", flush=True)
        if frame == args.fail_at:
            Path("crash-report.txt").write_text(f"frame {frame}: out of memory in the shading pass\n")
            print(f"error: frame {frame} failed, see crash-report.txt", file=sys.stderr, flush=True)
            return 3
        started = time.monotonic()
        rows = render(frame)
        Path(f"frames/frame_{frame:04d}.png").write_bytes(png(rows))
        Path(f"thumbs/frame_{frame:04d}.png").write_bytes(png(shrink(rows)))
        print(f"frame {frame} done in {time.monotonic() - started:.1f} s", flush=True)
    print("all frames rendered", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
