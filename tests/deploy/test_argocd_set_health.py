"""The Argo CD health check of EcsReinstallSet (deploy/argocd/health-ecsreinstallset.lua) on a real Lua 5.1
interpreter, in the sandbox of test_argocd_health.py (which also holds its Lua 5.1 checks and its argocd-cm key).

The statuses come from the operator's own rollout decisions (`ecs_reinstall.rollout.decide`, as sets.py merges them
into the set's status) wherever the decision makes them, so that a change of what the operator writes shows here;
the set's other statuses (a refused or invalid set, one waiting for a Secret, a dry run) are written as sets.py
writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import lupa.lua51 as lua51
import pytest
from test_argocd_health import SET_HEALTH_LUA, Health, assess, condition

from ecs_reinstall import rollout

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
NAMESPACE, NAME, REVISION = "fleet", "fleet-web", "golden-2026-11"


@pytest.fixture(scope="module")
def runtime() -> lua51.LuaRuntime:
    lua = lua51.LuaRuntime()
    assert lua.lua_version == (5, 1), "lupa.lua51 must be a Lua 5.1 interpreter"
    return lua


def server(n: int) -> str:
    return f"6e2f8c4a-4b1e-4e52-9a5c-{n:012d}"


def set_resource(status: Mapping[str, Any] | None = None, *, generation: int | None = 1) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": NAME, "namespace": NAMESPACE, "uid": "3f1c9a2e"}
    if generation is not None:
        metadata["generation"] = generation
    body: dict[str, Any] = {
        "apiVersion": "ecs.reinstall.dev/v1alpha1",
        "kind": "EcsReinstallSet",
        "metadata": metadata,
        "spec": {
            "selector": {"tags": {"role": "web"}},
            "template": {"adminPasswordSecretRef": {"name": "web-root-password"}, "stopServer": True},
            "revision": REVISION,
        },
    }
    if status is not None:
        body["status"] = dict(status)
    return body


def decided(
    servers: int,
    children: Mapping[int, str],
    *,
    max_in_flight: int = 2,
    max_failures: int = 0,
    admitted: Sequence[int] = (),
    paused: bool = False,
    abort: bool = False,
    generation: int = 1,
) -> dict[str, Any]:
    """The set's status after the operator's decision: a fresh revision over `servers` servers, `admitted`
    admitted earlier, `children` (server number -> child phase), the patch merged in as sets.py writes it."""
    raw = {
        "selector": {"tags": {"role": "web"}},
        "template": {"adminPasswordSecretRef": {"name": "web-root-password"}},
        "revision": REVISION,
        "strategy": {"maxInFlight": max_in_flight, "maxFailures": max_failures},
        "paused": paused,
        "abort": abort,
    }
    spec = rollout.parse_set_spec(raw)
    ids = [(server(n), "ap-southeast-1a") for n in range(servers)]
    status = rollout.new_revision(spec, NAMESPACE, NAME, ids, [], NOW - timedelta(minutes=10))
    status["admitted"] = [server(n) for n in admitted]
    revision = rollout.revision_hash(REVISION)
    kids = {
        server(n): rollout.Child(
            server(n), phase, revision, NOW - timedelta(minutes=1), "JobFailed" if phase == "Failed" else None
        )
        for n, phase in children.items()
    }
    decision = rollout.decide(spec, status, kids, now=NOW)
    return {**status, **decision.patch, "observedGeneration": generation}


def halted(reason: str, message: str, *, stalled: bool = True) -> dict[str, Any]:
    """What sets.SetRunner._halt writes: Stalled for InvalidSpec and Forbidden, Resolving while waiting for an
    input (a Secret)."""
    return {
        "phase": "Stalled" if stalled else "Resolving",
        "message": message,
        "observedGeneration": 1,
        "conditions": [
            condition("Ready", "False", reason),
            condition("Reconciling", "False" if stalled else "True", reason, message),
            condition("Stalled", "True" if stalled else "False", reason, message),
        ],
    }


def planned() -> dict[str, Any]:
    """A dry run (spec.dryRun): the plan in status, phase Planned, the revision's conditions as it started."""
    status = decided(3, {}, max_in_flight=1)
    started = [
        condition("Ready", "False", "Progressing"),
        condition("Reconciling", "True", "Progressing", "Revision golden-2026-11: 3 servers selected"),
        condition("Stalled", "False", "Progressing"),
    ]
    message = (
        "Dry run of revision golden-2026-11: 3 of 3 servers would be reinstalled in 3 waves, 0 blocked, "
        "0 already at the revision; nothing was sent"
    )
    plan = {"servers": 3, "ready": 3, "alreadyAtRevision": 0, "blockers": [], "waves": 3}
    return {
        **status,
        "admitted": [],
        "inFlight": 0,
        "conditions": started,
        "phase": "Planned",
        "message": message,
        "plan": plan,
    }


