"""The action-log witness and the cloud clock: which rebuild is ours, how it went, the cloud's time from Date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ecs_reinstall import reconcile as rc
from ecs_reinstall.cloud.clock import CloudClock
from ecs_reinstall.cloud.models import ActionEvent, InstanceAction
from ecs_reinstall.witnesses import ActionOutcome, ended_before, outcome_of, rebuilds_after

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def action(kind: str, seconds: float, request_id: str = "", **kw) -> InstanceAction:
    return InstanceAction(kind, request_id or f"req-{kind}-{seconds}", T0 + timedelta(seconds=seconds), **kw)


@pytest.mark.parametrize(
    ("actions", "found"),
    [
        ([], []),
        ([action("stop", 5), action("start", 8)], []),  # someone else's operations are not a rebuild
        ([action("rebuild", -60)], []),  # an earlier reinstall, finished before ours was sent
        ([action("rebuild", 3)], ["req-rebuild-3"]),
        ([action("rebuild", 0, "same-second")], ["same-second"]),  # start times are whole seconds
        ([action("rebuild", -1, "a-second-early")], []),
        ([action("rebuild", 90), action("rebuild", 3)], ["req-rebuild-3", "req-rebuild-90"]),  # first first
        ([action("resize", 2), action("rebuild", 4)], ["req-rebuild-4"]),
    ],
)
def test_the_rebuilds_that_may_be_ours_start_in_or_after_the_attempts_second(actions, found):
    assert [a.request_id for a in rebuilds_after(actions, T0 + timedelta(milliseconds=400))] == found


def test_a_rebuild_that_ended_before_the_attempt_is_not_ours():
    """Found by the chaos run: another object's rebuild started in the same second and ended just before our
    server read; it was credited to our attempt, whose own request the cloud never took."""
    theirs = action("rebuild", 0, "theirs", events=(_event("Success", 0.5),))
    assert ended_before(theirs, T0 + timedelta(seconds=0.9))
    assert not ended_before(theirs, T0 + timedelta(seconds=0.2))
    running = action("rebuild", 0, "running", events=(_event(None, None),))
    assert not ended_before(running, T0 + timedelta(seconds=5))


def _event(result, finish, traceback=None):
    return ActionEvent(
        "compute_rebuild_instance", result, traceback, T0, T0 + timedelta(seconds=finish) if finish else None
    )


@pytest.mark.parametrize(
    ("rebuild", "outcome"),
    [
        (action("rebuild", 1, events=(_event(None, None),)), ActionOutcome.RUNNING),
        (action("rebuild", 1, events=()), ActionOutcome.RUNNING),  # no events yet
        (action("rebuild", 1, events=(_event("Success", 30),)), ActionOutcome.SUCCEEDED),
        (
            action("rebuild", 1, events=(_event("Error", 30, "Ecs.0013: disk write failed"),)),
            ActionOutcome.FAILED,
        ),
        (action("rebuild", 1, message="Error", events=(_event(None, None),)), ActionOutcome.FAILED),
    ],
)
def test_how_the_rebuild_went(rebuild, outcome):
    assert outcome_of(rebuild)[0] == outcome


def test_a_failed_rebuild_gives_the_clouds_words():
    failed = action(
        "rebuild", 1, message="Error", events=(_event("Error", 30, "Ecs.0013: disk write failed"),)
    )
    assert outcome_of(failed) == (ActionOutcome.FAILED, "Ecs.0013: disk write failed")


def test_the_cloud_clock_tightens_with_each_answer_and_starts_afresh_when_stepped():
    clock = CloudClock()
    assert clock.offset("e") is None
    local = T0.timestamp()
    # the cloud is 42.3 s ahead; its Date header is truncated to the second
    for sent in (0.0, 0.25, 0.5, 0.75):
        cloud = local + sent + 42.3 + 0.05
        clock.observe(
            "e",
            format_datetime(datetime.fromtimestamp(int(cloud), UTC), usegmt=True),
            local + sent,
            local + sent + 0.1,
        )
    estimate, uncertainty = clock.offset("e")
    assert abs(estimate - 42.3) <= uncertainty + 0.05 and uncertainty <= 0.55
    moved, _ = clock.to_cloud("e", T0)
    assert abs((moved - T0).total_seconds() - 42.3) < 1
    # a clock stepped by an hour: the old bounds no longer overlap, the new answer wins
    later = local + 10
    clock.observe(
        "e", format_datetime(datetime.fromtimestamp(int(later + 3600), UTC), usegmt=True), later, later + 0.1
    )
    assert abs(clock.offset("e")[0] - 3600) < 1.5
    clock.observe("e", "not a date", local, local)  # ignored


ATTEMPT = {"id": "a", "startedAt": "2026-05-01T12:00:00.000Z", "cloudStartedAt": "2026-05-01T12:00:00.000Z"}
CTX = rc.Context(generation=1, now=T0 + timedelta(seconds=120), poll_interval=10, timeout=1800)


def test_a_finished_rebuild_decides_success_and_says_which_witness():
    done = action("rebuild", 2, "r1", events=(_event("Success", 60),))
    t = rc.on_action(
        CTX, {"phase": "Submitting", "attempt": ATTEMPT}, ATTEMPT, done, how="the job record has expired"
    )
    assert t.patch["phase"] == "Succeeded" and t.patch["attempt"]["requestId"] == "r1"
    ready = next(c for c in t.patch["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "SucceededFromActionLog"
    assert t.patch["completedAt"] == "2026-05-01T12:02:00Z"  # our clock: when the resource reached its end


def test_a_failed_rebuild_fails_with_its_error():
    failed = action("rebuild", 2, "r1", message="Error", events=(_event("Error", 60, "Ecs.0013: no disk"),))
    t = rc.on_action(
        CTX, {"phase": "Reinstalling", "attempt": ATTEMPT}, ATTEMPT, failed, how="the job ID was lost"
    )
    assert t.patch["phase"] == "Failed"
    assert t.patch["failure"] == {"code": "FailedFromActionLog", "reason": "Ecs.0013: no disk"}


def test_a_running_rebuild_is_followed_then_left_alone():
    running = action("rebuild", 2, "r1", events=(_event(None, None),))
    status = {"phase": "Submitting", "attempt": ATTEMPT}
    t = rc.on_action(CTX, status, ATTEMPT, running, how="the cloud took the request")
    assert (
        t.patch["phase"] == "Reinstalling"
        and t.patch["jobId"] == ""
        and t.patch["attempt"]["requestId"] == "r1"
    )
    again = rc.on_action(CTX, {**status, **t.patch}, ATTEMPT, running, how="the job ID was lost")
    assert again.patch == {} and again.delay


def test_no_rebuild_is_undecided_until_the_settle_time_then_not_taken():
    status = {"phase": "Submitting", "attempt": ATTEMPT}
    early = rc.Context(generation=1, now=T0 + timedelta(seconds=5))
    assert rc.on_outcome_probe_actions(early, status, None, settle_seconds=60, recheck=3).delay == 3
    late = rc.on_outcome_probe_actions(CTX, status, None, settle_seconds=60, recheck=3)
    assert late.patch["phase"] == "Pending" and late.patch["unconfirmedAttempt"] == ATTEMPT
    assert "no rebuild in the server's action log" in late.patch["message"]
