"""Leader election against a real Lease API (kube_emulator, and a real kube-apiserver for the tests that need no fault
injection; both over loopback): one leader at a time, a standby that takes
over only after the lease duration (at once after a release), a 409 race with exactly one winner, and a leader
that steps down before its renew deadline when it cannot renew, before anyone else could acquire."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from ecs_reinstall.__main__ import run_operator
from ecs_reinstall.kube import Kube, load_config
from ecs_reinstall.leader import LeaderElector, LeadershipLost, _Outcome
from ecs_reinstall.settings import Settings
from kube_emulator.faults import FaultRule
from kube_emulator.testing import KubeEmulatorHandle, kube_emulator_in_thread, running_kube_emulator
from realkube import BACKEND_ID, running_kube_backend

NS, NAME = "default", "ecs-reinstall-operator"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{NAME}"
# Short timings: a 2 s lease, renewed every 0.25 s, given up 1 s after the last successful renewal.
TIMINGS = {"lease_seconds": 2.0, "renew_deadline": 1.0, "retry_period": 0.25}


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[KubeEmulatorHandle]:
    async with running_kube_emulator(tmp_path) as handle:
        yield handle


@pytest.fixture(params=["emulator", BACKEND_ID])
async def lease_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KubeEmulatorHandle]:
    """The Lease API of kube_emulator, or of a fresh real kube-apiserver (tests/realkube.py)."""
    async with running_kube_backend(request.param, tmp_path) as handle:
        yield handle


class Candidate:
    """An elector on its own client, with the times its work started and stopped."""

    def __init__(self, emulator: KubeEmulatorHandle, identity: str, kube: Kube | None = None) -> None:
        self.kube = kube or Kube(load_config(str(emulator.kubeconfig)))
        self.elector = LeaderElector(self.kube, namespace=NS, name=NAME, identity=identity, **TIMINGS)
        self.started = asyncio.Event()
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.task: asyncio.Task | None = None

    async def on_started(self) -> None:
        self.started_at = time.monotonic()
        self.started.set()

    def on_stopped(self) -> None:
        self.stopped_at = time.monotonic()

    def run(self) -> Candidate:
        self.task = asyncio.create_task(self.elector.run(self.on_started, self.on_stopped))
        return self

    async def leads_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self.started.wait()), seconds)
        except TimeoutError:
            return False
        return True

    async def kill(self) -> None:
        """Stops the elector where it is, without releasing (a crash, as seen from the API)."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.wait({self.task})

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            await self.kill()
        await self.kube.aclose()


@pytest.fixture
async def candidates() -> AsyncIterator[list[Candidate]]:
    made: list[Candidate] = []
    yield made
    for candidate in made:
        await candidate.close()


async def read_lease(kube: Kube) -> dict:
    return dict((await kube.get_lease(NS, NAME)).get("spec") or {})


async def test_one_leads_the_other_waits(lease_api: KubeEmulatorHandle, candidates: list[Candidate]) -> None:
    a = Candidate(lease_api, "a").run()
    candidates.append(a)
    assert await a.leads_within(5)
    b = Candidate(lease_api, "b").run()
    candidates.append(b)
    # b waits as long as a renews: two lease durations here.
    assert not await b.leads_within(2 * TIMINGS["lease_seconds"])
    assert a.elector.is_leader and not b.elector.is_leader and a.stopped_at is None
    spec = await read_lease(a.kube)
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
    assert spec["leaseDurationSeconds"] == 2


async def test_a_standby_takes_over_only_after_the_lease_duration(
    lease_api: KubeEmulatorHandle, candidates: list[Candidate]
) -> None:
    a = Candidate(lease_api, "a").run()
    candidates.append(a)
    assert await a.leads_within(5)
    b = Candidate(lease_api, "b").run()
    candidates.append(b)
    assert not await b.leads_within(1)
    await a.kill()  # stops renewing, keeps the lease: a crashed leader
    killed_at = time.monotonic()
    assert (await read_lease(b.kube))["holderIdentity"] == "a"
    assert await b.leads_within(TIMINGS["lease_seconds"] + 3 * TIMINGS["retry_period"] + 1)
    assert b.started_at is not None
    waited = b.started_at - killed_at
    # a's last renewal was at most one retry period before the kill; b waited a whole lease from then on.
    assert waited >= TIMINGS["lease_seconds"] - TIMINGS["retry_period"] - 0.05, waited
    spec = await read_lease(b.kube)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


