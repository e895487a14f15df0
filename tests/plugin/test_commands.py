"""pause, resume (acknowledging the failures so far), abort (confirmed) and plan: their effect on the set and
what they print."""

from __future__ import annotations

import io
import re

import pytest

from ecs_reinstall.rollout import ACKNOWLEDGED_ANNOTATION
from kube_emulator.faults import FaultRule

from .conftest import server

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_pause_sets_spec_paused_and_says_what_finishes(sets, ecsr, namespace) -> None:
    sets.create("web")
    sets.progress("web", total=5, done=1, in_flight=2, failed=0, phase="Progressing")
    result = ecsr("pause", "web")
    assert result.code == 0
    assert result.out == f"EcsReinstallSet {namespace}/web paused: no new reinstalls; 2 in flight finish\n"
    assert sets.get("web")["spec"]["paused"] is True
    again = ecsr("pause", "web")
    assert again.code == 0 and "already paused" in again.out


def test_resume_unpauses_and_acknowledges_the_current_failures(sets, ecsr, namespace) -> None:
    sets.create("api", paused=True)
    sets.progress("api", total=9, done=2, in_flight=0, failed=3, phase="Stalled")
    result = ecsr("resume", "api")
    assert result.code == 0
    assert result.out == (
        f"EcsReinstallSet {namespace}/api resumed: acknowledged 3 failures (was 0); the failure budget counts "
        f"failures beyond 3 (annotation {ACKNOWLEDGED_ANNOTATION}=1:3, for this round only)\n"
    )
    body = sets.get("api")
    assert body["spec"]["paused"] is False
    assert body["metadata"]["annotations"][ACKNOWLEDGED_ANNOTATION] == "1:3"  # round 1, 3 failures
    # two more failures, then stalled again: the next resume acknowledges 5
    sets.progress("api", total=9, done=2, in_flight=0, failed=5, phase="Stalled")
    assert "acknowledged 5 failures (was 3)" in ecsr("resume", "api").out
    assert sets.get("api")["metadata"]["annotations"][ACKNOWLEDGED_ANNOTATION] == "1:5"
    assert "5 failures acknowledged (as before)" in ecsr("resume", "api").out


def test_resume_without_failures_and_of_an_aborted_set(sets, ecsr) -> None:
    sets.create("web", paused=True, abort=True)
    result = ecsr("resume", "web")
    assert result.code == 0
    assert "resumed: no failures to acknowledge" in result.out
    assert "resume does not undo that: set spec.abort back to false" in result.out
    assert sets.get("web")["metadata"]["annotations"][ACKNOWLEDGED_ANNOTATION] == "0:0"  # no round started


def test_resume_retries_when_the_set_changed_since_it_was_read(kube, sets, ecsr, namespace) -> None:
    sets.create("api", paused=True)
    sets.progress("api", total=9, done=2, in_flight=0, failed=3, phase="Stalled")
    path = f"/apis/ecs.reinstall.dev/v1alpha1/namespaces/{namespace}/ecsreinstallsets/api"
    kube.call(kube.faults.add, FaultRule(verbs={"patch"}, path_prefix=path, error_code=409, times=2))
    result = ecsr("resume", "api")
    assert result.code == 0 and "acknowledged 3 failures" in result.out
    assert sets.get("api")["spec"]["paused"] is False


def test_resume_is_a_compare_and_swap_on_what_it_read(kube, sets, ecsr, monkeypatch) -> None:
    """A failure recorded between the read and the patch must not be acknowledged unseen: the patch carries
    the resourceVersion read, fails with 409, and the resume reads again."""
    from ecs_reinstall import plugin

    sets.create("api", paused=True)
    sets.progress("api", total=9, done=2, in_flight=0, failed=3, phase="Stalled")
    real_get = plugin.Kube.get_set
    reads = []

    def get_then_fail_one_more(self, name):
        body = real_get(self, name)
        reads.append(body["status"]["failedCount"])
        if len(reads) == 1:
            sets.progress("api", total=9, done=2, in_flight=0, failed=4, phase="Stalled")
        return body

    monkeypatch.setattr(plugin.Kube, "get_set", get_then_fail_one_more)
    result = ecsr("resume", "api")
    assert reads == [3, 4]
    assert "acknowledged 4 failures" in result.out
    assert sets.get("api")["metadata"]["annotations"][ACKNOWLEDGED_ANNOTATION] == "1:4"


