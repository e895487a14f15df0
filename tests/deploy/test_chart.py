"""The Helm chart, with the real helm: `lint --strict` and `template` over a matrix of values, the schema's
rejections, and what every render must hold (restricted Pod Security, never two working operators: replicas only
with leader election, the contract's settings, the defaults every install needs, names that stay strings, the
Kubernetes version the CRD needs)."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    CHART_DIR,
    CRD_FILE_NAMES,
    DEFAULT_NAMESPACE,
    DEFAULT_RELEASE,
    REPO_ROOT,
    Grant,
    Helm,
    ToolResult,
    by_kind,
    container,
    only,
    service_account_grants,
)

from ecs_reinstall import settings as operator_settings

SERVICE_MONITOR_API = "monitoring.coreos.com/v1"
LEASE_NAME = DEFAULT_RELEASE  # the release's full name
# Leader election: exactly the Lease verbs the elector uses, on its own Lease (create cannot name it), in the
# operator's namespace.
LEASE_GRANTS = {
    Grant(DEFAULT_NAMESPACE, "coordination.k8s.io", "leases", "create"),
    Grant(DEFAULT_NAMESPACE, "coordination.k8s.io", "leases", "get", LEASE_NAME),
    Grant(DEFAULT_NAMESPACE, "coordination.k8s.io", "leases", "update", LEASE_NAME),
}


@pytest.fixture(scope="session")
def helm(chart_helm: Helm) -> Helm:
    """The chart as a user gets it, without the packaging tests' base values (conftest.py): every test here
    states the values it needs."""
    return chart_helm


# What every install needs unless requireDefaults is false: the operator's default region and credentials.
REQUIRED_DEFAULTS: dict[str, Any] = {"region": "ap-southeast-1", "credentials": {"existingSecret": "hwc"}}
# The opt-out: every EcsReinstall brings its own spec.region and spec.credentialsSecretRef.
OWN_REGION_AND_CREDENTIALS: dict[str, Any] = {"requireDefaults": False}


def merged(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """values over base, maps merged key by key (as helm merges values files)."""
    result = copy.deepcopy(dict(base))
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def installable(values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """values, with the default region and credentials that an install needs where values leave them out."""
    return merged(REQUIRED_DEFAULTS, values or {})


@dataclass(frozen=True)
class Case:
    id: str
    values: dict[str, Any] = field(default_factory=dict)
    api_versions: tuple[str, ...] = ()


MATRIX = [
    Case("defaults", installable()),
    Case("own-region-and-credentials", OWN_REGION_AND_CREDENTIALS),
    Case(
        "endpoint-instead-of-region",
        {"endpoint": "https://ecs.internal.example", "credentials": {"existingSecret": "hwc"}},
    ),
    Case("namespaced", installable({"watchNamespaces": ["team-a", "team-b"]})),
    Case(
        "namespaced-including-own-namespace", installable({"watchNamespaces": [DEFAULT_NAMESPACE, "team-a"]})
    ),
    Case(
        "namespaced-own-credentials",
        {"watchNamespaces": ["team-a"], "region": "ap-southeast-1", "requireDefaults": False},
    ),
    Case(
        "service-monitor-with-api",
        installable({"metrics": {"serviceMonitor": {"enabled": True}}}),
        (SERVICE_MONITOR_API,),
    ),
    Case("service-monitor-without-api", installable({"metrics": {"serviceMonitor": {"enabled": True}}})),
    Case("service-monitor-api-not-asked", installable(), (SERVICE_MONITOR_API,)),
    Case(
        "no-metrics-service",
        installable({"metrics": {"service": {"enabled": False}}}),
        (SERVICE_MONITOR_API,),
    ),
    Case(
        "custom-image",
        installable({"image": {"repository": "registry.example.com/ops/ecs", "tag": "1.2.3-rc.1"}}),
    ),
    Case(
        "tenancy",
        installable(
            {
                "credentials": {
                    "allowedNamespaces": ["team-a", "team-b"],
                    "allowedNamespaceSelector": "ecs.reinstall.dev/default-credentials=allowed",
                },
                "serverOwnership": {
                    "tagKey": "ecs-reinstall-namespace",
                    "extraValues": {"team-b": ["web-b", "shared"], "team-a": ["web-a"]},
                },
            }
        ),
    ),
    Case(
        "namespaced-tenancy",
        installable(
            {
                "watchNamespaces": ["team-a", "team-b"],
                "credentials": {"allowedNamespaces": ["team-a"]},
                "serverOwnership": {"tagKey": "ecs-reinstall-namespace"},
            }
        ),
    ),
    Case(
        "every-namespace-may-use-default-credentials",
        installable({"credentials": {"allowedNamespaces": ["*"]}}),
    ),
    Case("one-replica", installable({"replicaCount": 1})),
    Case("three-replicas", installable({"replicaCount": 3})),
    Case("leader-election-off", installable({"replicaCount": 1, "leaderElection": {"enabled": False}})),
    Case(
        "namespaced-leader-election-off",
        installable({"replicaCount": 1, "leaderElection": {"enabled": False}, "watchNamespaces": ["team-a"]}),
    ),
    Case(
        "all-settings",
        {
            "region": "ap-southeast-1",
            "projectId": "0a1b2c3d4e5f",
            "endpoint": "https://ecs.internal.example:8443",
            "credentials": {"existingSecret": "hwc"},
            "caBundle": {"configMap": "corp-ca", "key": "bundle.pem"},
            "qps": 2.5,
            "burst": 5,
            "maxConcurrency": 7,
            "logFormat": "text",
            "logLevel": "DEBUG",
            "leaderElection": {
                "enabled": True,
                "leaseSeconds": 30,
                "renewDeadlineSeconds": 20.5,
                "retryPeriodSeconds": 0.5,
            },
            "metrics": {"port": 9090},
            "health": {"port": 9091},
            "extraEnv": [{"name": "TZ", "value": "UTC"}],
            "podAnnotations": {"example.com/team": "platform"},
            "podLabels": {"team": "platform"},
            "priorityClassName": "system-cluster-critical",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                        ]
                    }
                }
            },
            "imagePullSecrets": [{"name": "pull"}],
            "serviceAccount": {"create": True, "name": "ecs-op", "annotations": {"a": "b"}},
        },
    ),
]


def render(helm: Helm, case: Case, tmp_path: Path, **kwargs: Any) -> list[dict[str, Any]]:
    return helm.render(case.values, tmp_path=tmp_path, api_versions=case.api_versions, **kwargs)


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment).get("env", [])}


def assert_restricted_pod_security(deployment: dict[str, Any]) -> None:
    """The Pod Security Standard "restricted", plus the read-only root filesystem with a writable /tmp."""
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"]:
        security = c["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["runAsNonRoot"] is True
        assert security.get("privileged") is not True
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert "/tmp" in mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert not any(key in pod for key in ("hostNetwork", "hostPID", "hostIPC"))


@pytest.mark.parametrize("case", MATRIX, ids=lambda c: c.id)
def test_lint_strict(helm: Helm, case: Case, tmp_path: Path) -> None:
    result = helm.lint(case.values, tmp_path=tmp_path)
    assert "0 chart(s) failed" in result.stdout


def assert_one_working_operator(docs: list[dict[str, Any]]) -> None:
    """Several replicas only with leader election (a RollingUpdate starts the new Pod as a standby, a
    PodDisruptionBudget keeps one Pod through drains); without it, one replica that Recreate never doubles."""
    deployment = only(docs, "Deployment")
    replicas = deployment["spec"]["replicas"]
    env = env_of(deployment)
    pdbs = by_kind(docs, "PodDisruptionBudget")
    if env["ECS_REINSTALL_LEADER_ELECTION"] == "true":
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        assert env["ECS_REINSTALL_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["ECS_REINSTALL_LEADER_ELECTION_LEASE_NAME"]
    else:
        assert replicas == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert not any(e.startswith("ECS_REINSTALL_LEADER_ELECTION_") for e in env)
    if replicas > 1:
        (pdb,) = pdbs
        assert pdb["apiVersion"] == "policy/v1"
        assert pdb["spec"] == {"minAvailable": 1, "selector": deployment["spec"]["selector"]}
    else:
        assert not pdbs


@pytest.mark.parametrize("case", MATRIX, ids=lambda c: c.id)
def test_every_render_is_restricted_and_never_runs_two_operators(
    helm: Helm, case: Case, tmp_path: Path
) -> None:
    docs = render(helm, case, tmp_path)
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
            assert doc["metadata"]["namespace"] == DEFAULT_NAMESPACE, doc["kind"]
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == case.values.get("replicaCount", 2)
    assert_one_working_operator(docs)
    assert_restricted_pod_security(deployment)
    operator = container(deployment)
    assert operator["args"] == ["run"]
    assert "command" not in operator, "the image's ENTRYPOINT (ecs-reinstall-operator) runs"
    probe = operator["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    env = env_of(deployment)
    assert ports == {
        "metrics": int(env["ECS_REINSTALL_METRICS_PORT"]),
        "health": int(env["ECS_REINSTALL_HEALTH_PORT"]),
    }
    assert env["ECS_REINSTALL_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert operator["resources"]["requests"] and operator["resources"]["limits"]
    service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert [sa["metadata"]["name"] for sa in by_kind(docs, "ServiceAccount")] == [service_account]
    # The pods are selected by the Deployment, and the metrics Service (when present) selects the same pods.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for service in by_kind(docs, "Service"):
        assert service["spec"]["selector"] == selector
        assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_defaults(helm: Helm, tmp_path: Path) -> None:
    docs = helm.render(installable(), tmp_path=tmp_path)
    assert sorted(d["kind"] for d in docs) == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
        ]
    )
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert container(deployment)["image"] == f"ecs-reinstall-operator:{chart_meta()['appVersion']}"
    assert env_of(deployment) == {
        "ECS_REINSTALL_OPERATOR_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "ECS_REINSTALL_POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "ECS_REINSTALL_LEADER_ELECTION": "true",
        "ECS_REINSTALL_LEADER_ELECTION_LEASE_NAME": LEASE_NAME,
        "ECS_REINSTALL_LEADER_ELECTION_LEASE_SECONDS": "15",
        "ECS_REINSTALL_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "10",
        "ECS_REINSTALL_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "2",
        "ECS_REINSTALL_REGION": "ap-southeast-1",
        "ECS_REINSTALL_CREDENTIALS_SECRET": "hwc",
        "ECS_REINSTALL_QPS": "10",
        "ECS_REINSTALL_BURST": "20",
        "ECS_REINSTALL_MAX_CONCURRENCY": "100",
        "ECS_REINSTALL_LOG_FORMAT": "json",
        "ECS_REINSTALL_LOG_LEVEL": "INFO",
        "ECS_REINSTALL_METRICS_PORT": "8080",
        "ECS_REINSTALL_HEALTH_PORT": "8081",
    }


def test_all_settings_reach_the_container(helm: Helm, tmp_path: Path) -> None:
    case = next(c for c in MATRIX if c.id == "all-settings")
    docs = render(helm, case, tmp_path)
    deployment = only(docs, "Deployment")
    env = env_of(deployment)
    assert env["ECS_REINSTALL_REGION"] == "ap-southeast-1"
    assert env["ECS_REINSTALL_PROJECT_ID"] == "0a1b2c3d4e5f"
    assert env["ECS_REINSTALL_ENDPOINT"] == "https://ecs.internal.example:8443"
    assert env["ECS_REINSTALL_CREDENTIALS_SECRET"] == "hwc"
    assert env["ECS_REINSTALL_CA_BUNDLE"] == "/etc/ecs-reinstall/ca/bundle.pem"
    assert (env["ECS_REINSTALL_QPS"], env["ECS_REINSTALL_BURST"], env["ECS_REINSTALL_MAX_CONCURRENCY"]) == (
        "2.5",
        "5",
        "7",
    )
    assert (env["ECS_REINSTALL_LOG_FORMAT"], env["ECS_REINSTALL_LOG_LEVEL"]) == ("text", "DEBUG")
    assert (env["ECS_REINSTALL_METRICS_PORT"], env["ECS_REINSTALL_HEALTH_PORT"]) == ("9090", "9091")
    assert (
        env["ECS_REINSTALL_LEADER_ELECTION_LEASE_SECONDS"],
        env["ECS_REINSTALL_LEADER_ELECTION_RENEW_DEADLINE_SECONDS"],
        env["ECS_REINSTALL_LEADER_ELECTION_RETRY_PERIOD_SECONDS"],
    ) == ("30", "20.5", "0.5")
    assert env["TZ"] == "UTC"
    assert "ECS_REINSTALL_WATCH_NAMESPACES" not in env
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"example.com/team": "platform"}
    assert pod["metadata"]["labels"]["team"] == "platform"
    spec = pod["spec"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["nodeSelector"] == case.values["nodeSelector"]
    assert spec["tolerations"] == case.values["tolerations"]
    assert spec["affinity"] == case.values["affinity"]
    assert spec["imagePullSecrets"] == [{"name": "pull"}]
    assert spec["serviceAccountName"] == "ecs-op"
    ca_volume = next(v for v in spec["volumes"] if v["name"] == "ca-bundle")
    assert ca_volume["configMap"] == {
        "name": "corp-ca",
        "items": [{"key": "bundle.pem", "path": "bundle.pem"}],
    }
    mount = next(m for m in container(deployment)["volumeMounts"] if m["name"] == "ca-bundle")
    assert mount == {"name": "ca-bundle", "mountPath": "/etc/ecs-reinstall/ca", "readOnly": True}
    service = only(docs, "Service")
    assert service["spec"]["ports"][0]["port"] == 8080


def test_custom_image(helm: Helm, tmp_path: Path) -> None:
    values = installable(
        {"image": {"repository": "registry.example.com/ops/ecs", "tag": "1.2.3-rc.1", "pullPolicy": "Always"}}
    )
    operator = container(only(helm.render(values, tmp_path=tmp_path), "Deployment"))
    assert operator["image"] == "registry.example.com/ops/ecs:1.2.3-rc.1"
    assert operator["imagePullPolicy"] == "Always"


@pytest.mark.parametrize(
    ("case_id", "expected"),
    [
        ("service-monitor-with-api", True),
        ("service-monitor-without-api", False),
        ("service-monitor-api-not-asked", False),
        ("no-metrics-service", False),
        ("defaults", False),
    ],
)
def test_service_monitor_only_when_asked_and_served(
    helm: Helm, tmp_path: Path, case_id: str, expected: bool
) -> None:
    case = next(c for c in MATRIX if c.id == case_id)
    monitors = by_kind(render(helm, case, tmp_path), "ServiceMonitor")
    assert bool(monitors) == expected
    if expected:
        (monitor,) = monitors
        assert monitor["spec"]["endpoints"] == [
            {
                "port": "metrics",
                "path": "/metrics",
                "honorLabels": True,
                "interval": "30s",
                "scrapeTimeout": "10s",
            }
        ]
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [DEFAULT_NAMESPACE]}


def test_clusterwide_rbac_is_one_cluster_role_and_the_lease_role(helm: Helm, tmp_path: Path) -> None:
    docs = helm.render(installable(), tmp_path=tmp_path)
    assert [r["metadata"]["namespace"] for r in by_kind(docs, "Role")] == [DEFAULT_NAMESPACE]
    grants = service_account_grants(docs, DEFAULT_NAMESPACE, DEFAULT_RELEASE)
    assert {g for g in grants if g.namespace} == LEASE_GRANTS
    assert {(g.group, g.resource, g.verb) for g in grants if not g.namespace} == {
        ("ecs.reinstall.dev", "ecsreinstalls", "get"),
        ("ecs.reinstall.dev", "ecsreinstalls", "list"),
        ("ecs.reinstall.dev", "ecsreinstalls", "watch"),
        ("ecs.reinstall.dev", "ecsreinstalls", "patch"),  # only the finalizer
        ("ecs.reinstall.dev", "ecsreinstalls", "delete"),  # only after spec.ttlSecondsAfterFinished
        ("ecs.reinstall.dev", "ecsreinstalls", "create"),  # an EcsReinstallSet's children
        ("ecs.reinstall.dev", "ecsreinstalls/status", "patch"),
        ("ecs.reinstall.dev", "ecsreinstallsets", "get"),
        ("ecs.reinstall.dev", "ecsreinstallsets", "list"),
        ("ecs.reinstall.dev", "ecsreinstallsets", "watch"),
        ("ecs.reinstall.dev", "ecsreinstallsets/status", "patch"),  # the rollout, never the spec
        ("", "secrets", "get"),
        ("", "configmaps", "get"),
        ("", "events", "create"),
    }


def test_namespaced_rbac_is_a_role_per_watched_namespace(helm: Helm, tmp_path: Path) -> None:
    values = installable({"watchNamespaces": ["team-a", "team-b"]})
    docs = helm.render(values, tmp_path=tmp_path)
    grants = service_account_grants(docs, DEFAULT_NAMESPACE, DEFAULT_RELEASE)
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding"), "Roles only"
    per_namespace = {ns: {g for g in grants if g.namespace == ns} for ns in ("team-a", "team-b")}
    assert per_namespace["team-a"] and {g.namespace for g in grants} == {
        "team-a",
        "team-b",
        DEFAULT_NAMESPACE,
    }
    assert {(g.resource, g.verb) for g in per_namespace["team-a"]} == {
        (g.resource, g.verb) for g in per_namespace["team-b"]
    }
    # In its own namespace, which it does not serve, the operator reads exactly one Secret, the default
    # credentials, and keeps its Lease.
    own = {g for g in grants if g.namespace == DEFAULT_NAMESPACE}
    assert own == {Grant(DEFAULT_NAMESPACE, "", "secrets", "get", "hwc")} | LEASE_GRANTS
    assert env_of(only(docs, "Deployment"))["ECS_REINSTALL_WATCH_NAMESPACES"] == "team-a,team-b"


def test_namespaced_rbac_serving_its_own_namespace_needs_no_extra_secret_role(
    helm: Helm, tmp_path: Path
) -> None:
    values = installable({"watchNamespaces": [DEFAULT_NAMESPACE]})
    docs = helm.render(values, tmp_path=tmp_path)
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "Role")}
    assert sorted(roles) == [DEFAULT_RELEASE, f"{DEFAULT_RELEASE}-leader-election"]
    assert {r["metadata"]["namespace"] for r in roles.values()} == {DEFAULT_NAMESPACE}
    assert all(not rule.get("resourceNames") for rule in roles[DEFAULT_RELEASE]["rules"])


def test_secrets_and_configmaps_are_only_ever_read_by_name(helm: Helm, tmp_path: Path) -> None:
    for case in MATRIX:
        grants = service_account_grants(render(helm, case, tmp_path), DEFAULT_NAMESPACE, "ecs-op")
        grants |= service_account_grants(render(helm, case, tmp_path), DEFAULT_NAMESPACE, DEFAULT_RELEASE)
        assert {g.verb for g in grants if g.resource in ("secrets", "configmaps")} <= {"get"}, case.id
        assert not any("*" in (g.group, g.resource, g.verb) for g in grants), case.id


def test_rbac_off_renders_no_rbac(helm: Helm, tmp_path: Path) -> None:
    docs = helm.render(installable({"rbac": {"create": False}}), tmp_path=tmp_path)
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io")]


def test_existing_service_account(helm: Helm, tmp_path: Path) -> None:
    docs = helm.render(installable({"serviceAccount": {"create": False, "name": "mine"}}), tmp_path=tmp_path)
    assert not by_kind(docs, "ServiceAccount")
    assert only(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    assert only(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "mine"
    result = helm.template(installable({"serviceAccount": {"create": False}}), tmp_path=tmp_path, check=False)
    assert result.returncode != 0
    assert "serviceAccount.name is required when serviceAccount.create is false" in result.stderr


def test_cluster_scoped_names_include_the_release_namespace(helm: Helm, tmp_path: Path) -> None:
    docs_a = helm.render(installable(), tmp_path=tmp_path, namespace="team-a")
    docs_b = helm.render(installable(), tmp_path=tmp_path, namespace="team-b")
    names_a = {d["metadata"]["name"] for d in docs_a if d["kind"].startswith("Cluster")}
    names_b = {d["metadata"]["name"] for d in docs_b if d["kind"].startswith("Cluster")}
    assert names_a and not names_a & names_b, "two releases of the same name never share cluster-wide grants"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"logFormat": "xml"}, "/logFormat"),
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
        ({"watchNamespaces": ["a", "a"]}, "/watchNamespaces"),
        ({"qps": 0}, "/qps"),
        ({"qps": "10"}, "/qps"),
        ({"burst": 0}, "/burst"),
        ({"maxConcurrency": 1.5}, "/maxConcurrency"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"replicaCount": 1.5}, "/replicaCount"),
        ({"leaderElection": {"enabled": "yes"}}, "/leaderElection/enabled"),
        ({"leaderElection": {"leaseSeconds": 0}}, "/leaderElection/leaseSeconds"),
        ({"leaderElection": {"retryPeriodSeconds": "2s"}}, "/leaderElection/retryPeriodSeconds"),
        ({"leaderElection": {"leaseName": "mine"}}, "leaseName"),
        ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"credentials": {"existingSecret": "hwc", "accessKey": "AK"}}, "accessKey"),
        ({"credentials": {"existingSecret": "Not A Name"}}, "/credentials/existingSecret"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"health": {"port": 0}}, "/health/port"),
        ({"region": "AP_SOUTHEAST"}, "/region"),
        ({"endpoint": "ftp://ecs.example"}, "/endpoint"),
        (
            {"metrics": {"serviceMonitor": {"enabled": True, "interval": "soon"}}},
            "/metrics/serviceMonitor/interval",
        ),
        ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
        ({"resources": {"request": {"cpu": "1"}}}, "request"),
        ({"requireDefaults": "no"}, "/requireDefaults"),
        ({"credentials": {"allowedNamespaces": ["Team_A"]}}, "/credentials/allowedNamespaces/0"),
        ({"credentials": {"allowedNamespaces": ["team-*"]}}, "/credentials/allowedNamespaces/0"),
        ({"credentials": {"allowedNamespaces": ["team-a", "team-a"]}}, "/credentials/allowedNamespaces"),
        ({"credentials": {"allowedNamespaces": "*"}}, "/credentials/allowedNamespaces"),
        ({"credentials": {"allowedNamespaceSelector": ["a=b"]}}, "/credentials/allowedNamespaceSelector"),
        ({"credentials": {"allowedNamespaceSelector": "a=b\nc=d"}}, "/credentials/allowedNamespaceSelector"),
        ({"serverOwnership": {"tagKey": "team/owner"}}, "/serverOwnership/tagKey"),
        ({"serverOwnership": {"tagKey": "k" * 37}}, "/serverOwnership/tagKey"),
        ({"serverOwnership": {"tagKey": "owner=namespace"}}, "/serverOwnership/tagKey"),
        ({"serverOwnership": {"tagKey": "owner,namespace"}}, "/serverOwnership/tagKey"),
        ({"serverOwnership": {"tagKey": "owner|namespace"}}, "/serverOwnership/tagKey"),
        ({"serverOwnership": {"tagKey": "owner\\namespace"}}, "/serverOwnership/tagKey"),
        ({"serverOwnership": {"tagKey": "owner*"}}, "/serverOwnership/tagKey"),
        ({"serverOwnership": {"tagKey": "<owner>"}}, "/serverOwnership/tagKey"),
        ({"serverOwnership": {"tagKey": "owner\tnamespace"}}, "/serverOwnership/tagKey"),
        ({"serverOwnership": {"tagKey": 1}}, "/serverOwnership/tagKey"),
        ({"serverOwnership": {"extraValues": {"team-a": "web-a"}}}, "/serverOwnership/extraValues/team-a"),
        ({"serverOwnership": {"extraValues": {"team-a": []}}}, "/serverOwnership/extraValues/team-a"),
        (
            {"serverOwnership": {"extraValues": {"team-a": ["web|a"]}}},
            "/serverOwnership/extraValues/team-a/0",
        ),
        ({"serverOwnership": {"extraValues": {"team-a": [""]}}}, "/serverOwnership/extraValues/team-a/0"),
        (
            {"serverOwnership": {"extraValues": {"team-a": ["v" * 44]}}},
            "/serverOwnership/extraValues/team-a/0",
        ),
        ({"serverOwnership": {"extraValues": {"Team_A": ["web-a"]}}}, "Team_A"),
        ({"serverOwnership": {"ownerTag": "x"}}, "ownerTag"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else None,
)
def test_schema_rejects_bad_values(helm: Helm, tmp_path: Path, values: dict[str, Any], message: str) -> None:
    result = helm.template(values, tmp_path=tmp_path, check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"leaderElection": {"enabled": False}}, "replicaCount above 1 needs leaderElection.enabled"),
        (
            {"leaderElection": {"renewDeadlineSeconds": 15}},
            "leaderElection.renewDeadlineSeconds must be less than leaderElection.leaseSeconds",
        ),
        (
            {"leaderElection": {"retryPeriodSeconds": 10}},
            "leaderElection.retryPeriodSeconds must be less than leaderElection.renewDeadlineSeconds",
        ),
    ],
)
def test_leader_election_values_the_schema_cannot_check(
    helm: Helm, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    result = helm.template(installable(values), tmp_path=tmp_path, check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("watch", [[], ["team-a"], [DEFAULT_NAMESPACE]], ids=["clusterwide", "other", "own"])
def test_leader_election_grants_exactly_the_lease_verbs_in_the_own_namespace(
    helm: Helm, tmp_path: Path, watch: list[str]
) -> None:
    docs = helm.render(installable({"watchNamespaces": watch}), tmp_path=tmp_path)
    grants = service_account_grants(docs, DEFAULT_NAMESPACE, DEFAULT_RELEASE)
    assert {g for g in grants if g.resource == "leases"} == LEASE_GRANTS
    assert not any(g.group == "coordination.k8s.io" for g in grants - LEASE_GRANTS)
    off = installable({"watchNamespaces": watch, "replicaCount": 1, "leaderElection": {"enabled": False}})
    grants_off = service_account_grants(
        helm.render(off, tmp_path=tmp_path), DEFAULT_NAMESPACE, DEFAULT_RELEASE
    )
    assert grants_off == grants - LEASE_GRANTS


def test_each_release_has_its_own_lease(helm: Helm, tmp_path: Path) -> None:
    docs = helm.render(installable(), tmp_path=tmp_path, release="team-a-ops")
    lease = env_of(only(docs, "Deployment"))["ECS_REINSTALL_LEADER_ELECTION_LEASE_NAME"]
    assert lease == "team-a-ops-ecs-reinstall-operator"
    grants = service_account_grants(docs, DEFAULT_NAMESPACE, "team-a-ops-ecs-reinstall-operator")
    assert {g.resource_name for g in grants if g.resource == "leases"} == {"", lease}


def chart_meta() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())


def test_app_version_is_the_project_version() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    meta = chart_meta()
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == project["version"]


def test_notes(helm: Helm, tmp_path: Path) -> None:
    def notes(values: dict[str, Any], *api_versions: str) -> str:
        args = [
            "install",
            DEFAULT_RELEASE,
            str(CHART_DIR),
            "--dry-run=client",
            "--namespace",
            DEFAULT_NAMESPACE,
        ]
        for api in api_versions:
            args += ["--api-versions", api]
        values_file = tmp_path / f"notes-{len(list(tmp_path.iterdir()))}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        stdout = helm.run(*args, "--values", str(values_file)).stdout
        return stdout.split("NOTES:", 1)[1]

    default = notes(installable())
    assert "serves EcsReinstall resources in all namespaces" in default
    assert "create secret generic hwc" in default
    assert "No default" not in default
    assert "kubectl apply --server-side -f crds/" in default
    own = notes(OWN_REGION_AND_CREDENTIALS)
    assert "No default credentials Secret is configured" in own and "spec.credentialsSecretRef" in own
    assert "every EcsReinstall must set spec.region (or spec.endpoint)" in own
    scoped = notes(installable({"watchNamespaces": ["team-a", "team-b"]}))
    assert "serves EcsReinstall resources in: team-a, team-b" in scoped
    assert "create secret generic hwc" in scoped
    # Who may use the default credentials: the release namespace only, unless more are allowed.
    who = "EcsReinstall resources without spec.credentialsSecretRef may use them in these namespaces only:\n"
    elsewhere = "\nElsewhere such a resource fails (reason Forbidden, code DefaultCredentialsNotAllowed)"
    assert f"{who}  {DEFAULT_NAMESPACE} (the release namespace){elsewhere}" in default
    assert "credentials.allowedNamespaces or credentials.allowedNamespaceSelector." in default
    assert "credentials.allowedNamespaceSelector" not in scoped, "namespaced mode cannot have a selector"
    assert "Server ownership" not in default
    tenancy = notes(next(c for c in MATRIX if c.id == "tenancy").values)
    assert (
        f"{who}  {DEFAULT_NAMESPACE} (the release namespace)\n  team-a\n  team-b\n"
        "  and every namespace whose labels match: ecs.reinstall.dev/default-credentials=allowed"
        f"{elsewhere}"
    ) in tenancy
    assert "may only reinstall a server tagged ecs-reinstall-namespace=N (or one of the values" in tenancy
    everyone = notes(installable({"credentials": {"allowedNamespaces": ["*"]}}))
    assert "may use them in every namespace" in everyone and who not in everyone
    assert "may use them" not in own, "no default credentials, nobody uses them"
    monitor = installable({"metrics": {"serviceMonitor": {"enabled": True}}})
    assert "no ServiceMonitor was created" in notes(monitor)
    assert "ServiceMonitor" not in default


def test_argocd_example_values_fit_the_chart(helm: Helm, tmp_path: Path) -> None:
    application = yaml.safe_load((REPO_ROOT / "deploy/argocd/examples/operator-application.yaml").read_text())
    source = application["spec"]["source"]
    assert source["path"] == str(CHART_DIR.relative_to(REPO_ROOT))
    values = source["helm"]["valuesObject"]
    helm.lint(values, tmp_path=tmp_path)
    docs = helm.render(values, tmp_path=tmp_path, namespace=application["spec"]["destination"]["namespace"])
    assert container(only(docs, "Deployment"))["image"].startswith(values["image"]["repository"] + ":")


# --- Tenancy: who may use the default credentials, which servers belong to a namespace ---------------------------

SELECTOR = "ecs.reinstall.dev/default-credentials=allowed"
NAMESPACES_ENV = "ECS_REINSTALL_DEFAULT_CREDENTIALS_NAMESPACES"
SELECTOR_ENV = "ECS_REINSTALL_DEFAULT_CREDENTIALS_NAMESPACE_SELECTOR"
TAG_KEY_ENV = "ECS_REINSTALL_OWNER_TAG_KEY"
TAG_VALUES_ENV = "ECS_REINSTALL_OWNER_TAG_VALUES"
TENANCY_ENV = (NAMESPACES_ENV, SELECTOR_ENV, TAG_KEY_ENV, TAG_VALUES_ENV)
LIST_NAMESPACES = Grant("", "", "namespaces", "list")
SELECTOR_IN_NAMESPACED_MODE = (
    "credentials.allowedNamespaceSelector needs list on namespaces, a cluster-scoped grant that namespaced mode "
    "(watchNamespaces) does without: list the namespaces in credentials.allowedNamespaces instead"
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, {}),
        (
            {"credentials": {"allowedNamespaces": []}, "serverOwnership": {"tagKey": "", "extraValues": {}}},
            {},
        ),
        ({"credentials": {"allowedNamespaces": ["team-b", "team-a"]}}, {NAMESPACES_ENV: "team-b,team-a"}),
        ({"credentials": {"allowedNamespaces": ["*"]}}, {NAMESPACES_ENV: "*"}),
        ({"credentials": {"allowedNamespaceSelector": SELECTOR}}, {SELECTOR_ENV: SELECTOR}),
        (
            {"credentials": {"allowedNamespaceSelector": "env in (dev, test),!locked"}},
            {SELECTOR_ENV: "env in (dev, test),!locked"},
        ),
        (
            {"serverOwnership": {"tagKey": "ecs-reinstall-namespace"}},
            {TAG_KEY_ENV: "ecs-reinstall-namespace"},
        ),
        (
            {
                "serverOwnership": {
                    "tagKey": "owner",
                    "extraValues": {"team-b": ["web-b"], "team-a": ["web-a", "shared"]},
                }
            },
            {TAG_KEY_ENV: "owner", TAG_VALUES_ENV: "team-a=web-a|shared,team-b=web-b"},
        ),
    ],
    ids=[
        "unset",
        "empty",
        "namespaces",
        "every-namespace",
        "selector",
        "set-based-selector",
        "tag-key",
        "tag-values",
    ],
)
def test_tenancy_values_become_environment_variables_only_when_set(
    helm: Helm, tmp_path: Path, values: dict[str, Any], expected: dict[str, str]
) -> None:
    env = env_of(only(helm.render(installable(values), tmp_path=tmp_path), "Deployment"))
    assert {name: value for name, value in env.items() if name in TENANCY_ENV} == expected


@pytest.mark.parametrize(
    "case_id", ["tenancy", "namespaced-tenancy", "every-namespace-may-use-default-credentials"]
)
def test_the_operator_reads_the_rendered_tenancy_settings(helm: Helm, tmp_path: Path, case_id: str) -> None:
    """The rendered environment, read by the operator's own settings loader: the formats agree."""
    case = next(c for c in MATRIX if c.id == case_id)
    env = env_of(only(render(helm, case, tmp_path), "Deployment"))
    loaded = operator_settings.load(environ={k: v for k, v in env.items() if isinstance(v, str)})
    credentials = case.values["credentials"]
    ownership = case.values.get("serverOwnership", {})
    assert loaded.default_credentials_namespaces == tuple(sorted(credentials.get("allowedNamespaces", [])))
    assert loaded.default_credentials_namespace_selector == (
        credentials.get("allowedNamespaceSelector") or None
    )
    assert loaded.owner_tag_key == (ownership.get("tagKey") or None)
    extra = ownership.get("extraValues", {})
    assert loaded.owner_tag_values == tuple((ns, tuple(extra[ns])) for ns in sorted(extra))


