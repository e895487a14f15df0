"""The chart's manifests on a Kubernetes API (kube_emulator) with real kubectl, then the operator run exactly as
the rendered Deployment runs it, reconciling samples against the ECS emulator; and the proof of least privilege.

For each RBAC mode (cluster-wide; two watched namespaces; cluster-wide with a namespace selector for the default
credentials) one scenario:
1. both emulators start as processes on free loopback ports (they print their URL first, like in `make demo`);
2. the chart is rendered with helm (both CRDs included) and applied with `kubectl apply --server-side`; the samples
   (Secrets, a ConfigMap, two EcsReinstalls, an EcsReinstallSet of two servers) are applied the same way;
3. the operator starts as the image does: ENTRYPOINT `ecs-reinstall-operator` + the container's `args`, with the
   container's environment (the downward-API namespace resolved) plus KUBECONFIG, since outside a pod there is no
   in-cluster service account;
4. in the cluster-wide scenario one status write meets an injected 409 Conflict, so the operator re-reads; in
   each, the operator first takes the leader Lease (as the chart's replicas do), renews it, and releases it when
   stopped;
5. the samples using the default credentials (an EcsReinstall, the set) are in a namespace other than the
   operator's: allowed by
   `credentials.allowedNamespaces`, or in the selector scenario by a namespace label matching
   `credentials.allowedNamespaceSelector` (the operator then lists namespaces, which only that chart grants);
6. the set rolls out over its two servers: the operator lists and watches sets, re-reads the set, patches its
   status and creates its EcsReinstall children (listed by their set label), which it then reconciles;
7. the kube emulator's request counters, minus the baseline and minus this test's own status reads, are the
   operator's API calls: every one must be allowed by the rendered RBAC for the operator's ServiceAccount, and
   every grant of the chart must be used by some call (here or in the e2e suite's recording).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from deploy_support import (
    REPO_ROOT,
    ApiCall,
    Grant,
    Helm,
    by_kind,
    container,
    is_allowed,
    only,
    run_tool,
    service_account_grants,
)

OPERATOR_NAMESPACE = "ecs-reinstall-system"
RELEASE = "ecs-reinstall-operator"
POD_NAME = f"{RELEASE}-5f7c9d8b4-q2x7z"  # what the downward API would give the operator's Pod
TEAM_NAMESPACES = ("team-a", "team-b")
# The samples' namespace whose EcsReinstall uses the operator's default credentials (see `samples`): it must be
# allowed to (credentials.allowedNamespaces, or a label the selector matches).
DEFAULT_CREDENTIALS_NAMESPACE = TEAM_NAMESPACES[0]
NAMESPACE_SELECTOR = "ecs.reinstall.dev/default-credentials=allowed"
NAMESPACE_SELECTOR_LABELS = {"ecs.reinstall.dev/default-credentials": "allowed"}
LIST_NAMESPACES = ApiCall("list", "", "namespaces")
DEFAULT_CREDENTIALS = "hwc-credentials"
ACCESS_KEY = "DEPLOYTESTAK00000001"
SECRET_KEY = "deploy-test-sk-not-a-real-key-000000001"
PROJECT_ID = "0123456789abcdef0123456789abcdef"
SERVER_A = "5a1d0c3e-0000-4000-8000-00000000000a"
SERVER_B = "5a1d0c3e-0000-4000-8000-00000000000b"
# The set sample's servers (selector.serverIds), rolled out two at once.
SET_SERVERS = ("5a1d0c3e-0000-4000-8000-0000000000c1", "5a1d0c3e-0000-4000-8000-0000000000c2")
SET_NAME = "fleet-a"
# Where the e2e suite (tests/e2e) leaves the API calls its operator made: see `e2e_recording` below.
E2E_RECORDING = Path(__file__).parent / "data" / "recorded_api_calls.json"
DEADLINE_SECONDS = 15
KUBE_TOKEN = (
    "deploy-test-token"  # the emulator checks bearer tokens; kubectl and the operator get it in kubeconfig
)

RequestCounts = Counter[ApiCall]


@dataclass
class Scenario:
    mode: str
    values: dict[str, Any]
    docs: list[dict[str, Any]]
    operator_calls: set[ApiCall] = field(default_factory=set)
    reinstalls: dict[str, dict[str, Any]] = field(default_factory=dict)
    set_body: dict[str, Any] = field(default_factory=dict)  # the set sample, as last read
    set_children: list[dict[str, Any]] = field(default_factory=list)
    stored_objects: list[str] = field(default_factory=list)
    liveness_status: int = 0
    metrics_text: str = ""
    kubectl_wait_output: str = ""
    operator_exit_code: int | None = None
    operator_stop_seconds: float = 0.0  # SIGTERM to exit
    operator_log: str = ""
    lease_name: str = ""
    lease_while_running: dict[str, Any] = field(default_factory=dict)
    lease_after_stop: dict[str, Any] = field(default_factory=dict)

    @property
    def grants(self) -> set[Grant]:
        return service_account_grants(self.docs, OPERATOR_NAMESPACE, RELEASE)


# --- processes ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


@contextmanager
def serving(argv: list[str], log: Path) -> Iterator[str]:
    """A server process that prints its base URL on its first stdout line; stopped on exit."""
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), f"{argv} did not start: {log.read_text()[-2000:]}"
            yield url
        finally:
            stop_process(proc)


# --- the Kubernetes side -------------------------------------------------------------------------------------


class Kubectl:
    def __init__(self, binary: str, kubeconfig: Path):
        self.binary = binary
        # kubectl's discovery cache goes next to the kubeconfig, not into the developer's ~/.kube.
        cache = kubeconfig.parent / "kube-cache"
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KUBECACHEDIR": str(cache),
            "HOME": str(cache),
        }

    def __call__(self, *args: str) -> str:
        return run_tool([self.binary, *args], env=self.env).stdout

    def apply(self, docs: list[dict[str, Any]], path: Path) -> None:
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self("apply", "--server-side", "--field-manager=deploy-test", "-f", str(path))


def request_counts(kube_url: str) -> RequestCounts:
    snapshot = httpx.get(f"{kube_url}/_emulator/requests", timeout=10).raise_for_status().json()
    return counts_from_snapshot(snapshot)


def counts_from_snapshot(snapshot: Mapping[str, Any]) -> RequestCounts:
    counts: RequestCounts = Counter()
    for request in snapshot["requests"]:
        call = ApiCall(
            verb=request["verb"],
            group=request["group"],
            resource=request["resource"],
            subresource=request.get("subresource") or "",
            namespace=request.get("namespace") or "",
        )
        counts[call] += request.get("count", 1)
    return counts


def kubeconfig_auth(kubeconfig: Path) -> dict[str, str]:
    """The Authorization header the kubeconfig's user sends (the emulator may require its bearer token)."""
    config = yaml.safe_load(kubeconfig.read_text())
    token = (config["users"][0].get("user") or {}).get("token")
    return {"Authorization": f"Bearer {token}"} if token else {}


