"""leader.LeaderElector's decisions, one round at a time, on an in-memory Lease store with compare-and-swap and an
injected clock (no sleeps); its loops with tiny real timings; and Kube's three Lease calls on the wire."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import kubernetes
import pytest
from aiohttp import web

from ecs_reinstall.kube import Conflict, Kube, KubeError, KubeUnavailable, NotFound
from ecs_reinstall.leader import LeaderElector, _Outcome, check_timings, default_identity
from ecs_reinstall.metrics import Metrics

NS, NAME = "ops", "ecs-reinstall-operator"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeKube:
    """One Lease with a resourceVersion: creates fail if it exists, PUTs at another version fail (409)."""

    def __init__(self) -> None:
        self.lease: dict | None = None
        self.version = 0
        self.calls: list[str] = []
        self.fail: Exception | None = None  # raised by every call while set
        self.hang = asyncio.Event()  # while clear and `hanging`, PUTs never answer
        self.hanging = False

    def store(self, body: dict) -> dict:
        self.version += 1
        lease = copy.deepcopy(body)
        lease["metadata"]["resourceVersion"] = str(self.version)
        self.lease = lease
        return copy.deepcopy(lease)

    def put_holder(self, holder: str, duration: int = 15, renew: str = "t1") -> None:
        """Someone else writes the Lease."""
        body = copy.deepcopy(self.lease) if self.lease else {"metadata": {"name": NAME, "namespace": NS}}
        body["spec"] = {
            **(body.get("spec") or {}),
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "renewTime": renew,
        }
        self.store(body)

    async def get_lease(self, namespace: str, name: str) -> dict:
        self.calls.append("get")
        if self.fail:
            raise self.fail
        if self.lease is None:
            raise NotFound(404, "NotFound")
        return copy.deepcopy(self.lease)

    async def create_lease(self, namespace: str, body: dict) -> dict:
        self.calls.append("create")
        if self.fail:
            raise self.fail
        if self.lease is not None:
            raise Conflict(409, "AlreadyExists")
        return self.store(body)

    async def replace_lease(self, namespace: str, name: str, body: dict) -> dict:
        self.calls.append("update")
        if self.hanging:
            await self.hang.wait()
        if self.fail:
            raise self.fail
        if self.lease is None:
            raise NotFound(404, "NotFound")
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict")
        return self.store(body)


def elector(kube: FakeKube, identity: str = "me", clock: Clock | None = None, **kwargs: Any) -> LeaderElector:
    return LeaderElector(
        kube,  # type: ignore[arg-type]
        namespace=NS,
        name=NAME,
        identity=identity,
        clock=clock or Clock(),
        **kwargs,
    )


def spec(kube: FakeKube) -> dict:
    assert kube.lease is not None
    return kube.lease["spec"]


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


# --- settings -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lease", "renew", "retry", "message"),
    [
        (10, 10, 2, "renew deadline (10s) must be shorter than the lease duration (10s)"),
        (15, 20, 2, "renew deadline (20s) must be shorter than the lease duration (15s)"),
        (15, 10, 10, "retry period (10s) must be shorter than the renew deadline (10s)"),
        (15, 10, 0, "must be positive"),
        (15, -1, 0.5, "must be positive"),
        (float("nan"), 10, 2, "must be positive"),
    ],
)
def test_timings_are_checked(lease: float, renew: float, retry: float, message: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        check_timings(lease, renew, retry)
    with pytest.raises(ValueError) as exc:
        LeaderElector(
            FakeKube(),  # type: ignore[arg-type]
            namespace=NS,
            name=NAME,
            identity="me",
            lease_seconds=lease,
            renew_deadline=renew,
            retry_period=retry,
        )
    assert message in str(exc.value)


def test_defaults_are_client_gos_and_valid() -> None:
    e = elector(FakeKube())
    assert (e.lease_seconds, e.renew_deadline, e.retry_period) == (15.0, 10.0, 2.0)
    assert not e.is_leader


def test_an_empty_identity_is_refused() -> None:
    with pytest.raises(ValueError, match="identity"):
        elector(FakeKube(), identity="")


def test_default_identity_is_host_and_random_suffix() -> None:
    first, second = default_identity(), default_identity()
    assert first != second
    host, _, suffix = first.rpartition("_")
    assert host and len(suffix) == 8 and int(suffix, 16) >= 0


# --- one round of tryAcquireOrRenew ---------------------------------------------------------------------------


async def test_a_missing_lease_is_created_naming_us() -> None:
    kube = FakeKube()
    assert await elector(kube, lease_seconds=14.5)._try_acquire_or_renew() is _Outcome.HELD
    assert kube.calls == ["get", "create"]
    s = spec(kube)
    assert s["holderIdentity"] == "me"
    assert s["leaseDurationSeconds"] == 15  # a whole number of seconds, never shorter than ours
    assert s["leaseTransitions"] == 0
    assert s["acquireTime"] == s["renewTime"] and s["renewTime"].endswith("Z")
    assert kube.lease["metadata"] == {"name": NAME, "namespace": NS, "resourceVersion": "1"}


async def test_a_lease_created_by_another_first_is_not_ours() -> None:
    kube = FakeKube()
    e = elector(kube)

    async def create_first(namespace: str, body: dict) -> dict:
        kube.put_holder("other")  # the other candidate's create lands between our GET and our create
        return await FakeKube.create_lease(kube, namespace, body)

    kube.create_lease = create_first  # type: ignore[method-assign]
    assert await e._try_acquire_or_renew() is _Outcome.MOVED
    assert spec(kube)["holderIdentity"] == "other"


async def test_a_live_holder_is_taken_over_only_after_its_record_is_unchanged_for_the_lease_duration() -> (
    None
):
    kube, clock = FakeKube(), Clock()
    kube.put_holder("other", duration=15)
    e = elector(kube, clock=clock)
    assert await e._try_acquire_or_renew() is _Outcome.OTHER  # first seen now: 15 s from now at the earliest
    clock.advance(14.9)
    assert await e._try_acquire_or_renew() is _Outcome.OTHER
    kube.put_holder("other", duration=15, renew="t2")  # the holder renews: the 15 s start again
    clock.advance(1)
    assert await e._try_acquire_or_renew() is _Outcome.OTHER
    clock.advance(14.9)
    assert await e._try_acquire_or_renew() is _Outcome.OTHER
    assert kube.calls.count("update") == 0, "never written while the holder's record is fresh"
    clock.advance(0.2)
    assert await e._try_acquire_or_renew() is _Outcome.HELD
    assert spec(kube)["holderIdentity"] == "me"
    assert spec(kube)["leaseTransitions"] == 1


async def test_the_other_hosts_clock_is_never_read() -> None:
    """A renewTime from long ago (or the future) changes nothing: only changes of the record, seen on our clock."""
    kube, clock = FakeKube(), Clock()
    kube.put_holder("other", renew="1970-01-01T00:00:00.000000Z")
    e = elector(kube, clock=clock)
    assert await e._try_acquire_or_renew() is _Outcome.OTHER
    clock.advance(10)
    kube.put_holder("other", renew="2999-01-01T00:00:00.000000Z")
    clock.advance(14)
    assert await e._try_acquire_or_renew() is _Outcome.OTHER
    clock.advance(15)
    assert await e._try_acquire_or_renew() is _Outcome.HELD


async def test_the_holders_own_lease_duration_counts() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put_holder("other", duration=40)  # the holder runs with a longer lease than ours
    e = elector(kube, clock=clock, lease_seconds=15)
    assert await e._try_acquire_or_renew() is _Outcome.OTHER
    clock.advance(39)
    assert await e._try_acquire_or_renew() is _Outcome.OTHER
    clock.advance(2)
    assert await e._try_acquire_or_renew() is _Outcome.HELD


@pytest.mark.parametrize("holder", ["", "me"])
async def test_a_released_lease_or_one_naming_us_is_taken_at_once(holder: str) -> None:
    kube = FakeKube()
    kube.put_holder(holder)
    spec(kube)["leaseTransitions"] = 3
    spec(kube)["acquireTime"] = "t0"
    assert await elector(kube)._try_acquire_or_renew() is _Outcome.HELD
    s = spec(kube)
    assert s["holderIdentity"] == "me"
    if holder == "me":  # the same holder (a restarted container of the same Pod): no transition
        assert (s["leaseTransitions"], s["acquireTime"]) == (3, "t0")
    else:
        assert s["leaseTransitions"] == 4 and s["acquireTime"] != "t0"


async def test_a_write_that_meets_a_409_is_not_a_success() -> None:
    kube = FakeKube()
    kube.put_holder("")
    e = elector(kube)

    async def moved_meanwhile(namespace: str, name: str, body: dict) -> dict:
        kube.put_holder("other")  # someone else wrote between our GET and our PUT
        return await FakeKube.replace_lease(kube, namespace, name, body)

    kube.replace_lease = moved_meanwhile  # type: ignore[method-assign]
    assert await e._try_acquire_or_renew() is _Outcome.MOVED
    assert spec(kube)["holderIdentity"] == "other" and not e.is_leader


async def test_a_leader_renews_with_one_put_at_the_version_it_wrote() -> None:
    kube = FakeKube()
    e = elector(kube)
    assert await e._try_acquire_or_renew() is _Outcome.HELD
    e._leader = True
    kube.calls.clear()
    first = spec(kube)["renewTime"]
    await asyncio.sleep(0.001)
    assert await e._try_acquire_or_renew() is _Outcome.HELD
    assert kube.calls == ["update"]
    assert spec(kube)["renewTime"] != first and spec(kube)["leaseTransitions"] == 0


async def test_a_leader_whose_lease_names_someone_else_has_lost_it() -> None:
    kube, clock = FakeKube(), Clock()
    e = elector(kube, clock=clock)
    assert await e._try_acquire_or_renew() is _Outcome.HELD
    e._leader = True
    kube.put_holder("other")
    kube.calls.clear()
    assert await e._try_acquire_or_renew() is _Outcome.OTHER  # at once, however fresh the record
    assert kube.calls == ["update", "get"], "the 409 is followed by a read, never by a blind write"
    assert spec(kube)["holderIdentity"] == "other"


async def test_a_leader_whose_lease_was_released_by_someone_else_has_lost_it() -> None:
    kube = FakeKube()
    e = elector(kube)
    assert await e._try_acquire_or_renew() is _Outcome.HELD
    e._leader = True
    kube.put_holder("")
    assert await e._try_acquire_or_renew() is _Outcome.OTHER
    assert spec(kube)["holderIdentity"] == ""


async def test_a_leader_whose_lease_was_deleted_has_lost_it() -> None:
    kube = FakeKube()
    e = elector(kube)
    assert await e._try_acquire_or_renew() is _Outcome.HELD
    e._leader = True
    kube.lease = None
    assert await e._try_acquire_or_renew() is _Outcome.OTHER
    assert kube.lease is None, "not re-created: someone else may be creating it"


async def test_a_leader_survives_an_unrelated_write_to_its_lease() -> None:
    kube = FakeKube()
    e = elector(kube)
    assert await e._try_acquire_or_renew() is _Outcome.HELD
    e._leader = True
    assert kube.lease is not None
    kube.lease["metadata"]["labels"] = {"team": "ops"}
    kube.store(kube.lease)  # a label added by someone: a new resourceVersion, still naming us
    kube.calls.clear()
    assert await e._try_acquire_or_renew() is _Outcome.HELD
    assert kube.calls == ["update", "get", "update"]
    assert kube.lease["metadata"]["labels"] == {"team": "ops"}


# --- the loops ----------------------------------------------------------------------------------------------

FAST = {"lease_seconds": 0.5, "renew_deadline": 0.3, "retry_period": 0.05}


class Work:
    """on_started / on_stopped that record what happened, and when."""

    def __init__(self, kube: FakeKube | None = None) -> None:
        self.kube = kube
        self.events: list[str] = []
        self.started = asyncio.Event()
        self.stopped_at: float | None = None
        self.holder_when_stopped: str | None = None

    async def on_started(self) -> None:
        self.events.append("started")
        self.started.set()

    def on_stopped(self) -> None:
        self.events.append("stopped")
        self.stopped_at = time.monotonic()


async def test_run_starts_the_work_once_leading_and_keeps_renewing() -> None:
    kube, metrics, work = FakeKube(), Metrics(), Work()
    e = elector(kube, clock=time.monotonic, metrics=metrics, **FAST)
    task = asyncio.create_task(e.run(work.on_started, work.on_stopped))
    await asyncio.wait_for(work.started.wait(), 5)
    assert e.is_leader and sample(metrics, "ecs_reinstall_leader") == 1
    assert sample(metrics, "ecs_reinstall_leader_transitions_total", {"event": "acquired"}) == 1
    version = kube.version
    deadline = time.monotonic() + 5
    while kube.version < version + 3:  # renewals go on every retry period
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert work.events == ["started"], "cancelled: the caller stops the work"
    assert e.is_leader, "the lease is kept until released"


async def test_run_waits_while_another_holds_the_lease() -> None:
    kube, work = FakeKube(), Work()
    kube.put_holder("other", duration=60)
    e = elector(kube, clock=time.monotonic, **FAST)
    task = asyncio.create_task(e.run(work.on_started, work.on_stopped))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(work.started.wait()), 0.5)
    assert not e.is_leader and kube.calls.count("get") >= 5 and "update" not in kube.calls
    kube.put_holder("")  # released
    await asyncio.wait_for(work.started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_renewal_that_never_answers_stops_the_work_at_the_renew_deadline() -> None:
    kube, metrics, work = FakeKube(), Metrics(), Work()
    e = elector(kube, clock=time.monotonic, metrics=metrics, **FAST)
    task = asyncio.create_task(e.run(work.on_started, work.on_stopped))
    await asyncio.wait_for(work.started.wait(), 5)
    kube.hanging = True
    hung_at = time.monotonic()
    await asyncio.wait_for(task, 5)  # run returns: leadership lost
    assert work.events == ["started", "stopped"]
    assert work.stopped_at is not None
    assert work.stopped_at - hung_at <= FAST["renew_deadline"] + 0.2
    assert not e.is_leader and sample(metrics, "ecs_reinstall_leader") == 0
    assert sample(metrics, "ecs_reinstall_leader_transitions_total", {"event": "lost"}) == 1


async def test_failing_renewals_stop_the_work_at_the_renew_deadline_not_before() -> None:
    kube, work = FakeKube(), Work()
    e = elector(kube, clock=time.monotonic, **FAST)
    task = asyncio.create_task(e.run(work.on_started, work.on_stopped))
    await asyncio.wait_for(work.started.wait(), 5)
    renewed = kube.version
    kube.fail = KubeUnavailable(503, "ServiceUnavailable")
    failing_at = time.monotonic()
    await asyncio.wait_for(task, 5)
    stopped_after = work.stopped_at - failing_at  # type: ignore[operator]
    assert (
        FAST["renew_deadline"] - FAST["retry_period"] - 0.02 <= stopped_after <= FAST["renew_deadline"] + 0.2
    )
    assert kube.calls.count("update") >= 3, "retried every retry period until the deadline"
    assert kube.version == renewed


async def test_a_lease_taken_by_someone_else_stops_the_work_at_once() -> None:
    kube, work = FakeKube(), Work()
    e = elector(kube, clock=time.monotonic, lease_seconds=15, renew_deadline=10, retry_period=0.05)
    task = asyncio.create_task(e.run(work.on_started, work.on_stopped))
    await asyncio.wait_for(work.started.wait(), 5)
    kube.put_holder("other")
    taken_at = time.monotonic()
    await asyncio.wait_for(task, 5)
    assert work.events == ["started", "stopped"]
    assert work.stopped_at - taken_at < 1  # type: ignore[operator]


async def test_on_stopped_runs_before_anything_else_of_the_step_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube, metrics = FakeKube(), Metrics()
    e = elector(kube, clock=time.monotonic, metrics=metrics, **FAST)
    seen: dict[str, object] = {}
    started = asyncio.Event()

    async def on_started() -> None:
        started.set()

    def on_stopped() -> None:
        seen["leader"] = e.is_leader
        seen["gauge"] = sample(metrics, "ecs_reinstall_leader")
        seen["logged"] = "lost the leader lease" in caplog.text

    caplog.set_level("INFO", logger="ecs_reinstall.leader")
    task = asyncio.create_task(e.run(on_started, on_stopped))
    await asyncio.wait_for(started.wait(), 5)
    assert f"acquired the leader lease {NS}/{NAME} as me" in caplog.text
    kube.put_holder("other")
    await asyncio.wait_for(task, 5)
    assert seen == {"leader": False, "gauge": 1, "logged": False}
    lost = [r for r in caplog.records if "lost the leader lease" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelname == "WARNING"
    assert f"{NS}/{NAME} as me" in lost[0].getMessage() and "'other'" in lost[0].getMessage()


async def test_work_still_starting_is_cancelled_when_the_lease_is_lost() -> None:
    kube = FakeKube()
    e = elector(kube, clock=time.monotonic, **FAST)
    events: list[str] = []

    async def on_started() -> None:
        events.append("starting")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("start cancelled")
            raise

    task = asyncio.create_task(e.run(on_started, lambda: events.append("stopped")))
    deadline = time.monotonic() + 5
    while "starting" not in events:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    kube.put_holder("other")
    await asyncio.wait_for(task, 5)
    assert events == ["starting", "stopped", "start cancelled"]


async def test_work_that_fails_to_start_steps_down_and_releases() -> None:
    kube, work = FakeKube(), Work()
    e = elector(kube, clock=time.monotonic, **FAST)

    async def on_started() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(e.run(on_started, work.on_stopped), 5)
    assert work.events == ["stopped"] and not e.is_leader
    assert spec(kube)["holderIdentity"] == "" and spec(kube)["leaseDurationSeconds"] == 1


async def test_errors_while_waiting_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    kube, work = FakeKube(), Work()
    kube.fail = KubeError(403, "Forbidden")
    e = elector(kube, clock=time.monotonic, **FAST)
    caplog.set_level("WARNING", logger="ecs_reinstall.leader")
    task = asyncio.create_task(e.run(work.on_started, work.on_stopped))
    deadline = time.monotonic() + 5
    while kube.calls.count("get") < 4:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert caplog.text.count("Forbidden") == 1
    kube.fail = None
    await asyncio.wait_for(work.started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- release ---------------------------------------------------------------------------------------------


async def test_release_empties_the_holder() -> None:
    kube, metrics, work = FakeKube(), Metrics(), Work()
    e = elector(kube, clock=time.monotonic, metrics=metrics, **FAST)
    task = asyncio.create_task(e.run(work.on_started, work.on_stopped))
    await asyncio.wait_for(work.started.wait(), 5)
    task.cancel()
    await asyncio.wait({task})
    transitions = spec(kube)["leaseTransitions"]
    await e.release()
    s = spec(kube)
    assert s["holderIdentity"] == "" and s["leaseDurationSeconds"] == 1
    assert s["leaseTransitions"] == transitions
    assert not e.is_leader and sample(metrics, "ecs_reinstall_leader") == 0
    assert sample(metrics, "ecs_reinstall_leader_transitions_total", {"event": "lost"}) == 0
    kube.calls.clear()
    await e.release()  # once only
    assert kube.calls == []


async def test_release_after_a_conflict_rereads_and_never_clears_someone_elses_lease() -> None:
    kube = FakeKube()
    e = elector(kube)
    assert await e._try_acquire_or_renew() is _Outcome.HELD
    e._leader = True
    kube.put_holder("other")
    await e.release()
    assert spec(kube)["holderIdentity"] == "other"


async def test_release_never_raises() -> None:
    kube = FakeKube()
    e = elector(kube)
    assert await e._try_acquire_or_renew() is _Outcome.HELD
    e._leader = True
    kube.fail = KubeUnavailable(0, "ClientConnectorError")
    await e.release()
    assert not e.is_leader


async def test_release_without_the_lease_does_nothing() -> None:
    kube = FakeKube()
    await elector(kube).release()
    assert kube.calls == []


# --- Kube's Lease calls on the wire ---------------------------------------------------------------------------


@pytest.fixture
async def server():
    seen: list[dict] = []
    answers: dict[tuple[str, str], tuple[int, object]] = {}

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "type": request.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
        )
        status, payload = answers.get((request.method, request.path), (404, {"kind": "Status"}))
        return web.Response(status=status, text=json.dumps(payload), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen, answers
    await runner.cleanup()


async def test_kube_lease_calls(server) -> None:
    host, seen, answers = server
    configuration = kubernetes.client.Configuration()
    configuration.host = host
    kube = Kube(kubernetes.client.ApiClient(configuration))
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{NAME}"
    lease = {
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": "7"},
        "spec": {"holderIdentity": "me"},
    }
    try:
        with pytest.raises(NotFound):
            await kube.get_lease(NS, NAME)
        answers[("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")] = (409, {"kind": "Status"})
        with pytest.raises(Conflict):
            await kube.create_lease(NS, lease)
        answers[("PUT", path)] = (200, lease)
        assert await kube.replace_lease(NS, NAME, lease) == lease
        answers[("PUT", path)] = (409, {"kind": "Status"})
        with pytest.raises(Conflict):
            await kube.replace_lease(NS, NAME, lease)
        with pytest.raises(ValueError, match="resourceVersion"):
            await kube.replace_lease(NS, NAME, {"metadata": {"name": NAME}})
    finally:
        await kube.aclose()
    assert [(s["method"], s["path"]) for s in seen] == [
        ("GET", path),
        ("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"),
        ("PUT", path),
        ("PUT", path),
    ]
    assert [s["type"] for s in seen[1:]] == ["application/json"] * 3
    assert seen[2]["body"] == lease


# --- the process ---------------------------------------------------------------------------------------------


def test_main_exits_non_zero_with_one_clear_line_when_the_lease_is_lost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ecs_reinstall import __main__ as entry
    from ecs_reinstall.leader import LeadershipLost

    async def lost(settings: object, **_: object) -> None:
        raise LeadershipLost("lost the leader lease ops/ecs-reinstall-operator (holder identity pod-1)")

    monkeypatch.setattr(entry, "run_operator", lost)
    monkeypatch.setattr(entry, "configure_logging", lambda settings: None)
    monkeypatch.setattr(entry.preflight, "check", lambda settings, kubeconfig: None)
    caplog.set_level("INFO")
    assert entry.main(["run"]) == 1
    (line,) = [r for r in caplog.records if "standby" in r.getMessage()]
    assert line.levelname == "ERROR"
    assert line.getMessage() == (
        "lost the leader lease ops/ecs-reinstall-operator (holder identity pod-1); "
        "exiting so that the Pod restarts as a standby"
    )


async def test_the_stop_flag_relay_takes_every_kind_of_flag() -> None:
    import concurrent.futures
    import threading

    from ecs_reinstall.__main__ import _relay_flag

    loop = asyncio.get_running_loop()
    for make, raise_ in [
        (asyncio.Event, lambda f: f.set()),
        (loop.create_future, lambda f: f.set_result(None)),
        (threading.Event, lambda f: f.set()),
        (concurrent.futures.Future, lambda f: f.set_result(None)),
    ]:
        flag = make()
        stop = loop.create_future()
        relay = asyncio.create_task(_relay_flag(flag, stop))
        await asyncio.sleep(0.01)
        assert not stop.done()
        raise_(flag)
        await asyncio.wait_for(relay, 2)
        assert stop.done(), make
    stop = loop.create_future()
    await _relay_flag(None, stop)  # no flag: nothing to relay
    assert not stop.done()
