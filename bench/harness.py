"""What the benchmark and the chaos run share: the two emulators and the operator as real subprocesses, process
accounting from /proc, a watch on the EcsReinstall resources, bulk creation, and the emulators' admin APIs.

Everything talks HTTP over loopback. The operator runs exactly as it runs in production
(`python -m ecs_reinstall run ...`), so its CPU and memory are its own, measured from /proc.
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import kubernetes
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO / "crds"
PYTHON = sys.executable
GROUP, VERSION, PLURAL = "ecs.reinstall.dev", "v1alpha1", "ecsreinstalls"

# Fake credentials, for the emulator only. The secret key and the password are what the secret scans look for.
ACCESS_KEY = "BENCHACCESSKEY000001"
SECRET_KEY = "bench-SK-must-never-be-logged-00000000001"  # noqa: S105
PROJECT_ID = "0123456789abcdef0123456789abcdef"
PASSWORD = "Bench!Reinstall-2026pw"  # noqa: S105
NAMESPACE = "bench"
OPERATOR_NAMESPACE = "ecs-system"
CREDENTIALS_SECRET = "hwc-credentials"  # noqa: S105 (a name)
PASSWORD_SECRET = "root-password"  # noqa: S105 (a name)
SECRETS = (SECRET_KEY, PASSWORD)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- /proc accounting ------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float] | None:
    """(resident set, peak resident set) in MiB, from /proc/PID/status (None once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            values[key] = int(value.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


@dataclass
class ProcessTrack:
    """One named role (the operator, an emulator, the SDK script) across restarts: CPU adds up over its pids."""

    name: str
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (t, rss MiB, cpu s)
    peak_rss_mb: float = 0.0
    _finished_cpu: float = 0.0
    _pid: int | None = None
    _last_cpu: float = 0.0

    def attach(self, pid: int) -> None:
        self._finished_cpu += self._last_cpu
        self._pid, self._last_cpu = pid, 0.0

    def sample(self, now: float) -> None:
        if self._pid is None:
            return
        cpu, memory = cpu_seconds(self._pid), memory_mb(self._pid)
        if cpu is None or memory is None:
            return
        self._last_cpu = cpu
        self.peak_rss_mb = max(self.peak_rss_mb, memory[1])
        self.samples.append((now, memory[0], self._finished_cpu + cpu))

    @property
    def cpu_seconds(self) -> float:
        return self._finished_cpu + self._last_cpu


class ProcessSampler:
    """Samples RSS and CPU of every tracked process every `interval` seconds in a daemon thread."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.tracks: dict[str, ProcessTrack] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def track(self, name: str, pid: int) -> None:
        with self._lock:
            self.tracks.setdefault(name, ProcessTrack(name)).attach(pid)
            self.tracks[name].sample(time.time())

    def sample_now(self) -> None:
        with self._lock:
            now = time.time()
            for track in self.tracks.values():
                track.sample(now)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample_now()

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample_now()


# --- subprocesses ------------------------------------------------------------------------------------------------


class Daemon:
    """A subprocess; `start_with_url` reads the URL a server prints as its first stdout line."""

    def __init__(self, name: str, argv: list[str], log: Path, env: Mapping[str, str] | None = None):
        self.name, self.argv, self.log, self.env = name, argv, log, dict(env or os.environ)
        self.proc: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=REPO
            )
        return self.proc

    def start_with_url(self, timeout: float = 30) -> str:
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=err, env=self.env, text=True, cwd=REPO
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and not line:
            line = self.proc.stdout.readline().strip()
            if self.proc.poll() is not None:
                break
        if not line.startswith("http"):
            self.stop()
            raise RuntimeError(f"{self.name} did not start: see {self.log}")
        # Keep draining stdout so that the server never blocks on a full pipe.
        threading.Thread(target=self._drain, name=f"{self.name}-stdout", daemon=True).start()
        return line

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, like an OOM kill or a lost node."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(step)


# --- the ECS emulator ------------------------------------------------------------------------------------------


class EcsEmulator:
    """The ECS API emulator subprocess and its admin API."""

    def __init__(self, workdir: Path):
        self.daemon = Daemon(
            "ecs-emulator",
            [PYTHON, "-m", "ecs_emulator", "--port", "0", "--access-key", ACCESS_KEY,
             "--secret-key", SECRET_KEY, "--project-id", PROJECT_ID],
            workdir / "ecs-emulator.log",
        )  # fmt: skip
        self.url = ""
        self.admin: httpx.Client | None = None

    def start(self) -> str:
        self.url = self.daemon.start_with_url()
        self.admin = httpx.Client(base_url=self.url + "/_emulator", timeout=60)
        return self.url

    def stop(self) -> None:
        if self.admin is not None:
            self.admin.close()
        self.daemon.stop()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        assert self.admin is not None
        response = self.admin.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"ECS emulator admin {method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def reset(self, **config: Any) -> None:
        self._call("POST", "/reset")
        if config:
            self._call("PUT", "/config", config)

    def add_servers(self, servers: Iterable[Mapping[str, Any]]) -> None:
        for server in servers:
            self._call("POST", "/servers", dict(server))

    def add_fault(self, **fault: Any) -> str:
        return self._call("POST", "/faults", fault)["id"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def counters(self) -> dict:
        return self._call("GET", "/counters")

    def reinstalls(self) -> list[dict]:
        return self._call("GET", "/reinstalls")

    def set_config(self, **config: Any) -> dict:
        """`PUT /_emulator/config` with the fields given (the others keep their value)."""
        return self._call("PUT", "/config", config)

    def server(self, server_id: str) -> dict:
        """The admin view of a server (status, task_state, current_job_id, ...), brought up to the clock."""
        return self._call("GET", f"/servers/{server_id}")

    def operate(self, server_id: str, action: str, **fields: Any) -> dict | None:
        """An operation by someone else (stop, start, reboot, resize, migrate, rename, tag): the answer
        `{"server", "action"}`, or None when the server's state refuses it (409: busy, locked, wrong status)."""
        assert self.admin is not None
        response = self.admin.post(f"/servers/{server_id}/operations", json={"action": action, **fields})
        if response.status_code == 409:
            return None
        if response.status_code >= 400:
            raise RuntimeError(
                f"ECS emulator admin operation {action} on {server_id}: {response.status_code} {response.text}"
            )
        return response.json()

    def config(self) -> dict:
        return self._call("GET", "/config")


# --- the Kubernetes emulator ----------------------------------------------------------------------------------


class KubeEmulator:
    """The Kubernetes API emulator subprocess, a kubernetes client on it, and its admin API."""

    def __init__(self, workdir: Path, *, history_limit: int = 100_000):
        self.kubeconfig = workdir / "kubeconfig"
        self.daemon = Daemon(
            "kube-emulator",
            [PYTHON, "-m", "kube_emulator", "--port", "0", "--kubeconfig", str(self.kubeconfig),
             "--crds", str(CRDS), "--history-limit", str(history_limit)],
            workdir / "kube-emulator.log",
        )  # fmt: skip
        self.url = ""
        self.api: kubernetes.client.ApiClient | None = None
        self.admin: httpx.Client | None = None

    def start(self, pool_size: int = 32) -> str:
        self.url = self.daemon.start_with_url()
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = pool_size
        self.api = kubernetes.client.ApiClient(configuration)
        self.admin = httpx.Client(base_url=self.url + "/_emulator", timeout=60)
        return self.url

    def stop(self) -> None:
        if self.admin is not None:
            self.admin.close()
        if self.api is not None:
            self.api.close()
        self.daemon.stop()

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    # admin API
    def add_fault(self, rule: Mapping[str, Any]) -> int:
        assert self.admin is not None
        response = self.admin.post("/faults", json=dict(rule))
        response.raise_for_status()
        return response.json()["id"]

    def clear_faults(self) -> None:
        assert self.admin is not None
        self.admin.delete("/faults").raise_for_status()

    def faults(self) -> list[dict]:
        assert self.admin is not None
        return self.admin.get("/faults").json()["faults"]

    def requests(self) -> dict:
        assert self.admin is not None
        return self.admin.get("/requests").json()

    def reset_counters(self) -> None:
        assert self.admin is not None
        self.admin.post("/reset-counters").raise_for_status()

    # objects
    def setup_namespaces_and_secrets(self) -> None:
        for name in (NAMESPACE, OPERATOR_NAMESPACE):
            self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self._secret(
            OPERATOR_NAMESPACE,
            CREDENTIALS_SECRET,
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "projectId": PROJECT_ID},
        )
        self._secret(NAMESPACE, PASSWORD_SECRET, {"password": PASSWORD})

    def _secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        self.core.create_namespaced_secret(namespace, body)

    def wait_crd_served(self, timeout: float = 30) -> None:
        def served() -> bool:
            try:
                self.custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, limit=1)
                return True
            except ApiException:
                return False

        wait_until(served, timeout, "the EcsReinstall CRD served")

    def list_reinstalls(self) -> list[dict]:
        return self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]

    def get_reinstall(self, name: str, namespace: str = NAMESPACE) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def delete_reinstall(self, name: str, namespace: str = NAMESPACE) -> None:
        """`kubectl delete`: by name, no precondition (the resource has no finalizer: it is gone at once)."""
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def patch_reinstall_status(self, name: str, patch: Mapping, namespace: str = NAMESPACE) -> dict:
        """`kubectl patch --subresource=status --type=merge`: a merge patch on /status, blind (no
        resourceVersion), as a person edits a status by hand."""
        return self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, dict(patch),
            field_manager="kubectl-patch", _content_type="application/merge-patch+json",
        )  # fmt: skip

    def lease_holders(self, namespace: str = OPERATOR_NAMESPACE) -> dict[str, str]:
        """Lease name -> spec.holderIdentity of every coordination.k8s.io/v1 Lease in `namespace`."""
        leases = kubernetes.client.CoordinationV1Api(self.api).list_namespaced_lease(namespace).items
        return {lease.metadata.name: (lease.spec.holder_identity or "") for lease in leases}

    def events(self) -> list[dict]:
        items = self.core.list_event_for_all_namespaces().items
        return [self.api.sanitize_for_serialization(e) for e in items]  # type: ignore[union-attr]