def test_abort_needs_yes_when_not_interactive(sets, ecsr, namespace) -> None:
    sets.create("web")
    sets.progress("web", total=5, done=1, in_flight=2, failed=0, phase="Progressing")
    refused = ecsr("abort", "web")
    assert refused.code == 1 and refused.out == ""
    assert refused.err.startswith(
        f"error: refusing to abort EcsReinstallSet {namespace}/web (1/5 done, 2 in flight) without "
        "confirmation: pass --yes"
    )
    assert refused.err.count("\n") == 1
    assert not sets.get("web")["spec"]["abort"]
    done = ecsr("abort", "web", "--yes")
    assert done.code == 0
    assert done.out == f"EcsReinstallSet {namespace}/web aborted: no new reinstalls; 2 in flight finish\n"
    assert sets.get("web")["spec"]["abort"] is True
    assert "already aborted" in ecsr("abort", "web", "-y").out


@pytest.mark.parametrize(("answer", "aborted"), [("y\n", True), ("\n", False)])
def test_abort_asks_on_a_terminal(sets, ecsr, monkeypatch, answer: str, aborted: bool) -> None:
    sets.create("web")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal(answer))
    result = ecsr("abort", "web")
    assert result.code == (0 if aborted else 1)
    assert "[y/N]" in result.out
    assert sets.get("web")["spec"]["abort"] is aborted


def test_pause_resume_abort_of_a_missing_set(ecsr, namespace) -> None:
    for command in (["pause"], ["resume"], ["abort", "--yes"], ["plan"]):
        result = ecsr(command[0], "gone", *command[1:])
        assert result.code == 1
        assert result.err == f"error: EcsReinstallSet {namespace}/gone not found\n"


PLAN = {
    "servers": 10,
    "ready": 7,
    "alreadyAtRevision": 1,
    "blockers": [
        {"serverId": server(5), "reason": "not found in the cloud"},
        {"serverId": server(6), "reason": "server is ERROR: reinstall needs SHUTOFF or ACTIVE"},
    ],
    "waves": 3,
    "estimatedCloudCalls": 240,
    "estimatedSeconds": 3900,
}


def test_plan_prints_the_dry_run_and_its_blockers(sets, ecsr, namespace) -> None:
    sets.create("edge", servers=10, dryRun=True)
    sets.status("edge", phase="Planned", revision="golden-1", plan=PLAN)
    result = ecsr("plan", "edge")
    assert result.code == 0
    assert result.out.splitlines() == [
        f"plan: {namespace}/edge (revision golden-1)",
        "servers: 10",
        "ready: 7",
        "already-at-revision: 1",
        "blocked: 2",
        "waves: 3",
        "estimated-cloud-calls: 240",
        "estimated-duration: 1h05m (3900 s)",
        "blockers: 2",
        f"  {server(5)}  not found in the cloud",
        f"  {server(6)}  server is ERROR: reinstall needs SHUTOFF or ACTIVE",
    ]
    rich = ANSI.sub("", ecsr("plan", "edge", "--format", "rich").out)
    assert "Plan of EcsReinstallSet" in rich and "Blockers (2)" in rich
    assert re.search(r"Estimated cloud calls\s*│\s*240", rich) and "1h05m (3900 s)" in rich
    assert server(6) in rich


def test_plan_without_blockers(sets, ecsr) -> None:
    sets.create("edge", dryRun=True)
    sets.status("edge", phase="Planned", plan={**PLAN, "blockers": [], "ready": 9})
    assert ecsr("plan", "edge").out.splitlines()[-1] == "blockers: 0"
    assert "No blockers" in ecsr("plan", "edge", "--format", "rich").out


def test_plan_says_how_to_get_one(sets, ecsr, namespace) -> None:
    sets.create("web")
    result = ecsr("plan", "web")
    assert result.code == 1 and result.err.count("\n") == 1
    assert f"EcsReinstallSet {namespace}/web has no plan: set spec.dryRun: true" in result.err
    assert f"kubectl patch ecsrs web -n {namespace} --type merge" in result.err
    sets.create("dry", dryRun=True)
    waiting = ecsr("plan", "dry")
    assert waiting.code == 1 and "has no plan yet" in waiting.err


def test_without_the_plugin_extra_it_says_how_to_install_it(monkeypatch, capsys):
    from ecs_reinstall import plugin

    monkeypatch.setattr(plugin, "render", None)
    assert plugin.main(["status"]) == 1
    assert "pip install 'ecs-reinstall-operator[plugin]'" in capsys.readouterr().err
