"""Throttling absorbed: when the account answers 503 ServerBusy, 500 OperationTimedOut or 429, a request waits
what the answer asks (``Retry-After``) plus a full random jitter, for minutes rather than seconds, and the
saves of one container send fewer requests at once, so a throttled account sees fewer requests, not more.

- :func:`is_throttled`, :func:`retry_after`: what an answer says; :func:`throttled_backoff`: the wait
  before the n-th retry of a throttled request.
- :class:`ThrottleRetry` (sync) and :class:`AsyncThrottleRetry`: azure-storage-blob's ``ExponentialRetry``
  with that backoff and a budget of throttled retries of its own; other failures (connection errors,
  other 5xx) keep its backoff and budgets. Every client batchfiles builds gets one (``_urls.client_kwargs``).
- :class:`Aimd` (sans-IO) and its drivers :class:`Slots` (threads) and :class:`AsyncSlots` (asyncio): when
  the next request of one container's saves may start (:func:`slots_for`): how many are in flight (cut by
  half on a throttled answer, grown back by one per round of successes) and how far apart they start (a
  gap from a throttled answer, eased by successes). Each save request's answers reach them through its
  ``raw_response_hook`` (azure-storage-blob's pipeline ignores ``per_retry_policies``; the hook is called
  after every try), and the retry policy tells them of throttled answers to the client's other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.storage.blob import ExponentialRetry
from azure.storage.blob._shared import policies as _policies
from azure.storage.blob._shared import policies_async as _policies_async
from azure.storage.blob._shared.authentication import AzureSigningError
from azure.storage.blob.aio import ExponentialRetry as AsyncExponentialRetry

logger = logging.getLogger("batchfiles")

#: Retries of a throttled request (each waits :func:`throttled_backoff`): about 2 minutes in all with
#: ``Retry-After: 1``, at most about 4; other failures keep the client's ``retry_total``.
THROTTLED_RETRIES = 15
#: The jitter window before throttled retry n: ``min(cap, first * 2**n)`` seconds.
THROTTLED_WINDOW = (2.0, 20.0)
#: A longer ``Retry-After`` is taken as this many seconds.
MAX_RETRY_AFTER = 60.0
#: What a throttling answer without ``Retry-After`` is taken to ask: the blob service documents none for its
#: data plane's 503 ServerBusy and 500 OperationTimedOut (tracked saves take ``THROTTLED_BACKOFF[0]``, 1 s).
NO_RETRY_AFTER = 1.0
#: Seconds between request starts after a first throttled answer (:class:`Aimd`), doubled by each throttled
#: answer up to MAX_GAP; each success divides the gap by GAP_EASE, and below MIN_GAP there is none.
FIRST_GAP = 1.0
MAX_GAP = 8.0
GAP_EASE = 1.1
MIN_GAP = 0.02
#: Error codes of throttling answers (with status 503 or 500); a 429 or 503 is one whatever its code.
THROTTLED_CODES = frozenset({"ServerBusy", "OperationTimedOut"})


def is_throttled(status: int | None, code: str | None) -> bool:
    """Whether an answer says the account is over its limits: 429, 503, or 500 OperationTimedOut."""
    return status in (429, 503) or (status == 500 and code in THROTTLED_CODES)


def is_throttled_response(response: Any) -> bool:
    """:func:`is_throttled` of an azure-core HTTP response."""
    return is_throttled(response.status_code, response.headers.get("x-ms-error-code"))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds an answer asks to wait (``retry-after-ms``, ``x-ms-retry-after-ms``, or ``Retry-After``
    in seconds or as an HTTP date), at most :data:`MAX_RETRY_AFTER`; None if it asks nothing readable."""
    lower = {str(name).lower(): value for name, value in headers.items()}  # any mapping, any case
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lower.get(name)
        if not isinstance(value, str):
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            seconds = _http_date_from_now(value) if scale == 1.0 else None
        if seconds is not None and math.isfinite(seconds) and seconds >= 0:  # a negative one is malformed
            return min(seconds, MAX_RETRY_AFTER)
    return None