def test_only_a_namespace_selector_grants_list_on_namespaces(helm: Helm, tmp_path: Path) -> None:
    """Namespaces allowed by name (or "*") and the owner tag need no API call; a selector needs list on
    namespaces: one more rule in the ClusterRole, and nothing else changes."""
    plain_docs = helm.render(installable(), tmp_path=tmp_path)
    plain = service_account_grants(plain_docs, DEFAULT_NAMESPACE, DEFAULT_RELEASE)
    by_name = installable(
        {
            "credentials": {"allowedNamespaces": ["team-a", "*"]},
            "serverOwnership": {"tagKey": "owner", "extraValues": {"team-a": ["web-a"]}},
        }
    )
    assert (
        service_account_grants(helm.render(by_name, tmp_path=tmp_path), DEFAULT_NAMESPACE, DEFAULT_RELEASE)
        == plain
    )
    assert not any(g.resource == "namespaces" for g in plain)
    selector_values = installable({"credentials": {"allowedNamespaceSelector": SELECTOR}})
    selector_docs = helm.render(selector_values, tmp_path=tmp_path)
    assert service_account_grants(selector_docs, DEFAULT_NAMESPACE, DEFAULT_RELEASE) == plain | {
        LIST_NAMESPACES
    }
    cluster_role = only(selector_docs, "ClusterRole")
    assert cluster_role["rules"] == [
        *only(plain_docs, "ClusterRole")["rules"],
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]},
    ]
    text = helm.template(selector_values, tmp_path=tmp_path).stdout
    rule_comment = text.split('resources: ["events"]', 1)[1].split('resources: ["namespaces"]', 1)[0]
    assert "# credentials.allowedNamespaceSelector:" in rule_comment, "the rule says why it is there"


