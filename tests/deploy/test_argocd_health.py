"""The Argo CD health check of EcsReinstall (deploy/argocd/health.lua) on a real Lua 5.1 interpreter; the Lua 5.1
checks and the argocd-cm.yaml check cover the EcsReinstallSet one too (its cases: test_argocd_set_health.py).

Argo CD runs health checks on gopher-lua, a Lua 5.1 implementation, with the base, table, string and math
libraries. lupa ships a Lua 5.1 runtime (`lupa.lua51`); the script runs there in a sandbox holding only what Argo
CD offers, over sample resources in every phase the operator writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml
from deploy_support import ARGOCD_DIR

HEALTH_LUA = ARGOCD_DIR / "health.lua"
HEALTH_KEY = "resource.customizations.health.ecs.reinstall.dev_EcsReinstall"
SET_HEALTH_LUA = ARGOCD_DIR / "health-ecsreinstallset.lua"
SET_HEALTH_KEY = "resource.customizations.health.ecs.reinstall.dev_EcsReinstallSet"
# Every health check of deploy/argocd, by its argocd-cm key.
HEALTH_CHECKS = {HEALTH_KEY: HEALTH_LUA, SET_HEALTH_KEY: SET_HEALTH_LUA}

# Runs the script the way Argo CD does: `obj` is a global, the script returns the health table. setfenv (a Lua
# 5.1 function) confines it to Argo CD's libraries: no io, os, require, load or debug.
SANDBOX = """
local source, obj = ...
local chunk, err = loadstring(source, "=health.lua")
if chunk == nil then error(err) end
local env = {
  obj = obj, ipairs = ipairs, pairs = pairs, next = next, type = type, tostring = tostring,
  tonumber = tonumber, select = select, error = error, pcall = pcall, unpack = unpack,
  string = string, table = table, math = math,
}
setfenv(chunk, env)
return chunk()
"""


@dataclass(frozen=True)
class Health:
    status: str
    message: str


@pytest.fixture(scope="module")
def runtime() -> lua51.LuaRuntime:
    lua = lua51.LuaRuntime()
    assert lua.lua_version == (5, 1), "lupa.lua51 must be a Lua 5.1 interpreter"
    return lua


def assess(runtime: lua51.LuaRuntime, resource: dict[str, Any], script: Path = HEALTH_LUA) -> Health:
    run = runtime.eval(f"function(...) {SANDBOX} end")
    obj = runtime.table_from(resource, recursive=True)
    result = run(script.read_text(), obj)
    keys = set(dict(result.items()))
    assert keys == {"status", "message"}, f"health table keys {keys}"
    assert isinstance(result["message"], str) and result["message"], "every health carries a message"
    return Health(result["status"], result["message"])


def condition(type_: str, status: str, reason: str, message: str = "", generation: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-26T10:00:00Z",
        "observedGeneration": generation,
    }


def resource(status: dict[str, Any] | None = None, *, generation: int | None = 1) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web-01", "namespace": "fleet", "uid": "0b6c4a0e"}
    if generation is not None:
        metadata["generation"] = generation
    body: dict[str, Any] = {
        "apiVersion": "ecs.reinstall.dev/v1alpha1",
        "kind": "EcsReinstall",
        "metadata": metadata,
        "spec": {"serverId": "6e2f8c4a-4b1e-4e52-9a5c-0c6f2b1d7e90"},
    }
    if status is not None:
        body["status"] = status
    return body


def phase_status(
    phase: str, reason: str, message: str, *, generation: int = 1, **extra: Any
) -> dict[str, Any]:
    """A status as the operator writes it (reconcile._status): kstatus conditions plus Submitted."""
    done = phase in ("Succeeded", "Failed")
    return {
        "phase": phase,
        "message": message,
        "observedGeneration": generation,
        "conditions": [
            condition("Ready", "True" if phase == "Succeeded" else "False", reason, message, generation),
            condition(
                "Reconciling", "False" if done else "True", phase if done else reason, "" if done else message
            ),
            condition(
                "Stalled",
                "True" if phase == "Failed" else "False",
                reason if phase == "Failed" else phase,
                message if phase == "Failed" else "",
            ),
            condition("Submitted", "True" if phase in ("Reinstalling", "Succeeded") else "False", "Accepted"),
        ],
        **extra,
    }


CASES = [
    (
        "no-status-yet",
        resource(None),
        Health("Progressing", "Waiting for the operator to pick up the resource"),
    ),
    (
        "empty-status",
        resource({}),
        Health("Progressing", "Waiting for the operator to observe generation 1"),
    ),
    (
        "pending-waiting-for-secret",
        resource(phase_status("Pending", "SecretMissing", "Secret fleet/hwc not found; retrying")),
        Health("Progressing", "Secret fleet/hwc not found; retrying"),
    ),
    (
        "pending-server-busy",
        resource(phase_status("Pending", "ServerBusy", "server is being reinstalled by other/web-01-old")),
        Health("Progressing", "server is being reinstalled by other/web-01-old"),
    ),
    (
        "submitting",
        resource(phase_status("Submitting", "Submitting", "submitting the reinstall")),
        Health("Progressing", "submitting the reinstall"),
    ),
    (
        "reinstalling",
        resource(
            phase_status(
                "Reinstalling",
                "JobRunning",
                "cloud job 70a599e0 is RUNNING",
                jobId="70a599e0",
                jobStatus="RUNNING",
            )
        ),
        Health("Progressing", "cloud job 70a599e0 is RUNNING"),
    ),
    (
        "succeeded",
        resource(phase_status("Succeeded", "JobSucceeded", "reinstalled in 412 s", jobStatus="SUCCESS")),
        Health("Healthy", "reinstalled in 412 s"),
    ),
    (
        "succeeded-without-message",
        resource(phase_status("Succeeded", "JobSucceeded", "")),
        Health("Healthy", "The reinstall succeeded"),
    ),
    (
        "failed-cloud-job",
        resource(
            phase_status(
                "Failed",
                "JobFailed",
                "cloud job 70a599e0 failed: Ecs.0005 image not found",
                failure={"code": "Ecs.0005", "reason": "image not found"},
            )
        ),
        Health("Degraded", "cloud job 70a599e0 failed: Ecs.0005 image not found"),
    ),
    (
        "failed-invalid-spec",
        resource(
            phase_status("Failed", "InvalidSpec", "spec.keyName needs spec.userId: set both or neither")
        ),
        Health("Degraded", "spec.keyName needs spec.userId: set both or neither"),
    ),
    (
        "failed-timeout",
        resource(phase_status("Failed", "Timeout", "no result after 1800 s; the cloud job may still run")),
        Health("Degraded", "no result after 1800 s; the cloud job may still run"),
    ),
    (
        "stalled-without-message-uses-reason",
        resource(
            {
                "phase": "Failed",
                "observedGeneration": 1,
                "conditions": [condition("Stalled", "True", "InvalidSpec")],
            }
        ),
        Health("Degraded", "InvalidSpec"),
    ),
    (
        "failed-phase-without-conditions",
        resource({"phase": "Failed", "message": "server deleted", "observedGeneration": 1}),
        Health("Degraded", "server deleted"),
    ),
    (
        "stale-generation-even-if-ready",
        resource(phase_status("Succeeded", "JobSucceeded", "done"), generation=2),
        Health("Progressing", "Waiting for the operator to observe generation 2 (observed 1)"),
    ),
    (
        "stale-generation-even-if-stalled",
        resource(phase_status("Failed", "InvalidSpec", "bad", generation=1), generation=3),
        Health("Progressing", "Waiting for the operator to observe generation 3 (observed 1)"),
    ),
    (
        "no-generation-in-metadata",
        resource(phase_status("Succeeded", "JobSucceeded", "done"), generation=None),
        Health("Healthy", "done"),
    ),
    (
        "conditions-not-a-list",
        resource({"phase": "Reinstalling", "observedGeneration": 1, "conditions": "garbage"}),
        Health("Progressing", "Phase Reinstalling"),
    ),
    (
        "phase-only",
        resource({"observedGeneration": 1, "message": "queued"}),
        Health("Progressing", "queued"),
    ),
    (
        "nothing-but-generation",
        resource({"observedGeneration": 1}),
        Health("Progressing", "Phase Pending"),
    ),
]


@pytest.mark.parametrize(("name", "obj", "expected"), CASES, ids=[c[0] for c in CASES])
def test_health(runtime: lua51.LuaRuntime, name: str, obj: dict[str, Any], expected: Health) -> None:
    assert assess(runtime, obj) == expected


def test_every_phase_and_every_argo_status_is_covered() -> None:
    phases = {c[1].get("status", {}).get("phase") for c in CASES}
    assert {"Pending", "Submitting", "Reinstalling", "Succeeded", "Failed"} <= phases
    assert {c[2].status for c in CASES} == {"Healthy", "Progressing", "Degraded"}


# Lua 5.2+ names and syntax that a Lua 5.1 (gopher-lua) interpreter lacks, and gopher-lua's %q quirk: caught
# even on a path the table above would not reach.
NOT_IN_LUA_51 = [
    (r"\bgoto\b", "goto"),
    (r"::\w+::", "labels"),
    (r"//", "integer division"),
    (r"[^~=<>]~[^=]|<<|>>|[^.]&|\|", "bitwise operators"),
    (r"\btable\.(unpack|pack|move)\b", "table.unpack/pack/move"),
    (r"\bstring\.(pack|unpack)\b", "string.pack/unpack"),
    (r"\butf8\.", "utf8 library"),
    (r"\bmath\.(type|tointeger|ult)\b", "math.type/tointeger/ult"),
    (r"%q", "string.format %q (gopher-lua differs)"),
    (r"\b(io|os|require|load|loadfile|dofile|debug)\b\s*[.(]", "libraries Argo CD does not offer"),
]


def _code_only(source: str) -> str:
    without_comments = re.sub(r"--[^\n]*", "", source)
    return re.sub(r'"(\\.|[^"\\])*"', '""', without_comments)


@pytest.mark.parametrize("script", sorted(HEALTH_CHECKS.values()), ids=lambda p: p.name)
@pytest.mark.parametrize(("pattern", "feature"), NOT_IN_LUA_51, ids=[f for _, f in NOT_IN_LUA_51])
def test_uses_no_feature_missing_in_lua_51(pattern: str, feature: str, script: Path) -> None:
    code = _code_only(script.read_text())
    assert not re.search(pattern, code), f"{script.name} uses {feature}, which Argo CD's Lua 5.1 lacks"


def test_every_lua_file_is_a_wired_health_check() -> None:
    assert sorted(ARGOCD_DIR.glob("*.lua")) == sorted(HEALTH_CHECKS.values())


def test_lua_51_interpreter_rejects_what_the_static_check_forbids(runtime: lua51.LuaRuntime) -> None:
    """Keeps the runtime honest: a Lua 5.2+ interpreter would accept these."""
    compile_ = runtime.eval("function(s) local f, err = loadstring(s) return f ~= nil end")
    assert compile_("return 1") is True
    assert compile_("goto done ::done::") is False
    assert compile_("return 7 // 2") is False


def test_argocd_cm_carries_every_health_check_verbatim() -> None:
    config_map = yaml.safe_load((ARGOCD_DIR / "argocd-cm.yaml").read_text())
    assert config_map["kind"] == "ConfigMap" and config_map["metadata"]["name"] == "argocd-cm"
    assert set(config_map["data"]) == set(HEALTH_CHECKS)
    for key, script in HEALTH_CHECKS.items():
        assert config_map["data"][key] == script.read_text(), (
            f"argocd-cm.yaml is stale ({key}): run deploy/argocd/sync-argocd-cm.sh"
        )


def test_examples_synced_before_the_crd_exists_skip_the_dry_run() -> None:
    examples = [yaml.safe_load(p.read_text()) for p in sorted((ARGOCD_DIR / "examples").glob("*.yaml"))]
    reinstalls = [e for e in examples if e["kind"] == "EcsReinstall"]
    assert reinstalls
    for reinstall in reinstalls:
        annotations = reinstall["metadata"]["annotations"]
        assert "SkipDryRunOnMissingResource=true" in annotations["argocd.argoproj.io/sync-options"]
        assert int(annotations["argocd.argoproj.io/sync-wave"]) > 0
    applications = {e["metadata"]["name"]: e for e in examples if e["kind"] == "Application"}
    operator_app = applications["ecs-reinstall-operator"]
    reinstalls_app = applications["server-reinstalls"]
    assert "SkipDryRunOnMissingResource=true" in reinstalls_app["spec"]["syncPolicy"]["syncOptions"]
    assert "ServerSideApply=true" in operator_app["spec"]["syncPolicy"]["syncOptions"]

    def wave(app: dict[str, Any]) -> int:
        return int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])

    assert wave(operator_app) < wave(reinstalls_app), "the operator (and its CRD) syncs first"
