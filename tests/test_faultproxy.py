"""Tests for the fault-injection proxy, against a tiny in-process HTTP/1.1 upstream (no Azurite needed)."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from faultproxy import MIB, FaultProxy, Rule, Throttle, _Buckets
from helpers import wait_for
from hypothesis import given, settings
from hypothesis import strategies as st


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str, bytes, int]] = []  # method, path, body, client port
        self.release = threading.Event()  # unblocks /hang


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Upstream

    def log_message(self, *args: object) -> None:
        pass

    def _record(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append((self.command, self.path, body, self.client_address[1]))
        return body

    def _reply(self, status: int, body: bytes, *, send_body: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._record()
        if self.path == "/hang":  # never answers; the proxy is stopped meanwhile
            self.server.release.wait(10)
            self.close_connection = True
        elif self.path == "/empty":
            self.send_response(204)
            self.end_headers()
        elif self.path == "/unframed":  # no Content-Length: the body runs to the end of the connection
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"6\r\nhello \r\nd\r\nchunked world\r\n0\r\n\r\n")
        else:
            self._reply(200, f"got {self.path}".encode())
            self.close_connection = self.path == "/bye"  # closes without saying so, like an idle timeout

    def do_HEAD(self) -> None:
        self._record()
        self._reply(200, b"12345", send_body=False)

    def do_PUT(self) -> None:
        body = self._record()
        self._reply(201, str(len(body)).encode())


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def proxy(upstream: _Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.server_port, seed=1) as p:
        yield p


Connect = Callable[[FaultProxy], http.client.HTTPConnection]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Factory of client connections to a proxy, all closed at teardown."""
    conns: list[http.client.HTTPConnection] = []

    def make(proxy: FaultProxy) -> http.client.HTTPConnection:
        conns.append(http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10))
        return conns[-1]

    yield make
    for conn in conns:
        conn.close()


def _call(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    return resp, resp.read()


def _proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("faultproxy")]


def test_forwards_requests_on_kept_alive_connections(
    proxy: FaultProxy, upstream: _Upstream, connect: Connect
) -> None:
    conn = connect(proxy)
    resp, body = _call(conn, "PUT", "/acct/c/b?comp=block", b"x" * 300_000)
    assert (resp.status, body) == (201, b"300000")
    sock = conn.sock
    resp, body = _call(conn, "GET", "/acct/c/b")
    assert (resp.status, body) == (200, b"got /acct/c/b")
    assert conn.sock is sock  # client side kept alive
    assert [s[:3] for s in upstream.seen] == [
        ("PUT", "/acct/c/b?comp=block", b"x" * 300_000),
        ("GET", "/acct/c/b", b""),
    ]
    assert len({s[3] for s in upstream.seen}) == 1  # upstream side kept alive
    counts = proxy.counts
    assert {k: counts[k] for k in ("requests", "forwarded", "bytes_up", "bytes_down")} == {
        "requests": 2,
        "forwarded": 2,
        "bytes_up": 300_000,
        "bytes_down": len(b"300000") + len(b"got /acct/c/b"),
    }
    assert all(
        v == 0 for k, v in counts.items() if k not in ("requests", "forwarded", "bytes_up", "bytes_down")
    )
    assert proxy.url_for("devstoreaccount1") == f"http://127.0.0.1:{proxy.port}/devstoreaccount1"


def test_chunked_and_bodyless_responses(proxy: FaultProxy, connect: Connect) -> None:
    conn = connect(proxy)
    resp, body = _call(conn, "HEAD", "/blob")
    assert (resp.status, resp.getheader("Content-Length"), body) == (200, "5", b"")
    resp, body = _call(conn, "GET", "/empty")
    assert (resp.status, body) == (204, b"")
    resp, body = _call(conn, "GET", "/chunked")
    assert (resp.getheader("Transfer-Encoding"), body) == ("chunked", b"hello chunked world")
    resp, body = _call(conn, "GET", "/after")
    assert body == b"got /after"
    assert proxy.counts["forwarded"] == 4