ALL_DONE = {0: "Succeeded", 1: "Succeeded", 2: "Succeeded"}

CASES = [
    (
        "no-status-yet",
        set_resource(None),
        Health("Progressing", "Waiting for the operator to pick up the set"),
    ),
    (
        "empty-status",
        set_resource({}),
        Health("Progressing", "Waiting for the operator to observe generation 1"),
    ),
    (
        "progressing-first-wave-admitted",
        set_resource(decided(4, {})),
        Health("Progressing", "Revision golden-2026-11: 0 of 4 done, 2 in flight, 0 failed"),
    ),
    (
        "progressing-some-done",
        set_resource(decided(4, {0: "Succeeded", 1: "Reinstalling"}, admitted=(0, 1))),
        Health("Progressing", "Revision golden-2026-11: 1 of 4 done, 2 in flight, 0 failed"),
    ),
    (
        "resolving-waiting-for-a-secret",
        set_resource(halted("WaitingForInput", "Waiting: Secret fleet/hwc not found", stalled=False)),
        Health("Progressing", "Waiting: Secret fleet/hwc not found"),
    ),
    (
        "completed",
        set_resource(decided(3, ALL_DONE, max_in_flight=3, admitted=(0, 1, 2))),
        Health("Healthy", "Revision golden-2026-11: 3 of 3 servers done, 0 failed"),
    ),
    (
        "completed-with-failures",
        set_resource(
            decided(3, {**ALL_DONE, 2: "Failed"}, max_in_flight=3, max_failures=1, admitted=(0, 1, 2))
        ),
        Health("Degraded", "Revision golden-2026-11: 2 of 3 servers done, 1 failed"),
    ),
    (
        "failure-budget-exceeded",
        set_resource(decided(4, {0: "Failed", 1: "Reinstalling"}, admitted=(0, 1))),
        Health(
            "Degraded",
            "Paused: 1 failures exceed the budget of 0 (spec.strategy.maxFailures); 1 in flight finish. Look at "
            "the failed servers, then `kubectl ecsr resume` to go on",
        ),
    ),
    (
        "invalid-spec",
        set_resource(halted("InvalidSpec", "spec.template.keyName needs userId: fix the set's spec")),
        Health("Degraded", "spec.template.keyName needs userId: fix the set's spec"),
    ),
    (
        "forbidden-by-tenancy",
        set_resource(halted("Forbidden", "namespace fleet may not use the default credentials")),
        Health("Degraded", "namespace fleet may not use the default credentials"),
    ),
    (
        "stalled-without-message-uses-reason",
        set_resource(
            {
                "phase": "Stalled",
                "observedGeneration": 1,
                "conditions": [condition("Stalled", "True", "FailureBudgetExceeded")],
            }
        ),
        Health("Degraded", "FailureBudgetExceeded"),
    ),
    (
        "paused-with-reinstalls-in-flight",
        set_resource(decided(4, {0: "Reinstalling"}, admitted=(0,), paused=True)),
        Health("Suspended", "Paused: 0 of 4 done; 1 in flight finish"),
    ),
    (
        "paused-before-anything",
        set_resource(decided(4, {}, paused=True)),
        Health("Suspended", "Paused: 0 of 4 done; 0 in flight finish"),
    ),
    (
        "aborted-while-reinstalls-in-flight-finish",
        set_resource(decided(4, {0: "Succeeded", 1: "Reinstalling"}, admitted=(0, 1), abort=True)),
        Health("Progressing", "Aborted: 1 of 4 done; 1 in flight finish, no new reinstalls"),
    ),
    (
        "aborted-nothing-in-flight",
        set_resource(decided(4, {0: "Succeeded", 1: "Succeeded"}, admitted=(0, 1), abort=True)),
        Health("Suspended", "Aborted: 2 of 4 done; 0 in flight finish, no new reinstalls"),
    ),
    (
        "planned-dry-run",
        set_resource(planned()),
        Health(
            "Suspended",
            "Dry run of revision golden-2026-11: 3 of 3 servers would be reinstalled in 3 waves, 0 blocked, "
            "0 already at the revision; nothing was sent",
        ),
    ),
    (
        "stale-generation-even-if-completed",
        set_resource(decided(3, ALL_DONE, max_in_flight=3, admitted=(0, 1, 2)), generation=2),
        Health("Progressing", "Waiting for the operator to observe generation 2 (observed 1)"),
    ),
    (
        "stale-generation-even-if-stalled",
        set_resource(halted("InvalidSpec", "bad"), generation=3),
        Health("Progressing", "Waiting for the operator to observe generation 3 (observed 1)"),
    ),
    (
        "no-generation-in-metadata",
        set_resource(decided(3, ALL_DONE, max_in_flight=3, admitted=(0, 1, 2)), generation=None),
        Health("Healthy", "Revision golden-2026-11: 3 of 3 servers done, 0 failed"),
    ),
    (
        "completed-phase-without-ready-condition",
        set_resource({"phase": "Completed", "observedGeneration": 1, "message": "3 of 3 done"}),
        Health("Progressing", "3 of 3 done"),
    ),
    (
        "conditions-not-a-list",
        set_resource({"phase": "Progressing", "observedGeneration": 1, "conditions": "garbage"}),
        Health("Progressing", "Phase Progressing"),
    ),
    (
        "nothing-but-generation",
        set_resource({"observedGeneration": 1}),
        Health("Progressing", "Phase Resolving"),
    ),
]


