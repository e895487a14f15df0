"""The metrics a fleet owner graphs and alerts on (deploy/monitoring): phases per namespace kept exact, how long
the oldest resource has sat in an unfinished phase, finished reinstalls by result and a bounded failure code, and
the duration from submission to the end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ecs_reinstall.metrics import Metrics, code_label

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_resources_are_counted_per_namespace_and_phase_and_forgotten_when_gone():
    m = Metrics()
    m.observe_phase("u1", "team-a", "Pending")
    m.observe_phase("u2", "team-b", "Pending")
    m.observe_phase("u1", "team-a", "Submitting")
    m.observe_phase("u1", "team-a", "Submitting")  # the same again: counted once
    assert sample(m, "ecs_reinstall_resources", namespace="team-a", phase="Pending") == 0
    assert sample(m, "ecs_reinstall_resources", namespace="team-a", phase="Submitting") == 1
    assert sample(m, "ecs_reinstall_resources", namespace="team-b", phase="Pending") == 1
    m.observe_phase("u2", "", None)
    assert sample(m, "ecs_reinstall_resources", namespace="team-b", phase="Pending") == 0


def test_the_oldest_in_each_unfinished_phase_is_timed_from_when_it_entered_it():
    m = Metrics()
    m.working = True  # the process that runs reinstalls (a standby reports 0: see below)
    clock = [100.0]
    m._clock = lambda: clock[0]
    m.observe_phase("u1", "ns", "Pending")
    clock[0] = 130.0
    m.observe_phase("u2", "ns", "Pending")
    m.observe_phase("u3", "ns", "Reinstalling")
    clock[0] = 160.0
    assert sample(m, "ecs_reinstall_phase_oldest_seconds", phase="Pending") == 60
    assert sample(m, "ecs_reinstall_phase_oldest_seconds", phase="Reinstalling") == 30
    assert sample(m, "ecs_reinstall_phase_oldest_seconds", phase="Submitting") == 0
    m.observe_phase("u1", "ns", "Submitting")  # moved on: the clock starts again for its new phase
    assert sample(m, "ecs_reinstall_phase_oldest_seconds", phase="Pending") == 30
    assert sample(m, "ecs_reinstall_phase_oldest_seconds", phase="Submitting") == 0


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ({"phase": "Succeeded"}, "none"),
        ({"phase": "Failed", "failure": {"code": "Ecs.0100"}}, "Ecs.0100"),
        ({"phase": "Failed", "failure": {"code": "APIGW.0301"}}, "APIGW.0301"),
        ({"phase": "Failed", "failure": {"code": "Timeout"}}, "Timeout"),
        ({"phase": "Failed", "failure": {"code": "the server is gone: ask admin@example.com"}}, "other"),
        ({"phase": "Failed", "failure": {"code": "x" * 40}}, "other"),
        ({"phase": "Failed"}, "other"),
    ],
)
def test_the_failure_code_label_is_bounded_by_its_shape(status, code):
    assert code_label(status) == code


def test_a_terminal_write_counts_once_with_its_duration_from_submission():
    m = Metrics()
    submitted = (NOW - timedelta(seconds=400)).isoformat().replace("+00:00", "Z")
    failed = {"phase": "Failed", "submittedAt": submitted, "failure": {"code": "Ecs.0013"}}
    m.finished_now("Reinstalling", failed, NOW)
    m.finished_now("Failed", failed, NOW)  # written again (a message update): not a second end
    assert sample(m, "ecs_reinstall_finished_total", result="Failed", code="Ecs.0013") == 1
    assert sample(m, "ecs_reinstall_duration_seconds_count", result="Failed") == 1
    assert sample(m, "ecs_reinstall_duration_seconds_sum", result="Failed") == 400
    assert sample(m, "ecs_reinstall_duration_seconds_bucket", result="Failed", le="300.0") == 0
    assert sample(m, "ecs_reinstall_duration_seconds_bucket", result="Failed", le="450.0") == 1
    m.finished_now("Pending", {"phase": "Failed", "failure": {"code": "InvalidSpec"}}, NOW)  # never submitted
    assert sample(m, "ecs_reinstall_finished_total", result="Failed", code="InvalidSpec") == 1
    assert sample(m, "ecs_reinstall_duration_seconds_count", result="Failed") == 1


def test_a_standby_reports_no_age_so_that_a_resource_it_missed_the_deletion_of_fires_no_alert():
    m = Metrics()
    clock = [100.0]
    m._clock = lambda: clock[0]
    m.observe_phase("u1", "ns", "Pending")
    clock[0] = 5000.0
    assert sample(m, "ecs_reinstall_phase_oldest_seconds", phase="Pending") == 0
    m.working = True
    assert sample(m, "ecs_reinstall_phase_oldest_seconds", phase="Pending") == 4900