@pytest.mark.parametrize("verb", ["template", "install"])
def test_namespaced_mode_refuses_a_namespace_selector(helm: Helm, tmp_path: Path, verb: str) -> None:
    values = installable(
        {"watchNamespaces": ["team-a"], "credentials": {"allowedNamespaceSelector": SELECTOR}}
    )
    result = run_chart(helm, verb, values, tmp_path)
    assert result.returncode != 0, "accepted"
    assert SELECTOR_IN_NAMESPACED_MODE in result.stderr, result.stderr
    # The way out the message names: namespaced mode with the namespaces listed, still nothing cluster-scoped.
    listed = installable({"watchNamespaces": ["team-a"], "credentials": {"allowedNamespaces": ["team-a"]}})
    assert run_chart(helm, verb, listed, tmp_path).returncode == 0
    docs = helm.render(listed, tmp_path=tmp_path)
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    assert env_of(only(docs, "Deployment"))[NAMESPACES_ENV] == "team-a"


def test_owner_tag_values_need_a_tag_key(helm: Helm, tmp_path: Path) -> None:
    values = installable({"serverOwnership": {"extraValues": {"team-a": ["web-a"]}}})
    result = helm.template(values, tmp_path=tmp_path, check=False)
    assert result.returncode != 0, "accepted"
    assert (
        "serverOwnership.extraValues lists owner tag values but serverOwnership.tagKey is empty"
        in result.stderr
    ), result.stderr


