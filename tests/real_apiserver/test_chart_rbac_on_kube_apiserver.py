"""The chart's RBAC on a real kube-apiserver (1.20.2, RBAC authorizer) with a real ServiceAccount token.

For each mode (cluster-wide; `watchNamespaces`; cluster-wide with `credentials.allowedNamespaceSelector`) a fresh
server (tests/realkube.py) gets the rendered chart applied with kubectl, as `helm install` would, and the operator
runs as the rendered Deployment runs it, with a token of the chart's ServiceAccount from the TokenRequest API (what
`kubectl create token` does). The server's audit log tells every request the operator made and what the
authorizer answered:

1. with the chart's RBAC as rendered, both EcsReinstall samples reach Succeeded, the EcsReinstallSet sample (two
   servers, both at once) reaches Completed through two EcsReinstall children it creates, and no request of the
   ServiceAccount is denied;
2. for each grant of the chart (one verb on one resource, one resourceName where the chart names one), a run with
   that grant removed meets a 403 on exactly that verb and resource: every grant is needed by the real authorizer.
   The selector mode's ClusterRole is the cluster-wide mode's plus list on namespaces: only that grant is taken
   out there (the others are proven in the cluster-wide mode).

The ECS side is the ECS emulator, started as a process like in tests/deploy/test_operator_on_kube_emulator.py,
whose helpers (samples, the container environment) these tests share.

The set makes the set grants provable both ways: list and watch on ecsreinstallsets (kopf's stream; the leader's
listing), get (each rollout pass), patch on ecsreinstallsets/status (the rollout) and create on ecsreinstalls (the
children). No controller-manager runs, so nothing garbage-collects the children: every run deletes them itself.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from deploy_support import Grant, Helm, by_kind, container, service_account_grants
from test_operator_on_kube_emulator import (
    ACCESS_KEY,
    DEFAULT_CREDENTIALS,
    LIST_NAMESPACES,
    OPERATOR_NAMESPACE,
    PROJECT_ID,
    RELEASE,
    SECRET_KEY,
    SET_NAME,
    TEAM_NAMESPACES,
    Kubectl,
    container_environment,
    default_credentials_values,
    free_port,
    namespace_doc,
    namespace_labels,
    samples,
    serving,
    set_done,
    stop_process,
)

from realkube import RealKube, running_real_kube, unavailable_reason

MODES = ["clusterwide", "namespaced", "selector"]
SERVICE_ACCOUNT = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}"
RUN_SECONDS = (
    60  # until the samples are terminal (positive run) or the 403 is met (a grant removed); a loaded
)
# CI machine once needed more than 30 s for a start and its first reads (every run ends early when it is done)
SET_SERVER_COUNT = 2


@pytest.fixture(scope="module", autouse=True)
def _needs_the_real_server() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)


@dataclass(frozen=True, order=True)
class Rule:
    """One verb on one resource (and resourceName) of one ClusterRole, or of the Roles of one name (the chart
    renders the same Role into every watched namespace): what a run goes without."""

    role_kind: str
    role_namespaces: tuple[str, ...]
    role_name: str
    group: str
    resource: str
    verb: str
    resource_name: str = ""

    def __str__(self) -> str:
        named = f"/{self.resource_name}" if self.resource_name else ""
        where = f"{','.join(self.role_namespaces)}/" if self.role_namespaces else ""
        return f"{self.verb} {self.group or 'core'}/{self.resource}{named} ({self.role_kind} {where}{self.role_name})"


def chart_rules(docs: list[dict[str, Any]]) -> list[Rule]:
    namespaces: dict[tuple[str, str], list[str]] = {}
    for doc in by_kind(docs, "Role"):
        key = (doc["kind"], doc["metadata"]["name"])
        namespaces.setdefault(key, []).append(doc["metadata"].get("namespace", ""))
    rules = []
    for doc in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        for rule in doc.get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        for name in rule.get("resourceNames") or [""]:
                            meta = doc["metadata"]
                            rules.append(
                                Rule(
                                    doc["kind"],
                                    tuple(sorted(namespaces.get((doc["kind"], meta["name"]), []))),
                                    meta["name"],
                                    group,
                                    resource,
                                    verb,
                                    name,
                                )
                            )
    return sorted(set(rules))


def without(docs: list[dict[str, Any]], removed: Rule) -> list[dict[str, Any]]:
    """The chart's documents with one verb on one resource taken out of one role, in every namespace it is in
    (the rest kept as they are)."""
    result = copy.deepcopy(docs)
    for doc in result:
        if doc["kind"] != removed.role_kind or doc["metadata"]["name"] != removed.role_name:
            continue
        kept = [r for r in chart_rules([doc]) if _key(r) != _key(removed)]
        doc["rules"] = [
            {
                "apiGroups": [r.group],
                "resources": [r.resource],
                "verbs": [r.verb],
                **({"resourceNames": [r.resource_name]} if r.resource_name else {}),
            }
            for r in kept
        ]
    return result


def _key(rule: Rule) -> tuple[str, str, str, str, str, str]:
    return (rule.role_kind, rule.role_name, rule.group, rule.resource, rule.verb, rule.resource_name)


@dataclass
class Deployment:
    mode: str
    kube: RealKube
    kubectl: Kubectl
    docs: list[dict[str, Any]]
    values: dict[str, Any]
    ecs_url: str
    work: Path
    operator_kubeconfig: Path
    runs: int = 0


@dataclass
class OperatorRun:
    reinstalls: dict[str, dict[str, Any]] = field(default_factory=dict)
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)  # the set sample, as last read
    children: list[dict[str, Any]] = field(default_factory=list)  # the set's EcsReinstalls, at the end
    audit: list[dict[str, Any]] = field(default_factory=list)  # the ServiceAccount's requests in this run
    log: str = ""
    exit_code: int | None = None

    def denied(self) -> list[tuple[str, str, str, str, str]]:
        """(verb, group, resource[/subresource], namespace, name) of every request the authorizer denied."""
        found = []
        for event in self.audit:
            if (event.get("responseStatus") or {}).get("code") != 403:
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            found.append(
                (
                    event["verb"],
                    ref.get("apiGroup", ""),
                    resource,
                    ref.get("namespace", ""),
                    ref.get("name", ""),
                )
            )
        return sorted(set(found))

    def phases(self) -> dict[str, str]:
        return {k: (v.get("status") or {}).get("phase", "") for k, v in self.reinstalls.items()}

    def set_phases(self) -> dict[str, str]:
        return {k: (v.get("status") or {}).get("phase", "") for k, v in self.sets.items()}


def service_account_token(kube: RealKube) -> str:
    """A token of the chart's ServiceAccount from the TokenRequest API (`kubectl create token`)."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    status, answer = kube.request(
        "POST", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/serviceaccounts/{RELEASE}/token", body
    )
    assert status == 201, f"TokenRequest answered {status}: {answer}"
    assert isinstance(answer, dict)
    return answer["status"]["token"]


