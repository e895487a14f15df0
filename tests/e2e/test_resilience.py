"""Faults: throttling, restarts, lost answers, deletion. Exactly one accepted reinstall per resource, always."""

import asyncio

import pytest
from e2e_support import spec

from kube_emulator.faults import FaultRule


def server(n: int) -> str:
    return f"9c5a0c1a-0000-4000-8000-{n:012d}"


async def accepted(harness, server_id: str) -> int:
    return (await harness.ecs.admin.counters())["accepted_reinstalls"].get(server_id, 0)


async def test_a_throttling_storm_slows_down_and_fails_nothing(harness):
    servers = [server(n) for n in range(1, 9)]
    for s in servers:
        await harness.ecs.admin.add_server(s, status="SHUTOFF")
    await harness.ecs.admin.set_config(rate_limit={"qps": 4, "burst": 2})
    await harness.ecs.admin.add_fault("*", status=429, retry_after=1, probability=0.3)
    await harness.start_operator()
    for n, s in enumerate(servers):
        await harness.create(f"storm-{n}", spec(s))
    for n in range(len(servers)):
        await harness.wait_phase(f"storm-{n}", "Succeeded", timeout=90)
    counters = await harness.ecs.admin.counters()
    assert counters["throttled"] > 0 or any(k.endswith(":429") for k in counters["requests"])
    assert all(counters["accepted_reinstalls"][s] == 1 for s in servers)
    assert (
        "ecs_reinstall_cloud_throttled_total{operation=" in await harness.metrics_text()
    )  # a sample, not HELP


async def test_an_operator_restart_while_a_job_runs_resumes_polling_without_a_second_post(harness):
    await harness.ecs.admin.add_server(server(10), status="SHUTOFF", job_seconds=4)
    await harness.start_operator()
    await harness.create("restart", spec(server(10)))
    await harness.wait_phase("restart", "Reinstalling")
    await harness.kill_operator()
    await harness.start_operator()
    body = await harness.wait_phase("restart", "Succeeded", timeout=30)
    assert body["status"]["jobStatus"] == "SUCCESS"
    assert await accepted(harness, server(10)) == 1
    posts = sum(
        n for k, n in (await harness.ecs.admin.counters())["requests"].items() if k.startswith("reinstall")
    )
    assert posts == 1


async def test_a_connection_dropped_after_the_post_was_processed_is_recovered_without_a_second_post(harness):
    await harness.ecs.admin.add_server(server(11), status="SHUTOFF", job_seconds=1)
    await harness.ecs.admin.add_fault("reinstall", drop_connection="after", count=1)
    await harness.start_operator()
    await harness.create("dropped", spec(server(11)))
    body = await harness.wait_phase("dropped", "Succeeded", timeout=30)
    assert await accepted(harness, server(11)) == 1
    assert "job ID" in body["status"]["message"]  # says how the outcome was decided
    assert {c["type"]: c["status"] for c in body["status"]["conditions"]}["Submitted"] == "True"


@pytest.mark.parametrize("action_log", ["enabled", "404"])
async def test_a_failed_job_whose_id_was_lost_is_reported_failed_not_succeeded(harness, action_log):
    """The cloud puts the server back to SHUTOFF after the failed job, as if nothing happened: the action log's
    rebuild (or, without the log, the server's unchanged launch time) tells that the reinstall did not complete.
    Found by the chaos run (11 false successes)."""
    await harness.ecs.admin.add_server(server(13), status="SHUTOFF", job_seconds=1, outcome="FAIL")
    await harness.ecs.admin.add_fault("reinstall", drop_connection="after", count=1)
    await harness.ecs.admin.set_config(action_log=action_log)
    await harness.start_operator()
    await harness.create("lost-fail", spec(server(13)))
    body = await harness.wait_phase("lost-fail", "Failed", timeout=30)
    assert await accepted(harness, server(13)) == 1
    assert (await harness.ecs.admin.get_server(server(13)))["status"] == "SHUTOFF"  # no trace in the state
    conditions = {c["type"]: (c["status"], c["reason"]) for c in body["status"]["conditions"]}
    witness = "FailedFromActionLog" if action_log == "enabled" else "FailedFromServerState"
    assert conditions["Stalled"] == ("True", witness)
    assert conditions["Ready"][0] == "False" and conditions["Submitted"][0] == "True"
    assert body["status"]["failure"]["code"] == witness
    assert ("action log" if action_log == "enabled" else "launch time") in body["status"]["message"]


