"""Loopback-only HTTP/1.1 fault-injection proxy for tests and benchmarks.

Sits between azure-storage-blob clients and Azurite (or any loopback HTTP/1.1 server) and, per request,
either forwards it untouched or injects one fault:

* ``reset``: reset the client connection (RST) without forwarding;
* ``status``: answer an Azure-style 500 ``InternalError`` or 503 ``ServerBusy`` without forwarding;
* ``delay``: wait ``delay_ms`` milliseconds, then forward;
* ``drop_response``: forward, read the whole response (the write is applied), then reset the client.

Faults come from rules (first match wins, optionally limited to ``times`` uses), otherwise from one seeded
random draw per request (reproducible when requests are sequential). Messages are buffered whole in memory
and ``Expect: 100-continue`` is not supported: fine for tests, not for multi-GiB bodies. Each client
connection gets its own upstream connection.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import random
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import formatdate

FAULTS = ("reset", "status", "delay", "drop_response")
_ERRORS = {  # status -> (reason phrase, x-ms-error-code, message)
    500: ("Internal Server Error", "InternalError", "The server encountered an internal error."),
    503: ("Service Unavailable", "ServerBusy", "The server is currently unable to receive requests."),
}
_MAX_LINE = 65536
_MAX_HEADERS = 256
_POLL_S = 0.05


class ProtocolError(ValueError):
    """Malformed or truncated HTTP message; the connection carrying it is dropped."""


@dataclass
class Request:
    """One client request, as seen by rule predicates (header names are lower-case)."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    head: bytes
    body: bytes


@dataclass
class Rule:
    """Inject ``fault`` into requests ``match`` accepts (None: all), at most ``times`` times (None: no cap).

    ``times`` counts down as the rule fires; ``delay_ms`` is for ``delay``, ``status`` (500, 503) for
    ``status``.
    """

    fault: str
    match: Callable[[Request], bool] | None = None
    times: int | None = None
    delay_ms: int = 100
    status: int = 503

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {FAULTS}")
        if self.status not in _ERRORS:
            raise ValueError(f"status must be one of {tuple(_ERRORS)}")


def _read_line(reader: io.BufferedReader) -> bytes:
    line = reader.readline(_MAX_LINE)
    if not line.endswith(b"\n"):
        raise ProtocolError("truncated or overlong line")
    return line


def _read_exact(reader: io.BufferedReader, n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise ProtocolError("truncated body")
    return data


def _read_head(reader: io.BufferedReader) -> tuple[bytes, list[str], dict[str, str]] | None:
    """Read a start line and headers: (raw bytes, start-line words, headers); None on EOF before any byte."""
    if not reader.peek(1):
        return None
    lines = [_read_line(reader)]
    while lines[-1] not in (b"\r\n", b"\n"):
        if len(lines) > _MAX_HEADERS:
            raise ProtocolError("too many headers")
        lines.append(_read_line(reader))
    headers: dict[str, str] = {}
    for line in lines[1:-1]:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line!r}")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return b"".join(lines), lines[0].decode("latin-1").split(), headers


def _read_chunked(reader: io.BufferedReader) -> bytes:
    """Read a chunked body verbatim (chunks, last chunk and trailers)."""
    parts = [_read_line(reader)]
    while (size := int(parts[-1].split(b";")[0], 16)) > 0:
        parts += [_read_exact(reader, size + 2), _read_line(reader)]
    parts.append(_read_line(reader))
    while parts[-1] not in (b"\r\n", b"\n"):
        parts.append(_read_line(reader))
    return b"".join(parts)


def _is_framed(headers: dict[str, str]) -> bool:
    return "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()


