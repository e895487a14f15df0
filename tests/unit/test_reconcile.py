"""The state machine, table by table: every phase, every cloud fact, every condition."""

import re
from datetime import UTC, datetime, timedelta
from random import Random

import pytest

from ecs_reinstall import conditions as cond
from ecs_reinstall import reconcile as rc
from ecs_reinstall.cloud.models import Job, JobStatus, Server, SubJob

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
BEFORE = datetime(2026, 5, 1, 11, 0, 0, 123000, tzinfo=UTC)
LAUNCHED = datetime(2026, 4, 30, 8, 0, 0, 456000, tzinfo=UTC)
CTX = rc.Context(generation=3, now=NOW, poll_interval=10, timeout=600)


def conds(patch):
    return {c["type"]: (c["status"], c["reason"]) for c in patch["conditions"]}


def assert_kstatus_consistent(patch):
    """kstatus: exactly one of in-progress / failed / current, and every condition at the current generation."""
    c = conds(patch)
    phase = rc.Phase(patch["phase"])
    assert c[cond.READY][0] == ("True" if phase == rc.Phase.SUCCEEDED else "False")
    assert c[cond.RECONCILING][0] == ("False" if phase.is_terminal else "True")
    assert c[cond.STALLED][0] == ("True" if phase == rc.Phase.FAILED else "False")
    assert patch["observedGeneration"] == CTX.generation
    assert all(x["observedGeneration"] == CTX.generation for x in patch["conditions"])


@pytest.mark.parametrize(
    ("status", "step"),
    [
        (None, rc.Step.PREPARE),
        ({}, rc.Step.PREPARE),
        ({"phase": "Pending"}, rc.Step.PREPARE),
        ({"phase": "Submitting"}, rc.Step.PREPARE),
        ({"phase": "Submitting", "attempt": {"id": "a"}}, rc.Step.PROBE_OUTCOME),
        ({"phase": "Reinstalling", "jobId": "j"}, rc.Step.POLL_JOB),
        (
            {"phase": "Reinstalling", "jobId": "", "attempt": {"id": "a"}, "submittedAt": "t"},
            rc.Step.POLL_SERVER,
        ),
        ({"phase": "Succeeded"}, rc.Step.DONE),
        ({"phase": "Failed"}, rc.Step.DONE),
        ({"phase": "Bogus"}, rc.Step.PREPARE),
        # the facts decide, not the phase (which a hand edit can move back)
        ({"phase": "Pending", "jobId": "j"}, rc.Step.POLL_JOB),
        ({"phase": "Pending", "attempt": {"id": "a"}}, rc.Step.PROBE_OUTCOME),
        ({"attempt": {"id": "a"}, "jobId": "", "submittedAt": "t"}, rc.Step.POLL_SERVER),
        ({"phase": "Pending", "attempt": {"id": "a", "refused": True}}, rc.Step.PREPARE),
        ({"phase": "Pending", "unconfirmedAttempt": {"id": "a"}}, rc.Step.PREPARE),
        ({"phase": "Reinstalling"}, rc.Step.PREPARE),  # no request was ever recorded
        ({"phase": "Succeeded", "attempt": {"id": "a"}}, rc.Step.DONE),
    ],
)
def test_next_step(status, step):
    assert rc.next_step(status) == step


@pytest.mark.parametrize(
    ("status", "needed"),
    [
        (None, False),  # nothing sent
        ({"phase": "Pending", "attempt": {"id": "a", "refused": True}}, False),  # refused: provably not sent
        ({"phase": "Submitting", "attempt": {"id": "a"}}, True),  # intent written, POST on its way
        ({"phase": "Submitting", "attempt": {"id": "a"}, "reason": "OutcomeUnknown"}, True),
        ({"phase": "Pending", "attempt": {"id": "a"}}, True),  # a hand edit moved the phase, not the facts
        (
            {"phase": "Reinstalling", "jobId": "j", "attempt": {"id": "a"}},
            False,
        ),  # answered: in the cloud's record
        ({"phase": "Reinstalling", "jobId": "", "attempt": {"id": "a"}, "submittedAt": "t"}, False),  # taken
        (
            {"phase": "Pending", "unconfirmedAttempt": {"id": "a"}},
            False,
        ),  # judged not taken after the settle time
        ({"phase": "Failed", "attempt": {"id": "a"}}, False),
        ({"phase": "Succeeded", "attempt": {"id": "a"}}, False),
    ],
)
def test_the_finalizer_is_needed_only_while_a_request_may_be_on_its_way(status, needed):
    assert rc.needs_finalizer(status) is needed


JOB = {"phase": "Reinstalling", "jobId": "j", "submittedAt": "t", "attempt": {"id": "a"}}


