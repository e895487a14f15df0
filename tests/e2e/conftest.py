"""End-to-end harness: the real operator (kopf, in-process) against kube_emulator and ecs_emulator over loopback.

Each test gets fresh emulators, a namespace, a credentials Secret, and an operator it can stop and start again.
At teardown every test is scanned for leaked secrets: the operator's log records, the Kubernetes Events, every
EcsReinstall status and the metrics page must not contain any secret value the test registered.

`E2E_KUBECONFIG` is reserved for pointing the suite at a real cluster; by default the emulator serves.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from ecs_emulator.testing import EmulatorHandle, running_emulator
from ecs_reinstall import settings as settings_module
from ecs_reinstall.__main__ import run_operator, set_log_levels
from kube_emulator.testing import KubeEmulatorHandle

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "ecsreinstalls.ecs.reinstall.dev.yaml"
SET_CRD = REPO / "crds" / "ecsreinstallsets.ecs.reinstall.dev.yaml"
GROUP, VERSION, PLURAL = "ecs.reinstall.dev", "v1alpha1", "ecsreinstalls"

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for e2e_support (pytest uses importlib mode)

from e2e_support import ACCESS_KEY, OPERATOR_NAMESPACE, PASSWORD, PROJECT_ID, SECRET_KEY  # noqa: E402

from realkube import (  # noqa: E402
    BACKEND_ID,
    RealKubeHandle,
    backend_version,
    ca_bundle,
    running_kube_backend,
    skip_if_older_than_marked,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LogCapture(logging.Handler):
    """Every log record of the process while the test runs, formatted with its arguments and tracebacks."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        extra = {k: v for k, v in record.__dict__.items() if k in ("k8s_ref", "object")}
        self.lines.append(f"{record.name} {record.levelname} {text} {extra}")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class OperatorThread:
    """The operator in a thread with its own loop; `stop` is graceful, `kill` cancels it on the spot."""

    def __init__(self, settings: settings_module.Settings, kubeconfig: str, name: str = "main"):
        self.settings, self.kubeconfig, self.name = settings, kubeconfig, name
        self.stop_flag, self.ready_flag = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._main, name=f"operator-{name}", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            await run_operator(
                self.settings,
                kubeconfig=self.kubeconfig,
                stop_flag=self.stop_flag,
                ready_flag=self.ready_flag,
            )

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc

    def start_and_wait(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.ready_flag.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"operator did not start: {self.error!r}")

    def stop(self) -> None:
        self.stop_flag.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "operator did not stop within 30 s"

    def kill(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        # kopf waits for a threading stop flag in an executor thread: release it, or the loop never closes.
        self.stop_flag.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "operator did not die within 30 s"


class OperatorProcess:
    """`python -m ecs_reinstall run` as a real process, as it runs in a Pod: its settings in `ECS_REINSTALL_*`
    environment variables (what the Helm chart sets), its output in a log file. `kill` is SIGKILL (a lost node,
    an OOM kill): no cleanup at all."""

    def __init__(self, name: str, env: Mapping[str, str], kubeconfig: str, log: Path):
        self.name, self.env, self.log = name, dict(env), log
        self.argv = [sys.executable, "-m", "ecs_reinstall", "run", "--kubeconfig", kubeconfig]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    @property
    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def process_env(values: Mapping[str, Any]) -> dict[str, str]:
    """The environment of an operator process: this one's, minus any `ECS_REINSTALL_*`, plus `values` (setting
    name -> value) in the operator's own variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(settings_module.ENV_PREFIX)}
    for name, value in values.items():
        if value is None:
            continue
        if name == "namespaces":
            env[settings_module.ENV_PREFIX + "WATCH_NAMESPACES"] = ",".join(value)
        elif name == "owner_tag_values":
            env[settings_module.ENV_PREFIX + "OWNER_TAG_VALUES"] = ",".join(
                f"{ns}={'|'.join(v)}" for ns, v in value
            )
        elif isinstance(value, tuple):
            env[settings_module.ENV_PREFIX + name.upper()] = ",".join(value)
        elif isinstance(value, bool):
            env[settings_module.ENV_PREFIX + name.upper()] = "true" if value else "false"
        else:
            env[settings_module.ENV_PREFIX + name.upper()] = str(value)
    return env


def _has_setting(name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(settings_module.Settings)}


@dataclasses.dataclass
class Harness:
    kube: KubeEmulatorHandle
    ecs: EmulatorHandle
    namespace: str
    api: kubernetes.client.ApiClient
    logs: LogCapture
    secrets: set[str] = dataclasses.field(default_factory=set)
    metrics_port: int = 0  # the "main" operator's; others get their own (`metrics_ports`)
    workdir: Path = Path()
    settings_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    # In-process operators by name ("main" unless told) and their metrics ports; operator processes by name.
    operators: dict[str, OperatorThread] = dataclasses.field(default_factory=dict)
    metrics_ports: dict[str, int] = dataclasses.field(default_factory=dict)
    processes: dict[str, OperatorProcess] = dataclasses.field(default_factory=dict)
    # Namespace selectors the operators of this test were given: the recording says so (they list namespaces)
    namespace_selectors: set[str] = dataclasses.field(default_factory=set)

    # --- clients --------------------------------------------------------------------------------------------
    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    async def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # --- the operator ---------------------------------------------------------------------------------------
    def settings(self, **overrides: Any) -> settings_module.Settings:
        return settings_module.Settings(**self._setting_values(**overrides))

    def _setting_values(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = dict(
            endpoint=self.ecs.url,
            operator_namespace=OPERATOR_NAMESPACE,
            credentials_secret="default-credentials",
            # every test namespace may use them, as before tenancy (test_tenancy.py runs the secure default)
            default_credentials_namespaces=("*",),
            qps=200.0,
            burst=50,
            log_format="text",
            metrics_port=self.metrics_port,
            health_port=0,
            outcome_settle_seconds=2.0,
            retry_base_seconds=0.2,
            retry_max_seconds=1.0,
        )
        if _has_setting("leader_election"):
            values["leader_election"] = False  # one operator per test unless it says otherwise
        values.update(self.settings_overrides)
        values.update(overrides)
        return values

    async def start_operator(self, name: str = "main", **overrides: Any) -> None:
        """Runs an operator in its own thread and event loop, as it runs in its own process in production
        (kopf cancels every task of its loop that it did not start when it stops). Several may run at once under
        different names, each with its own metrics port, like two replicas."""
        assert name not in self.operators, f"operator {name!r} already running"
        if name not in self.metrics_ports:
            self.metrics_ports[name] = self.metrics_port if name == "main" else free_port()
        overrides.setdefault("metrics_port", self.metrics_ports[name])
        settings = self.settings(**overrides)
        if settings.default_credentials_namespace_selector:
            self.namespace_selectors.add(settings.default_credentials_namespace_selector)
        operator = OperatorThread(settings, str(self.kube.kubeconfig), name)
        self.operators[name] = operator
        try:
            await asyncio.to_thread(operator.start_and_wait)
        except BaseException:
            self.operators.pop(name, None)
            await asyncio.to_thread(operator.kill)
            raise

    async def stop_operator(self, name: str = "main") -> None:
        operator = self.operators.pop(name, None)
        if operator is not None:
            await asyncio.to_thread(operator.stop)

    async def kill_operator(self, name: str = "main") -> None:
        """Abrupt stop: the operator's task is cancelled wherever it is, mid-step, without its cleanup."""
        operator = self.operators.pop(name, None)
        if operator is not None:
            await asyncio.to_thread(operator.kill)

    async def stop_all_operators(self) -> None:
        for name in list(self.operators):
            await self.stop_operator(name)
        for process in list(self.processes.values()):
            await asyncio.to_thread(process.stop)

    def start_operator_process(self, name: str, **overrides: Any) -> OperatorProcess:
        """Starts `python -m ecs_reinstall run` against the emulators, with the same settings as `settings()`
        (plus `overrides`) passed as environment variables. Its metrics and health endpoints are off unless
        asked for, as they bind every interface: the process opens no listening socket (see
        e2e_support.listening_addresses). Stopped at teardown; its log is scanned for secrets."""
        assert name not in self.processes or not self.processes[name].alive(), f"{name!r} already runs"
        values = self._setting_values(metrics_port=0, health_port=0, log_level="DEBUG", **overrides)
        process = OperatorProcess(
            name, process_env(values), str(self.kube.kubeconfig), self.workdir / f"operator-{name}.log"
        )
        self.processes[name] = process
        process.start()
        return process

    # --- Kubernetes objects ----------------------------------------------------------------------------------
    async def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        try:
            await self.call(self.core.create_namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    async def create_secret(
        self, name: str, data: Mapping[str, str], namespace: str | None = None, *, secret: bool = True
    ) -> None:
        if secret:  # identifiers (access key, project ID) are not secret; everything else is scanned for
            self.secrets.update(
                v for k, v in data.items() if k not in ("accessKey", "projectId") and len(v) >= 6
            )
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        await self.call(self.core.create_namespaced_secret, namespace or self.namespace, body)

    async def create_config_map(
        self, name: str, data: Mapping[str, str], namespace: str | None = None
    ) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": dict(data)}
        await self.call(self.core.create_namespaced_config_map, namespace or self.namespace, body)

    async def create(self, name: str, spec: Mapping[str, Any], namespace: str | None = None) -> dict:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EcsReinstall",
            "metadata": {"name": name},
            "spec": dict(spec),
        }
        return await self.call(
            self.custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace or self.namespace,
            PLURAL,
            body,
        )

    async def get(self, name: str, namespace: str | None = None) -> dict:
        return await self.call(
            self.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace or self.namespace,
            PLURAL,
            name,
        )

    async def delete(self, name: str, namespace: str | None = None) -> None:
        await self.call(
            self.custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace or self.namespace,
            PLURAL,
            name,
        )

    async def exists(self, name: str, namespace: str | None = None) -> bool:
        try:
            await self.get(name, namespace)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    async def wait_for(
        self,
        name: str,
        predicate: Callable[[dict], bool],
        *,
        timeout: float = 30,
        namespace: str | None = None,
        what: str = "condition",
    ) -> dict:
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            body = await self.get(name, namespace)
            if predicate(body):
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"{name}: {what} not reached in {timeout}s; status: {json.dumps(body.get('status'), indent=1)}"
        )

    async def wait_phase(
        self, name: str, phase: str, *, timeout: float = 30, namespace: str | None = None
    ) -> dict:
        return await self.wait_for(
            name,
            lambda b: (b.get("status") or {}).get("phase") == phase,
            timeout=timeout,
            namespace=namespace,
            what=f"phase {phase}",
        )

    async def events(self, namespace: str | None = None) -> list[dict]:
        result = await self.call(self.core.list_namespaced_event, namespace or self.namespace)
        return [self.api.sanitize_for_serialization(e) for e in result.items]

    async def wait_for_events(self, name: str, reasons: set[str], *, timeout: float = 15) -> set[str]:
        """The reasons of the Events about `name`, once they include `reasons` (the operator posts them in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = {e["reason"] for e in await self.events() if e["involvedObject"]["name"] == name}
            if reasons <= seen or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.1)

    async def all_reinstalls(self) -> list[dict]:
        result = await self.call(self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
        return result["items"]

    async def replace_secret(self, name: str, data: Mapping[str, str], namespace: str | None = None) -> None:
        """Replaces a Secret's data (a rotation): the new values are scanned for too."""
        self.secrets.update(v for k, v in data.items() if k not in ("accessKey", "projectId") and len(v) >= 6)
        body = await self.call(self.core.read_namespaced_secret, name, namespace or self.namespace)
        body.data = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        await self.call(self.core.replace_namespaced_secret, name, namespace or self.namespace, body)

    async def patch_status(self, name: str, status: Mapping[str, Any], namespace: str | None = None) -> dict:
        """A merge patch of the status subresource, as `kubectl patch --subresource=status --type=merge`."""
        return await self.call(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace or self.namespace,
            PLURAL,
            name,
            {"status": dict(status)},
        )

    def cut_watches(self, plural: str = PLURAL, group: str = GROUP, version: str = VERSION) -> int:
        """Ends every cluster-wide watch on the resource (the operator's; a test's namespaced watch stays), as
        an API server restart or a load balancer does. Returns how many were ended."""
        cluster = self.kube.cluster
        rtype = cluster.registry.lookup(group, version, plural)
        assert rtype is not None, f"{plural}.{group}/{version} is not served"
        store = cluster.store(rtype)
        ended = [w for w in list(store.watchers) if w.namespace is None]
        for watcher in ended:
            store.unsubscribe(watcher)
        return len(ended)

    async def read_lease(self, name: str, namespace: str = OPERATOR_NAMESPACE) -> dict | None:
        """A coordination.k8s.io/v1 Lease as stored, or None."""
        api = kubernetes.client.CoordinationV1Api(self.api)
        try:
            lease = await self.call(api.read_namespaced_lease, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self.api.sanitize_for_serialization(lease)

    async def metrics_text(self, name: str = "main") -> str:
        port = self.metrics_ports.get(name, self.metrics_port)
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{port}/metrics")).text

    # --- the secret scan -------------------------------------------------------------------------------------
    async def assert_no_secret_leaked(self) -> None:
        places = {"operator logs": self.logs.text}
        for name, process in self.processes.items():
            places[f"log of operator process {name!r}"] = process.log_text
        events = []
        for ns in {self.namespace, OPERATOR_NAMESPACE, "default"}:
            events.extend(await self.events(ns))
        places["events"] = json.dumps(events)
        places["statuses"] = json.dumps([item.get("status") for item in await self.all_reinstalls()])
        for name in self.operators:  # a metrics page lives as long as its operator
            places[f"metrics of operator {name!r}"] = await self.metrics_text(name)
        for where, text in places.items():
            for secret in self.secrets:
                # As written, JSON-escaped (Events and statuses are dumped; multi-line user data has "\n"
                # there) and base64-encoded; searched in the whole text, as a secret may span lines.
                forms = {secret, json.dumps(secret)[1:-1], base64.b64encode(secret.encode()).decode()}
                found = next((form for form in forms if form in text), None)
                if found is not None:
                    at = text.index(found)
                    context = text[max(0, at - 150) : at + 150]
                    raise AssertionError(f"a test secret leaked into the {where}: ...{context}...")


# Every Kubernetes API call the operator (its own client and kopf) made during the e2e suite, for the chart's
# least-privilege test (tests/deploy/test_operator_on_kube_emulator.py, format in tests/deploy/data/README.md).
RECORDING = REPO / "tests" / "deploy" / "data" / "recorded_api_calls.json"
OPERATOR_CLIENTS = frozenset({"kopf", "ecs-reinstall-operator"})


@pytest.fixture(scope="session")
def api_recording() -> Path:
    RECORDING.unlink(missing_ok=True)  # this run's calls only
    return RECORDING


def record_operator_calls(path: Path, snapshot: Mapping[str, Any], selectors: set[str] = frozenset()) -> None:
    """Merges the operator's calls of one emulator into the recording (written after every test, so that a
    module running later in the same session reads it). `selectors`: the default credentials namespace selectors
    the test's operators had (the chart grants list on namespaces only with one)."""
    data = (
        json.loads(path.read_text())
        if path.exists()
        else {
            "operatorNamespace": OPERATOR_NAMESPACE,
            "credentialsSecret": "default-credentials",
            "watchNamespaces": [],
            "requests": [],
        }
    )
    if selectors:
        data["defaultCredentialsNamespaceSelector"] = sorted(selectors)[0]
    counts: dict[tuple, int] = {}
    for item in data["requests"] + [
        r for r in snapshot["requests"] if r.get("userAgent") in OPERATOR_CLIENTS
    ]:
        key = (item["verb"], item["group"], item["resource"], item["subresource"], item["namespace"])
        counts[key] = counts.get(key, 0) + item["count"]
    data["requests"] = [
        dict(zip(("verb", "group", "resource", "subresource", "namespace"), key, strict=True), count=n)
        for key, n in sorted(counts.items())
    ]
    path.write_text(json.dumps(data, indent=1) + "\n")


@pytest.fixture(params=["emulator", BACKEND_ID])
async def harness(
    request: pytest.FixtureRequest, tmp_path: Path, api_recording: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    """Every scenario on both backends: kube_emulator, and a fresh real kube-apiserver (tests/realkube.py; what
    needs the emulator's faults skips there with the reason)."""
    logs = LogCapture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(logs)
    set_log_levels("DEBUG")  # the operator's own logging rules, at its most talkative level
    try:
        async with (
            running_kube_backend(request.param, tmp_path, crds=[CRD, SET_CRD]) as kube,
            running_emulator(
                access_key=ACCESS_KEY,
                secret_key=SECRET_KEY,
                project_id=PROJECT_ID,
                init_seconds=0.2,
                job_seconds=0.6,
            ) as ecs,
        ):
            config = kubernetes.client.Configuration()
            kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=config)
            api = kubernetes.client.ApiClient(config)
            h = Harness(
                kube=kube,
                ecs=ecs,
                namespace="team-a",
                api=api,
                logs=logs,
                metrics_port=free_port(),
                workdir=tmp_path,
            )
            skip_if_older_than_marked(request.node, backend_version(kube))  # @pytest.mark.since("1.25")
            if isinstance(kube, RealKubeHandle):  # History's httpx client must trust the server's CA
                monkeypatch.setenv("SSL_CERT_FILE", str(ca_bundle(kube.real)))
            h.secrets.update({SECRET_KEY, PASSWORD})
            await h.create_namespace(OPERATOR_NAMESPACE)
            await h.create_namespace(h.namespace)
            await h.create_secret(
                "default-credentials",
                {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "projectId": PROJECT_ID},
                OPERATOR_NAMESPACE,
            )
            await h.create_secret("root-password", {"password": PASSWORD})
            try:
                yield h
                await h.assert_no_secret_leaked()
            finally:
                await h.stop_all_operators()
                await asyncio.to_thread(api.close)
                if not isinstance(kube, RealKubeHandle):
                    record_operator_calls(api_recording, kube.requests.snapshot(), h.namespace_selectors)
    finally:
        root.removeHandler(logs)
        root.setLevel(old_level)
