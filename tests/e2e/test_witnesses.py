"""Outcomes decided by the cloud's own records (issue 11): the server's action log, X-Client-Token, job records
that expire, and people who touch a server while a request's outcome is unknown.

Each test counts what the cloud accepted (the emulator's admin API), never what the statuses say, and checks which
witness decided (the Ready / Stalled condition's reason). Servers are made an hour old (created, updated and
launched an hour ago): server times are whole seconds, so an operation by someone else a moment after the operator
read the server still moves them, as it would on a server that has been up for a while.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from e2e_support import History, spec

TERMINAL = ("Succeeded", "Failed")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FAIL_CODE = "Ecs.0516"
FAIL_REASON = "Rebuilding the system disk failed: image check error (emulated)."


def server(n: int) -> str:
    return f"7e11c0de-0000-4000-8000-{n:012d}"


async def add_server(harness, server_id: str, **attributes: Any) -> dict:
    """A SHUTOFF server created, last updated and launched an hour ago (in the cloud's clock, offset included)."""
    config = await harness.ecs.admin.get_config()
    cloud_now = datetime.now(UTC) + timedelta(seconds=config.get("clock_offset_seconds") or 0)
    past = (cloud_now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    attributes.setdefault("status", "SHUTOFF")
    return await harness.ecs.admin.add_server(
        server_id, created=past, updated=past, launched_at=past, **attributes
    )


def status_of(body: Mapping) -> dict:
    return dict(body.get("status") or {})


def conditions(body: Mapping) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c.get("status"), c.get("reason")) for c in status_of(body).get("conditions") or ()}


def story(body: Mapping) -> str:
    """The part of a status that tells what happened, on one line."""
    status = status_of(body)
    keys = (
        "phase",
        "message",
        "jobId",
        "jobStatus",
        "submittedAt",
        "failure",
        "attempt",
        "unconfirmedAttempt",
    )
    return json.dumps(
        {**{k: status[k] for k in keys if k in status}, "conditions": conditions(body)}, default=str
    )


async def cloud_facts(harness, server_id: str) -> dict:
    """What the cloud did for `server_id`: POSTs received (accepted or not), reinstalls accepted, their records."""
    counters = await harness.ecs.admin.counters()
    posts = sum(n for key, n in counters["requests"].items() if key.startswith("reinstall"))
    return {
        "posts": posts,
        "accepted": counters["accepted_reinstalls"].get(server_id, 0),
        "requests": counters["requests"],
        "records": await harness.ecs.admin.reinstalls(server_id),
    }


async def settled_facts(harness, server_id: str, *, quiet: float = 1.0, timeout: float = 10.0) -> dict:
    """`cloud_facts` once no reinstall POST has come for `quiet` seconds: a second POST would come as soon as the
    operator saw the server idle again, so the count is read only after giving it the time to come."""
    deadline = time.monotonic() + timeout
    facts = await cloud_facts(harness, server_id)
    since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        await asyncio.sleep(0.1)
        now = await cloud_facts(harness, server_id)
        if now["posts"] != facts["posts"]:
            facts, since = now, time.monotonic()
    return await cloud_facts(harness, server_id)


async def wait_until(check: Callable[[], Awaitable[Any]], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout}s (last: {value!r})")
        await asyncio.sleep(0.05)


async def wait_terminal(harness, name: str, timeout: float) -> dict:
    return await harness.wait_for(
        name,
        lambda b: status_of(b).get("phase") in TERMINAL,
        timeout=timeout,
        what="Succeeded or Failed",
    )


def fail_with(problems: list[str], body: Mapping, facts: Mapping) -> None:
    assert not problems, "\n".join(
        [
            f"{len(problems)} problem(s):",
            *problems,
            f"status: {story(body)}",
            f"cloud: posts={facts['posts']} accepted={facts['accepted']} requests={facts['requests']}",
        ]
    )


# --- 1. the operator down while the job runs, its record expired when it comes back ------------------------------


