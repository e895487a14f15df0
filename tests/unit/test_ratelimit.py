"""The shared token bucket on fake time (burst, steady rate, fairness, pauses, sharing), and the backoff."""

import asyncio

import pytest

from ecs_reinstall.cloud.ratelimit import RateLimiterRegistry, TokenBucket, limiter_key
from ecs_reinstall.cloud.retry import Backoff


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        # let the waiters woken so far run (and read the clock) before time moves on
        for _ in range(3):
            await asyncio.sleep(0)
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def bucket(fake: FakeTime, qps: float = 10.0, burst: int = 5) -> TokenBucket:
    return TokenBucket(qps, burst, clock=fake.clock, sleep=fake.sleep)


async def times_of(limiter: TokenBucket, fake: FakeTime, count: int) -> list[float]:
    """Start `count` acquires at once; return the fake time at which each got its token, in start order."""
    granted: list[float | None] = [None] * count

    async def one(i: int) -> None:
        await limiter.acquire()
        granted[i] = fake.now

    await asyncio.gather(*(one(i) for i in range(count)))
    return granted


async def test_burst_is_free_then_steady_rate(fake):
    limiter = bucket(fake, qps=10, burst=5)
    start = fake.now
    granted = await times_of(limiter, fake, 8)
    assert granted[:5] == [start] * 5
    assert granted[5:] == pytest.approx([start + 0.1, start + 0.2, start + 0.3])


async def test_tokens_refill_while_idle_up_to_burst(fake):
    limiter = bucket(fake, qps=10, burst=5)
    await times_of(limiter, fake, 5)
    assert limiter.tokens == pytest.approx(0)
    fake.now += 0.25
    assert limiter.tokens == pytest.approx(2.5)
    fake.now += 100
    assert limiter.tokens == 5


async def test_try_acquire_never_jumps_the_queue(fake):
    limiter = bucket(fake, qps=1, burst=1)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    fake.now += 5  # tokens are back, but someone queues before us
    assert not limiter.try_acquire()
    await waiter
    assert not limiter.try_acquire()  # the waiter took the refilled token
    fake.now += 1
    assert limiter.try_acquire()


async def test_waiters_are_served_in_arrival_order(fake):
    limiter = bucket(fake, qps=100, burst=1)
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(50)))
    assert order == list(range(50))


async def test_thousands_of_waiters_take_the_bucket_time(fake):
    limiter = bucket(fake, qps=1000, burst=10)
    start = fake.now
    granted = await times_of(limiter, fake, 5000)
    assert max(granted) - start == pytest.approx(4.99, abs=1e-6)
    assert granted == sorted(granted)
    assert len(fake.sleeps) == 4990  # one timer per token, not one per waiter


async def test_pause_holds_everyone_then_resumes_without_burst(fake):
    limiter = bucket(fake, qps=10, burst=5)
    start = fake.now
    limiter.pause(2.0)
    assert limiter.paused_for() == 2.0
    assert not limiter.try_acquire()
    granted = await times_of(limiter, fake, 3)
    # one probe at the end of the pause, then the steady rate: the 5 saved tokens were dropped
    assert granted == pytest.approx([start + 2.0, start + 2.1, start + 2.2])


async def test_one_refusal_at_the_edge_of_the_limit_holds_nobody_and_drops_the_saved_tokens(fake):
    limiter = bucket(fake, qps=10, burst=5)
    start = fake.now
    limiter.refused(1.0)  # one 429, Retry-After 1 s: calls reached the gateway a little bunched
    assert limiter.paused_for() == 0
    granted = await times_of(limiter, fake, 2)
    assert granted == pytest.approx([start + 0.1, start + 0.2])  # the steady rate at once, no burst


@pytest.mark.parametrize(
    ("refusals", "retry_after", "held"),
    [
        (1, 1.0, 0.0),  # an isolated refusal
        (2, 1.0, 0.0),
        (3, 1.0, 1.0),  # the third within the second: the limit is really reached
        (1, 1.5, 1.5),  # the cloud asks for more than a second: honoured for everyone
        (1, 30.0, 30.0),
    ],
)
def test_refusals_hold_everyone_when_many_or_long(fake, refusals, retry_after, held):
    limiter = bucket(fake, qps=10, burst=5)
    refuse(limiter, refusals, pause=retry_after)
    assert limiter.paused_for() == held


def test_refusals_two_seconds_apart_are_each_isolated(fake):
    limiter = bucket(fake, qps=10, burst=5)
    for _ in range(5):
        refuse(limiter, 2)
        assert limiter.paused_for() == 0
        fake.now += 2.0
    refuse(limiter, 1)
    fake.now += 0.5  # the last second counts across the turn of a second
    refuse(limiter, 2)
    assert limiter.paused_for() == 1.0


async def test_pause_while_waiters_sleep_delays_them(fake):
    limiter = bucket(fake, qps=1, burst=1)
    start = fake.now
    await limiter.acquire()
    waiters = asyncio.gather(limiter.acquire(), limiter.acquire())
    await asyncio.sleep(0)
    limiter.pause(10)  # before the releaser's first timer fires
    await waiters
    assert fake.now == pytest.approx(start + 11)  # at start+10 one probe, at start+11 the next


