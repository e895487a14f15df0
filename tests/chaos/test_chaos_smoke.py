"""A short chaos run in the test suite: tens of resources, the operator SIGKILLed a few times while a second
operator process runs for random windows (leader election off in both), a "user" sets statuses back to Pending and
deletes and re-creates resources mid-rollout, two resources share a server, then a leader is killed under leader
election and the standby must take over; both APIs fail at random throughout. Then the invariants of
bench/chaos.py (terminal phase matching the cloud, accepted reinstalls per server exactly one per resource object
and never overlapping, no second POST from a hand edit, no secret anywhere, no crash, a takeover). Invariants
only: no timing is asserted.

Like the full run (`make chaos`), it also loses job IDs on purpose (POSTs processed and then dropped, or answered
after the read timeout), failed jobs among them: the operator must then read the outcome from the server and
never report such a failure as a success.

The checks themselves are proven able to fail, on made-up observations, by the tests below it.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import chaos  # noqa: E402

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


def _item(name: str, uid: str, phase: str, job_id: str | None, code: str | None = None) -> dict:
    status: dict = {"phase": phase, "jobId": job_id}
    if code:
        status["failure"] = {"code": code}
    return {"metadata": {"name": name, "uid": uid}, "status": status}


def _at(seconds: float) -> str:
    from datetime import UTC, datetime

    return (
        datetime.fromtimestamp(1_800_000_000 + seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _record(server: int, job: str, seconds: float) -> dict:
    return {"server_id": chaos.server_id(server), "job_id": job, "at": _at(seconds)}


def _clean() -> chaos.Observed:
    return chaos.Observed(
        items=[
            _item("r-0", "u0", "Succeeded", "j0"),
            _item("r-1", "u1", "Failed", "j1", chaos.FAIL_CODE),
            _item("r-2", "u2", "Succeeded", "j2"),
            _item("r-3", "u3", "Succeeded", "j3"),
        ],
        records=[_record(0, "j0", 10), _record(1, "j1", 10), _record(2, "j2", 10), _record(2, "j3", 20)],
        created_at=dict.fromkeys(("r-0", "r-1", "r-2", "r-3"), 1_800_000_000.0),
        objects={0: 1, 1: 1, 2: 2},
    )


def _invariants(seen: chaos.Observed) -> list[str]:
    return sorted(v["invariant"] for v in chaos.verify(_plan(), seen)["violations"])


def test_verify_passes_a_clean_run() -> None:
    assert _invariants(_clean()) == []


def test_verify_flags_a_second_accepted_reinstall() -> None:
    seen = _clean()
    seen.records.append(_record(0, "j0-again", 30))
    assert _invariants(seen) == [chaos.INV_COUNT]


def test_verify_flags_a_second_post_after_a_hand_edit_as_such() -> None:
    seen = _clean()
    seen.records.append(_record(0, "j0-again", 30))
    seen.items[0] = _item("r-0", "u0", "Succeeded", "j0-again")
    seen.regressed = {"r-0": "u0"}
    assert _invariants(seen) == [chaos.INV_REGRESSION]


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
    assert _invariants(seen) == [chaos.INV_RESOURCE]
    seen = _clean()
    seen.created_at["r-0"] = 1_800_000_000.0 + 15  # re-created after j0 was accepted, and credited with it
    seen.objects[0] = 2
    seen.recreated_servers = {0}
    assert _invariants(seen) == [chaos.INV_RESOURCE]


def test_verify_allows_a_re_created_object_its_own_reinstall() -> None:
    seen = _clean()
    seen.records.append(_record(0, "j0-new", 30))
    seen.items[0] = _item("r-0", "u0-new", "Succeeded", "j0-new")
    seen.created_at["r-0"] = 1_800_000_000.0 + 25
    seen.objects[0] = 2
    seen.recreated_servers = {0}
    assert _invariants(seen) == []
    seen.records.append(_record(0, "j0-third", 40))
    assert _invariants(seen) == [chaos.INV_COUNT]