@pytest.mark.parametrize(
    ("outcome", "expiry"),
    [("SUCCESS", "clock-advanced"), ("FAIL", "clock-advanced"), ("SUCCESS", "short-retention")],
)
async def test_a_job_record_expired_while_the_operator_was_down_is_decided_from_the_action_log(
    harness, outcome, expiry
):
    """The cloud deletes finished jobs a day after they end. An operator down for that day comes back to a job ID
    that answers 404 `Common.0011`: the action log's rebuild decides, with the phase the job had, at once (not
    after timeoutSeconds), and nothing is sent again."""
    s = server(1 if outcome == "SUCCESS" else 2)
    name = f"expired-{outcome.lower()}-{expiry}"
    job_seconds = 10 if expiry == "clock-advanced" else 4.0  # still running when the operator has stopped
    await add_server(
        harness, s, job_seconds=job_seconds, outcome=outcome, fail_code=FAIL_CODE, fail_reason=FAIL_REASON
    )
    await harness.start_operator()
    await harness.create(name, spec(s))
    running = await harness.wait_for(name, lambda b: bool(status_of(b).get("jobId")), what="a job ID")
    job_id = running["status"]["jobId"]
    await harness.stop_operator()

    (record,) = await harness.ecs.admin.reinstalls(s)
    assert record["job_status"] in ("INIT", "RUNNING"), f"the job should still run: {record}"
    if expiry == "clock-advanced":  # a day and a minute later, for the cloud
        retention = (await harness.ecs.admin.get_config())["job_retention_seconds"]
        await harness.ecs.admin.advance_clock(retention + 60)
    else:
        await harness.ecs.admin.set_config(job_retention_seconds=1)

    async def expired() -> bool:
        return (await harness.ecs.admin.reinstalls(s))[0]["job_expired"]

    await wait_until(expired, timeout=10, what="the job record expired")

    await harness.start_operator()
    try:
        body = await wait_terminal(harness, name, timeout=20)
    except AssertionError as exc:
        facts = await cloud_facts(harness, s)
        raise AssertionError(
            f"{exc}\n(the job record answers 404: requests {facts['requests']}, "
            f"expired-job lookups {(await harness.ecs.admin.counters())['expired_job_lookups']})"
        ) from None
    facts = await settled_facts(harness, s)
    (record,) = facts["records"]
    status = status_of(body)
    problems = []
    expected_phase = "Succeeded" if outcome == "SUCCESS" else "Failed"
    if status.get("phase") != expected_phase:
        problems.append(f"phase {status.get('phase')}, but the cloud's job ended {outcome}")
    if outcome == "SUCCESS":
        if conditions(body).get("Ready") != ("True", "SucceededFromActionLog"):
            problems.append(f"Ready is {conditions(body).get('Ready')}, not True/SucceededFromActionLog")
    else:
        if conditions(body).get("Stalled") != ("True", "FailedFromActionLog"):
            problems.append(f"Stalled is {conditions(body).get('Stalled')}, not True/FailedFromActionLog")
        failure = status.get("failure") or {}
        if failure.get("code") != "FailedFromActionLog" or FAIL_REASON not in (failure.get("reason") or ""):
            problems.append(
                f"failure {failure} does not carry the action's error ({FAIL_CODE}: {FAIL_REASON})"
            )
    if status.get("jobId") != job_id:
        problems.append(f"jobId {status.get('jobId')!r}, not the job {job_id} it followed")
    if (status.get("attempt") or {}).get("requestId") != record["action_request_id"]:
        problems.append(
            f"attempt.requestId {(status.get('attempt') or {}).get('requestId')!r} is not the rebuild "
            f"{record['action_request_id']} the POST made"
        )
    if facts["posts"] != 1 or facts["accepted"] != 1:
        problems.append(
            f"{facts['posts']} POST(s), {facts['accepted']} accepted: exactly one of each expected"
        )
    fail_with(problems, body, facts)


# --- 2, 3. someone else acts on the server while a POST's outcome is unknown, and the POST was NOT processed ------

UNPROCESSED = {
    "dropped-before": {"drop_connection": "before"},  # the connection closes, the cloud never processed it
    "unprocessed-500": {"status": 500},  # a 5xx proves nothing: here the cloud did not process it
}