def test_the_schema_accepts_tag_keys_and_values_up_to_huaweis_limits(helm: Helm, tmp_path: Path) -> None:
    key, value = "k" * 36, "v" * 43
    values = installable(
        {"serverOwnership": {"tagKey": key, "extraValues": {"team-a": [value, "Web_A.1:x@y"]}}}
    )
    env = env_of(only(helm.render(values, tmp_path=tmp_path), "Deployment"))
    assert (env[TAG_KEY_ENV], env[TAG_VALUES_ENV]) == (key, f"team-a={value}|Web_A.1:x@y")


# --- The defaults every install needs ------------------------------------------------------------------------

NO_REGION = (
    "no default region: set region (e.g. --set region=ap-southeast-1) or endpoint, used by every EcsReinstall "
    "without spec.region"
)
NO_CREDENTIALS = (
    "no default credentials: set credentials.existingSecret to the name of a Secret in the release namespace "
    "with the keys accessKey and secretKey, used by every EcsReinstall without spec.credentialsSecretRef"
)
OPT_OUT = (
    "If every EcsReinstall sets its own spec.region and spec.credentialsSecretRef, set requireDefaults=false "
    "instead"
)


def run_chart(helm: Helm, verb: str, values: Mapping[str, Any], tmp_path: Path, *args: str) -> ToolResult:
    """`helm template` or `helm install --dry-run=client` of the chart, as a user runs them."""
    argv = [verb, DEFAULT_RELEASE, str(CHART_DIR), "--namespace", DEFAULT_NAMESPACE, *args]
    if verb == "install":
        argv.append("--dry-run=client")
    if values:
        values_file = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
        values_file.write_text(yaml.safe_dump(dict(values)))
        argv += ["--values", str(values_file)]
    return helm.run(*argv, check=False)


