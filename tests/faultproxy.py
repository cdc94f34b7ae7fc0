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

Strict mode (``strict=`` the upstream account's connection string): the proxy answers as the Azure Blob
service does where Azurite is lenient (see :class:`_Strict` for the rules and their sources, and
/work/shared/DESIGN.md "Azurite is more lenient than the real service"): a Put Blob that would change a
blob's type, metadata over 8 KiB or with a name that is no C# identifier, an Append Block over 4 MiB are
refused; path segments ending in dots are stored without them; a ranged GET past the end of a blob and an
expired SAS get the service's answers; throttled answers carry no ``Retry-After``. Refusals and rewrites are
counted in ``counts["strict"]`` (per rule in :attr:`FaultProxy.strict_hits`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import ipaddress
import math
import os
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import formatdate
from urllib.parse import parse_qsl, unquote, urlsplit

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy  # the SDK's signer

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
    "strict",
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
#: The strict test pass (``BATCHFILES_TEST_STRICT=1``, see tests/conftest.py): every proxy then throttles as
#: the blob service does, with no ``Retry-After`` (strict rule 5), unless told otherwise.
STRICT_TEST_PASS = os.environ.get("BATCHFILES_TEST_STRICT") == "1"
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
class Response:
    """One upstream response: status, headers (names lower-case), raw head and body, and whether upstream
    closed the connection after it."""

    status: int
    headers: dict[str, str]
    head: bytes
    body: bytes
    closed: bool


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
    status: int,
    req: Request,
    error: tuple[str, str, str] | None = None,
    extra_headers: str = "",
    extra_xml: str = "",
) -> bytes:
    """An Azure Storage style error response (XML body, ``x-ms-error-code``); ``error`` is (reason phrase,
    code, message), by default the one of ``status``; ``extra_headers`` are "Name: value\\r\\n" lines;
    ``extra_xml`` goes into ``<Error>`` after the message."""
    reason, code, message = error or _ERRORS[status]
    request_id = uuid.uuid4()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}\nRequestId:{request_id}\nTime:{now}</Message>{extra_xml}</Error>"
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
        strict: str | None = None,
        throttle_retry_after: bool | None = None,
    ) -> None:
        """``strict``: the connection string of the upstream account (its endpoint directly, not this
        proxy) to answer as the real service does (see the module's doc); None: forward as it is.
        ``throttle_retry_after``: whether throttled answers carry the :class:`Throttle`'s ``Retry-After``;
        None: yes, unless strict or in the strict test pass (:data:`STRICT_TEST_PASS`). A :class:`Rule`'s
        ``retry_after_s`` is always sent."""
        if upstream_host != "localhost" and not ipaddress.ip_address(upstream_host).is_loopback:
            raise ValueError(f"upstream {upstream_host!r} is not loopback")
        self.upstream = (upstream_host, upstream_port)
        self._strict = None if strict is None else _Strict(strict)
        if throttle_retry_after is None:
            throttle_retry_after = strict is None and not STRICT_TEST_PASS
        self.throttle_retry_after = throttle_retry_after
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
    def strict(self) -> bool:
        """Whether this proxy answers as the real service does (``strict=`` was given)."""
        return self._strict is not None

    @property
    def strict_hits(self) -> dict[str, int]:
        """How many requests each strict rule refused or rewrote, by rule name (see :class:`_Strict`)."""
        return {} if self._strict is None else self._strict.hits()

    @property
    def counts(self) -> dict[str, int]:
        """Snapshot of counters (see ``COUNTS``): ``requests`` received; ``forwarded`` upstream; one per fault
        kind; ``throttled`` answers, of which ``server_busy`` (503) and ``timed_out`` (500); body bytes
        ``bytes_up`` (requests forwarded), ``bytes_down`` (responses forwarded), ``bytes_throttled``
        (requests refused); while throttling, ``retries`` (requests repeating one refused earlier and
        not served since), ``first_attempts`` (the others) and ``first_attempts_throttled``; and ``strict``,
        requests a strict rule refused or whose answer it rewrote."""
        with self._lock:
            counts = dict(self._counts)
        counts["strict"] = sum(self.strict_hits.values())
        return counts

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
        header = ""
        if throttle.retry_after_s is not None and self.throttle_retry_after:
            header = f"Retry-After: {throttle.retry_after_s:g}\r\n"
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
        if self._strict is not None:
            req, refusal = self._strict.before(req)
            if refusal is not None:
                client.sendall(refusal)
                return not _wants_close(req)
        response = upstream.exchange(req)
        with self._lock:
            now = time.monotonic()
            self._tally(now, forwarded=1, bytes_up=len(req.body), bytes_down=len(response.body))
            if self._buckets is not None:
                self._buckets.charge(len(response.body), now)
        answer = response.head + response.body
        if self._strict is not None and (rewritten := self._strict.after(req, response)) is not None:
            answer = rewritten
        if rule is not None and rule.fault == "drop_response":
            _arm_reset(client)
            return False
        client.sendall(answer)
        return not (response.closed or _wants_close(req))


