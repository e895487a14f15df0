"""kube.ReadCache: Secret/ConfigMap reads shared for a short time, errors never kept, forget, single flight."""

import asyncio

import pytest

from ecs_reinstall.kube import NotFound, ReadCache


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Loader:
    """Counts API reads; each returns the current value (or raises the current error)."""

    def __init__(self, value=None):
        self.value = value if value is not None else {"password": b"pw-1"}
        self.error = None
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self):
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return dict(self.value)


KEY = ("Secret", "ns", "pw")


async def test_a_read_is_reused_until_it_expires():
    clock, load = Clock(), Loader()
    cache = ReadCache(2.0, clock=clock)
    assert await cache.get(KEY, load) == {"password": b"pw-1"}
    load.value = {"password": b"pw-2"}
    clock.now += 1.9
    assert await cache.get(KEY, load) == {"password": b"pw-1"}
    assert load.calls == 1
    clock.now += 0.1  # 2 s after the read started: expired
    assert await cache.get(KEY, load) == {"password": b"pw-2"}
    assert load.calls == 2 and cache.hits == 1 and cache.misses == 2


async def test_callers_get_copies():
    cache, load = ReadCache(2.0, clock=Clock()), Loader()
    first = await cache.get(KEY, load)
    first["password"] = b"changed by a caller"
    assert await cache.get(KEY, load) == {"password": b"pw-1"}


async def test_zero_ttl_reads_every_time():
    cache, load = ReadCache(0.0), Loader()
    await cache.get(KEY, load)
    await cache.get(KEY, load)
    assert load.calls == 2


async def test_errors_are_never_kept():
    cache, load = ReadCache(2.0, clock=Clock()), Loader()
    load.error = NotFound(404, "NotFound")
    with pytest.raises(NotFound):
        await cache.get(KEY, load)
    load.error = None  # the Secret was created a moment later: seen at once
    assert await cache.get(KEY, load) == {"password": b"pw-1"}
    assert load.calls == 2


async def test_forget_makes_the_next_read_go_to_the_api():
    cache, load = ReadCache(2.0, clock=Clock()), Loader()
    await cache.get(KEY, load)
    load.value = {"password": b"pw-2"}
    cache.forget(KEY)
    assert await cache.get(KEY, load) == {"password": b"pw-2"}
    assert load.calls == 2


async def test_concurrent_readers_share_one_call_and_its_error():
    cache, load = ReadCache(2.0, clock=Clock()), Loader()
    load.gate = asyncio.Event()
    readers = [asyncio.create_task(cache.get(KEY, load)) for _ in range(5)]
    await asyncio.sleep(0)
    load.gate.set()
    assert all(r == {"password": b"pw-1"} for r in await asyncio.gather(*readers))
    assert load.calls == 1

    cache.forget(KEY)
    load.gate, load.error = asyncio.Event(), NotFound(404, "NotFound")
    readers = [asyncio.create_task(cache.get(KEY, load)) for _ in range(3)]
    await asyncio.sleep(0)
    load.gate.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(r, NotFound) for r in results) and load.calls == 2


async def test_a_cancelled_reader_does_not_cancel_the_shared_read():
    cache, load = ReadCache(2.0, clock=Clock()), Loader()
    load.gate = asyncio.Event()
    first = asyncio.create_task(cache.get(KEY, load))
    second = asyncio.create_task(cache.get(KEY, load))
    await asyncio.sleep(0)
    first.cancel()  # its resource was deleted
    await asyncio.sleep(0)
    load.gate.set()
    assert await second == {"password": b"pw-1"}
    assert first.cancelled() and load.calls == 1


async def test_a_read_forgotten_while_in_flight_answers_its_waiters_but_is_not_kept():
    cache, load = ReadCache(2.0, clock=Clock()), Loader()
    load.gate = asyncio.Event()
    reader = asyncio.create_task(cache.get(KEY, load))
    await asyncio.sleep(0)
    cache.forget(KEY)
    load.gate.set()
    assert await reader == {"password": b"pw-1"}
    load.value = {"password": b"pw-2"}
    assert await cache.get(KEY, load) == {"password": b"pw-2"}


async def test_the_cache_is_bounded_and_drops_expired_entries_first():
    clock = Clock()
    cache = ReadCache(2.0, clock=clock, max_entries=3)
    for name in ("a", "b"):
        await cache.get(("Secret", "ns", name), Loader())
    clock.now += 5  # a and b expired
    for name in ("c", "d", "e"):
        await cache.get(("Secret", "ns", name), Loader())
    assert sorted(k[2] for k in cache._entries) == ["c", "d", "e"]
    await cache.get(("Secret", "ns", "f"), Loader())  # full of live entries: the oldest goes
    assert sorted(k[2] for k in cache._entries) == ["d", "e", "f"]


def test_the_repr_shows_no_value():
    cache = ReadCache(2.0)
    cache._entries[KEY] = (1e9, {"password": b"s3cret-value"})
    assert "s3cret" not in repr(cache)
