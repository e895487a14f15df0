"""Exactly once, by construction (DESIGN.md): two operators, a killed leader, hand-edited statuses, a name
re-used mid-job, rotated credentials. Each test counts what the cloud accepted, never what the statuses say.

Every test collects what went wrong in a list and fails once with all of it, so that a failure tells the
whole story (how many servers were reinstalled twice, which phases were wrong, how long a takeover took).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from e2e_support import (
    ACCESS_KEY,
    LOOPBACK_PREFIXES,
    OPERATOR_NAMESPACE,
    PROJECT_ID,
    SECRET_KEY,
    History,
    listening_addresses,
    spec,
)

from kube_emulator.faults import FaultRule

# The Event reasons and condition reasons that may report a status edited backwards by hand (the implementer
# picks one; keep this set small).
STATUS_REGRESSED = "StatusRegressed"
REGRESSION_REASONS = frozenset({STATUS_REGRESSED})
INVALID_CREDENTIALS = "InvalidCredentials"
AUTH_FAILED_CODE = "APIGW.0301"  # what the emulated API gateway answers for an unknown AK or a bad signature

LEASE_NAME = "ecs-reinstall-operator"
TERMINAL = ("Succeeded", "Failed")


def server(n: int) -> str:
    return f"5d1e0c1a-0000-4000-8000-{n:012d}"


def status_of(body: dict) -> dict:
    return body.get("status") or {}


def phase_of(body: dict) -> str | None:
    return status_of(body).get("phase")


async def counters(harness) -> dict:
    return await harness.ecs.admin.counters()


async def accepted(harness, server_id: str | None = None) -> int:
    per_server = (await counters(harness))["accepted_reinstalls"]
    return sum(per_server.values()) if server_id is None else per_server.get(server_id, 0)


async def posts(harness) -> int:
    """Every reinstall POST the cloud received, accepted or not (a refused second one is still a second one)."""
    requests = (await counters(harness))["requests"]
    return sum(n for key, n in requests.items() if key.startswith("reinstall"))


def jobs_by_server(harness) -> dict[str, list]:
    """The emulator's jobs per server, in the order it accepted them (read in process: accepted_at and end_at
    are not in the admin API)."""
    jobs: dict[str, list] = {}
    for job in sorted(harness.ecs.state.jobs.values(), key=lambda j: j.accepted_at):
        jobs.setdefault(job.server_id, []).append(job)
    return jobs


def overlapping(jobs: list) -> list[str]:
    return [
        f"job {b.job_id} accepted {b.accepted_at - a.accepted_at:.2f}s after job {a.job_id}, "
        f"which ran until {a.end_at - a.accepted_at:.2f}s"
        for a, b in itertools.pairwise(jobs)
        if b.accepted_at < a.end_at
    ]


async def wait_until(
    check: Callable[[], Awaitable[Any]], *, timeout: float, step: float = 0.1
) -> tuple[bool, Any]:
    """Calls `check` until it returns something true or the deadline passes: (reached, last value)."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        value = await check()
        if value:
            return True, value
        if time.monotonic() > deadline:
            return False, value
        await asyncio.sleep(step)


