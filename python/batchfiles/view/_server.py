"""The local web server of ``batchfiles view`` (aiohttp, over :mod:`batchfiles.aio`): the page and its
static files, the JSON API, outputs streamed through it, and logs tailed live as Server-Sent Events.

It reads the job through the library's public API only: ``snapshot()`` (what is an output, its parts, each
task's state), ``open()`` (an output's bytes, verified) and ``follow()`` (a live log).

Safety: it listens on 127.0.0.1 only and answers only requests whose ``Host`` is ``127.0.0.1:PORT`` or
``localhost:PORT`` (no DNS rebinding) and none a browser marks as sent by another site (``Sec-Fetch-Site``);
storage URLs, SAS tokens and keys never leave it (errors are redacted by :mod:`batchfiles._errors`); every
response has ``nosniff`` and a strict Content-Security-Policy; outputs are served only if the job's listing
has them, images (never SVG) inline, everything else as an attachment, sandboxed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import signal
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from azure.core.exceptions import AzureError

from .. import naming
from ..aio import JobOutputStorage
from ..errors import (
    BatchFilesError,
    ContainerNotFoundError,
    OutputNotFoundError,
    OutputReplacedError,
    describe,
    first_line,
    redact,
)
from ..kinds import OutputKind
from ..snapshot import OutputSnapshot
from . import _model

logger = logging.getLogger("batchfiles")

#: The page's policy: its own scripts, styles and images only; no frames, forms, plugins or inline script.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Outputs: inert and in a sandbox (an opaque origin) even if opened on their own.
BLOB_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox; frame-ancestors 'none'"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/view.js": ("view.js", "text/javascript; charset=utf-8"),
    "/static/view.css": ("view.css", "text/css; charset=utf-8"),
}
#: A listing of the container serves every request within this many seconds of it.
REFRESH = 1.5
#: The task list's pages hold at most this many tasks.
MAX_PAGE = 500
#: A log's live view starts at most this many bytes before its end.
TAIL_BYTES = 256 * 1024
#: A live log's bytes read from storage ahead of what the page took: at most this many chunks of
#: :data:`batchfiles._follow.CHUNK` wait in its queue (the next read waits for room: backpressure).
QUEUED_CHUNKS = 1
#: The most bytes of a log in one event (a chunk read from storage is sent as several).
EVENT_BYTES = 64 * 1024
#: Seconds between keep-alive comments of an idle event stream (a closed page is noticed then).
HEARTBEAT = 5.0
#: The longest request line and header the server reads: an output's URL may be long (a blob name has up to
#: 1,024 characters, each up to 12 bytes once percent-encoded), and aiohttp's default (8,190) is not enough.
MAX_LINE = 64 * 1024


class BadRequest(ValueError):
    """A request with a bad task id, kind, path or parameter: 400 with the reason."""


class Viewer:
    """The server's state: the job's storage, the view of its last snapshot, the open event streams."""

    def __init__(self, storage: JobOutputStorage, job_id: str, *, poll_interval: float = 0.5) -> None:
        self.storage, self.job_id, self.poll_interval = storage, job_id, poll_interval
        self.port = 0
        self._view: _model.View | None = None
        self._listed_at = -REFRESH
        self._lock = asyncio.Lock()
        self._streams: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Future[Any]] = set()
        self.failure: str | None = None  # why the last listing failed (the one before is shown)
        self._static = {
            route: ((resources.files(__package__) / "static" / name).read_bytes(), content_type)
            for route, (name, content_type) in STATIC.items()
        }

    # --- storage ----------------------------------------------------------------------------------------

    async def view(self) -> _model.View:
        """The job's view. The first is awaited; after it, one older than :data:`REFRESH` is served while
        a new listing runs in the background (one at a time), so no request waits for a listing."""
        if self._view is None:
            async with self._lock:
                if self._view is None:
                    await self._list()
        elif time.monotonic() - self._listed_at >= REFRESH and not self._lock.locked():
            task = asyncio.ensure_future(self._refresh())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        assert self._view is not None
        return self._view

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._listed_at < REFRESH:
                return
            try:
                await self._list()
            except Exception as exc:  # the last snapshot stays, and the page says why; tried again later
                self._listed_at = time.monotonic()
                self.failure = describe(exc)
                logger.warning("view: listing the job failed: %s", self.failure)

    async def _list(self) -> None:
        """A new view: the library's snapshot (its pages parsed and the snapshot built in a worker thread),
        then the view's rows and summary, in a worker thread too: requests are answered meanwhile."""
        listed = datetime.now(timezone.utc)
        job = await self.storage.snapshot(on_invalid=_not_shown)
        self._view = await asyncio.to_thread(_model.view, job, listed)
        self._listed_at, self.failure = time.monotonic(), None

    async def _size_now(self, output: OutputSnapshot) -> int:
        """The bytes of ``output`` (its blob and a tracked save's parts) as storage has them now: one
        listing of its task's folder (0: gone)."""
        job = await self.storage.snapshot(on_invalid=_not_shown, task_id=output.task_id)
        now = job.find(output.task_id, output.kind, output.file_path)
        return 0 if now is None else now.size

    async def _output(self, task: str | None, kind: str, path: str) -> OutputSnapshot:
        """The output named in a URL; it must be in the job's listing (names checked first)."""
        kind, path = _kind_arg(kind), _path_arg(path)
        if task is not None:
            _task_arg(task)
        output = (await self.view()).find(task, kind, path)
        if output is None:
            whose = "the job" if task is None else f"task {task!r}"
            raise OutputNotFoundError(f"{whose} has no {kind} output {path!r}")
        return output

    def _scoped(self, task: str | None) -> Any:
        return self.storage if task is None else self.storage.task(task)

    # --- the application --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.on_response_prepare.append(_secure)
        app.on_shutdown.append(self._close_streams)
        for route in STATIC:
            app.router.add_get(route, self._static_file)
        app.router.add_get("/favicon.ico", _no_content)
        app.router.add_get("/api/job", self._job)
        app.router.add_get("/api/tasks", self._tasks)
        app.router.add_get("/api/tasks/{task}", self._task)
        app.router.add_get("/api/log/{task}/{kind}/{path:.+}", self._log)
        app.router.add_get("/blob/job/{kind}/{path:.+}", self._blob)
        app.router.add_get("/blob/task/{task}/{kind}/{path:.+}", self._blob)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        """The Host check, and every error as a short JSON answer, redacted."""
        if request.headers.get("Host", "") not in allowed_hosts(self.port):
            return _error(421, "this server answers only http://127.0.0.1:PORT/ (Host header refused)")
        if request.headers.get("Sec-Fetch-Site", "none") not in ("same-origin", "none"):
            # another site's page (an <img>, a no-cors fetch, an EventSource) cannot read the answer, but
            # would still make this server read the job's blobs from storage, as often as it likes
            return _error(403, "this server answers only its own page (cross-site request refused)")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(exc.status, exc.reason)
        except BadRequest as exc:
            return _error(400, str(exc))
        except (OutputNotFoundError, ContainerNotFoundError) as exc:
            return _error(404, describe(exc))
        except (BatchFilesError, AzureError, OSError) as exc:
            return _error(502, describe(exc))
        except Exception as exc:
            logger.warning("view: unexpected %s: %s", type(exc).__name__, first_line(exc))
            return _error(500, f"unexpected {type(exc).__name__}: {first_line(exc)}")

    async def _static_file(self, request: web.Request) -> web.Response:
        body, content_type = self._static[request.path]
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _job(self, request: web.Request) -> web.Response:
        return _json({**(await self.view()).summary(self.job_id), "failure": self.failure})

    async def _tasks(self, request: web.Request) -> web.Response:
        offset = _int_arg(request, "offset", 0, 0, 10**9)
        limit = _int_arg(request, "limit", 100, 1, MAX_PAGE)
        wanted = request.query.get("state", "all")
        if wanted not in _model.FILTERS:
            raise BadRequest(f"state must be one of {', '.join(_model.FILTERS)}")
        return _json((await self.view()).page(offset, limit, wanted))

    async def _task(self, request: web.Request) -> web.Response:
        task_id = _task_arg(request.match_info["task"])
        detail = (await self.view()).task(task_id)
        if detail is None:
            raise OutputNotFoundError(f"task {task_id!r} has no outputs in job {self.job_id!r}")
        return _json(detail)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        """An output's bytes, read from storage through the library (MD5-checked to the end)."""
        task = request.match_info.get("task")
        output = await self._output(task, request.match_info["kind"], request.match_info["path"])
        image = _model.image_type(output.file_path)
        headers = {"Content-Security-Policy": BLOB_CSP}
        if image:
            headers["Content-Type"] = image
        else:
            name = output.file_path.rpartition("/")[2]
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
        # its first blob asked for before the answer: a failure now is an error answer; a tracked save's
        # parts are read one after the other, each verified at its end
        reader = await self.storage.open(output)
        response = web.StreamResponse(headers=headers)
        try:
            async with reader:
                await response.prepare(request)
                while chunk := await reader.read(1024 * 1024):
                    await response.write(chunk)
        except (BatchFilesError, AzureError) as exc:  # too late for an error answer: cut it short
            logger.warning("view: %s stopped: %s", output.file_path, describe(exc))
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

    async def _log(self, request: web.Request) -> web.StreamResponse:
        """A log as Server-Sent Events: ``start`` (its offset), data (text, JSON-encoded, ``id`` the byte
        offset after it, so a reconnecting page goes on where it was), ``reset`` (replaced: it starts
        again), then ``end`` (its writer closed it) or ``failed``."""
        task = request.match_info["task"]
        output = await self._output(task, request.match_info["kind"], request.match_info["path"])
        start = max(0, output.size - TAIL_BYTES)
        last = request.headers.get("Last-Event-ID", "")
        replaced = False
        if _decimal(last) and len(last) < 16:
            # Beyond what the listing has (up to REFRESH seconds old): the log grew since, or the page read
            # a log since replaced by a shorter one (a task run again, a server restarted). Storage says
            # which: a log only grows, so one shorter now than the page's offset is another one; then from
            # the tail again, and the page is told to start over.
            if int(last) > output.size:
                size = await self._size_now(output)
                replaced = int(last) > size
                start = max(0, size - TAIL_BYTES) if replaced else int(last)
            else:
                start = int(last)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        current = asyncio.current_task()
        assert current is not None
        self._streams.add(current)
        try:
            if replaced:
                await _event(response, "reset", "{}", event_id=start)
            await self._stream_log(response, output, start)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the page went away, or the server stops
        finally:
            self._streams.discard(current)
        return response

    async def _stream_log(self, response: web.StreamResponse, output: OutputSnapshot, start: int) -> None:
        storage = self._scoped(output.task_id)
        await _event(response, "start", json.dumps({"offset": start}))
        while True:
            # bounded: the follow reads on only once the page took the bytes before (a stalled page holds
            # the server to a few chunks, not the log's size)
            queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=QUEUED_CHUNKS)
            follow = storage.follow(
                output.file_path, kind=output.kind, start=start, poll_interval=self.poll_interval
            )
            pump = asyncio.ensure_future(_pump(follow, queue))
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            offset = start
            try:
                while True:
                    try:
                        what, item = await asyncio.wait_for(queue.get(), HEARTBEAT)
                    except asyncio.TimeoutError:
                        await response.write(b": keep-alive\n\n")
                        continue
                    if what == "data":
                        for at in range(0, len(item), EVENT_BYTES):  # each write waits for the page
                            piece = item[at : at + EVENT_BYTES]
                            offset += len(piece)
                            text = decoder.decode(piece)
                            pending = len(decoder.getstate()[0])
                            if text:
                                await _event(response, None, json.dumps(text), event_id=offset - pending)
                        continue
                    break
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            rest = decoder.decode(b"", final=True)  # a character cut at the end: its bytes, replaced
            if rest and what != "reset":
                await _event(response, None, json.dumps(rest), event_id=offset)
            if what == "reset":
                start = 0
                await _event(response, "reset", "{}", event_id=0)  # a reconnect goes on in the new one
                continue
            if what == "end":
                await _event(response, "end", "{}")
            else:
                await _event(response, "failed", json.dumps(item))
            return

    async def _close_streams(self, app: web.Application) -> None:
        for task in list(self._streams):
            task.cancel()