async def someone_else_during_an_unknown_outcome(
    harness, name: str, server_id: str, fault: Mapping, operations: Callable[[], Awaitable[None]]
) -> tuple[dict, dict, list[dict]]:
    """The POST is held up for 1.5 s at the cloud's door, then answered with `fault` without being processed. In
    between (after the operator wrote its intent, with the server's `updated` and launch time before), someone
    else runs `operations` on the server. Returns the terminal resource, what the cloud did, and every status the
    resource went through."""
    await harness.ecs.admin.add_fault("reinstall", latency_ms=1500, count=1, **fault)
    async with History(harness.kube.url, harness.kube.token, harness.namespace) as history:
        await harness.start_operator()
        await harness.create(name, spec(server_id))
        await harness.wait_for(
            name, lambda b: bool(status_of(b).get("attempt")), timeout=15, what="the intent (status.attempt)"
        )
        await operations()
        answered = {
            k: n for k, n in (await harness.ecs.admin.counters())["requests"].items() if "reinstall" in k
        }
        assert not answered, f"the first POST was answered before someone else acted: {answered}"
        body = await wait_terminal(harness, name, timeout=30)
        facts = await settled_facts(harness, server_id)
        statuses = history.statuses(name)
    return body, facts, statuses


def check_resubmitted_once(body: Mapping, facts: Mapping, statuses: list[dict], someone: str) -> list[str]:
    """Ended Succeeded from the job of exactly one accepted reinstall, sent after the first attempt was judged not
    taken; never Failed or Succeeded on the strength of what someone else did."""
    status = status_of(body)
    problems = []
    if status.get("phase") != "Succeeded" or conditions(body).get("Ready") != ("True", "Succeeded"):
        problems.append(
            f"ended {status.get('phase')} ({conditions(body).get('Ready')}, {conditions(body).get('Stalled')}): "
            f"expected Succeeded from the job of a resubmitted request; the first POST was never processed, "
            f"only {someone} happened"
        )
    if facts["accepted"] != 1:
        problems.append(f"{facts['accepted']} accepted reinstall(s): exactly one expected")
    if facts["posts"] != 2:
        problems.append(f"{facts['posts']} POST(s): expected the unprocessed one and one resubmission")
    attempts = [s["attempt"]["id"] for s in statuses if (s.get("attempt") or {}).get("id")]
    first = attempts[0] if attempts else None
    unconfirmed = {(s.get("unconfirmedAttempt") or {}).get("id") for s in statuses}
    if first is None or first not in unconfirmed:
        problems.append(
            f"the first attempt {first} was never recorded as judged not taken (status.unconfirmedAttempt)"
        )
    final_attempt = (status.get("attempt") or {}).get("id")
    if final_attempt == first:
        problems.append("the final attempt is the first one: nothing was resubmitted")
    tokens = [r["client_token"] for r in facts["records"]]
    if tokens != [final_attempt]:
        problems.append(f"accepted POSTs carried X-Client-Token {tokens}, expected [{final_attempt}]")
    wrong = [
        f"{s.get('phase')}/{c.get('reason')}"
        for s in statuses
        for c in s.get("conditions") or ()
        if s.get("phase") in TERMINAL and c.get("type") in ("Ready", "Stalled") and c.get("status") == "True"
        and c.get("reason") != "Succeeded"
    ]  # fmt: skip
    if wrong:
        problems.append(f"went through terminal state(s) {wrong}")
    return problems


@pytest.mark.parametrize("unprocessed", list(UNPROCESSED))
async def test_a_stop_and_start_by_someone_else_during_an_unknown_outcome_is_no_failure(harness, unprocessed):
    """A console stop/start moves the server's `updated`, which the operator once took as proof that the cloud had
    processed its POST; the server then came back without a new launch time and the resource ended
    FailedFromServerState, with no reinstall at all. The action log shows a start and a stop, no rebuild: after the
    settle time the request is judged not taken and sent again."""
    s = server(10 if unprocessed == "dropped-before" else 11)
    await add_server(harness, s)

    async def start_and_stop() -> None:
        await harness.ecs.admin.start(s)
        await harness.ecs.admin.stop(s)

    body, facts, statuses = await someone_else_during_an_unknown_outcome(
        harness, f"stop-start-{unprocessed}", s, UNPROCESSED[unprocessed], start_and_stop
    )
    log = [a["action"] for a in await harness.ecs.admin.actions(s)]
    assert log[-1] == "create" and {"start", "stop"} <= set(log), f"someone else's actions missing: {log}"
    fail_with(
        check_resubmitted_once(body, facts, statuses, "a stop and a start by someone else"), body, facts
    )


