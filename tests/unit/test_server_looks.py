"""cloud/looks.py: server reads gathered into list calls of up to 100 IDs, eager rounds only while budget is spare."""

from __future__ import annotations

import asyncio

import pytest

from ecs_reinstall.cloud.errors import Operation, TerminalError, TransientError
from ecs_reinstall.cloud.looks import LooksUnavailable, ServerLooks
from ecs_reinstall.cloud.models import CloudTarget, Credentials, Server
from ecs_reinstall.cloud.ratelimit import TokenBucket

TARGET = CloudTarget("https://ecs.example", "p1", Credentials("AK", "SK"))


class Reader:
    """Answers every list call from `servers`; records the IDs of each call."""

    def __init__(self, qps: float = 1000.0, burst: int = 1000) -> None:
        self.calls: list[list[str]] = []
        self.servers: dict[str, Server] = {}
        self.bucket = TokenBucket(qps, burst)
        self.fail: Exception | None = None

    def limiter(self, target: CloudTarget) -> TokenBucket:
        return self.bucket

    async def get_servers(self, target, server_ids, *, slot_taken=False):
        assert slot_taken, "looks take the rate limit's token before choosing the IDs"
        self.calls.append(list(server_ids))
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        return {server_id: self.servers.get(server_id) for server_id in server_ids}


def _server(server_id: str, status: str = "REBUILD") -> Server:
    return Server(id=server_id, status=status)


async def test_reads_asked_together_go_out_in_one_call_per_hundred():
    reader = Reader()
    reader.servers = {f"s{i}": _server(f"s{i}") for i in range(250)}
    looks = ServerLooks(reader)
    found = await asyncio.gather(*(looks.look(TARGET, f"s{i}", within=0.05) for i in range(250)))
    assert [server.id for server in found] == [f"s{i}" for i in range(250)]
    assert sorted(len(call) for call in reader.calls) == [50, 100, 100]
    assert sorted(i for call in reader.calls for i in call) == sorted(f"s{i}" for i in range(250))
    await looks.aclose()


async def test_an_unknown_server_is_none_and_an_error_reaches_every_look_of_its_call():
    reader = Reader()
    reader.servers = {"a": _server("a", "ACTIVE")}
    looks = ServerLooks(reader)
    a, b = await asyncio.gather(looks.look(TARGET, "a", within=0.01), looks.look(TARGET, "b", within=0.01))
    assert a is not None and a.status == "ACTIVE" and b is None
    reader.fail = TransientError(operation=Operation.LIST_SERVERS, http_status=500)
    results = await asyncio.gather(
        looks.look(TARGET, "a", within=0.01), looks.look(TARGET, "b", within=0.01), return_exceptions=True
    )
    assert all(isinstance(result, TransientError) for result in results)
    await looks.aclose()


async def test_a_look_goes_out_no_later_than_asked():
    reader = Reader()
    reader.servers = {"a": _server("a")}
    looks = ServerLooks(reader)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await looks.look(TARGET, "a", within=0.2)
    assert 0.15 <= loop.time() - started < 0.5
    await looks.aclose()


async def test_eager_rounds_look_at_a_fleet_sooner_than_its_poll_interval():
    """100 servers polled every 10 s: a round of all of them leaves every second (one call), far more often than
    their interval and still cheaper than polling each job."""
    reader = Reader()
    reader.servers = {f"s{i}": _server(f"s{i}") for i in range(100)}
    looks = ServerLooks(reader)

    async def follow(server_id: str) -> int:
        seen = 0
        for _ in range(3):
            await looks.look(TARGET, server_id, within=10.0)
            seen += 1
        return seen

    counts = await asyncio.wait_for(asyncio.gather(*(follow(f"s{i}") for i in range(100))), timeout=4.5)
    assert counts == [3] * 100
    assert len(reader.calls) <= 4  # three rounds of one call each (a straggler round at most)
    await looks.aclose()


async def test_a_single_slow_poll_is_not_looked_at_more_often_than_half_its_interval_allows():
    """One server polled every 4 s: eager rounds would cost more than half of polling its job, so none goes
    out; the look waits until it is due."""
    reader = Reader()
    reader.servers = {"a": _server("a")}
    looks = ServerLooks(reader)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await looks.look(TARGET, "a", within=0.01)  # a first round
    await looks.look(TARGET, "a", within=4.0)
    assert loop.time() - started >= 3.9
    assert len(reader.calls) == 2
    await looks.aclose()


async def test_no_eager_round_while_calls_queue_for_the_rate_limit():
    """Budget short: submissions waiting for tokens come first; looks go out only when due."""
    reader = Reader(qps=1000.0, burst=1)
    reader.servers = {f"s{i}": _server(f"s{i}") for i in range(100)}
    looks = ServerLooks(reader)
    await asyncio.gather(*(looks.look(TARGET, f"s{i}", within=0.01) for i in range(100)))
    reader.calls.clear()
    # someone waits for the rate limiter the whole time
    reader.bucket.pause(2.5)
    waiter = asyncio.create_task(reader.bucket.acquire())
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(looks.look(TARGET, f"s{i}", within=2.0) for i in range(100)))
    assert loop.time() - started >= 1.9  # not sooner: no eager round while the POST waited
    waiter.cancel()
    await looks.aclose()


