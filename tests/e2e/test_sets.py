"""EcsReinstallSet end to end: a selection by cloud tags rolled out at most maxInFlight at once (proved from the
cloud's own times), the failure budget, pause and abort, a new revision, dryRun, and the per-server revision tag.
"""

from __future__ import annotations

import asyncio
import time

GROUP, VERSION, SET_PLURAL = "ecs.reinstall.dev", "v1alpha1", "ecsreinstallsets"
TEMPLATE = {"adminPasswordSecretRef": {"name": "root-password"}, "stopServer": True, "pollIntervalSeconds": 2}


def server(n: int) -> str:
    return f"9c3d0c1a-0000-4000-8000-{n:012d}"


async def add_servers(harness, numbers, *, tags=None, **attributes):
    for n in numbers:
        await harness.ecs.admin.add_server(server(n), status="SHUTOFF", **attributes)
        if tags:
            await harness.ecs.admin.tag(server(n), tags=tags)


async def create_set(harness, name: str, spec: dict) -> dict:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EcsReinstallSet",
        "metadata": {"name": name},
        "spec": spec,
    }
    return await harness.call(
        harness.custom.create_namespaced_custom_object, GROUP, VERSION, harness.namespace, SET_PLURAL, body
    )


async def get_set(harness, name: str) -> dict:
    return await harness.call(
        harness.custom.get_namespaced_custom_object, GROUP, VERSION, harness.namespace, SET_PLURAL, name
    )


async def patch_set(harness, name: str, patch: dict) -> dict:
    return await harness.call(
        harness.custom.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        harness.namespace,
        SET_PLURAL,
        name,
        patch,
    )


async def wait_set(harness, name: str, predicate, *, timeout: float = 120, what: str = "condition") -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = await get_set(harness, name)
        if predicate(body.get("status") or {}):
            return body
        await asyncio.sleep(0.25)
    raise AssertionError(f"set {name}: {what} not reached in {timeout}s; status: {body.get('status')}")