def _read_body(reader: io.BufferedReader, headers: dict[str, str]) -> bytes:
    """Read a Content-Length or chunked body verbatim; an unframed body runs to EOF (responses only)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(reader)
    if "content-length" in headers:
        return _read_exact(reader, int(headers["content-length"]))
    return reader.read()


def _read_request(reader: io.BufferedReader) -> Request | None:
    head = _read_head(reader)
    if head is None:
        return None
    raw, start, headers = head
    if len(start) != 3:
        raise ProtocolError(f"bad request line {start!r}")
    method, target, version = start
    path, _, query = target.partition("?")
    body = _read_body(reader, headers) if _is_framed(headers) else b""
    return Request(method, path, query, version, headers, raw, body)


def _wants_close(req: Request) -> bool:
    return req.version != "HTTP/1.1" or "close" in req.headers.get("connection", "").lower()


def _error_response(status: int, req: Request) -> bytes:
    """An Azure Storage style error response (XML body, ``x-ms-error-code``)."""
    reason, code, message = _ERRORS[status]
    request_id = uuid.uuid4()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}\nRequestId:{request_id}\nTime:{now}</Message></Error>"
    ).encode()
    if req.method == "HEAD":
        body = b""
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nContent-Type: application/xml\r\n"
        f"x-ms-error-code: {code}\r\nx-ms-request-id: {request_id}\r\nDate: {formatdate(usegmt=True)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _arm_reset(sock: socket.socket) -> None:
    """Make the next close() of ``sock`` send RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class FaultProxy:
    """Fault-injecting HTTP/1.1 proxy on ``127.0.0.1:<free port>`` in front of a loopback upstream.

    Runs on background threads from ``start()`` (or ``with``) until ``stop()`` or ``deadline_s`` seconds,
    whichever comes first; once stopped, no proxy thread is left running.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int | None = None,
        rules: Iterable[Rule] = (),
        random_faults: Mapping[str, float] | None = None,
        delay_ms: int = 100,
        deadline_s: float = 600.0,
        upstream_host: str = "127.0.0.1",
    ) -> None:
        if upstream_host != "localhost" and not ipaddress.ip_address(upstream_host).is_loopback:
            raise ValueError(f"upstream {upstream_host!r} is not loopback")
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._delay_ms = delay_ms
        self._deadline_s = deadline_s
        self._rng = random.Random(seed)
        self._lock = threading.RLock()  # reentrant: rule predicates may read ``counts``
        self._rules = list(rules)
        self._random: dict[str, float] = {}
        self._counts = dict.fromkeys(("requests", "forwarded", *FAULTS), 0)
        self._stopping = threading.Event()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._thread: threading.Thread | None = None
        self.set_random(random_faults or {})

    # -- public API -------------------------------------------------------------------------------------

    def url_for(self, account: str) -> str:
        """Blob endpoint URL for ``account`` through the proxy (Azurite path-style)."""
        return f"http://127.0.0.1:{self.port}/{account}"

    def add_rule(
        self,
        fault: str,
        match: Callable[[Request], bool] | None = None,
        times: int | None = None,
        *,
        delay_ms: int = 100,
        status: int = 503,
    ) -> Rule:
        """Append a rule (rules are tried in order, first match wins) and return it."""
        rule = Rule(fault, match, times, delay_ms, status)
        with self._lock:
            self._rules.append(rule)
        return rule

    def set_random(self, probabilities: Mapping[str, float]) -> None:
        """Set per-request probabilities of random faults, e.g. ``{"reset": 0.03, "status": 0.04}``."""
        unknown = set(probabilities) - set(FAULTS)
        if unknown or sum(probabilities.values()) > 1 or min(probabilities.values(), default=0) < 0:
            raise ValueError(f"bad random faults {dict(probabilities)!r}")
        with self._lock:
            self._random = dict(probabilities)

    def clear(self) -> None:
        """Remove all rules and random faults (the proxy becomes transparent); counters are kept."""
        with self._lock:
            self._rules.clear()
            self._random = {}

    @property
    def counts(self) -> dict[str, int]:
        """Snapshot of counters: ``requests``, ``forwarded`` and one per fault kind."""
        with self._lock:
            return dict(self._counts)

    @property
    def running(self) -> bool:
        """True between ``start()`` and the end of ``stop()`` or the deadline."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> FaultProxy:
        """Listen on a free loopback port (``.port``) and serve in the background; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy can only be started once")
        listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        listener.settimeout(_POLL_S)
        self.port = listener.getsockname()[1]
        deadline = time.monotonic() + self._deadline_s
        self._thread = threading.Thread(
            target=self._accept_loop, args=(listener, deadline), name="faultproxy-accept"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, abort every connection and wait for all proxy threads to finish (idempotent)."""
        self._stopping.set()
        self.join()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the proxy has stopped, by ``stop()`` or by its deadline."""
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, deadline: float) -> None:
        try:
            while not self._stopping.is_set() and time.monotonic() < deadline:
                try:
                    client, _ = listener.accept()
                    self._track(client)
                except TimeoutError:
                    continue
                except ConnectionAbortedError:
                    break
                thread = threading.Thread(target=self._serve, args=(client,), name="faultproxy-conn")
                thread.daemon = True
                thread.start()
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        finally:
            with self._lock:
                self._stopping.set()
                for sock in self._socks:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)  # wakes threads blocked on this socket
            listener.close()
            for thread in self._threads:
                thread.join()

    def _track(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._stopping.is_set():
                sock.close()
                raise ConnectionAbortedError("proxy is stopping")
            self._socks.add(sock)

    def _untrack(self, sock: socket.socket, reader: io.BufferedReader) -> None:
        with self._lock:
            self._socks.discard(sock)
        reader.close()  # the fd (and a pending RST) is only released once the makefile is closed
        sock.close()

    def _serve(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        upstream = _Upstream(self)
        try:
            while (req := _read_request(reader)) is not None and self._handle(client, upstream, req):
                pass
        except (OSError, ValueError):
            pass  # broken client or upstream: drop the connection
        finally:
            upstream.close()
            self._untrack(client, reader)

    def _choose(self, req: Request) -> Rule | None:
        """Pick the fault for ``req`` (first matching rule, else the random draw) and count it."""
        with self._lock:
            self._counts["requests"] += 1
            draw = self._rng.random()
            rule = next((r for r in self._rules if r.times != 0 and (r.match is None or r.match(req))), None)
            if rule is None:
                rule = self._random_rule(draw)
            elif rule.times is not None:
                rule.times -= 1
            if rule is not None:
                self._counts[rule.fault] += 1
            return rule

    def _random_rule(self, draw: float) -> Rule | None:
        for fault, probability in self._random.items():
            if draw < probability:
                status = self._rng.choice(tuple(_ERRORS)) if fault == "status" else 503
                return Rule(fault, delay_ms=self._delay_ms, status=status)
            draw -= probability
        return None

    def _handle(self, client: socket.socket, upstream: _Upstream, req: Request) -> bool:
        """Serve one request; False when the client connection must be closed."""
        rule = self._choose(req)
        if rule is not None:
            if rule.fault == "reset":
                _arm_reset(client)
                return False
            if rule.fault == "status":
                client.sendall(_error_response(rule.status, req))
                return not _wants_close(req)
            if rule.fault == "delay" and self._stopping.wait(rule.delay_ms / 1000):
                return False
        response, upstream_closed = upstream.exchange(req)
        with self._lock:
            self._counts["forwarded"] += 1
        if rule is not None and rule.fault == "drop_response":
            _arm_reset(client)
            return False
        client.sendall(response)
        return not (upstream_closed or _wants_close(req))


class _Upstream:
    """The upstream connection of one client connection, (re)connected lazily."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy
        self._conn: tuple[socket.socket, io.BufferedReader] | None = None

    def exchange(self, req: Request) -> tuple[bytes, bool]:
        """Send ``req``; return (raw response, whether upstream closed the connection)."""
        fresh = self._conn is None
        if self._conn is None:
            sock = socket.create_connection(self._proxy.upstream, timeout=10)
            self._proxy._track(sock)
            self._conn = sock, sock.makefile("rb")
        sock, reader = self._conn
        try:
            sock.sendall(req.head + req.body)
            head = _read_head(reader)
        except ConnectionError:
            head = None
        if head is None:  # upstream closed: retry once if it was an idle keep-alive connection
            self.close()
            if fresh:
                raise ProtocolError("upstream closed the connection without answering")
            return self.exchange(req)
        raw, start, headers = head
        if len(start) < 2:
            raise ProtocolError(f"bad status line {start!r}")
        status = int(start[1])
        bodyless = req.method == "HEAD" or status in (204, 304)
        body = b"" if bodyless else _read_body(reader, headers)
        closed = "close" in headers.get("connection", "").lower() or not (bodyless or _is_framed(headers))
        if closed:
            self.close()
        return raw + body, closed

    def close(self) -> None:
        if self._conn is not None:
            self._proxy._untrack(*self._conn)
            self._conn = None