async def stays(check: Callable[[], Awaitable[bool]], *, seconds: float, step: float = 0.1) -> bool:
    """True if `check` holds on every look for `seconds` (a second POST comes when the server is idle again:
    give it the time to come)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not await check():
            return False
        await asyncio.sleep(step)
    return await check()


async def by_name(harness, names: Iterable[str]) -> dict[str, dict]:
    wanted = set(names)
    return {
        b["metadata"]["name"]: b
        for b in await harness.all_reinstalls()
        if b["metadata"]["name"] in wanted and b["metadata"]["namespace"] == harness.namespace
    }


async def create_all(harness, specs: dict[str, dict], parallel: int = 8) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(name: str, body: dict) -> None:
        async with gate:
            await harness.create(name, body)

    await asyncio.gather(*(one(name, body) for name, body in specs.items()))


async def wait_all_terminal(harness, names: Iterable[str], timeout: float) -> tuple[bool, dict[str, dict]]:
    names = list(names)
    last: dict[str, dict] = {}

    async def check() -> bool:
        nonlocal last
        last = await by_name(harness, names)
        return len(last) == len(names) and all(phase_of(b) in TERMINAL for b in last.values())

    reached, _ = await wait_until(check, timeout=timeout, step=0.25)
    return reached, last


async def settled_counters(harness, quiet: float = 1.0, timeout: float = 10.0) -> dict:
    """The cloud's counters once no request has come for `quiet` seconds (requests delayed by a latency fault
    are still processed after their sender stopped)."""
    deadline = time.monotonic() + timeout
    last = await counters(harness)
    since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = await counters(harness)
        if now["total_requests"] != last["total_requests"]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def brief(status: dict) -> str:
    """The part of a status that tells the story, on one line."""
    conditions = {
        c.get("type"): f"{c.get('status')}/{c.get('reason')}" for c in status.get("conditions") or ()
    }
    keys = ("phase", "jobId", "jobStatus", "submittedAt", "waitingFor", "message")
    return json.dumps({**{k: status.get(k) for k in keys if k in status}, "conditions": conditions})


def fail_with(problems: list[str], context: str = "") -> None:
    assert not problems, "\n".join([f"{len(problems)} problem(s):", *problems, context])


def phases(bodies: dict[str, dict]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for body in bodies.values():
        seen[str(phase_of(body))] = seen.get(str(phase_of(body)), 0) + 1
    return seen


# --- 1. two operator processes, no leader election ------------------------------------------------------------


async def test_two_operators_without_leader_election_reinstall_each_resource_exactly_once(harness):
    """A second replica, a second release, a stuck old Pod: both run every resource, with leader election off.
    52 resources over 43 servers, 6 of them shared by 2 or 3 resources. The POST and half the server reads are
    slowed down so that both operators are in the middle of the same steps together. (In-process operators run
    with leader election off: see Harness.settings.)"""
    plan: dict[str, str] = {f"one-{i}": server(i) for i in range(37)}
    for i in range(3):
        plan.update({f"pair-{i}-{k}": server(100 + i) for k in range(2)})
        plan.update({f"triple-{i}-{k}": server(200 + i) for k in range(3)})
    wanted: dict[str, int] = {}
    for server_id in plan.values():
        wanted[server_id] = wanted.get(server_id, 0) + 1
    shared = sorted(s for s, n in wanted.items() if n > 1)
    for server_id in wanted:
        await harness.ecs.admin.add_server(server_id, status="SHUTOFF", job_seconds=1.0)
    await harness.ecs.admin.add_fault("reinstall", latency_ms=400)
    await harness.ecs.admin.add_fault("get_server", latency_ms=250, probability=0.5)
    await harness.ecs.admin.add_fault("list_servers", latency_ms=250, probability=0.5)  # reads in bulk

    await asyncio.gather(harness.start_operator("main"), harness.start_operator("second"))
    # stopServer: a shared server is ACTIVE after its first reinstall, and the next resource may stop it
    await create_all(harness, {name: spec(s, stopServer=True) for name, s in plan.items()})
    done, bodies = await wait_all_terminal(harness, plan, timeout=50)
    await asyncio.gather(harness.stop_operator("main"), harness.stop_operator("second"))
    seen = await settled_counters(harness)

    problems = []
    if not done:
        problems.append(f"not every resource ended within 50 s: phases {phases(bodies)}")
    per_server = seen["accepted_reinstalls"]
    twice = {s: per_server.get(s, 0) for s in wanted if per_server.get(s, 0) > wanted[s]}
    missing = {s: per_server.get(s, 0) for s in wanted if per_server.get(s, 0) < wanted[s]}
    if twice:
        problems.append(
            f"{len(twice)} of {len(wanted)} servers reinstalled more often than they have resources "
            f"(server: accepted, wanted): {[(s[-3:], n, wanted[s]) for s, n in sorted(twice.items())]}"
        )
    if missing:
        problems.append(f"{len(missing)} servers reinstalled less often than they have resources: {missing}")
    wrong = {n: phase_of(b) for n, b in bodies.items() if phase_of(b) != "Succeeded"}
    if wrong:
        problems.append(
            f"{len(wrong)} resources not Succeeded although the cloud succeeds every job: "
            + ", ".join(f"{n}={p} ({status_of(bodies[n]).get('message')})" for n, p in sorted(wrong.items()))
        )
    jobs = jobs_by_server(harness)
    for server_id in shared:
        for overlap in overlapping(jobs.get(server_id, [])):
            problems.append(f"server {server_id} reinstalled twice at once: {overlap}")
    credited: dict[str, str] = {}
    for name, body in sorted(bodies.items()):
        job_id = status_of(body).get("jobId")
        if not job_id:
            continue
        job = harness.ecs.state.jobs.get(job_id)
        if job is None or job.server_id != plan[name]:
            problems.append(f"{name} shows job {job_id}, which is not a reinstall of its server {plan[name]}")
        if job_id in credited:
            problems.append(f"{name} and {credited[job_id]} both claim job {job_id}")
        credited[job_id] = name
    fail_with(
        problems,
        f"POSTs received: {sum(n for k, n in seen['requests'].items() if k.startswith('reinstall'))} "
        f"for {len(plan)} resources; requests {seen['requests']}",
    )


# --- 2. the leader is killed mid-rollout, the standby takes over ---------------------------------------------

LEASE_SECONDS, RENEW_DEADLINE_SECONDS, RETRY_PERIOD_SECONDS = 4, 3, 1
POST_LATENCY = 0.6


def election(pod_name: str) -> dict[str, Any]:
    return dict(
        leader_election=True,
        leader_election_lease_seconds=LEASE_SECONDS,
        leader_election_renew_deadline_seconds=RENEW_DEADLINE_SECONDS,
        leader_election_retry_period_seconds=RETRY_PERIOD_SECONDS,
        leader_election_lease_name=LEASE_NAME,
        pod_name=pod_name,
        max_concurrency=2,  # a slow leader, so that the kill finds some resources not submitted yet
    )


async def test_leader_killed_mid_rollout_the_standby_takes_over_without_losing_or_doubling(harness):
    """Two real operator processes with leader election (4 s lease, 3 s renew deadline, 1 s retry). The leader
    is SIGKILLed while some resources are Reinstalling and others are not submitted yet; the standby must take
    over within lease + 5 s, finish everything, and send no POST twice."""
    servers = {f"roll-{i:02d}": server(300 + i) for i in range(20)}
    for server_id in servers.values():
        await harness.ecs.admin.add_server(server_id, status="SHUTOFF", job_seconds=4.0)
    await harness.ecs.admin.add_fault("reinstall", latency_ms=int(POST_LATENCY * 1000))
    procs = {
        "op-a": harness.start_operator_process("a", **election("op-a")),
        "op-b": harness.start_operator_process("b", **election("op-b")),
    }
    await create_all(harness, {name: spec(s) for name, s in servers.items()})
    problems: list[str] = []

    async def ripe() -> dict | None:
        """Some resources Reinstalling, some not submitted: the moment to kill the leader."""
        for proc in procs.values():
            assert proc.alive(), f"operator {proc.name} exited:\n{proc.log_text[-3000:]}"
        bodies = await by_name(harness, servers)
        running = [
            n for n, b in bodies.items() if phase_of(b) == "Reinstalling" and status_of(b).get("jobId")
        ]
        waiting = [n for n, b in bodies.items() if phase_of(b) in (None, "Pending")]
        return bodies if len(running) >= 3 and len(waiting) >= 5 else None

    reached, _ = await wait_until(ripe, timeout=30)
    if not reached:
        bodies = await by_name(harness, servers)
        raise AssertionError(
            f"the rollout never had 3 resources Reinstalling and 5 waiting: {phases(bodies)}; "
            + "; ".join(f"{n}: {brief(status_of(b))}" for n, b in sorted(bodies.items())[:3])
        )
    for proc in procs.values():
        exposed = [a for a in listening_addresses(proc.pid) if not a.startswith(LOOPBACK_PREFIXES)]
        if exposed:
            problems.append(f"operator {proc.name} listens beyond loopback: {exposed}")
    lease = await harness.read_lease(LEASE_NAME)
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
    if holder not in procs:
        problems.append(
            f"no leader: Lease {OPERATOR_NAMESPACE}/{LEASE_NAME} is {json.dumps(lease)} "
            "while resources are being reinstalled (both processes acted; killing op-a)"
        )
        holder = "op-a"
    leader, standby = procs[holder], next(p for name, p in procs.items() if name != holder)
    standby_id = next(name for name in procs if name != holder)

    # --- the kill, and what happens next, to within 0.1 s
    snapshot = {n: b["metadata"]["resourceVersion"] for n, b in (await by_name(harness, servers)).items()}
    leader.kill()
    killed_at = time.monotonic()
    first_write = lease_moved = first_submission = None
    accepted_before: int | None = None
    settle = 0.5  # writes and POSTs the killed leader had already sent still land during this time
    deadline = killed_at + LEASE_SECONDS + 5 + 4
    while time.monotonic() < deadline and not (first_write and lease_moved and first_submission):
        now = time.monotonic() - killed_at
        bodies = await by_name(harness, servers)
        changed = [n for n, b in bodies.items() if b["metadata"]["resourceVersion"] != snapshot.get(n)]
        if now < settle:
            snapshot = {n: b["metadata"]["resourceVersion"] for n, b in bodies.items()}
        elif changed and first_write is None:
            first_write = now
        if lease_moved is None:
            lease = await harness.read_lease(LEASE_NAME)
            if ((lease or {}).get("spec") or {}).get("holderIdentity") == standby_id:
                lease_moved = now
        total = await accepted(harness)
        if now >= settle + POST_LATENCY and accepted_before is None:
            accepted_before = total
        elif accepted_before is not None and total > accepted_before and first_submission is None:
            first_submission = now
        await asyncio.sleep(0.1)

    def fmt(value: float | None) -> str:
        return "never" if value is None else f"{value:.1f} s"

    figures = (
        f"takeover after SIGKILL of {holder}: first status write by the standby {fmt(first_write)}, "
        f"Lease held by {standby_id} {fmt(lease_moved)}, first new accepted reinstall {fmt(first_submission)} "
        f"(lease {LEASE_SECONDS} s, renew deadline {RENEW_DEADLINE_SECONDS} s, retry {RETRY_PERIOD_SECONDS} s; "
        f"target: lease + 5 s = {LEASE_SECONDS + 5} s)"
    )
    print("\n" + figures)
    if first_write is None or first_write > LEASE_SECONDS + 5:
        problems.append(f"no status write within lease + 5 s after the kill: {figures}")
    if first_submission is None or first_submission > LEASE_SECONDS + 5 + POST_LATENCY:
        problems.append(f"no new submission within lease + 5 s after the kill: {figures}")
    if lease_moved is None:
        problems.append(f"the Lease never passed to the standby {standby_id}: {figures}")

    done, bodies = await wait_all_terminal(harness, servers, timeout=40)
    if not done:
        problems.append(f"not every resource ended within 40 s of the takeover: {phases(bodies)}")
    if not standby.alive():
        problems.append(f"the standby exited: {standby.log_text[-2000:]}")
    standby.stop()
    seen = await settled_counters(harness)
    per_server = seen["accepted_reinstalls"]
    doubled = {n: per_server.get(s, 0) for n, s in servers.items() if per_server.get(s, 0) != 1}
    if doubled:
        problems.append(f"{len(doubled)} resources not reinstalled exactly once (name: accepted): {doubled}")
    sent = sum(n for k, n in seen["requests"].items() if k.startswith("reinstall"))
    if sent != len(servers):
        problems.append(f"{sent} reinstall POSTs for {len(servers)} resources: {seen['requests']}")
    wrong = {n: phase_of(b) for n, b in bodies.items() if phase_of(b) != "Succeeded"}
    if wrong:
        first = sorted(wrong)[0]
        problems.append(
            f"{len(wrong)} resources not Succeeded: {wrong}; {first}: {status_of(bodies[first]).get('message')}"
        )
    fail_with(problems, figures)


# --- 3. a status set back by hand -----------------------------------------------------------------------------


async def _start_a_long_job(harness, name: str, server_id: str) -> dict:
    await harness.ecs.admin.add_server(server_id, status="SHUTOFF", job_seconds=6.0)
    await harness.start_operator()
    await harness.create(name, spec(server_id, stopServer=True))  # an ACTIVE server does not stop a resend
    return await harness.wait_for(
        name, lambda b: bool(status_of(b).get("jobId")), timeout=15, what="the job accepted"
    )


async def _until_done_or_resent(harness, name: str, timeout: float = 30) -> dict:
    async def check() -> dict | None:
        body = await harness.get(name)
        return body if phase_of(body) in TERMINAL or await posts(harness) > 1 else None

    reached, body = await wait_until(check, timeout=timeout)
    return body if reached else await harness.get(name)


async def test_a_status_set_back_to_pending_by_hand_mid_job_is_reported_and_never_resubmitted(harness):
    s = server(400)
    async with History(harness.kube.url, harness.kube.token, harness.namespace) as history:
        body = await _start_a_long_job(harness, "regress", s)
        job_id = status_of(body)["jobId"]
        # kubectl patch ecsr regress --subresource=status --type=merge -p '{"status":{"phase":"Pending"}}'
        await harness.patch_status("regress", {"phase": "Pending"})
        final = await _until_done_or_resent(harness, "regress")
        kept = await stays(lambda: _one_post(harness), seconds=2)
        problems = []
        if not kept:
            problems.append(
                f"a second reinstall POST was sent: {(await counters(harness))['requests']}, "
                f"accepted {await accepted(harness, s)}"
            )
        if phase_of(final) != "Succeeded":
            problems.append(f"ended {phase_of(final)}, not Succeeded: {status_of(final).get('message')}")
        if status_of(final).get("jobId") != job_id:
            problems.append(f"ended with job {status_of(final).get('jobId')}, not the only one, {job_id}")
        reasons = await harness.wait_for_events("regress", {STATUS_REGRESSED}, timeout=5)
        if not reasons & REGRESSION_REASONS:
            problems.append(f"no Event reports the regression: Event reasons {sorted(reasons)}")
        conditions = history.condition_reasons("regress")
        if not conditions & REGRESSION_REASONS:
            problems.append(f"no condition reason reports the regression: reasons seen {sorted(conditions)}")
        fail_with(problems, f"final status: {brief(status_of(final))}")


async def _one_post(harness) -> bool:
    return await posts(harness) == 1


async def test_a_status_wiped_by_hand_mid_job_never_leads_to_a_second_post(harness):
    """Phase Pending and every trace of the request gone (jobId, attempt, submittedAt), while the operator that
    sent it runs: it knows what it sent, and the cloud is still busy with it."""
    s = server(401)
    body = await _start_a_long_job(harness, "wiped", s)
    assert status_of(body).get("attempt") is not None and status_of(body).get("submittedAt")
    await harness.patch_status(
        "wiped", {"phase": "Pending", "jobId": None, "attempt": None, "submittedAt": None}
    )
    final = await _until_done_or_resent(harness, "wiped")
    kept = await stays(lambda: _one_post(harness), seconds=2)
    problems = []
    if not kept:
        problems.append(
            f"a second reinstall POST was sent: {(await counters(harness))['requests']}, "
            f"accepted {await accepted(harness, s)}"
        )
    if phase_of(final) != "Succeeded":
        problems.append(f"ended {phase_of(final)}, not Succeeded: {status_of(final).get('message')}")
    fail_with(problems, f"final status: {brief(status_of(final))}")


# --- 4. deleted and re-created under the same name mid-job -----------------------------------------------------


async def test_a_name_deleted_and_recreated_mid_job_gets_its_own_reinstall_after_the_first(harness):
    """The object is deleted and re-created under the same name while its job runs and while the operator's
    watch lags (ended, and its re-list held 6 s by the API server, as under load): the old object's runner
    does not know yet and writes the job's end. That write must not land on the new object; the new one waits
    for the server if the first job still runs, then reinstalls it once more."""
    s = server(500)
    await harness.ecs.admin.add_server(s, status="SHUTOFF", job_seconds=4.0)
    await harness.start_operator()
    async with History(harness.kube.url, harness.kube.token, harness.namespace) as history:
        old = await harness.create("again", spec(s, stopServer=True))
        old_uid = old["metadata"]["uid"]
        body = await harness.wait_for(
            "again", lambda b: bool(status_of(b).get("jobId")), timeout=15, what="the job accepted"
        )
        old_job = status_of(body)["jobId"]
        # The operator goes blind: its watch ends and its re-list (then watch) is held up for 6 s.
        lag = harness.kube.faults.add(
            FaultRule(
                verbs=frozenset({"list", "watch"}),
                path_regex=r"^/apis/ecs\.reinstall\.dev/v1alpha1/ecsreinstalls$",  # cluster-wide: the operator's
                latency_seconds=6.0,
                times=1,
            )
        )
        assert harness.cut_watches() >= 1, "the operator had no cluster-wide watch to end"
        before = await harness.get("again")
        assert phase_of(before) == "Reinstalling", (
            f"the first job ended too early: {brief(status_of(before))}"
        )
        deleted_at = time.monotonic()
        await harness.delete("again")
        new = await harness.create("again", spec(s, stopServer=True))
        new_uid = new["metadata"]["uid"]
        assert new_uid != old_uid

        async def settled() -> dict | None:
            body = await harness.get("again")
            return body if phase_of(body) in TERMINAL or await accepted(harness, s) > 2 else None

        _, final = await wait_until(settled, timeout=40)
        final = final or await harness.get("again")
        seen = await settled_counters(harness)
        problems = []
        if lag.hits == 0:
            problems.append("the operator never listed or watched again after its watch ended")
        if final["metadata"]["uid"] != new_uid:
            problems.append("the object was replaced again")
        stale = [st for st in history.statuses("again", new_uid) if old_job in json.dumps(st)]
        if stale:
            problems.append(
                f"the new object's status showed the old job {old_job} ({len(stale)} versions), first: "
                f"{brief(stale[0])}"
            )
        if phase_of(final) != "Succeeded":
            problems.append(f"the new object ended {phase_of(final)}: {status_of(final).get('message')}")
        jobs = jobs_by_server(harness).get(s, [])
        n = seen["accepted_reinstalls"].get(s, 0)
        if n != 2:
            problems.append(f"server reinstalled {n} times, not 2 (once per object)")
        problems += [f"the two reinstalls overlap: {o}" for o in overlapping(jobs)]
        if len(jobs) == 2 and status_of(final).get("jobId") != jobs[1].job_id:
            problems.append(
                f"the new object shows job {status_of(final).get('jobId')!r}, not its own {jobs[1].job_id}"
            )
        events = [
            e
            for e in await harness.events()
            if old_job in (e.get("message") or "") and "delet" in (e.get("message") or "").lower()
        ]
        logs = [line for line in harness.logs.lines if old_job in line and "delet" in line.lower()]
        if not events and not logs:
            problems.append(
                f"neither an Event nor a log line says that the deleted object's job {old_job} went on"
            )
        fail_with(
            problems,
            f"old uid {old_uid} job {old_job}; new uid {new_uid}; deleted {time.monotonic() - deleted_at:.1f}s "
            f"ago; final status: {brief(status_of(final))}",
        )


# --- 5. credentials --------------------------------------------------------------------------------------------

OLD_AK, OLD_SK = "ROTATEOLDACCESSKEY01", "rotate-old-secret-key-000000000000000001"
NEW_AK, NEW_SK = "ROTATENEWACCESSKEY02", "rotate-new-secret-key-000000000000000002"


def credentials(ak: str, sk: str) -> dict[str, str]:
    return {"accessKey": ak, "secretKey": sk, "projectId": PROJECT_ID}


async def test_credentials_rotated_mid_job_are_read_again_after_a_401(harness):
    """The AK/SK is rotated while the job runs: the cloud refuses the old key, then the Secret gets the new one.
    The operator must read the Secret again after the 401 and follow the job to its end."""
    s = server(600)
    await harness.ecs.admin.add_server(s, status="SHUTOFF", job_seconds=8.0)
    await harness.ecs.admin.add_credential(OLD_AK, OLD_SK, project_id=PROJECT_ID)
    await harness.create_secret("rotating", credentials(OLD_AK, OLD_SK))
    await harness.start_operator()
    await harness.create("rotated", spec(s, credentialsSecretRef={"name": "rotating"}))
    await harness.wait_for(
        "rotated", lambda b: bool(status_of(b).get("jobId")), timeout=15, what="the job accepted"
    )
    # The rotation: the new key works, the old one no longer (the admin API cannot remove a credential).
    await harness.ecs.admin.add_credential(NEW_AK, NEW_SK, project_id=PROJECT_ID)
    harness.ecs.state.credentials.pop(OLD_AK)

    async def refused() -> bool:
        return (await counters(harness))["requests"].get("get_job:401", 0) > 0

    reached, _ = await wait_until(refused, timeout=10)
    assert reached, f"the operator never polled with the old key: {(await counters(harness))['requests']}"
    await harness.replace_secret("rotating", credentials(NEW_AK, NEW_SK))

    async def done() -> dict | None:
        body = await harness.get("rotated")
        return body if phase_of(body) in TERMINAL else None

    reached, final = await wait_until(done, timeout=20)
    final = final or await harness.get("rotated")
    problems = []
    if phase_of(final) != "Succeeded":
        problems.append(
            f"still {phase_of(final)} 20 s after the Secret got the new key: {status_of(final).get('message')}"
        )
    if status_of(final).get("jobStatus") != "SUCCESS":
        problems.append(f"jobStatus {status_of(final).get('jobStatus')}, not SUCCESS")
    if await posts(harness) != 1 or await accepted(harness, s) != 1:
        problems.append(f"not exactly one POST: {(await counters(harness))['requests']}")
    fail_with(problems, f"requests: {(await counters(harness))['requests']}")


async def test_bad_credentials_before_submission_wait_and_go_on_once_the_secret_is_fixed(harness):
    s = server(601)
    await harness.ecs.admin.add_server(s, status="SHUTOFF", job_seconds=1.0)
    await harness.create_secret("wrong-credentials", credentials("UNKNOWNACCESSKEY0003", NEW_SK + "x"))
    await harness.start_operator()
    async with History(harness.kube.url, harness.kube.token, harness.namespace) as history:
        created = await harness.create(
            "locked-out", spec(s, credentialsSecretRef={"name": "wrong-credentials"})
        )

        async def settled() -> dict | None:
            body = await harness.get("locked-out")
            reasons = {c.get("reason") for c in status_of(body).get("conditions") or ()}
            return body if phase_of(body) in TERMINAL or INVALID_CREDENTIALS in reasons else None

        reached, body = await wait_until(settled, timeout=15)
        body = body or await harness.get("locked-out")
        problems = []
        message = status_of(body).get("message") or ""
        if phase_of(body) != "Pending" or not reached:
            problems.append(
                f"phase {phase_of(body)}, not Pending with reason {INVALID_CREDENTIALS}: {message}"
            )
        elif "wrong-credentials" not in message or AUTH_FAILED_CODE not in message:
            problems.append(f"the message names neither the Secret nor the cloud's code: {message!r}")
        fail_with(problems, f"status: {brief(status_of(body))}")

        await harness.replace_secret("wrong-credentials", credentials(ACCESS_KEY, SECRET_KEY))
        final = await harness.wait_phase("locked-out", "Succeeded", timeout=20)
        assert final["metadata"]["uid"] == created["metadata"]["uid"]
        assert await accepted(harness, s) == 1 and await posts(harness) == 1
        failed = [st for st in history.statuses("locked-out") if st.get("phase") == "Failed"]
        assert not failed, f"it went through Failed on the way: {failed[0]}"
