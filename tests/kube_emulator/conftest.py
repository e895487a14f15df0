"""Fixtures for the Kubernetes conformance tests.

The tests state expectations about Kubernetes, not about the emulator: by default they run against a
kube_emulator started per test module (in a background thread, so that blocking clients can be used from the
test), and against a real cluster when KUBE_CONFORMANCE_KUBECONFIG names its kubeconfig. The test CRD
(`data/crds/widgets.yaml`) is applied with kubectl in both cases; every test works in a namespace of its own.
Tests that need the emulator itself (faults, counters, its CLI) take the `emulator` fixture and are skipped on
a real cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config

from kube_emulator.app import ServerOptions
from kube_emulator.testing import KubeEmulatorHandle, kube_emulator_in_thread
from realkube import BACKEND_ID as REAL_BACKEND
from realkube import skip_if_older_than_marked, version_tuple

DATA = Path(__file__).parent / "data"
WIDGETS_CRD = DATA / "crds" / "widgets.yaml"
GROUP = "conformance.example.com"
VERSION = "v1"
PLURAL = "widgets"
REAL_CLUSTER_KUBECONFIG = os.environ.get("KUBE_CONFORMANCE_KUBECONFIG")
REPO = Path(__file__).resolve().parents[2]


def kubectl_binaries() -> list[str]:
    """The kubectl binaries to test with: the one on PATH (v1.32 here) and v1.35 from .tools when present."""
    found = []
    if shutil.which("kubectl"):
        found.append("kubectl")
    for candidate in (os.environ.get("KUBECTL_135_BIN"), str(REPO / ".tools" / "bin" / "kubectl-1.35")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            found.append(candidate)
            break
    return found


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class KubeTarget:
    """The API server under test and how to reach it."""

    kubeconfig: Path
    cache_dir: Path
    emulator: KubeEmulatorHandle | None  # None on a real cluster
    version: str = ""  # the server's /version gitVersion, e.g. "v1.20.2"

    def older_than(self, version: str) -> bool:
        return version_tuple(self.version) < version_tuple(version)

    def kubectl(
        self, binary: str, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.cache_dir),
            "HOME": str(self.cache_dir),
        }
        result = subprocess.run(
            [binary, *args],
            capture_output=True,
            text=True,
            env=env,
            input=input,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{binary} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))


def _server_version(target: KubeTarget) -> str:
    api_client = target.api_client()
    try:
        return client.VersionApi(api_client).get_code().git_version
    finally:
        api_client.close()


def _apply_crd(target: KubeTarget) -> None:
    binary = kubectl_binaries()[0] if kubectl_binaries() else None
    if binary is None:
        pytest.skip("no kubectl binary")
    target.version = _server_version(target)
    # before 1.25 (CEL rules beta) the server's OpenAPI has no x-kubernetes-validations: kubectl's client-side
    # validation would refuse the CRD, and the server drops the rules anyway
    validate = ["--validate=false"] if target.older_than("1.25") else []
    target.kubectl(binary, "apply", *validate, "-f", str(WIDGETS_CRD))
    target.kubectl(binary, "wait", "--for=condition=established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")


def _backends() -> list[str]:
    return ["external"] if REAL_CLUSTER_KUBECONFIG else ["emulator", REAL_BACKEND]


@pytest.fixture(scope="module", params=_backends())
def kube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeTarget]:
    workdir = tmp_path_factory.mktemp("kube")
    cache = workdir / "cache"
    cache.mkdir()
    if request.param == "external":
        target = KubeTarget(Path(str(REAL_CLUSTER_KUBECONFIG)), cache, None)
        _apply_crd(target)
        yield target
        return
    if request.param == REAL_BACKEND:
        real = request.getfixturevalue("real_kube")  # skips with the reason when the tier cannot run
        target = KubeTarget(real.kubeconfig, cache, None)
        _apply_crd(target)
        yield target
        return
    with kube_emulator_in_thread(workdir, options=ServerOptions(bookmark_interval=1.0)) as handle:
        target = KubeTarget(handle.kubeconfig, cache, handle)
        _apply_crd(target)
        yield target


# Tests whose expectation is the emulator's behaviour where a real kube-apiserver does otherwise (checked against
# 1.20.2 and, where named, today's upstream source). They are expected to fail on a real server (strict: once the
# emulator and the test are fixed, the entry must go) and pass on the emulator until then.
KNOWN_EMULATOR_DIVERGENCES: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _skip_what_the_server_is_too_old_for(request: pytest.FixtureRequest) -> None:
    """`@pytest.mark.since("1.25")`: skipped when the server's /version is older (e.g. 1.20 on the real tier).
    Also marks the KNOWN_EMULATOR_DIVERGENCES as expected failures on real servers."""
    if "kube" not in request.fixturenames:
        return
    kube: KubeTarget = request.getfixturevalue("kube")
    skip_if_older_than_marked(request.node, kube.version)
    divergence = KNOWN_EMULATOR_DIVERGENCES.get(getattr(request.node, "originalname", request.node.name))
    if divergence and kube.emulator is None:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=f"emulator divergence: {divergence}"))


@pytest.fixture
def emulator(kube: KubeTarget) -> KubeEmulatorHandle:
    """The emulator behind `kube`, for tests of what only the emulator has (faults, counters)."""
    if kube.emulator is None:
        pytest.skip(
            "emulator-only test (fault injection, counters or internals): not a statement about Kubernetes"
        )
    return kube.emulator


@pytest.fixture(scope="module")
def api(kube: KubeTarget) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"conf-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as error:
        if error.status != 404:
            raise


def widget(name: str, serial: str = "AB-1234", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"serial": serial, **spec},
    }


@dataclass
class RawResponse:
    status: int
    headers: Any
    body: Any


class RawApi:
    """Plain HTTP to the API server with the kubeconfig's credentials: for what typed clients hide (headers,
    watch event streams, patch content types)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        configuration = api_client.configuration
        self.host = configuration.host.rstrip("/")
        self.headers = {"Accept": "application/json"}
        # kubernetes>=36 keeps the token under "BearerToken", older versions under "authorization"
        header = configuration.get_api_key_with_prefix(
            "BearerToken"
        ) or configuration.get_api_key_with_prefix("authorization")
        if header:
            self.headers["Authorization"] = header if " " in header else f"Bearer {header}"
        self.pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED" if configuration.verify_ssl else "CERT_NONE",
            ca_certs=configuration.ssl_ca_cert,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> RawResponse:
        url = self.host + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        all_headers = {**self.headers, **(headers or {})}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers["Content-Type"] = content_type
        response = self.pool.request(method, url, body=data, headers=all_headers, timeout=30)
        text = response.data.decode()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return RawResponse(response.status, response.headers, parsed)

    def watch(
        self, path: str, *, timeout: float = 30, max_events: int | None = None, **query: str
    ) -> list[dict]:
        """The events of one watch request, read until the server ends it (or `max_events` arrive)."""
        url = self.host + path + "?" + urllib.parse.urlencode({"watch": "true", **query})
        response = self.pool.request(
            "GET", url, headers=self.headers, preload_content=False, timeout=urllib3.Timeout(read=timeout)
        )
        events: list[dict] = []
        buffer = b""
        try:
            for chunk in response.stream(1024, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        events.append(json.loads(line))
                        if max_events is not None and len(events) >= max_events:
                            return events
        finally:
            response.release_conn()
        return events


@pytest.fixture(scope="module")
def raw(api: client.ApiClient) -> RawApi:
    return RawApi(api)


def widgets_path(namespace: str, name: str = "", subresource: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path