@pytest.mark.parametrize(
    ("status", "known", "restored"),
    [
        (JOB, rc.remember(None, JOB), None),  # as it should be
        ({**JOB, "phase": "Pending"}, None, {}),  # phase behind its own facts: only the phase is put back
        ({**JOB, "phase": None}, None, {}),
        ({"phase": "Pending", "attempt": {"id": "a"}}, None, {}),  # Submitting, really
        (
            {"phase": "Pending"},
            rc.remember(None, JOB),
            {k: JOB[k] for k in ("jobId", "submittedAt", "attempt")},
        ),
        ({}, rc.remember(None, JOB), {k: JOB[k] for k in ("jobId", "submittedAt", "attempt")}),
        ({**JOB, "phase": "Succeeded"}, None, None),  # terminal: nothing to restore
        (
            {"phase": "Pending", "attempt": {"id": "a", "refused": True}},
            rc.remember(None, {"attempt": {"id": "a"}}),
            None,
        ),
        # refused by hand after the cloud accepted it: a known job ID wins over the mark
        (
            {"phase": "Pending", "attempt": {"id": "a", "refused": True}},
            rc.remember(None, JOB),
            {"jobId": "j", "submittedAt": "t"},
        ),
        (
            {"phase": "Pending", "unconfirmedAttempt": {"id": "a"}},
            rc.remember(None, JOB),
            None,
        ),  # judged not taken
        ({"phase": "Pending"}, None, None),  # nothing known, nothing to say
        ({**JOB, "jobId": None}, rc.remember(None, JOB), {"jobId": "j"}),  # the answer alone removed
        ({**JOB, "submittedAt": None}, rc.remember(None, JOB), {"submittedAt": "t"}),
    ],
)
def test_regression(status, known, restored):
    assert rc.regression(status, known) == restored


def test_remember_keeps_the_newest_attempts_facts():
    known = rc.remember(None, {"attempt": {"id": "a"}, "jobId": "j1", "submittedAt": "t1"})
    known = rc.remember(known, {"phase": "Pending"})  # a status that lost them does not erase them
    assert known["jobId"] == "j1"
    known = rc.remember(known, {"attempt": {"id": "b"}, "unconfirmedAttempt": {"id": "a"}})
    assert known == {"attempt": {"id": "b"}, "unconfirmedAttempt": {"id": "a"}}  # a's job ID is not b's
    known = rc.remember(known, {"attempt": {"id": "b"}, "jobId": "j2", "submittedAt": "t2"})
    assert "unconfirmedAttempt" not in known and known["jobId"] == "j2"


