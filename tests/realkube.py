"""A real Kubernetes API server for tests: etcd + kube-apiserver (+ kube-controller-manager) 1.20.2 on loopback.

The binaries come from `make kube-apiserver` (tools/kube-apiserver/build.sh: built from Debian's source package,
cached under ~/.cache/ecs-reinstall-operator/kube-1.20.2). Like controller-runtime's envtest there is no kubelet
and no scheduler: pods never run, but everything an operator talks to is real (storage, admission, validation,
RBAC, watches, garbage collection and namespace deletion with the controller manager).

`unavailable_reason()` says why the real tier cannot run here (None when it can); `running_real_kube(workdir)`
starts the servers on free 127.0.0.1 ports, writes an admin kubeconfig (a static token in `system:masters`,
RBAC authorization) and stops every process it started when the block ends, also when the block raises.
Switch: REAL_KUBE=0 (or off/no/false/skip) turns the tier off; REAL_KUBE=require makes a missing build an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

KUBE_VERSION = "1.20.2"
REPO = Path(__file__).resolve().parents[1]
BIN_DIR = Path(os.environ.get("KUBE_BIN_DIR") or REPO / ".tools" / f"kube-{KUBE_VERSION}" / "bin")
BUILD_DIR = Path(os.environ.get("KUBE_BUILD_DIR") or REPO / ".tools" / "kube-build")
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
ADMIN_TOKEN = "realkube-admin-token"
OPT_OUT_VALUES = {"0", "off", "no", "false", "skip"}
BACKEND_ID = f"kube-{KUBE_VERSION}"
STARTUP_SECONDS: list[float] = []  # how long each running_real_kube took to be ready, for the run's summary


def switch() -> str:
    """REAL_KUBE: 'off' (opted out), 'require' (a missing build is an error) or 'auto' (skip with the reason)."""
    value = os.environ.get("REAL_KUBE", "auto").strip().lower()
    if value in OPT_OUT_VALUES:
        return "off"
    if value in {"1", "require", "required", "on", "yes", "true"}:
        return "require"
    return "auto"


def unavailable_reason() -> str | None:
    """Why the real API server tier cannot run here, or None when it can."""
    if switch() == "off":
        return f"real kube-apiserver tier switched off (REAL_KUBE={os.environ.get('REAL_KUBE')})"
    missing = [name for name in BINARIES if not os.access(BIN_DIR / name, os.X_OK)]
    if not missing:
        return None
    reason = f"kube-apiserver {KUBE_VERSION} binaries missing in {BIN_DIR} ({', '.join(missing)}): run `make kube-apiserver` (first build about 4 min; needs root for apt-get when the Debian build dependencies are missing)"
    failed = BUILD_DIR / "FAILED"
    if failed.is_file():
        reason += "; the last build failed: " + " ".join(failed.read_text().split())[:500]
    return reason


def version_tuple(version: str) -> tuple[int, int]:
    """'v1.20.2' or '1.25' -> (1, 20) / (1, 25)."""
    match = re.match(r"v?(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"not a Kubernetes version: {version!r}")
    return int(match.group(1)), int(match.group(2))


def skip_if_older_than_marked(node, server_version: str) -> None:
    """`@pytest.mark.since("1.25", reason=...)` on the test `node`: skip it when the server is older."""
    import pytest

    marker = node.get_closest_marker("since")
    if marker is None:
        return
    needed = str(marker.args[0])
    if version_tuple(server_version) < version_tuple(needed):
        what = marker.kwargs.get("reason", "")
        pytest.skip(
            f"needs Kubernetes >= {needed}{': ' + what if what else ''}; the server is {server_version}"
        )


_HANDED_OUT: list[int] = []


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free port for a server that binds it later, outside the kernel's ephemeral range: a port the kernel
    handed out (bind to 0) may be given again to an outgoing connection (etcd's clients, say) before the server
    binds it, and kube-apiserver then fails with "address already in use" (seen once in CI)."""
    low, _ = _ephemeral_ports()
    candidates = [p for p in range(10000, max(10001, low)) if p not in _HANDED_OUT]
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.append(port)  # not handed out twice before its server binds it
            del _HANDED_OUT[:-256]
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no range below: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)  # loaded here: no dlopen after fork
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """In the child: SIGKILL when the thread that started it dies (pytest killed hard), so nothing is left.
    The servers are started from pytest's main thread (fixtures, the harness' event loop), which lives as long
    as the run."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class RealKube:
    """A running real API server and how to reach it."""

    workdir: Path
    url: str
    kubeconfig: Path
    ca_file: Path
    token: str
    version: str
    sa_key: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def kubeconfig_for(
        self, path: Path, token: str, user: str = "user", namespace: str | None = None
    ) -> Path:
        """Write a kubeconfig for this server that authenticates with `token` (e.g. a ServiceAccount's)."""
        write_kubeconfig(path, self.url, self.ca_file, token, user, namespace)
        return path

    def request(
        self, method: str, path: str, body: object = None, token: str | None = None
    ) -> tuple[int, object]:
        return _request(self.url, self.ca_file, token or self.token, method, path, body)

    def audit_events(self, user: str | None = None) -> list[dict]:
        """The audit log's events so far (one per request and stage: ResponseStarted for watches,
        ResponseComplete, Panic), of `user` only when given: verb, objectRef, responseStatus.code, user."""
        events = []
        path = self.workdir / "audit.log"
        if not path.exists():
            return events
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            event = json.loads(line)
            if user is None or (event.get("user") or {}).get("username") == user:
                events.append(event)
        return events


def write_kubeconfig(
    path: Path, url: str, ca_file: Path, token: str, user: str = "admin", namespace: str | None = None
) -> None:
    context: dict = {"cluster": "realkube", "user": user}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "realkube", "cluster": {"server": url, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "realkube", "context": context}],
        "current-context": "realkube",
    }
    path.write_text(json.dumps(config, indent=2))


