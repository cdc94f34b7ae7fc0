"""Throttling absorbed (batchfiles._throttle): what a throttled answer says, the wait before each retry, the
retry policy every client gets (through the fault proxy in front of Azurite: ``Retry-After`` honoured, full
jitter, a budget of throttled retries of its own, a user's ``retry_total`` winning), and the AIMD slots of
saves (sans-IO with a fake clock; thread and asyncio drivers; fed by real saves).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import ContainerClient, ExponentialRetry
from batchfiles import (
    BatchFilesError,
    TaskOutputStorage,
    _throttle,
    _urls,
    aio,
    naming,
)
from batchfiles._throttle import Aimd, AsyncSlots, Slots
from batchfiles.testing import ACCOUNT_NAME
from faultproxy import FaultProxy, Request, Throttle
from hypothesis import given, settings
from hypothesis import strategies as st
from scale_tasks import connection_string

#: The ``proxy`` fixture's options (tests/conftest.py).
pytestmark = pytest.mark.fault_proxy(seed=14, deadline_s=120)

# --- what an answer says ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "throttled"),
    [
        (503, "ServerBusy", True),
        (503, None, True),
        (500, "OperationTimedOut", True),
        (429, None, True),
        (500, "InternalError", False),
        (500, None, False),
        (404, "BlobNotFound", False),
        (201, None, False),
    ],
)
def test_is_throttled(status: int, code: str | None, throttled: bool) -> None:
    assert _throttle.is_throttled(status, code) is throttled


def test_retry_after_in_its_forms() -> None:
    ahead = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    past = format_datetime(datetime.now(timezone.utc) - timedelta(seconds=30), usegmt=True)
    assert _throttle.retry_after({"retry-after": "2"}) == 2.0
    assert _throttle.retry_after({"retry-after": "0.5"}) == 0.5
    assert _throttle.retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert _throttle.retry_after({"x-ms-retry-after-ms": "250"}) == 0.25
    assert 28 <= (_throttle.retry_after({"retry-after": ahead}) or 0) <= 30
    assert _throttle.retry_after({"retry-after": past}) == 0.0
    assert _throttle.retry_after({"retry-after": "1e9"}) == _throttle.MAX_RETRY_AFTER
    for bad in ("soon", "-1", "nan", "inf", ""):
        assert _throttle.retry_after({"retry-after": bad}) is None
    assert _throttle.retry_after({}) is None


@given(st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms", "x-ms-retry-after-ms"]), st.text()))
def test_retry_after_never_raises_and_stays_in_bounds(headers: dict[str, str]) -> None:
    after = _throttle.retry_after(headers)
    assert after is None or 0 <= after <= _throttle.MAX_RETRY_AFTER


@given(st.integers(0, 200), st.none() | st.floats(0, 1e6), st.integers(0, 2**32))
def test_throttled_backoff_is_what_was_asked_plus_the_window(n: int, after: float | None, seed: int) -> None:
    wait = _throttle.throttled_backoff(n, after, random.Random(seed))
    first, cap = _throttle.THROTTLED_WINDOW
    floor = min(_throttle.NO_RETRY_AFTER if after is None else after, _throttle.MAX_RETRY_AFTER)
    assert floor <= wait <= floor + min(cap, first * 2**n)


def test_two_hundred_tasks_throttled_together_do_not_come_back_together() -> None:
    rng = random.Random(14)
    for n in range(4):
        waits = [_throttle.throttled_backoff(n, 1.0, rng) for _ in range(200)]
        assert min(waits) >= 1.0
        slots: dict[int, int] = {}
        for wait in waits:
            slots[int(wait * 10)] = slots.get(int(wait * 10), 0) + 1
        window = min(_throttle.THROTTLED_WINDOW[1], _throttle.THROTTLED_WINDOW[0] * 2**n)
        assert max(waits) - min(waits) >= 0.8 * window  # spread over the whole window...
        assert max(slots.values()) <= 0.1 * len(waits)  # ... no tenth of a second holding 10 % of them


# --- the retry policy, through the fault proxy -------------------------------------------------------------


@pytest.fixture
def fast_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Throttled retries 10 ms apart, so budgets are counted in milliseconds."""
    monkeypatch.setattr(_throttle, "THROTTLED_WINDOW", (0.01, 0.01))
    monkeypatch.setattr(_throttle, "NO_RETRY_AFTER", 0.01)  # answers without Retry-After