@pytest.mark.parametrize("verb", ["template", "install"])
@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({}, [NO_REGION, NO_CREDENTIALS]),
        ({"region": "ap-southeast-1"}, [NO_CREDENTIALS]),
        ({"endpoint": "https://ecs.internal.example"}, [NO_CREDENTIALS]),
        ({"credentials": {"existingSecret": "hwc"}}, [NO_REGION]),
        (
            {"requireDefaults": True, "projectId": "0a1b", "watchNamespaces": ["team-a"]},
            [NO_REGION, NO_CREDENTIALS],
        ),
        ({"requireDefaults": None}, [NO_REGION, NO_CREDENTIALS]),  # null deletes the key: the default holds
    ],
    ids=["nothing", "region-only", "endpoint-only", "credentials-only", "explicitly-required", "null"],
)
def test_an_install_without_default_region_or_credentials_is_refused(
    helm: Helm, tmp_path: Path, verb: str, values: dict[str, Any], missing: list[str]
) -> None:
    result = run_chart(helm, verb, values, tmp_path)
    assert result.returncode != 0, f"{values} was accepted"
    for message in (NO_REGION, NO_CREDENTIALS):
        assert (message in result.stderr) == (message in missing), result.stderr
    assert OPT_OUT in result.stderr


@pytest.mark.parametrize(
    "values",
    [
        REQUIRED_DEFAULTS,
        {"endpoint": "https://ecs.internal.example", "credentials": {"existingSecret": "hwc"}},
        OWN_REGION_AND_CREDENTIALS,
        {"requireDefaults": False, "region": "ap-southeast-1"},
    ],
    ids=[
        "region-and-credentials",
        "endpoint-and-credentials",
        "own-region-and-credentials",
        "own-credentials",
    ],
)
def test_an_install_with_defaults_or_the_opt_out_is_accepted(
    helm: Helm, tmp_path: Path, values: dict[str, Any]
) -> None:
    result = run_chart(helm, "install", values, tmp_path)
    assert result.returncode == 0, result.stderr
    env = env_of(only(helm.render(values, tmp_path=tmp_path), "Deployment"))
    assert env.get("ECS_REINSTALL_REGION") == values.get("region")
    assert env.get("ECS_REINSTALL_ENDPOINT") == values.get("endpoint")
    assert env.get("ECS_REINSTALL_CREDENTIALS_SECRET") == values.get("credentials", {}).get("existingSecret")