@pytest.mark.parametrize(("name", "obj", "expected"), CASES, ids=[c[0] for c in CASES])
def test_set_health(runtime: lua51.LuaRuntime, name: str, obj: dict[str, Any], expected: Health) -> None:
    assert assess(runtime, obj, SET_HEALTH_LUA) == expected


def test_the_decisions_behind_the_cases_are_what_the_names_say() -> None:
    """The operator's decisions give the phases and reasons the cases are named after (else a case would test
    something other than it says)."""
    by_name = {name: obj["status"] for name, obj, _ in CASES if obj.get("status")}

    def reason(name: str, type_: str = "Stalled") -> tuple[str, str]:
        found = next(c for c in by_name[name]["conditions"] if c["type"] == type_)
        return found["status"], found["reason"]

    assert by_name["completed"]["phase"] == "Completed" and reason("completed", "Ready") == (
        "True",
        "Completed",
    )
    assert reason("completed-with-failures") == ("True", "CompletedWithFailures")
    assert reason("failure-budget-exceeded") == ("True", "FailureBudgetExceeded")
    assert reason("invalid-spec") == ("True", "InvalidSpec")
    assert reason("forbidden-by-tenancy") == ("True", "Forbidden")
    assert by_name["paused-with-reinstalls-in-flight"]["phase"] == "Paused"
    assert by_name["aborted-while-reinstalls-in-flight-finish"]["inFlight"] == 1
    assert by_name["aborted-nothing-in-flight"]["phase"] == "Aborted"
    assert by_name["aborted-nothing-in-flight"]["inFlight"] == 0
    assert by_name["progressing-first-wave-admitted"]["phase"] == "Progressing"


def test_every_phase_and_every_argo_status_is_covered() -> None:
    phases = {(c[1].get("status") or {}).get("phase") for c in CASES}
    every_phase = {v for k, v in vars(rollout.Phase).items() if not k.startswith("_") and isinstance(v, str)}
    assert every_phase <= phases, f"no case for {sorted(every_phase - phases)}"
    assert {c[2].status for c in CASES} == {"Healthy", "Progressing", "Degraded", "Suspended"}
    stalled_reasons = {
        condition["reason"]
        for _, obj, expected in CASES
        for condition in (obj.get("status") or {}).get("conditions") or ()
        if isinstance(condition, dict) and condition["type"] == "Stalled" and condition["status"] == "True"
    }
    assert {"FailureBudgetExceeded", "CompletedWithFailures", "InvalidSpec", "Forbidden"} <= stalled_reasons
