"""The operator in its image, run exactly as the manifests run it, against the emulators on loopback.

Per scenario (the Helm chart on the kube emulator and on the real kube-apiserver 1.20.2; the kustomize base on the
kube emulator):
1. the ECS emulator starts with the servers and key pair the samples (deploy/examples) name; the Kubernetes API
   (kube_emulator, or etcd + kube-apiserver of tests/realkube.py) starts with the CRDs;
2. the manifests are rendered with the real tools (`helm template`, `kubectl kustomize`), and the operator
   container runs with exactly the Pod's securityContext, volumes, memory limit, args and environment (the
   downward API resolved), translated to podman flags by image_support.PodSpec, on the host network; the only
   addition is the kubeconfig, mounted read-only with KUBECONFIG pointing at it (outside a Pod there is no
   service account). The kustomize base takes the endpoint and credentials the way an overlay would
   (the settings ConfigMap), and ports that are free here;
3. once /healthz answers, the samples are applied with kubectl and every EcsReinstall must reach Succeeded;
   /metrics and /healthz answer on the configured ports; the leader Lease names the Pod;
4. SIGTERM (what the kubelet sends) must stop the container with exit code 0 well within the Pod's
   terminationGracePeriodSeconds (Kubernetes' default of 30 s: the manifests set none).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from image_support import (
    CONTAINER_KUBECONFIG,
    REPO,
    RUNS,
    BuiltImage,
    Podman,
    PodSpec,
    free_port,
    render_chart,
    render_kustomize_base,
    serving,
    wait_until,
)

import realkube
from ecs_reinstall import demo

EXAMPLES = demo.EXAMPLES
CRDS = sorted((REPO / "crds").glob("*.yaml"))
NAMESPACE = "default"  # the operator's (the release namespace) and the samples'
POD_NAME = "ecs-reinstall-operator-7d9f8b6c5-x4k2m"  # what the downward API would give the operator's Pod
PROJECT_ID = demo.DEMO_PROJECT  # the samples' credentials Secret names this project
CREDENTIALS_SECRET = "hwc-credentials"
SUCCEED_TIMEOUT = 90
HEALTHY_TIMEOUT = 30
SCENARIOS = [("chart", "emulator"), ("chart", realkube.BACKEND_ID), ("kustomize", "emulator")]


@dataclass
class Outcome:
    manifests: str
    backend: str
    grace_seconds: int
    phases: dict[str, str] = field(default_factory=dict)  # every EcsReinstall (the samples', and their sets')
    set_phases: dict[str, str] = field(default_factory=dict)
    samples: int = 0  # EcsReinstalls among the samples
    messages: dict[str, str] = field(default_factory=dict)
    healthz_status: int = 0
    metrics_text: str = ""
    lease_holder: str | None = None
    lease_name: str = ""
    seconds_to_succeeded: float = 0.0
    exit_code: int | None = None
    stop_seconds: float = 0.0
    killed: bool = False
    peak_memory_bytes: int | None = None
    memory_limit: str = ""
    log: str = ""

    def tail(self, lines: int = 40) -> str:
        return "operator log (last lines):\n" + "\n".join(self.log.splitlines()[-lines:])


def ecs_emulator_argv(docs: list[dict]) -> list[str]:
    """The ECS emulator as `make demo` starts it: the samples' project and credentials."""
    argv = [sys.executable, "-m", "ecs_emulator", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--project-id", PROJECT_ID]
    for access_key, secret_key in demo._credentials(docs):
        argv += ["--credential", f"{access_key}:{secret_key}"]
    return argv


@dataclass
class KubeBackend:
    kubeconfig: Path  # for kubectl here
    container_kubeconfig: Path  # self-contained (no file references), mounted read-only into the container


@contextmanager
def kube_backend(backend: str, work: Path) -> Iterator[KubeBackend]:
    if backend == "emulator":
        kubeconfig = work / "kubeconfig"
        # anonymous (--token ""): kubectl sends no bearer token to a plain-http server
        argv = [sys.executable, "-m", "kube_emulator", "--host", "127.0.0.1", "--port", "0"]
        argv += ["--kubeconfig", str(kubeconfig), "--token", ""]
        for crd in CRDS:
            argv += ["--crds", str(crd)]
        with serving(argv, work / "kube-emulator.log"):
            yield KubeBackend(kubeconfig, kubeconfig)
        return
    reason = realkube.unavailable_reason()
    if reason:
        if realkube.switch() == "require":
            pytest.fail(f"REAL_KUBE=require: {reason}")
        pytest.skip(reason)
    with realkube.running_real_kube(work / "realkube", controller_manager=False) as real:
        realkube.apply_crds(real, CRDS)
        config = json.loads(real.kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        cluster["certificate-authority-data"] = base64.b64encode(real.ca_file.read_bytes()).decode()
        del cluster["certificate-authority"]
        inside = work / "kubeconfig-container"
        inside.write_text(json.dumps(config))
        yield KubeBackend(real.kubeconfig, inside)


def manifests_pod(manifests: str, ecs_url: str, work: Path) -> PodSpec:
    metrics_port, health_port = free_port(), free_port()
    if manifests == "chart":
        values = {
            "region": "ap-southeast-1",
            "projectId": PROJECT_ID,
            "endpoint": ecs_url,
            "credentials": {"existingSecret": CREDENTIALS_SECRET},
            "metrics": {"port": metrics_port},
            "health": {"port": health_port},
        }
        return PodSpec.from_deployment(render_chart(values, NAMESPACE, work))
    docs = render_kustomize_base()
    # what an overlay adds to the settings ConfigMap (configMapGenerator, behavior: merge)
    (settings,) = [d for d in docs if d.get("kind") == "ConfigMap" and "settings" in d["metadata"]["name"]]
    settings["data"].update(
        ECS_REINSTALL_REGION="ap-southeast-1",
        ECS_REINSTALL_PROJECT_ID=PROJECT_ID,
        ECS_REINSTALL_ENDPOINT=ecs_url,
        ECS_REINSTALL_CREDENTIALS_SECRET=CREDENTIALS_SECRET,
        ECS_REINSTALL_METRICS_PORT=str(metrics_port),
        ECS_REINSTALL_HEALTH_PORT=str(health_port),
    )
    return PodSpec.from_deployment(docs)


def kubectl(kubeconfig: Path, *args: str) -> str:
    binary = os.environ.get("KUBECTL_135_BIN") or str(REPO / ".tools" / "bin" / "kubectl-1.35")
    cache = kubeconfig.parent / "kube-cache"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(cache), "HOME": str(cache)}
    proc = subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def cgroup_peak_memory(podman: Podman, name: str) -> int | None:
    """The container's peak memory use so far (cgroup v1 max_usage_in_bytes or v2 memory.peak), if readable."""
    path = podman.run("container", "inspect", "--format", "{{.State.CgroupPath}}", name, check=False)
    cgroup = path.stdout.strip()
    for candidate in (
        Path(f"/sys/fs/cgroup/memory{cgroup}/memory.max_usage_in_bytes"),
        Path(f"/sys/fs/cgroup{cgroup}/memory.peak"),
    ):
        try:
            return int(candidate.read_text())
        except (OSError, ValueError):
            continue
    return None


def run_scenario(podman: Podman, image: BuiltImage, manifests: str, backend: str, work: Path) -> Outcome:
    # the samples, and what they need in the cloud, exactly as `make demo` does it (ecs_reinstall.demo)
    docs = demo._documents()
    reinstalls = [d["metadata"]["name"] for d in docs if d.get("kind") == "EcsReinstall"]
    sets = [d["metadata"]["name"] for d in docs if d.get("kind") == "EcsReinstallSet"]
    started = time.monotonic()
    with ExitStack() as stack:
        ecs_url = stack.enter_context(serving(ecs_emulator_argv(docs), work / "ecs-emulator.log"))
        with httpx.Client(base_url=ecs_url, timeout=10) as admin:
            demo._prepare_cloud(admin, docs)
        kube = stack.enter_context(kube_backend(backend, work))
        pod = manifests_pod(manifests, ecs_url, work)
        outcome = Outcome(manifests, backend, pod.grace_seconds, samples=len(reinstalls))
        env = pod.environment(POD_NAME, NAMESPACE)
        outcome.lease_name = env.get("ECS_REINSTALL_LEADER_ELECTION_LEASE_NAME", "")
        outcome.memory_limit = str(((pod.container.get("resources") or {}).get("limits") or {}).get("memory"))
        kubeconfig = work / "kubeconfig-mounted"
        kubeconfig.write_text(kube.container_kubeconfig.read_text())
        kubeconfig.chmod(0o444)  # readable by uid 10001, as a Secret volume's file would be
        name = f"ecs-image-test-{os.getpid()}-{manifests}-{backend}".replace(".", "-")
        podman.run("rm", "-f", "-t", "0", name, check=False)
        args = pod.podman_args(
            {**env, "KUBECONFIG": CONTAINER_KUBECONFIG}, mounts=[(str(kubeconfig), CONTAINER_KUBECONFIG)]
        )
        podman.run("run", "--detach", "--name", name, *args, image.id, *pod.args())
        stack.callback(podman.run, "rm", "-f", "-t", "0", name, check=False)

        def logs() -> str:
            proc = podman.run("logs", name, check=False)
            return proc.stdout + proc.stderr

        def running() -> bool:
            state = podman.run("container", "inspect", "--format", "{{.State.Running}}", name, check=False)
            return state.stdout.strip() == "true"

        health = f"http://127.0.0.1:{env['ECS_REINSTALL_HEALTH_PORT']}/healthz"
        metrics = f"http://127.0.0.1:{env['ECS_REINSTALL_METRICS_PORT']}/metrics"

        def healthy() -> bool:
            assert running(), f"the operator container exited:\n{logs()[-4000:]}"
            try:
                return httpx.get(health, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, HEALTHY_TIMEOUT, f"{health} to answer 200", on_timeout=logs)
        applied = time.monotonic()
        kubectl(kube.kubeconfig, "apply", "-n", NAMESPACE, "-f", str(EXAMPLES))

        def all_finished() -> bool:
            assert running(), f"the operator container exited:\n{logs()[-4000:]}"
            for kind, phases in (("ecsreinstalls", outcome.phases), ("ecsreinstallsets", outcome.set_phases)):
                if kind == "ecsreinstallsets" and not sets:
                    continue
                listed = json.loads(kubectl(kube.kubeconfig, "get", kind, "-n", NAMESPACE, "-o", "json"))
                for item in listed["items"]:
                    status = item.get("status") or {}
                    phases[item["metadata"]["name"]] = status.get("phase") or ""
                    outcome.messages[item["metadata"]["name"]] = status.get("message") or ""
            return (
                set(outcome.phases) >= set(reinstalls)
                and set(outcome.set_phases) >= set(sets)
                and all(p in ("Succeeded", "Failed") for p in outcome.phases.values())
                and all(p in ("Completed", "Stalled", "Aborted") for p in outcome.set_phases.values())
            )

        try:
            wait_until(all_finished, SUCCEED_TIMEOUT, "every sample to finish", interval=0.5)
        except AssertionError as exc:
            outcome.log = logs()
            raise AssertionError(f"{exc}\nphases: {outcome.phases}\n{outcome.tail()}") from None
        outcome.seconds_to_succeeded = time.monotonic() - applied
        outcome.healthz_status = httpx.get(health, timeout=5).status_code
        outcome.metrics_text = httpx.get(metrics, timeout=5).text
        if outcome.lease_name:
            lease = json.loads(
                kubectl(kube.kubeconfig, "get", "lease", "-n", NAMESPACE, outcome.lease_name, "-o", "json")
            )
            outcome.lease_holder = lease["spec"].get("holderIdentity")
        outcome.peak_memory_bytes = cgroup_peak_memory(podman, name)

        # What the kubelet does: SIGTERM, then SIGKILL once the grace period is over.
        stopping = time.monotonic()
        podman.run("kill", "--signal", "TERM", name)
        waited = podman.run("wait", name, check=False, timeout=pod.grace_seconds + 30)
        outcome.stop_seconds = time.monotonic() - stopping
        if outcome.stop_seconds > pod.grace_seconds:
            outcome.killed = True
        outcome.exit_code = (
            int(waited.stdout.strip()) if waited.stdout.strip().lstrip("-").isdigit() else None
        )
        outcome.log = logs()
    peak = f"{outcome.peak_memory_bytes / 2**20:.0f} MiB" if outcome.peak_memory_bytes else "n/a"
    RUNS.append(
        f"{manifests} on {backend}: {len(outcome.phases)} EcsReinstalls Succeeded {outcome.seconds_to_succeeded:.1f} s after "
        f"kubectl apply; stopped in {outcome.stop_seconds:.1f} s (grace {pod.grace_seconds} s); peak memory "
        f"{peak} (limit {outcome.memory_limit}); scenario {time.monotonic() - started:.0f} s"
    )
    return outcome


@pytest.fixture(scope="module")
def outcomes(
    podman: Podman, image: BuiltImage, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Future]:
    """The scenarios run at the same time (each with its own emulators, API server and container): they mostly
    wait for the samples' poll intervals, so together they take about as long as one."""
    with ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        futures = {
            (manifests, backend): pool.submit(
                run_scenario, podman, image, manifests, backend, tmp_path_factory.mktemp(f"image-{manifests}")
            )
            for manifests, backend in SCENARIOS
        }
        wait(futures.values())
    return futures


@pytest.fixture(params=SCENARIOS, ids=[f"{m}-{b}" for m, b in SCENARIOS])
def outcome(request: pytest.FixtureRequest, outcomes: dict[tuple[str, str], Future]) -> Outcome:
    return outcomes[request.param].result()  # re-raises the scenario's failure (or skip) in this test


def test_samples_succeed(outcome: Outcome) -> None:
    failed = {n: (p, outcome.messages.get(n)) for n, p in outcome.phases.items() if p != "Succeeded"}
    assert not failed, f"{failed}\n{outcome.tail()}"
    assert outcome.samples >= 4 and len(outcome.phases) >= outcome.samples, outcome.phases
    stalled = {n: p for n, p in outcome.set_phases.items() if p != "Completed"}
    assert not stalled, f"{stalled}\n{outcome.tail()}"


def test_healthz_and_metrics_on_the_configured_ports(outcome: Outcome) -> None:
    assert outcome.healthz_status == 200
    assert "ecs_reinstall_finished_total" in outcome.metrics_text
    succeeded = [
        line
        for line in outcome.metrics_text.splitlines()
        if line.startswith("ecs_reinstall_finished_total{") and 'result="Succeeded"' in line
    ]
    total = sum(float(line.rsplit(" ", 1)[1]) for line in succeeded)
    assert total >= len(outcome.phases), succeeded


def test_leader_lease_names_the_pod(outcome: Outcome) -> None:
    assert outcome.lease_name, "the manifests turn leader election on"
    assert outcome.lease_holder == POD_NAME, outcome.tail()


def test_stops_cleanly_on_sigterm_within_the_grace_period(outcome: Outcome) -> None:
    assert not outcome.killed, f"still running after the {outcome.grace_seconds} s grace period"
    assert outcome.exit_code == 0, f"exit code {outcome.exit_code}\n{outcome.tail()}"
    # well inside the grace period, not just before the SIGKILL
    assert outcome.stop_seconds < min(10, outcome.grace_seconds / 2), outcome.stop_seconds


def test_logs_are_json_without_errors(outcome: Outcome) -> None:
    lines = [line for line in outcome.log.splitlines() if line.strip()]
    assert lines, "the operator logged nothing"
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not not_json, f"logFormat json, yet: {not_json[:5]}"
    assert "Traceback" not in outcome.log, outcome.tail()


def test_fits_the_memory_limit(outcome: Outcome) -> None:
    if outcome.peak_memory_bytes is None:
        pytest.skip("the container's cgroup memory statistics are not readable here")
    assert outcome.memory_limit != "None", "the manifests set a memory limit"
    limit = {"Mi": 2**20, "Gi": 2**30}[outcome.memory_limit[-2:]] * int(outcome.memory_limit[:-2])
    assert outcome.peak_memory_bytes < 0.8 * limit, (outcome.peak_memory_bytes, limit)