# --- The Kubernetes version the chart needs --------------------------------------------------------------------

# The first Kubernetes version that serves each feature a chart can use, by default (GA, or beta and enabled by
# default), from the Kubernetes changelogs, feature gates and KEPs:
# - apiextensions.k8s.io/v1 (GA in 1.16) with structural schemas, x-kubernetes-preserve-unknown-fields,
#   x-kubernetes-list-type/-list-map-keys, subresources, printer columns; `default` (CustomResourceDefaulting:
#   beta and on in 1.16, GA 1.17); x-kubernetes-map-type: 1.17 (kubernetes/kubernetes#84113);
# - validation rules, KEP-2876 (CustomResourceValidationExpressions: alpha 1.23, beta and on by default 1.25, GA
#   1.29): x-kubernetes-validations with `rule` and `message`, transition rules (oldSelf), CEL's standard macros
#   and functions: 1.25; `messageExpression`: 1.27 (kubernetes/kubernetes#115969); `reason` and `fieldPath`:
#   1.28 (kubernetes/kubernetes#118041, CHANGELOG-1.28);
# - selectableFields: 1.31 (CustomResourceFieldSelectors beta; GA 1.32);
# - the built-in APIs the chart renders: rbac.authorization.k8s.io/v1 1.8, apps/v1 1.9, policy/v1 1.21.
# A feature missing here fails test_kube_version_is_the_first_that_serves_everything_the_chart_uses: look it up
# and add it.
V1_16 = (1, 16)
CRD_SPEC_FIELDS = ("group", "names", "scope", "versions", "conversion", "preserveUnknownFields")
CRD_VERSION_FIELDS = (
    "name",
    "served",
    "storage",
    "deprecated",
    "deprecationWarning",
    "schema",
    "subresources",
)
CRD_VERSION_FIELDS += ("additionalPrinterColumns",)
CEL_STANDARD = ("has", "size", "matches", "startsWith", "endsWith", "contains", "all", "exists", "exists_one")
CEL_STANDARD += ("map", "filter", "int", "uint", "double", "string", "bytes", "bool", "type", "dyn")
FIRST_KUBERNETES_VERSION: dict[str, tuple[int, int]] = {
    "apiVersion apiextensions.k8s.io/v1": V1_16,
    **{f"spec.{key}": V1_16 for key in CRD_SPEC_FIELDS},
    **{f"spec.versions[].{key}": V1_16 for key in CRD_VERSION_FIELDS},
    "spec.versions[].subresources.status": V1_16,
    "spec.versions[].subresources.scale": V1_16,
    "spec.versions[].selectableFields": (1, 31),
    "schema x-kubernetes-preserve-unknown-fields": V1_16,
    "schema x-kubernetes-embedded-resource": V1_16,
    "schema x-kubernetes-int-or-string": V1_16,
    "schema x-kubernetes-list-type": V1_16,
    "schema x-kubernetes-list-map-keys": V1_16,
    "schema x-kubernetes-map-type": (1, 17),
    "schema default": V1_16,
    "schema x-kubernetes-validations": (1, 25),
    "validation rule rule": (1, 25),
    "validation rule message": (1, 25),
    "validation rule messageExpression": (1, 27),
    "validation rule reason": (1, 28),
    "validation rule fieldPath": (1, 28),
    "CEL oldSelf": (1, 25),
    **{f"CEL {function}()": (1, 25) for function in CEL_STANDARD},
    "apiVersion v1": (1, 0),
    "apiVersion apps/v1": (1, 9),
    "apiVersion policy/v1": (1, 21),
    "apiVersion rbac.authorization.k8s.io/v1": (1, 8),
}
CEL_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
CEL_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def cel_features(expression: str) -> Iterator[str]:
    code = CEL_STRING_LITERAL.sub("''", expression)  # a regular expression's parentheses are no calls
    yield from (f"CEL {function}()" for function in CEL_CALL.findall(code))
    if re.search(r"\boldSelf\b", code):
        yield "CEL oldSelf"