def _storage(proxy: FaultProxy, job_id: str, **options: object) -> TaskOutputStorage:
    conn = connection_string(proxy.url_for(ACCOUNT_NAME))
    return TaskOutputStorage.from_connection_string(conn, job_id, "t1", **options)


def _to(name: str) -> Callable[[Request], bool]:
    return lambda request: request.method == "PUT" and request.path.endswith(name)


def _attempts(seen: list[tuple[float, str]], name: str) -> int:
    return sum(1 for _, path in seen if path.endswith(name))


@pytest.fixture
def seen(proxy: FaultProxy) -> list[tuple[float, str]]:
    """(arrival time, path) of every request the proxy's throttle lets through, recorded by a rule that
    never fires (rules are asked in order, so the test's own rules, added after it, still apply)."""
    arrivals: list[tuple[float, str]] = []

    def record(request: Request) -> bool:
        arrivals.append((time.monotonic(), request.path))
        return False

    proxy.add_rule("status", record)
    return arrivals


def test_retry_after_is_honoured(proxy: FaultProxy, prepared: str) -> None:
    """The account refuses a write once and asks 2.5 s: the retry comes no sooner (the policy before
    ThrottleRetry came back after 1.8 s ± 0.3, was served, and never waited what the account asked).
    A rule refuses it, not a token bucket, so a slow machine cannot let it through unrefused."""
    proxy.add_rule("status", _to("/b.txt"), times=1, retry_after_s=2.5)
    with _storage(proxy, prepared) as storage:
        storage.save_bytes("TaskOutput", b"first", "a.txt")  # a warm connection
        start = time.monotonic()
        storage.save_bytes("TaskOutput", b"second", "b.txt")
        waited = time.monotonic() - start
    print(f"\nwaited {waited:.2f} s")
    assert proxy.counts["status"] == 1
    assert 2.5 <= waited <= 2.5 + _throttle.THROTTLED_WINDOW[0] + 2


def test_on_throttled_is_told_of_each_throttled_answer(
    proxy: FaultProxy, prepared: str, fast_windows: None
) -> None:
    """``on_throttled=`` (a constructor's keyword) is called at each throttled answer to the storage's
    requests, as the command line's notice is; it needs batchfiles' retry policy."""
    proxy.add_rule("status", _to("/b.txt"), times=2, retry_after_s=0.01)
    heard: list[str] = []
    with _storage(proxy, prepared, on_throttled=lambda: heard.append("busy")) as storage:
        storage.save_bytes("TaskOutput", b"first", "a.txt")
        assert heard == []
        storage.save_bytes("TaskOutput", b"second", "b.txt")
    assert heard == ["busy", "busy"]
    with pytest.raises(TypeError, match="callable"):
        _storage(proxy, prepared, on_throttled="yes")
    with pytest.raises(ValueError, match="retry_policy"):
        _storage(proxy, prepared, on_throttled=print, retry_policy=ExponentialRetry())


