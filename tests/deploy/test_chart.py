"""The Helm chart, with the real helm: `lint --strict` and `template` over a matrix of values, the schema's
rejections, and what every render must hold (restricted Pod Security, never two working operators: replicas only
with leader election, the contract's settings)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    CHART_DIR,
    DEFAULT_NAMESPACE,
    DEFAULT_RELEASE,
    REPO_ROOT,
    Grant,
    Helm,
    by_kind,
    container,
    only,
    service_account_grants,
)

SERVICE_MONITOR_API = "monitoring.coreos.com/v1"
LEASE_NAME = DEFAULT_RELEASE  # the release's full name
# Leader election: exactly the Lease verbs the elector uses, on its own Lease (create cannot name it), in the
# operator's namespace.
LEASE_GRANTS = {
    Grant(DEFAULT_NAMESPACE, "coordination.k8s.io", "leases", "create"),
    Grant(DEFAULT_NAMESPACE, "coordination.k8s.io", "leases", "get", LEASE_NAME),
    Grant(DEFAULT_NAMESPACE, "coordination.k8s.io", "leases", "update", LEASE_NAME),
}


@dataclass(frozen=True)
class Case:
    id: str
    values: dict[str, Any] = field(default_factory=dict)
    api_versions: tuple[str, ...] = ()


MATRIX = [
    Case("defaults"),
    Case("namespaced", {"watchNamespaces": ["team-a", "team-b"], "credentials": {"existingSecret": "hwc"}}),
    Case(
        "namespaced-including-own-namespace",
        {"watchNamespaces": [DEFAULT_NAMESPACE, "team-a"], "credentials": {"existingSecret": "hwc"}},
    ),
    Case(
        "service-monitor-with-api", {"metrics": {"serviceMonitor": {"enabled": True}}}, (SERVICE_MONITOR_API,)
    ),
    Case("service-monitor-without-api", {"metrics": {"serviceMonitor": {"enabled": True}}}),
    Case("service-monitor-api-not-asked", {}, (SERVICE_MONITOR_API,)),
    Case("no-metrics-service", {"metrics": {"service": {"enabled": False}}}, (SERVICE_MONITOR_API,)),
    Case("custom-image", {"image": {"repository": "registry.example.com/ops/ecs", "tag": "1.2.3-rc.1"}}),
    Case("one-replica", {"replicaCount": 1}),
    Case("three-replicas", {"replicaCount": 3}),
    Case("leader-election-off", {"replicaCount": 1, "leaderElection": {"enabled": False}}),
    Case(
        "namespaced-leader-election-off",
        {"replicaCount": 1, "leaderElection": {"enabled": False}, "watchNamespaces": ["team-a"]},
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
    docs = helm.render()
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
    values = {
        "image": {"repository": "registry.example.com/ops/ecs", "tag": "1.2.3-rc.1", "pullPolicy": "Always"}
    }
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
            {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
        ]
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [DEFAULT_NAMESPACE]}


def test_clusterwide_rbac_is_one_cluster_role_and_the_lease_role(helm: Helm) -> None:
    docs = helm.render()
    assert [r["metadata"]["namespace"] for r in by_kind(docs, "Role")] == [DEFAULT_NAMESPACE]
    grants = service_account_grants(docs, DEFAULT_NAMESPACE, DEFAULT_RELEASE)
    assert {g for g in grants if g.namespace} == LEASE_GRANTS
    assert {(g.group, g.resource, g.verb) for g in grants if not g.namespace} == {
        ("ecs.reinstall.dev", "ecsreinstalls", "get"),
        ("ecs.reinstall.dev", "ecsreinstalls", "list"),
        ("ecs.reinstall.dev", "ecsreinstalls", "watch"),
        ("ecs.reinstall.dev", "ecsreinstalls", "patch"),  # only the finalizer
        ("ecs.reinstall.dev", "ecsreinstalls/status", "patch"),
        ("", "secrets", "get"),
        ("", "configmaps", "get"),
        ("", "events", "create"),
    }


def test_namespaced_rbac_is_a_role_per_watched_namespace(helm: Helm, tmp_path: Path) -> None:
    values = {"watchNamespaces": ["team-a", "team-b"], "credentials": {"existingSecret": "hwc"}}
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
    values = {"watchNamespaces": [DEFAULT_NAMESPACE], "credentials": {"existingSecret": "hwc"}}
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
    docs = helm.render({"rbac": {"create": False}}, tmp_path=tmp_path)
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io")]


def test_existing_service_account(helm: Helm, tmp_path: Path) -> None:
    docs = helm.render({"serviceAccount": {"create": False, "name": "mine"}}, tmp_path=tmp_path)
    assert not by_kind(docs, "ServiceAccount")
    assert only(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    assert only(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "mine"
    result = helm.template({"serviceAccount": {"create": False}}, tmp_path=tmp_path, check=False)
    assert result.returncode != 0
    assert "serviceAccount.name is required when serviceAccount.create is false" in result.stderr


def test_cluster_scoped_names_include_the_release_namespace(helm: Helm) -> None:
    docs_a = helm.render(namespace="team-a")
    docs_b = helm.render(namespace="team-b")
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
    result = helm.template(values, tmp_path=tmp_path, check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("watch", [[], ["team-a"], [DEFAULT_NAMESPACE]], ids=["clusterwide", "other", "own"])
def test_leader_election_grants_exactly_the_lease_verbs_in_the_own_namespace(
    helm: Helm, tmp_path: Path, watch: list[str]
) -> None:
    docs = helm.render({"watchNamespaces": watch}, tmp_path=tmp_path)
    grants = service_account_grants(docs, DEFAULT_NAMESPACE, DEFAULT_RELEASE)
    assert {g for g in grants if g.resource == "leases"} == LEASE_GRANTS
    assert not any(g.group == "coordination.k8s.io" for g in grants - LEASE_GRANTS)
    off = {"watchNamespaces": watch, "replicaCount": 1, "leaderElection": {"enabled": False}}
    grants_off = service_account_grants(
        helm.render(off, tmp_path=tmp_path), DEFAULT_NAMESPACE, DEFAULT_RELEASE
    )
    assert grants_off == grants - LEASE_GRANTS


def test_each_release_has_its_own_lease(helm: Helm, tmp_path: Path) -> None:
    docs = helm.render(release="team-a-ops")
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

    default = notes({})
    assert "serves EcsReinstall resources in all namespaces" in default
    assert "spec.credentialsSecretRef" in default
    assert "kubectl apply --server-side -f crds/" in default
    scoped = notes({"watchNamespaces": ["team-a", "team-b"], "credentials": {"existingSecret": "hwc"}})
    assert "serves EcsReinstall resources in: team-a, team-b" in scoped
    assert "create secret generic hwc" in scoped
    monitor = {"metrics": {"serviceMonitor": {"enabled": True}}}
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