def schema_features(schema: Mapping[str, Any]) -> Iterator[str]:
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key == "default":
            yield f"schema {key}"
        if key == "x-kubernetes-validations":
            for rule in value:
                yield from (f"validation rule {field_name}" for field_name in rule)
                for expression_field in ("rule", "messageExpression"):
                    yield from cel_features(rule.get(expression_field, ""))
        elif key == "properties":
            for child in value.values():
                yield from schema_features(child)
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            yield from schema_features(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            for child in value:
                yield from schema_features(child)


def crd_features(crd: Mapping[str, Any]) -> set[str]:
    features = {f"apiVersion {crd['apiVersion']}"} | {f"spec.{key}" for key in crd["spec"]}
    for version in crd["spec"]["versions"]:
        features |= {f"spec.versions[].{key}" for key in version}
        features |= {f"spec.versions[].subresources.{key}" for key in version.get("subresources", {})}
        features |= set(schema_features(version["schema"]["openAPIV3Schema"]))
    return features


def rendered_api_features(docs: list[dict[str, Any]]) -> set[str]:
    """The built-in Kubernetes APIs of the rendered objects (an add-on's, like monitoring.coreos.com, are asked
    of the cluster with .Capabilities instead)."""
    built_in = {
        d["apiVersion"]
        for d in docs
        if "." not in d["apiVersion"].split("/")[0] or ".k8s.io/" in d["apiVersion"]
    }
    return {f"apiVersion {api}" for api in built_in}


def kubernetes_minimum(features: set[str]) -> tuple[int, int]:
    unknown = sorted(features - FIRST_KUBERNETES_VERSION.keys())
    assert not unknown, (
        f"add these to FIRST_KUBERNETES_VERSION with the first Kubernetes version serving them: {unknown}"
    )
    return max(FIRST_KUBERNETES_VERSION[f] for f in features)


@pytest.fixture(scope="module")
def chart_features(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Everything the chart uses: the CRD's features and the APIs of a render with every optional object."""
    tmp_path = tmp_path_factory.mktemp("chart-features")
    values = installable({"metrics": {"serviceMonitor": {"enabled": True}}, "watchNamespaces": ["team-a"]})
    docs = helm.render(values, tmp_path=tmp_path, api_versions=(SERVICE_MONITOR_API,), include_crds=True)
    docs += helm.render(installable(), tmp_path=tmp_path)
    features = rendered_api_features(docs)
    for name in CRD_FILE_NAMES:  # the EcsReinstall CRD and the EcsReinstallSet CRD
        features |= crd_features(yaml.safe_load((CHART_DIR / "crds" / name).read_text()))
    return features


def test_kube_version_is_the_first_that_serves_everything_the_chart_uses(chart_features: set[str]) -> None:
    major, minor = kubernetes_minimum(chart_features)
    newest = sorted(f for f in chart_features if FIRST_KUBERNETES_VERSION[f] == (major, minor))
    assert chart_meta()["kubeVersion"] == f">={major}.{minor}.0-0", f"{major}.{minor} is needed by {newest}"


def test_helm_refuses_a_kubernetes_older_than_the_minimum(
    helm: Helm, tmp_path: Path, chart_features: set[str]
) -> None:
    major, minor = kubernetes_minimum(chart_features)
    # The minimum itself, and a provider's build of it (a pre-release in semver terms, hence the -0).
    for accepted in (f"v{major}.{minor}.0", f"v{major}.{minor}.3-gke.1286000"):
        result = run_chart(helm, "template", installable(), tmp_path, "--kube-version", accepted)
        assert result.returncode == 0, result.stderr
    # Any patch of the minor version before.
    refused = f"v{major}.{minor - 1}.99"
    result = run_chart(helm, "template", installable(), tmp_path, "--kube-version", refused)
    assert result.returncode != 0
    assert (
        f"chart requires kubeVersion: {chart_meta()['kubeVersion']} which is incompatible with Kubernetes {refused}"
        in result.stderr
    )


# --- Names that look like YAML booleans, numbers or null stay strings --------------------------------------------


class KubeYamlLoader(yaml.SafeLoader):
    """Reads plain scalars the way Kubernetes' YAML (go-yaml) does: y/n are booleans (YAML 1.1) and 1e3 is a number
    (YAML 1.2) too, besides what PyYAML already reads as booleans, numbers (0123) and null."""

    bool_values = {**yaml.SafeLoader.bool_values, "y": True, "n": False}


KubeYamlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))
KubeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
ODD_NAMES = ["y", "n", "on", "off", "yes", "no", "true", "false", "null", "1e3", "0123", "1.5"]
LABEL_MAPS = ("labels", "annotations", "matchLabels")
NAME_KEYS = ("name", "namespace", "serviceAccountName", "priorityClassName")


