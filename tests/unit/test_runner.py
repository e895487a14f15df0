"""The runner's order of side effects, with fakes: the intent is written before the POST, a conflict or an
unknown outcome never leads to a second POST, a deleted resource stops its runner."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime

import pytest

from ecs_reinstall.cloud.errors import AmbiguousError, ThrottledError
from ecs_reinstall.cloud.models import CloudTarget, Job, JobStatus, Server
from ecs_reinstall.kube import Conflict, NotFound
from ecs_reinstall.metrics import Metrics
from ecs_reinstall.runner import Deps, Runner, Supervisor
from ecs_reinstall.server_locks import Holder
from ecs_reinstall.settings import Settings

SERVER = "6e2f0c1a-0000-4000-8000-000000000001"
UPDATED = datetime(2026, 5, 1, 11, 0, tzinfo=UTC)
LAUNCHED = datetime(2026, 4, 1, 9, 30, tzinfo=UTC)


class FakeKube:
    """One EcsReinstall with a resourceVersion; status merge patches, optionally guarded."""

    def __init__(self, journal: list, status: dict | None = None):
        self.journal = journal
        self.body = {
            "metadata": {
                "namespace": "ns",
                "name": "web",
                "uid": "u1",
                "generation": 1,
                "resourceVersion": "1",
            },
            "spec": {"serverId": SERVER, "adminPasswordSecretRef": {"name": "pw"}, "pollIntervalSeconds": 2},
            "status": status or {},
        }
        self.conflict_next = False
        self.deleted = False

    async def read_secret(self, namespace, name):
        if name == "pw":
            return {"password": b"Reinstall!2026pw"}
        return {"accessKey": b"AK0000000000", "secretKey": b"sk-secret", "projectId": b"0" * 32}

    async def patch_status(self, namespace, name, status, *, resource_version=None):
        if self.deleted:
            raise NotFound(404, "NotFound")
        if self.conflict_next or (
            resource_version and resource_version != self.body["metadata"]["resourceVersion"]
        ):
            self.conflict_next = False
            raise Conflict(409, "Conflict")
        self.journal.append(("patch", status.get("phase"), bool(resource_version)))
        for key, value in status.items():
            if value is None:
                self.body["status"].pop(key, None)
            else:
                self.body["status"][key] = value
        meta = self.body["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return copy.deepcopy(self.body)

    def forget(self, kind, namespace, name):  # no cache to drop
        self.journal.append(("forget", kind, name))

    async def get_reinstall(self, namespace, name):
        if self.deleted:
            raise NotFound(404, "NotFound")
        return copy.deepcopy(self.body)


class FakeCloud:
    def __init__(self, journal: list, *, post_error: Exception | None = None, server: Server | None = None):
        self.journal = journal
        self.post_error = post_error
        self.server = server or Server(id=SERVER, status="SHUTOFF", updated=UPDATED, launched_at=LAUNCHED)

    async def get_server(self, target: CloudTarget, server_id: str) -> Server:
        self.journal.append(("get_server",))
        return self.server

    async def reinstall(self, target, server_id, body, *, cloud_init=True) -> str:
        self.journal.append(("POST",))
        if self.post_error is not None:
            raise self.post_error
        return "job-1"

    async def get_job(self, target, job_id) -> Job:
        self.journal.append(("get_job",))
        return Job(job_id=job_id, job_type="rebuild", status=JobStatus.SUCCESS)


def make(journal, kube, cloud, **overrides):
    events: list = []
    settings = {
        "endpoint": "http://127.0.0.1:1",
        "credentials_secret": "creds",
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.02,
        "outcome_settle_seconds": 0.0,
    }
    deps = Deps(
        settings=Settings(**(settings | overrides)),
        kube=kube,
        cloud=cloud,
        metrics=Metrics(),
        post_event=lambda body, event: events.append(event.reason),
    )
    return deps, events


async def run(deps, kube) -> None:
    await asyncio.wait_for(Runner(deps, copy.deepcopy(kube.body)).run(), timeout=10)


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setattr("ecs_reinstall.reconcile.poll_delay", lambda interval, rng=None: 0.01)


async def test_the_intent_is_written_guarded_before_the_post_and_the_job_id_right_after():
    journal: list = []
    kube = FakeKube(journal)
    deps, events = make(journal, kube, FakeCloud(journal))
    await run(deps, kube)
    assert journal == [
        ("get_server",),
        ("patch", "Submitting", True),  # guarded by the resourceVersion read before
        ("POST",),
        ("patch", "Reinstalling", False),
        ("get_job",),
        ("patch", "Succeeded", False),
    ]
    assert events == ["Submitting", "Submitted", "Succeeded"]
    assert deps.locks.holder(SERVER) is None  # released at the end


async def test_a_conflict_on_the_intent_means_no_post():
    journal: list = []
    kube = FakeKube(journal)
    kube.conflict_next = True
    deps, _ = make(journal, kube, FakeCloud(journal))
    await run(deps, kube)
    assert journal.count(("POST",)) == 1  # only after re-reading, never on the stale view
    assert journal.index(("patch", "Submitting", True)) < journal.index(("POST",))


@pytest.mark.parametrize(
    ("launched_after", "phase", "reason"),
    [
        (datetime(2026, 5, 1, 12, 0, tzinfo=UTC), "Succeeded", "SucceededFromServerState"),
        (LAUNCHED, "Failed", "FailedFromServerState"),  # back in its old state, never relaunched: it failed
    ],
)
async def test_an_ambiguous_post_is_never_resent_while_the_server_shows_it_was_taken(
    launched_after, phase, reason
):
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(journal, post_error=AmbiguousError(operation="reinstall", http_status=500))
    deps, _ = make(journal, kube, cloud, outcome_settle_seconds=60.0)
    task = asyncio.create_task(Runner(deps, copy.deepcopy(kube.body)).run())
    await until(lambda: ("POST",) in journal, "the POST")
    cloud.server = Server(
        id=SERVER, status="REBUILD", task_state="rebuilding", updated=UPDATED
    )  # it was taken
    looks = journal.count(("get_server",))
    await until(lambda: journal.count(("get_server",)) > looks, "a look at the rebuilding server")
    cloud.server = Server(
        id=SERVER,
        status="ACTIVE",
        updated=datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
        launched_at=launched_after,
    )
    await asyncio.wait_for(task, timeout=10)
    assert journal.count(("POST",)) == 1
    status = kube.body["status"]
    assert status["phase"] == phase and status["jobId"] == ""
    assert {c["reason"] for c in status["conditions"] if c["status"] == "True"} >= {reason}


async def test_a_restart_in_submitting_probes_the_server_first():
    journal: list = []
    attempt = {
        "id": "a",
        "startedAt": "2026-05-01T11:59:00.000Z",
        "serverUpdatedBefore": "2026-05-01T11:00:00.000Z",
    }
    kube = FakeKube(journal, status={"phase": "Submitting", "attempt": attempt})
    cloud = FakeCloud(
        journal, server=Server(id=SERVER, status="ACTIVE", updated=datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    )
    deps, _ = make(journal, kube, cloud)
    await run(deps, kube)
    assert journal[0] == ("get_server",) and ("POST",) not in journal


async def test_throttling_goes_back_to_pending_and_retries():
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(
        journal, post_error=ThrottledError(operation="reinstall", http_status=429, retry_after=0.01)
    )
    deps, _ = make(journal, kube, cloud)
    task = asyncio.create_task(Runner(deps, copy.deepcopy(kube.body)).run())
    await until(lambda: journal.count(("POST",)) >= 2, "a second POST after the 429")
    cloud.post_error = None
    await asyncio.wait_for(task, timeout=10)
    assert ("patch", "Pending", False) in journal and kube.body["status"]["phase"] == "Succeeded"
    assert "failure" not in kube.body["status"]


async def test_a_deleted_resource_stops_its_runner_and_frees_the_server():
    journal: list = []
    kube = FakeKube(journal)
    kube.deleted = True
    deps, _ = make(journal, kube, FakeCloud(journal))
    await run(deps, kube)
    assert deps.locks.holder(SERVER) is None and ("POST",) not in journal


async def test_the_supervisor_starts_one_runner_per_live_resource_and_stops_it_on_delete():
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(journal)
    deps, _ = make(journal, kube, cloud)
    supervisor = Supervisor(deps)
    cloud.get_server = _blocking  # keep the runner busy
    supervisor.observe(None, kube.body)
    supervisor.observe("MODIFIED", kube.body)
    assert supervisor.active == 1
    supervisor.observe("DELETED", kube.body)
    await until(lambda: supervisor.active == 0, "the runner to stop")
    assert supervisor.active == 0
    supervisor.observe(None, {**kube.body, "status": {"phase": "Succeeded"}})
    assert supervisor.active == 0  # nothing to do for a terminal resource


async def until(predicate, what: str, timeout: float = 5.0) -> None:
    """Polls `predicate` until it holds; fails saying `what` did not happen within `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g}s")
        await asyncio.sleep(0.01)


async def _blocking(*args, **kwargs):
    await asyncio.sleep(3600)


async def test_a_crashed_runner_is_restarted_later():
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(journal)
    deps, _ = make(journal, kube, cloud)
    real_get_server = cloud.get_server
    calls = []

    async def broken_once(target, server_id):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return await real_get_server(target, server_id)

    cloud.get_server = broken_once
    supervisor = Supervisor(deps)
    supervisor.observe(None, copy.deepcopy(kube.body))
    await until(lambda: kube.body["status"].get("phase") == "Succeeded", "Succeeded after the restart")
    assert kube.body["status"]["phase"] == "Succeeded" and journal.count(("POST",)) == 1


async def test_a_resource_waiting_for_its_server_holds_no_concurrency_slot():
    """With one slot, a resource queued behind a busy server must not stop another server's reinstall."""
    journal: list = []
    kube = FakeKube(journal)
    deps, _ = make(
        journal, kube, FakeCloud(journal), max_concurrency=1, retry_base_seconds=30, retry_max_seconds=60
    )
    deps.locks.try_claim(SERVER, Holder("other-uid", "ns", "first"))
    waiting = asyncio.create_task(Runner(deps, copy.deepcopy(kube.body)).run())
    await until(lambda: kube.body["status"].get("waitingFor") == "EcsReinstall ns/first", "the wait")
    other_journal: list = []
    other_kube = FakeKube(other_journal)
    other_kube.body["spec"]["serverId"] = "6e2f0c1a-0000-4000-8000-000000000002"
    other_deps_cloud = FakeCloud(other_journal, server=Server(id="x", status="SHUTOFF", updated=UPDATED))
    deps.kube, deps.cloud = other_kube, other_deps_cloud  # the same gate and locks, another resource
    try:
        await asyncio.wait_for(Runner(deps, copy.deepcopy(other_kube.body)).run(), timeout=5)
        assert other_kube.body["status"]["phase"] == "Succeeded"
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