async def test_release_hands_over_at_once(lease_api: KubeEmulatorHandle, candidates: list[Candidate]) -> None:
    a = Candidate(lease_api, "a").run()
    candidates.append(a)
    assert await a.leads_within(5)
    b = Candidate(lease_api, "b").run()
    candidates.append(b)
    assert not await b.leads_within(0.5)
    await a.kill()
    released_at = time.monotonic()
    await a.elector.release()
    assert not a.elector.is_leader
    assert await b.leads_within(TIMINGS["retry_period"] + 0.5)  # well within the 2 s lease
    assert b.started_at - released_at < TIMINGS["lease_seconds"] / 2  # type: ignore[operator]
    spec = await read_lease(b.kube)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


class GatedKube(Kube):
    """A client whose Lease reads answer only once `gate` is open: its holder then writes at a stale version."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.read = asyncio.Event()

    async def get_lease(self, namespace: str, name: str) -> dict:
        try:
            return await super().get_lease(namespace, name)
        finally:
            self.read.set()
            await self.gate.wait()


@pytest.mark.parametrize("start", ["missing", "released"])
async def test_a_409_race_leaves_exactly_one_leader(
    lease_api: KubeEmulatorHandle, candidates: list[Candidate], start: str
) -> None:
    if start == "released":
        a = Candidate(lease_api, "old").run()
        candidates.append(a)
        assert await a.leads_within(5)
        await a.kill()
        await a.elector.release()
    slow_kube = GatedKube(load_config(str(lease_api.kubeconfig)))
    slow = Candidate(lease_api, "slow", kube=slow_kube)
    fast = Candidate(lease_api, "fast")
    candidates += [slow, fast]
    # slow reads the Lease (missing, or released), then fast reads it too and writes; then slow writes what it
    # decided from its read: its create meets AlreadyExists, its PUT a stale resourceVersion, both 409.
    slow_round = asyncio.create_task(slow.elector._try_acquire_or_renew())
    await asyncio.wait_for(slow_kube.read.wait(), 5)
    assert await fast.elector._try_acquire_or_renew() is _Outcome.HELD
    slow_kube.gate.set()
    assert await asyncio.wait_for(slow_round, 5) is _Outcome.MOVED
    assert (await read_lease(fast.kube))["holderIdentity"] == "fast"
    # And the next round, slow reads a freshly renewed record: it waits.
    assert await slow.elector._try_acquire_or_renew() is _Outcome.OTHER


async def test_concurrent_candidates_never_both_lead(
    lease_api: KubeEmulatorHandle, candidates: list[Candidate]
) -> None:
    group = [Candidate(lease_api, f"c{i}") for i in range(4)]
    candidates += group
    for candidate in group:
        candidate.run()

    async def leaders(count: int) -> None:
        while sum(c.started.is_set() for c in group) < count:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(leaders(1), 5)
    with pytest.raises(TimeoutError):  # no second leader, for two lease durations
        await asyncio.wait_for(leaders(2), 2 * TIMINGS["lease_seconds"])
    (leader,) = [c for c in group if c.started.is_set()]
    assert [c for c in group if c.elector.is_leader] == [leader]
    assert (await read_lease(leader.kube))["holderIdentity"] == leader.elector.identity


@pytest.mark.parametrize("fault", ["errors", "unanswered"])
async def test_a_leader_that_cannot_renew_stops_before_anyone_else_can_acquire(
    emulator: KubeEmulatorHandle, candidates: list[Candidate], fault: str
) -> None:
    a = Candidate(emulator, "a").run()
    candidates.append(a)
    assert await a.leads_within(5)
    b = Candidate(emulator, "b").run()
    candidates.append(b)
    assert not await b.leads_within(0.5)
    # From now on a's renewals fail (503 until the rule is removed), or the next one is held unanswered for
    # longer than any deadline (only a writes the Lease meanwhile: b is a standby that reads).
    if fault == "errors":
        rule = FaultRule(verbs=frozenset({"update"}), path_prefix=LEASE_PATH, error_code=503)
    else:
        rule = FaultRule(verbs=frozenset({"update"}), path_prefix=LEASE_PATH, latency_seconds=30, times=1)
    emulator.faults.add(rule)
    failing_at = time.monotonic()
    assert a.task is not None
    await asyncio.wait_for(asyncio.shield(a.task), TIMINGS["renew_deadline"] + TIMINGS["retry_period"] + 1)
    assert a.stopped_at is not None and not a.elector.is_leader
    # a's last successful renewal started before the fault: it stopped within the renew deadline from there,
    # so before renew deadline + retry period from the fault, and long before the lease could pass on.
    assert a.stopped_at - failing_at <= TIMINGS["renew_deadline"] + TIMINGS["retry_period"]
    assert not b.started.is_set()
    emulator.faults.remove(rule.id)
    assert await b.leads_within(5)
    assert b.started_at is not None and b.started_at > a.stopped_at
    assert b.started_at - failing_at >= TIMINGS["lease_seconds"] - TIMINGS["retry_period"] - 0.05
    spec = await read_lease(b.kube)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


# --- the whole operator: losing the Lease stops it (non-zero exit), a graceful stop releases it ---------------

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "ecsreinstalls.ecs.reinstall.dev.yaml"


class OperatorThread:
    """`run_operator` in a thread with its own loop, as in its own process (kopf owns the loop it runs in)."""

    def __init__(
        self, settings: Settings, kubeconfig: Path, stop_flag: threading.Event | None = None
    ) -> None:
        self.error: BaseException | None = None
        self.returned = False

        def main() -> None:
            try:
                asyncio.run(run_operator(settings, kubeconfig=str(kubeconfig), stop_flag=stop_flag))
                self.returned = True
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=main, name="operator", daemon=True)
        self.thread.start()


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def holds_for(predicate, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Checks `predicate` throughout `seconds` (an invariant over time, not a wait)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        assert predicate(), f"no longer true: {what}"
        time.sleep(0.05)


def operator_settings(identity: str) -> Settings:
    return Settings(
        operator_namespace=NS,
        log_format="text",
        metrics_port=0,
        health_port=0,
        pod_name=identity,
        leader_election_lease_seconds=TIMINGS["lease_seconds"],
        leader_election_renew_deadline_seconds=TIMINGS["renew_deadline"],
        leader_election_retry_period_seconds=TIMINGS["retry_period"],
    )


@pytest.fixture
def emulator_thread(tmp_path: Path):  # type: ignore[no-untyped-def]
    with kube_emulator_in_thread(tmp_path, crds=[CRD]) as handle:
        api = kubernetes.config.new_client_from_config(str(handle.kubeconfig))
        try:
            yield handle, kubernetes.client.CoordinationV1Api(api)
        finally:
            api.close()


def holder(leases: kubernetes.client.CoordinationV1Api) -> str | None:
    try:
        return leases.read_namespaced_lease(NAME, NS).spec.holder_identity
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_the_operator_stops_with_leadership_lost_when_its_lease_is_taken(emulator_thread) -> None:  # type: ignore[no-untyped-def]
    handle, leases = emulator_thread
    operator = OperatorThread(operator_settings("op-1"), handle.kubeconfig)
    wait_for(lambda: holder(leases) == "op-1", 10, "the operator to take the Lease")
    for _ in range(
        20
    ):  # another instance takes it over: a PUT at the version it read (the leader renews too)
        lease = leases.read_namespaced_lease(NAME, NS)
        lease.spec.holder_identity = "intruder"
        try:
            leases.replace_namespaced_lease(NAME, NS, lease)
            break
        except ApiException as exc:
            if exc.status != 409:
                raise
    else:
        raise AssertionError("the Lease could not be taken over in 20 tries")
    taken_at = time.monotonic()
    operator.thread.join(10 + TIMINGS["renew_deadline"])
    assert not operator.thread.is_alive(), "the operator did not stop"
    assert isinstance(operator.error, LeadershipLost), operator.error
    assert str(operator.error) == f"lost the leader lease {NS}/{NAME} (holder identity op-1)"
    assert time.monotonic() - taken_at < 10
    assert holder(leases) == "intruder", "never written back: the Lease is someone else's"


def test_a_graceful_stop_releases_the_lease(emulator_thread) -> None:  # type: ignore[no-untyped-def]
    handle, leases = emulator_thread
    stop = threading.Event()
    operator = OperatorThread(operator_settings("op-1"), handle.kubeconfig, stop_flag=stop)
    wait_for(lambda: holder(leases) == "op-1", 10, "the operator to take the Lease")
    stop.set()
    operator.thread.join(20)
    assert not operator.thread.is_alive() and operator.error is None and operator.returned
    assert holder(leases) in ("", None)
    assert leases.read_namespaced_lease(NAME, NS).spec.lease_duration_seconds == 1


def test_a_standby_operator_takes_over_when_the_leader_stops(emulator_thread) -> None:  # type: ignore[no-untyped-def]
    handle, leases = emulator_thread
    stop_1, stop_2 = threading.Event(), threading.Event()
    first = OperatorThread(operator_settings("op-1"), handle.kubeconfig, stop_flag=stop_1)
    wait_for(lambda: holder(leases) == "op-1", 10, "the first operator to take the Lease")
    second = OperatorThread(operator_settings("op-2"), handle.kubeconfig, stop_flag=stop_2)
    try:
        holds_for(
            lambda: holder(leases) == "op-1" and second.thread.is_alive(),
            2 * TIMINGS["lease_seconds"],
            "the second operator to stay a standby",
        )
        stop_1.set()
        first.thread.join(20)
        assert first.returned
        wait_for(lambda: holder(leases) == "op-2", 3, "the standby to take over the released Lease")
    finally:
        stop_1.set()
        stop_2.set()
        second.thread.join(20)
    assert second.returned and holder(leases) in ("", None)