def _http_date_from_now(value: str) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def throttled_backoff(n: int, after: float | None, rng: random.Random) -> float:
    """The wait before throttled retry ``n`` (from 0): what the answer asked (``after``; None: it asked
    nothing, taken as :data:`NO_RETRY_AFTER`), plus a uniform draw from a window doubling from
    ``THROTTLED_WINDOW[0]`` to ``[1]`` seconds (full jitter), so tasks throttled together do not come back
    together, and come back less often the longer it lasts."""
    first, cap = THROTTLED_WINDOW
    window = min(cap, first * 2 ** min(n, 32))
    asked = NO_RETRY_AFTER if after is None else after
    return min(asked, MAX_RETRY_AFTER) + rng.uniform(0.0, window)


def is_final(err: AzureError) -> bool:
    """Whether an error raised before any answer is not worth retrying: a request that could not be signed,
    or a credential that could not get a token (azure-identity retries its own transient failures, such as
    the managed-identity endpoint's, before it raises), so a node without a sign-in fails at its first
    request, not after minutes of retries."""
    return isinstance(err, (AzureSigningError, ClientAuthenticationError))


class _Throttled:
    """What :class:`ThrottleRetry` and :class:`AsyncThrottleRetry` add to ``ExponentialRetry``."""

    def __init__(self, *, retry_throttled: int | None = THROTTLED_RETRIES, **kwargs: Any) -> None:
        """``retry_throttled``: retries of a throttled request, counted apart from ``retry_total`` (default
        :data:`THROTTLED_RETRIES`); None: throttled answers count against ``retry_total`` (never against
        ``retry_status``), as when a user passes ``retry_total`` to a client or a call."""
        super().__init__(**kwargs)
        self.retry_throttled = retry_throttled
        self.random = random.Random()
        self._listeners: list[Callable[[], Callable[[], None] | None]] = []
        self._listeners_lock = threading.Lock()

    def add_listener(self, method: Callable[[], None], *, weak: bool = True) -> None:
        """Call ``method`` on every throttled answer this policy sees; ``weak``: a bound method, called while
        its object lives (the policy does not keep it alive)."""
        with self._listeners_lock:
            self._listeners = [ref for ref in self._listeners if ref() is not None]
            ref = weakref.WeakMethod(method) if weak else (lambda: method)  # type: ignore[arg-type]
            self._listeners.append(ref)

    def _heard_throttling(self) -> None:
        with self._listeners_lock:
            listeners = [ref() for ref in self._listeners]
        for listener in listeners:
            if listener is None:
                continue
            try:
                listener()
            except Exception as err:  # a caller's on_throttled: its failure is not the request's
                logger.warning("on_throttled raised %s: %s (ignored)", type(err).__name__, err)

    def configure_retries(self, request: Any) -> dict[str, Any]:
        per_call_total = "retry_total" in request.context.options  # a caller's retry_total wins
        settings = super().configure_retries(request)  # type: ignore[misc]
        settings["throttled"] = None if per_call_total else self.retry_throttled
        settings["throttled_count"] = 0
        settings["after"] = False  # after a throttled answer: the seconds it asked to wait (None: none)
        return settings

    def _retryable(self, response: Any, settings: dict[str, Any]) -> bool:
        return response.http_response.status_code == 429 or _policies.is_retry(response, settings["mode"])

    def increment(
        self, settings: dict[str, Any], request: Any, response: Any = None, error: Any = None
    ) -> bool:
        throttled = response is not None and is_throttled_response(response)
        settings["after"] = retry_after(response.headers) if throttled else False
        if throttled:
            self._heard_throttling()
            budget = settings["throttled"]
            if budget is not None:  # its own budget: neither retry_total nor retry_status is spent
                if budget <= 0:
                    return False
                settings["throttled"] = budget - 1
                settings["total"] += 1
            settings["status"] += 1
        retrying = super().increment(settings, request, response, error)  # type: ignore[misc]
        if retrying and throttled:
            settings["throttled_count"] += 1
        return retrying

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        if settings["after"] is not False:
            return throttled_backoff(settings["throttled_count"] - 1, settings["after"], self.random)
        others = {**settings, "count": settings["count"] - settings["throttled_count"]}
        return super().get_backoff_time(others)  # type: ignore[misc]


