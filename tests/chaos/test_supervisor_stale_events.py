"""Regression: a watch event that arrives after its resource's runner has finished must not start a new runner.

Found by the fleet benchmark (bench/run_bench.py, N=1000): kopf delivers events for an object in order but, under
load, seconds late. A runner that had already written Succeeded was followed by the late MODIFIED event of its own
earlier "Reinstalling" write; the supervisor, holding no runner for the resource any more, started one from that
stale body: it polled the job again, rewrote the status, posted a second "Succeeded" Event and counted the
resource twice in ecs_reinstall_finished_total (1005 finished for 1000 resources). A stale "Submitting" body would
even rewrite a Succeeded resource back to Reinstalling with its job ID cleared.
"""

from __future__ import annotations

import asyncio

from operator_parts import SERVER_ID, Parts, wait_for

from ecs_reinstall.reconcile import Event
from ecs_reinstall.runner import Deps, Supervisor


async def test_a_late_event_after_the_runner_finished_starts_nothing(parts: Parts) -> None:
    job_id = await parts.finished_job()
    reinstalling = await parts.reinstalling(job_id)
    supervisor = parts.supervisor()
    try:
        supervisor.observe("MODIFIED", reinstalling)
        await wait_for(lambda: supervisor.active == 0, "the runner finished")
        assert [e.reason for e in parts.events] == ["Succeeded"]
        gets_before = (await parts.ecs.admin.counters())["requests"].get("get_job:200")

        supervisor.observe("MODIFIED", reinstalling)  # the late event of the earlier write

        assert supervisor.active == 0, "a stale event started a new runner for a finished resource"
        assert supervisor.deps.ownership.holder(SERVER_ID) is None
        current = await parts.get()
        assert current["status"]["phase"] == "Succeeded"
        assert current["status"]["jobId"] == job_id
        assert (await parts.ecs.admin.counters())["requests"].get("get_job:200") == gets_before
        assert [e.reason for e in parts.events] == ["Succeeded"]
        finished = parts.metrics.registry.get_sample_value(
            "ecs_reinstall_finished_total", {"result": "Succeeded", "code": "none"}
        )
        assert finished == 1
    finally:
        await supervisor.stop()


async def test_a_late_event_in_the_moment_the_runner_ends_starts_nothing(parts: Parts) -> None:
    """The same, in the narrow window where the runner's task is done but its done-callback has not run yet
    (seen twice in 5000 resources in the benchmark: the late event of a 'Submitting' write then rewrote a
    Succeeded resource to Reinstalling with its job ID cleared)."""
    job_id = await parts.finished_job()
    reinstalling = await parts.reinstalling(job_id)
    loop = asyncio.get_running_loop()
    events: list[Event] = []

    def post_event(_body: object, event: Event) -> None:
        events.append(event)
        # The first Event is "Succeeded": the runner returns right after, so this runs before its done-callback.
        if len(events) == 1:
            loop.call_soon(supervisor.observe, "MODIFIED", reinstalling)

    supervisor = Supervisor(
        Deps(
            settings=parts.settings,
            kube=parts.kube,
            cloud=parts.cloud,
            metrics=parts.metrics,
            post_event=post_event,
        )
    )
    supervisor.leading = True  # as after `lead()`, without its LIST
    try:
        supervisor.observe("MODIFIED", reinstalling)
        await wait_for(lambda: len(events) >= 1 and supervisor.active == 0, "the runner finished")
        # The late event was queued with call_soon: one loop turn runs it (it would start a runner at once).
        await asyncio.sleep(0)

        assert supervisor.active == 0, "the late event started a new runner"
        assert [e.reason for e in events] == ["Succeeded"]
        assert (await parts.ecs.admin.counters())["requests"].get("get_job:200") == 1
    finally:
        await supervisor.stop()