class _Upstream:
    """The upstream connection of one client connection, (re)connected lazily."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy
        self._conn: tuple[socket.socket, io.BufferedReader] | None = None

    def exchange(self, req: Request) -> Response:
        """Send ``req``; return upstream's response."""
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
        return Response(status, headers, raw, body, closed)

    def close(self) -> None:
        if self._conn is not None:
            self._proxy._untrack(*self._conn)
            self._conn = None


# -- strict mode: the real service's answers where Azurite is lenient ------------------------------------

#: x-ms-version of the proxy's own HEAD requests when the client's request has none.
_API_VERSION = "2021-08-06"
#: Put Blob, Put Block List, Set Blob Metadata, Copy Blob pages: "The total size of all metadata pairs can be
#: up to 8 KB in size" (names and values together, the ``x-ms-meta-`` prefix not counted).
_METADATA_MAX = 8 * 1024
#: Append Block page: 4 MiB per block; 100 MiB from version 2022-11-02 is marked "(preview)" there, so only
#: 4 MiB is valid on every account and version (DESIGN.md).
_APPEND_BLOCK_MAX = 4 * MIB
#: Naming and Referencing Containers, Blobs, and Metadata: metadata names must be valid C# identifiers.
#: Header names are ASCII tokens, so only ASCII letters, digits and underscores can reach the service.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Naming page: a blob name is at most 1,024 characters, in at most 254 path segments.
_NAME_MAX, _SEGMENTS_MAX = 1024, 254
_TRAILING_DOTS = re.compile(r"(?:\.|%2[eE])+\Z")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(-?\d+)/(\d+)\Z")
#: error code -> (status, message), as the REST "Blob service error codes" page words them; the service
#: uses the message as the reason phrase.
_SERVICE_ERRORS = {
    "InvalidBlobType": (409, "The blob type is invalid for this operation."),
    "MetadataTooLarge": (400, "The size of the specified metadata exceeds the maximum size permitted."),
    "InvalidMetadata": (400, "The metadata specified is invalid. It has characters that are not permitted."),
    "RequestBodyTooLarge": (413, "The request body is too large and exceeds the maximum permissible limit."),
    "InvalidRange": (416, "The range specified is invalid for the current size of the resource."),
    "OutOfRangeInput": (400, "The specified resource name length is not within the permissible limits."),
    "AuthenticationFailed": (
        403,
        "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
        "correctly including the signature.",
    ),
}
#: The rules of :class:`_Strict`, as named in :attr:`FaultProxy.strict_hits`.
STRICT_RULES = (
    "blob_type",
    "trailing_dots",
    "metadata_name",
    "metadata_size",
    "range",
    "append_block_size",
    "expired_sas",
    "name_length",
)


def _service_error(req: Request, code: str, extra_headers: str = "", extra_xml: str = "") -> bytes:
    status, message = _SERVICE_ERRORS[code]
    return _error_response(status, req, (message, code, message), extra_headers, extra_xml)


def _query(req: Request) -> dict[str, str]:
    """The request's query parameters, names lower-case, values decoded (the last of repeated ones)."""
    return {name.lower(): value for name, value in parse_qsl(req.query, keep_blank_values=True)}


