"""What a resource waits for, and how it says so: late Secrets, a server busy with another resource."""

import asyncio

from e2e_support import spec

from ecs_emulator.clock import parse_iso


def server(n: int) -> str:
    return f"7a3e0c1a-0000-4000-8000-{n:012d}"


def status(body):
    return body.get("status") or {}


async def test_a_secret_created_late_is_waited_for_then_used(harness):
    await harness.ecs.admin.add_server(server(1), status="SHUTOFF")
    await harness.start_operator()
    await harness.create("late", spec(server(1), adminPasswordSecretRef={"name": "late-password"}))
    body = await harness.wait_for(
        "late", lambda b: status(b).get("waitingFor") == 'Secret "late-password" in namespace "team-a"'
    )
    assert status(body)["phase"] == "Pending"
    ready = {c["type"]: (c["status"], c["reason"]) for c in status(body)["conditions"]}
    assert ready["Reconciling"] == ("True", "WaitingForInput") and ready["Stalled"][0] == "False"
    assert await harness.ecs.admin.reinstalls(server(1)) == []
    await harness.create_secret("late-password", {"password": "Late!Passw0rd-2026"})
    await harness.wait_phase("late", "Succeeded")
    expected = {"WaitingForInput", "Submitted", "Succeeded"}
    assert expected <= await harness.wait_for_events("late", expected)
    # `kubectl describe` says who posted them: "From: ecs-reinstall-operator"
    sources = {
        e["source"]["component"] for e in await harness.events() if e["involvedObject"]["name"] == "late"
    }
    assert sources == {"ecs-reinstall-operator"}


async def test_a_missing_key_is_named(harness):
    await harness.ecs.admin.add_server(server(2), status="SHUTOFF")
    await harness.create_secret("no-key", {"other": "Some!Passw0rd-2026"})
    await harness.start_operator()
    await harness.create(
        "missing-key", spec(server(2), adminPasswordSecretRef={"name": "no-key", "key": "pw"})
    )
    body = await harness.wait_for(
        "missing-key",
        lambda b: status(b).get("waitingFor") == 'key "pw" in Secret "no-key" in namespace "team-a"',
    )
    assert status(body)["message"].endswith('the keys it has: "other"')  # names only, never a value
    assert "Passw0rd" not in str(body)


async def test_two_resources_for_one_server_take_turns_across_namespaces(harness):
    await harness.create_namespace("team-b")
    await harness.create_secret("root-password", {"password": "Other!Passw0rd-26"}, "team-b")
    await harness.ecs.admin.add_server(server(3), status="SHUTOFF", job_seconds=2.0)
    await harness.start_operator()
    # After a reinstall the cloud leaves the server running: the queued one lets the cloud stop it again.
    await harness.create("first", spec(server(3), stopServer=True))
    await harness.wait_phase("first", "Reinstalling")
    await harness.create("second", spec(server(3), stopServer=True), namespace="team-b")
    body = await harness.wait_for(
        "second", lambda b: status(b).get("waitingFor") == "EcsReinstall team-a/first", namespace="team-b"
    )
    reasons = {c["type"]: c["reason"] for c in status(body)["conditions"]}
    assert status(body)["phase"] == "Pending" and reasons["Reconciling"] == "ServerBusy"
    await harness.wait_phase("first", "Succeeded")
    await harness.wait_phase("second", "Succeeded", namespace="team-b")
    first, second = await harness.ecs.admin.reinstalls(server(3))
    # one after the other, never both at once: the second was sent after the first job (2 s) had ended
    assert parse_iso(second["at"]) - parse_iso(first["at"]) >= 2.0
    counters = await harness.ecs.admin.counters()
    assert not any(k.endswith(":501") for k in counters["requests"])  # never sent while busy (Ecs.0603)


async def test_a_server_busy_in_the_cloud_is_waited_for(harness):
    """Busy with something the operator did not start (task_state set): wait, then go."""
    await harness.ecs.admin.add_server(server(4), status="SHUTOFF")
    await harness.ecs.admin.patch_server(server(4), task_state="resize_prep")
    await harness.start_operator()
    await harness.create("busy", spec(server(4)))
    await harness.wait_for("busy", lambda b: status(b).get("waitingFor") == f"server {server(4)}")

    async def server_reads() -> int:  # one by one or in bulk (a list call by server_id)
        requests = (await harness.ecs.admin.counters())["requests"]
        return requests.get("get_server:200", 0) + requests.get("list_servers:200", 0)

    looks = await server_reads()
    for _ in range(100):  # let it look at the busy server twice more: it must keep waiting, not send
        if await server_reads() >= looks + 2:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the operator stopped looking at the busy server")
    assert await harness.ecs.admin.reinstalls(server(4)) == []
    await harness.ecs.admin.patch_server(server(4), task_state=None)
    await harness.wait_phase("busy", "Succeeded", timeout=30)


async def test_a_finished_resource_is_deleted_after_its_ttl_and_one_without_is_kept(harness):
    """spec.ttlSecondsAfterFinished, like a Job's: the operator deletes the resource that long after it finished."""
    await harness.ecs.admin.add_server(server(7), status="SHUTOFF")
    await harness.ecs.admin.add_server(server(8), status="SHUTOFF")
    await harness.start_operator()
    await harness.create("short-lived", spec(server(7), ttlSecondsAfterFinished=2))
    await harness.create("kept", spec(server(8)))
    body = await harness.wait_phase("short-lived", "Succeeded")
    assert body["spec"]["ttlSecondsAfterFinished"] == 2
    await harness.wait_phase("kept", "Succeeded")
    for _ in range(100):
        if not await harness.exists("short-lived"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("a finished resource outlived its spec.ttlSecondsAfterFinished by 10 s")
    assert await harness.exists("kept")
    assert len(await harness.ecs.admin.reinstalls(server(7))) == 1  # deleted, not reinstalled again
