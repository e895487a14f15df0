"""A short chaos run in the test suite: tens of resources, the operator SIGKILLed a few times while a second
operator process runs for random windows (leader election off in both), a "user" sets statuses back to Pending and
deletes and re-creates resources mid-rollout, two resources share a server, someone else stops, starts, reboots,
resizes, migrates, renames and tags servers (mostly those whose resource's outcome is unknown), job records expire
while the primary is dead (one kill), then a leader is killed under leader election and the standby must take
over; both APIs fail at random throughout. Then the invariants of bench/chaos.py (terminal phase matching the
cloud, accepted reinstalls per server exactly one per resource object and never overlapping, no second POST from a
hand edit, no secret anywhere, no crash, a takeover, every outcome decided by the right witness, every accepted
reinstall's X-Client-Token the attempt ID of the resource that made it). Invariants only: no timing is asserted.

Like the full run (`make chaos`), it also loses job IDs on purpose (POSTs processed and then dropped, or answered
after the read timeout), failed jobs among them: the operator must then read the outcome from the server's action
log and never report such a failure as a success, whatever else happened to the server meanwhile.

The checks themselves are proven able to fail, on made-up observations, by the tests below it.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import chaos  # noqa: E402
from ecs_reinstall.kube import FINALIZER  # noqa: E402

SMOKE = replace(
    chaos.ChaosConfig(),
    n=24,
    kills=3,
    waves=2,
    job_seconds=3.0,
    run_between_kills=(1.0, 2.5),
    down_between=(0.0, 0.5),
    shared_servers=2,
    second_alive=(2.0, 4.0),
    second_down=(0.5, 2.0),
    regressions=3,
    recreates=2,
    recreate_pause=(0.0, 1.0),
    election_n=8,
    election_kills=1,
    election_run_between_kills=(1.0, 2.0),
    election_args={
        "leader-election-lease-seconds": 3,
        "leader-election-renew-deadline-seconds": 2,
        "leader-election-retry-period-seconds": 0.5,
    },
    takeover_timeout=30.0,
    # A shorter read timeout (the delayed-answer fault follows it: 4.5 s) and settle time than the full run's, so
    # that each unknown outcome costs 6 s, not 10 s.
    operator_args={**chaos.ChaosConfig().operator_args, "request-timeout": 3, "outcome-settle-seconds": 6},
    # one kill of the three with job records expiring 2 s after their end, the primary dead 2.5-3.5 s, the records
    # gone until it (or the second process) has read those it follows, 6 s at most after its restart
    expiry_windows=1,
    expiry_down=(2.5, 3.5),
    expiry_hold=1.5,
    expiry_hold_max=6.0,
    seed=7,
    timeout=90.0,
)


def test_kills_second_writer_hand_edits_and_takeover_keep_every_invariant(tmp_path: Path) -> None:
    result = chaos.run_chaos(SMOKE, tmp_path, log=lambda _text: None)

    assert result["violations"] == [], "\n".join(str(v) for v in result["violations"])
    assert result["phases"] == result["expected"]
    # the faults really happened
    assert len([k for k in result["kills"] if k["stage"] == chaos.WRITERS]) == 3
    assert result["second_operator_windows"], "the second operator never ran"
    assert [r for r in result["regressions"] if "resource" in r], result["regressions"]
    assert [r for r in result["recreates"] if "resource" in r], result["recreates"]
    assert result["takeovers"]["first_status_write_s"] is not None, result["takeovers"]
    assert result["leader_election_supported"]
    assert result["secret_scan"]["metrics_pages"] > 0 and result["secret_scan"]["events"] > 0
    operations = result["other_operations"]
    assert operations["total"] > operations["refused"], operations["by_action"]
    [window] = result["job_expiry_windows"]
    assert window["expired_records"] > 0, window
    # every outcome was decided by a record of the cloud's, and every reinstall carried its attempt's token
    assert result["witnesses"]["job"] > 0 and result["witnesses"]["server state"] == 0, result["how"]
    assert result["tokens"]["accepted_matched"] > 0, result["tokens"]


# --- the checks can fail -----------------------------------------------------------------------------------------


def _plan() -> chaos.Plan:
    """Servers 0 and 1 with one resource each, server 2 shared by two; server 1's jobs fail."""
    resources = [
        chaos.Resource("r-0", 0, chaos.WRITERS, False),
        chaos.Resource("r-1", 1, chaos.WRITERS, False),
        chaos.Resource("r-2", 2, chaos.WRITERS, False),
        chaos.Resource("r-3", 2, chaos.WRITERS, False),
    ]
    return chaos.Plan(resources, fails={1}, job_seconds={0: 2.0, 1: 2.0, 2: 2.0})