def container_environment(deployment: Mapping[str, Any], namespace: str) -> dict[str, str]:
    """The operator container's environment as the kubelet would build it (values and the downward API)."""
    env: dict[str, str] = {}
    for entry in container(deployment).get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif entry.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.namespace"}}:
            env[entry["name"]] = namespace
        elif entry.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}}:
            env[entry["name"]] = POD_NAME
        else:
            raise AssertionError(f"the test cannot resolve env {entry}")
    return env


def set_sample(namespace: str, servers: tuple[str, ...] = SET_SERVERS) -> dict[str, Any]:
    """An EcsReinstallSet over `servers` (by ID), all at once, with the default credentials and the password
    Secret of web-a: the operator creates one EcsReinstall child per server."""
    return {
        "apiVersion": "ecs.reinstall.dev/v1alpha1",
        "kind": "EcsReinstallSet",
        "metadata": {"name": SET_NAME, "namespace": namespace},
        "spec": {
            "selector": {"serverIds": list(servers)},
            "template": {
                "adminPasswordSecretRef": {"name": "web-a-root", "key": "password"},
                "stopServer": True,
                "pollIntervalSeconds": 2,
            },
            "revision": "deploy-test-1",
            "strategy": {"maxInFlight": len(servers), "maxFailures": 0},
        },
    }


