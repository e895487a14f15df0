"""Regression: a transient Kubernetes error while a runner re-reads its resource must not end the runner.

Found by the chaos run (bench/run_chaos.py): a status write got 409 Conflict, the runner re-read the resource to
retry, and that GET got 500. The exception escaped `Runner.run`, the runner died ("runner for <uid> crashed"),
and nothing restarted it: the resource stayed in phase Submitting with its outcome unknown for good (until the
operator restarted or the object changed).
"""

from __future__ import annotations

from operator_parts import Parts, wait_for

from kube_emulator.faults import FaultRule


async def test_a_conflict_then_a_failed_re_read_still_reaches_the_terminal_phase(parts: Parts) -> None:
    job_id = await parts.finished_job()
    reinstalling = await parts.reinstalling(job_id)
    faults = parts.kube_handle.faults
    faults.add(
        FaultRule(
            verbs=frozenset({"patch"}), path_regex=r"/ecsreinstalls/web-01/status$", error_code=409, times=1
        )
    )
    faults.add(
        FaultRule(verbs=frozenset({"get"}), path_regex=r"/ecsreinstalls/web-01$", error_code=500, times=1)
    )
    supervisor = parts.supervisor()
    try:
        supervisor.observe("MODIFIED", reinstalling)
        await wait_for(lambda: supervisor.active == 0, "the runner ended")

        current = await parts.get()
        assert current["status"]["phase"] == "Succeeded", current["status"].get("message")
        assert current["status"]["jobId"] == job_id
        assert [e.reason for e in parts.events] == ["Succeeded"]
        assert faults.rules() == [], "both injected faults were hit"
    finally:
        await supervisor.stop()