async def _pump(follow: Any, queue: asyncio.Queue[tuple[str, Any]]) -> None:
    """Hands a follow's chunks to ``queue``, then how it ended: ``end``, ``reset`` (replaced) or
    ``failed`` (a redacted line)."""
    try:
        async for chunk in follow:
            await queue.put(("data", chunk))
        await queue.put(("end", None))
    except OutputReplacedError:
        await queue.put(("reset", None))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await queue.put(("failed", describe(exc)))


async def _event(
    response: web.StreamResponse, event: str | None, data: str, event_id: int | None = None
) -> None:
    lines = ([f"event: {event}"] if event else []) + ([f"id: {event_id}"] if event_id is not None else [])
    await response.write(("\n".join([*lines, f"data: {data}"]) + "\n\n").encode())


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    """The headers of every response, errors included (an output's own policy is kept)."""
    _secure_headers(response)


def _secure_headers(response: web.StreamResponse) -> None:
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers.setdefault("Content-Security-Policy", PAGE_CSP)
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers.setdefault("Cache-Control", "no-store")


async def _no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data), content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    response = _json({"error": redact(message)})
    response.set_status(status)
    return response


def allowed_hosts(port: int) -> set[str]:
    """The ``Host`` headers the server answers (a browser leaves out port 80, HTTP's default)."""
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
    return hosts | {"127.0.0.1", "localhost"} if port == 80 else hosts