def set_done(body: Mapping[str, Any]) -> bool:
    """The set's round is over (Completed, or Stalled: nothing more happens without a person)."""
    return ((body.get("status") or {}).get("phase")) in ("Completed", "Stalled")


def samples(namespaces: tuple[str, str]) -> list[dict[str, Any]]:
    """Two reinstalls touching every kind of input: the default credentials (operator namespace) with a password
    Secret; own credentials with user data from a ConfigMap. And a set of two servers (see `set_sample`) beside the
    first, with the same default credentials and password Secret."""
    ns_a, ns_b = namespaces

    def secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
        meta = {"name": name, "namespace": namespace}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "stringData": data}

    credentials = {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "projectId": PROJECT_ID}
    return [
        secret(DEFAULT_CREDENTIALS, OPERATOR_NAMESPACE, credentials),
        secret("web-a-root", ns_a, {"password": "Deploy-Test-Pa55word"}),
        secret("own-credentials", ns_b, credentials),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-b-cloud-config", "namespace": ns_b},
            "data": {"user-data": "#cloud-config\nruncmd:\n  - echo reinstalled > /etc/motd\n"},
        },
        {
            "apiVersion": "ecs.reinstall.dev/v1alpha1",
            "kind": "EcsReinstall",
            "metadata": {"name": "web-a", "namespace": ns_a},
            "spec": {
                "serverId": SERVER_A,
                "adminPasswordSecretRef": {"name": "web-a-root", "key": "password"},
                "stopServer": True,
                "pollIntervalSeconds": 2,
            },
        },
        {
            "apiVersion": "ecs.reinstall.dev/v1alpha1",
            "kind": "EcsReinstall",
            "metadata": {"name": "web-b", "namespace": ns_b},
            "spec": {
                "serverId": SERVER_B,
                "credentialsSecretRef": {"name": "own-credentials"},
                "stopServer": True,
                "userData": {
                    "valueFrom": {"configMapKeyRef": {"name": "web-b-cloud-config", "key": "user-data"}}
                },
                "pollIntervalSeconds": 2,
            },
        },
        set_sample(ns_a),
    ]


