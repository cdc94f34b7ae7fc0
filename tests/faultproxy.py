"""Loopback-only HTTP/1.1 fault-injection proxy for tests and benchmarks.

Sits between azure-storage-blob clients and Azurite (or any loopback HTTP/1.1 server) and, per request,
either forwards it untouched or injects one fault:

* ``reset``: reset the client connection (RST) without forwarding;
* ``status``: answer an Azure-style 500 ``InternalError``, 503 ``ServerBusy`` (or, by a rule, 429
  ``TooManyRequests``) without forwarding, with a ``Retry-After`` if the rule has one;
* ``delay``: wait ``delay_ms`` milliseconds, then forward;
* ``drop_response``: forward, read the whole response (the write is applied), then reset the client.

Faults come from rules (first match wins, optionally limited to ``times`` uses), otherwise from one seeded
random draw per request (reproducible when requests are sequential). Messages are buffered whole in memory
and ``Expect: 100-continue`` is not supported: fine for tests, not for multi-GiB bodies. Each client
connection gets its own upstream connection.

Throttling (:class:`Throttle`): a token bucket for the whole account, in requests per second and/or MiB per
second, checked before any fault. A request beyond it is answered as Azure answers at its scalability
targets, ``503 ServerBusy`` with ``Retry-After`` (or, for a share of them, ``500 OperationTimedOut``),
after its whole body has been read, so the client sees an answer, not a reset. The proxy counts requests,
throttled answers, forwarded requests and body bytes, also per time slot (:meth:`FaultProxy.timeline`),
so a test can check the request rate over time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import ipaddress
import math
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
#: Counted per time slot (:meth:`FaultProxy.timeline`).
TIMELINE = ("requests", "forwarded", "throttled", "bytes_up", "bytes_down")
#: Counters (:attr:`FaultProxy.counts`).
COUNTS = (
    *TIMELINE[:2],
    *FAULTS,
    "throttled",
    "server_busy",
    "timed_out",
    "bytes_up",
    "bytes_down",
    "bytes_throttled",
    "first_attempts",
    "first_attempts_throttled",
    "retries",
)
_ERRORS = {  # status -> (reason phrase, x-ms-error-code, message)
    500: ("Internal Server Error", "InternalError", "The server encountered an internal error."),
    503: ("Service Unavailable", "ServerBusy", "The server is currently unable to receive requests."),
    429: ("Too Many Requests", "TooManyRequests", "Too many requests."),
}
#: The statuses of random ``status`` faults.
_RANDOM_STATUSES = (500, 503)
#: Throttled answers: status -> (reason phrase, x-ms-error-code, message), as Azure words them.
_THROTTLED = {
    503: ("Service Unavailable", "ServerBusy", "The server is busy."),
    500: (
        "Internal Server Error",
        "OperationTimedOut",
        "Operation could not be completed within the specified time.",
    ),
}
MIB = 1 << 20
_MAX_PENDING = 100_000  # throttled requests remembered to tell a retry from a first attempt
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

    ``times`` counts down as the rule fires; ``delay_ms`` is for ``delay``, ``status`` (500, 503, 429) and
    ``retry_after_s`` (a ``Retry-After`` header; None: none) for ``status``.
    """

    fault: str
    match: Callable[[Request], bool] | None = None
    times: int | None = None
    delay_ms: int = 100
    status: int = 503
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {FAULTS}")
        if self.status not in _ERRORS:
            raise ValueError(f"status must be one of {tuple(_ERRORS)}")
        if self.retry_after_s is not None and not (
            math.isfinite(self.retry_after_s) and self.retry_after_s >= 0
        ):
            raise ValueError(f"retry_after_s must be a finite number >= 0, not {self.retry_after_s!r}")


def _positive(name: str, value: float | None, *, minimum: float = 0.0) -> None:
    if value is not None and not (math.isfinite(value) and value > minimum):
        raise ValueError(f"{name} must be a finite number > {minimum:g}, not {value!r}")