def render_strictly(
    helm: Helm, values: dict[str, Any], tmp_path: Path, **kwargs: Any
) -> list[dict[str, Any]]:
    text = helm.template(values, tmp_path=tmp_path, **kwargs).stdout
    return [doc for doc in yaml.load_all(text, Loader=KubeYamlLoader) if doc]


def strings_to_check(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every name, namespace, label and annotation value: (path, value)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{path}.{key}"
            if key in NAME_KEYS and not isinstance(value, (Mapping, list)):
                yield where, value
            elif key in LABEL_MAPS and isinstance(value, Mapping):
                yield from ((f"{where}[{k}]", v) for k, v in value.items())
            elif key in ("matchNames", "resourceNames"):
                yield from ((f"{where}[]", v) for v in value)
            else:
                yield from strings_to_check(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from strings_to_check(item, f"{path}[]")


def assert_all_strings(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata'].get('name')!r}"
        found = list(strings_to_check(doc))
        if doc["kind"] == "Service":
            found += [(f".spec.selector[{k}]", v) for k, v in doc["spec"]["selector"].items()]
        not_strings = [(path, value) for path, value in found if not isinstance(value, str)]
        assert not not_strings, f"{where}: not strings once parsed: {not_strings}"
        for operator in by_kind([doc], "Deployment"):
            assert all(isinstance(e["value"], str) for e in container(operator)["env"] if "value" in e)


@pytest.mark.parametrize("odd", ODD_NAMES)
def test_release_and_namespace_names_stay_strings(helm: Helm, tmp_path: Path, odd: str) -> None:
    namespace = odd if "." not in odd else "1e3"  # a namespace is a DNS label: no dots
    values = installable({"metrics": {"serviceMonitor": {"enabled": True}}})
    docs = render_strictly(
        helm, values, tmp_path, release=odd, namespace=namespace, api_versions=(SERVICE_MONITOR_API,)
    )
    assert_all_strings(docs)
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "ServiceMonitor",
        "ClusterRoleBinding",
        "Role",
    }
    for doc in docs:
        metadata = doc["metadata"]
        assert metadata["labels"]["app.kubernetes.io/instance"] == odd
        assert metadata["name"].startswith(odd) or metadata["name"].startswith(f"{namespace}-{odd}")
        if not doc["kind"].startswith("Cluster"):
            assert metadata["namespace"] == namespace
        for subject in doc.get("subjects", []):
            assert subject["namespace"] == namespace
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == odd
    assert only(docs, "Service")["spec"]["selector"]["app.kubernetes.io/instance"] == odd
    assert only(docs, "ServiceMonitor")["spec"]["namespaceSelector"] == {"matchNames": [namespace]}
    assert env_of(deployment)["ECS_REINSTALL_LEADER_ELECTION_LEASE_NAME"] == f"{odd}-ecs-reinstall-operator"


def test_values_that_look_like_yaml_booleans_numbers_or_null_stay_strings(helm: Helm, tmp_path: Path) -> None:
    values = installable(
        {
            "fullnameOverride": "yes",
            "nameOverride": "on",
            "serviceAccount": {"create": True, "name": "no", "annotations": {"example.com/a": "y"}},
            "credentials": {"existingSecret": "off", "allowedNamespaces": ["no", "0123"]},
            "serverOwnership": {"tagKey": "yes", "extraValues": {"on": ["1e3"]}},
            "watchNamespaces": ["true", "0123"],
            "caBundle": {"configMap": "null", "key": "1e3"},
            "priorityClassName": "false",
            "podLabels": {"tier": "n"},
            "podAnnotations": {"example.com/b": "1.5"},
            "extraEnv": [{"name": "ODD", "value": "0123"}],
            "metrics": {
                "service": {"annotations": {"example.com/c": "on"}},
                "serviceMonitor": {"enabled": True, "labels": {"release": "1e3"}},
            },
        }
    )
    docs = render_strictly(helm, values, tmp_path, api_versions=(SERVICE_MONITOR_API,))
    assert_all_strings(docs)
    deployment = only(docs, "Deployment")
    assert deployment["metadata"]["name"] == "yes"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/name"] == "on"
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["tier"] == "n"
    assert pod["metadata"]["annotations"] == {"example.com/b": "1.5"}
    assert pod["spec"]["serviceAccountName"] == "no"
    assert pod["spec"]["priorityClassName"] == "false"
    ca_volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "ca-bundle")
    assert ca_volume["configMap"] == {"name": "null", "items": [{"key": "1e3", "path": "1e3"}]}
    env = env_of(deployment)
    assert env["ECS_REINSTALL_CREDENTIALS_SECRET"] == "off"
    assert env["ECS_REINSTALL_WATCH_NAMESPACES"] == "true,0123"
    assert (env[NAMESPACES_ENV], env[TAG_KEY_ENV], env[TAG_VALUES_ENV]) == ("no,0123", "yes", "on=1e3")
    assert env["ODD"] == "0123"
    assert only(docs, "ServiceAccount")["metadata"]["annotations"] == {"example.com/a": "y"}
    assert only(docs, "Service")["metadata"]["annotations"] == {"example.com/c": "on"}
    assert only(docs, "ServiceMonitor")["metadata"]["labels"]["release"] == "1e3"
    roles = by_kind(docs, "Role")
    assert {r["metadata"]["namespace"] for r in roles} == {"true", "0123", DEFAULT_NAMESPACE}
    grants = service_account_grants(docs, DEFAULT_NAMESPACE, "no")
    assert Grant(DEFAULT_NAMESPACE, "", "secrets", "get", "off") in grants
    assert Grant(DEFAULT_NAMESPACE, "coordination.k8s.io", "leases", "get", "yes") in grants
    assert {g.namespace for g in grants} == {"true", "0123", DEFAULT_NAMESPACE}
