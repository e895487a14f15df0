"""The kustomize base, rendered with the real `kubectl kustomize`, matches the Helm chart's default render:
same RBAC rules, same pod (security, args, probes, ports, volumes) and the same effective environment."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from deploy_support import (
    CRD_FILE_NAMES,
    DEFAULT_NAMESPACE,
    DEFAULT_RELEASE,
    MANIFESTS_DIR,
    Helm,
    by_kind,
    container,
    load_yaml_documents,
    only,
    run_tool,
    service_account_grants,
)

from ecs_reinstall import settings as operator_settings


@pytest.fixture(scope="module")
def kustomized(kubectl_binary: str) -> list[dict[str, Any]]:
    return load_yaml_documents(run_tool([kubectl_binary, "kustomize", str(MANIFESTS_DIR)]).stdout)


@pytest.fixture(scope="module")
def chart_default(helm: Helm) -> list[dict[str, Any]]:
    return helm.render(include_crds=True)


def test_renders_every_object(kustomized: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in kustomized)
    assert kinds == sorted(
        [
            "Namespace",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
        ]
    )
    assert only(kustomized, "Namespace")["metadata"]["name"] == DEFAULT_NAMESPACE
    for doc in kustomized:
        if doc["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == DEFAULT_NAMESPACE, doc["kind"]


def test_same_crds_as_the_chart(
    kustomized: list[dict[str, Any]], chart_default: list[dict[str, Any]]
) -> None:
    def by_name(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        crds = {}
        for doc in by_kind(docs, "CustomResourceDefinition"):
            doc = copy.deepcopy(doc)
            doc["metadata"].pop("labels", None)  # kustomize adds the part-of label
            crds[doc["metadata"]["name"]] = doc
        return crds

    ours = by_name(kustomized)
    assert sorted(ours) == sorted(name.removesuffix(".yaml") for name in CRD_FILE_NAMES)
    assert ours == by_name(chart_default)


def test_same_rbac_as_the_chart_default(
    kustomized: list[dict[str, Any]], chart_default: list[dict[str, Any]]
) -> None:
    ours = service_account_grants(kustomized, DEFAULT_NAMESPACE, "ecs-reinstall-operator")
    chart = service_account_grants(chart_default, DEFAULT_NAMESPACE, DEFAULT_RELEASE)
    assert ours, "the kustomize base grants the operator's ServiceAccount nothing"
    assert ours == chart, f"only kustomize: {sorted(ours - chart)}; only chart: {sorted(chart - ours)}"


def effective_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator container's environment as the kubelet builds it: envFrom ConfigMaps, then env."""
    operator = container(only(docs, "Deployment"))
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind(docs, "ConfigMap")}
    env: dict[str, Any] = {}
    for source in operator.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    env.update({e["name"]: e.get("value", e.get("valueFrom")) for e in operator.get("env", [])})
    return env


def test_same_effective_environment(
    kustomized: list[dict[str, Any]], chart_default: list[dict[str, Any]]
) -> None:
    assert effective_env(kustomized) == effective_env(chart_default)


def comparable_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = copy.deepcopy(only(docs, "Deployment"))
    pod = deployment["spec"]["template"]["spec"]
    for c in pod["containers"]:
        c.pop("env", None)
        c.pop("envFrom", None)
    return {
        "replicas": deployment["spec"]["replicas"],
        "strategy": deployment["spec"]["strategy"],
        "selector": deployment["spec"]["selector"],
        "pod": pod,
    }


def test_same_deployment_as_the_chart_default(
    kustomized: list[dict[str, Any]], chart_default: list[dict[str, Any]]
) -> None:
    assert comparable_pod(kustomized) == comparable_pod(chart_default)


def test_same_disruption_budget_as_the_chart_default(
    kustomized: list[dict[str, Any]], chart_default: list[dict[str, Any]]
) -> None:
    ours, chart = only(kustomized, "PodDisruptionBudget"), only(chart_default, "PodDisruptionBudget")
    assert ours["metadata"]["name"] == chart["metadata"]["name"]
    assert (
        ours["spec"]
        == chart["spec"]
        == {
            "minAvailable": 1,
            "selector": only(kustomized, "Deployment")["spec"]["selector"],
        }
    )


def test_two_replicas_with_leader_election(kustomized: list[dict[str, Any]]) -> None:
    deployment = only(kustomized, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    env = effective_env(kustomized)
    assert env["ECS_REINSTALL_LEADER_ELECTION"] == "true"
    assert env["ECS_REINSTALL_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    lease_roles = [r for r in by_kind(kustomized, "Role") if "leases" in str(r["rules"])]
    assert [r["metadata"]["namespace"] for r in lease_roles] == [DEFAULT_NAMESPACE]
    names = {n for rule in lease_roles[0]["rules"] for n in rule.get("resourceNames", [])}
    assert names == {env["ECS_REINSTALL_LEADER_ELECTION_LEASE_NAME"]}


def test_same_metrics_service(kustomized: list[dict[str, Any]], chart_default: list[dict[str, Any]]) -> None:
    ours, chart = only(kustomized, "Service"), only(chart_default, "Service")
    assert ours["metadata"]["name"] == chart["metadata"]["name"]
    assert ours["spec"] == chart["spec"]


TENANCY_SETTINGS = {
    "ECS_REINSTALL_DEFAULT_CREDENTIALS_NAMESPACES",
    "ECS_REINSTALL_DEFAULT_CREDENTIALS_NAMESPACE_SELECTOR",
    "ECS_REINSTALL_OWNER_TAG_KEY",
    "ECS_REINSTALL_OWNER_TAG_VALUES",
}


def test_tenancy_settings_are_unset_with_examples_the_operator_accepts(
    kustomized: list[dict[str, Any]],
) -> None:
    """Like the chart's defaults, the base allows the default credentials in the operator's namespace only and
    checks no owner tag; settings.env shows each tenancy setting as a commented example, valid as written."""
    assert not TENANCY_SETTINGS & effective_env(kustomized).keys()
    lines = (MANIFESTS_DIR / "settings.env").read_text().splitlines()
    examples = dict(line[2:].split("=", 1) for line in lines if re.match(r"# ECS_REINSTALL_\w+=", line))
    assert examples.keys() == TENANCY_SETTINGS
    loaded = operator_settings.load(environ=examples)
    assert loaded.default_credentials_namespaces == ("team-a", "team-b")
    assert loaded.default_credentials_namespace_selector == "ecs.reinstall.dev/default-credentials=allowed"
    assert loaded.owner_tag_key == "ecs-reinstall-namespace"
    assert loaded.owner_tag_values == (("team-a", ("web-a", "shared")), ("team-b", ("web-b",)))
