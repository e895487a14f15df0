"""A shared asyncio token bucket per (endpoint, project): every cloud call takes a token first.

The API gateway limits calls per API and per project, so all calls the operator makes to one endpoint and
project share one bucket: `qps` tokens a second, at most `burst` saved up. When the cloud answers 429 with
`Retry-After`, `refused(seconds)` holds *every* caller of that bucket, so throttling slows everyone down instead
of each caller discovering it alone; after a pause the bucket resumes at the steady rate, without a burst.
One refusal alone with a short Retry-After (up to a second) holds nobody: at a `qps` equal to the cloud's limit,
calls that reach the gateway a little bunched (network and scheduling jitter) are refused now and then, and holding
a whole fleet's submissions for a second on each cost 3 s of a 20 s rollout in the benchmark. The bucket only drops
its saved tokens then, and the refused call waits its Retry-After alone (the retry policy). A longer Retry-After
holds everyone, and so does a third refusal within a second (with `adaptive`: a cut of the rate, below).

With `adaptive`, the rate itself also learns the cloud's limit (like TCP's congestion window): refusals of a quarter
or more of the last second's calls (3 at least) cut it, once a second at most, to a little below the rate the cloud
accepted in that second (kept between a quarter and a half of the rate), and every second without such a cut lets it
grow back by 10%, up to the configured `qps`. Scattered refusals (a busy gateway refusing a few calls in
any case) are neither cuts nor pauses; cutting on each of them would sink the rate to a few calls a second. A
`--qps` set above what the cloud allows then costs a few 429s per episode instead of a steady stream of them, and
the calls refused never count against the budget of anyone else sharing the account's limit.

Waiters are served strictly first come, first served: they queue as futures, and a single releaser task wakes
them one token at a time, so thousands of waiters cost one timer and O(1) work per token. The clock and the
sleep function are injectable, so tests run on fake time. (The event loop's timers tick in milliseconds, so
with `burst` 1 a bucket cannot exceed about 1000 calls a second; cloud limits are far below that.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# A token counts as whole within this margin: float refill arithmetic must not leave waiters hanging on
# 0.9999999999 tokens while sleeping for intervals too short to move the clock.
_EPSILON = 1e-9

# Adaptive rate: refusals of at least _CUT_SHARE of the calls of the last _WINDOW seconds, and _CUT_MIN_REFUSALS
# at least, cut the rate (once per window) to _ACCEPTED_MARGIN of what the cloud accepted, kept between
# _DEEPEST_CUT and _CUT of the rate; the growth per second without a cut; the floor.
_WINDOW = 1.0
_CUT_SHARE = 0.25
_CUT_MIN_REFUSALS = 3
_CUT = 0.5
_DEEPEST_CUT = 0.25
_ACCEPTED_MARGIN = 0.9  # a cut goes a little below the rate the cloud accepted
_GROWTH_PER_SECOND = 1.10
_MIN_QPS = 1.0
# A refusal with a Retry-After up to this holds nobody, unless it brings a cut (adaptive) or is the third within a
# second (a fixed rate): see above.
_EDGE_RETRY_AFTER = 1.0


class TokenBucket:
    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        adaptive: bool = False,
    ) -> None:
        if not qps > 0:
            raise ValueError(f"rate limit qps must be > 0 (calls per second), got {qps!r}")
        if burst < 1:
            raise ValueError(f"rate limit burst must be >= 1 (calls allowed at once), got {burst!r}")
        self.max_qps = float(qps)
        self.qps = float(qps)  # the current rate: below max_qps after throttling when adaptive
        self.adaptive = adaptive
        self._last_cut = float("-inf")
        # tokens granted (counted when adaptive only): what refusals are weighed against
        self._calls = _LastSecond(clock())
        self._refused = _LastSecond(clock())
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._paused_until = float("-inf")
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._releaser: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"TokenBucket(qps={self.qps:g}/{self.max_qps:g}, burst={self.burst}, waiting={self.waiting})"

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    @property
    def tokens(self) -> float:
        """Tokens available now (fractional while refilling)."""
        self._refill(self._clock())
        return self._tokens

    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def try_acquire(self) -> bool:
        """Take a token if one is free right now and nobody queues before us."""
        now = self._clock()
        self._refill(now)
        if self._waiters or now < self._paused_until or self._tokens < 1 - _EPSILON:
            return False
        self._tokens -= 1
        if self.adaptive:
            self._calls.add(now)
        return True

    async def acquire(self) -> None:
        """Wait for a token, first come first served."""
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._ensure_releaser()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._hand_on_token()
            raise

    def _hand_on_token(self) -> None:
        """A token was granted to a waiter that got cancelled before using it: the next waiter gets it now."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._tokens = min(float(self.burst), self._tokens + 1)

    def refused(self, retry_after: float) -> None:
        """A call was answered 429 with `retry_after` seconds (the client's default when the cloud gave none)."""
        now = self._clock()
        self._refill(now)  # the growth until now comes before any cut
        refused = self._refused.add(now)
        # An adaptive bucket answers many refusals with a cut (and a pause), a fixed one with a pause only.
        cut = self.adaptive and self._adapt(now, refused)
        many = refused >= _CUT_MIN_REFUSALS and not self.adaptive
        if cut or many or retry_after > _EDGE_RETRY_AFTER:
            self.pause(retry_after)
        else:
            self._tokens = 0.0  # at the edge of the cloud's limit: no burst now, and nobody held

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds`; pauses never shorten each other.

        Time spent paused earns no tokens and saved tokens are dropped: when the pause ends exactly one token
        is there, so one call probes the cloud, then calls flow at the steady rate (halved, when adaptive).
        """
        if not seconds > 0:
            return
        now = self._clock()
        self._refill(now)
        self._paused_until = max(self._paused_until, now + seconds)
        self._tokens = 1.0

    def _adapt(self, now: float, refused: float) -> bool:
        """Cut the rate when the last second's refusals show that the rate is too high; True if it did."""
        calls = self._calls.count(now)
        too_many = refused >= max(_CUT_MIN_REFUSALS, _CUT_SHARE * calls)
        if too_many and now - self._last_cut >= _WINDOW:
            self._last_cut = now
            # What the cloud took in the last second is the best guess of its limit. A cut keeps between a quarter
            # and a half of the rate: at least halving (as before), and never deeper than a quarter at once (a
            # moment when the cloud refuses everything is no estimate).
            accepted = _ACCEPTED_MARGIN * max(0.0, calls - refused)
            cut = min(self.qps * _CUT, max(self.qps * _DEEPEST_CUT, accepted))
            self.qps = max(min(_MIN_QPS, self.max_qps), cut)
            return True
        return False

    def _refill(self, now: float) -> None:
        start = max(self._stamp, self._paused_until)
        if now > start:
            self._tokens = min(float(self.burst), self._tokens + (now - start) * self.qps)
            if self.qps < self.max_qps:  # growing back after throttling (time paused does not count)
                self.qps = min(self.max_qps, self.qps * _GROWTH_PER_SECOND ** (now - start))
        self._stamp = max(self._stamp, now)

    def _ensure_releaser(self) -> None:
        loop = asyncio.get_running_loop()
        if self._releaser is not None and self._releaser.get_loop() is not loop:
            # The bucket outlived an event loop (tests run one loop each): forget what belonged to it.
            self._waiters = deque(waiter for waiter in self._waiters if waiter.get_loop() is loop)
            self._releaser = None
        if self._releaser is None or self._releaser.done():
            self._releaser = loop.create_task(self._release_waiters())

    async def _release_waiters(self) -> None:
        waiters = self._waiters
        while True:
            while waiters and waiters[0].done():  # cancelled while queued
                waiters.popleft()
            if not waiters:
                return
            now = self._clock()
            self._refill(now)
            if now < self._paused_until:
                await self._sleep(self._paused_until - now)
            elif self._tokens >= 1 - _EPSILON:
                self._tokens = max(0.0, self._tokens - 1)
                waiters.popleft().set_result(None)
                if self.adaptive:
                    self._calls.add(now)
            else:
                await self._sleep((1 - self._tokens) / self.qps)

    async def aclose(self) -> None:
        """Stop the releaser (waiters still queued are cancelled). For orderly shutdown and tests."""
        for waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()
        if self._releaser is not None and not self._releaser.done():
            self._releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._releaser
        self._releaser = None


class _LastSecond:
    """How many events happened in the last `_WINDOW` seconds, estimated from two fixed windows (the current one
    and a share of the previous one). A plain window that starts afresh each second undercounts just after it
    starts: 3 refusals among the first calls of a new window looked like a quarter refused, and cut the rate
    at a cloud limit equal to ours (8 s to grow back, in the benchmark)."""

    def __init__(self, now: float) -> None:
        self._start = now
        self._current = 0
        self._previous = 0

    def _roll(self, now: float) -> None:
        elapsed = now - self._start
        if elapsed >= 2 * _WINDOW:
            self._start, self._current, self._previous = now, 0, 0
        elif elapsed >= _WINDOW:
            self._start, self._current, self._previous = self._start + _WINDOW, 0, self._current

    def count(self, now: float) -> float:
        self._roll(now)
        share_of_previous = max(0.0, 1.0 - (now - self._start) / _WINDOW)
        return self._current + self._previous * share_of_previous

    def add(self, now: float) -> float:
        """Count one event; the count in the last second, this one included."""
        self._roll(now)
        self._current += 1
        return self.count(now)


def limiter_key(endpoint: str, project_id: str) -> tuple[str, str]:
    """The bucket key: the endpoint without case or trailing slash differences, and the project."""
    return (endpoint.strip().rstrip("/").lower(), project_id)


class RateLimiterRegistry:
    """One `TokenBucket` per key (normally `limiter_key(endpoint, project_id)`), created on first use."""

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        adaptive: bool = False,
    ) -> None:
        TokenBucket(qps, burst, clock=clock, sleep=sleep)  # validate the settings now, not on first use
        self.qps = qps
        self.burst = burst
        self.adaptive = adaptive
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[Hashable, TokenBucket] = {}

    def get(self, key: Hashable) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(
                self.qps, self.burst, clock=self._clock, sleep=self._sleep, adaptive=self.adaptive
            )
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)

    async def aclose(self) -> None:
        for bucket in self._buckets.values():
            await bucket.aclose()