def test_upstream_closing_its_connection(proxy: FaultProxy, upstream: _Upstream, connect: Connect) -> None:
    conn = connect(proxy)
    assert _call(conn, "GET", "/bye")[1] == b"got /bye"
    sock = conn.sock
    assert _call(conn, "GET", "/again")[1] == b"got /again"  # retried on a fresh upstream connection
    assert conn.sock is sock
    assert _call(conn, "GET", "/unframed")[1] == b"until close"  # read to EOF: the proxy closed too
    assert _call(conn, "GET", "/last")[1] == b"got /last"
    assert len({s[3] for s in upstream.seen}) == 3
    assert proxy.counts["forwarded"] == 4


def test_predicate_may_read_counts(proxy: FaultProxy, connect: Connect) -> None:
    proxy.add_rule("status", match=lambda req: proxy.counts["requests"] == 2)
    conn = connect(proxy)
    assert [_call(conn, "GET", "/")[0].status for _ in range(3)] == [200, 503, 200]


def test_concurrent_clients_are_all_counted(proxy: FaultProxy, connect: Connect) -> None:
    bodies: list[bytes] = []

    def client(n: int) -> None:
        conn = connect(proxy)
        bodies.extend(_call(conn, "GET", f"/{n}/{i}")[1] for i in range(10))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(bodies) == sorted(f"got /{n}/{i}".encode() for n in range(8) for i in range(10))
    assert proxy.counts["requests"] == proxy.counts["forwarded"] == 80


def test_reset_closes_client_without_forwarding(
    proxy: FaultProxy, upstream: _Upstream, connect: Connect
) -> None:
    proxy.add_rule("reset")
    with pytest.raises(ConnectionError):
        _call(connect(proxy), "PUT", "/acct/c/b", b"data")
    assert upstream.seen == []
    assert proxy.counts["reset"] == 1
    assert proxy.counts["forwarded"] == 0


@pytest.mark.parametrize(
    ("status", "code"), [(500, "InternalError"), (503, "ServerBusy"), (429, "TooManyRequests")]
)
def test_status_answers_azure_error(
    proxy: FaultProxy, upstream: _Upstream, connect: Connect, status: int, code: str
) -> None:
    proxy.add_rule("status", times=1, status=status)
    conn = connect(proxy)
    resp, body = _call(conn, "PUT", "/acct/c/b", b"data")
    assert resp.status == status
    assert resp.getheader("x-ms-error-code") == code
    assert resp.getheader("Content-Type") == "application/xml"
    assert f"<Error><Code>{code}</Code><Message>".encode() in body
    sock = conn.sock
    assert _call(conn, "GET", "/next")[0].status == 200
    assert conn.sock is sock  # the connection survives an error status
    assert [s[1] for s in upstream.seen] == ["/next"]


def test_status_rule_with_retry_after(proxy: FaultProxy, connect: Connect) -> None:
    proxy.add_rule("status", times=1, retry_after_s=2.5)
    proxy.add_rule("status", times=1, status=500)
    conn = connect(proxy)
    resp, _ = _call(conn, "PUT", "/acct/c/b", b"data")
    assert (resp.status, resp.getheader("Retry-After")) == (503, "2.5")
    resp, _ = _call(conn, "PUT", "/acct/c/b", b"data")
    assert (resp.status, resp.getheader("Retry-After")) == (500, None)


def test_status_on_head_has_no_body(proxy: FaultProxy, connect: Connect) -> None:
    proxy.add_rule("status", times=1)
    conn = connect(proxy)
    resp, body = _call(conn, "HEAD", "/blob")
    assert (resp.status, resp.getheader("x-ms-error-code"), body) == (503, "ServerBusy", b"")
    assert _call(conn, "GET", "/next")[1] == b"got /next"


def test_delay_then_forward(proxy: FaultProxy, upstream: _Upstream, connect: Connect) -> None:
    proxy.add_rule("delay", delay_ms=150)
    start = time.monotonic()
    resp, body = _call(connect(proxy), "GET", "/slow")
    assert time.monotonic() - start >= 0.15
    assert (resp.status, body) == (200, b"got /slow")
    assert proxy.counts["delay"] == proxy.counts["forwarded"] == 1