def namespace_doc(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def default_credentials_values(mode: str) -> dict[str, Any]:
    """How each scenario lets the default-credentials sample's namespace use them: by name, or (selector) by a
    label that the namespace gets in `namespace_labels`."""
    if mode == "selector":
        return {"allowedNamespaceSelector": NAMESPACE_SELECTOR}
    return {"allowedNamespaces": [DEFAULT_CREDENTIALS_NAMESPACE]}


def namespace_labels(mode: str, namespace: str) -> dict[str, str]:
    return (
        dict(NAMESPACE_SELECTOR_LABELS)
        if mode == "selector" and namespace == DEFAULT_CREDENTIALS_NAMESPACE
        else {}
    )


def run_scenario(mode: str, helm: Helm, kubectl_binary: str, work: Path) -> Scenario:
    python = Path(sys.executable)
    entrypoint_dir = python.parent  # the console scripts of the installed project (the image's PATH)
    with ExitStack() as stack:
        kubeconfig = work / "kubeconfig"
        # `--token ""`: anonymous access. kubectl sends no bearer token to a plain-http server, so with the
        # emulator's default random token it would be refused.
        kube_emulator = [str(python), "-m", "kube_emulator", "--port", "0", "--kubeconfig", str(kubeconfig)]
        kube_url = stack.enter_context(serving([*kube_emulator, "--token", ""], work / "kube.log"))
        ecs_emulator = [str(python), "-m", "ecs_emulator", "--port", "0", "--project-id", PROJECT_ID]
        ecs_emulator += ["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]
        ecs_emulator += ["--job-seconds", "0.5", "--init-seconds", "0"]
        ecs_url = stack.enter_context(serving(ecs_emulator, work / "ecs.log"))
        for server in (SERVER_A, SERVER_B, *SET_SERVERS):
            httpx.post(
                f"{ecs_url}/_emulator/servers", json={"id": server, "status": "ACTIVE"}, timeout=10
            ).raise_for_status()

        values: dict[str, Any] = {
            "region": "ap-southeast-1",
            "projectId": PROJECT_ID,
            "endpoint": ecs_url,
            "credentials": {"existingSecret": DEFAULT_CREDENTIALS, **default_credentials_values(mode)},
            "logFormat": "text",
            "metrics": {"port": free_port()},
            "health": {"port": free_port()},
            # Renewals every 0.5 s, so that the scenario sees some (the defaults: every 2 s).
            "leaderElection": {"retryPeriodSeconds": 0.5},
        }
        if mode == "namespaced":
            values["watchNamespaces"] = list(TEAM_NAMESPACES)
        docs = helm.render(values, tmp_path=work, namespace=OPERATOR_NAMESPACE, include_crds=True)
        scenario = Scenario(mode=mode, values=values, docs=docs)

        # What `helm install --create-namespace` does, with kubectl: the namespaces, the CRD, then the rest.
        kubectl = Kubectl(kubectl_binary, kubeconfig)
        kubectl.apply(
            [namespace_doc(n, namespace_labels(mode, n)) for n in (OPERATOR_NAMESPACE, *TEAM_NAMESPACES)],
            work / "namespaces.yaml",
        )
        crds = by_kind(docs, "CustomResourceDefinition")
        kubectl.apply(crds, work / "crds.yaml")
        kubectl("wait", "--for=condition=Established", "--timeout=30s", "-f", str(work / "crds.yaml"))
        rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
        kubectl.apply(rest, work / "chart.yaml")
        scenario.stored_objects = kubectl("get", "-f", str(work / "chart.yaml"), "-o", "name").split()
        kubectl.apply(samples(TEAM_NAMESPACES), work / "samples.yaml")

        if mode == "clusterwide":
            # One status write of web-b meets a conflict (as if another writer got there first): the operator
            # then re-reads the resource, a call the RBAC must allow too.
            conflict = {"verbs": ["patch"], "pathRegex": "/ecsreinstalls/web-b/status$", "times": 1}
            conflict["error"] = {"code": 409}
            httpx.post(f"{kube_url}/_emulator/faults", json=conflict, timeout=10).raise_for_status()
        baseline = request_counts(kube_url)
        own_reads: RequestCounts = Counter()
        deployment = only(docs, "Deployment")
        operator = container(deployment)
        container_env = container_environment(deployment, OPERATOR_NAMESPACE)
        scenario.lease_name = container_env["ECS_REINSTALL_LEADER_ELECTION_LEASE_NAME"]
        lease_path = (
            f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/leases/{scenario.lease_name}"
        )
        env = {
            **container_env,
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(work),
            "PATH": f"{entrypoint_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }
        log_path = work / "operator.log"
        log_file = stack.enter_context(open(log_path, "w"))
        proc = subprocess.Popen(
            [str(entrypoint_dir / "ecs-reinstall-operator"), *operator["args"]],
            env=env,
            cwd=work,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + DEADLINE_SECONDS
            with httpx.Client(base_url=kube_url, headers=kubeconfig_auth(kubeconfig), timeout=10) as kube:
                while time.monotonic() < deadline and proc.poll() is None:
                    for reinstall in by_kind(samples(TEAM_NAMESPACES), "EcsReinstall"):
                        ns, name = reinstall["metadata"]["namespace"], reinstall["metadata"]["name"]
                        path = f"/apis/ecs.reinstall.dev/v1alpha1/namespaces/{ns}/ecsreinstalls/{name}"
                        scenario.reinstalls[f"{ns}/{name}"] = kube.get(path).raise_for_status().json()
                        own_reads[ApiCall("get", "ecs.reinstall.dev", "ecsreinstalls", "", ns)] += 1
                    set_doc = set_sample(DEFAULT_CREDENTIALS_NAMESPACE)
                    set_path = (
                        f"/apis/ecs.reinstall.dev/v1alpha1/namespaces/{set_doc['metadata']['namespace']}"
                        f"/ecsreinstallsets/{SET_NAME}"
                    )
                    scenario.set_body = kube.get(set_path).raise_for_status().json()
                    own_reads[
                        ApiCall(
                            "get", "ecs.reinstall.dev", "ecsreinstallsets", "", DEFAULT_CREDENTIALS_NAMESPACE
                        )
                    ] += 1
                    phases = {(r.get("status") or {}).get("phase") for r in scenario.reinstalls.values()}
                    if phases <= {"Succeeded", "Failed"} and set_done(scenario.set_body):
                        break
                    time.sleep(0.5)
                scenario.lease_while_running = kube.get(lease_path).raise_for_status().json()
                own_reads[ApiCall("get", "coordination.k8s.io", "leases", "", OPERATOR_NAMESPACE)] += 1
            health_port, metrics_port = values["health"]["port"], values["metrics"]["port"]
            scenario.liveness_status = httpx.get(
                f"http://127.0.0.1:{health_port}/healthz", timeout=10
            ).status_code
            scenario.metrics_text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            operator_calls = request_counts(kube_url) - baseline - own_reads
            scenario.operator_calls = set(operator_calls)
            with httpx.Client(base_url=kube_url, headers=kubeconfig_auth(kubeconfig), timeout=10) as kube:
                children = f"/apis/ecs.reinstall.dev/v1alpha1/namespaces/{DEFAULT_CREDENTIALS_NAMESPACE}/ecsreinstalls"
                scenario.set_children = [
                    item
                    for item in kube.get(children).raise_for_status().json()["items"]
                    if any(
                        o.get("kind") == "EcsReinstallSet"
                        for o in item["metadata"].get("ownerReferences", [])
                    )
                ]
        finally:
            stopping = time.monotonic()
            scenario.operator_exit_code = stop_process(proc)
            scenario.operator_stop_seconds = time.monotonic() - stopping
            log_file.flush()
            scenario.operator_log = log_path.read_text()
        with httpx.Client(base_url=kube_url, headers=kubeconfig_auth(kubeconfig), timeout=10) as kube:
            scenario.lease_after_stop = kube.get(lease_path).raise_for_status().json()
        # Real kubectl agrees (after the recording, so its reads are not counted as the operator's).
        wait = [
            "wait",
            "--for=condition=Ready",
            "--timeout=10s",
            "-n",
            TEAM_NAMESPACES[0],
            "ecsreinstall/web-a",
        ]
        result = run_tool([kubectl.binary, *wait], env=kubectl.env, check=False)
        scenario.kubectl_wait_output = result.stdout + result.stderr
    return scenario


@pytest.fixture(scope="module")
def scenarios(
    helm: Helm, kubectl_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Scenario]:
    return {
        mode: run_scenario(mode, helm, kubectl_binary, tmp_path_factory.mktemp(f"scenario-{mode}"))
        for mode in MODES
    }


MODES = ["clusterwide", "namespaced", "selector"]


def log_tail(scenario: Scenario) -> str:
    return "\n".join(scenario.operator_log.splitlines()[-40:])


@pytest.mark.parametrize("mode", MODES)
def test_every_rendered_object_is_stored(scenarios: dict[str, Scenario], mode: str) -> None:
    scenario = scenarios[mode]
    expected = {
        f"{d['kind'].lower()}.{d['apiVersion'].split('/')[0]}/{d['metadata']['name']}"
        if "/" in d["apiVersion"]
        else f"{d['kind'].lower()}/{d['metadata']['name']}"
        for d in scenario.docs
        if d["kind"] != "CustomResourceDefinition"
    }
    assert set(scenario.stored_objects) == expected


@pytest.mark.parametrize("mode", MODES)
def test_operator_reconciles_the_samples(scenarios: dict[str, Scenario], mode: str) -> None:
    scenario = scenarios[mode]
    assert len(scenario.reinstalls) == 2
    for key, body in scenario.reinstalls.items():
        status = body.get("status") or {}
        assert status.get("phase") == "Succeeded", f"{key}: {status}\n{log_tail(scenario)}"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert status["observedGeneration"] == body["metadata"]["generation"]
    assert "condition met" in scenario.kubectl_wait_output


@pytest.mark.parametrize("mode", MODES)
def test_operator_rolls_the_set_out_through_owned_children(scenarios: dict[str, Scenario], mode: str) -> None:
    scenario = scenarios[mode]
    status = scenario.set_body.get("status") or {}
    assert status.get("phase") == "Completed", f"{status}\n{log_tail(scenario)}"
    assert sorted(status["succeeded"]) == sorted(SET_SERVERS)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    children = scenario.set_children
    assert sorted(c["spec"]["serverId"] for c in children) == sorted(SET_SERVERS)
    for child in children:
        assert (child.get("status") or {}).get("phase") == "Succeeded", child.get("status")
        # controller, without blockOwnerDeletion: creating it needs no grant on ecsreinstallsets/finalizers
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "ecs.reinstall.dev/v1alpha1",
                "kind": "EcsReinstallSet",
                "name": SET_NAME,
                "uid": scenario.set_body["metadata"]["uid"],
                "controller": True,
            }
        ]


SET_CALLS = {
    ("list", "ecsreinstallsets"),  # kopf's listing, and the leader's (sets.SetSupervisor.lead)
    ("watch", "ecsreinstallsets"),  # kopf's watch stream
    ("get", "ecsreinstallsets"),  # each rollout pass re-reads its set
    ("patch", "ecsreinstallsets/status"),  # the rollout, conditional on the resourceVersion read
    ("create", "ecsreinstalls"),  # the children
}


@pytest.mark.parametrize("mode", MODES)
def test_the_set_calls_are_made_where_the_set_is(scenarios: dict[str, Scenario], mode: str) -> None:
    """Every grant that only sets need is used by this module's own scenarios (not only by the e2e recording);
    the children are created in the set's namespace, and in the namespaced mode the sets are listed and watched
    per watched namespace."""
    scenario = scenarios[mode]
    calls = {
        (c.verb, c.rbac_resource, c.namespace)
        for c in scenario.operator_calls
        if c.resource == "ecsreinstallsets" or (c.resource, c.verb) == ("ecsreinstalls", "create")
    }
    assert {(verb, resource) for verb, resource, _ in calls} == SET_CALLS, log_tail(scenario)
    namespaces = {ns for verb, resource, ns in calls if verb in ("list", "watch")}
    assert namespaces == (set(TEAM_NAMESPACES) if mode == "namespaced" else {""})
    assert {ns for verb, resource, ns in calls if verb not in ("list", "watch")} == {
        DEFAULT_CREDENTIALS_NAMESPACE
    }


@pytest.mark.parametrize("mode", MODES)
def test_liveness_and_metrics_answer_on_the_chart_ports(scenarios: dict[str, Scenario], mode: str) -> None:
    scenario = scenarios[mode]
    assert scenario.liveness_status == 200
    assert "# TYPE" in scenario.metrics_text


@pytest.mark.parametrize("mode", MODES)
def test_operator_stops_cleanly_on_sigterm(scenarios: dict[str, Scenario], mode: str) -> None:
    assert scenarios[mode].operator_exit_code == 0, log_tail(scenarios[mode])
    # Well inside the Pod's grace period: kopf waits 5 s for tasks it did not end itself (the stop-flag waiter
    # was one, until the cleanup handler raised the flag), so a slower stop means something hangs.
    assert scenarios[mode].operator_stop_seconds < 4, scenarios[mode].operator_stop_seconds


def with_secret_name(
    call: ApiCall, operator_namespace: str, credentials_secret: str, lease_name: str = ""
) -> ApiCall:
    """The request log has no object names. In the operator's own namespace the operator serves no resources,
    so the only Secret it reads there is the default credentials Secret (what the chart's resourceNames allows);
    the scenarios put no other Secret there. Likewise the only Lease it reads and writes is its own (a create
    carries no name in RBAC terms)."""
    if (call.resource, call.namespace) == ("secrets", operator_namespace) and credentials_secret:
        return ApiCall(
            call.verb, call.group, call.resource, call.subresource, call.namespace, credentials_secret
        )
    if (
        (call.resource, call.namespace) == ("leases", operator_namespace)
        and lease_name
        and call.verb != "create"
    ):
        return ApiCall(call.verb, call.group, call.resource, call.subresource, call.namespace, lease_name)
    return call


@pytest.mark.parametrize("mode", MODES)
def test_every_call_of_the_operator_is_granted(scenarios: dict[str, Scenario], mode: str) -> None:
    scenario = scenarios[mode]
    assert scenario.operator_calls, "no API calls recorded"
    calls = {
        with_secret_name(c, OPERATOR_NAMESPACE, DEFAULT_CREDENTIALS, scenario.lease_name)
        for c in scenario.operator_calls
    }
    denied = sorted(c for c in calls if not is_allowed(scenario.grants, c))
    assert not denied, f"the chart's RBAC ({mode}) would deny: {denied}"


@dataclass(frozen=True)
class E2eRecording:
    """What the e2e suite leaves in E2E_RECORDING (JSON): the operator's own calls, not the test driver's.

    {"watchNamespaces": [...], "operatorNamespace": "...", "credentialsSecret": "..." (optional),
     "defaultCredentialsNamespaceSelector": "..." (optional: the operators had one, so they listed namespaces),
     "requests": [items as in GET /_emulator/requests: verb, group, resource, subresource, namespace, count]}
    """

    watch_namespaces: list[str]
    operator_namespace: str
    credentials_secret: str
    calls: set[ApiCall]
    namespace_selector: str = ""


def e2e_recording() -> E2eRecording | None:
    if not E2E_RECORDING.exists():
        return None
    data = json.loads(E2E_RECORDING.read_text())
    return E2eRecording(
        watch_namespaces=list(data.get("watchNamespaces", [])),
        operator_namespace=data.get("operatorNamespace", OPERATOR_NAMESPACE),
        credentials_secret=data.get("credentialsSecret", ""),
        calls=set(counts_from_snapshot(data)),
        namespace_selector=data.get("defaultCredentialsNamespaceSelector", ""),
    )


def test_e2e_recording_is_granted(helm: Helm, tmp_path: Path) -> None:
    recording = e2e_recording()
    if recording is None:
        # Shown by `-ra` on every run until the e2e suite writes it; this module's scenarios still prove the RBAC.
        pytest.skip(
            f"{E2E_RECORDING.relative_to(REPO_ROOT)} not written: tests/e2e does not record the operator's "
            "API calls yet (format: tests/deploy/data/README.md)"
        )
    values = {
        "watchNamespaces": recording.watch_namespaces,
        "credentials": {
            "existingSecret": recording.credentials_secret,
            "allowedNamespaceSelector": recording.namespace_selector,
        },
    }
    docs = helm.render(values, tmp_path=tmp_path, namespace=recording.operator_namespace)
    grants = service_account_grants(docs, recording.operator_namespace, RELEASE)
    calls = {
        with_secret_name(c, recording.operator_namespace, recording.credentials_secret, RELEASE)
        for c in recording.calls
    }
    denied = sorted(c for c in calls if not is_allowed(grants, c))
    assert not denied, f"the chart's RBAC would deny calls recorded by the e2e suite: {denied}"


def test_the_chart_grants_nothing_unused(scenarios: dict[str, Scenario]) -> None:
    used = {(c.group, c.rbac_resource, c.verb) for s in scenarios.values() for c in s.operator_calls}
    recording = e2e_recording()
    if recording is not None:
        used |= {(c.group, c.rbac_resource, c.verb) for c in recording.calls}
    granted = {(g.group, g.resource, g.verb) for s in scenarios.values() for g in s.grants}
    unused = sorted(granted - used)
    assert not unused, f"granted but never used by the operator: {unused}"


def test_secrets_and_configmaps_are_only_read(scenarios: dict[str, Scenario]) -> None:
    verbs = {
        c.verb
        for s in scenarios.values()
        for c in s.operator_calls
        if c.resource in ("secrets", "configmaps")
    }
    assert verbs == {"get"}


@pytest.mark.parametrize("mode", MODES)
def test_the_operator_leads_with_its_lease_and_releases_it_on_sigterm(
    scenarios: dict[str, Scenario], mode: str
) -> None:
    scenario = scenarios[mode]
    assert scenario.lease_name == RELEASE
    running = scenario.lease_while_running["spec"]
    assert running["holderIdentity"] == POD_NAME, log_tail(scenario)
    assert running["leaseDurationSeconds"] == 15
    assert running["renewTime"] > running["acquireTime"], "renewed while running"
    assert f"acquired the leader lease {OPERATOR_NAMESPACE}/{RELEASE} as {POD_NAME}" in scenario.operator_log
    released = scenario.lease_after_stop["spec"]
    assert released["holderIdentity"] == "" and released["leaseDurationSeconds"] == 1, (
        "a standby may take over"
    )
    assert {c.verb for c in scenario.operator_calls if c.resource == "leases"} == {"get", "create", "update"}
    assert {c.namespace for c in scenario.operator_calls if c.resource == "leases"} == {OPERATOR_NAMESPACE}


@pytest.mark.parametrize("mode", MODES)
def test_namespaces_are_listed_and_granted_only_with_a_selector(
    scenarios: dict[str, Scenario], mode: str
) -> None:
    """The default credentials allowed by name need no API call; allowed by a namespace selector, the operator
    lists the namespaces that match it (at start-up, with limit=1, to check the selector; then to decide), and
    only then does the chart grant list on namespaces, cluster-wide, and nothing else on them."""
    scenario = scenarios[mode]
    namespace_calls = {c for c in scenario.operator_calls if c.resource == "namespaces"}
    namespace_grants = {g for g in scenario.grants if g.resource == "namespaces"}
    if mode == "selector":
        assert namespace_calls == {LIST_NAMESPACES}, log_tail(scenario)
        assert namespace_grants == {Grant("", "", "namespaces", "list")}
    else:
        assert not namespace_calls, log_tail(scenario)
        assert not namespace_grants
    env = container_environment(only(scenario.docs, "Deployment"), OPERATOR_NAMESPACE)
    assert env.get("ECS_REINSTALL_DEFAULT_CREDENTIALS_NAMESPACE_SELECTOR") == (
        NAMESPACE_SELECTOR if mode == "selector" else None
    )
    assert env.get("ECS_REINSTALL_DEFAULT_CREDENTIALS_NAMESPACES") == (
        None if mode == "selector" else DEFAULT_CREDENTIALS_NAMESPACE
    )