def test_an_on_throttled_that_raises_never_breaks_the_request(
    proxy: FaultProxy, prepared: str, fast_windows: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller's ``on_throttled`` raising (a notice printed to a closed pipe) is logged; the save is
    retried and succeeds as with no listener, and the pacing of saves still hears of it."""

    def broken() -> None:
        raise BrokenPipeError("stderr went away")

    proxy.add_rule("status", _to("/b.txt"), times=1, retry_after_s=0.01)
    with _storage(proxy, prepared, on_throttled=broken) as storage:
        storage.save_bytes("TaskOutput", b"first", "a.txt")
        storage.save_bytes("TaskOutput", b"second", "b.txt")
        assert storage.get("TaskOutput", "b.txt").download_bytes() == b"second"
    assert proxy.counts["status"] == 1
    assert "on_throttled" in caplog.text and "stderr went away" in caplog.text


def test_tasks_throttled_together_retry_spread_out(
    proxy: FaultProxy, seen: list[tuple[float, str]], prepared: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve tasks refused at once with ``Retry-After: 0.5``: each retry comes after 0.5 s plus the wait
    the policy drew, and those waits spread over the jitter window instead of bringing them back together.
    The spread is checked on the drawn waits (a stall of a loaded machine would bunch arrivals anyway)."""
    drawn: dict[str, float] = {}  # thread name (the blob's name) -> the wait before its retry
    backoff = _throttle.throttled_backoff

    def spy(n: int, after: float | None, rng: random.Random) -> float:
        wait = backoff(n, after, rng)
        drawn[threading.current_thread().name] = wait
        return wait

    monkeypatch.setattr(_throttle, "throttled_backoff", spy)
    first: set[str] = set()

    def refuse_first(request: Request) -> bool:
        if request.path in first:
            return False
        first.add(request.path)
        return True

    proxy.add_rule("status", refuse_first, retry_after_s=0.5)
    storages = [_storage(proxy, prepared) for _ in range(12)]
    threads = [
        threading.Thread(target=s.save_bytes, args=("TaskOutput", b"x", f"f{i}.txt"), name=f"f{i}.txt")
        for i, s in enumerate(storages)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for storage in storages:
        storage.close()
    arrivals: dict[str, list[float]] = {}
    for at, path in seen:
        arrivals.setdefault(path, []).append(at)
    assert len(arrivals) == 12 and all(len(times) == 2 for times in arrivals.values())
    waits = {path.rsplit("/", 1)[-1]: retry - refused for path, (refused, retry) in arrivals.items()}
    print(f"\ndrawn {sorted(round(w, 2) for w in drawn.values())}")
    print(f"waited {sorted(round(w, 2) for w in waits.values())}")
    assert sorted(drawn) == sorted(waits)
    assert all(0.5 <= drawn[name] <= 0.5 + _throttle.THROTTLED_WINDOW[0] for name in drawn)
    assert all(drawn[name] <= waits[name] <= drawn[name] + 2 for name in waits)  # +2: a loaded machine
    spread = sorted(drawn.values())
    assert spread[-1] - spread[0] >= 0.5
    assert max(sum(1 for t in spread if start <= t < start + 0.2) for start in spread) <= 6


def test_throttled_retries_have_their_own_budget(
    proxy: FaultProxy, seen: list[tuple[float, str]], prepared: str, fast_windows: None
) -> None:
    """Throttled tries spend ``retry_throttled`` (default THROTTLED_RETRIES, much more than the 3 status
    retries of azure-storage-blob), then the error names the blob and says the account throttled."""
    proxy.add_rule("status", _to("/busy.txt"), status=503)
    gave_up = r"throttled the account: gave up on '.*busy\.txt'"
    with _storage(proxy, prepared) as storage, pytest.raises(BatchFilesError, match=gave_up) as err:
        storage.save_bytes("TaskOutput", b"x", "busy.txt")
    assert "ServerBusy" in str(err.value) and "Traceback" not in str(err.value)
    assert _attempts(seen, "/busy.txt") == _throttle.THROTTLED_RETRIES + 1
    with _storage(proxy, prepared, retry_throttled=2) as storage, pytest.raises(BatchFilesError):
        storage.save_bytes("TaskOutput", b"x", "busy.txt")
    assert _attempts(seen, "/busy.txt") == _throttle.THROTTLED_RETRIES + 1 + 3


def test_a_users_retry_total_bounds_throttled_retries_too(
    proxy: FaultProxy, seen: list[tuple[float, str]], prepared: str, fast_windows: None
) -> None:
    proxy.add_rule("status", _to("/busy.txt"), status=503)
    with (
        _storage(proxy, prepared, retry_total=1) as storage,
        pytest.raises(BatchFilesError, match="throttled"),
    ):
        storage.save_bytes("TaskOutput", b"x", "busy.txt")
    assert _attempts(seen, "/busy.txt") == 2
    conn = connection_string(proxy.url_for(ACCOUNT_NAME))
    name = naming.container_name(prepared)
    container = ContainerClient.from_connection_string(conn, name, **_urls.client_kwargs({}))
    with container, pytest.raises(HttpResponseError, match="ServerBusy"):
        container.upload_blob("t1/$TaskOutput/busy.txt", b"x", overwrite=True, retry_total=0)
    assert _attempts(seen, "/busy.txt") == 3  # one try: the call's retry_total won


def test_other_failures_keep_the_sdk_budget(
    proxy: FaultProxy, seen: list[tuple[float, str]], prepared: str
) -> None:
    """500 InternalError is not throttling: as many tries as azure-storage-blob's own ExponentialRetry."""
    fast = {"initial_backoff": 0.01, "increment_base": 0.01, "random_jitter_range": 0.001}
    proxy.add_rule("status", _to("/broken.txt"), status=500)
    with _storage(proxy, prepared, **fast) as storage, pytest.raises(BatchFilesError, match="InternalError"):
        storage.save_bytes("TaskOutput", b"x", "broken.txt")
    ours = _attempts(seen, "/broken.txt")
    sdk = ExponentialRetry(retry_total=_urls.RETRY_DEFAULTS["retry_total"], **fast)
    with _storage(proxy, prepared, retry_policy=sdk) as storage, pytest.raises(BatchFilesError):
        storage.save_bytes("TaskOutput", b"x", "broken.txt")
    assert ours == _attempts(seen, "/broken.txt") - ours > 1


def test_429_and_operation_timed_out_are_retried_as_throttling(
    proxy: FaultProxy, seen: list[tuple[float, str]], prepared: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy.add_rule("status", _to("/many.txt"), times=2, status=429)  # azure-storage-blob never retries 429
    with _storage(proxy, prepared) as storage:
        monkeypatch.setattr(_throttle, "THROTTLED_WINDOW", (0.01, 0.01))
        monkeypatch.setattr(_throttle, "NO_RETRY_AFTER", 0.01)  # answers without Retry-After
        assert storage.save_bytes("TaskOutput", b"x", "many.txt").size == 1
        assert _attempts(seen, "/many.txt") == 3
    # one request per 2 s, refused with 500 OperationTimedOut (no Retry-After): retries and the gaps between
    # starts kept under 0.05 s, so tens of retries, far more than the 3 azure-storage-blob allows a 500, even
    # on a loaded machine (and a budget no run can spend in 2 s)
    monkeypatch.setattr(_throttle, "THROTTLED_WINDOW", (0.05, 0.05))
    monkeypatch.setattr(_throttle, "NO_RETRY_AFTER", 0.05)  # answers without Retry-After
    monkeypatch.setattr(_throttle, "FIRST_GAP", 0.05)
    monkeypatch.setattr(_throttle, "MAX_GAP", 0.05)
    with _storage(proxy, prepared, retry_throttled=1000) as storage:
        proxy.set_throttle(
            Throttle(requests_per_s=0.5, burst_requests=1, retry_after_s=None, timeout_share=1)
        )
        storage.save_bytes("TaskOutput", b"x", "slow1.txt")
        storage.save_bytes("TaskOutput", b"x", "slow2.txt")
    assert proxy.counts["timed_out"] > 3, proxy.counts


def test_the_async_client_gets_the_async_policy(
    proxy: FaultProxy, seen: list[tuple[float, str]], prepared: str, fast_windows: None
) -> None:
    proxy.add_rule("status", _to("/busy.txt"), status=503)
    proxy.add_rule("status", _to("/many.txt"), times=2, status=429)
    conn = connection_string(proxy.url_for(ACCOUNT_NAME))

    async def main() -> None:
        async with aio.TaskOutputStorage.from_connection_string(conn, prepared, "t1", retry_throttled=3) as s:
            assert isinstance(s._container._config.retry_policy, _throttle.AsyncThrottleRetry)
            assert (await s.save_bytes("TaskOutput", b"x", "many.txt")).size == 1
            with pytest.raises(BatchFilesError, match=r"throttled the account: gave up on '.*busy\.txt'"):
                await s.save_bytes("TaskOutput", b"x", "busy.txt")

    asyncio.run(main())
    assert (_attempts(seen, "/many.txt"), _attempts(seen, "/busy.txt")) == (3, 4)


def test_retry_throttled_is_checked_and_never_reaches_the_sdk() -> None:
    options = _urls.client_kwargs({"retry_throttled": 4})
    assert "retry_throttled" not in options and options["retry_policy"].retry_throttled == 4
    assert _urls.client_kwargs({"retry_total": 2})["retry_policy"].retry_throttled is None
    mine = ExponentialRetry()
    assert _urls.client_kwargs({"retry_policy": mine, "retry_throttled": 1})["retry_policy"] is mine
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="retry_throttled"):
            _urls.client_kwargs({"retry_throttled": bad})


# --- AIMD, sans-IO ------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _aimd() -> tuple[Aimd, Clock]:
    clock = Clock()
    return Aimd(clock, random.Random(14)), clock


def test_no_limit_and_no_gap_until_throttled() -> None:
    aimd, _ = _aimd()
    assert aimd.limit is None and aimd.gap == 0
    tickets = [aimd.start() for _ in range(16)]
    assert aimd.delay() == 0  # full concurrency from the first request
    for _ in range(16):
        aimd.succeeded()
    assert aimd.limit is None and aimd.gap == 0 and tickets == [0] * 16


def test_a_throttled_answer_to_another_request_paces_saves_not_paced_yet() -> None:
    aimd, _ = _aimd()
    aimd.heard()
    assert aimd.gap == _throttle.FIRST_GAP and aimd.limit is None and aimd.cuts == 0
    delay = aimd.delay()
    assert delay is not None and 0.5 * _throttle.FIRST_GAP <= delay <= 1.5 * _throttle.FIRST_GAP
    aimd.throttled(aimd.start())
    gap = aimd.gap
    assert gap == 2 * _throttle.FIRST_GAP
    aimd.heard()
    assert aimd.gap == gap  # paced already: others' throttled answers do not slow it further


def test_a_throttled_round_cuts_once() -> None:
    aimd, clock = _aimd()
    tickets = [aimd.start() for _ in range(8)]
    aimd.throttled(tickets[0])
    assert aimd.limit == 4 and aimd.cuts == 1
    for ticket in tickets[1:]:
        aimd.throttled(ticket)  # the same round: answered by that cut
    assert aimd.limit == 4 and aimd.gap == _throttle.FIRST_GAP
    for _ in range(8):
        aimd.end()
    clock.now += 100
    later = [aimd.start() for _ in range(4)]  # started since the cut: a new round
    aimd.throttled(later[0])
    assert aimd.limit == 2 and aimd.gap == 2 * _throttle.FIRST_GAP
    for _ in range(4):
        aimd.end()
    for _ in range(10):
        aimd.throttled(aimd.start())
        aimd.end()
    assert aimd.limit == 1 and aimd.gap == _throttle.MAX_GAP


def test_the_gap_spaces_starts_and_eases_with_successes() -> None:
    aimd, clock = _aimd()
    aimd.throttled(aimd.start())
    aimd.end()
    delay = aimd.delay()
    assert delay is not None and 0.5 * _throttle.FIRST_GAP <= delay <= 1.5 * _throttle.FIRST_GAP
    clock.now += delay
    assert aimd.delay() == 0
    aimd.start()
    aimd.succeeded()
    assert aimd.gap == pytest.approx(_throttle.FIRST_GAP / _throttle.GAP_EASE)
    while aimd.gap:
        aimd.succeeded()
    assert aimd.delay() in (0, None)
    aimd.end()
    assert aimd.delay() == 0


def test_the_limit_grows_back_and_goes() -> None:
    aimd, _ = _aimd()
    tickets = [aimd.start() for _ in range(4)]
    aimd.throttled(tickets[0])
    assert aimd.limit == 2
    for _ in range(4):
        aimd.end()
    successes = 0
    while aimd.limit is not None:
        aimd.succeeded()
        successes += 1
    assert 4 <= successes <= 8  # 1/2 + 1/2.5 + ... until past the peak of 4


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["start", "end", "ok", "busy", "tick"]), max_size=300), st.integers(0, 99))
def test_aimd_invariants(steps: list[str], seed: int) -> None:
    clock = Clock()
    aimd = Aimd(clock, random.Random(seed))
    tickets: list[int] = []
    for step in steps:
        if step == "start" and aimd.delay() == 0:
            tickets.append(aimd.start())
        elif step == "end" and tickets:
            tickets.pop(0)
            aimd.end()
        elif step == "ok":
            aimd.succeeded()
        elif step == "busy" and tickets:
            aimd.throttled(tickets[-1])
        elif step == "tick":
            clock.now += 0.3
        assert aimd.in_flight == len(tickets)
        assert aimd.limit is None or aimd.limit >= 1
        assert aimd.gap == 0 or _throttle.MIN_GAP <= aimd.gap <= _throttle.MAX_GAP
        delay = aimd.delay()
        full = aimd.limit is not None and aimd.in_flight >= int(aimd.limit)
        assert (delay is None) == full
        assert delay is None or 0 <= delay <= 1.5 * aimd.gap