def test_drop_response_applies_write_but_breaks_client(
    proxy: FaultProxy, upstream: _Upstream, connect: Connect
) -> None:
    proxy.add_rule("drop_response", match=lambda req: "comp=appendblock" in req.query)
    with pytest.raises(ConnectionError):
        _call(connect(proxy), "PUT", "/acct/c/log?comp=appendblock", b"line\n")
    assert [s[:3] for s in upstream.seen] == [("PUT", "/acct/c/log?comp=appendblock", b"line\n")]
    assert _call(connect(proxy), "PUT", "/acct/c/log", b"x")[0].status == 201  # rule does not match
    assert proxy.counts["drop_response"] == 1
    assert proxy.counts["forwarded"] == 2


def test_rules_in_order_until_times_exhausted(upstream: _Upstream, connect: Connect) -> None:
    first = Rule("status", match=lambda req: req.path == "/a", times=2, status=500)
    with FaultProxy(upstream.server_port, rules=[first]) as proxy:
        proxy.add_rule("status", times=1)
        conn = connect(proxy)
        statuses = [_call(conn, "GET", path)[0].status for path in ("/a", "/b", "/a", "/a", "/b")]
    assert statuses == [500, 503, 500, 200, 200]
    assert first.times == 0
    assert proxy.counts["status"] == 3


def test_clear_makes_proxy_transparent(proxy: FaultProxy, connect: Connect) -> None:
    proxy.add_rule("reset")
    proxy.set_random({"status": 1.0})
    proxy.clear()
    assert _call(connect(proxy), "GET", "/x")[0].status == 200
    assert proxy.counts["reset"] == proxy.counts["status"] == 0


def _random_run(port: int, seed: int, connect: Connect) -> tuple[list[object], dict[str, int]]:
    faults = {"reset": 0.2, "status": 0.3, "drop_response": 0.2, "delay": 0.1}
    outcomes: list[object] = []
    with FaultProxy(port, seed=seed, random_faults=faults, delay_ms=1) as proxy:
        for i in range(30):
            try:
                outcomes.append(_call(connect(proxy), "GET", f"/{i}")[0].status)
            except ConnectionError:
                outcomes.append("error")
    return outcomes, proxy.counts


def test_seeded_random_faults_are_reproducible(upstream: _Upstream, connect: Connect) -> None:
    outcomes, counts = _random_run(upstream.server_port, 7, connect)
    assert (outcomes, counts) == _random_run(upstream.server_port, 7, connect)
    assert {200, 500, 503, "error"} <= set(outcomes)
    assert counts["requests"] == 30
    assert all(counts[fault] > 0 for fault in ("reset", "status", "drop_response", "delay"))


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "example.com"])
def test_refuses_non_loopback_upstream(host: str) -> None:
    with pytest.raises(ValueError):
        FaultProxy(1234, upstream_host=host)


def test_rejects_bad_fault_configuration(upstream: _Upstream) -> None:
    proxy = FaultProxy(upstream.server_port)
    with pytest.raises(ValueError):
        proxy.add_rule("explode")
    with pytest.raises(ValueError):
        proxy.add_rule("status", status=404)
    with pytest.raises(ValueError):
        proxy.add_rule("status", retry_after_s=-1)
    with pytest.raises(ValueError):
        proxy.set_random({"reset": 0.7, "status": 0.5})
    with pytest.raises(ValueError):
        proxy.set_random({"bogus": 0.1})


def test_deadline_stops_proxy(upstream: _Upstream, connect: Connect) -> None:
    start = time.monotonic()
    proxy = FaultProxy(upstream.server_port, deadline_s=2).start()  # time for the first GET on a slow machine
    conn = connect(proxy)
    assert _call(conn, "GET", "/x")[0].status == 200  # leaves an idle keep-alive connection
    proxy.join(timeout=30)
    assert time.monotonic() - start >= 2
    assert not proxy.running
    assert _proxy_threads() == []
    with pytest.raises(ConnectionError):
        _call(conn, "GET", "/y")
    with pytest.raises(ConnectionRefusedError):
        _call(connect(proxy), "GET", "/z")


