"""The schedule of a tracked save, alone with a fake clock: due times, flush tickets, close, backoff."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from batchfiles._tracking import Outcome, Schedule, Step, limits
from hypothesis import given, settings
from hypothesis import strategies as st

START = 1000.0
INTERVAL = 5.0


def schedule(**options: Any) -> Schedule:
    return Schedule(START, **{"flush_interval": INTERVAL, "settle": 1.0, "linger": 5.0, **options})


def run(
    sched: Schedule, now: float, *, appended: int = 0, grew: bool = False, file_seen: bool = True
) -> Outcome:
    """Begin the step due at ``now`` and let it succeed, caught up; ``grew``: it saw the file change."""
    outcome = sched.begin(now)
    assert outcome is not None, f"nothing due at {now}"
    done = replace(outcome, appended=appended, grew=grew, caught_up=True)
    sched.succeeded(done, now, file_seen=file_seen)
    return outcome


def test_watches_come_every_interval_aligned_and_uploads_every_flush_interval() -> None:
    sched = schedule()
    assert sched.wake_at() == START + limits.WATCH_INTERVAL
    assert sched.begin(START + 0.1) is None
    assert run(sched, START + 0.3).step is Step.WATCH
    assert sched.wake_at() == START + 0.5  # on the grid, so one wake-up serves every save
    now = START + 0.5
    while sched.wake_at() < START + INTERVAL:
        now = sched.wake_at()
        assert run(sched, now).step is Step.WATCH
    assert sched.wake_at() == START + INTERVAL
    upload = run(sched, START + INTERVAL + 0.2)  # a late start: the next one still counts from its start
    assert upload.step is Step.UPLOAD
    assert run(sched, START + INTERVAL + 0.3).step is Step.WATCH  # the watch that was due meanwhile
    while sched.wake_at() < START + 2 * INTERVAL + 0.2:
        assert run(sched, sched.wake_at()).step is Step.WATCH
    assert sched.wake_at() == START + 2 * INTERVAL + 0.2
    assert sched.begin(START + 2 * INTERVAL + 0.2).step is Step.UPLOAD


def test_a_step_out_of_time_goes_on_at_once() -> None:
    sched = schedule()
    outcome = sched.begin(START + 1.0)
    assert outcome is not None
    assert outcome.step is Step.WATCH
    sched.succeeded(replace(outcome, appended=10, caught_up=False), START + 1.5, file_seen=True)
    assert sched.wake_at() <= START + 1.5
    assert run(sched, START + 1.5).step is Step.WATCH  # full blocks first
    assert sched.wake_at() == START + 1.5
    assert sched.begin(START + 1.5).step is Step.UPLOAD  # then the rest, whatever its size


def test_a_flush_step_completes_the_tickets_taken_before_it_began() -> None:
    sched = schedule()
    first, second = sched.request_flush(), sched.request_flush()
    assert (first, second) == (1, 2)
    assert sched.wake_at() <= START  # due at once
    outcome = sched.begin(START)
    assert outcome is not None
    assert (outcome.step, outcome.ticket) == (Step.FLUSH, 2)
    third = sched.request_flush()  # asked while the step runs: the step may miss its bytes
    sched.succeeded(replace(outcome, caught_up=True), START + 0.1, file_seen=True)
    assert sched.flushed(first)
    assert sched.flushed(second)
    assert not sched.flushed(third)
    assert run(sched, START + 0.1).step is Step.FLUSH
    assert sched.flushed(third)
    assert sched.wake_at() == START + limits.WATCH_INTERVAL  # back to the regular steps


def test_close_flushes_then_waits_until_the_file_settles() -> None:
    sched = schedule(settle=1.0, linger=5.0)
    sched.request_close(START)
    sched.request_close(START + 0.01)  # idempotent
    assert run(sched, START, appended=100, grew=True).step is Step.FLUSH
    assert not sched.closed
    now = START
    for _ in range(5):  # still growing: polled every SETTLE_POLL
        assert sched.wake_at() == pytest.approx(now + limits.SETTLE_POLL)
        now = sched.wake_at()
        assert run(sched, now, appended=1, grew=True).step is Step.FLUSH
    grew = now
    while sched.wake_at() < grew + 1.0:
        now = sched.wake_at()
        assert run(sched, now).step is Step.FLUSH
    now = sched.wake_at()
    outcome = sched.begin(now)
    assert outcome is not None
    assert sched.succeeded(replace(outcome, caught_up=True), now, file_seen=True)  # settled
    assert now - grew == pytest.approx(1.0, abs=limits.SETTLE_POLL)
    assert run(sched, sched.wake_at()).step is Step.CONFIRM
    assert sched.closed
    assert sched.wake_at() == math.inf
    assert sched.begin(math.inf) is None
    assert sched.flushed(10**6)


def test_close_gives_up_after_linger_when_the_file_keeps_growing_or_never_appears() -> None:
    for file_seen, appended in ((True, 1), (False, 0)):
        sched = schedule(settle=1.0, linger=0.5)
        sched.request_close(START)
        now = START
        while True:
            outcome = sched.begin(now)
            assert outcome is not None
            assert outcome.step is Step.FLUSH
            done = replace(outcome, appended=appended, grew=bool(appended), caught_up=True)
            if sched.succeeded(done, now, file_seen=file_seen):
                break
            now = sched.wake_at()
        assert now - START == pytest.approx(0.5, abs=limits.SETTLE_POLL)
        confirm = sched.begin(now)
        assert confirm is not None
        assert confirm.step is Step.CONFIRM


def settled_at(sched: Schedule, now: float, *, appended: int = 0, grew: bool = False) -> float:
    """Run the close's steps from ``now`` (the first one with ``appended`` and ``grew``, the others seeing
    no change) until it settles; the time it did. The confirm step is then due at once."""
    while True:
        outcome = sched.begin(now)
        assert outcome is not None
        assert outcome.step is Step.FLUSH
        done = replace(outcome, appended=appended, grew=grew, caught_up=True)
        if sched.succeeded(done, now, file_seen=True):
            assert run(sched, sched.wake_at()).step is Step.CONFIRM
            assert sched.closed
            return now
        appended, grew, now = 0, False, sched.wake_at()


def test_an_idle_file_closes_right_after_its_final_flush() -> None:
    """The settle window counts from the last step that saw the file change, not from the close: bytes
    already there are no growth, even when the final flush is what sends them."""
    sched = schedule(settle=1.0, linger=5.0)
    now = START
    while now < START + 1.0:  # watched, idle, for a settle window since the start
        now = sched.wake_at()
        run(sched, now)
    sched.request_close(now)
    assert settled_at(sched, now, appended=4096) == now


def test_a_close_soon_after_the_start_waits_a_window_from_the_start() -> None:
    sched = schedule(settle=1.0, linger=5.0)
    sched.request_close(START + 0.2)
    assert settled_at(sched, START + 0.2) - START == pytest.approx(1.0, abs=limits.SETTLE_POLL)


def test_the_window_counts_from_the_last_change_seen() -> None:
    sched = schedule(settle=1.0, linger=5.0)
    grew = START + 0.5
    run(sched, START + 0.25)
    run(sched, grew, grew=True)  # a watch saw the file grow (not a full block: nothing sent)
    sched.request_close(grew + 0.3)
    assert settled_at(sched, grew + 0.3) - grew == pytest.approx(1.0, abs=limits.SETTLE_POLL)


def test_a_change_seen_by_the_final_flush_waits_a_whole_window() -> None:
    sched = schedule(settle=1.0, linger=5.0)
    now = START + 2.0
    sched.request_close(now)  # written just before the close: the final read sees it
    assert settled_at(sched, now, appended=10, grew=True) - now == pytest.approx(1.0, abs=limits.SETTLE_POLL)


def test_a_change_seen_by_a_failed_step_counts_too() -> None:
    sched = schedule(settle=1.0, linger=5.0)
    now = START + 3.0
    sched.request_close(now)
    outcome = sched.begin(now)
    assert outcome is not None
    assert sched.failed(replace(outcome, grew=True, error=OSError()), now, retry=True) is not None
    assert settled_at(sched, sched.wake_at()) - now >= 1.0


def test_a_final_close_skips_settle_and_linger_even_once_closing() -> None:
    sched = schedule(settle=60.0, linger=600.0)
    sched.request_close(START)
    run(sched, START, appended=1)
    sched.request_close(START + 0.05, final=True)  # at interpreter exit
    now = sched.wake_at()
    outcome = sched.begin(now)
    assert outcome is not None
    assert sched.succeeded(replace(outcome, caught_up=True), now, file_seen=True)
    assert run(sched, sched.wake_at()).step is Step.CONFIRM
    assert sched.closed


def test_failures_back_off_doubling_then_the_error_is_kept() -> None:
    sched = schedule()
    sched.request_flush()
    now, delays = START, []
    while True:
        outcome = sched.begin(now)
        assert outcome is not None
        assert outcome.step is Step.FLUSH
        delay = sched.failed(replace(outcome, error=OSError("refused")), now, retry=True)
        if delay is None:
            break
        delays.append(delay)
        assert sched.wake_at() == now + delay
        assert sched.begin(now + delay / 2) is None  # a flush waits for the backoff too
        now += delay
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert sched.failures == limits.MAX_FAILED_STEPS


def test_backoff_is_capped_and_a_success_resets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "BACKOFF", (1.0, 3.0))
    monkeypatch.setattr(limits, "MAX_FAILED_STEPS", 10)
    sched = schedule()
    now, delays = START + INTERVAL, []
    for _ in range(4):
        outcome = sched.begin(now)
        assert outcome is not None
        delays.append(sched.failed(outcome, now, retry=True))
        now = sched.wake_at()
    assert delays == [1.0, 2.0, 3.0, 3.0]
    run(sched, now)
    assert sched.failures == 0
    outcome = sched.begin(sched.wake_at())
    assert outcome is not None
    assert sched.failed(outcome, now, retry=True) == 1.0


def test_an_error_not_worth_retrying_is_kept_at_once() -> None:
    sched = schedule()
    outcome = sched.begin(START + INTERVAL)
    assert outcome is not None
    assert sched.failed(outcome, START + INTERVAL, retry=False) is None
    assert sched.failures == 1


def test_regular_uploads_coalesce_as_the_blocks_run_out() -> None:
    sched = schedule(flush_interval=5)
    now = START
    assert sched.min_bytes(Step.UPLOAD, now, 0) == 0
    assert sched.min_bytes(Step.UPLOAD, now, limits.MAX_BLOCKS // 2) == limits.COALESCE_BYTES
    assert sched.min_bytes(Step.UPLOAD, now, limits.MAX_BLOCKS - 1) == limits.MAX_BLOCK
    # nothing sent for long: send anyway
    assert sched.min_bytes(Step.UPLOAD, now + 5 * limits.STALE_INTERVALS, limits.MAX_BLOCKS - 1) == 0
    assert sched.min_bytes(Step.FLUSH, now, limits.MAX_BLOCKS - 1) == 0  # flushes never wait
    assert sched.min_bytes(Step.WATCH, now, 0) == limits.MAX_BLOCK  # watches send full blocks only


# --- throttling: patience in time, Retry-After and jitter, coalescing that eases off ---------------------


def fail_throttled(sched: Schedule, now: float, retry_after: float | None = 1.0) -> float | None:
    outcome = sched.begin(now)
    assert outcome is not None, f"nothing due at {now}"
    return sched.failed(outcome, now, retry=True, throttled=True, retry_after=retry_after)


def test_throttling_is_retried_after_retry_after_plus_jitter_until_the_patience_runs_out() -> None:
    sched = schedule(jitter=lambda: 0.5)
    sched.request_flush()
    now, delays = START, []
    while (delay := fail_throttled(sched, now, retry_after=2.0)) is not None:
        delays.append(delay)
        assert sched.wake_at() == now + delay
        now += delay
    first, most = limits.THROTTLED_BACKOFF
    assert delays[:4] == [2.0 + 0.5 * first * 2**n for n in range(4)]  # the answer's wait, then jitter
    assert max(delays) == 2.0 + 0.5 * most
    assert len(delays) > 3 * limits.MAX_FAILED_STEPS  # far more patient than with faults...
    assert limits.THROTTLED_PATIENCE <= now - START < limits.THROTTLED_PATIENCE + 2.0 + most  # ... in time
    assert sched.failing_for(now) == now - START


def test_without_retry_after_throttling_waits_the_first_backoff_and_a_long_one_is_capped() -> None:
    first, most = limits.THROTTLED_BACKOFF
    for retry_after, floor in ((None, first), (0.0, 0.0), (10**6, most)):
        sched = schedule(jitter=lambda: 0.0)
        sched.request_flush()
        assert fail_throttled(sched, START, retry_after) == floor


def test_full_jitter_spreads_the_retries_of_saves_throttled_at_once() -> None:
    import random

    rng = random.Random(14)
    delays = []
    for _ in range(200):
        sched = schedule(jitter=rng.random)
        sched.request_flush()
        for n in range(3):
            delay = fail_throttled(sched, START + 10 * n, retry_after=1.0)
        delays.append(delay)
    assert min(delays) >= 1.0
    assert max(delays) <= 1.0 + 4 * limits.THROTTLED_BACKOFF[0]
    assert len({round(d, 1) for d in delays}) > 20  # not in lockstep


def test_a_fault_among_throttling_counts_apart_and_a_success_resets_both() -> None:
    sched = schedule(jitter=lambda: 0.0)
    sched.request_flush()
    now = START
    for _ in range(limits.MAX_FAILED_STEPS + 3):  # throttled steps do not use up the faults' count
        now += fail_throttled(sched, now)
    outcome = sched.begin(now)
    assert outcome is not None
    assert sched.failed(outcome, now, retry=True) == limits.BACKOFF[0]  # the first fault of the run
    now = sched.wake_at()
    run(sched, now)
    assert sched.failures == 0
    assert sched.failing_for(now) == 0.0
    sched.request_flush()
    for n in range(limits.MAX_FAILED_STEPS - 1):
        outcome = sched.begin(sched.wake_at())
        assert outcome is not None
        assert sched.failed(outcome, sched.wake_at(), retry=True) == limits.BACKOFF[0] * 2**n
    outcome = sched.begin(sched.wake_at())
    assert outcome is not None
    assert sched.failed(outcome, sched.wake_at(), retry=True) is None


def test_throttling_makes_regular_uploads_coalesce_more_up_to_a_full_block() -> None:
    sched = schedule(jitter=lambda: 0.0)
    now = START + INTERVAL
    assert sched.min_bytes(Step.UPLOAD, now, 0) == 0
    wanted = []
    for _ in range(limits.MAX_PRESSURE + 2):
        outcome = sched.begin(sched.wake_at())
        assert outcome is not None
        now = sched.wake_at()
        sched.failed(replace(outcome, appended=1), now, retry=True, throttled=True, retry_after=0.0)
        wanted.append(sched.min_bytes(Step.UPLOAD, now, 0))
    assert wanted[:3] == [limits.THROTTLED_BYTES, 2 * limits.THROTTLED_BYTES, 4 * limits.THROTTLED_BYTES]
    assert wanted[-1] == limits.MAX_BLOCK  # never more than a block
    assert wanted == sorted(wanted)
    assert sched.pressure == limits.MAX_PRESSURE
    assert sched.min_bytes(Step.FLUSH, now, 0) == 0  # a flush still sends everything
    assert sched.min_bytes(Step.WATCH, now, 0) == limits.MAX_BLOCK
    stale = now + limits.STALE_INTERVALS * INTERVAL
    assert sched.min_bytes(Step.UPLOAD, stale, 0) == 0  # nothing sent for long: sent anyway


def test_coalescing_eases_off_one_level_per_relief_time_of_appends_without_throttling() -> None:
    sched = schedule(jitter=lambda: 0.0)
    now = START
    for _ in range(3):
        now = sched.wake_at()
        fail_throttled(sched, now, retry_after=0.0)
    assert sched.pressure == 3
    throttled_at = now
    levels = []
    while sched.pressure and now < throttled_at + 10 * limits.PRESSURE_RELIEF:
        now = sched.wake_at()
        run(sched, now, appended=100)
        levels.append((now - throttled_at, sched.pressure))
    first_fall = next(t for t, level in levels if level < 3)
    assert limits.PRESSURE_RELIEF <= first_fall < limits.PRESSURE_RELIEF + INTERVAL
    assert sched.pressure == 0
    assert levels[-1][0] < 3 * limits.PRESSURE_RELIEF + INTERVAL
    # steps that append nothing are no evidence: the level stays
    sched = schedule(jitter=lambda: 0.0)
    fail_throttled(sched, sched.wake_at(), retry_after=0.0)
    for _ in range(int(3 * limits.PRESSURE_RELIEF / INTERVAL)):
        run(sched, sched.wake_at())
    assert sched.pressure == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(st.none(), st.floats(0, 10**4)), st.floats(0, 0.999)), min_size=1),
)
def test_any_throttled_run_waits_at_least_what_was_asked_and_gives_up_only_after_the_patience(
    answers: list[tuple[float | None, float]],
) -> None:
    first, most = limits.THROTTLED_BACKOFF
    draws = iter([j for _, j in answers])
    sched = schedule(jitter=lambda: next(draws))
    sched.request_flush()
    now = START
    for retry_after, jitter in answers:
        delay = fail_throttled(sched, now, retry_after)
        if delay is None:
            assert now - START >= limits.THROTTLED_PATIENCE
            return
        floor = first if retry_after is None else min(retry_after, most)
        assert floor <= delay <= floor + jitter * most + 1e-9
        assert sched.wake_at() == now + delay
        assert 1 <= sched.pressure <= limits.MAX_PRESSURE
        now += delay
    assert now - START - delay < limits.THROTTLED_PATIENCE


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("sleep"), st.floats(0, 3)),
        st.tuples(st.just("flush"), st.none()),
        st.tuples(st.just("close"), st.booleans()),  # final or not
        st.tuples(st.just("step"), st.sampled_from(["ok", "grew", "slow", "retry", "fail", "throttled"])),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.floats(0, 2), st.floats(0, 2))
def test_any_run_keeps_the_schedule_consistent_and_a_close_ends(
    events: list[tuple[str, object]], settle: float, linger: float
) -> None:
    """Whatever happens: a step is due exactly from wake_at on; a flushed ticket stays flushed, and every
    ticket taken before a flush step began is flushed once it succeeds; once closed, nothing is due. A
    close whose steps succeed ends within linger and a few polls."""
    sched = schedule(settle=settle, linger=linger)
    now, tickets, flushed, kept = START, [], set(), False
    for event, value in events:
        if event == "sleep":
            now += value
        elif event == "flush":
            tickets.append(sched.request_flush())
        elif event == "close":
            sched.request_close(now, final=bool(value))
        else:
            due = sched.begin(now)
            assert (due is None) == (now < sched.wake_at())
            if due is None:
                continue
            if value in ("retry", "fail", "throttled"):
                failed = replace(due, error=OSError())
                throttled = value == "throttled"
                kept = sched.failed(failed, now, retry=value != "fail", throttled=throttled) is None
                if kept:
                    sched.close()
                    break
                continue
            done = replace(
                due, appended=int(value == "grew"), grew=value == "grew", caught_up=value != "slow"
            )
            sched.succeeded(done, now, file_seen=True)
            if due.step is Step.FLUSH and done.caught_up:
                assert all(sched.flushed(t) for t in tickets if t <= due.ticket)
        flushed |= {t for t in tickets if sched.flushed(t)}
        assert all(sched.flushed(t) for t in flushed)
    if kept:
        assert sched.closed
        assert sched.wake_at() == math.inf
        return
    closing_at = now
    sched.request_close(now)
    for _ in range(int((linger + 1) / limits.SETTLE_POLL) + 10):
        if sched.closed:
            break
        now = max(now, sched.wake_at())
        run(sched, now)
    assert sched.closed
    longest_backoff = max(limits.BACKOFF[1], limits.THROTTLED_BACKOFF[0] + limits.THROTTLED_BACKOFF[1])
    assert now - closing_at <= linger + limits.SETTLE_POLL + longest_backoff + INTERVAL
    assert sched.begin(math.inf) is None
    assert all(sched.flushed(t) for t in tickets)