@contextmanager
def deployed(mode: str, helm: Helm, kubectl_binary: str, work: Path) -> Iterator[Deployment]:
    python = Path(sys.executable)
    with ExitStack() as stack:
        kube = stack.enter_context(running_real_kube(work / "kube", controller_manager=False))
        ecs = [str(python), "-m", "ecs_emulator", "--port", "0", "--project-id", PROJECT_ID]
        ecs += [
            "--access-key",
            ACCESS_KEY,
            "--secret-key",
            SECRET_KEY,
            "--job-seconds",
            "0.5",
            "--init-seconds",
            "0",
        ]
        ecs_url = stack.enter_context(serving(ecs, work / "ecs.log"))
        values: dict[str, Any] = {
            "region": "ap-southeast-1",
            "projectId": PROJECT_ID,
            "endpoint": ecs_url,
            "credentials": {"existingSecret": DEFAULT_CREDENTIALS, **default_credentials_values(mode)},
            "logFormat": "text",
            "metrics": {"port": free_port()},
            "health": {"port": free_port()},
            "leaderElection": {"retryPeriodSeconds": 0.5},
        }
        if mode == "namespaced":
            values["watchNamespaces"] = list(TEAM_NAMESPACES)
        docs = helm.render(values, tmp_path=work, namespace=OPERATOR_NAMESPACE, include_crds=True)
        kubectl = Kubectl(kubectl_binary, kube.kubeconfig)
        kubectl.apply(
            [namespace_doc(n, namespace_labels(mode, n)) for n in (OPERATOR_NAMESPACE, *TEAM_NAMESPACES)],
            work / "namespaces.yaml",
        )
        # 1.20 knows no x-kubernetes-validations: kubectl's client-side check would refuse the CRD; the server
        # drops the rules (the CEL checks then are the operator's own)
        crds = work / "crds.yaml"
        crds.write_text(yaml.safe_dump_all(by_kind(docs, "CustomResourceDefinition"), sort_keys=False))
        kubectl("apply", "--validate=false", "-f", str(crds))
        kubectl("wait", "--for=condition=Established", "--timeout=30s", "-f", str(crds))
        # the chart says kubeVersion >=1.28; of what it renders, 1.20 lacks only policy/v1 (PodDisruptionBudget,
        # 1.21), which has no part in the RBAC
        unserved = {("policy/v1", "PodDisruptionBudget")}
        chart = [
            d
            for d in docs
            if d["kind"] != "CustomResourceDefinition" and (d["apiVersion"], d["kind"]) not in unserved
        ]
        kubectl.apply(chart, work / "chart.yaml")
        operator_kubeconfig = kube.kubeconfig_for(
            work / "operator-kubeconfig", service_account_token(kube), user=SERVICE_ACCOUNT
        )
        yield Deployment(mode, kube, kubectl, docs, values, ecs_url, work, operator_kubeconfig)