def test_stop_aborts_busy_connections_and_leaves_no_thread(upstream: _Upstream, connect: Connect) -> None:
    proxy = FaultProxy(upstream.server_port).start()
    proxy.add_rule("delay", match=lambda req: req.path == "/delayed", delay_ms=60_000)
    errors: list[BaseException] = []

    def client(path: str) -> None:
        try:
            _call(connect(proxy), "GET", path)
        except ConnectionError as exc:
            errors.append(exc)

    clients = [threading.Thread(target=client, args=(path,)) for path in ("/delayed", "/hang")]
    for t in clients:
        t.start()
    idle = connect(proxy)
    idle.connect()
    wait_for(
        lambda: proxy.counts["delay"] == 1 and any(s[1] == "/hang" for s in upstream.seen),
        "the proxy to hold /hang",
        timeout=10,
    )
    proxy.stop()
    assert _proxy_threads() == []
    for t in clients:
        t.join()
    assert len(errors) == 2
    proxy.stop()  # idempotent


# --- throttling ---------------------------------------------------------------------------------------------


def _throttled(upstream: _Upstream, **options: float | None) -> FaultProxy:
    return FaultProxy(upstream.server_port, seed=3, throttle=Throttle(**options), deadline_s=60)  # type: ignore[arg-type]


def test_request_bucket_burst_then_rate(upstream: _Upstream, connect: Connect) -> None:
    """A token every 2 s: the calls between two refills have 2 s to finish, even on a loaded machine."""
    with _throttled(upstream, requests_per_s=0.5, burst_requests=3, retry_after_s=2) as proxy:
        conn = connect(proxy)
        answers = [_call(conn, "PUT", f"/acct/c/{i}", b"x" * 1000) for i in range(5)]
        assert [r.status for r, _ in answers] == [201, 201, 201, 503, 503]
        busy, body = answers[3]
        assert busy.reason == "Service Unavailable"
        assert busy.getheader("x-ms-error-code") == "ServerBusy"
        assert busy.getheader("Retry-After") == "2"
        assert b"<Code>ServerBusy</Code><Message>The server is busy." in body
        assert [s[1] for s in upstream.seen] == ["/acct/c/0", "/acct/c/1", "/acct/c/2"]
        time.sleep(2.2)  # one token back at 0.5 per second
        assert [_call(conn, "GET", "/again")[0].status for _ in range(2)] == [200, 503]
        sock = conn.sock
    counts = proxy.counts
    assert conn.sock is sock  # a throttled answer keeps the connection
    assert {k: counts[k] for k in ("requests", "forwarded", "throttled", "server_busy", "timed_out")} == {
        "requests": 7,
        "forwarded": 4,
        "throttled": 3,
        "server_busy": 3,
        "timed_out": 0,
    }
    assert (counts["bytes_up"], counts["bytes_throttled"]) == (3000, 2000)


def test_throttled_request_body_is_read_before_the_answer(upstream: _Upstream, connect: Connect) -> None:
    """A refused 4 MiB upload gets its 503 after the proxy has read all of it: no reset, the connection
    carries on."""
    throttle = Throttle(requests_per_s=0.1, burst_requests=1)  # no token back during the upload
    with FaultProxy(upstream.server_port, throttle=throttle, deadline_s=60) as proxy:
        conn = connect(proxy)
        assert _call(conn, "GET", "/first")[0].status == 200
        resp, _ = _call(conn, "PUT", "/acct/c/big", b"b" * (4 * MIB))
        assert resp.status == 503
        sock = conn.sock
        proxy.set_throttle(throttle)  # a full bucket again, without waiting 10 s
        assert _call(conn, "PUT", "/acct/c/big", b"b" * (4 * MIB))[1] == str(4 * MIB).encode()
        assert conn.sock is sock
    assert proxy.counts["bytes_throttled"] == proxy.counts["bytes_up"] == 4 * MIB