def peak_concurrency(records: list[dict]) -> int:
    """Most reinstalls running at once in the cloud: from each accepted request's time to its job's end."""
    edges = sorted(
        [(r["at_epoch"], 1) for r in records] + [(r["end_at_epoch"], -1) for r in records],
        key=lambda edge: (edge[0], edge[1]),
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


async def test_a_tagged_fleet_rolls_out_never_more_than_max_in_flight_at_once(harness):
    await add_servers(harness, range(1, 201), tags={"role": "web"})
    await add_servers(harness, range(201, 206), tags={"role": "db"})  # not selected
    await harness.start_operator()
    await create_set(
        harness,
        "web",
        {
            "selector": {"tags": {"role": "web"}},
            "template": TEMPLATE,
            "revision": "golden-1",
            "strategy": {"maxInFlight": 10},
        },
    )
    body = await wait_set(
        harness, "web", lambda s: s.get("phase") == "Completed", timeout=240, what="Completed"
    )
    status = body["status"]
    assert status["done"] == 200 and status["failedCount"] == 0 and status["progress"] == "200/200"
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert ready == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
    records = await harness.ecs.admin.reinstalls()
    assert sorted(r["server_id"] for r in records) == sorted(server(n) for n in range(1, 201))  # once each
    peak = peak_concurrency(records)
    print(f"peak concurrency of 200 servers at maxInFlight 10: {peak}")
    assert 5 <= peak <= 10  # it did run in parallel, never beyond the cap
    tag = status["revisionTag"]
    details = await harness.ecs.admin.get_server(server(7))
    assert details["tags"][tag["key"]] == "golden-1"


async def test_the_failure_budget_pauses_and_a_resume_goes_on(harness):
    await add_servers(harness, range(1, 4), tags={"role": "api"}, outcome="FAIL", fail_code="Ecs.9999")
    await add_servers(harness, range(4, 10), tags={"role": "api"})
    await harness.start_operator()
    await create_set(
        harness,
        "api",
        {
            "selector": {"serverIds": [server(n) for n in range(1, 10)]},
            "template": TEMPLATE,
            "revision": "r1",
            "strategy": {"maxInFlight": 3, "maxFailures": 1},
        },
    )
    body = await wait_set(harness, "api", lambda s: s.get("phase") == "Stalled", what="Stalled")
    status = body["status"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "FailureBudgetExceeded"
    assert "kubectl ecsr resume" in stalled["message"]
    assert {f["code"] for f in status["failed"]} == {"Ecs.9999"} and len(status["failed"]) >= 2
    await asyncio.sleep(3)  # stays paused: nothing new admitted
    assert len((await get_set(harness, "api"))["status"]["admitted"]) == len(status["admitted"])

    # resume: the failures so far are acknowledged, the budget counts from here
    current = (await get_set(harness, "api"))["status"]
    acknowledgement = f"{current['round']}:{current['failedCount']}"  # what `kubectl ecsr resume` writes
    await patch_set(
        harness,
        "api",
        {"metadata": {"annotations": {"ecs.reinstall.dev/failures-acknowledged": acknowledgement}}},
    )
    body = await wait_set(
        harness, "api", lambda s: s.get("phase") in ("Completed", "Stalled") and s.get("done", 0) >= 6
    )
    assert body["status"]["done"] == 6 and body["status"]["failedCount"] == 3
    assert len(await harness.ecs.admin.reinstalls()) == 9


async def test_pause_abort_and_a_new_revision(harness):
    await add_servers(harness, range(1, 13), tags={"role": "batch"})
    await harness.ecs.admin.set_config(job_seconds=2.0)
    await harness.start_operator()
    await create_set(
        harness,
        "batch",
        {"selector": {"tags": {"role": "batch"}}, "template": TEMPLATE, "revision": "a", "paused": True},
    )
    await wait_set(harness, "batch", lambda s: s.get("phase") == "Paused", what="Paused")
    assert await harness.ecs.admin.reinstalls() == []
    await patch_set(harness, "batch", {"spec": {"paused": False, "strategy": {"maxInFlight": 2}}})
    await wait_set(harness, "batch", lambda s: s.get("done", 0) >= 2, what="2 done")
    await patch_set(harness, "batch", {"spec": {"abort": True}})
    body = await wait_set(
        harness, "batch", lambda s: s.get("phase") == "Aborted" and s.get("inFlight") == 0, what="Aborted"
    )
    aborted_done = body["status"]["done"]
    assert aborted_done < 12
    await asyncio.sleep(2)
    assert len(await harness.ecs.admin.reinstalls()) == aborted_done  # nothing new after the abort

    # a new revision starts over every server (once each), the abort belonged to the old one
    await patch_set(
        harness, "batch", {"spec": {"abort": False, "revision": "b", "strategy": {"maxInFlight": 6}}}
    )
    body = await wait_set(
        harness, "batch", lambda s: s.get("revision") == "b" and s.get("phase") == "Completed", timeout=120
    )
    assert body["status"]["done"] == 12
    per_server: dict[str, int] = {}
    for record in await harness.ecs.admin.reinstalls():
        per_server[record["server_id"]] = per_server.get(record["server_id"], 0) + 1
    assert sum(per_server.values()) == aborted_done + 12 and max(per_server.values()) <= 2


async def test_dry_run_plans_without_any_request(harness):
    await add_servers(harness, range(1, 5), tags={"role": "edge"})
    await harness.ecs.admin.add_server(server(5), status="ACTIVE")
    await harness.ecs.admin.tag(server(5), tags={"role": "edge"})
    await harness.ecs.admin.add_server(server(6), status="SHUTOFF", locked=True)
    await harness.ecs.admin.tag(server(6), tags={"role": "edge"})
    await harness.start_operator()
    template = {**TEMPLATE, "stopServer": False}
    await create_set(
        harness,
        "edge",
        {
            "selector": {"tags": {"role": "edge"}},
            "template": template,
            "revision": "plan",
            "dryRun": True,
            "strategy": {"maxInFlight": 2},
        },
    )
    body = await wait_set(harness, "edge", lambda s: s.get("phase") == "Planned", what="Planned")
    plan = body["status"]["plan"]
    assert plan["servers"] == 6 and plan["ready"] == 4 and plan["waves"] == 2
    blocked = {b["serverId"]: b["reason"] for b in plan["blockers"]}
    assert set(blocked) == {server(5), server(6)}
    assert "running" in blocked[server(5)] and "locked" in blocked[server(6)]
    assert plan["estimatedCloudCalls"] > 0 and plan["estimatedSeconds"] > 0
    counters = await harness.ecs.admin.counters()
    assert not any(key.startswith("reinstall") for key in counters["requests"]), counters["requests"]
    children = await harness.all_reinstalls()
    assert children == []


async def test_a_re_created_set_never_reinstalls_a_server_twice_for_one_revision(harness):
    await add_servers(harness, range(1, 9), tags={"role": "cache"})
    await harness.start_operator()
    spec = {
        "selector": {"tags": {"role": "cache"}},
        "template": TEMPLATE,
        "revision": "same",
        "strategy": {"maxInFlight": 4},
    }
    await create_set(harness, "cache", spec)
    await wait_set(harness, "cache", lambda s: s.get("phase") == "Completed", what="Completed")
    await harness.call(
        harness.custom.delete_namespaced_custom_object, GROUP, VERSION, harness.namespace, SET_PLURAL, "cache"
    )
    await asyncio.sleep(1)
    for (
        child
    ) in await harness.all_reinstalls():  # no garbage collector in every backend: delete them as GC would
        await harness.delete(child["metadata"]["name"])
    await create_set(harness, "cache", spec)
    body = await wait_set(harness, "cache", lambda s: s.get("phase") == "Completed", what="Completed again")
    assert body["status"]["done"] == 8
    assert len(await harness.ecs.admin.reinstalls()) == 8  # the tags said: already at this revision
    reasons = {
        next(c["reason"] for c in child["status"]["conditions"] if c["type"] == "Ready")
        for child in await harness.all_reinstalls()
    }
    assert reasons == {"AlreadyAtRevision"}


LEASE = "ecs-reinstall-sets-test"


def elected(pod: str) -> dict:
    return dict(
        leader_election=True,
        leader_election_lease_seconds=4,
        leader_election_renew_deadline_seconds=3,
        leader_election_retry_period_seconds=1,
        leader_election_lease_name=LEASE,
        pod_name=pod,
    )


async def test_the_cap_holds_while_operators_are_killed_and_the_leader_changes(harness):
    """200 servers at maxInFlight 10, two operator processes with leader election; the leader is SIGKILLed five
    times mid-rollout (and started again as a standby). The cloud's own times show at most maxInFlight reinstalls
    at once, and every server is reinstalled exactly once for the revision."""
    await add_servers(harness, range(1, 201), tags={"role": "kv"})
    await harness.ecs.admin.set_config(job_seconds=1.5)
    procs = {pod: harness.start_operator_process(pod, **elected(pod)) for pod in ("op-a", "op-b")}
    await create_set(
        harness,
        "kv",
        {
            "selector": {"tags": {"role": "kv"}},
            "template": TEMPLATE,
            "revision": "k1",
            "strategy": {"maxInFlight": 10},
        },
    )
    kills = 0
    deadline = time.monotonic() + 240
    while kills < 5 and time.monotonic() < deadline:
        await asyncio.sleep(3)
        lease = await harness.read_lease(LEASE)
        holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
        status = (await get_set(harness, "kv")).get("status") or {}
        if holder in procs and 0 < status.get("done", 0) < 180:
            procs[holder].kill()
            kills += 1
            procs[holder].start()  # back as a standby, as its Pod would restart
    assert kills == 5, f"only {kills} kills happened before the rollout ended"
    body = await wait_set(
        harness, "kv", lambda s: s.get("phase") == "Completed", timeout=240, what="Completed"
    )
    assert body["status"]["done"] == 200
    records = await harness.ecs.admin.reinstalls()
    per_server: dict[str, int] = {}
    for record in records:
        per_server[record["server_id"]] = per_server.get(record["server_id"], 0) + 1
    assert len(per_server) == 200 and set(per_server.values()) == {1}, per_server
    peak = peak_concurrency(records)
    print(f"peak concurrency under {kills} leader kills: {peak} (maxInFlight 10)")
    assert peak <= 10


async def test_zone_spreading_caps_each_availability_zone(harness):
    for n in range(1, 13):
        zone = "az-a" if n <= 6 else "az-b"
        await harness.ecs.admin.add_server(server(n), status="SHUTOFF", availability_zone=zone)
        await harness.ecs.admin.tag(server(n), tags={"role": "zonal"})
    await harness.ecs.admin.set_config(job_seconds=1.0)
    await harness.start_operator()
    await create_set(
        harness,
        "zonal",
        {
            "selector": {"tags": {"role": "zonal"}},
            "template": TEMPLATE,
            "revision": "z1",
            "strategy": {"maxInFlight": 6, "maxInFlightPerZone": 2},
        },
    )
    body = await wait_set(harness, "zonal", lambda s: s.get("phase") == "Completed", what="Completed")
    assert {s["zone"] for s in body["status"]["selection"]} == {"az-a", "az-b"}
    records = await harness.ecs.admin.reinstalls()
    zones = {server(n): ("az-a" if n <= 6 else "az-b") for n in range(1, 13)}
    for zone in ("az-a", "az-b"):
        assert peak_concurrency([r for r in records if zones[r["server_id"]] == zone]) <= 2, zone
    assert peak_concurrency(records) <= 4


async def test_deleting_and_re_creating_a_set_mid_rollout_reinstalls_no_server_twice(harness):
    """The set is deleted while reinstalls run (its children deleted as the garbage collector would: those with a
    request on its way wait for its answer, those whose job runs are followed to its end and tag the server), then
    re-created with the same spec: every server is reinstalled exactly once for the revision."""
    await add_servers(harness, range(1, 13), tags={"role": "queue"})
    await harness.ecs.admin.set_config(job_seconds=2.0)
    await harness.start_operator()
    spec = {
        "selector": {"tags": {"role": "queue"}},
        "template": TEMPLATE,
        "revision": "q1",
        "strategy": {"maxInFlight": 4},
    }
    await create_set(harness, "queue", spec)
    await wait_set(
        harness, "queue", lambda s: s.get("done", 0) >= 2 and s.get("inFlight", 0) >= 2, what="mid-rollout"
    )
    await harness.call(
        harness.custom.delete_namespaced_custom_object, GROUP, VERSION, harness.namespace, SET_PLURAL, "queue"
    )
    for child in await harness.all_reinstalls():
        await harness.delete(child["metadata"]["name"])
    deadline = time.monotonic() + 60
    while await harness.all_reinstalls() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert await harness.all_reinstalls() == [], "the deleted children did not go"
    await create_set(harness, "queue", spec)
    body = await wait_set(harness, "queue", lambda s: s.get("phase") == "Completed", what="Completed again")
    assert body["status"]["done"] == 12
    per_server: dict[str, int] = {}
    for record in await harness.ecs.admin.reinstalls():
        per_server[record["server_id"]] = per_server.get(record["server_id"], 0) + 1
    assert len(per_server) == 12 and set(per_server.values()) == {1}, per_server


async def test_a_revision_set_back_to_an_earlier_value_is_a_new_round(harness):
    """a -> b -> a: the third round reinstalls every server again (its tag says b), never reusing the children of
    the first round."""
    await add_servers(harness, range(1, 4), tags={"role": "rb"})
    await harness.ecs.admin.set_config(job_seconds=0.5)
    await harness.start_operator()
    spec = {
        "selector": {"tags": {"role": "rb"}},
        "template": TEMPLATE,
        "revision": "a",
        "strategy": {"maxInFlight": 3},
    }
    await create_set(harness, "rb", spec)
    for revision, round_ in (("a", 1), ("b", 2), ("a", 3)):
        if round_ > 1:
            await patch_set(harness, "rb", {"spec": {"revision": revision}})
        body = await wait_set(
            harness,
            "rb",
            lambda s, r=round_: s.get("round") == r and s.get("phase") == "Completed",
            what=f"round {round_} Completed",
        )
        assert body["status"]["done"] == 3 and body["status"]["revision"] == revision
    assert len(await harness.ecs.admin.reinstalls()) == 9
    tag = body["status"]["revisionTag"]
    assert (await harness.ecs.admin.get_server(server(1)))["tags"][tag["key"]] == "a"


async def test_a_child_deleted_by_hand_is_not_created_again(harness):
    await add_servers(harness, range(1, 3), tags={"role": "gone"})
    await harness.ecs.admin.set_config(job_seconds=3.0)
    await harness.start_operator()
    await create_set(
        harness,
        "gone",
        {
            "selector": {"tags": {"role": "gone"}},
            "template": TEMPLATE,
            "revision": "g1",
            "strategy": {"maxInFlight": 2, "maxFailures": 1},
        },
    )
    await wait_set(harness, "gone", lambda s: len(s.get("created") or ()) == 2, what="both children seen")
    victim = sorted(await harness.all_reinstalls(), key=lambda c: c["spec"]["serverId"])[0]
    await harness.delete(victim["metadata"]["name"])
    body = await wait_set(harness, "gone", lambda s: s.get("phase") == "Completed", what="Completed")
    assert {"serverId": victim["spec"]["serverId"], "code": "ChildDeleted"} in body["status"]["failed"]
    assert len(await harness.ecs.admin.reinstalls(victim["spec"]["serverId"])) <= 1  # never sent twice