def apply_rbac(deployment: Deployment, docs: list[dict[str, Any]], name: str) -> None:
    rbac = [d for d in docs if d["kind"] in ("ClusterRole", "Role")]
    deployment.kubectl.apply(rbac, deployment.work / f"rbac-{name}.yaml")


def clear_reinstalls(deployment: Deployment) -> None:
    """Delete every EcsReinstallSet and EcsReinstall of earlier runs (the sets' children too: no garbage collector
    runs here; finalizers first: no operator runs now) and the leader Lease, so that every run starts as on a fresh
    install."""
    deployment.kubectl("delete", "-n", OPERATOR_NAMESPACE, "lease", RELEASE, "--ignore-not-found")
    for ns in TEAM_NAMESPACES:
        deployment.kubectl("delete", "-n", ns, "ecsreinstallsets", "--all", "--wait=true")
        path = f"/apis/ecs.reinstall.dev/v1alpha1/namespaces/{ns}/ecsreinstalls"
        status, listed = deployment.kube.request("GET", path)
        assert status == 200, listed
        assert isinstance(listed, dict)
        for item in listed["items"]:
            name = item["metadata"]["name"]
            deployment.kubectl(
                "patch",
                "-n",
                ns,
                "ecsreinstall",
                name,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
            )
            deployment.kubectl("delete", "-n", ns, "ecsreinstall", name, "--wait=true")


