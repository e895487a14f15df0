"""`make demo`: the operator end to end on the two local emulators, driven with real kubectl.

Starts kube_emulator and ecs_emulator (each a subprocess on a free loopback port), registers the servers the
samples in deploy/examples name, starts the operator as `python -m ecs_reinstall run`, applies the CRD and the
samples with kubectl, and prints `kubectl get ecsreinstalls` whenever it changes until every sample is Ready.
Exit 0 on success; otherwise it says what failed (resource messages, the operator's last log lines) and exits 1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "examples"
CRDS = REPO / "crds"
# The demo credentials match the sample Secret in deploy/examples (fake values, for the emulator only).
DEMO_PROJECT = "0123456789abcdef0123456789abcdef"
JOB_SECONDS = 4.0
FLEET_SIZE = 6  # servers the demo tags for each EcsReinstallSet sample that selects by tags
FIRST_IMAGE = "1d2e3f40-5a6b-4c7d-8e9f-0a1b2c3d4e5f"  # the image the demo's servers start from


def _kubectl() -> str:
    for candidate in (shutil.which("kubectl"), str(REPO / ".tools" / "bin" / "kubectl-1.35")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("demo: kubectl not found on PATH (run `make tools` or install kubectl)")


def _start(stack: ExitStack, argv: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Starts a server that prints its URL on its first stdout line; stopped when the stack closes."""
    out = open(log, "w")
    stack.callback(out.close)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=out, text=True)
    stack.callback(_stop, proc)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        raise RuntimeError(f"{argv[2]} did not start (see {log})")
    return proc, url


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _documents() -> list[dict]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict))
    return docs


def _credentials(docs: list[dict]) -> list[tuple[str, str]]:
    """(access key, secret key) of every sample credentials Secret, for the emulator to accept them."""
    found = []
    for doc in docs:
        data = doc.get("stringData") or {}
        if doc.get("kind") == "Secret" and "accessKey" in data and "secretKey" in data:
            found.append((data["accessKey"], data["secretKey"]))
    return found