def reinstall_body(name: str, server_id: str, poll_interval: int, **extra: Any) -> dict:
    spec = {
        "serverId": server_id,
        "adminPasswordSecretRef": {"name": PASSWORD_SECRET},
        "stopServer": True,
        "pollIntervalSeconds": poll_interval,
        **extra,
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EcsReinstall",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def create_one(kube: KubeEmulator, body: Mapping) -> str:
    """Creates one resource, retrying what a fault rule may inject; returns its uid."""
    name = body["metadata"]["name"]
    for attempt in range(20):
        try:
            created = kube.custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, dict(body)
            )
            return created["metadata"]["uid"]
        except ApiException as exc:  # a fault rule may hit the bench's own writes in the chaos run
            if exc.status == 409 and attempt:
                # A previous attempt did create it (its answer was lost): that object is ours.
                return kube.get_reinstall(name)["metadata"]["uid"]
            if exc.status not in (409, 429, 500, 503) or attempt == 19:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def create_all(
    kube: KubeEmulator, bodies: list[dict], threads: int = 16, *, uids: dict[str, str] | None = None
) -> dict[str, float]:
    """Creates every resource from a thread pool; returns name -> wall time the API confirmed its creation
    (and fills `uids`, name -> uid, when given)."""
    created: dict[str, float] = {}

    def create(body: dict) -> None:
        uid = create_one(kube, body)
        if uids is not None:
            uids[body["metadata"]["name"]] = uid
        created[body["metadata"]["name"]] = time.time()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, bodies))
    return created