@pytest.mark.parametrize("operation", ["resize", "migrate"])
async def test_a_resize_by_someone_else_during_an_unknown_outcome_is_no_success(harness, operation):
    """A resize (or migration) moves the server's launch time, which the operator once took as proof that a
    reinstall had completed: the resource ended SucceededFromServerState although the cloud never processed the
    POST and no reinstall ever happened. The action log names the operation: not a rebuild."""
    s = server(20 if operation == "resize" else 21)
    await add_server(harness, s)
    before = await harness.ecs.admin.get_server(s)

    async def resize() -> None:
        await harness.ecs.admin.operate(s, operation)

    body, facts, statuses = await someone_else_during_an_unknown_outcome(
        harness, f"{operation}-unprocessed", s, UNPROCESSED["dropped-before"], resize
    )
    problems = check_resubmitted_once(body, facts, statuses, f"a {operation} by someone else")
    if any(st.get("phase") == "Succeeded" for st in statuses) and facts["accepted"] == 0:
        problems.append("reported Succeeded although the cloud accepted no reinstall")
    after = await harness.ecs.admin.get_server(s)
    assert after["launched_at"] != before["launched_at"]  # the operation (or the reinstall) moved it
    fail_with(problems, body, facts)


# --- 4. a failed rebuild whose job ID was lost ---------------------------------------------------------------------


CLOCK_OFFSETS = {"same-clock": 0, "cloud-10min-behind": -600, "cloud-10min-ahead": 600}


@pytest.mark.parametrize("clock", list(CLOCK_OFFSETS))
async def test_a_failed_rebuild_whose_job_id_was_lost_fails_with_the_actions_error(harness, clock):
    """The cloud takes the POST, the connection drops before its answer (the job ID is lost), and the job fails:
    the server goes back to SHUTOFF as if nothing happened. The action log's rebuild says it failed, and why. The
    cloud's clock is off by ±10 minutes in two variants: the rebuild must still be found by comparing times in
    the cloud's clock (estimated from its Date headers), not in ours."""
    await harness.ecs.admin.set_config(clock_offset_seconds=CLOCK_OFFSETS[clock])
    s = server(30 + list(CLOCK_OFFSETS).index(clock))
    await add_server(harness, s, job_seconds=1, outcome="FAIL", fail_code=FAIL_CODE, fail_reason=FAIL_REASON)
    await harness.ecs.admin.add_fault("reinstall", drop_connection="after", count=1)
    await harness.start_operator()
    name = f"lost-failed-{clock}"
    await harness.create(name, spec(s))
    body = await wait_terminal(harness, name, timeout=30)
    facts = await settled_facts(harness, s)
    status = status_of(body)
    problems = []
    rebuilds = [a for a in await harness.ecs.admin.actions(s) if a["action"] == "rebuild"]
    traceback = rebuilds[-1]["events"][0]["traceback"] if rebuilds else None
    if status.get("phase") != "Failed" or conditions(body).get("Stalled") != ("True", "FailedFromActionLog"):
        problems.append(
            f"ended {status.get('phase')} with Stalled {conditions(body).get('Stalled')}: expected "
            "Failed/FailedFromActionLog"
        )
    failure = status.get("failure") or {}
    if failure.get("code") != "FailedFromActionLog":
        problems.append(f"failure.code {failure.get('code')!r}, not FailedFromActionLog")
    if not traceback or traceback not in (failure.get("reason") or ""):
        problems.append(f"failure.reason {failure.get('reason')!r} is not the action's error {traceback!r}")
    if FAIL_CODE not in (failure.get("reason") or "") or FAIL_REASON not in (failure.get("reason") or ""):
        problems.append(
            f"failure.reason {failure.get('reason')!r} lacks the cloud's {FAIL_CODE}: {FAIL_REASON}"
        )
    if rebuilds and (status.get("attempt") or {}).get("requestId") != rebuilds[-1]["request_id"]:
        problems.append(f"attempt.requestId is not the rebuild {rebuilds[-1]['request_id']}")
    if facts["posts"] != 1 or facts["accepted"] != 1 or len(rebuilds) != 1:
        problems.append(
            f"{facts['posts']} POST(s), {facts['accepted']} accepted, {len(rebuilds)} rebuild(s): one of each "
            "expected"
        )
    fail_with(problems, body, facts)