async def test_pauses_never_shorten_each_other_and_time_paused_earns_nothing(fake):
    limiter = bucket(fake, qps=10, burst=5)
    limiter.pause(5)
    limiter.pause(1)
    assert limiter.paused_for() == 5
    fake.now += 5
    assert limiter.tokens == 1  # the probe token only
    limiter.pause(0)  # no-op
    assert limiter.paused_for() == 0


async def test_cancelled_waiter_consumes_nothing(fake):
    limiter = bucket(fake, qps=1, burst=1)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    first.cancel()
    start = fake.now
    await second
    assert fake.now == pytest.approx(start + 1)  # second got the next token, not the one after
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_token_granted_to_a_cancelled_waiter_goes_to_the_next(fake):
    limiter = bucket(fake, qps=1, burst=1)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter._waiters[0].set_result(None)  # a token is granted (as the releaser does)...
    first.cancel()  # ...but the waiter is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await first
    start = fake.now
    await second
    assert fake.now == start  # the returned token was handed on at once, instead of after 1 s


async def test_aclose_cancels_waiters(fake):
    limiter = bucket(fake, qps=0.001, burst=1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    await limiter.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiter


@pytest.mark.parametrize(("qps", "burst"), [(0, 1), (-1, 1), (float("nan"), 1), (1, 0)])
def test_bad_settings_are_rejected_with_the_reason(qps, burst):
    with pytest.raises(ValueError, match=r"qps|burst"):
        TokenBucket(qps, burst)
    with pytest.raises(ValueError, match=r"qps|burst"):
        RateLimiterRegistry(qps, burst)


async def test_registry_shares_one_bucket_per_endpoint_and_project(fake):
    registry = RateLimiterRegistry(10, 2, clock=fake.clock, sleep=fake.sleep)
    a = registry.get(limiter_key("https://ecs.ap-southeast-1.myhuaweicloud.com/", "p1"))
    assert registry.get(limiter_key("HTTPS://ecs.ap-southeast-1.myhuaweicloud.com", "p1")) is a
    assert registry.get(limiter_key("https://ecs.ap-southeast-1.myhuaweicloud.com", "p2")) is not a
    assert registry.get(limiter_key("https://ecs.cn-north-4.myhuaweicloud.com", "p1")) is not a
    assert len(registry) == 3
    # sharing means one caller's calls use up the other's tokens
    await a.acquire()
    await a.acquire()
    assert not registry.get(limiter_key("https://ecs.ap-southeast-1.myhuaweicloud.com", "p1")).try_acquire()
    assert registry.get(limiter_key("https://ecs.ap-southeast-1.myhuaweicloud.com", "p2")).try_acquire()


async def test_real_clock_smoke():
    # the defaults (monotonic clock, asyncio.sleep) work together; the rest of the math is checked above
    limiter = TokenBucket(1000, 1)
    await asyncio.gather(*(limiter.acquire() for _ in range(5)))
    assert limiter.waiting == 0


# --- backoff between retries (cloud/retry.py): the other half of pacing ------------------------------------


def test_backoff_ceiling_doubles_up_to_the_cap():
    backoff = Backoff(base=0.5, cap=4.0)
    assert [backoff.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.ceiling(10_000) == 4.0  # no overflow for absurd retry counts


def test_backoff_is_full_jitter():
    assert Backoff(base=1, cap=8, draw=lambda: 0.0).delay(3) == 0.0
    assert Backoff(base=1, cap=8, draw=lambda: 0.5).delay(2) == 2.0
    assert Backoff(base=1, cap=8, draw=lambda: 0.999).delay(5) == pytest.approx(7.992)


def test_retry_after_is_a_floor_and_too_long_is_not_waited():
    backoff = Backoff(base=1, cap=10, draw=lambda: 0.1)
    assert backoff.delay(0, retry_after=3) == 3
    assert backoff.delay(6, retry_after=0.5) == pytest.approx(1.0)  # jitter 0.1 * ceiling 10 > 0.5
    assert backoff.delay(0, retry_after=10) == 10
    assert backoff.delay(0, retry_after=11) is None  # the caller reschedules itself instead


@pytest.mark.parametrize(("base", "cap"), [(0, 1), (-1, 1), (2, 1)])
def test_bad_backoff_settings(base, cap):
    with pytest.raises(ValueError, match="backoff"):
        Backoff(base=base, cap=cap)


def adaptive(fake: FakeTime, qps: float = 100.0, burst: int = 5) -> TokenBucket:
    return TokenBucket(qps, burst, clock=fake.clock, sleep=fake.sleep, adaptive=True)


def refuse(limiter: TokenBucket, times: int, pause: float = 1.0) -> None:
    """`times` calls answered 429 (the client tells the bucket of each)."""
    for _ in range(times):
        limiter.refused(pause)


async def test_adaptive_rate_halves_once_a_second_when_a_quarter_of_the_calls_are_refused(fake):
    limiter = adaptive(fake, qps=100, burst=100)
    for _ in range(100):
        await limiter.acquire()
    refuse(limiter, 24)  # under a quarter of the second's 100 calls: no cut, nobody held
    assert limiter.qps == 100 and limiter.paused_for() == 0
    refuse(
        limiter, 10
    )  # a quarter and more, the calls in flight answering 429 together: one cut, and a pause
    assert limiter.qps == 50 and limiter.paused_for() == 1.0
    fake.now += 1.0
    refuse(limiter, 3)  # a second later, still refused: another cut
    assert limiter.qps == 25 and limiter.max_qps == 100


async def test_scattered_refusals_neither_cut_nor_hold(fake):
    """A gateway refusing a few calls whatever the rate (5% here) must not sink the rate: cutting on each
    refusal brought the chaos run, which injects such 429s, down to a few calls a second."""
    limiter = adaptive(fake, qps=1000, burst=1000)
    for second in range(5):
        for _ in range(100):
            await limiter.acquire()  # the burst refills within the second: no waiting
        refuse(limiter, 5, pause=0.01)
        assert limiter.paused_for() == 0
        fake.now += 1.0
        assert limiter.qps == 1000, f"cut after second {second}"
    refuse(limiter, 2)  # fewer than 3 refusals never cut, even when they are all the calls
    assert limiter.qps == 1000


async def test_a_few_refusals_just_after_a_second_turns_are_weighed_against_the_whole_last_second(fake):
    """Counted per fresh second, 3 refusals among the first calls of a second looked like a quarter refused and
    halved the rate at a cloud limit equal to ours (the benchmark's matched run took 8 s to grow back)."""
    limiter = adaptive(fake, qps=50, burst=50)
    for _ in range(50):
        fake.now += 0.02
        await limiter.acquire()
    fake.now += 0.01  # a new second has just begun: two calls in it so far
    await limiter.acquire()
    await limiter.acquire()
    refuse(limiter, 3)
    assert limiter.qps == 50  # 3 of about 50 in the last second: not cut
    assert limiter.paused_for() == 0  # nor held: an adaptive bucket holds everyone when it cuts


@pytest.mark.parametrize(
    ("calls", "cut_to"),
    [
        (100, 50.0),  # 75 accepted when a quarter was refused: never more than halfway down at once
        (50, 0.9 * 37),  # 37 accepted by the 13th refusal: a little below that
        (
            10,
            25.0,
        ),  # 7 accepted: never below a quarter of the rate at once (a moment refusing all is no estimate)
    ],
)
async def test_adaptive_cut_goes_to_a_little_below_what_the_cloud_accepted(fake, calls, cut_to):
    limiter = adaptive(fake, qps=100, burst=100)
    for _ in range(calls):
        await limiter.acquire()
    refuse(limiter, calls, pause=0.01)  # the cut comes at the refusal that makes a quarter; once a second
    assert limiter.qps == pytest.approx(cut_to)


async def test_adaptive_rate_grows_back_ten_percent_a_second_up_to_the_setting(fake):
    limiter = adaptive(fake, qps=100)
    refuse(limiter, 3, pause=2.0)  # nothing accepted: the deepest cut, a quarter
    fake.now += 2.0  # time paused earns nothing
    assert limiter.tokens == 1 and limiter.qps == 25
    fake.now += 5.0
    assert limiter.tokens == 5  # refilled at (about) the lowered rate, up to the burst
    assert limiter.qps == pytest.approx(25 * 1.1**5)
    fake.now += 60.0
    assert limiter.tokens == 5 and limiter.qps == 100  # never above what was configured


async def test_adaptive_rate_paces_calls_at_the_lowered_rate(fake):
    limiter = adaptive(fake, qps=10, burst=1)
    start = fake.now
    refuse(limiter, 3)
    granted = await times_of(limiter, fake, 3)
    assert granted[0] == pytest.approx(start + 1.0)  # the probe at the end of the pause
    assert granted[1] - granted[0] == pytest.approx(0.4, rel=0.02)  # 2.5 calls/s, not 10
    assert granted[2] - granted[1] == pytest.approx(0.4 / 1.1**0.4, rel=0.02)  # growing back


async def test_adaptive_rate_never_falls_below_one_call_a_second(fake):
    limiter = adaptive(fake, qps=4)
    for _ in range(6):  # 4 -> 2 -> 1 -> 1 ...
        fake.now += 1.0
        refuse(limiter, 3, pause=0.1)
    assert limiter.qps == 1.0
    slow = adaptive(fake, qps=0.5)
    refuse(slow, 3)
    assert slow.qps == 0.5  # a setting below the floor is not raised to it


def test_non_adaptive_buckets_keep_their_rate(fake):
    limiter = bucket(fake, qps=10)
    refuse(limiter, 5)  # enough to cut an adaptive one
    assert limiter.qps == 10 and not limiter.adaptive


def test_the_registry_makes_adaptive_buckets_when_asked():
    assert RateLimiterRegistry(10, 5, adaptive=True).get(("e", "p")).adaptive
    assert not RateLimiterRegistry(10, 5).get(("e", "p")).adaptive