def _with_head(req: Request, path: str, headers: Mapping[str, str]) -> Request:
    """``req`` sent to ``path`` (same query) with the values of ``headers`` (lower-case names) replaced."""
    lines = req.head.splitlines(keepends=True)
    target = f"{path}?{req.query}" if req.query else path
    out = [f"{req.method} {target} {req.version}\r\n".encode("latin-1")]
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().decode("latin-1").lower()
        if name in headers:
            line = f"{name}: {headers[name]}\r\n".encode("latin-1")
        out.append(line)
    new_headers = {**req.headers, **headers}
    return Request(req.method, path, req.query, req.version, new_headers, b"".join(out), req.body)


def _sas_time(text: str) -> datetime | None:
    """A SAS ``st``/``se`` value (ISO 8601 UTC, or a date) as an aware datetime; None if unreadable."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


class _Strict:
    """The rules of a strict :class:`FaultProxy`: what the Azure Blob service answers where Azurite (3.37) is
    lenient. Each rule's source is given where it is applied; the rule names are :data:`STRICT_RULES`.

    Requests are refused (before forwarding) or rewritten, and answers rewritten, only for the account of
    the connection string. The proxy looks at blobs itself with Shared Key HEAD requests sent directly to
    that account's endpoint (loopback). Limits, by design: a blob's type is checked just before the Put Blob
    is forwarded (a writer in between is not seen); names are rewritten only in the request path, not in
    ``x-ms-copy-source``; a request signed for one blob (a blob SAS, ``sr=b``) to a name with dotted
    segments is forwarded as it is (its signature covers the name). Already faithful on Azurite 3.37 and so
    not emulated (tests/test_strict_proxy.py checks they stay so): Put Block and Put Block List on an append
    blob and Append Block on a block blob answer 409 ``InvalidBlobType``; a ranged GET starting past the end
    of a blob answers 416.
    """

    def __init__(self, connection_string: str) -> None:
        settings = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
        try:
            self.account, key = settings["AccountName"], settings["AccountKey"]
            endpoint = urlsplit(settings["BlobEndpoint"])
        except KeyError as missing:
            raise ValueError(f"strict: the connection string has no {missing}") from None
        host = endpoint.hostname or ""
        if endpoint.scheme != "http" or not endpoint.port:
            raise ValueError("strict: the account's BlobEndpoint must be http://host:port/account")
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"strict: the account's endpoint {host!r} is not loopback")
        self._endpoint = (host, endpoint.port)
        self._signer = SharedKeyCredentialPolicy(self.account, key)
        self._lock = threading.Lock()
        self._hits = dict.fromkeys(STRICT_RULES, 0)

    def hits(self) -> dict[str, int]:
        with self._lock:
            return dict(self._hits)

    def _hit(self, rule: str) -> None:
        with self._lock:
            self._hits[rule] += 1

    # -- before forwarding --------------------------------------------------------------------------------

    def before(self, req: Request) -> tuple[Request, bytes | None]:
        """``req`` as the service would understand it, and the service's refusal of it (None: forward)."""
        blob = self._blob(req)
        if blob is None:
            return req, None
        query = _query(req)
        req = self._trailing_dots(req, query, *blob)
        for rule in (
            lambda: self._name_length(req, blob[1]),
            lambda: self._metadata(req),
            lambda: self._append_block_size(req, query),
            lambda: self._blob_type(req, query),
        ):
            if (refusal := rule()) is not None:
                return req, refusal
        return req, None

    def _blob(self, req: Request) -> tuple[str, str] | None:
        """(container, blob name as sent, percent-encoded) of a request to a blob of the account."""
        parts = req.path.split("/", 3)
        if len(parts) < 4 or parts[1] != self.account or not parts[2] or not parts[3]:
            return None
        return parts[2], parts[3]

    def _trailing_dots(self, req: Request, query: dict[str, str], container: str, name: str) -> Request:
        # Sources: Azure/azure-sdk-for-java#36674 ("folder/file." is stored as "folder/file"),
        # wellcomecollection/platform#4790, microsoft/AzureStorageExplorer#1133 and #2833 (a folder whose
        # name ends with dots loses them: "by design", says the platform); the naming page: "Avoid blob names
        # that end with a dot (.)" and no path segment should end with a dot. Every segment's trailing dots
        # (plain or %2E) are dropped, for every operation, so the stripped name is read, written and
        # deleted. A segment of dots only is left alone (what the service does with it is not known here).
        segments = name.split("/")
        stripped = [_TRAILING_DOTS.sub("", segment) for segment in segments]
        if stripped == segments or any(s == "" != t for s, t in zip(stripped, segments, strict=True)):
            return req
        path = f"/{self.account}/{container}/{'/'.join(stripped)}"
        auth = req.headers.get("authorization", "")
        if auth.startswith(f"SharedKey {self.account}:"):
            return self._counted(req, path, self._sign(req.method, path, req.query, req.headers))
        # A container SAS (sr=c) or an account SAS (ss, srt) signs no blob name: the path may change.
        if "sig" in query and (query.get("sr") == "c" or ("ss" in query and "srt" in query)):
            return self._counted(req, path, None)
        return req

    def _counted(self, req: Request, path: str, authorization: str | None) -> Request:
        self._hit("trailing_dots")
        return _with_head(req, path, {} if authorization is None else {"authorization": authorization})

    def _sign(self, method: str, path: str, query: str, headers: Mapping[str, str]) -> str:
        """The Shared Key ``Authorization`` of a request to ``path``, computed by azure-storage-blob's own
        policy (the string to sign and header collation that Azurite accepts from it)."""
        url = f"http://{self._endpoint[0]}:{self._endpoint[1]}{path}" + (f"?{query}" if query else "")
        request = HttpRequest(
            method, url, headers={k: v for k, v in headers.items() if k.lower() != "authorization"}
        )
        self._signer.on_request(PipelineRequest(request, PipelineContext(None)))
        return request.headers["Authorization"]

    def _name_length(self, req: Request, name: str) -> bytes | None:
        # Source: the naming page ("A blob name [...] can't be more than 1,024 characters long"; "The number
        # of path segments comprising the blob name can't exceed 254"). Azurite takes longer names (3.37). The
        # error code is the one the service gives for names out of its limits, as far as reported; unverified.
        if req.method != "PUT":
            return None
        decoded = unquote(name)
        if len(decoded) <= _NAME_MAX and decoded.count("/") < _SEGMENTS_MAX:
            return None
        self._hit("name_length")
        return _service_error(req, "OutOfRangeInput")

    def _metadata(self, req: Request) -> bytes | None:
        # Sources: the Put Blob, Put Block List, Set Blob Metadata and Copy Blob pages ("The total size of
        # all metadata pairs can be up to 8 KB in size", 400 MetadataTooLarge on the error codes page) and the
        # naming page (metadata names are C# identifiers; 400 InvalidMetadata). Azurite checks the names but
        # not the size (DESIGN.md). Applies to every write carrying x-ms-meta-* (container creation too).
        if req.method != "PUT":
            return None
        pairs = [(n[len("x-ms-meta-") :], v) for n, v in req.headers.items() if n.startswith("x-ms-meta-")]
        if any(not _IDENTIFIER.match(name) for name, _ in pairs):
            self._hit("metadata_name")
            return _service_error(req, "InvalidMetadata")
        if sum(len(n.encode("latin-1")) + len(v.encode("latin-1")) for n, v in pairs) > _METADATA_MAX:
            self._hit("metadata_size")
            return _service_error(req, "MetadataTooLarge")
        return None

    def _append_block_size(self, req: Request, query: dict[str, str]) -> bytes | None:
        # Source: the Append Block page (Content-Length: at most 4 MiB; 100 MiB from 2022-11-02 in preview)
        # and DESIGN.md; the error codes page: 413 RequestBodyTooLarge. Azurite takes 100 MiB.
        if req.method != "PUT" or query.get("comp") != "appendblock" or "x-ms-copy-source" in req.headers:
            return None
        length = int(req.headers.get("content-length", len(req.body)))
        if length <= _APPEND_BLOCK_MAX:
            return None
        self._hit("append_block_size")
        return _service_error(req, "RequestBodyTooLarge")

    def _blob_type(self, req: Request, query: dict[str, str]) -> bytes | None:
        # Sources: Put Blob page ("If the blob exists [...] you can't change its type": 409 InvalidBlobType),
        # Azure/blobporter#111, manaflow-ai/subrouter#223 ("verified live": delete first); DESIGN.md. Azurite
        # converts the blob silently. Put Block / Put Block List on an append blob and Append Block on a block
        # blob are already refused by Azurite (see the class doc).
        wanted = req.headers.get("x-ms-blob-type")
        if req.method != "PUT" or "comp" in query or wanted is None:
            return None
        existing = self._properties(req)
        if existing is None:
            return None
        blob_type, etag = existing
        if blob_type.lower() == wanted.lower():
            return None
        if req.headers.get("if-none-match") == "*":
            return None  # the condition fails first: Azurite answers 409 BlobAlreadyExists
        if_match = req.headers.get("if-match")
        if if_match is not None and if_match not in ("*", etag):
            return None  # the condition fails first: Azurite answers 412 ConditionNotMet
        self._hit("blob_type")
        return _service_error(req, "InvalidBlobType")

    def _properties(self, req: Request) -> tuple[str, str] | None:
        """(blob type, ETag) of the blob ``req`` names, by a HEAD straight to the account; None if there is
        no such blob (or upstream gave no clear answer: the request is then forwarded as it is)."""
        headers = {
            "x-ms-date": formatdate(usegmt=True),
            "x-ms-version": req.headers.get("x-ms-version", _API_VERSION),
        }
        headers["Authorization"] = self._sign("HEAD", req.path, "", headers)
        conn = http.client.HTTPConnection(*self._endpoint, timeout=10)
        try:
            conn.request("HEAD", req.path, headers=headers)
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        blob_type = response.getheader("x-ms-blob-type")
        if response.status != 200 or blob_type is None:
            return None
        return blob_type, response.getheader("etag", "")

    # -- after forwarding ---------------------------------------------------------------------------------

    def after(self, req: Request, response: Response) -> bytes | None:
        """The service's answer where it differs from ``response`` (None: send ``response``)."""
        if self._blob(req) is None:
            return None
        return self._range(req, response) or self._expired_sas(req, response)

    def _range(self, req: Request, response: Response) -> bytes | None:
        # Source: Azure/Azurite#318 and the Get Blob / "Specify the range header" pages: a range starting at
        # or past the end of the blob answers 416 InvalidRange with "Content-Range: bytes */N" (an empty blob
        # included: azure-storage-blob retries a 416 without the range for that case). Azurite answers 206
        # with no bytes and "Content-Range: bytes N-(N-1)/N" when the range starts exactly at the end.
        if req.method != "GET" or response.status != 206 or response.body:
            return None
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if match is None or int(match[1]) < int(match[3]):
            return None
        self._hit("range")
        return _service_error(req, "InvalidRange", f"Content-Range: bytes */{match[3]}\r\n")

    def _expired_sas(self, req: Request, response: Response) -> bytes | None:
        # Source: DESIGN.md; the service's answer as reported in floci-io/floci-az#89 and
        # microsoft/AzureStorageExplorer#3163: 403 AuthenticationFailed with an AuthenticationErrorDetail;
        # Azurite answers 403 AuthorizationFailure to a SAS outside its time window.
        if response.status != 403 or response.headers.get("x-ms-error-code") != "AuthorizationFailure":
            return None
        query = _query(req)
        now = datetime.now(timezone.utc)
        start, expiry = _sas_time(query.get("st", "")), _sas_time(query.get("se", ""))
        if "sig" not in query or not ((expiry and expiry < now) or (start and start > now)):
            return None
        self._hit("expired_sas")

        def http_date(when: datetime | None) -> str:
            return formatdate((when or now).timestamp(), usegmt=True)

        detail = (
            f"<AuthenticationErrorDetail>Signature not valid in the specified time frame: Start "
            f"[{http_date(start)}] - Expiry [{http_date(expiry)}] - Current [{http_date(now)}]"
            "</AuthenticationErrorDetail>"
        )
        return _service_error(req, "AuthenticationFailed", extra_xml=detail)