# --- watching the resources --------------------------------------------------------------------------------------


@dataclass
class ResourceTimes:
    submitted: float | None = None  # the first time the Submitted condition was True (or a job ID was seen)
    terminal: float | None = None  # the first time the phase was Succeeded or Failed
    phase: str | None = None
    job_id: str | None = None
    uid: str | None = None  # the object these times are of (a re-created object starts afresh)
    reason: str | None = None  # the Ready condition's reason now (OutcomeUnknown, Reinstalling, ...)
    job_id_now: str | None = None  # status.jobId now: None when absent, "" when lost (the ID never came)


def _submitted(status: Mapping) -> bool:
    if status.get("jobId"):
        return True
    return any(
        c.get("type") == "Submitted" and c.get("status") == "True" for c in status.get("conditions") or ()
    )


class ResourceWatch:
    """A kubernetes-client watch on every EcsReinstall in a daemon thread: when each was first seen Submitted and
    terminal (wall time of the event's arrival in this process). It re-lists and re-watches when the stream ends
    or fails, so injected faults cannot make it miss a transition for good. An object deleted is forgotten; one
    re-created under the same name (a new uid) starts afresh. `status_changes` keeps the arrival time of every
    change of a status seen (a write by whoever made it)."""

    def __init__(self, kube: KubeEmulator):
        self.kube = kube
        self.times: dict[str, ResourceTimes] = {}
        self.status_changes: list[float] = []
        self._statuses: dict[str, Any] = {}
        self.events = 0
        self.restarts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watch", daemon=True)
        self._started = threading.Event()

    def start(self) -> ResourceWatch:
        self._thread.start()
        self._started.wait(30)
        return self

    def stop(self) -> None:
        self._stop.set()

    def _observe(self, obj: Mapping, now: float) -> None:
        name = obj["metadata"]["name"]
        uid = obj["metadata"].get("uid")
        status = obj.get("status") or {}
        with self._lock:
            times = self.times.get(name)
            if times is None or times.uid != uid:
                times = self.times[name] = ResourceTimes(uid=uid)
            elif status != self._statuses.get(name):
                self.status_changes.append(now)
            self._statuses[name] = status
            if times.submitted is None and _submitted(status):
                times.submitted = now
                times.job_id = status.get("jobId") or None
            phase = status.get("phase")
            times.phase = phase
            times.reason = next(
                (c.get("reason") for c in status.get("conditions") or () if c.get("type") == "Ready"), None
            )
            times.job_id_now = status.get("jobId")
            if phase in ("Succeeded", "Failed") and times.terminal is None:
                times.terminal = now

    def _forget(self, obj: Mapping) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            times = self.times.get(name)
            if times is not None and times.uid == obj["metadata"].get("uid"):
                del self.times[name]
                self._statuses.pop(name, None)

    def _loop(self) -> None:
        custom = self.kube.custom
        while not self._stop.is_set():
            try:
                listing = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
                now = time.time()
                for item in listing["items"]:
                    self._observe(item, now)
                listed = {item["metadata"]["name"] for item in listing["items"]}
                with self._lock:  # deleted while the watch was down
                    for name in set(self.times) - listed:
                        del self.times[name]
                        self._statuses.pop(name, None)
                self._started.set()
                stream = kubernetes.watch.Watch().stream(
                    custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PLURAL,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=120,
                    _request_timeout=150,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    self.events += 1
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._observe(event["object"], time.time())
                    elif event["type"] == "DELETED":
                        self._forget(event["object"])
            except Exception:
                self.restarts += 1
                time.sleep(0.2)
            else:
                self.restarts += 1

    def snapshot(self) -> dict[str, ResourceTimes]:
        with self._lock:
            return {k: ResourceTimes(**vars(v)) for k, v in self.times.items()}

    def count(self, predicate: Callable[[ResourceTimes], bool]) -> int:
        with self._lock:
            return sum(1 for t in self.times.values() if predicate(t))

    def first_status_change_after(self, moment: float) -> float | None:
        """The arrival time of the first status change seen after `moment` (None: none yet)."""
        with self._lock:
            index = bisect.bisect_right(self.status_changes, moment)
            return self.status_changes[index] if index < len(self.status_changes) else None


# --- the operator --------------------------------------------------------------------------------------------


class Operator:
    """`python -m ecs_reinstall run` against both emulators; each (re)start appends to the same log file,
    `<name>.log` (several operator processes side by side get distinct names)."""

    def __init__(
        self,
        workdir: Path,
        kube: KubeEmulator,
        ecs_url: str,
        *,
        args: Mapping[str, Any],
        name: str = "operator",
    ):
        self.name = name
        self.metrics_port = free_port()
        self.health_port = free_port()
        options = {
            "kubeconfig": str(kube.kubeconfig),
            "endpoint": ecs_url,
            "operator-namespace": OPERATOR_NAMESPACE,
            "credentials-secret": CREDENTIALS_SECRET,
            "default-credentials-namespaces": NAMESPACE,  # the resources' namespace may use them
            "log-format": "json",
            "metrics-port": self.metrics_port,
            "health-port": self.health_port,
            **args,
        }
        argv = [PYTHON, "-m", "ecs_reinstall", "run"]
        for key, value in options.items():
            argv += [f"--{key}", str(value)]
        self.argv = argv
        self.log = workdir / f"{name}.log"
        self.daemon = Daemon(name, argv, self.log)
        self.starts = 0
        self.started_at = 0.0  # wall time of the last start
        self._log_offset = 0  # where the last start's output begins in the log

    def start(self, wait: bool = True, timeout: float = 60) -> int:
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        self.daemon.start()
        self.starts += 1
        self.started_at = time.time()
        if wait:
            self.wait_healthy(timeout)
        return self.daemon.pid

    def wait_healthy(self, timeout: float) -> None:
        def healthy() -> bool:
            if not self.daemon.alive():
                raise RuntimeError(f"the operator exited with {self.daemon.proc.returncode}: see {self.log}")  # type: ignore[union-attr]
            try:
                return httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, "the operator's liveness endpoint", step=0.1)

    def metrics_text(self) -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        except httpx.HTTPError:
            return ""

    def kill(self) -> None:
        self.daemon.kill()

    def stop(self) -> int | None:
        return self.daemon.stop()

    def alive(self) -> bool:
        return self.daemon.alive()

    @property
    def returncode(self) -> int | None:
        return self.daemon.proc.returncode if self.daemon.proc is not None else None

    def last_run_log(self) -> str:
        """What the process wrote since its last start."""
        with open(self.log, "rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")


