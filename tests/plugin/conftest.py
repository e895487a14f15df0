"""Fixtures for the kubectl-ecsr plugin tests: one kube emulator per module with both CRDs, a namespace per
test, sets created and their status written directly (status subresource) to stand for the operator."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from ecs_reinstall import plugin
from kube_emulator.testing import KubeEmulatorHandle, kube_emulator_in_thread

REPO = Path(__file__).resolve().parents[2]
CRDS = [
    REPO / "crds" / "ecsreinstalls.ecs.reinstall.dev.yaml",
    REPO / "crds" / "ecsreinstallsets.ecs.reinstall.dev.yaml",
]
GROUP, VERSION, PLURAL = plugin.GROUP, plugin.VERSION, plugin.PLURAL
TEMPLATE = {"adminPasswordSecretRef": {"name": "root-password"}, "stopServer": True}
# Variables that would make rich (or the plugin) choose its output regardless of the terminal.
OUTPUT_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", plugin.FORMAT_ENV, "COLUMNS")


def server(n: int) -> str:
    return f"9c3d0c1a-0000-4000-8000-{n:012d}"


def kubectl_binaries() -> list[str]:
    """kubectl 1.35 from .tools and the one on PATH (v1.32 here), those present."""
    found = []
    for candidate in (os.environ.get("KUBECTL_135_BIN"), str(REPO / ".tools" / "bin" / "kubectl-1.35")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            found.append(candidate)
            break
    on_path = shutil.which("kubectl")
    if on_path and on_path not in found:
        found.append(on_path)
    return found


def venv_bin() -> Path:
    """The directory holding this Python, and with it the kubectl-ecsr console script."""
    return Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OUTPUT_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulatorHandle]:
    with kube_emulator_in_thread(tmp_path_factory.mktemp("kube"), crds=CRDS) as handle:
        yield handle


@pytest.fixture(scope="module")
def api_client(kube: KubeEmulatorHandle) -> client.ApiClient:
    return config.new_client_from_config(str(kube.kubeconfig), persist_config=False)


@pytest.fixture
def namespace(api_client: client.ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": name}})
    return name


@dataclass
class Sets:
    """Create sets and play the operator's part by writing their status."""

    api: client.CustomObjectsApi
    namespace: str

    def create(self, name: str, *, servers: int = 5, revision: str = "golden-1", **spec: Any) -> dict:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EcsReinstallSet",
            "metadata": {"name": name},
            "spec": {
                "selector": {"serverIds": [server(n) for n in range(1, servers + 1)]},
                "template": TEMPLATE,
                "revision": revision,
                **spec,
            },
        }
        return self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self, name: str) -> dict:
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def status(self, name: str, **status: Any) -> dict:
        """Merge `status` into the set's status, filling progress from done/total."""
        if "done" in status or "total" in status:
            current = self.get(name).get("status") or {}
            done, total = (
                status.get("done", current.get("done", 0)),
                status.get("total", current.get("total", 0)),
            )
            status.setdefault("progress", f"{done}/{total}")
        return self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, name, {"status": status}
        )

    def progress(
        self, name: str, *, total: int, done: int, in_flight: int, failed: int, phase: str, **more: Any
    ) -> dict:
        failures = [{"serverId": server(1000 + i), "code": f"Ecs.{9000 + i}"} for i in range(failed)]
        return self.status(
            name,
            revision=more.pop("revision", "golden-1"),
            round=more.pop("round", 1),
            total=total,
            done=done,
            inFlight=in_flight,
            failedCount=failed,
            failed=failures,
            phase=phase,
            message=more.pop("message", f"{done} of {total} done, {in_flight} in flight, {failed} failed"),
            **more,
        )


@pytest.fixture
def sets(api_client: client.ApiClient, namespace: str) -> Sets:
    return Sets(client.CustomObjectsApi(api_client), namespace)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def ecsr(kube: KubeEmulatorHandle, namespace: str, capsys: pytest.CaptureFixture[str]):
    """Run the plugin in process: `ecsr("status", "web")` -> Result (namespace and kubeconfig given)."""

    def run(*args: str, namespace_flag: bool = True) -> Result:
        flags = ["--kubeconfig", str(kube.kubeconfig)] + (["-n", namespace] if namespace_flag else [])
        capsys.readouterr()
        code = plugin.main([*args, *flags])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