# --- the drivers --------------------------------------------------------------------------------------------


def _answer(status: int, code: str | None = None) -> SimpleNamespace:
    headers = {"x-ms-error-code": code} if code else {}
    return SimpleNamespace(http_response=SimpleNamespace(status_code=status, headers=headers))


def test_threads_share_the_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight threads through one Slots: never more in flight than the limit, which a throttled answer cuts
    and successes grow; starts are spaced by the gap."""
    monkeypatch.setattr(_throttle, "FIRST_GAP", 0.05)
    slots = Slots()
    lock = threading.Lock()
    in_flight, most, starts, over = [0], [0], [], []

    def worker(n: int) -> None:
        for i in range(6):
            with slots.slot() as hook:
                with lock:
                    in_flight[0] += 1
                    most[0] = max(most[0], in_flight[0])
                    starts.append(time.monotonic())
                    limit = slots.aimd.limit
                    if limit is not None and in_flight[0] > int(limit):
                        over.append((in_flight[0], limit))
                time.sleep(0.002)
                hook(_answer(503, "ServerBusy") if (n, i) == (0, 3) else _answer(201))
                with lock:
                    in_flight[0] -= 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert over == [] and len(starts) == 48 and slots.aimd.cuts == 1 and most[0] >= 2


def test_tasks_share_the_async_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_throttle, "FIRST_GAP", 0.05)

    async def main() -> tuple[AsyncSlots, int, list[float]]:
        slots = AsyncSlots()
        in_flight, most, starts = [0], [0], []

        async def worker(n: int) -> None:
            for i in range(6):
                async with slots.slot() as hook:
                    in_flight[0] += 1
                    most[0] = max(most[0], in_flight[0])
                    starts.append(time.monotonic())
                    limit = slots.aimd.limit
                    assert limit is None or in_flight[0] <= int(limit)
                    await asyncio.sleep(0.002)
                    hook(_answer(503) if (n, i) == (0, 3) else _answer(201))
                    in_flight[0] -= 1

        await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(8))), 20)
        return slots, most[0], starts

    slots, most, starts = asyncio.run(main())
    assert len(starts) == 48 and slots.aimd.cuts == 1 and most >= 2


def test_a_throttled_answer_spaces_the_next_starts() -> None:
    slots = Slots(clock=time.monotonic)
    with slots.slot() as hook:
        hook(_answer(503, "ServerBusy"))
    start = time.monotonic()
    with slots.slot():
        pass
    assert time.monotonic() - start >= 0.5 * _throttle.FIRST_GAP - 0.01


def test_the_clients_policy_tells_the_slots_of_other_throttled_requests(
    proxy: FaultProxy, prepared: str, fast_windows: None
) -> None:
    """A throttled answer to a request that is not a save (here a properties read, as a tracked save makes)
    paces the saves of the same container before they send anything."""
    proxy.add_rule("status", lambda request: request.method == "HEAD", times=1, status=503)
    with _storage(proxy, prepared) as storage:
        storage.save_text("TaskOutput", "x", "x.txt")
        assert storage._slots.aimd.gap == 0
        assert storage.get("TaskOutput", "x.txt").size == 1  # answered 503 once, then served
        assert storage._slots.aimd.gap == _throttle.FIRST_GAP and storage._slots.aimd.cuts == 0
        conn = connection_string(proxy.url_for(ACCOUNT_NAME))
        with TaskOutputStorage.from_connection_string(conn, prepared, "t1") as other:
            assert other._slots is not storage._slots and other._slots.aimd.gap == 0


def test_saves_feed_the_slots_of_their_container(
    proxy: FaultProxy, prepared: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """save_many through an account throttled to 10 requests/s, and a block upload with a throttled block:
    the storage's slots saw the throttled answers (and cut), every file is saved, and a storage of the same
    container shares the slots."""
    monkeypatch.setattr(_throttle, "THROTTLED_WINDOW", (0.2, 0.5))
    monkeypatch.setattr(_throttle, "NO_RETRY_AFTER", 0.2)  # answers without Retry-After
    monkeypatch.setattr(_throttle, "FIRST_GAP", 0.1)
    for i in range(12):
        (tmp_path / f"f{i}.txt").write_bytes(bytes([i]) * 100)
    (tmp_path / "big.bin").write_bytes(random.Random(14).randbytes(3 * 1024 * 1024))
    proxy.set_throttle(Throttle(requests_per_s=10, burst_requests=2, retry_after_s=0.1))
    with _storage(proxy, prepared) as storage:
        refs = storage.save_many("TaskOutput", "*.txt", base_dir=tmp_path)
        assert len(refs) == 12 and storage._slots.aimd.cuts >= 1
        cuts = storage._slots.aimd.cuts
        proxy.set_throttle(None)
        proxy.add_rule("status", lambda request: "comp=block" in request.query, times=1)
        ref = storage.save("TaskOutput", tmp_path / "big.bin", "big.bin", block_size=256 * 1024)
        assert ref.size == 3 * 1024 * 1024 and storage._slots.aimd.cuts > cuts
        assert TaskOutputStorage._from_container(storage._container, "t2")._slots is storage._slots
    assert proxy.counts["throttled"] > 0 and proxy.counts["status"] == 1