def _not_shown(blob_name: str, reason: str) -> None:
    """A blob that is not an output: counted in the summary (``skipped``), never served, not logged (the
    job is listed again and again)."""


def _task_arg(text: str) -> str:
    try:
        naming.blob_prefix("TaskOutput", text)  # checks the task id
    except ValueError as err:
        raise BadRequest(first_line(err)) from None
    return text


def _kind_arg(text: str) -> str:
    try:
        return str(OutputKind(text))
    except ValueError as err:
        raise BadRequest(first_line(err)) from None


def _path_arg(text: str) -> str:
    """An output's path in the conventions' normal form (``destination_path(p) == p``: no ``.``, ``..`` or
    empty segments, no ``\\``), as every output of a snapshot has."""
    try:
        normal = naming.destination_path(text)
    except ValueError as err:
        raise BadRequest(f"{text!r} is not the path of an output: {first_line(err)}") from None
    if normal != text:
        raise BadRequest(f"{text!r} is not the path of an output (not in normal form: {normal!r})")
    return text


def _decimal(text: str) -> bool:
    """ASCII digits only (``"²".isdigit()`` is true, and ``int("²")`` fails)."""
    return text.isascii() and text.isdigit()


def _int_arg(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not _decimal(text) or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be a number from {low} to {high}")
    return int(text)


# --- running it ---------------------------------------------------------------------------------------------


class _Handler(RequestHandler):
    """aiohttp's connection handler, but its own error answers (a request it cannot parse: 400, before any
    handler or ``on_response_prepare``; a handler that failed outside the middleware) are this server's:
    short JSON with the headers of every answer, never the request's bytes echoed as text."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it (one line); raises if too late
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        why = "the request could not be read" if status < 500 else "the server failed"
        response = _error(status, f"{why} ({status} {phrase})")
        _secure_headers(response)
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    """An :class:`~aiohttp.web.AppRunner` whose connections use :class:`_Handler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # aiohttp has no option for its error answers; same state, one method
        return server


class _OneLineLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's own error log (a malformed request, a handler that failed outside the middleware) as one
    redacted warning line, never a traceback in the terminal."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else None
        why = " ".join(str(error).split())[:200] if error is not None else ""
        text = str(msg) % args if args else str(msg)
        self.logger.warning("view: %s", redact(f"{text}: {why}" if why else text))


async def serve(
    storage: JobOutputStorage,
    job_id: str,
    *,
    port: int = 0,
    ready: Callable[[str], None] | None = None,
    poll_interval: float = 0.5,
) -> None:
    """Serve the page of ``job_id`` on 127.0.0.1:``port`` (0: a free port) until cancelled or SIGTERM;
    ``ready(url)`` once it listens. The job's container is listed first: a missing one is an error then.
    ``storage`` is closed at the end."""
    async with storage:
        viewer = Viewer(storage, job_id, poll_interval=poll_interval)
        await viewer.view()
        runner = _Runner(
            viewer.app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            max_line_size=MAX_LINE,
            max_field_size=MAX_LINE,
            logger=_OneLineLogger(logging.getLogger("aiohttp.server"), {}),
        )
        await runner.setup()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            site = web.TCPSite(runner, "127.0.0.1", port)
            await site.start()
            viewer.port = runner.addresses[0][1]
            if ready is not None:
                ready(f"http://127.0.0.1:{viewer.port}/")
            await stop.wait()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGTERM)
            await runner.cleanup()
