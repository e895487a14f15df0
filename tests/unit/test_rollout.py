"""EcsReinstallSet decisions (rollout.py), table-tested: the cap, the budget, pause/abort, soak, zones, names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ecs_reinstall import rollout
from ecs_reinstall.rollout import Child, decide, parse_set_spec

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEMPLATE = {"keyName": "kp", "userId": "7e25b1da389f4697a79df3a0e5bd494e"}


def spec(**fields):
    raw = {"selector": {"tags": {"role": "web"}}, "template": TEMPLATE, "revision": "r1", **fields}
    return parse_set_spec(raw)


def status(n=20, admitted=(), succeeded=(), failed=(), zones=None, **extra):
    ids = [f"s{i:02d}" for i in range(n)]
    return {
        "revision": "r1",
        "selection": [{"id": s, "zone": (zones or {}).get(s, "az1")} for s in ids],
        "admitted": list(admitted),
        "succeeded": list(succeeded),
        "failed": [{"serverId": s, "code": "X"} for s in failed],
        **extra,
    }


def child(server, phase, ago=0.0, code=None):
    return Child(server, phase, "1", completed_at=NOW - timedelta(seconds=ago), code=code)


@pytest.mark.parametrize(
    ("max_in_flight", "admitted", "children", "expected"),
    [
        (3, [], {}, ["s00", "s01", "s02"]),
        (3, ["s00", "s01", "s02"], {}, []),  # admitted but no child yet: still in flight
        (3, ["s00", "s01", "s02"], {"s00": "Succeeded"}, ["s03"]),
        (3, ["s00", "s01", "s02"], {"s00": "Reinstalling", "s01": "Pending"}, []),
        ("10%", [], {}, ["s00", "s01"]),  # 10% of 20
        ("1%", [], {}, ["s00"]),  # rounded down, at least one
        (3, ["s00", "s01", "s02"], {"s00": "Failed"}, []),  # a failure beyond the budget (0) stops admissions
    ],
)
def test_admissions_never_exceed_the_cap(max_in_flight, admitted, children, expected):
    decision = decide(
        spec(strategy={"maxInFlight": max_in_flight}),
        status(admitted=admitted),
        {s: child(s, p) for s, p in children.items()},
        now=NOW,
    )
    assert list(decision.admit) == expected
    in_flight = decision.patch.get("inFlight")
    cap = rollout.resolve(max_in_flight, 20, at_least_one=True)
    assert in_flight is None or in_flight <= cap


def test_the_cap_holds_over_any_sequence_of_passes():
    """Passes with children finishing at random: never more than maxInFlight admitted and unfinished."""
    import random

    rng = random.Random(7)
    s = spec(strategy={"maxInFlight": 4, "maxFailures": "100%"})
    state = status(n=50)
    children: dict[str, Child] = {}
    for _ in range(400):
        decision = decide(s, state, children, now=NOW)
        state = {**state, **decision.patch}
        for server in (*decision.admit, *decision.create):
            children[server] = child(server, "Pending")
        assert len(rollout.in_flight(state)) <= 4
        for server, c in list(children.items()):
            if c.phase == "Pending" and rng.random() < 0.3:
                children[server] = child(server, rng.choice(["Succeeded", "Succeeded", "Failed"]), code="E")
        if state.get("phase") == "Completed":
            break
    assert state["phase"] == "Completed" and state["done"] + state["failedCount"] == 50


def test_the_failure_budget_and_its_acknowledgement():
    s = spec(strategy={"maxInFlight": 2, "maxFailures": 1})
    before = status(admitted=["s00", "s01"])
    children = {"s00": child("s00", "Failed", code="Ecs.1"), "s01": child("s01", "Failed", code="Ecs.2")}
    stalled = decide(s, before, children, now=NOW)
    assert stalled.patch["phase"] == "Stalled" and stalled.admit == ()
    stall = next(c for c in stalled.patch["conditions"] if c["type"] == "Stalled")
    assert stall["status"] == "True" and stall["reason"] == "FailureBudgetExceeded"
    assert [e[1] for e in stalled.events] == ["FailureBudgetExceeded"]
    after = {**before, **stalled.patch}
    resumed = decide(s, after, children, now=NOW, acknowledged=2)
    assert resumed.patch["phase"] == "Progressing" and resumed.admit == ("s02", "s03")


@pytest.mark.parametrize(("flag", "phase"), [("paused", "Paused"), ("abort", "Aborted")])
def test_pause_and_abort_admit_nothing_and_let_in_flight_finish(flag, phase):
    decision = decide(
        spec(**{flag: True}), status(admitted=["s00"]), {"s00": child("s00", "Reinstalling")}, now=NOW
    )
    assert decision.admit == () and decision.patch["phase"] == phase and decision.patch["inFlight"] == 1
    reconciling = next(c for c in decision.patch["conditions"] if c["type"] == "Reconciling")
    assert reconciling["status"] == "True"  # something still moves


def test_a_success_counts_after_its_soak_and_only_if_the_server_is_active():
    s = spec(strategy={"maxInFlight": 2, "soakSeconds": 60, "maxFailures": 5})
    state = status(admitted=["s00", "s01"])
    children = {"s00": child("s00", "Succeeded", ago=10), "s01": child("s01", "Succeeded", ago=90)}
    first = decide(s, state, children, now=NOW)
    assert first.soak_checks == ("s01",) and first.wake_in == pytest.approx(50)
    assert first.admit == ()  # both still hold their slots
    second = decide(s, state, children, now=NOW, soak_results={"s01": False})
    assert second.patch["failed"] == [{"serverId": "s01", "code": "NotActiveAfterSoak"}]
    third = decide(s, state, children, now=NOW, soak_results={"s01": True})
    assert third.patch["succeeded"] == ["s01"] and third.admit == ("s02",)


def test_zone_spreading():
    zones = {f"s{i:02d}": ("az1" if i < 10 else "az2") for i in range(20)}
    decision = decide(
        spec(strategy={"maxInFlight": 6, "maxInFlightPerZone": 2}), status(zones=zones), {}, now=NOW
    )
    assert decision.admit == ("s00", "s01", "s10", "s11")


def test_completed_with_and_without_failures():
    children = {f"s{i:02d}": child(f"s{i:02d}", "Succeeded") for i in range(3)}
    clean = decide(spec(), status(n=3, admitted=list(children)), children, now=NOW)
    assert clean.patch["phase"] == "Completed"
    assert {c["type"]: c["status"] for c in clean.patch["conditions"]}["Ready"] == "True"
    children["s02"] = child("s02", "Failed", code="E")
    dirty = decide(spec(strategy={"maxFailures": 1}), status(n=3, admitted=list(children)), children, now=NOW)
    assert dirty.patch["phase"] == "Completed"
    conditions = {c["type"]: (c["status"], c["reason"]) for c in dirty.patch["conditions"]}
    assert conditions["Ready"][0] == "False" and conditions["Stalled"] == ("True", "CompletedWithFailures")


def test_names_and_tags_are_deterministic_and_within_limits():
    a = rollout.child_name("web" * 100, "uid-1", 1, "s00")
    assert a == rollout.child_name("web" * 100, "uid-1", 1, "s00") and len(a) <= 253
    assert rollout.child_name("web", "uid-1", 1, "s00") != rollout.child_name(
        "web", "uid-1", 2, "s00"
    )  # rounds
    assert rollout.child_name("web", "uid-1", 1, "s00") != rollout.child_name(
        "web", "uid-2", 1, "s00"
    )  # sets
    tag = rollout.revision_tag("team-a", "web", "golden-1")
    assert tag["key"].startswith("ecsr-") and len(tag["key"]) == 17 and tag["value"] == "golden-1"
    odd = rollout.revision_tag("team-a", "web", "a/b" * 30)
    assert odd["value"].startswith("h-") and len(odd["value"]) <= 43
    assert rollout.revision_tag("team-b", "web", "x")["key"] != tag["key"]  # one key per set


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"selector": {}}, "exactly one of serverIds or tags"),
        ({"selector": {"serverIds": ["a"], "tags": {"a": "b"}}}, "exactly one of serverIds or tags"),
        ({"revision": ""}, "spec.revision is required"),
        ({"strategy": {"maxInFlight": "150%"}}, "not a percentage"),
        ({"strategy": {"maxFailures": -1}}, "must be 0 or more"),
        ({"selector": {"tags": {"a/b": "c"}}}, "contains '/'"),
    ],
)
def test_set_specs_that_cannot_work(raw, message):
    base = {"selector": {"tags": {"role": "web"}}, "template": TEMPLATE, "revision": "r1"}
    with pytest.raises(rollout.InvalidSet, match=message.replace("(", r"\(")):
        parse_set_spec({**base, **raw})


def test_the_committed_set_crd_is_what_the_generator_writes():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    loader = importlib.util.spec_from_file_location(
        "make_set_crd", root / "tools" / "crds" / "make_set_crd.py"
    )
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    assert module.TARGET.read_text() == module.render(), "run python tools/crds/make_set_crd.py"


def test_a_child_created_then_gone_is_never_created_again():
    """A child that vanished (deleted by hand) may have reinstalled its server: the set records a failure rather
    than create it again."""
    s = spec(strategy={"maxInFlight": 2, "maxFailures": 5})
    first = decide(s, status(admitted=["s00", "s01"]), {"s00": child("s00", "Reinstalling")}, now=NOW)
    assert first.patch["created"] == ["s00"] and first.create == ("s01",)  # s01: admitted, never created
    state = {**status(admitted=["s00", "s01"]), **first.patch}
    gone = decide(s, state, {"s01": child("s01", "Pending")}, now=NOW)
    assert {"serverId": "s00", "code": "ChildDeleted"} in gone.patch["failed"]
    assert "s00" not in gone.create


@pytest.mark.parametrize(
    ("annotation", "round_", "expected"),
    [("2:3", 2, 3), ("1:3", 2, 0), ("3", 1, 0), ("2:x", 2, 0), (None, 1, 0), ("2:-1", 2, 0)],
)
def test_an_acknowledgement_counts_only_for_its_round(annotation, round_, expected):
    assert rollout.acknowledged(annotation, round_) == expected


def test_nothing_selected_or_missing_servers_need_a_person():
    empty = decide(spec(), status(n=0), {}, now=NOW)
    assert empty.patch["phase"] == "Stalled"
    assert {c["type"]: c["reason"] for c in empty.patch["conditions"]}["Stalled"] == "NothingSelected"
    children = {"s00": child("s00", "Succeeded")}
    missing = decide(spec(), status(n=1, admitted=["s00"], missing=["x"]), children, now=NOW)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in missing.patch["conditions"]}
    assert conditions["Ready"][0] == "False" and conditions["Stalled"] == ("True", "CompletedWithMissing")


def test_a_template_ttl_and_a_zero_cap_are_refused():
    with pytest.raises(rollout.InvalidSet, match="ttlSecondsAfterFinished cannot be used in a set"):
        spec(template={**TEMPLATE, "ttlSecondsAfterFinished": 0})
    with pytest.raises(rollout.InvalidSet, match="maxInFlight must be 1 or more"):
        spec(strategy={"maxInFlight": 0})