def _request(
    url: str, ca_file: Path, token: str, method: str, path: str, body: object = None, timeout: float = 10
) -> tuple[int, object]:
    context = ssl.create_default_context(cafile=str(ca_file))
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method)  # noqa: S310 - https to loopback
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:  # noqa: S310
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        status = error.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _make_certificates(certs: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1/localhost signed by it, and the service-account key pair."""
    certs.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=realkube-ca",
             "-keyout", str(certs / "ca.key"), "-out", str(certs / "ca.crt"))  # fmt: skip
    (certs / "san.cnf").write_text(
        "[req]\ndistinguished_name=dn\n[dn]\n[ext]\nsubjectAltName=IP:127.0.0.1,DNS:localhost,"
        "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
             "-keyout", str(certs / "apiserver.key"), "-out", str(certs / "apiserver.csr"))  # fmt: skip
    _openssl("x509", "-req", "-in", str(certs / "apiserver.csr"), "-CA", str(certs / "ca.crt"),
             "-CAkey", str(certs / "ca.key"), "-CAcreateserial", "-days", "2",
             "-extfile", str(certs / "san.cnf"), "-extensions", "ext", "-out", str(certs / "apiserver.crt"))  # fmt: skip
    _openssl("genrsa", "-out", str(certs / "sa.key"), "2048")
    _openssl("rsa", "-in", str(certs / "sa.key"), "-pubout", "-out", str(certs / "sa.pub"))


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(processes: dict[str, subprocess.Popen], timeout: float = 10) -> None:
    """SIGTERM in reverse start order, SIGKILL after `timeout`; waits for every process (no zombies)."""
    for _name, process in reversed(list(processes.items())):
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=timeout)


@contextlib.contextmanager
def running_real_kube(
    workdir: Path, *, controller_manager: bool = True, startup_timeout: float = 90
) -> Iterator[RealKube]:
    """Start etcd, kube-apiserver and (optionally) kube-controller-manager; stop them all when the block ends."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    certs = workdir / "certs"
    _make_certificates(certs)
    (workdir / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n')
    # every request's metadata (user, verb, resource, response code) in audit.log: what a test asks the real
    # authorizer about (RealKube.audit_events)
    (workdir / "audit-policy.yaml").write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"
    )
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str, args: list[str]) -> subprocess.Popen:
        log = open(workdir / f"{name}.log", "wb")
        try:
            process = subprocess.Popen(
                [str(BIN_DIR / name), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        processes[name] = process
        return process

    try:
        etcd_client, etcd_peer, apiserver_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        start(
            "etcd",
            [
                "--name=realkube",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=realkube=http://127.0.0.1:{etcd_peer}",
                "--log-level=warn",
            ],
        )
        _wait_for(lambda: _etcd_healthy(etcd_url), processes, workdir, startup_timeout, "etcd /health")
        start(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={apiserver_port}",
                "--insecure-port=0",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'apiserver.crt'}",
                f"--tls-private-key-file={certs / 'apiserver.key'}",
                f"--client-ca-file={certs / 'ca.crt'}",
                f"--token-auth-file={workdir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={certs / 'sa.pub'}",
                f"--service-account-signing-key-file={certs / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--endpoint-reconciler-type=none",
                f"--audit-policy-file={workdir / 'audit-policy.yaml'}",
                f"--audit-log-path={workdir / 'audit.log'}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        url = f"https://127.0.0.1:{apiserver_port}"
        ca_file = certs / "ca.crt"

        def ready() -> bool:
            try:
                return _request(url, ca_file, ADMIN_TOKEN, "GET", "/readyz", timeout=2)[0] == 200
            except OSError:
                return False

        _wait_for(ready, processes, workdir, startup_timeout, "kube-apiserver /readyz")
        kubeconfig = workdir / "kubeconfig"
        write_kubeconfig(kubeconfig, url, ca_file, ADMIN_TOKEN)
        status, version = _request(url, ca_file, ADMIN_TOKEN, "GET", "/version")
        if status != 200 or not isinstance(version, dict):
            raise RuntimeError(f"kube-apiserver /version answered {status}: {version}")
        if controller_manager:
            start(
                "kube-controller-manager",
                [
                    f"--kubeconfig={kubeconfig}",
                    "--bind-address=127.0.0.1",
                    "--port=0",
                    "--secure-port=0",
                    f"--service-account-private-key-file={certs / 'sa.key'}",
                    f"--root-ca-file={ca_file}",
                    # what an operator's API server needs beyond storage (as the emulator does it): namespace
                    # deletion, garbage collection, default ServiceAccounts and their token Secrets. No workload
                    # controllers (nothing runs pods) and no kube-root-ca.crt publisher: like envtest, only objects
                    # the tests make exist in their namespaces
                    "--controllers=namespace,garbagecollector,serviceaccount,serviceaccount-token",
                    "--leader-elect=false",
                    "--use-service-account-credentials=false",
                    "--concurrent-gc-syncs=5",
                    "--profiling=false",
                    "--v=1",
                ],
            )
            # it is ready once it made the default ServiceAccount of `default` (its tokens controller ran)
            _wait_for(
                lambda: (
                    _request(
                        url, ca_file, ADMIN_TOKEN, "GET", "/api/v1/namespaces/default/serviceaccounts/default"
                    )[0]
                    == 200
                ),
                processes,
                workdir,
                startup_timeout,
                "kube-controller-manager (the default ServiceAccount)",
            )
        STARTUP_SECONDS.append(time.monotonic() - started)
        yield RealKube(
            workdir=workdir,
            url=url,
            kubeconfig=kubeconfig,
            ca_file=ca_file,
            token=ADMIN_TOKEN,
            version=str(version.get("gitVersion", "")),
            sa_key=certs / "sa.key",
            processes=processes,
        )
    finally:
        _stop(processes)


def _etcd_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:  # noqa: S310 - loopback
            return json.loads(response.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


def _wait_for(
    predicate, processes: dict[str, subprocess.Popen], workdir: Path, timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode} while waiting for {what}:\n{_tail(workdir / f'{name}.log')}"
                )
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {name}:\n{_tail(workdir / f'{name}.log')}" for name in processes)
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(0.1)


# -- the real server as a backend of the e2e harness (in place of kube_emulator.testing.running_kube_emulator) ------

EMULATOR_ONLY = (
    "needs the kube emulator's {what}, which a real kube-apiserver does not have: emulator-only, "
    "skipped on the real server"
)


def ca_bundle(real: RealKube) -> Path:
    """The system's CA bundle plus this server's CA: for SSL_CERT_FILE, so that plain HTTPS clients made without
    a kubeconfig (httpx in tests) trust the server and everything else they trusted before."""
    bundle = real.workdir / "ca-bundle.pem"
    if not bundle.exists():
        try:
            import certifi

            system = Path(certifi.where()).read_text()
        except (ImportError, OSError):
            system = ""
        bundle.write_text(system + "\n" + real.ca_file.read_text())
    return bundle


@dataclass
class RealKubeHandle:
    """What the e2e harness uses of a KubeEmulatorHandle (url, kubeconfig, token), backed by a real server. The
    emulator's fault injection, request log and internals skip the test with the reason."""

    real: RealKube
    backend: str = BACKEND_ID

    @property
    def url(self) -> str:
        return self.real.url

    @property
    def kubeconfig(self) -> Path:
        return self.real.kubeconfig

    @property
    def token(self) -> str:
        return self.real.token

    @property
    def version(self) -> str:
        return self.real.version

    def _emulator_only(self, what: str):
        import pytest

        pytest.skip(EMULATOR_ONLY.format(what=what))

    @property
    def faults(self):
        return self._emulator_only("fault injection (kube.faults)")

    @property
    def requests(self):
        return self._emulator_only("request log (kube.requests)")

    @property
    def cluster(self):
        return self._emulator_only("internal state (kube.cluster)")

    def call(self, *_args, **_kwargs):
        return self._emulator_only("internal state (kube.call)")


def apply_crds(real: RealKube, paths, timeout: float = 30) -> None:
    """Create the CRDs in `paths` (YAML files) and wait until they are Established. A 1.20 server drops what it
    does not know (x-kubernetes-validations): the same as `kubectl apply --validate=false`."""
    import yaml

    names = []
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            status, body = real.request(
                "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc
            )
            if status not in (201, 409):
                raise RuntimeError(f"creating CRD {doc['metadata']['name']} answered {status}: {body}")
            names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            status, body = real.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            conditions = (body.get("status") or {}).get("conditions") or [] if isinstance(body, dict) else []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} not Established after {timeout}s: {body}")
            time.sleep(0.05)


@contextlib.asynccontextmanager
async def running_kube_backend(backend: str, workdir: Path, *, crds=(), controller_manager: bool = False):
    """`kube_emulator.testing.running_kube_emulator(workdir, crds=crds)` for backend "emulator"; a fresh real
    server (etcd + kube-apiserver, + kube-controller-manager when asked) with the CRDs for BACKEND_ID. The real
    one skips the test with the reason when it cannot run here (fails instead under REAL_KUBE=require)."""
    if backend == "emulator":
        from kube_emulator.testing import running_kube_emulator

        async with running_kube_emulator(workdir, crds=list(crds)) as kube:
            yield kube
        return
    import pytest

    reason = unavailable_reason()
    if reason:
        if switch() == "require":
            pytest.fail(f"REAL_KUBE=require: {reason}")
        pytest.skip(reason)
    # started from this (the test's) thread: the children die with it if pytest is killed (PR_SET_PDEATHSIG)
    with running_real_kube(workdir / "realkube", controller_manager=controller_manager) as real:
        apply_crds(real, crds)
        yield RealKubeHandle(real)


def backend_version(kube) -> str:
    """The /version gitVersion of a harness backend: the real server's, or the one kube_emulator claims."""
    if isinstance(kube, RealKubeHandle):
        return kube.version
    from kube_emulator.discovery import SERVER_VERSION

    return SERVER_VERSION["gitVersion"]
