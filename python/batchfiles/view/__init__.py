"""``batchfiles view``: a job's outputs, previews and live logs in the browser, served on 127.0.0.1 by a
small aiohttp server over :mod:`batchfiles.aio` (the ``view`` extra: ``pip install 'batchfiles[view]'``).

The page (``static/``: plain HTML, CSS and JavaScript, no build step, nothing from a CDN) reads the JSON API
of :mod:`._server` and never sees a storage URL: outputs and logs come through the server.
"""

from ._server import Viewer, serve

__all__ = ["Viewer", "serve"]