class ThrottleRetry(_Throttled, ExponentialRetry):
    """``ExponentialRetry`` that absorbs throttling (see the module); ``retry_throttled=`` sets its budget."""

    def send(self, request: Any) -> Any:
        settings = self.configure_retries(request)
        while True:
            try:
                response = self.next.send(request)
            except AzureError as err:
                if is_final(err) or not self.increment(settings, request=request.http_request, error=err):
                    raise
                _policies.retry_hook(settings, request=request.http_request, response=None, error=err)
            else:
                retry = self._retryable(response, settings) or _policies.is_checksum_retry(response)
                if not (retry and self.increment(settings, request.http_request, response.http_response)):
                    break
                _policies.retry_hook(
                    settings, request=request.http_request, response=response.http_response, error=None
                )
            self.sleep(settings, request.context.transport)
        if settings["history"]:
            response.context["history"] = settings["history"]
        response.http_response.location_mode = settings["mode"]
        return response


class AsyncThrottleRetry(_Throttled, AsyncExponentialRetry):
    """The async twin of :class:`ThrottleRetry`."""

    async def send(self, request: Any) -> Any:
        settings = self.configure_retries(request)
        while True:
            try:
                response = await self.next.send(request)
            except AzureError as err:
                if is_final(err) or not self.increment(settings, request=request.http_request, error=err):
                    raise
                await _policies_async.retry_hook(
                    settings, request=request.http_request, response=None, error=err
                )
            else:
                retry = self._retryable(response, settings)
                retry = retry or await _policies_async.is_checksum_retry(response)
                if not (retry and self.increment(settings, request.http_request, response.http_response)):
                    break
                await _policies_async.retry_hook(
                    settings, request=request.http_request, response=response.http_response, error=None
                )
            await self.sleep(settings, request.context.transport)
        if settings["history"]:
            response.context["history"] = settings["history"]
        response.http_response.location_mode = settings["mode"]
        return response


#: The keyword arguments of a client that configure its retries.
RETRY_OPTIONS = (
    "retry_total",
    "retry_connect",
    "retry_read",
    "retry_status",
    "retry_to_secondary",
    "initial_backoff",
    "increment_base",
    "random_jitter_range",
)


def retry_policy(options: Mapping[str, Any], *, user_total: bool, aio: bool) -> _Throttled:
    """The retry policy of a client with these ``options``: throttled retries have their own budget
    (``retry_throttled``, default :data:`THROTTLED_RETRIES`) unless the user set ``retry_total`` alone,
    which then bounds them too."""
    throttled = options.get("retry_throttled", None if user_total else THROTTLED_RETRIES)
    bad = isinstance(throttled, bool) or not isinstance(throttled, int) or throttled < 0
    if throttled is not None and bad:
        raise ValueError(f"retry_throttled must be an int >= 0 or None, not {throttled!r}")
    kwargs = {name: options[name] for name in RETRY_OPTIONS if name in options}
    cls = AsyncThrottleRetry if aio else ThrottleRetry
    return cls(retry_throttled=throttled, **kwargs)


# --- adaptive concurrency -----------------------------------------------------------------------------------