def run_operator(deployment: Deployment, stop_when_denied: bool) -> OperatorRun:
    """Fresh samples on fresh ECS servers, the operator as the Deployment runs it, until the samples are terminal
    (the EcsReinstalls Succeeded or Failed, the set Completed or Stalled; or, with `stop_when_denied`, the first
    403), then SIGTERM; what the audit log saw meanwhile."""
    deployment.runs += 1
    run_id = deployment.runs
    clear_reinstalls(deployment)
    docs = samples(TEAM_NAMESPACES)
    servers = []
    for index, doc in enumerate(by_kind(docs, "EcsReinstall")):
        server = f"5a1d0c3e-0000-4000-8000-{run_id:06d}{index:06d}"
        doc["spec"]["serverId"] = server
        servers.append(server)
        if index == 0:  # deleted by the operator once finished: the delete verb is used too
            doc["spec"]["ttlSecondsAfterFinished"] = 2  # seen Succeeded (polled every 0.3 s), then gone
    (set_doc,) = by_kind(docs, "EcsReinstallSet")
    set_servers = [
        f"5a1d0c3e-0000-4000-8000-{run_id:06d}{900 + index:06d}" for index in range(SET_SERVER_COUNT)
    ]
    set_doc["spec"]["selector"] = {"serverIds": set_servers}
    set_doc["spec"]["strategy"]["maxInFlight"] = len(set_servers)
    for server in (*servers, *set_servers):
        httpx.post(
            f"{deployment.ecs_url}/_emulator/servers", json={"id": server, "status": "ACTIVE"}, timeout=10
        ).raise_for_status()
    deployment.kubectl.apply(docs, deployment.work / f"samples-{run_id}.yaml")
    audit_before = len(deployment.kube.audit_events())
    operator_doc = by_kind(deployment.docs, "Deployment")[0]
    env = {
        **container_environment(operator_doc, OPERATOR_NAMESPACE),
        "KUBECONFIG": str(deployment.operator_kubeconfig),
        "HOME": str(deployment.work),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    log_path = deployment.work / f"operator-{run_id}.log"
    run = OperatorRun()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ecs-reinstall-operator"), *container(operator_doc)["args"]],
            env=env,
            cwd=deployment.work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + RUN_SECONDS
            while time.monotonic() < deadline and proc.poll() is None:
                for doc in by_kind(docs, "EcsReinstall"):
                    ns, name = doc["metadata"]["namespace"], doc["metadata"]["name"]
                    status, body = deployment.kube.request(
                        "GET", f"/apis/ecs.reinstall.dev/v1alpha1/namespaces/{ns}/ecsreinstalls/{name}"
                    )
                    if status == 404 and doc["spec"].get("ttlSecondsAfterFinished") is not None:
                        last = (run.reinstalls.get(f"{ns}/{name}") or {}).get("status") or {}
                        body = {"status": {**last, "deletedAfterTTL": True}}
                    else:
                        assert status == 200 and isinstance(body, dict), body
                    run.reinstalls[f"{ns}/{name}"] = body
                set_ns = set_doc["metadata"]["namespace"]
                status, body = deployment.kube.request(
                    "GET", f"/apis/ecs.reinstall.dev/v1alpha1/namespaces/{set_ns}/ecsreinstallsets/{SET_NAME}"
                )
                assert status == 200 and isinstance(body, dict), body
                run.sets[f"{set_ns}/{SET_NAME}"] = body
                ttl_done = all(
                    (v.get("status") or {}).get("deletedAfterTTL")
                    for v, d in zip(run.reinstalls.values(), by_kind(docs, "EcsReinstall"), strict=True)
                    if d["spec"].get("ttlSecondsAfterFinished") is not None
                )
                if (
                    set(run.phases().values()) <= {"Succeeded", "Failed"}
                    and ttl_done
                    and all(set_done(b) for b in run.sets.values())
                ):
                    break
                run.audit = [
                    e for e in deployment.kube.audit_events()[audit_before:] if _by_service_account(e)
                ]
                if stop_when_denied and run.denied():
                    time.sleep(0.5)  # what follows the first 403 (retries, other calls), for the log
                    break
                time.sleep(0.3)
        finally:
            run.exit_code = stop_process(proc)
    run.log = log_path.read_text(errors="replace")
    run.audit = [e for e in deployment.kube.audit_events()[audit_before:] if _by_service_account(e)]
    set_ns = set_doc["metadata"]["namespace"]
    status, listed = deployment.kube.request(
        "GET", f"/apis/ecs.reinstall.dev/v1alpha1/namespaces/{set_ns}/ecsreinstalls"
    )
    assert status == 200 and isinstance(listed, dict), listed
    run.children = [
        item
        for item in listed["items"]
        if any(o.get("kind") == "EcsReinstallSet" for o in item["metadata"].get("ownerReferences", []))
    ]
    return run


def _by_service_account(event: dict[str, Any]) -> bool:
    return (event.get("user") or {}).get("username") == SERVICE_ACCOUNT


def _tail(run: OperatorRun) -> str:
    return "\n".join(run.log.splitlines()[-30:])


@pytest.fixture(scope="module")
def rbac_runs(helm: Helm, kubectl_binary: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Per mode: the chart's rules, the run with all of them, and one run per rule without it."""
    results: dict[str, Any] = {}
    for mode in MODES:
        with deployed(mode, helm, kubectl_binary, tmp_path_factory.mktemp(f"real-rbac-{mode}")) as deployment:
            rules = chart_rules(deployment.docs)
            full = run_operator(deployment, stop_when_denied=False)
            reduced: dict[Rule, OperatorRun] = {}
            for rule in rules:
                if mode == "selector" and rule.resource != "namespaces":
                    continue  # the cluster-wide mode's rule, proven there
                apply_rbac(deployment, without(deployment.docs, rule), f"without-{len(reduced)}")
                try:
                    reduced[rule] = run_operator(deployment, stop_when_denied=True)
                finally:
                    apply_rbac(deployment, deployment.docs, "full")
            grants = service_account_grants(deployment.docs, OPERATOR_NAMESPACE, RELEASE)
            results[mode] = {"rules": rules, "full": full, "reduced": reduced, "grants": grants}
    return results


@pytest.mark.parametrize("mode", MODES)
def test_the_operator_succeeds_with_the_charts_rbac_and_no_request_is_denied(
    rbac_runs: dict[str, Any], mode: str
) -> None:
    run: OperatorRun = rbac_runs[mode]["full"]
    assert set(run.phases().values()) == {"Succeeded"}, f"{run.phases()}\n{_tail(run)}"
    assert set(run.set_phases().values()) == {"Completed"}, f"{run.set_phases()}\n{_tail(run)}"
    assert len(run.children) == SET_SERVER_COUNT, run.children
    assert {(c.get("status") or {}).get("phase") for c in run.children} == {"Succeeded"}
    assert run.audit, "the audit log shows no request of the operator's ServiceAccount"
    assert not run.denied(), f"denied by the real authorizer: {run.denied()}\n{_tail(run)}"
    assert run.exit_code == 0, _tail(run)


# The requests that only an EcsReinstallSet makes, as the audit log names them (verb, resource[/subresource]).
SET_REQUESTS = {
    ("list", "ecsreinstallsets"),  # kopf's listing, and the leader's
    ("watch", "ecsreinstallsets"),  # kopf's watch stream
    ("get", "ecsreinstallsets"),  # each rollout pass re-reads its set
    ("patch", "ecsreinstallsets/status"),  # the rollout, a merge patch conditional on the resourceVersion
    ("create", "ecsreinstalls"),  # the children
}


@pytest.mark.parametrize("mode", MODES)
def test_the_set_makes_its_requests_and_owns_its_children(rbac_runs: dict[str, Any], mode: str) -> None:
    """The set's own requests reach the real server (and are allowed: see the test above), and its children are
    owned by it as a controller without blockOwnerDeletion, which needs no grant on ecsreinstallsets/finalizers
    where the OwnerReferencesPermissionEnforcement admission plugin is on."""
    run: OperatorRun = rbac_runs[mode]["full"]
    requests = set()
    for event in run.audit:
        ref = event.get("objectRef") or {}
        if ref.get("apiGroup") != "ecs.reinstall.dev":
            continue
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        if resource.startswith("ecsreinstallsets") or (event["verb"], resource) == (
            "create",
            "ecsreinstalls",
        ):
            requests.add((event["verb"], resource))
    assert requests == SET_REQUESTS, _tail(run)
    (body,) = run.sets.values()
    for child in run.children:
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "ecs.reinstall.dev/v1alpha1",
                "kind": "EcsReinstallSet",
                "name": SET_NAME,
                "uid": body["metadata"]["uid"],
                "controller": True,
            }
        ]