async def test_a_cancelled_look_is_not_sent():
    reader = Reader()
    reader.servers = {"a": _server("a"), "b": _server("b")}
    looks = ServerLooks(reader)
    cancelled = asyncio.create_task(looks.look(TARGET, "a", within=0.3))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert (await looks.look(TARGET, "b", within=0.05)).id == "b"
    assert reader.calls == [["b"]]
    await looks.aclose()


async def test_a_refused_list_call_turns_bulk_reads_off_for_that_target_only():
    reader = Reader()
    reader.servers = {"a": _server("a")}
    looks = ServerLooks(reader)
    reader.fail = TerminalError(operation=Operation.LIST_SERVERS, http_status=403, code="Ecs.0319")
    with pytest.raises(TerminalError):
        await looks.look(TARGET, "a", within=0.01)
    with pytest.raises(LooksUnavailable):  # not tried again: the caller reads the server alone
        await looks.look(TARGET, "a", within=0.01)
    reader.fail = None
    other = CloudTarget("https://ecs.example", "p1", Credentials("AK2", "SK2"))
    assert (await looks.look(other, "a", within=0.01)).id == "a"
    await looks.aclose()


async def test_looks_share_a_call_only_with_the_very_same_credentials():
    """Same access key, another secret key (a tenant's Secret with someone else's AK): never one call for both,
    or one would be signed with the other's secret."""
    reader = Reader()
    reader.servers = {"a": _server("a"), "b": _server("b")}
    signed: list[str] = []
    real = reader.get_servers

    async def get_servers(target, server_ids, *, slot_taken=False):
        signed.append(target.credentials.secret_key)
        return await real(target, server_ids, slot_taken=slot_taken)

    reader.get_servers = get_servers
    looks = ServerLooks(reader)
    mine = CloudTarget("https://ecs.example", "p1", Credentials("AK", "SK-mine"))
    theirs = CloudTarget("https://ecs.example", "p1", Credentials("AK", "SK-theirs"))
    await asyncio.gather(looks.look(mine, "a", within=0.05), looks.look(theirs, "b", within=0.05))
    assert sorted(signed) == ["SK-mine", "SK-theirs"] and sorted(reader.calls) == [["a"], ["b"]]
    await looks.aclose()


async def test_a_target_that_hangs_holds_no_other_target():
    reader = Reader()
    reader.servers = {"a": _server("a")}
    hung = asyncio.Event()
    real = reader.get_servers

    async def get_servers(target, server_ids, *, slot_taken=False):
        if target.endpoint == "https://hung.example":
            await hung.wait()
        return await real(target, server_ids, slot_taken=slot_taken)

    reader.get_servers = get_servers
    looks = ServerLooks(reader)
    stuck = CloudTarget("https://hung.example", "p1", Credentials("AK", "SK"))
    waiting = [asyncio.create_task(looks.look(stuck, f"s{i}", within=0.01)) for i in range(500)]
    await asyncio.sleep(0.1)  # every call slot of the hung endpoint is taken
    assert (await asyncio.wait_for(looks.look(TARGET, "a", within=0.01), timeout=2)).id == "a"
    hung.set()
    await asyncio.gather(*waiting)
    await looks.aclose()


async def test_one_server_looked_at_again_and_again_is_paced_by_its_interval():
    """The pacing of a target outlives each call: a look asked right after the last one answered still waits
    until due (an eager round for one server would cost more than polling its job)."""
    reader = Reader()
    reader.servers = {"a": _server("a")}
    looks = ServerLooks(reader)
    loop = asyncio.get_running_loop()
    await looks.look(TARGET, "a", within=0.01)
    started = loop.time()
    for _ in range(3):
        await looks.look(TARGET, "a", within=0.5)
    assert loop.time() - started >= 1.4
    assert len(reader.calls) == 4
    await looks.aclose()


async def test_a_look_due_later_than_the_sender_wakes_does_not_wake_it():
    """Each pass of the sender weighs every pending look: woken by every new look, a fleet of N cost N passes
    over N looks (quadratic; seconds of CPU at 5000). Only a look due sooner than its wake-up wakes it."""

    class Counting(ServerLooks):
        passes = 0

        def eager_interval(self, queue):
            Counting.passes += 1
            return super().eager_interval(queue)

    reader = Reader()
    reader.servers = {f"s{i}": _server(f"s{i}") for i in range(2001)}
    looks = Counting(reader)
    first = asyncio.create_task(looks.look(TARGET, "s0", within=0.5))
    await asyncio.sleep(0.01)
    later = []
    for i in range(1, 2001):  # one by one, as runners ask, each due after the first
        later.append(asyncio.create_task(looks.look(TARGET, f"s{i}", within=5.0)))
        await asyncio.sleep(0)
    assert Counting.passes < 10
    soon = asyncio.create_task(looks.look(TARGET, "s1", within=0.01))  # due sooner: wakes the sender
    assert (await soon).id == "s1"
    assert (await first).id == "s0"
    for task in later:
        task.cancel()
    await looks.aclose()