class Aimd:
    """Sans-IO: when the next request of one container's saves may start. Times are ``clock()`` seconds.

    Two controls, both idle until the account throttles, so a save on an account that is not throttling
    goes at its full concurrency from its first request. *How many* requests are in flight: no limit until
    the first throttled answer, which cuts it to half of what was in flight (at least 1); from then on each
    success adds ``1 / limit`` (one more per round of ``limit`` successes) and once it passes the most ever
    in flight there is no limit again. *How often* requests start: requests taking milliseconds, one at a
    time still floods a throttled account, so a throttled answer also spaces starts by a gap,
    :data:`FIRST_GAP` then doubled by each throttled answer up to :data:`MAX_GAP`, divided by
    :data:`GAP_EASE` by each success, and gone below :data:`MIN_GAP` (while the account stays busy, about
    one answer in eight is then throttled).

    A throttled answer to a request started before the last cut cuts nothing (that cut answered its round
    already); one started since does. A throttled answer to another request of the same client
    (:meth:`heard`) makes saves not paced yet start paced. Each gap is drawn from half to one and a half
    times its value (``rng``), so tasks throttled together do not come back together.
    """

    def __init__(self, clock: Callable[[], float], rng: random.Random | None = None) -> None:
        self.clock = clock
        self.rng = rng or random.Random()
        self.limit: float | None = None
        self.gap = 0.0
        self.in_flight = 0
        self.peak = 0
        self.cuts = 0
        self._next_start = -math.inf

    def delay(self) -> float | None:
        """Seconds until a request may start (0: now), or None while the requests in flight fill the
        limit (one must end first)."""
        if self.limit is not None and self.in_flight >= int(self.limit):
            return None
        return max(0.0, self._next_start - self.clock())

    def start(self) -> int:
        """Count a request in flight; its ticket (the cuts so far) for :meth:`throttled`."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self._next_start = self.clock() + self._jittered(self.gap)
        return self.cuts

    def end(self) -> None:
        self.in_flight -= 1

    def throttled(self, ticket: int) -> None:
        """A throttled answer to the request of ``ticket``."""
        if ticket != self.cuts:
            return
        in_flight = max(1, self.in_flight)
        self.limit = max(1.0, (in_flight if self.limit is None else min(self.limit, in_flight)) / 2)
        self.gap = min(MAX_GAP, max(FIRST_GAP, 2 * self.gap))
        self._next_start = self.clock() + self._jittered(self.gap)
        self.cuts += 1

    def heard(self) -> None:
        """A throttled answer to another request through the same client (a tracked save's, a listing's):
        saves not paced yet start paced (their limit is theirs to find); paced ones are not slowed further
        by requests they do not send."""
        if not self.gap:
            self.gap = FIRST_GAP
            self._next_start = max(self._next_start, self.clock() + self._jittered(self.gap))

    def _jittered(self, gap: float) -> float:
        """``gap`` give or take half, so tasks throttled together do not start together again."""
        return gap * self.rng.uniform(0.5, 1.5) if gap else 0.0

    def succeeded(self) -> None:
        if self.gap:
            self.gap = self.gap / GAP_EASE if self.gap / GAP_EASE >= MIN_GAP else 0.0
            self._next_start = min(self._next_start, self.clock() + self._jittered(self.gap))
        if self.limit is None:
            return
        self.limit += 1 / self.limit
        if self.limit > self.peak:
            self.limit = None


def _observed(aimd: Aimd, ticket: int, response: Any) -> None:
    """Feed ``aimd`` one attempt's answer (a pipeline response)."""
    http = response.http_response
    if is_throttled_response(http):
        aimd.throttled(ticket)
    elif 200 <= http.status_code < 300:
        aimd.succeeded()


class Slots:
    """:class:`Aimd` for threads: ``with slots.slot() as hook: blob.op(..., raw_response_hook=hook)``; the
    hook sees every attempt's answer (azure-storage-blob calls it after each try, retries included)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.aimd = Aimd(clock)
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def slot(self) -> Iterator[Callable[[Any], None]]:
        with self._changed:
            while (delay := self.aimd.delay()) != 0:
                self._changed.wait(delay)
            ticket = self.aimd.start()
        try:
            yield functools.partial(self._observe, ticket)
        finally:
            with self._changed:
                self.aimd.end()
                self._changed.notify_all()

    def _observe(self, ticket: int, response: Any) -> None:
        with self._changed:
            _observed(self.aimd, ticket, response)
            self._changed.notify_all()

    def heard(self) -> None:
        with self._changed:
            self.aimd.heard()


class AsyncSlots:
    """:class:`Aimd` for asyncio tasks: ``async with slots.slot() as hook: await blob.op(...,
    raw_response_hook=hook)``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.aimd = Aimd(clock)
        self._waiters: list[asyncio.Future[None]] = []

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Callable[[Any], None]]:
        while (delay := self.aimd.delay()) != 0:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, delay)
            except asyncio.TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        ticket = self.aimd.start()
        try:
            yield functools.partial(self._observe, ticket)
        finally:
            self.aimd.end()
            self._wake()

    def _observe(self, ticket: int, response: Any) -> None:
        _observed(self.aimd, ticket, response)
        self._wake()

    def heard(self) -> None:
        self.aimd.heard()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


_slots: weakref.WeakKeyDictionary[Any, Slots | AsyncSlots] = weakref.WeakKeyDictionary()
_slots_lock = threading.Lock()


def slots_for(container: Any, *, aio: bool) -> Any:
    """The slots shared by every save through ``container`` (a container client), made on first use; when
    the client's retry policy is ours, it tells them of each throttled answer it sees (:meth:`Aimd.heard`)."""
    with _slots_lock:
        slots = _slots.get(container)
        if slots is None:
            slots = _slots[container] = AsyncSlots() if aio else Slots()
            policy = getattr(getattr(container, "_config", None), "retry_policy", None)
            if isinstance(policy, _Throttled):
                policy.add_listener(slots.heard)
        return slots