@dataclass(frozen=True)
class Throttle:
    """A token bucket for the whole account: ``requests_per_s`` and/or ``mib_per_s`` (None: no limit).

    The request bucket holds ``burst_requests`` tokens (default: one second's worth, at least 1) and a
    request takes one. The byte bucket holds ``burst_mib`` MiB (default: one second's worth) and may go
    into debt: a request is let through while it is not in debt, then its body's bytes are taken, and
    after forwarding the response body's, so bodies larger than the burst still pass, at the rate on
    average. A request finding either bucket short is refused with ``503 ServerBusy`` and ``Retry-After:
    retry_after_s`` (None: no header; fractions are for scaled-down tests, Azure sends whole seconds), or
    with ``500 OperationTimedOut`` (no ``Retry-After``) for a ``timeout_share`` of the refusals (a seeded
    draw). A refused request takes no tokens.
    """

    requests_per_s: float | None = None
    mib_per_s: float | None = None
    burst_requests: float | None = None
    burst_mib: float | None = None
    retry_after_s: float | None = 1.0
    timeout_share: float = 0.0

    def __post_init__(self) -> None:
        _positive("requests_per_s", self.requests_per_s)
        _positive("mib_per_s", self.mib_per_s)
        _positive("burst_requests", self.burst_requests, minimum=1.0 - 1e-9)
        _positive("burst_mib", self.burst_mib)
        if self.retry_after_s is not None and not (
            math.isfinite(self.retry_after_s) and self.retry_after_s >= 0
        ):
            raise ValueError(
                f"retry_after_s must be a finite number >= 0 or None, not {self.retry_after_s!r}"
            )
        if not 0 <= self.timeout_share <= 1:
            raise ValueError(f"timeout_share must be within [0, 1], not {self.timeout_share!r}")


class _Bucket:
    """Tokens refilled at ``rate`` per second up to ``capacity``, starting full."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens, self._at = capacity, now

    def refill(self, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now
        return self.tokens


class _Buckets:
    """The buckets of one :class:`Throttle`; callers hold the proxy's lock."""

    def __init__(self, throttle: Throttle, now: float) -> None:
        self.throttle = throttle
        self.requests = self.bytes = None
        if throttle.requests_per_s is not None:
            burst = throttle.burst_requests or max(1.0, throttle.requests_per_s)
            self.requests = _Bucket(throttle.requests_per_s, burst, now)
        if throttle.mib_per_s is not None:
            burst = (throttle.burst_mib or throttle.mib_per_s) * MIB
            self.bytes = _Bucket(throttle.mib_per_s * MIB, burst, now)

    def admit(self, body_bytes: int, now: float) -> bool:
        """Take a request's tokens if both buckets allow it; False (nothing taken) otherwise."""
        if self.requests is not None and self.requests.refill(now) < 1:
            return False
        if self.bytes is not None and self.bytes.refill(now) <= 0:
            return False
        if self.requests is not None:
            self.requests.tokens -= 1
        self.charge(body_bytes, now)
        return True

    def charge(self, body_bytes: int, now: float) -> None:
        if self.bytes is not None:
            self.bytes.refill(now)
            self.bytes.tokens -= body_bytes


def _attempt_key(req: Request) -> bytes:
    """What a retry of ``req`` repeats (method, target, conditions, body), to tell it from a first attempt.

    azure-core sends every attempt with a fresh date, signature and client request id, so those are left
    out; two identical requests in flight at once (rare for writes) count as one operation.
    """
    digest = hashlib.blake2b(digest_size=16)
    for part in (req.method, req.path, req.query):
        digest.update(part.encode("latin-1") + b"\0")
    for name in ("x-ms-blob-condition-appendpos", "if-match", "if-none-match", "x-ms-range", "range"):
        digest.update(req.headers.get(name, "").encode("latin-1") + b"\0")
    digest.update(req.body)
    return digest.digest()


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