# --- 5. the action log unavailable: the server's state decides, as before -----------------------------------------


@pytest.mark.parametrize("action_log", ["404", "403"])
@pytest.mark.parametrize("loss", ["job-id-lost", "job-record-expired"])
async def test_without_the_action_log_the_servers_state_decides(harness, action_log, loss):
    """One edition of the docs marks os-instance-actions deprecated: withdrawn, it may answer 404 (unpublished)
    or 403 (policy). Then the server's `updated` and launch time decide, as before the action log was used: a
    lost job ID (the connection dropped after the cloud took the POST) and an expired job record (the operator
    down for a day) both end with the right phase, reason `...FromServerState`."""
    await harness.ecs.admin.set_config(action_log=action_log)
    s = server(40 + 2 * (loss == "job-record-expired") + (action_log == "403"))
    name = f"no-log-{loss}-{action_log}"
    if loss == "job-id-lost":  # a failed job: the launch time did not move
        await add_server(
            harness, s, job_seconds=1, outcome="FAIL", fail_code=FAIL_CODE, fail_reason=FAIL_REASON
        )
        await harness.ecs.admin.add_fault("reinstall", drop_connection="after", count=1)
        await harness.start_operator()
        await harness.create(name, spec(s))
        expected = ("Failed", "Stalled", "FailedFromServerState")
    else:  # a successful job: the launch time moved
        await add_server(harness, s, job_seconds=10)
        await harness.start_operator()
        await harness.create(name, spec(s))
        await harness.wait_for(name, lambda b: bool(status_of(b).get("jobId")), what="a job ID")
        await harness.stop_operator()
        await harness.ecs.admin.advance_clock(
            (await harness.ecs.admin.get_config())["job_retention_seconds"] + 60
        )
        assert (await harness.ecs.admin.reinstalls(s))[0]["job_expired"]
        await harness.start_operator()
        expected = ("Succeeded", "Ready", "SucceededFromServerState")
    body = await wait_terminal(harness, name, timeout=30)
    facts = await settled_facts(harness, s)
    phase, condition, reason = expected
    problems = []
    if status_of(body).get("phase") != phase or conditions(body).get(condition) != ("True", reason):
        problems.append(
            f"ended {status_of(body).get('phase')} with {condition} {conditions(body).get(condition)}: "
            f"expected {phase}/{reason}"
        )
    asked = facts["requests"].get(f"list_actions:{action_log}", 0)
    if not asked:
        problems.append(
            f"the action log was never asked (no list_actions:{action_log} in the cloud's counters)"
        )
    if facts["posts"] != 1 or facts["accepted"] != 1:
        problems.append(
            f"{facts['posts']} POST(s), {facts['accepted']} accepted: exactly one of each expected"
        )
    fail_with(problems, body, facts)


# --- 6. X-Client-Token -----------------------------------------------------------------------------------------


async def test_the_reinstall_post_carries_the_attempt_id_as_x_client_token(harness):
    s = server(50)
    await add_server(harness, s)
    await harness.start_operator()
    await harness.create("token", spec(s))
    body = await harness.wait_phase("token", "Succeeded", timeout=30)
    attempt_id = (status_of(body).get("attempt") or {}).get("id")
    records = await harness.ecs.admin.reinstalls(s)
    assert [r["client_token"] for r in records] == [attempt_id], (
        f"the accepted POST carried X-Client-Token {[r['client_token'] for r in records]}, "
        f"expected status.attempt.id {attempt_id!r}"
    )
    assert attempt_id and UUID.match(attempt_id), (
        f"attempt.id {attempt_id!r} is not a lower-case 8-4-4-4-12 UUID"
    )
    assert (await harness.ecs.admin.counters())["replayed_reinstalls"] == {}
