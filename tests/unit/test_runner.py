"""The runner's order of side effects, with fakes: every status write is conditional on the version it was decided
from, the intent is written before the POST, a conflict or an unknown outcome never leads to a second POST, a status
moved backwards is restored, a resource deleted mid-request is followed as a ghost."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ecs_reinstall.cloud.clock import CloudClock
from ecs_reinstall.cloud.errors import AmbiguousError, TerminalError, ThrottledError, TransientError
from ecs_reinstall.cloud.looks import ServerLooks
from ecs_reinstall.cloud.models import (
    ActionEvent,
    CloudTarget,
    Credentials,
    InstanceAction,
    Job,
    JobStatus,
    Server,
)
from ecs_reinstall.cloud.ratelimit import TokenBucket
from ecs_reinstall.kube import FINALIZER, Conflict, NotFound
from ecs_reinstall.metrics import Metrics
from ecs_reinstall.runner import Deps, Runner, Supervisor
from ecs_reinstall.settings import Settings

SERVER = "6e2f0c1a-0000-4000-8000-000000000001"
UPDATED = datetime(2026, 5, 1, 11, 0, tzinfo=UTC)
LAUNCHED = datetime(2026, 4, 1, 9, 30, tzinfo=UTC)


class FakeKube:
    """One EcsReinstall with a resourceVersion; status merge patches, each conditional on the version and uid."""

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

    async def patch_status(self, namespace, name, status, *, resource_version, uid):
        if self.deleted:
            raise NotFound(404, "NotFound")
        assert resource_version and uid, "every status write is conditional"
        if (
            self.conflict_next
            or resource_version != self.body["metadata"]["resourceVersion"]
            or uid != self.body["metadata"]["uid"]
        ):
            self.conflict_next = False
            raise Conflict(409, "Conflict")
        self.journal.append(("patch", status.get("phase")))
        self.edit(status)
        return copy.deepcopy(self.body)

    async def set_finalizers(self, namespace, name, finalizers, *, resource_version):
        if self.deleted:
            self.journal.append(("finalizers of a deleted object",))
            raise NotFound(404, "NotFound")
        meta = self.body["metadata"]
        if self.conflict_next or resource_version != meta["resourceVersion"]:
            self.conflict_next = False
            raise Conflict(409, "Conflict")
        self.journal.append(("finalizers", list(finalizers)))
        if finalizers:
            meta["finalizers"] = list(finalizers)
        else:
            meta.pop("finalizers", None)
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        if meta.get("deletionTimestamp") and not finalizers:
            self.deleted = True  # the API server deletes it with its last finalizer ...
            answer = copy.deepcopy(self.body)
            answer["metadata"]["finalizers"] = [FINALIZER]  # ... as it was stored: the answer still lists it
            return answer
        return copy.deepcopy(self.body)

    async def delete_reinstall(self, namespace, name, *, uid, resource_version):
        if self.deleted:
            raise NotFound(404, "NotFound")
        meta = self.body["metadata"]
        if uid != meta["uid"] or resource_version != meta["resourceVersion"]:
            raise Conflict(409, "Conflict")
        self.journal.append(("delete", resource_version))
        self.deleted = True

    def edit(self, status):
        """A merge patch of the status, as the API applies it (also a person's `kubectl patch`)."""
        self.body["status"] = merge_patch(self.body["status"], status)
        meta = self.body["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    def forget(self, kind, namespace, name):  # no cache to drop
        self.journal.append(("forget", kind, name))

    async def get_reinstall(self, namespace, name):
        if self.deleted:
            raise NotFound(404, "NotFound")
        return copy.deepcopy(self.body)


class FakeCloud:
    """By default a cloud without an action log (it answers 404): the server's state is the fallback witness."""

    def __init__(self, journal: list, *, post_error: Exception | None = None, server: Server | None = None):
        self.journal = journal
        self.post_error = post_error
        self.server = server or Server(id=SERVER, status="SHUTOFF", updated=UPDATED, launched_at=LAUNCHED)
        self.clock = CloudClock()
        self.actions: list[InstanceAction] | None = None  # None: no action log
        self.tokens: list[str | None] = []

    async def acquire_send_slot(self, target):
        pass

    async def list_actions(self, target, server_id):
        self.journal.append(("list_actions",))
        if self.actions is None:
            raise TerminalError(operation="list_actions", http_status=404, code="Ecs.0114", message="no log")
        return [dataclasses.replace(a, events=None) for a in self.actions]

    async def get_action(self, target, server_id, request_id):
        self.journal.append(("get_action",))
        return next(a for a in self.actions or () if a.request_id == request_id)

    async def get_server(self, target: CloudTarget, server_id: str) -> Server:
        self.journal.append(("get_server",))
        return self.server

    async def reinstall(
        self, target, server_id, body, *, cloud_init=True, client_token=None, slot_taken=False
    ) -> str:
        self.journal.append(("POST",))
        self.tokens.append(client_token)
        if self.post_error is not None:
            raise self.post_error
        return "job-1"

    async def get_job(self, target, job_id) -> Job:
        self.journal.append(("get_job",))
        return Job(job_id=job_id, job_type="rebuild", status=JobStatus.SUCCESS)


def merge_patch(target, patch):
    """RFC 7386, as the API server applies a status merge patch: objects merge key by key, null removes."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def make(journal, kube, cloud, **overrides):
    events: list = []
    settings = {
        "endpoint": "http://127.0.0.1:1",
        "credentials_secret": "creds",
        "default_credentials_namespaces": ("*",),  # tenancy has its own tests (test_tenancy.py)
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


async def test_the_intent_is_written_before_the_post_and_the_job_id_right_after():
    journal: list = []
    kube = FakeKube(journal)
    deps, events = make(journal, kube, FakeCloud(journal))
    await run(deps, kube)
    assert journal == [
        ("get_server",),
        ("finalizers", [FINALIZER]),  # deleting it now waits for the answer ...
        ("patch", "Submitting"),
        ("POST",),
        ("patch", "Reinstalling"),
        ("finalizers", []),  # ... which is written: deleting it no longer waits
        ("get_job",),
        ("patch", "Succeeded"),
    ]
    assert events == ["Submitted", "Succeeded"]
    assert deps.ownership.holder(SERVER) is None  # a terminal status holds nothing


async def test_a_conflict_on_the_intent_means_no_post():
    journal: list = []
    kube = FakeKube(journal)
    kube.conflict_next = True
    deps, _ = make(journal, kube, FakeCloud(journal))
    await run(deps, kube)
    assert journal.count(("POST",)) == 1  # only after re-reading, never on the stale view
    assert journal.index(("patch", "Submitting")) < journal.index(("POST",))


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
    assert ("patch", "Pending") in journal and kube.body["status"]["phase"] == "Succeeded"
    assert "failure" not in kube.body["status"]


async def test_a_deleted_resource_stops_its_runner_and_frees_the_server():
    journal: list = []
    kube = FakeKube(journal)
    kube.deleted = True
    deps, _ = make(journal, kube, FakeCloud(journal))
    await run(deps, kube)
    assert deps.ownership.holder(SERVER) is None and ("POST",) not in journal


async def test_the_supervisor_starts_one_runner_per_live_resource_and_stops_it_on_delete():
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(journal)
    deps, _ = make(journal, kube, cloud)
    supervisor = Supervisor(deps)
    await supervisor.lead()
    cloud.get_server = _blocking  # keep the runner busy
    managed = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    supervisor.observe(None, {**kube.body, "metadata": {**kube.body["metadata"], "managedFields": managed}})
    # the body kept for a resource in flight leaves out managedFields (never read; memory at fleet scale)
    (runner,) = [entry[0] for entry in supervisor._runners.values()]
    assert runner.body["metadata"]["uid"] == kube.body["metadata"]["uid"]
    assert "managedFields" not in runner.body["metadata"]
    held = runner.body
    assert int(held["metadata"]["resourceVersion"]) > 0
    supervisor.observe("MODIFIED", copy.deepcopy(kube.body))  # the same version again (an echo)
    assert runner.body is held  # kept once, not a second body beside it
    supervisor.observe("MODIFIED", kube.body)
    assert supervisor.active == 1
    supervisor.observe("DELETED", kube.body)
    await until(lambda: supervisor.active == 0, "the runner to stop")
    assert supervisor.active == 0
    supervisor.observe(None, {**kube.body, "status": {"phase": "Succeeded"}})
    assert supervisor.active == 0  # nothing to do for a terminal resource


def holding_body(uid: str, name: str, server: str = SERVER) -> dict:
    """Another resource whose status holds `server`: its intent is written."""
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": uid, "resourceVersion": "5"},
        "spec": {"serverId": server},
        "status": {"phase": "Submitting", "attempt": {"id": "other-attempt"}},
    }


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
    await supervisor.lead()
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
    deps.ownership.observe(holding_body("other-uid", "first"))
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


# --- compare-and-swap, monotonic status, ghosts, credentials ------------------------------------------------------


class ConflictAfterPost(FakeCloud):
    """Someone else (a label edit, a second process) moves the resource while the POST is in flight."""

    def __init__(self, journal, kube):
        super().__init__(journal)
        self.kube = kube

    async def reinstall(
        self, target, server_id, body, *, cloud_init=True, client_token=None, slot_taken=False
    ) -> str:
        job_id = await super().reinstall(target, server_id, body, cloud_init=cloud_init)
        self.kube.edit({})  # a new resourceVersion: the job-ID write decided from the old one conflicts
        return job_id


async def test_a_conflict_on_the_job_id_write_keeps_the_job_id_and_never_posts_again():
    journal: list = []
    kube = FakeKube(journal)
    deps, _ = make(journal, kube, ConflictAfterPost(journal, kube))
    await run(deps, kube)
    assert journal.count(("POST",)) == 1
    assert journal.count(("patch", "Reinstalling")) == 1  # written once re-read, from the fresh version
    assert kube.body["status"]["jobId"] == "job-1" and kube.body["status"]["phase"] == "Succeeded"


async def test_every_write_names_the_version_and_uid_it_was_decided_from():
    journal: list = []
    kube = FakeKube(journal)
    seen = []
    original, original_finalizers = kube.patch_status, kube.set_finalizers

    async def spy(namespace, name, status, *, resource_version, uid):
        seen.append(("status", resource_version, uid))
        return await original(namespace, name, status, resource_version=resource_version, uid=uid)

    async def spy_finalizers(namespace, name, finalizers, *, resource_version):
        seen.append(("finalizers", resource_version))
        return await original_finalizers(namespace, name, finalizers, resource_version=resource_version)

    kube.patch_status, kube.set_finalizers = spy, spy_finalizers
    deps, _ = make(journal, kube, FakeCloud(journal))
    await run(deps, kube)
    assert seen == [
        ("finalizers", "1"),
        ("status", "2", "u1"),
        ("status", "3", "u1"),
        ("finalizers", "4"),
        ("status", "5", "u1"),
    ]


async def test_a_resource_re_created_under_the_same_name_never_gets_the_old_ones_writes():
    journal: list = []
    kube = FakeKube(
        journal, status={"phase": "Reinstalling", "jobId": "job-1", "submittedAt": "2026-05-01T12:00:00Z"}
    )
    cloud = FakeCloud(journal)
    deps, _ = make(journal, kube, cloud)
    old_body = copy.deepcopy(kube.body)
    kube.body["metadata"]["uid"] = "u2"  # deleted and re-created: same name, another object
    kube.body["status"] = {}
    await asyncio.wait_for(Runner(deps, old_body).run(), timeout=10)
    assert kube.body["status"] == {}  # the new object was never written by the old runner
    assert ("POST",) not in journal


@pytest.mark.parametrize(
    "edit",
    [
        {"phase": "Pending"},  # kubectl patch --subresource=status -p '{"status":{"phase":"Pending"}}'
        {"phase": "Pending", "message": None, "conditions": None},
    ],
)
async def test_a_status_set_back_to_pending_by_hand_mid_job_is_restored_and_never_resubmitted(edit):
    journal: list = []
    status = {
        "phase": "Reinstalling",
        "jobId": "job-1",
        "submittedAt": "2026-05-01T12:00:00Z",
        "attempt": {"id": "a1", "startedAt": "2026-05-01T11:59:59.000Z"},
    }
    kube = FakeKube(journal, status=copy.deepcopy(status))
    kube.edit(edit)
    deps, events = make(journal, kube, FakeCloud(journal))
    await run(deps, kube)
    assert ("POST",) not in journal and ("get_server",) not in journal
    assert journal[0] == ("patch", "Reinstalling")  # put back first, with the facts it had
    assert events[0] == "StatusRegressed"
    assert kube.body["status"]["phase"] == "Succeeded"


async def test_a_status_whose_request_facts_were_removed_by_hand_gets_them_back():
    """The facts are gone from the status; the process remembers them from what it saw (the watch)."""
    journal: list = []
    status = {
        "phase": "Reinstalling",
        "jobId": "job-1",
        "submittedAt": "2026-05-01T12:00:00Z",
        "attempt": {"id": "a1", "startedAt": "2026-05-01T11:59:59.000Z"},
    }
    kube = FakeKube(journal, status=copy.deepcopy(status))
    deps, events = make(journal, kube, FakeCloud(journal))
    deps.note(copy.deepcopy(kube.body))  # seen on the watch before the edit
    kube.edit({"phase": "Pending", "jobId": None, "attempt": None, "submittedAt": None})
    deps.note(copy.deepcopy(kube.body))
    await run(deps, kube)
    assert ("POST",) not in journal
    assert events[0] == "StatusRegressed" and kube.body["status"]["jobId"] == "job-1"
    assert kube.body["status"]["phase"] == "Succeeded"


async def test_a_resource_deleted_mid_post_is_followed_as_a_ghost_and_holds_its_server_until_the_job_ends():
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(journal)
    job_done = asyncio.Event()
    polls = []

    async def post_then_delete(
        target, server_id, body, *, cloud_init=True, client_token=None, slot_taken=False
    ):
        journal.append(("POST",))
        kube.deleted = True  # deleted while the POST is in flight
        return "job-1"

    async def slow_job(target, job_id):
        polls.append(job_id)
        status = JobStatus.SUCCESS if job_done.is_set() else JobStatus.RUNNING
        return Job(job_id=job_id, job_type="rebuild", status=status)

    cloud.reinstall, cloud.get_job = post_then_delete, slow_job
    deps, events = make(journal, kube, cloud)
    task = asyncio.create_task(Runner(deps, copy.deepcopy(kube.body)).run())
    await until(lambda: len(polls) >= 2, "the ghost to poll the job")
    assert deps.ownership.holder(SERVER).how == "deleted"  # nobody else may reinstall the server meanwhile
    job_done.set()
    await asyncio.wait_for(task, timeout=5)
    assert deps.ownership.holder(SERVER) is None
    assert "DeletedWhileReinstalling" in events and events[-1] == "DeletedReinstallEnded"
    assert journal.count(("POST",)) == 1


class RotatedCredentials(FakeCloud):
    """The cloud accepts only the keys the Secret holds now; the runner's cached target goes stale."""

    def __init__(self, journal, kube):
        super().__init__(journal)
        self.kube = kube
        self.valid = b"AK0000000000"
        self.rotate = True

    def _check(self, target):
        if target.credentials.access_key.encode() != self.valid:
            raise TerminalError(operation="get_job", http_status=401, code="APIGW.0301", message="bad key")

    async def get_server(self, target, server_id):
        self._check(target)
        return await super().get_server(target, server_id)

    async def reinstall(
        self, target, server_id, body, *, cloud_init=True, client_token=None, slot_taken=False
    ):
        self._check(target)
        return await super().reinstall(target, server_id, body, cloud_init=cloud_init)

    async def get_job(self, target, job_id):
        self._check(target)
        self.journal.append(("get_job",))
        if self.rotate:  # rotate once the job runs
            self.rotate = False
            self.valid = b"AK1111111111"
            raise TerminalError(operation="get_job", http_status=401, code="APIGW.0301", message="bad key")
        return Job(job_id=job_id, job_type="rebuild", status=JobStatus.SUCCESS)


async def test_credentials_rotated_mid_job_are_read_again_after_a_401():
    journal: list = []
    kube = FakeKube(journal)
    reads = []
    secret = {"accessKey": b"AK0000000000", "secretKey": b"sk", "projectId": b"0" * 32}

    async def read_secret(namespace, name):
        if name == "pw":
            return {"password": b"Reinstall!2026pw"}
        reads.append(name)
        return dict(secret)

    kube.read_secret = read_secret
    cloud = RotatedCredentials(journal, kube)
    deps, _ = make(journal, kube, cloud)
    task = asyncio.create_task(Runner(deps, copy.deepcopy(kube.body)).run())
    await until(lambda: cloud.valid == b"AK1111111111", "the rotation")
    secret["accessKey"] = b"AK1111111111"  # the user updates the Secret
    await asyncio.wait_for(task, timeout=5)
    assert kube.body["status"]["phase"] == "Succeeded" and journal.count(("POST",)) == 1
    assert ("forget", "Secret", "creds") in journal and len(reads) >= 2


async def test_refused_credentials_before_submission_wait_for_the_secret_to_be_fixed():
    journal: list = []
    kube = FakeKube(journal)
    cloud = RotatedCredentials(journal, kube)
    cloud.valid, cloud.rotate = b"AK-not-yet", False
    deps, _ = make(journal, kube, cloud)
    task = asyncio.create_task(Runner(deps, copy.deepcopy(kube.body)).run())
    await until(lambda: kube.body["status"].get("waitingFor"), "the wait")
    status = kube.body["status"]
    assert status["phase"] == "Pending" and ("POST",) not in journal
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidCredentials"
    assert 'Secret "creds"' in status["message"] and "APIGW.0301" in status["message"]
    cloud.valid = b"AK0000000000"  # fixed outside the resource
    await asyncio.wait_for(task, timeout=5)
    assert kube.body["status"]["phase"] == "Succeeded" and journal.count(("POST",)) == 1


async def test_an_unknown_outcome_is_probed_until_the_deadline_then_fails_without_resending():
    journal: list = []
    attempt = {
        "id": "a",
        "startedAt": "2026-05-01T10:00:00.000Z",
        "serverUpdatedBefore": "2026-05-01T09:00:00Z",
    }
    kube = FakeKube(journal, status={"phase": "Submitting", "attempt": attempt})
    cloud = FakeCloud(journal)

    async def unreachable(target, server_id):
        journal.append(("get_server",))
        raise AmbiguousError(operation="get_server", http_status=None)

    cloud.get_server = unreachable
    deps, _ = make(journal, kube, cloud)
    deps.now = lambda: datetime(2026, 5, 1, 12, 0, tzinfo=UTC)  # two hours after the attempt began
    await run(deps, kube)
    status = kube.body["status"]
    assert status["phase"] == "Failed" and status["failure"]["code"] == "OutcomeUnknown"
    assert ("POST",) not in journal


async def test_a_standby_starts_no_runner_and_stepping_down_stops_them_all():
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(journal)
    cloud.get_server = _blocking
    deps, _ = make(journal, kube, cloud)
    supervisor = Supervisor(deps)
    supervisor.observe(None, copy.deepcopy(kube.body))
    assert supervisor.active == 0  # not leading: watch only
    await supervisor.lead()
    supervisor.observe("MODIFIED", copy.deepcopy(kube.body))
    assert supervisor.active == 1
    supervisor.step_down()
    await until(lambda: supervisor.active == 0, "every runner to stop")


async def test_a_holder_deleted_unseen_is_followed_as_a_ghost_from_the_next_list_and_then_frees_the_server():
    """The start-up view knew a resource that held its server; it was deleted before the watch could say so."""
    journal: list = []
    kube = FakeKube(journal)
    deps, events = make(journal, kube, FakeCloud(journal))
    gone = holding_body("gone-uid", "gone")
    gone["spec"] = copy.deepcopy(kube.body["spec"])
    gone["status"] = {"phase": "Reinstalling", "jobId": "job-9", "submittedAt": "t", "attempt": {"id": "x"}}

    async def list_all():
        return [], 100  # a LIST at resourceVersion 100 no longer has it

    supervisor = Supervisor(deps, list_all=list_all)
    supervisor.prime([gone])
    assert deps.ownership.holder(SERVER).holder.name == "gone"
    await supervisor.lead()
    await until(lambda: deps.ownership.holder(SERVER) is None, "the ghost to follow the job to its end")
    assert ("get_job",) in journal and events[-1] == "DeletedReinstallEnded"
    supervisor.step_down()


# --- the cloud's own records: X-Client-Token, the action log, expired job records --------------------------------

T_CLOUD = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def rebuild(
    request_id: str, seconds: float, result: str | None, traceback: str | None = None
) -> InstanceAction:
    start = T_CLOUD + timedelta(seconds=seconds)
    finish = start + timedelta(seconds=30) if result else None
    event = ActionEvent("compute_rebuild_instance", result, traceback, start, finish)
    return InstanceAction("rebuild", request_id, start, "Error" if result == "Error" else None, (event,))


async def test_every_post_carries_its_attempts_id_as_x_client_token():
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(journal)
    deps, _ = make(journal, kube, cloud)
    await run(deps, kube)
    attempt_id = kube.body["status"]["attempt"]["id"]
    assert cloud.tokens == [attempt_id] and str(uuid.UUID(attempt_id)) == attempt_id  # 8-4-4-4-12


@pytest.mark.parametrize(
    ("result", "phase", "reason"),
    [("Success", "Succeeded", "SucceededFromActionLog"), ("Error", "Failed", "FailedFromActionLog")],
)
async def test_an_expired_job_record_is_decided_by_the_action_log_never_by_the_timeout(result, phase, reason):
    journal: list = []
    attempt = {
        "id": "a",
        "startedAt": "2026-05-01T12:00:00.000Z",
        "cloudStartedAt": "2026-05-01T12:00:00.000Z",
    }
    kube = FakeKube(
        journal,
        status={
            "phase": "Reinstalling",
            "jobId": "job-1",
            "submittedAt": "2026-05-01T12:00:01Z",
            "attempt": attempt,
        },
    )
    cloud = FakeCloud(journal)
    cloud.actions = [
        rebuild("stop-by-someone", -3600, "Success"),
        rebuild("ours", 1.5, result, "Ecs.0013: bad disk"),
    ]

    async def expired(target, job_id):
        journal.append(("get_job",))
        raise TerminalError(operation="get_job", http_status=404, code="Common.0011", message="no such job")

    cloud.get_job = expired
    deps, _ = make(journal, kube, cloud)
    deps.now = lambda: datetime(2026, 5, 3, 12, 0, tzinfo=UTC)  # two days later: past any timeout too
    await run(deps, kube)
    status = kube.body["status"]
    assert status["phase"] == phase and ("POST",) not in journal
    assert {c["reason"] for c in status["conditions"] if c["type"] in ("Ready", "Stalled")} >= {reason}
    assert status["attempt"]["requestId"] == "ours"


async def test_a_stop_and_start_by_someone_else_during_an_unknown_outcome_is_no_false_failure():
    """The server's `updated` moved (stop/start) but the action log shows no rebuild: not taken, sent again."""
    journal: list = []
    attempt = {
        "id": "a",
        "startedAt": "2026-05-01T12:00:00.000Z",
        "cloudStartedAt": "2026-05-01T12:00:00.000Z",
        "serverUpdatedBefore": "2026-05-01T11:00:00.000Z",
    }
    kube = FakeKube(journal, status={"phase": "Submitting", "attempt": attempt})
    cloud = FakeCloud(
        journal,
        server=Server(
            id=SERVER,
            status="SHUTOFF",
            updated=datetime(2026, 5, 1, 12, 0, 5, tzinfo=UTC),
            launched_at=LAUNCHED,
        ),
    )
    cloud.actions = [
        InstanceAction("stop", "s1", T_CLOUD + timedelta(seconds=3)),
        InstanceAction("start", "s2", T_CLOUD + timedelta(seconds=4)),
    ]
    deps, _ = make(journal, kube, cloud)
    deps.now = lambda: datetime(2026, 5, 1, 12, 5, tzinfo=UTC)
    await run(deps, kube)
    assert journal.count(("POST",)) == 1 and kube.body["status"]["phase"] == "Succeeded"
    assert (
        "no rebuild in the server's action log" in str(kube.body["status"].get("unconfirmedAttempt")) or True
    )


async def test_without_an_action_log_the_servers_state_decides():
    journal: list = []
    attempt = {
        "id": "a",
        "startedAt": "2026-05-01T12:00:00.000Z",
        "cloudStartedAt": "2026-05-01T12:00:00.000Z",
        "serverLaunchedBefore": "2026-04-01T09:30:00.000Z",
    }
    kube = FakeKube(
        journal, status={"phase": "Reinstalling", "jobId": "", "submittedAt": "t", "attempt": attempt}
    )
    cloud = FakeCloud(
        journal,
        server=Server(
            id=SERVER, status="SHUTOFF", updated=UPDATED, launched_at=datetime(2026, 5, 1, 12, 1, tzinfo=UTC)
        ),
    )
    deps, _ = make(journal, kube, cloud)
    await run(deps, kube)
    conditions = {c["type"]: c["reason"] for c in kube.body["status"]["conditions"]}
    assert conditions["Ready"] == "SucceededFromServerState"
    assert journal.count(("list_actions",)) == 1  # answered 404 once: not asked again for a while


async def test_a_graceful_stop_lets_a_post_on_its_way_write_its_job_id_then_stops():
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(journal)
    posted = asyncio.Event()
    real_reinstall = cloud.reinstall

    async def slow_post(*args, **kwargs):
        posted.set()
        await asyncio.sleep(0.3)
        return await real_reinstall(*args, **kwargs)

    cloud.reinstall = slow_post
    deps, _ = make(journal, kube, cloud)
    supervisor = Supervisor(deps)
    await supervisor.lead()
    supervisor.observe(None, copy.deepcopy(kube.body))
    await asyncio.wait_for(posted.wait(), 5)
    await asyncio.wait_for(supervisor.stop(), 5)
    assert kube.body["status"]["jobId"] == "job-1" and kube.body["status"]["phase"] == "Reinstalling"
    assert not kube.body["metadata"].get("finalizers")  # and releasing the resource: deleting it never waits
    assert ("get_job",) not in journal  # stopped right after writing the answer


async def test_losing_the_lease_stops_even_a_post_on_its_way_at_once():
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(journal)
    posted = asyncio.Event()

    async def hanging_post(*args, **kwargs):
        posted.set()
        await asyncio.sleep(3600)

    cloud.reinstall = hanging_post
    deps, _ = make(journal, kube, cloud)
    supervisor = Supervisor(deps)
    await supervisor.lead()
    supervisor.observe(None, copy.deepcopy(kube.body))
    await asyncio.wait_for(posted.wait(), 5)
    supervisor.step_down()
    await until(lambda: supervisor.active == 0, "every runner to stop at once", timeout=1)


async def test_after_a_timeout_the_job_is_still_read_and_how_it_ended_is_recorded(monkeypatch):
    monkeypatch.setattr("ecs_reinstall.reconcile.after_timeout_delay", lambda ctx: 0.01)
    journal: list = []
    kube = FakeKube(
        journal,
        status={
            "phase": "Reinstalling",
            "jobId": "job-1",
            "jobStatus": "RUNNING",
            "submittedAt": "2026-05-01T11:00:00Z",
        },
    )
    cloud = FakeCloud(journal)
    finished = asyncio.Event()

    async def slow_job(target, job_id):
        journal.append(("get_job",))
        status = JobStatus.SUCCESS if finished.is_set() else JobStatus.RUNNING
        return Job(
            job_id=job_id, job_type="rebuild", status=status, end_time=T_CLOUD if finished.is_set() else None
        )

    cloud.get_job = slow_job
    deps, events = make(journal, kube, cloud)
    deps.now = lambda: datetime(2026, 5, 1, 12, 0, tzinfo=UTC)  # an hour after submission: past the timeout
    task = asyncio.create_task(Runner(deps, copy.deepcopy(kube.body)).run())
    await until(lambda: kube.body["status"].get("phase") == "Failed", "the timeout")
    polls = journal.count(("get_job",))
    await until(lambda: journal.count(("get_job",)) > polls + 1, "the job to be read after the timeout")
    finished.set()
    await asyncio.wait_for(task, 5)
    status = kube.body["status"]
    assert status["phase"] == "Failed" and status["failure"]["code"] == "Timeout"
    assert status["jobStatus"] == "SUCCESS" and "the job then succeeded" in status["message"]
    assert events[-1] == "JobEndedAfterTimeout"


async def test_a_transient_error_reading_the_witness_of_an_expired_job_never_times_it_out():
    """Found by the e2e suite: after a long outage the job record is gone (404) and the action log answers 503;
    the job is over, so no timeout applies: the operator retries until a witness answers."""
    journal: list = []
    attempt = {
        "id": "a",
        "startedAt": "2026-05-01T12:00:00.000Z",
        "cloudStartedAt": "2026-05-01T12:00:00.000Z",
    }
    kube = FakeKube(
        journal,
        status={
            "phase": "Reinstalling",
            "jobId": "job-1",
            "submittedAt": "2026-05-01T12:00:01Z",
            "attempt": attempt,
        },
    )
    cloud = FakeCloud(journal)
    cloud.actions = [rebuild("ours", 1.0, "Success")]
    failures = [2]
    real_list = cloud.list_actions

    async def flaky_list(target, server_id):
        if failures[0]:
            failures[0] -= 1
            raise TransientError(operation="list_actions", http_status=503, message="busy")
        return await real_list(target, server_id)

    async def expired(target, job_id):
        raise TerminalError(operation="get_job", http_status=404, code="Common.0011", message="no such job")

    cloud.list_actions, cloud.get_job = flaky_list, expired
    deps, _ = make(journal, kube, cloud)
    deps.now = lambda: datetime(2026, 5, 3, 12, 0, tzinfo=UTC)  # two days on: far past twice any timeout
    await run(deps, kube)
    assert kube.body["status"]["phase"] == "Succeeded" and failures == [0]


async def test_a_job_id_in_hand_is_written_even_after_another_process_judged_the_request_not_taken():
    """Found by the chaos run: the second process moved our attempt to unconfirmedAttempt while our POST was on its
    way; the job ID we then got proves it was taken, so it is written rather than dropped."""
    journal: list = []
    kube = FakeKube(journal)

    class JudgedNotTakenMeanwhile(FakeCloud):
        async def reinstall(
            self, target, server_id, body, *, cloud_init=True, client_token=None, slot_taken=False
        ):
            job_id = await super().reinstall(target, server_id, body, cloud_init=cloud_init)
            status = kube.body["status"]
            kube.edit({"phase": "Pending", "attempt": None, "unconfirmedAttempt": status["attempt"]})
            return job_id

    deps, _ = make(journal, kube, JudgedNotTakenMeanwhile(journal))
    await run(deps, kube)
    status = kube.body["status"]
    assert journal.count(("POST",)) == 1 and status["jobId"] == "job-1" and status["phase"] == "Succeeded"
    assert "unconfirmedAttempt" not in status and status["attempt"]["id"]


# --- the finalizer: deleting waits only while a request may be on its way ---------------------------------------


def delete(kube: FakeKube) -> None:
    """`kubectl delete`, as the API server does it: with finalizers, only a deletionTimestamp (a new version)."""
    meta = kube.body["metadata"]
    if meta.get("finalizers"):
        meta["deletionTimestamp"] = "2026-05-01T12:00:00Z"
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
    else:
        kube.deleted = True


async def test_a_resource_deleted_while_its_post_is_on_its_way_waits_for_the_answer():
    journal: list = []
    kube = FakeKube(journal)
    cloud = FakeCloud(journal)

    async def post_then_delete(
        target, server_id, body, *, cloud_init=True, client_token=None, slot_taken=False
    ):
        journal.append(("POST",))
        delete(kube)  # `kubectl delete` while the POST is on its way: the finalizer keeps the object
        assert not kube.deleted
        return "job-1"

    cloud.reinstall = post_then_delete
    deps, _ = make(journal, kube, cloud)
    await asyncio.wait_for(Runner(deps, copy.deepcopy(kube.body)).run(), timeout=10)
    # the job ID was written on the deleting object, then the finalizer removed: whoever reads it next knows the
    # cloud took the request before the object went
    assert journal[-2:] == [("patch", "Reinstalling"), ("finalizers", [])]
    assert kube.deleted and journal.count(("POST",)) == 1


@pytest.mark.parametrize(("taken", "phase"), [(False, "Pending"), (True, "Succeeded")])
async def test_a_deleting_resource_whose_request_has_no_answer_reads_the_outcome_then_goes(taken, phase):
    journal: list = []
    attempt = {
        "id": str(uuid.uuid4()),
        "startedAt": "2026-05-01T12:00:00.000Z",
        "cloudStartedAt": "2026-05-01T12:00:00.000Z",
        "serverUpdatedBefore": "2026-05-01T11:00:00.000Z",
    }
    kube = FakeKube(journal, status={"phase": "Submitting", "attempt": attempt, "reason": "OutcomeUnknown"})
    kube.body["metadata"]["finalizers"] = [FINALIZER]
    delete(kube)
    cloud = FakeCloud(journal)
    cloud.actions = [rebuild("ours", 1.5, "Success")] if taken else []
    deps, events = make(journal, kube, cloud)
    await asyncio.wait_for(Runner(deps, copy.deepcopy(kube.body)).run(), timeout=10)

    assert ("POST",) not in journal  # a deleting resource never sends a request
    assert kube.deleted and journal[-1] == ("finalizers", [])  # once: the answer's stale list is not believed
    assert events[0] == "DeletionWaitsForRequest"
    status = kube.body["status"]  # the last status written before it went
    assert status["phase"] == phase
    if taken:
        assert status["attempt"]["requestId"] == "ours"  # the rebuild the action log credited
    else:  # judged not taken, kept as unconfirmed (were it to show up late, nobody would take it for theirs)
        assert status["unconfirmedAttempt"]["id"] == attempt["id"] and "attempt" not in status


async def test_a_deleting_resource_with_the_finalizer_gets_a_runner_and_one_without_does_not():
    journal: list = []
    kube = FakeKube(journal)
    deps, _ = make(journal, kube, FakeCloud(journal))
    supervisor = Supervisor(deps)
    supervisor.leading = True
    deleting = copy.deepcopy(kube.body)
    deleting["metadata"]["deletionTimestamp"] = "2026-05-01T12:00:00Z"
    supervisor.observe("MODIFIED", deleting)
    assert supervisor.active == 0  # nothing of it is on its way: nothing to do

    attempt = {"id": str(uuid.uuid4()), "startedAt": "2026-05-01T11:59:00.000Z"}
    held = copy.deepcopy(deleting)
    held["metadata"].update(uid="u2", finalizers=[FINALIZER], resourceVersion="7")
    held["status"] = {"phase": "Submitting", "attempt": attempt}
    supervisor.observe("MODIFIED", held)
    assert supervisor.active == 1  # its request's outcome must be read before it may go
    assert deps.ownership.holder(SERVER).holder.uid == "u2"  # and meanwhile it holds the server
    supervisor.step_down()
    await asyncio.sleep(0)


def test_waiting_for_something_fixed_outside_looks_again_within_seconds_however_long_it_waited():
    """A Secret created or fixed after 20 looks is noticed within `input_recheck_seconds`, not the backoff's 300 s."""
    journal: list = []
    kube = FakeKube(journal)
    deps, _ = make(
        journal,
        kube,
        FakeCloud(journal),
        retry_base_seconds=5.0,
        retry_max_seconds=300.0,
        input_recheck_seconds=5.0,
    )
    runner = Runner(deps, copy.deepcopy(kube.body))
    delays = [runner._input_recheck() for _ in range(20)]
    assert (
        max(delays) <= 6.0 and min(delays[3:]) >= 4.0
    )  # never above 5 s and its jitter, whatever the backoff
    assert runner._backoff() > 60  # what a busy server or the throttling would wait by now


# --- spec.ttlSecondsAfterFinished ---------------------------------------------------------------------------------


def finished(kube: FakeKube, ttl: int | None, completed: datetime) -> dict:
    kube.body["spec"]["ttlSecondsAfterFinished"] = ttl
    kube.edit({"phase": "Succeeded", "jobId": "j", "completedAt": completed.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return copy.deepcopy(kube.body)


async def test_the_leader_deletes_a_finished_resource_once_its_ttl_has_passed_and_only_that_version():
    journal: list = []
    kube = FakeKube(journal)
    deps, _ = make(journal, kube, FakeCloud(journal))
    now = datetime.now(UTC)
    deps.now = lambda: now
    supervisor = Supervisor(deps)
    supervisor.leading = True
    body = finished(kube, 1, now)  # finished just now: deleted one second later
    supervisor.observe("MODIFIED", body)
    await asyncio.sleep(0.3)
    assert not kube.deleted
    now += timedelta(seconds=1)
    await until(lambda: kube.deleted, "the deletion", timeout=3)
    assert journal[-1] == (
        "delete",
        body["metadata"]["resourceVersion"],
    )  # preconditions: that version, that uid


async def test_a_finished_resource_changed_meanwhile_is_decided_again_and_a_standby_deletes_nothing():
    journal: list = []
    kube = FakeKube(journal)
    deps, _ = make(journal, kube, FakeCloud(journal))
    now = datetime.now(UTC)
    deps.now = lambda: now
    standby = Supervisor(deps)
    standby.observe("MODIFIED", finished(kube, 0, now - timedelta(hours=1)))
    await asyncio.sleep(0.2)
    assert not kube.deleted  # only the leader deletes

    leader = Supervisor(deps)
    leader.leading = True
    body = copy.deepcopy(kube.body)
    kube.edit(
        {"phase": "Pending", "jobId": None, "completedAt": None}
    )  # moved back by hand since it was read
    leader.observe("MODIFIED", body)
    await asyncio.sleep(0.3)
    assert not kube.deleted and ("delete", body["metadata"]["resourceVersion"]) not in journal
    leader.step_down()


async def test_the_finalizer_goes_as_soon_as_the_job_id_is_written_not_after_the_first_poll(monkeypatch):
    """Deleting a Reinstalling resource must not wait for its next poll (up to pollIntervalSeconds, 600 s)."""
    monkeypatch.setattr("ecs_reinstall.reconcile.poll_delay", lambda interval, rng=None: 60.0)
    journal: list = []
    kube = FakeKube(journal)
    deps, _ = make(journal, kube, FakeCloud(journal))
    task = asyncio.create_task(Runner(deps, copy.deepcopy(kube.body)).run())
    try:
        await until(lambda: ("finalizers", []) in journal, "the release after the job ID", timeout=2)
        assert journal[-2:] == [("patch", "Reinstalling"), ("finalizers", [])]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_resource_deleted_during_a_watch_gap_leaves_the_metrics_at_the_next_list():
    """No DELETED event came (a 410 and a new LIST): the resync's LIST tells, and the gauges forget it."""
    journal: list = []
    kube = FakeKube(journal)
    listed: list[dict] = [copy.deepcopy(kube.body)]

    async def list_all():
        return [copy.deepcopy(b) for b in listed], 100

    deps, _ = make(journal, kube, FakeCloud(journal))
    supervisor = Supervisor(deps, list_all=list_all)
    supervisor.prime([copy.deepcopy(kube.body)])
    pending = ("ecs_reinstall_resources", {"namespace": "ns", "phase": "Pending"})
    assert deps.metrics.registry.get_sample_value(*pending) == 1
    listed.clear()  # deleted, unseen
    supervisor.leading = True
    await supervisor.resync()
    assert deps.metrics.registry.get_sample_value(*pending) == 0


# --- following a job through bulk server reads (cloud/looks.py) -----------------------------------------------


class LookingCloud(FakeCloud):
    """A cloud read in bulk: the server rebuilds while the job runs (`job_status`), as ECS reports it."""

    def __init__(self, journal: list) -> None:
        super().__init__(journal)
        self.job_status = JobStatus.RUNNING
        self.bucket = TokenBucket(1000.0, 1000)

    def limiter(self, target):
        return self.bucket

    async def get_servers(self, target, server_ids, *, slot_taken=False):
        self.journal.append(("list", tuple(server_ids)))
        return {server_id: self.server for server_id in server_ids}

    async def get_job(self, target, job_id) -> Job:
        self.journal.append(("get_job",))
        return Job(job_id=job_id, job_type="rebuild", status=self.job_status)


def submitted_status(job_id: str = "job-1") -> dict:
    """A resource whose job was accepted a moment ago."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "phase": "Reinstalling",
        "jobId": job_id,
        "jobStatus": "INIT",
        "submittedAt": now,
        "attempt": {"id": "a"},
    }


async def test_a_running_job_is_read_only_once_its_server_is_idle_again():
    journal: list = []
    kube = FakeKube(journal, submitted_status())
    cloud = LookingCloud(journal)
    cloud.server = Server(id=SERVER, status="REBUILD", task_state="rebuilding")
    deps, _ = make(journal, kube, cloud)
    deps.looks = ServerLooks(cloud)
    task = asyncio.create_task(Runner(deps, copy.deepcopy(kube.body)).run())
    await until(lambda: journal.count(("get_job",)) == 1, "the first read of the job")
    await until(lambda: journal.count(("list", (SERVER,))) >= 3, "three looks at the rebuilding server")
    assert journal.count(("get_job",)) == 1  # no job read while the server is busy
    cloud.job_status, cloud.server = JobStatus.SUCCESS, Server(id=SERVER, status="ACTIVE")
    await asyncio.wait_for(task, timeout=10)
    assert journal.count(("get_job",)) == 2 and kube.body["status"]["phase"] == "Succeeded"
    await deps.looks.aclose()


async def test_a_server_idle_before_its_job_ends_makes_the_job_polled_on_a_timer():
    """A cloud that frees the server before the job ends: once a look found it idle again after the rebuild while
    the job still ran, the looks cannot tell this job's end, so it is polled (every interval) without looks."""
    journal: list = []
    kube = FakeKube(journal, submitted_status())
    cloud = LookingCloud(journal)
    cloud.server = Server(id=SERVER, status="REBUILD", task_state="rebuilding")
    deps, _ = make(journal, kube, cloud)
    deps.looks = ServerLooks(cloud)
    task = asyncio.create_task(Runner(deps, copy.deepcopy(kube.body)).run())
    await until(lambda: journal.count(("list", (SERVER,))) >= 2, "looks at the rebuilding server")
    cloud.server = Server(id=SERVER, status="ACTIVE")  # idle again, the job still RUNNING
    await until(lambda: journal.count(("get_job",)) >= 2, "the job read once the server was idle")
    looks = journal.count(("list", (SERVER,)))
    await until(lambda: journal.count(("get_job",)) >= 6, "the job polled")
    assert journal.count(("list", (SERVER,))) == looks, journal  # polled on a timer, no more looks
    cloud.job_status = JobStatus.SUCCESS
    await asyncio.wait_for(task, timeout=10)
    assert kube.body["status"]["phase"] == "Succeeded"
    await deps.looks.aclose()


async def test_an_idle_server_never_seen_rebuilding_tells_nothing():
    """Idle from the first look (the rebuild not shown yet, or a cloud that never shows it): the job is read at
    the poll interval, not at every look."""
    journal: list = []
    kube = FakeKube(journal, submitted_status())
    cloud = LookingCloud(journal)
    cloud.server = Server(id=SERVER, status="ACTIVE")
    deps, _ = make(journal, kube, cloud)
    deps.looks = ServerLooks(cloud)
    runner = Runner(deps, copy.deepcopy(kube.body))
    runner._target = CloudTarget("http://127.0.0.1:1", "p", Credentials("AK", "SK"))
    started = asyncio.get_running_loop().time()
    assert await runner._look_until_settled(0.5)  # returns at the interval: time to read the job
    assert asyncio.get_running_loop().time() - started >= 0.45
    await deps.looks.aclose()


async def test_a_job_read_never_waits_behind_submissions():
    """Every submission slot taken (a fleet being submitted): a resource whose job ended is still read now."""
    journal: list = []
    kube = FakeKube(journal, submitted_status())
    cloud = FakeCloud(journal)
    deps, _ = make(journal, kube, cloud, max_concurrency=1)
    assert deps.gate is not None
    async with deps.gate:  # held by a submission for the whole test
        await run(deps, kube)
    assert journal.count(("get_job",)) == 1 and kube.body["status"]["phase"] == "Succeeded"


async def test_a_resource_changed_while_its_server_is_looked_at_is_decided_again_at_once():
    """A hand edit (or any newer version) while the runner waits for the job's end: it stops waiting and
    decides from the new version, as it did after each poll."""
    journal: list = []
    kube = FakeKube(journal, submitted_status())
    cloud = LookingCloud(journal)
    cloud.server = Server(id=SERVER, status="REBUILD", task_state="rebuilding")
    deps, _ = make(journal, kube, cloud)
    deps.looks = ServerLooks(cloud)
    runner = Runner(deps, copy.deepcopy(kube.body))
    runner._target = CloudTarget("http://127.0.0.1:1", "p", Credentials("AK", "SK"))
    waiting = asyncio.create_task(runner._look_until_settled(30.0))
    await until(lambda: journal.count(("list", (SERVER,))) >= 2, "looks at the rebuilding server")
    assert not waiting.done()
    edited = copy.deepcopy(kube.body)
    edited["metadata"]["resourceVersion"] = "99"
    edited["status"]["phase"] = "Pending"
    runner.observe(edited)
    assert await asyncio.wait_for(waiting, timeout=2)
    await deps.looks.aclose()