def _matches(rule: Rule, denied: tuple[str, str, str, str, str]) -> bool:
    verb, group, resource, namespace, name = denied
    if (verb, group, resource) != (rule.verb, rule.group, rule.resource):
        return False
    if rule.role_kind == "Role" and namespace not in rule.role_namespaces:
        return False
    return not rule.resource_name or not name or name == rule.resource_name


# Grants a fault-free run does not reach: the operator GETs an EcsReinstall only to re-read it after its
# conditional status patch met a 409 Conflict, which a real server gives only when another writer changed the
# object in between (tests/deploy/test_operator_on_kube_emulator.py injects that 409 on the emulator).
ONLY_AFTER_A_CONFLICT = {("ecs.reinstall.dev", "ecsreinstalls", "get")}


@pytest.mark.parametrize("mode", MODES)
def test_every_rule_of_the_chart_is_needed(rbac_runs: dict[str, Any], mode: str) -> None:
    """Without any one rule the operator meets a 403 on that very verb and resource: the chart grants nothing
    the operator does not use (the emulator-based test proves the same from counted calls)."""
    problems = []
    for rule, run in rbac_runs[mode]["reduced"].items():
        denied = run.denied()
        if (rule.group, rule.resource, rule.verb) in ONLY_AFTER_A_CONFLICT and not denied:
            continue
        if not any(_matches(rule, d) for d in denied):
            problems.append(f"without {rule}: no 403 on it; denied: {denied}; phases {run.phases()}")
        others = [d for d in denied if not _matches(rule, d)]
        if others:
            problems.append(f"without {rule}: other requests denied too: {others}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode", MODES)