_RUN_FLAGS: set[str] | None = None


def operator_run_flags() -> set[str]:
    """The flags `python -m ecs_reinstall run` accepts (from its --help), to pass newer ones only when known."""
    global _RUN_FLAGS
    if _RUN_FLAGS is None:
        out = subprocess.run(
            [PYTHON, "-m", "ecs_reinstall", "run", "--help"],
            capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
        ).stdout  # fmt: skip
        _RUN_FLAGS = set(re.findall(r"--[a-z][a-z0-9-]*", out))
    return _RUN_FLAGS


def parse_metrics(text: str, prefix: str = "ecs_reinstall_") -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} for our own series (counters and gauges)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix) and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                values[key] = float(value)
            except ValueError:
                continue
    return values


def kube_calls_by_verb(
    snapshot: Mapping, *, exclude: Mapping[tuple[str, str, str], int] | None = None
) -> dict:
    """{'verb resource[/subresource]': n} from the kube emulator's request log, minus the bench's own calls."""
    calls: Counter = Counter()
    for entry in snapshot.get("requests", ()):
        resource = entry["resource"] + (f"/{entry['subresource']}" if entry["subresource"] else "")
        calls[f"{entry['verb']} {resource}"] += entry["count"]
    for (verb, resource, _), count in (exclude or {}).items():
        calls[f"{verb} {resource}"] -= count
    return {key: value for key, value in sorted(calls.items()) if value > 0}


def json_dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