def test_byte_bucket_lets_a_large_body_through_then_waits(upstream: _Upstream, connect: Connect) -> None:
    """1 MiB/s: the debt takes 1.5 s to clear, time enough for the refused PUT on a loaded machine."""
    with _throttled(upstream, mib_per_s=1, burst_mib=0.5) as proxy:
        conn = connect(proxy)
        assert _call(conn, "PUT", "/acct/c/a", b"a" * (2 * MIB))[0].status == 201  # debt: -1.5 MiB
        assert _call(conn, "PUT", "/acct/c/b", b"b")[0].status == 503
        time.sleep(2)  # 2 MiB back: out of debt
        assert _call(conn, "PUT", "/acct/c/b", b"b")[0].status == 201
    assert proxy.counts["bytes_up"] == 2 * MIB + 1
    assert proxy.counts["throttled"] == 1


def test_retry_after_options_and_head(upstream: _Upstream, connect: Connect) -> None:
    """A token every 10 s: the request after the one taking it is refused, however slow the machine."""
    with _throttled(upstream, requests_per_s=0.1, burst_requests=1, retry_after_s=0.5) as proxy:
        conn = connect(proxy)
        _call(conn, "GET", "/take-the-token")
        resp, body = _call(conn, "HEAD", "/blob")
        assert (resp.status, resp.getheader("Retry-After"), body) == (503, "0.5", b"")
        proxy.set_throttle(Throttle(requests_per_s=0.1, burst_requests=1, retry_after_s=None))
        assert proxy.throttle == Throttle(requests_per_s=0.1, burst_requests=1, retry_after_s=None)
        _call(conn, "GET", "/take-the-token")
        resp, _ = _call(conn, "GET", "/blob")
        assert (resp.status, resp.getheader("Retry-After")) == (503, None)
        proxy.set_throttle(None)
        assert [_call(conn, "GET", "/free")[0].status for _ in range(5)] == [200] * 5


def test_timeout_share_answers_500_operation_timed_out(upstream: _Upstream, connect: Connect) -> None:
    with _throttled(upstream, requests_per_s=0.1, burst_requests=1, timeout_share=1.0) as proxy:
        conn = connect(proxy)
        _call(conn, "GET", "/take-the-token")
        resp, body = _call(conn, "PUT", "/acct/c/b", b"data")
        assert (resp.status, resp.reason) == (500, "Internal Server Error")
        assert resp.getheader("x-ms-error-code") == "OperationTimedOut"
        assert resp.getheader("Retry-After") is None
        assert b"<Code>OperationTimedOut</Code>" in body
        proxy.set_throttle(Throttle(requests_per_s=0.1, burst_requests=1, timeout_share=0.3))
        _call(conn, "GET", "/take-the-token")
        statuses = [_call(conn, "GET", f"/{i}")[0].status for i in range(60)]
    counts = proxy.counts
    assert counts["timed_out"] == 1 + statuses.count(500)
    assert counts["server_busy"] == statuses.count(503)
    assert 6 <= statuses.count(500) <= 30  # a 0.3 share of 60, seeded
    assert counts["throttled"] == counts["timed_out"] + counts["server_busy"] == 61


def test_retries_are_told_from_first_attempts(upstream: _Upstream, connect: Connect) -> None:
    """A token every 2 s: the refused calls between two refills have 2 s to finish on a loaded machine."""
    with _throttled(upstream, requests_per_s=0.5, burst_requests=1) as proxy:
        conn = connect(proxy)
        assert _call(conn, "PUT", "/acct/c/a?comp=block", b"x")[0].status == 201  # first, served
        assert _call(conn, "PUT", "/acct/c/a?comp=block", b"x")[0].status == 503  # first (a new write)
        assert _call(conn, "PUT", "/acct/c/a?comp=block", b"x")[0].status == 503  # retry
        assert _call(conn, "PUT", "/acct/c/a?comp=block", b"y")[0].status == 503  # other body: first
        time.sleep(2.2)  # one token back at 0.5 per second
        assert _call(conn, "PUT", "/acct/c/a?comp=block", b"x")[0].status == 201  # retry, served
        assert _call(conn, "PUT", "/acct/c/a?comp=block", b"x")[0].status == 503  # first again
    counts = proxy.counts
    assert (counts["first_attempts"], counts["first_attempts_throttled"], counts["retries"]) == (4, 3, 2)
    assert counts["first_attempts"] + counts["retries"] == counts["requests"] == 6