def _error_response(
    status: int, req: Request, error: tuple[str, str, str] | None = None, extra_headers: str = ""
) -> bytes:
    """An Azure Storage style error response (XML body, ``x-ms-error-code``); ``error`` is (reason phrase,
    code, message), by default the one of ``status``; ``extra_headers`` are "Name: value\\r\\n" lines."""
    reason, code, message = error or _ERRORS[status]
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
        f"x-ms-error-code: {code}\r\nx-ms-request-id: {request_id}\r\nDate: {formatdate(usegmt=True)}\r\n"
        f"{extra_headers}\r\n"
    )
    return head.encode("latin-1") + body


def _arm_reset(sock: socket.socket) -> None:
    """Make the next close() of ``sock`` send RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class FaultProxy:
    """Fault-injecting HTTP/1.1 proxy on ``127.0.0.1:<free port>`` in front of a loopback upstream.

    Runs on background threads from ``start()`` (or ``with``) until ``stop()`` or ``deadline_s`` seconds,
    whichever comes first; once stopped, no proxy thread is left running. ``throttle`` limits the account
    (see :class:`Throttle`); ``slot_s`` is the time resolution of :meth:`timeline`.
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
        throttle: Throttle | None = None,
        slot_s: float = 0.1,
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
        self._counts = dict.fromkeys(COUNTS, 0)
        _positive("slot_s", slot_s)
        self._slot_s = slot_s
        self._t0 = time.monotonic()
        self._slots: dict[int, list[int]] = {}  # slot -> counts of TIMELINE
        self._buckets: _Buckets | None = None
        self._pending: set[bytes] = set()  # attempt keys of throttled requests not served since
        self._stopping = threading.Event()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._thread: threading.Thread | None = None
        self.set_random(random_faults or {})
        self.set_throttle(throttle)

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
        retry_after_s: float | None = None,
    ) -> Rule:
        """Append a rule (rules are tried in order, first match wins) and return it."""
        rule = Rule(fault, match, times, delay_ms, status, retry_after_s)
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

    def set_throttle(self, throttle: Throttle | None) -> None:
        """Limit the account by ``throttle`` from now on, with full buckets (None: no limit)."""
        with self._lock:
            self._buckets = None if throttle is None else _Buckets(throttle, time.monotonic())
            self._pending.clear()

    @property
    def throttle(self) -> Throttle | None:
        """The throttle in force, if any."""
        with self._lock:
            return None if self._buckets is None else self._buckets.throttle

    @property
    def counts(self) -> dict[str, int]:
        """Snapshot of counters (see ``COUNTS``): ``requests`` received; ``forwarded`` upstream; one per fault
        kind; ``throttled`` answers, of which ``server_busy`` (503) and ``timed_out`` (500); body bytes
        ``bytes_up`` (requests forwarded), ``bytes_down`` (responses forwarded), ``bytes_throttled``
        (requests refused); and, while throttling, ``retries`` (requests repeating one refused earlier and
        not served since), ``first_attempts`` (the others) and ``first_attempts_throttled``."""
        with self._lock:
            return dict(self._counts)

    def timeline(self, bucket_s: float = 1.0) -> list[dict[str, float]]:
        """Counts per ``bucket_s`` seconds (a whole number of ``slot_s``) since ``start()``, up to the
        last busy slot: ``{"t": start of the bucket in s, "requests", "forwarded", "throttled",
        "bytes_up", "bytes_down"}``. A request is counted when it arrives (``requests``, ``throttled``) and
        again when upstream has answered it (``forwarded`` and the bytes), so ``forwarded / bucket_s`` is
        the served request rate and ``requests / bucket_s`` the rate the account is asked for."""
        per = max(1, round(bucket_s / self._slot_s))
        with self._lock:
            slots = {k: list(v) for k, v in self._slots.items()}
        if not slots:
            return []
        buckets = [[0] * len(TIMELINE) for _ in range(max(slots) // per + 1)]
        for slot, values in slots.items():
            for i, value in enumerate(values):
                buckets[slot // per][i] += value
        width = per * self._slot_s
        return [
            {"t": round(n * width, 6), **dict(zip(TIMELINE, b, strict=True))} for n, b in enumerate(buckets)
        ]

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
        with self._lock:
            self._t0 = time.monotonic()
            self._slots.clear()
        deadline = self._t0 + self._deadline_s
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

    def _tally(self, now: float, **counts: int) -> None:
        """Add ``counts`` to the counters and to the time slot of ``now`` (lock held)."""
        values = self._slots.setdefault(int((now - self._t0) / self._slot_s), [0] * len(TIMELINE))
        for name, n in counts.items():
            self._counts[name] += n
            if name in TIMELINE:
                values[TIMELINE.index(name)] += n

    def _throttled(self, req: Request) -> bytes | None:
        """Count ``req``; when the throttle refuses it, the answer to send instead."""
        key = _attempt_key(req) if self._buckets is not None else None
        with self._lock:
            now = time.monotonic()
            self._tally(now, requests=1)
            buckets = self._buckets
            if buckets is None or key is None:
                return None
            retry = key in self._pending
            self._tally(now, **({"retries": 1} if retry else {"first_attempts": 1}))
            if buckets.admit(len(req.body), now):
                self._pending.discard(key)
                return None
            if len(self._pending) >= _MAX_PENDING:
                self._pending.clear()
            self._pending.add(key)
            throttle = buckets.throttle
            timed_out = throttle.timeout_share > 0 and self._rng.random() < throttle.timeout_share
            first = {} if retry else {"first_attempts_throttled": 1}
            kind = {"timed_out": 1} if timed_out else {"server_busy": 1}
            self._tally(now, throttled=1, bytes_throttled=len(req.body), **first, **kind)
        if timed_out:
            return _error_response(500, req, _THROTTLED[500])
        header = "" if throttle.retry_after_s is None else f"Retry-After: {throttle.retry_after_s:g}\r\n"
        return _error_response(503, req, _THROTTLED[503], header)

    def _choose(self, req: Request) -> Rule | None:
        """Pick the fault for ``req`` (first matching rule, else the random draw) and count it."""
        with self._lock:
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
                status = self._rng.choice(_RANDOM_STATUSES) if fault == "status" else 503
                return Rule(fault, delay_ms=self._delay_ms, status=status)
            draw -= probability
        return None

    def _handle(self, client: socket.socket, upstream: _Upstream, req: Request) -> bool:
        """Serve one request; False when the client connection must be closed."""
        busy = self._throttled(req)
        if busy is not None:
            client.sendall(busy)
            return not _wants_close(req)
        rule = self._choose(req)
        if rule is not None:
            if rule.fault == "reset":
                _arm_reset(client)
                return False
            if rule.fault == "status":
                after = "" if rule.retry_after_s is None else f"Retry-After: {rule.retry_after_s:g}\r\n"
                client.sendall(_error_response(rule.status, req, extra_headers=after))
                return not _wants_close(req)
            if rule.fault == "delay" and self._stopping.wait(rule.delay_ms / 1000):
                return False
        response, body_bytes, upstream_closed = upstream.exchange(req)
        with self._lock:
            now = time.monotonic()
            self._tally(now, forwarded=1, bytes_up=len(req.body), bytes_down=body_bytes)
            if self._buckets is not None:
                self._buckets.charge(body_bytes, now)
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

    def exchange(self, req: Request) -> tuple[bytes, int, bool]:
        """Send ``req``; return (raw response, its body's length, whether upstream closed the connection)."""
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
        return raw + body, len(body), closed

    def close(self) -> None:
        if self._conn is not None:
            self._proxy._untrack(*self._conn)
            self._conn = None