def test_a_regression_is_restored_with_the_phase_its_facts_imply_and_announced():
    t = rc.on_regressed(CTX, {"phase": "Pending"}, {"jobId": "j", "submittedAt": "t", "attempt": {"id": "a"}})
    assert t.patch["phase"] == "Reinstalling" and t.patch["jobId"] == "j"
    assert t.event.reason == "StatusRegressed" and t.event.type == "Warning"
    assert "cloud job j runs" in t.patch["message"]
    ready = next(c for c in t.patch["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "StatusRegressed"


def test_repeated_unknown_outcomes_neither_rewrite_nor_announce_again():
    first = rc.on_outcome_unknown(CTX, {"phase": "Submitting", "attempt": {"id": "a"}}, "timeout", 1)
    status = {"phase": "Submitting", "attempt": {"id": "a"}, **first.patch}
    again = rc.on_outcome_unknown(CTX, status, "timeout", 1)
    assert first.event is not None and again.patch == {} and again.event is None
    other = rc.on_outcome_unknown(CTX, status, "connection reset", 1)
    assert other.patch and other.event is None  # a new detail is written, but announced once


def test_an_unknown_outcome_is_given_up_after_the_timeout_from_the_attempts_start():
    status = {"attempt": {"id": "a", "startedAt": "2026-05-01T11:00:00.000Z"}}
    assert not rc.probe_expired(rc.Context(generation=1, now=NOW, timeout=7200), status)
    assert rc.probe_expired(rc.Context(generation=1, now=NOW, timeout=1800), status)


def test_invalid_spec_is_terminal_and_stalled():
    t = rc.on_invalid(CTX, {}, "spec.keyName: needs spec.userId")
    assert t.patch["phase"] == "Failed"
    assert t.patch["failure"] == {"code": "InvalidSpec", "reason": "spec.keyName: needs spec.userId"}
    assert conds(t.patch)[cond.STALLED] == ("True", "InvalidSpec")
    assert conds(t.patch)[cond.SUBMITTED][0] == "False"
    assert t.event.type == "Warning"
    assert_kstatus_consistent(t.patch)


def test_waiting_says_what_for_and_posts_one_event():
    t = rc.on_wait(CTX, {}, rc.Reason.WAITING_FOR_INPUT, 'Secret "pw" in namespace "ns"', "Waiting for it", 5)
    assert t.patch["phase"] == "Pending"
    assert t.patch["waitingFor"] == 'Secret "pw" in namespace "ns"'
    assert conds(t.patch)[cond.RECONCILING] == ("True", "WaitingForInput")
    assert t.delay == 5 and t.event is not None
    assert_kstatus_consistent(t.patch)
    # Same wait again: nothing to write, no second Event.
    again = rc.on_wait(
        CTX, t.patch, rc.Reason.WAITING_FOR_INPUT, 'Secret "pw" in namespace "ns"', "Waiting for it", 7
    )
    assert again.patch == {} and again.event is None and again.delay == 7


def test_condition_transition_time_moves_only_on_status_change():
    first = rc.on_wait(CTX, {}, rc.Reason.SERVER_BUSY, "x", "busy", 1)
    later = rc.Context(generation=3, now=NOW + timedelta(minutes=5))
    second = rc.on_wait(later, first.patch, rc.Reason.WAITING_FOR_INPUT, "y", "other", 1)
    times = {c["type"]: c["lastTransitionTime"] for c in second.patch["conditions"]}
    assert times[cond.RECONCILING] == "2026-05-01T12:00:00Z"  # still True: time kept
    done = rc.on_submitted(later, second.patch, "job-1")
    times = {c["type"]: c["lastTransitionTime"] for c in done.patch["conditions"]}
    assert times[cond.SUBMITTED] == "2026-05-01T12:05:00Z"  # False -> True: time moved


@pytest.mark.parametrize(
    ("server", "stop", "code"),
    [
        (Server(id="s", status="SHUTOFF"), False, None),
        (Server(id="s", status="ACTIVE"), True, None),
        (Server(id="s", status="ACTIVE"), False, "Ecs.0100"),
        (Server(id="s", status="SHUTOFF", has_system_disk=False), True, "Ecs.0105"),
        (Server(id="s", status="SHUTOFF", locked=True), True, "Ecs.0605"),
        (Server(id="s", status="ERROR"), True, "ServerNotReady"),
    ],
)
def test_server_blocker(server, stop, code):
    blocker = rc.server_blocker(server, stop_server=stop)
    assert (blocker[0] if blocker else None) == code


def test_intent_records_the_server_before():
    server = Server(id="s", status="SHUTOFF", updated=BEFORE, launched_at=LAUNCHED)
    attempt = rc.new_attempt("a1", server, "v2", NOW, NOW + timedelta(seconds=3.5))
    assert attempt == {
        "id": "a1",
        "startedAt": "2026-05-01T12:00:00.000Z",
        "cloudStartedAt": "2026-05-01T12:00:03.500Z",  # the cloud's clock, for its action log
        "serverUpdatedBefore": "2026-05-01T11:00:00.123Z",
        "serverLaunchedBefore": "2026-04-30T08:00:00.456Z",
        "serverStatusBefore": "SHUTOFF",
        "api": "v2",
    }
    t = rc.on_intent(CTX, {}, attempt, "s")
    assert t.patch["phase"] == "Submitting" and t.patch["attempt"] == {"refused": None, **attempt}
    assert (
        rc.next_step(t.patch) == rc.Step.PROBE_OUTCOME
    )  # if we die now, the next runner probes, never re-POSTs
    assert_kstatus_consistent(t.patch)


def test_submitted_records_job_and_polls_within_the_interval():
    t = rc.on_submitted(CTX, {}, "job-9")
    assert t.patch["phase"] == "Reinstalling" and t.patch["jobId"] == "job-9"
    assert t.patch["submittedAt"] == "2026-05-01T12:00:00Z"
    assert conds(t.patch)[cond.SUBMITTED] == ("True", "Accepted")
    assert 8 <= t.delay <= 10
    assert_kstatus_consistent(t.patch)


def test_rejected_submission_fails_with_the_cloud_code():
    t = rc.on_submit_rejected(CTX, {}, "Ecs.0090", "BYOL is not supported here")
    assert t.patch["phase"] == "Failed"
    assert t.patch["failure"] == {"code": "Ecs.0090", "reason": "BYOL is not supported here"}
    assert_kstatus_consistent(t.patch)


def test_throttled_submission_goes_back_to_pending_without_failing():
    t = rc.on_not_submitted(
        CTX, {"phase": "Submitting", "attempt": {"id": "a"}}, rc.Reason.THROTTLED, "slow", 30
    )
    # the attempt stays, marked refused: every later status names it (see rc.regression)
    assert t.patch["phase"] == "Pending" and t.patch["attempt"] == {"id": "a", "refused": True}
    assert "failure" not in t.patch
    assert t.delay == 30


ATTEMPT = {
    "id": "a",
    "startedAt": "2026-05-01T11:59:30.000Z",
    "serverUpdatedBefore": "2026-05-01T11:00:00.123Z",
}


@pytest.mark.parametrize(
    ("server", "now", "verdict"),
    [
        (Server(id="s", status="REBUILD", task_state="rebuilding", updated=BEFORE), NOW, rc.Verdict.TAKEN),
        (Server(id="s", status="ACTIVE", updated=BEFORE + timedelta(seconds=40)), NOW, rc.Verdict.TAKEN),
        (Server(id="s", status="SHUTOFF", updated=BEFORE), NOW, rc.Verdict.UNDECIDED),
        (Server(id="s", status="SHUTOFF", updated=BEFORE), NOW + timedelta(seconds=61), rc.Verdict.NOT_TAKEN),
        (Server(id="s", status="SHUTOFF", updated=None), NOW, rc.Verdict.UNDECIDABLE),
        (Server(id="s", status="ACTIVE", task_state="powering-off", updated=None), NOW, rc.Verdict.TAKEN),
    ],
)
def test_judge_outcome(server, now, verdict):
    assert rc.judge_outcome(ATTEMPT, server, now, settle_seconds=60) == verdict


def test_outcome_probe_taken_follows_the_server_without_resending():
    status = {"phase": "Submitting", "attempt": ATTEMPT}
    server = Server(id="s", status="REBUILD", task_state="rebuilding", updated=BEFORE)
    t = rc.on_outcome_probe(CTX, status, server, settle_seconds=60, recheck=10)
    assert t.patch["phase"] == "Reinstalling" and t.patch["jobId"] == ""
    assert rc.next_step({**status, **t.patch}) == rc.Step.POLL_SERVER
    assert conds(t.patch)[cond.SUBMITTED][0] == "True"


def test_outcome_probe_not_taken_resubmits_only_after_settling():
    status = {"phase": "Submitting", "attempt": ATTEMPT}
    server = Server(id="s", status="SHUTOFF", updated=BEFORE)
    early = rc.on_outcome_probe(CTX, status, server, settle_seconds=60, recheck=10)
    assert early.patch == {} and early.delay == 10
    late_ctx = rc.Context(generation=3, now=NOW + timedelta(seconds=90))
    late = rc.on_outcome_probe(late_ctx, status, server, settle_seconds=60, recheck=10)
    assert late.patch["phase"] == "Pending" and late.patch["attempt"] is None
    assert late.event.reason == "Resubmitting"


def test_outcome_probe_undecidable_fails_instead_of_guessing():
    status = {"phase": "Submitting", "attempt": {"id": "a", "startedAt": "2026-05-01T11:59:30.000Z"}}
    t = rc.on_outcome_probe(CTX, status, Server(id="s", status="SHUTOFF"), settle_seconds=60, recheck=10)
    assert t.patch["phase"] == "Failed"
    assert t.patch["failure"]["code"] == "OutcomeUnknown"
    assert_kstatus_consistent(t.patch)


def job(status, **kw):
    return Job(job_id="job-1", job_type="rebuildServer", status=status, **kw)


REINSTALLING = {"phase": "Reinstalling", "jobId": "job-1", "submittedAt": "2026-05-01T11:55:00Z"}


def test_job_success_is_ready():
    end = datetime(2026, 5, 1, 11, 59, 0, 500000, tzinfo=UTC)
    t = rc.on_job(CTX, REINSTALLING, job(JobStatus.SUCCESS, end_time=end))
    assert t.patch["phase"] == "Succeeded" and t.patch["completedAt"] == "2026-05-01T11:59:00Z"
    assert t.patch["jobEndTime"] == "2026-05-01T11:59:00.500Z"
    assert conds(t.patch)[cond.READY] == ("True", "Succeeded")
    assert_kstatus_consistent(t.patch)


def test_job_failure_carries_the_sub_job_error():
    sub = SubJob(
        job_id="sub-1",
        job_type="rebuildVM",
        status=JobStatus.FAIL,
        error_code="Ecs.1234",
        fail_reason="image broken",
    )
    t = rc.on_job(CTX, REINSTALLING, job(JobStatus.FAIL, sub_jobs=(sub,)))
    assert t.patch["phase"] == "Failed"
    assert t.patch["failure"] == {"code": "Ecs.1234", "reason": "image broken"}
    assert t.patch["subJobs"] == [
        {
            "jobId": "sub-1",
            "jobType": "rebuildVM",
            "status": "FAIL",
            "errorCode": "Ecs.1234",
            "failReason": "image broken",
        }
    ]
    assert_kstatus_consistent(t.patch)


def test_running_job_writes_only_changes():
    t = rc.on_job(CTX, REINSTALLING, job(JobStatus.RUNNING))
    assert t.patch["jobStatus"] == "RUNNING" and 8 <= t.delay <= 10
    again = rc.on_job(CTX, {**REINSTALLING, **t.patch}, job(JobStatus.RUNNING))
    assert again.patch == {} and again.delay is not None


def test_timeout_fails_and_says_the_job_may_still_run():
    late = rc.Context(generation=3, now=NOW + timedelta(seconds=600), timeout=600)
    t = rc.on_job(late, REINSTALLING, job(JobStatus.RUNNING))
    assert t.patch["phase"] == "Failed" and t.patch["failure"]["code"] == "Timeout"
    assert "may still run" in t.patch["message"]


def test_poll_errors_never_fail_before_the_timeout():
    t = rc.on_poll_error(CTX, REINSTALLING, "HTTP 500", 10)
    assert t.patch == {"message": "Reinstalling: could not read the cloud job (HTTP 500); retrying"}
    late = rc.Context(generation=3, now=NOW + timedelta(hours=1), timeout=600)
    assert rc.on_poll_error(late, REINSTALLING, "HTTP 500", 10).patch["phase"] == "Failed"


RELAUNCHED = LAUNCHED + timedelta(days=1, seconds=30)
JOBLESS = {
    **REINSTALLING,
    "jobId": "",
    "attempt": {"id": "a", "serverLaunchedBefore": "2026-04-30T08:00:00.456Z"},
}


@pytest.mark.parametrize(
    ("server", "phase", "ready", "stalled"),
    [
        (Server(id="s", status="REBUILD", task_state="rebuild_spawning"), None, None, None),
        (
            Server(id="s", status="ACTIVE", launched_at=RELAUNCHED),
            "Succeeded",
            "SucceededFromServerState",
            None,
        ),
        (
            Server(id="s", status="SHUTOFF", launched_at=RELAUNCHED),
            "Succeeded",
            "SucceededFromServerState",
            None,
        ),
        # back in its old state with its old launch time: the reinstall failed, whatever the state looks like
        (Server(id="s", status="ACTIVE", launched_at=LAUNCHED), "Failed", None, "FailedFromServerState"),
        (Server(id="s", status="SHUTOFF", launched_at=LAUNCHED), "Failed", None, "FailedFromServerState"),
        # no launch time to compare: never guessed
        (Server(id="s", status="ACTIVE"), "Failed", None, "OutcomeUnknown"),
        (Server(id="s", status="ERROR", launched_at=LAUNCHED), "Failed", None, "JobFailed"),
    ],
)
def test_jobless_reinstall_follows_the_server(server, phase, ready, stalled):
    t = rc.on_server_progress(CTX, JOBLESS, server)
    assert t.patch.get("phase") == phase
    if ready:  # inferred, and says so
        assert conds(t.patch)[cond.READY] == ("True", ready)
    if stalled:
        assert conds(t.patch)[cond.STALLED] == ("True", stalled)
        assert t.patch["failure"]["code"] in (stalled, "ServerError")
        assert_kstatus_consistent(t.patch)


def test_jobless_reinstall_from_an_attempt_without_launch_time_is_not_guessed():
    """An intent written before launch times were recorded (an older operator) cannot be judged: OutcomeUnknown."""
    status = {**REINSTALLING, "jobId": "", "attempt": {"id": "a"}}
    t = rc.on_server_progress(CTX, status, Server(id="s", status="ACTIVE", launched_at=RELAUNCHED))
    assert t.patch["phase"] == "Failed" and conds(t.patch)[cond.STALLED] == ("True", "OutcomeUnknown")
    assert "never" in t.patch["message"] and "reinstall twice" in t.patch["message"]


def test_a_new_launch_time_alone_shows_the_request_was_taken():
    attempt = {**ATTEMPT, "serverLaunchedBefore": "2026-04-30T08:00:00.456Z"}
    server = Server(id="s", status="ACTIVE", updated=BEFORE, launched_at=RELAUNCHED)
    assert rc.judge_outcome(attempt, server, NOW, 60) == rc.Verdict.TAKEN
    same = Server(id="s", status="ACTIVE", updated=BEFORE, launched_at=LAUNCHED)
    assert rc.judge_outcome(attempt, same, NOW + timedelta(seconds=61), 60) == rc.Verdict.NOT_TAKEN


def test_backoff_and_poll_jitter_stay_in_bounds():
    rng = Random(7)
    for attempt in range(12):
        d = rc.backoff(attempt, 5, 300, rng)
        assert min(300, 5 * 2**attempt) / 2 <= d <= min(300, 5 * 2**attempt)
    assert all(8 <= rc.poll_delay(10, rng) <= 10 for _ in range(100))


def test_a_request_judged_not_taken_is_kept_until_another_is_accepted():
    attempt = {**ATTEMPT, "serverLaunchedBefore": "2026-04-30T08:00:00.456Z"}
    status = {"phase": "Submitting", "attempt": attempt}
    idle = Server(id="s", status="SHUTOFF", updated=BEFORE, launched_at=LAUNCHED)
    later = rc.Context(generation=3, now=NOW + timedelta(seconds=61), poll_interval=10, timeout=600)
    t = rc.on_outcome_probe(later, status, idle, settle_seconds=60, recheck=5)
    assert t.patch["phase"] == "Pending" and t.patch["attempt"] is None
    assert t.patch["unconfirmedAttempt"] == attempt
    accepted = rc.on_submitted(later, {**status, **t.patch}, "job-2")
    assert accepted.patch["unconfirmedAttempt"] is None


@pytest.mark.parametrize(
    "server",
    [
        Server(id="s", status="REBUILD", task_state="rebuilding", updated=BEFORE, launched_at=LAUNCHED),
        Server(id="s", status="SHUTOFF", updated=BEFORE + timedelta(seconds=90), launched_at=LAUNCHED),
        Server(id="s", status="ACTIVE", updated=BEFORE, launched_at=RELAUNCHED),
    ],
)
def test_an_earlier_request_processed_late_is_followed_not_sent_again(server):
    """Found by the chaos smoke run: a POST answered after the read timeout was processed after the probe had
    judged it not taken; the operator waited for the busy server, then sent a second reinstall."""
    earlier = {**ATTEMPT, "serverLaunchedBefore": "2026-04-30T08:00:00.456Z"}
    status = {"phase": "Pending", "unconfirmedAttempt": earlier}
    t = rc.on_late_acceptance(CTX, status, server)
    assert t is not None and t.patch["phase"] == "Reinstalling" and t.patch["jobId"] == ""
    assert t.patch["attempt"] == {"refused": None, **earlier} and t.patch["unconfirmedAttempt"] is None
    assert "late" in t.patch["message"]
    assert rc.next_step({**status, **t.patch}) == rc.Step.POLL_SERVER


def test_no_earlier_request_or_no_trace_of_it_lets_the_submission_go_on():
    idle = Server(id="s", status="SHUTOFF", updated=BEFORE, launched_at=LAUNCHED)
    assert rc.on_late_acceptance(CTX, {"phase": "Pending"}, idle) is None
    earlier = {**ATTEMPT, "serverLaunchedBefore": "2026-04-30T08:00:00.456Z"}
    assert rc.on_late_acceptance(CTX, {"phase": "Pending", "unconfirmedAttempt": earlier}, idle) is None


def test_an_attempt_written_over_a_refused_one_is_live_again():
    """Merge patches merge nested objects: a new attempt must clear the old one's `refused` key."""
    refused = {"phase": "Pending", "attempt": {"id": "b", "refused": True}, "unconfirmedAttempt": ATTEMPT}
    late = rc.on_late_acceptance(
        CTX, refused, Server(id="s", status="REBUILD", task_state="rebuilding", updated=BEFORE)
    )
    assert late is not None and late.patch["attempt"]["refused"] is None
    intent = rc.on_intent(CTX, refused, {"id": "c"}, "s")
    assert intent.patch["attempt"] == {"id": "c", "refused": None}


@pytest.mark.parametrize("code", ["Ecs.0122", "Ecs.0123", "Ecs.0124"])
def test_a_refused_client_token_says_what_it_means(code):
    t = rc.on_submit_rejected(CTX, {"phase": "Submitting"}, code, "token refused")
    assert t.patch["phase"] == "Failed" and t.patch["failure"]["code"] == code
    assert "X-Client-Token" in t.patch["message"] and "create a new EcsReinstall" in t.patch["message"]


@pytest.mark.parametrize(
    ("status", "step"),
    [
        (
            {"phase": "Failed", "failure": {"code": "Timeout"}, "jobId": "j", "jobStatus": "RUNNING"},
            rc.Step.FOLLOW_AFTER_TIMEOUT,
        ),
        (
            {"phase": "Failed", "failure": {"code": "Timeout"}, "jobId": "j", "jobStatus": "SUCCESS"},
            rc.Step.DONE,
        ),
        (
            {"phase": "Failed", "failure": {"code": "Timeout"}, "jobId": "j", "jobStatus": "UNKNOWN"},
            rc.Step.DONE,
        ),
        ({"phase": "Failed", "failure": {"code": "Timeout"}, "jobId": ""}, rc.Step.DONE),  # no job to read
        (
            {"phase": "Failed", "failure": {"code": "JobFailed"}, "jobId": "j", "jobStatus": "RUNNING"},
            rc.Step.DONE,
        ),
    ],
)
def test_a_timed_out_job_is_followed_until_it_ends(status, step):
    assert rc.next_step(status) == step


def test_how_a_timed_out_job_ended_is_recorded_and_the_phase_stays():
    status = {
        "phase": "Failed",
        "failure": {"code": "Timeout"},
        "jobId": "j",
        "jobStatus": "RUNNING",
        "message": "m",
    }
    failed = Job(
        job_id="j", job_type="rebuild", status=JobStatus.FAIL, error_code="Ecs.0013", fail_reason="disk"
    )
    t = rc.on_job_after_timeout(CTX, status, failed)
    assert "phase" not in t.patch and t.patch["jobStatus"] == "FAIL"
    assert (
        "the job then failed: Ecs.0013: disk" in t.patch["message"]
        and t.event.reason == "JobEndedAfterTimeout"
    )
    running = Job(job_id="j", job_type="rebuild", status=JobStatus.RUNNING)
    assert rc.on_job_after_timeout(CTX, status, running).patch == {}  # nothing new: nothing written
    gone = rc.on_job_after_timeout(CTX, status, None)
    assert gone.patch["jobStatus"] == "UNKNOWN" and rc.next_step({**status, **gone.patch}) == rc.Step.DONE


@pytest.mark.parametrize(
    "transition",
    [
        lambda: rc.on_invalid(CTX, {}, "spec.userData: over 32 KiB"),
        lambda: rc.on_submit_rejected(CTX, {}, "Ecs.0005", "the request is invalid"),
        lambda: rc.on_timeout(CTX, {"jobId": "j"}),
        lambda: rc.on_probe_gave_up(CTX, {}, "server s no longer exists"),
        lambda: rc.on_job(
            CTX, {}, Job(job_id="j", job_type="rebuild", status=JobStatus.FAIL, error_code="Ecs.0013")
        ),
        lambda: rc.on_invalid(
            CTX, {}, rc.server_blocker(Server(id="s", status="ACTIVE"), stop_server=False)[1]
        ),
    ],
)
def test_every_terminal_message_says_to_create_a_new_resource(transition):
    """The spec is immutable: a fix hint that points at the spec must say to create a new EcsReinstall."""
    t = transition()
    assert t.patch["phase"] == "Failed"
    assert "new EcsReinstall" in t.patch["message"] and "new EcsReinstall" in t.event.message


@pytest.mark.parametrize(
    ("code", "phase", "reason"),
    [
        ("Ecs.0314", "Pending", "InvalidInput"),  # the key pair: created in the cloud, then it goes on
        ("Ecs.0011", "Pending", "InvalidInput"),  # the password the cloud refused: fixed in the Secret
        ("Ecs.0005", "Failed", "Ecs.0005"),  # an invalid request: a bug to report, waiting would not help
        ("Ecs.0122", "Failed", "Ecs.0122"),
    ],
)
def test_a_rejected_post_waits_only_for_what_is_fixed_outside_the_resource(code, phase, reason):
    status = {"phase": "Submitting", "attempt": {"id": "a", "startedAt": "2026-05-01T12:00:00Z"}}
    t = rc.on_submit_rejected(CTX, status, code, "the cloud's words", 30.0)
    assert t.patch["phase"] == phase
    if phase == "Pending":
        assert t.patch["attempt"]["refused"] and t.delay == 30.0  # provably not started: a new attempt later
        assert code in t.patch["message"] and "goes on by itself" in t.patch["message"]
        assert rc.next_step({**status, **t.patch}) == rc.Step.PREPARE
    else:
        assert t.patch["failure"]["code"] == reason


CONDITION_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")  # metav1.Condition's rule


@pytest.mark.parametrize(
    ("transition", "reason", "code"),
    [
        (lambda: rc.on_invalid(CTX, {}, "spec.x: bad"), "InvalidSpec", "InvalidSpec"),
        (
            lambda: rc.on_invalid(CTX, {}, "server s is running", code="Ecs.0100"),
            "ServerNotReady",
            "Ecs.0100",
        ),
        (lambda: rc.on_submit_rejected(CTX, {}, "Ecs.0005", "invalid"), "CloudError", "Ecs.0005"),
        (lambda: rc.on_timeout(CTX, {"jobId": "j"}), "Timeout", "Timeout"),
        (
            lambda: rc.on_job(
                CTX, {}, Job(job_id="j", job_type="rebuild", status=JobStatus.FAIL, error_code="Ecs.0013")
            ),
            "JobFailed",
            "Ecs.0013",
        ),
    ],
)
def test_a_failures_event_reason_is_its_condition_reason_and_the_clouds_code_stays_in_failure_code(
    transition, reason, code
):
    """One vocabulary: Event reasons are condition reasons (CamelCase, as metav1.Condition requires), never a
    cloud code such as Ecs.0100 (which has a dot) nor a bare "Failed"."""
    t = transition()
    stalled = cond.find(t.patch["conditions"], cond.STALLED)
    assert t.event.reason == stalled["reason"] == reason and CONDITION_REASON.match(reason)
    assert t.patch["failure"]["code"] == code


@pytest.mark.parametrize(
    ("error", "hinted"),
    [
        (
            "Cannot connect to host ecs.ap-southeast-9x.myhuaweicloud.com:443 [Name or service not known]",
            True,
        ),
        ("[Errno -3] Temporary failure in name resolution", True),
        ("[Errno 8] nodename nor servname provided, or not known", True),
        ("Connection refused", False),
        ("HTTP 503", False),
    ],
)
def test_a_host_that_does_not_exist_is_told_to_be_a_mistyped_region(error, hinted):
    hint = rc.unreachable_hint(error)
    assert bool(hint) is hinted
    if hinted:
        assert "spec.region" in hint and "--region" in hint


def test_a_resource_waiting_past_its_pending_timeout_fails_with_the_last_reason():
    ctx = rc.Context(generation=1, now=NOW, pending_deadline=NOW - timedelta(seconds=1))
    message = 'Waiting for Secret "pw" in namespace "ns"'
    t = rc.on_wait(ctx, {"phase": "Pending"}, rc.Reason.WAITING_FOR_INPUT, "Secret", message, 30.0)
    assert t.patch["phase"] == "Failed" and t.patch["failure"]["code"] == "PendingTimeout"
    assert cond.find(t.patch["conditions"], cond.STALLED)["reason"] == "WaitingForInput"
    assert message in t.patch["message"] and "create a new EcsReinstall" in t.patch["message"]
    assert rc.next_step({**t.patch}) == rc.Step.DONE


def test_before_its_pending_timeout_a_resource_waits_and_looks_again_by_the_deadline():
    ctx = rc.Context(generation=1, now=NOW, pending_deadline=NOW + timedelta(seconds=20))
    t = rc.on_wait(ctx, {}, rc.Reason.SERVER_BUSY, "server s", "Waiting: server s is busy", 300.0)
    assert t.patch["phase"] == "Pending" and t.delay == 20.0  # not after the deadline


def test_the_pending_timeout_never_fails_a_resource_whose_request_was_taken():
    ctx = rc.Context(generation=1, now=NOW, pending_deadline=NOW - timedelta(seconds=1))
    taken = {"phase": "Pending", "jobId": "j", "submittedAt": "2026-05-01T11:00:00Z"}  # a hand edit, say
    t = rc.on_wait(ctx, taken, rc.Reason.THROTTLED, "the cloud", "Waiting", 5.0)
    assert (t.patch or {}).get("phase") != "Failed"


@pytest.mark.parametrize(
    ("status", "ttl", "expected"),
    [
        ({"phase": "Succeeded", "completedAt": "2026-05-01T12:00:00Z"}, 60, NOW + timedelta(seconds=60)),
        (  # the job ended at 12:00 in the cloud; the operator saw it at its poll, 30 s later: counted from then
            {
                "phase": "Succeeded",
                "completedAt": "2026-05-01T12:00:00Z",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-05-01T12:00:30Z"}
                ],
            },
            5,
            NOW + timedelta(seconds=35),
        ),
        ({"phase": "Failed", "completedAt": "2026-05-01T12:00:00Z"}, 0, NOW),
        ({"phase": "Succeeded", "completedAt": "2026-05-01T12:00:00Z"}, None, None),  # no TTL: kept
        ({"phase": "Reinstalling", "jobId": "j"}, 60, None),  # not finished
        ({"phase": "Succeeded"}, 60, None),  # no completion time to count from
        ({"phase": "Succeeded", "completedAt": "2026-05-01T12:00:00Z"}, True, None),  # not a number
        (  # a Timeout whose job is still followed: kept until that ends
            {
                "phase": "Failed",
                "jobId": "j",
                "failure": {"code": "Timeout"},
                "completedAt": "2026-05-01T12:00:00Z",
            },
            0,
            None,
        ),
    ],
)
def test_a_finished_resource_expires_its_ttl_after_it_finished(status, ttl, expected):
    if status.get("failure", {}).get("code") == "Timeout":
        assert rc.next_step(status) == rc.Step.FOLLOW_AFTER_TIMEOUT, "the table's premise"
    assert rc.expires_at(status, ttl) == expected


def test_the_pending_timeout_never_fails_a_resource_whose_earlier_request_may_yet_be_taken():
    """Judged not taken after the settle time, an earlier request may still be processed late: failing now would
    tell the user "nothing was submitted" and free the server for a second reinstall."""
    ctx = rc.Context(generation=1, now=NOW, pending_deadline=NOW - timedelta(seconds=1))
    status = {"phase": "Pending", "unconfirmedAttempt": {"id": "a", "startedAt": "2026-05-01T11:00:00Z"}}
    t = rc.on_wait(ctx, status, rc.Reason.SERVER_BUSY, "server s", "Waiting: server s is busy", 5.0)
    assert (t.patch or {}).get("phase") != "Failed"
