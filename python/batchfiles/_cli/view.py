"""``batchfiles view``: serve a page on 127.0.0.1 that shows a job's outputs, previews and live logs
(:mod:`batchfiles.view`, the ``view`` extra), and open it in the browser."""

from __future__ import annotations

import argparse
import asyncio
import threading
import webbrowser

from . import common, connect
from .common import EXIT_ERROR, EXIT_OK, info

NAME = "view"
SUMMARY = "look at a job's outputs, previews and live logs in the browser"
EPILOG = f"""\
Serves a page on http://127.0.0.1:PORT/ (this machine only), prints its URL and opens it in the browser.
The page shows the job's container, its outputs per kind and its own JobOutput/JobPreview files; every
task with its TaskPreview thumbnails, output counts and sizes, and its state as storage tells it: running
(a live log is open), exited with a code (`batchfiles run` records it on its logs; non-zero is marked), or
unknown. A task's view lists every output by kind, shows images, and tails its TaskLog files live. The page
updates itself: new tasks, previews and log lines appear without a reload.

Everything goes through the local server: no storage URL, SAS or key reaches the browser. Outputs are
served as downloads (images shown inline, never SVG), so a task's HTML or SVG never runs in the page.
Ctrl-C stops the server (exit 0). Needs the `view` extra: pip install 'batchfiles[view]'.

examples:
  batchfiles view render-42                      # opens the page in the browser
  batchfiles view render-42 --port 8080 --no-browser   # on a remote machine: ssh -L 8080:127.0.0.1:8080

{connect.STORAGE_HELP}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    connect.add_job_argument(parser)
    parser.add_argument(
        "--port", type=port_arg, default=0, metavar="N", help="the port (default 0: a free one)"
    )
    parser.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    connect.add_storage_options(parser)


def port_arg(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    try:
        from .. import view
    except ImportError as err:
        common.error(f"batchfiles view needs {err.name or 'aiohttp'}: pip install 'batchfiles[view]'")
        return EXIT_ERROR
    storage = connect.job_storage(args, args.job_id, interactive=True, aio=True)

    def ready(url: str) -> None:
        print(url, flush=True)
        info(f"serving job {args.job_id!r} ({storage.container_name}) on {url}; Ctrl-C stops")
        if not args.no_browser:  # not in the server's loop: a console browser (w3m, lynx) runs until it quits
            threading.Thread(target=_open_browser, args=(url,), daemon=True).start()

    try:
        asyncio.run(view.serve(storage, args.job_id, port=args.port, ready=ready))
    except KeyboardInterrupt:
        info("stopped")
    return EXIT_OK


def _open_browser(url: str) -> None:
    if not webbrowser.open(url):
        info("no browser found here: open the URL above")