def test_concurrent_clients_are_held_to_the_rate(upstream: _Upstream, connect: Connect) -> None:
    """Six clients asking as fast as they can for 3 s: about 20 per second get through, the rest are
    refused, and the timeline shows the admitted rate per half second.

    Admissions are bounded by ``requests - throttled`` per bucket (both counted on arrival, when the token
    is taken): ``forwarded`` is counted when upstream answers, so a stall of the machine bunches it. A stall
    also wastes refills (the bucket holds 2), hence only half the rate is required over the run."""
    rate, burst, run_s = 20, 2, 3.0
    with _throttled(upstream, requests_per_s=rate, burst_requests=burst) as proxy:
        stop = time.monotonic() + run_s
        statuses: list[int] = []

        def client() -> None:
            conn = connect(proxy)
            while time.monotonic() < stop:
                statuses.append(_call(conn, "GET", "/x")[0].status)
                time.sleep(0.005)

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - (stop - run_s)
        timeline = proxy.timeline(0.5)
    counts = proxy.counts
    admitted = [b["requests"] - b["throttled"] for b in timeline]
    assert statuses.count(200) == counts["forwarded"] <= burst + rate * elapsed + 1
    print(f"\nforwarded {counts['forwarded']} in {elapsed:.2f} s; admitted per 0.5 s: {admitted}")
    assert counts["forwarded"] >= rate * run_s * 0.5  # the bucket is used, not starved
    assert statuses.count(503) == counts["throttled"] > counts["forwarded"]
    assert sum(b["requests"] for b in timeline) == counts["requests"]
    assert sum(b["throttled"] for b in timeline) == counts["throttled"]
    assert [b["t"] for b in timeline] == [0.5 * i for i in range(len(timeline))]
    assert all(n <= burst + rate * 0.5 + 1 for n in admitted)


def test_timeline_of_an_idle_proxy_is_empty(upstream: _Upstream) -> None:
    with FaultProxy(upstream.server_port) as proxy:
        assert proxy.timeline() == []


@pytest.mark.parametrize(
    "options",
    [
        {"requests_per_s": 0},
        {"requests_per_s": -1},
        {"mib_per_s": float("nan")},
        {"mib_per_s": float("inf")},
        {"requests_per_s": 5, "burst_requests": 0.5},
        {"mib_per_s": 1, "burst_mib": 0},
        {"retry_after_s": -1},
        {"timeout_share": 1.5},
    ],
)
def test_rejects_bad_throttle(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Throttle(**options)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 1000),
    burst=st.floats(1, 50),
    gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=200),
)
def test_request_bucket_never_exceeds_burst_plus_rate(rate: float, burst: float, gaps: list[float]) -> None:
    """Over any stretch of time, the admitted requests are at most the burst plus the rate times its length;
    and a request finding the bucket refilled is always admitted."""
    buckets = _Buckets(Throttle(requests_per_s=rate, burst_requests=burst), 0.0)
    now, admitted = 0.0, []
    for gap in gaps:
        now += gap
        full = buckets.requests.refill(now) >= 1  # type: ignore[union-attr]
        ok = buckets.admit(0, now)
        assert ok == full
        if ok:
            admitted.append(now)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + rate * (admitted[j] - start) + 1e-6


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.1, 100),
    burst=st.floats(0.01, 10),
    arrivals=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 4 * MIB)), min_size=1, max_size=100),
)
def test_byte_bucket_holds_the_average(rate: float, burst: float, arrivals: list[tuple[float, int]]) -> None:
    """Bytes admitted by time t never exceed the burst plus rate x t plus one body (the debt)."""
    buckets = _Buckets(Throttle(mib_per_s=rate, burst_mib=burst), 0.0)
    now, total, largest = 0.0, 0, 0
    for gap, size in arrivals:
        now += gap
        if buckets.admit(size, now):
            total += size
            largest = max(largest, size)
            assert total <= (burst + rate * now) * MIB + largest + 1e-3