def test_the_rules_are_what_the_least_privilege_model_expects(rbac_runs: dict[str, Any], mode: str) -> None:
    """The rules exercised here are the grants tests/deploy evaluates with its own RBAC model."""
    grants: set[Grant] = rbac_runs[mode]["grants"]
    rules: list[Rule] = rbac_runs[mode]["rules"]
    assert {(g.group, g.resource, g.verb, g.resource_name) for g in grants} == {
        (r.group, r.resource, r.verb, r.resource_name) for r in rules
    }
    print(json.dumps([str(r) for r in rules], indent=1))


@pytest.mark.parametrize("mode", MODES)
def test_namespaces_are_listed_only_with_a_selector(rbac_runs: dict[str, Any], mode: str) -> None:
    """Default credentials allowed by name need no namespace request; by a selector, the operator lists the
    namespaces (the real API server evaluating the selector), and the chart's one namespace rule allows it."""
    run: OperatorRun = rbac_runs[mode]["full"]
    requests = set()
    for event in run.audit:
        ref = event.get("objectRef") or {}
        if ref.get("resource") == "namespaces":
            requests.add((event["verb"], ref.get("apiGroup", ""), ref["resource"], ref.get("namespace", "")))
    rules = {(r.group, r.resource, r.verb) for r in rbac_runs[mode]["rules"] if r.resource == "namespaces"}
    if mode == "selector":
        assert requests == {(LIST_NAMESPACES.verb, "", "namespaces", "")}, _tail(run)
        assert rules == {("", "namespaces", "list")}
        assert [str(rule) for rule in rbac_runs[mode]["reduced"]] == [
            str(r) for r in rbac_runs[mode]["rules"] if r.resource == "namespaces"
        ]
    else:
        assert not requests, _tail(run)
        assert not rules