async def test_looks_asked_one_by_one_still_get_eager_rounds():
    """The first look alone makes eager rounds rare (one look: polling it costs little); the later ones, which
    make them frequent, do not wake the sender (see above): it weighs them again within a second."""
    reader = Reader()
    reader.servers = {f"s{i}": _server(f"s{i}") for i in range(100)}
    looks = ServerLooks(reader)
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending = []
    for i in range(100):
        pending.append(asyncio.create_task(looks.look(TARGET, f"s{i}", within=10.0)))
        await asyncio.sleep(0.001)
    await asyncio.gather(*pending)
    assert loop.time() - started < 3.0  # an eager round, not the poll interval (10 s)
    await looks.aclose()


async def test_calls_of_due_looks_do_not_put_off_the_eager_rounds():
    """1000 servers polled every 60 s (an eager round of all of them every 2 s), and one look due every 0.6 s (a
    fleet whose polls are spread). Each due look leaves in a call topped up with the 99 looks due soonest: not a
    round of every look, so it must not put the next eager round off. It once did, and a job that ended was seen
    only when its look came up in a topped-up call (about 6 s here) instead of within an eager round."""
    reader = Reader()
    reader.servers = {f"s{i}": _server(f"s{i}") for i in range(1000)}
    reader.servers["due"] = _server("due", "ACTIVE")
    looks = ServerLooks(reader)
    loop = asyncio.get_running_loop()
    answered: dict[str, float] = {}

    async def follow(server_id: str) -> None:
        while True:
            await looks.look(TARGET, server_id, within=60.0)
            answered[server_id] = loop.time()

    asked: set[asyncio.Task] = set()

    async def due_looks() -> None:
        while True:
            task = asyncio.create_task(looks.look(TARGET, "due", within=1.0))
            asked.add(task)
            task.add_done_callback(asked.discard)
            await asyncio.sleep(0.6)

    followers = [asyncio.create_task(follow(f"s{i}")) for i in range(1000)]
    dues = asyncio.create_task(due_looks())
    await asyncio.sleep(3.0)
    last = max(answered, key=answered.get)  # just answered: the furthest from a topped-up call
    reader.servers[last] = _server(last, "ACTIVE")
    ended = loop.time()
    while answered[last] < ended:  # any answer after the end sees it (the reader answers from `servers`)
        assert loop.time() - ended < 3.5, "the end is seen only in a topped-up call, not in an eager round"
        await asyncio.sleep(0.05)
    for task in [*followers, dues]:
        task.cancel()
    await asyncio.gather(*followers, dues, return_exceptions=True)
    await looks.aclose()


async def test_an_eager_round_held_back_is_tried_again_soon():
    """Calls queue for the rate limit for a moment when the round is due (a burst of job reads): the round leaves
    soon after, not a whole eager interval later."""
    reader = Reader(qps=1000.0, burst=1)
    reader.servers = {f"s{i}": _server(f"s{i}") for i in range(100)}
    looks = ServerLooks(reader)
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(looks.look(TARGET, f"s{i}", within=0.01) for i in range(100)))  # a round of all
    started = loop.time()  # the next eager round is due a second from now (100 looks, polled every 10 s)
    pending = asyncio.gather(*(looks.look(TARGET, f"s{i}", within=10.0) for i in range(100)))
    await asyncio.sleep(0.9)
    reader.bucket.pause(0.2)  # from 0.9 to 1.1 s, a call waits for the rate limiter
    waiter = asyncio.create_task(reader.bucket.acquire())
    await pending
    assert loop.time() - started < 1.7  # tried again within a quarter second of 1.1 s, not at 2 s
    await waiter
    await looks.aclose()


async def test_a_hold_is_counted_once_however_often_the_round_is_tried():
    class Kinds:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_look_round(self, kind: str, servers: int) -> None:
            self.seen.append(kind)

    kinds = Kinds()
    reader = Reader(qps=1000.0, burst=1)
    reader.servers = {f"s{i}": _server(f"s{i}") for i in range(100)}
    looks = ServerLooks(reader, observer=kinds)
    await asyncio.gather(*(looks.look(TARGET, f"s{i}", within=0.01) for i in range(100)))
    kinds.seen.clear()
    pending = asyncio.gather(*(looks.look(TARGET, f"s{i}", within=10.0) for i in range(100)))
    await asyncio.sleep(0.9)
    reader.bucket.pause(0.8)  # the eager round is tried at about 1.0, 1.25, 1.5 and 1.75 s: held each time
    waiter = asyncio.create_task(reader.bucket.acquire())
    await pending
    await waiter
    assert kinds.seen == ["skipped", "eager"]
    await looks.aclose()