BASE = 1_800_000_000.0
RUN = 2.5  # every made-up job runs this long (INIT 0.5 s + 2 s)


def _token(job: str) -> str:
    """The attempt ID (and X-Client-Token) of the attempt that made job `job`."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"attempt/{job}"))


def _item(
    name: str,
    uid: str,
    phase: str,
    job_id: str | None,
    code: str | None = None,
    *,
    reason: str | None = None,
    made: str | None = None,
    request_id: str | None = None,
    failure_reason: str | None = None,
) -> dict:
    """A terminal status as the operator writes it; `made`: the job the resource's attempt made (its jobId by
    default), whose token is the attempt's ID; `reason`: the Ready reason (by default the job's)."""
    if reason is None:
        reason = ("Succeeded" if phase == "Succeeded" else "JobFailed") if job_id else None
    attempt: dict = {"id": _token(made or job_id or name)}
    if request_id:
        attempt["requestId"] = request_id
    status: dict = {"phase": phase, "jobId": job_id, "attempt": attempt}
    if reason:
        status["conditions"] = [{"type": "Ready", "status": str(phase == "Succeeded"), "reason": reason}]
    if code:
        status["failure"] = {
            "code": code,
            "reason": failure_reason or f"{chaos.FAIL_CODE}: {chaos.FAIL_REASON}",
        }
    return {"metadata": {"name": name, "uid": uid}, "status": status}


def _at(seconds: float) -> str:
    return (
        datetime.fromtimestamp(BASE + seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _record(server: int, job: str, seconds: float, *, outcome: str | None = None) -> dict:
    return {
        "server_id": chaos.server_id(server),
        "job_id": job,
        "at": _at(seconds),
        "end_at_epoch": BASE + seconds + RUN,
        "outcome": outcome or ("FAIL" if server == 1 else "SUCCESS"),
        "client_token": _token(job),
        "action_request_id": f"req-{job}",
        "job_expired": False,
    }


def _clean() -> chaos.Observed:
    return chaos.Observed(
        items=[
            _item("r-0", "u0", "Succeeded", "j0"),
            _item("r-1", "u1", "Failed", "j1", chaos.FAIL_CODE),
            _item("r-2", "u2", "Succeeded", "j2"),
            _item("r-3", "u3", "Succeeded", "j3"),
        ],
        records=[_record(0, "j0", 10), _record(1, "j1", 10), _record(2, "j2", 10), _record(2, "j3", 20)],
        created_at=dict.fromkeys(("r-0", "r-1", "r-2", "r-3"), BASE),
        objects={0: 1, 1: 1, 2: 2},
    )


def _from_the_action_log() -> chaos.Observed:
    """r-3 lost its job ID (j3), and j1's record expired (a window 5-15 s after it ended) before anyone read it:
    both decided from the action log, naming their own rebuilds."""
    seen = _clean()
    seen.items[1] = _item(
        "r-1", "u1", "Failed", "j1", chaos.ACTION_LOG_FAILURE_CODE,
        reason="FailedFromActionLog", request_id="req-j1",
    )  # fmt: skip
    seen.items[3] = _item(
        "r-3", "u3", "Succeeded", "", reason="SucceededFromActionLog", made="j3", request_id="req-j3"
    )
    seen.expiry_windows = [(BASE + 15, BASE + 25, 2.0)]
    return seen


def _verify(seen: chaos.Observed) -> dict:
    return chaos.verify(_plan(), seen)


def _invariants(seen: chaos.Observed) -> list[str]:
    return sorted(v["invariant"] for v in _verify(seen)["violations"])


def test_verify_passes_a_clean_run() -> None:
    result = _verify(_clean())
    assert result["violations"] == []
    assert result["witnesses"] == {"job": 4, "action log": 0, "server state": 0, "other": 0}
    assert result["tokens"]["accepted_matched"] == 4 and result["tokens"]["resources_matched"] == 4


def test_verify_flags_a_second_accepted_reinstall() -> None:
    seen = _clean()
    seen.records.append(_record(0, "j0-again", 30))
    assert chaos.INV_COUNT in _invariants(seen)
    # ... which also carries the token of no resource's attempt
    assert set(_invariants(seen)) == {chaos.INV_COUNT, chaos.INV_TOKEN}


def test_verify_flags_a_second_post_after_a_hand_edit_as_such() -> None:
    seen = _clean()
    seen.records.append(_record(0, "j0-again", 30))
    seen.items[0] = _item("r-0", "u0", "Succeeded", "j0-again")
    seen.regressed = {"r-0": "u0"}
    assert chaos.INV_REGRESSION in _invariants(seen)
    assert chaos.INV_COUNT not in _invariants(seen)


def test_verify_flags_overlapping_runs_and_a_shared_job() -> None:
    seen = _clean()
    seen.records[3] = _record(2, "j3", 11)  # accepted while j2 (2.5 s) still ran
    assert _invariants(seen) == [chaos.INV_OVERLAP]
    seen = _clean()
    seen.items[3] = _item("r-3", "u3", "Succeeded", "j2")  # credited with the other resource's job
    assert chaos.INV_RESOURCE in _invariants(seen)


def test_verify_flags_wrong_phases_and_credit_for_a_job_before_creation() -> None:
    seen = _clean()
    seen.items[1] = _item("r-1", "u1", "Succeeded", "j1")
    # the phase is not the cloud's, and neither is the reason's outcome
    assert _invariants(seen) == sorted([chaos.INV_RESOURCE, chaos.INV_WITNESS])
    seen = _clean()
    seen.created_at["r-0"] = BASE + 15  # re-created after j0 was accepted, and credited with it
    seen.objects[0] = 2
    seen.recreated_servers = {0}
    assert _invariants(seen) == [chaos.INV_RESOURCE]


def test_verify_allows_a_re_created_object_its_own_reinstall() -> None:
    seen = _clean()
    seen.records.append(_record(0, "j0-new", 30))
    seen.items[0] = _item("r-0", "u0-new", "Succeeded", "j0-new")
    seen.created_at["r-0"] = BASE + 25
    seen.objects[0] = 2
    seen.recreated_servers = {0}
    result = _verify(seen)
    assert result["violations"] == []
    assert result["tokens"]["accepted_of_deleted_objects"] == 1  # j0: the deleted object's attempt
    seen.records.append(_record(0, "j0-third", 40))
    assert _invariants(seen) == [chaos.INV_COUNT]


# --- decided by the right witness ---------------------------------------------------------------------------------


def test_verify_accepts_the_action_log_for_a_lost_job_id_or_an_expired_record() -> None:
    result = _verify(_from_the_action_log())
    assert result["violations"] == []
    assert result["witnesses"] == {"job": 2, "action log": 2, "server state": 0, "other": 0}
    assert result["how"] == {
        "Failed by the action log (job record expired)": 1,
        "Succeeded by the action log (job ID lost)": 1,
        "Succeeded by the job (its job ID)": 2,
    }
    seen = _from_the_action_log()  # decided while probing the POST's outcome: no job ID written at all
    seen.items[3] = _item(
        "r-3", "u3", "Succeeded", None, reason="SucceededFromActionLog", made="j3", request_id="req-j3"
    )
    assert _verify(seen)["violations"] == []


def test_verify_flags_the_action_log_deciding_a_job_that_could_be_read() -> None:
    seen = _from_the_action_log()
    seen.expiry_windows = [(BASE + 5, BASE + 13, 2.0)]  # closed before j1 (ended at 12.5 s) was 2 s old
    assert _invariants(seen) == [chaos.INV_WITNESS]
    seen.expiry_windows = []
    assert _invariants(seen) == [chaos.INV_WITNESS]


def test_verify_flags_the_server_state_a_timeout_or_a_job_reason_without_a_job() -> None:
    seen = _from_the_action_log()
    seen.items[3] = _item("r-3", "u3", "Succeeded", "", reason="SucceededFromServerState", made="j3")
    assert _invariants(seen) == [chaos.INV_WITNESS]
    seen = _from_the_action_log()
    seen.items[3] = _item("r-3", "u3", "Succeeded", "", reason="Succeeded", made="j3")
    assert _invariants(seen) == [chaos.INV_WITNESS]
    seen = _clean()
    seen.items[1] = _item("r-1", "u1", "Failed", "j1", "Timeout", reason="Timeout")
    assert chaos.INV_WITNESS in _invariants(seen)


def test_verify_flags_a_rebuild_that_is_not_its_own_or_an_outcome_not_the_clouds() -> None:
    seen = _from_the_action_log()
    seen.items[3] = _item(  # the shared server's other rebuild (r-2's, j2)
        "r-3", "u3", "Succeeded", "", reason="SucceededFromActionLog", made="j3", request_id="req-j2"
    )
    assert _invariants(seen) == [chaos.INV_WITNESS]
    seen = _from_the_action_log()
    seen.records[1]["outcome"] = (
        "SUCCESS"  # the cloud's record says j1 succeeded; the resource says it failed
    )
    assert _invariants(seen) == [chaos.INV_WITNESS]


def test_verify_flags_a_failure_from_the_action_log_without_the_clouds_code() -> None:
    seen = _from_the_action_log()
    seen.items[1] = _item(
        "r-1", "u1", "Failed", "j1", chaos.ACTION_LOG_FAILURE_CODE,
        reason="FailedFromActionLog", request_id="req-j1", failure_reason="the action log reports an error",
    )  # fmt: skip
    assert _invariants(seen) == [chaos.INV_RESOURCE]
    seen = _from_the_action_log()
    seen.items[1] = _item(
        "r-1", "u1", "Failed", "j1", chaos.FAIL_CODE, reason="FailedFromActionLog", request_id="req-j1"
    )
    assert _invariants(seen) == [chaos.INV_RESOURCE]


# --- X-Client-Token -----------------------------------------------------------------------------------------------


def test_verify_flags_a_token_that_is_not_the_attempt_id() -> None:
    seen = _clean()
    seen.records[0]["client_token"] = None  # sent without X-Client-Token
    assert set(_invariants(seen)) == {chaos.INV_TOKEN}
    seen = _clean()
    seen.items[0]["status"]["attempt"]["id"] = _token("another attempt")
    assert set(_invariants(seen)) == {chaos.INV_TOKEN}
    seen = _clean()
    seen.records[3]["client_token"] = seen.records[2]["client_token"]  # one token accepted twice
    assert set(_invariants(seen)) == {chaos.INV_TOKEN}
    seen = _from_the_action_log()  # a lost job ID: the rebuild found is the token's reinstall
    seen.items[3]["status"]["attempt"]["id"] = _token("j2")
    assert chaos.INV_TOKEN in _invariants(seen)


def test_verify_flags_success_credited_with_a_deleted_objects_rebuild() -> None:
    """Seen in a smoke run: on a shared server, the resource's own POST was never taken, and it was reported
    Succeeded from the rebuild of a deleted resource's request that started just before its attempt."""
    seen = _from_the_action_log()
    seen.records = [_record(2, "j-deleted", 5) if r["job_id"] == "j3" else r for r in seen.records]
    seen.objects[2] = 3
    seen.recreated_servers = {2}
    seen.items[3] = _item(
        "r-3", "u3", "Succeeded", None, reason="SucceededFromActionLog", made="never taken",
        request_id="req-j-deleted",
    )  # fmt: skip
    assert set(_invariants(seen)) == {chaos.INV_WITNESS, chaos.INV_TOKEN}


def test_verify_flags_a_finished_resource_that_kept_the_finalizer() -> None:
    seen = _clean()
    seen.items[0]["metadata"]["finalizers"] = [FINALIZER]  # its deletion would wait for nothing
    assert _invariants(seen) == [chaos.INV_RESOURCE]
