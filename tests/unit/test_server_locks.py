import asyncio

from ecs_reinstall.server_locks import Holder, ServerLocks

A = Holder("uid-a", "team-a", "web-01")
B = Holder("uid-b", "team-b", "web-01-again")


def test_one_holder_per_server_across_namespaces():
    locks = ServerLocks()
    assert locks.try_claim("srv", A) is None
    assert locks.try_claim("srv", A) is None  # re-claiming your own server is fine
    assert locks.try_claim("srv", B) == A
    assert locks.try_claim("other", B) is None
    locks.release("srv", B.uid)  # only the holder can release
    assert locks.holder("srv") == A
    locks.release("srv", A.uid)
    assert locks.try_claim("srv", B) is None


def test_observed_active_phase_holds_the_server_after_a_restart():
    locks = ServerLocks()
    locks.observe("srv", A, "Pending")
    assert locks.holder("srv") is None
    locks.observe("srv", A, "Reinstalling")
    assert locks.try_claim("srv", B) == A


async def test_waiters_wake_when_the_holder_releases():
    locks = ServerLocks()
    locks.try_claim("srv", A)
    waiter = asyncio.create_task(locks.wait_released("srv", timeout=30))
    await asyncio.sleep(0)
    locks.release("srv", A.uid)
    await asyncio.wait_for(waiter, timeout=1)  # woke long before its 30 s timeout