def _prepare_cloud(admin: httpx.Client, docs: list[dict]) -> list[str]:
    """The servers, images, key pairs and tags the samples need, in the ECS emulator."""
    servers = []
    images = {FIRST_IMAGE}

    def add(server_id: str, spec: dict, tags: dict | None = None) -> None:
        status = "ACTIVE" if spec.get("stopServer") else "SHUTOFF"
        server = {"id": server_id, "status": status, "job_seconds": JOB_SECONDS, "image_id": FIRST_IMAGE}
        admin.post("/_emulator/servers", json=server).raise_for_status()
        if tags:
            admin.post(
                f"/_emulator/servers/{server_id}/operations", json={"action": "tag", "set": tags}
            ).raise_for_status()
        servers.append(server_id)

    for doc in docs:
        if doc.get("kind") == "EcsReinstall":
            spec = doc["spec"]
            add(spec["serverId"], spec)
        elif doc.get("kind") == "EcsReinstallSet":
            spec = doc["spec"]["template"]
            selector = doc["spec"]["selector"]
            for server_id in selector.get("serverIds") or ():
                add(server_id, spec)
            for n in range(FLEET_SIZE if selector.get("tags") else 0):
                add(f"f1ee7000-0000-4000-8000-{n:012d}", spec, selector["tags"])
        else:
            continue
        images.add(spec.get("imageId") or FIRST_IMAGE)
        if spec.get("keyName"):
            admin.post("/_emulator/keypairs", json={"name": spec["keyName"]}).raise_for_status()
    for image in sorted(images):
        admin.post("/_emulator/images", json={"id": image, "name": f"demo-{image[:8]}"}).raise_for_status()
    return servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(port: int, operator: subprocess.Popen, timeout: float) -> bool:
    """Waits for the operator's liveness endpoint: then kopf watches and our runners are in place."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and operator.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _get(kubectl: str, env: dict, *args: str) -> str:
    return subprocess.run([kubectl, *args], env=env, capture_output=True, text=True, check=True).stdout


def main(timeout: float = 120.0) -> int:
    kubectl = _kubectl()
    docs = _documents()
    if not docs:
        print(f"demo: no samples found in {EXAMPLES} (run from a checkout)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ecs-reinstall-demo-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        kubeconfig = work / "kubeconfig"
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        py = sys.executable
        print("demo: starting kube_emulator and ecs_emulator on loopback ...")
        _, kube_url = _start(
            stack,
            [
                py,
                "-m",
                "kube_emulator",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--kubeconfig",
                str(kubeconfig),
            ],
            work / "kube-emulator.log",
        )
        _, ecs_url = _start(
            stack,
            [py, "-m", "ecs_emulator", "--host", "127.0.0.1", "--port", "0", "--project-id", DEMO_PROJECT]
            + [arg for ak, sk in _credentials(docs) for arg in ("--credential", f"{ak}:{sk}")],
            work / "ecs-emulator.log",
        )
        with httpx.Client(base_url=ecs_url, timeout=10) as admin:
            servers = _prepare_cloud(admin, docs)
        print(f"demo: Kubernetes API {kube_url}, ECS API {ecs_url}, {len(servers)} servers registered")

        subprocess.run([kubectl, "apply", "-f", str(CRDS)], env=env, check=True)
        subprocess.run(
            [kubectl, "wait", "--for=condition=Established", "--timeout=30s", "-f", str(CRDS)],
            env=env,
            check=True,
            capture_output=True,
        )
        operator_log = work / "operator.log"
        health_port = _free_port()
        operator = subprocess.Popen(
            [
                py,
                "-m",
                "ecs_reinstall",
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--endpoint",
                ecs_url,
                "--operator-namespace",
                "default",
                "--credentials-secret",
                "hwc-credentials",
                "--log-format",
                "text",
                "--metrics-port",
                "0",
                "--health-port",
                str(health_port),
                "--qps",
                "50",
                "--leader-election",
                "false",  # one process: nothing to elect
            ],
            stdout=stack.enter_context(open(operator_log, "w")),
            stderr=subprocess.STDOUT,
            env=env,
        )
        stack.callback(_stop, operator)
        if not _wait_healthy(health_port, operator, timeout=30):
            return _report([], {}, operator, operator_log)

        applied_at = time.monotonic()
        subprocess.run([kubectl, "apply", "-f", str(EXAMPLES)], env=env, check=True)
        submitted: dict[str, float] = {}
        last_seen: list = []
        last_sets: list = []
        deadline = applied_at + timeout
        while time.monotonic() < deadline:
            items = json.loads(_get(kubectl, env, "get", "ecsreinstalls", "-A", "-o", "json"))["items"]
            for item in items:
                key = f"{item['metadata']['namespace']}/{item['metadata']['name']}"
                conds = {c["type"]: c["status"] for c in (item.get("status") or {}).get("conditions", [])}
                if conds.get("Submitted") == "True" and key not in submitted:
                    submitted[key] = time.monotonic() - applied_at
            seen = [
                ((i.get("status") or {}).get("phase"), (i.get("status") or {}).get("jobId")) for i in items
            ]
            if seen != last_seen:  # print the table as kubectl shows it, whenever a phase or job changes
                table = _get(kubectl, env, "get", "ecsreinstalls", "-A")
                print(
                    f"\n$ kubectl get ecsreinstalls -A   (t={time.monotonic() - applied_at:.1f}s)\n{table}",
                    end="",
                )
                last_seen = seen
            sets = json.loads(_get(kubectl, env, "get", "ecsreinstallsets", "-A", "-o", "json"))["items"]
            set_phases = [(s.get("status") or {}).get("phase") for s in sets]
            if set_phases != last_sets:
                table = _get(kubectl, env, "get", "ecsreinstallsets", "-A")
                print(
                    f"\n$ kubectl get ecsreinstallsets -A   (t={time.monotonic() - applied_at:.1f}s)\n{table}",
                    end="",
                )
                last_sets = set_phases
            phases = [(item.get("status") or {}).get("phase") for item in items]
            sets_done = all(p in ("Completed", "Stalled", "Aborted") for p in set_phases)
            if items and sets_done and all(p in ("Succeeded", "Failed") for p in phases):
                break
            if operator.poll() is not None:
                break
            time.sleep(0.25)
        return _report(items, submitted, operator, operator_log)


def _report(items: list[dict], submitted: dict[str, float], operator: subprocess.Popen, log: Path) -> int:
    failed = [i for i in items if (i.get("status") or {}).get("phase") != "Succeeded"]
    if not failed and items:
        print("\ndemo: every sample is Ready. Time from `kubectl apply` to Submitted:")
        for key, seconds in sorted(submitted.items()):
            print(f"  {key}: {seconds:.2f}s")
        for item in items:  # the samples that change the OS image, as their status records it
            status = item.get("status") or {}
            if (item.get("spec") or {}).get("imageId"):
                print(
                    f"demo: {item['metadata']['name']} changed server {item['spec']['serverId']}'s image: "
                    f"{status.get('imageBefore')} -> {status.get('imageAfter')}"
                )
        return 0
    print("\ndemo: FAILED", file=sys.stderr)
    if operator.poll() is not None:
        print(f"  the operator exited with code {operator.returncode}", file=sys.stderr)
    for item in failed:
        status = item.get("status") or {}
        print(
            f"  {item['metadata']['namespace']}/{item['metadata']['name']}: phase {status.get('phase')}: "
            f"{status.get('message')}",
            file=sys.stderr,
        )
    tail = log.read_text().splitlines()[-30:]
    print("  last operator log lines:\n    " + "\n    ".join(tail), file=sys.stderr)
    return 1