async def test_a_request_processed_after_it_was_judged_not_taken_is_followed_not_sent_again(harness):
    """Found by the chaos smoke run. The first POST is answered after the read timeout and the server still shows
    no trace of it after the settle time, so the operator sends again; that one is refused (the server is busy)
    while the cloud processes the first one late. The operator must follow that late reinstall, never wait for
    the server to be idle and send a second one."""
    s = server(14)
    await harness.ecs.admin.add_server(s, status="SHUTOFF", job_seconds=2)
    await harness.ecs.admin.add_fault("reinstall", latency_ms=2500, count=1)
    busy = await harness.ecs.admin.add_fault(
        "reinstall",
        status=501,
        body={"error": {"code": "Ecs.0603", "message": "Another operation is running on the ECS."}},
    )
    await harness.start_operator(request_timeout=1.0, outcome_settle_seconds=0.5)
    await harness.create("late", spec(s))
    for _ in range(100):  # until the late first request is processed
        if await accepted(harness, s):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the cloud never processed the late first request")
    await harness.ecs.admin.delete_fault(busy)
    body = await harness.wait_phase("late", "Succeeded", timeout=30)
    await asyncio.sleep(1)  # a second request would be sent as soon as the server is idle: give it the time
    assert await accepted(harness, s) == 1
    assert body["status"]["jobId"] == ""  # followed by the server's state, the first answer having been lost
    ready = {c["type"]: c["reason"] for c in body["status"]["conditions"]}["Ready"]
    assert (
        ready == "SucceededFromActionLog"
    )  # the earlier request's rebuild, found in the server's action log


async def test_a_5xx_that_was_not_processed_is_resubmitted_only_after_the_server_shows_no_trace(harness):
    await harness.ecs.admin.add_server(server(12), status="SHUTOFF")
    await harness.ecs.admin.add_fault("reinstall", status=500, count=1)
    await harness.start_operator()
    await harness.create("unknown", spec(server(12)))
    await harness.wait_for(
        "unknown",
        lambda b: (
            (b.get("status") or {}).get("phase") == "Submitting"
            and "unknown" in (b["status"].get("message") or "")
        ),
    )
    body = await harness.wait_phase("unknown", "Succeeded", timeout=30)
    assert body["status"]["jobId"]
    assert await accepted(harness, server(12)) == 1
    requests = (await harness.ecs.admin.counters())["requests"]
    assert requests.get("reinstall:500") == 1 and requests.get("reinstall:200") == 1


async def test_deleting_a_running_resource_never_hangs(harness):
    await harness.ecs.admin.add_server(server(13), status="SHUTOFF", job_seconds=30)
    await harness.start_operator()
    await harness.create("doomed", spec(server(13)))
    # the job ID is written, then the finalizer (held while the POST was on its way) removed at once
    await harness.wait_for(
        "doomed",
        lambda b: (
            (b.get("status") or {}).get("phase") == "Reinstalling" and not b["metadata"].get("finalizers")
        ),
        timeout=10,
    )
    await harness.delete("doomed")
    assert not await harness.exists("doomed")
    # With the operator stopped too.
    await harness.ecs.admin.add_server(server(14), status="SHUTOFF", job_seconds=30)
    await harness.create("orphan", spec(server(14)))
    await harness.wait_phase("orphan", "Reinstalling")
    await harness.stop_operator()
    await harness.delete("orphan")
    assert not await harness.exists("orphan")
    await harness.start_operator()  # and a restart after that finds nothing to do
    await asyncio.sleep(1)
    assert await accepted(harness, server(13)) == 1 and await accepted(harness, server(14)) == 1


async def test_deleting_a_resource_whose_post_is_on_its_way_waits_for_the_answer(harness):
    """The finalizer keeps the object, with its intent, until the job ID is written: a request that reaches the
    cloud after the delete is never taken for that of a resource created after it, by any operator process."""
    await harness.ecs.admin.add_server(server(16), status="SHUTOFF", job_seconds=30)
    await harness.ecs.admin.add_fault("reinstall", latency_ms=3000, count=1)  # the POST takes 3 s to arrive
    await harness.start_operator()
    await harness.create("slow", spec(server(16)))
    await harness.wait_for("slow", lambda b: (b.get("status") or {}).get("phase") == "Submitting")
    await harness.delete("slow")
    body = await harness.get("slow")
    assert body["metadata"].get("deletionTimestamp") and body["metadata"]["finalizers"] == [
        "ecs.reinstall.dev/request-in-flight"
    ]
    for _ in range(100):  # gone once the answer is written, within seconds
        if not await harness.exists("slow"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the resource was not released after its POST's answer")
    assert await accepted(harness, server(16)) == 1


async def test_kubernetes_api_errors_on_status_writes_are_retried(harness):
    await harness.ecs.admin.add_server(server(15), status="SHUTOFF")
    harness.kube.faults.add(
        FaultRule(
            verbs=frozenset({"patch"}), path_regex=r".*/ecsreinstalls/.*/status", error_code=500, times=2
        )
    )
    await harness.start_operator()
    await harness.create("flaky", spec(server(15)))
    await harness.wait_phase("flaky", "Succeeded", timeout=30)
    assert await accepted(harness, server(15)) == 1
