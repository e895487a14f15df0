"""The container image tier: the image `make image` built (tools/image/build.sh), run with podman as the
Kubernetes manifests run it.

`unavailable_reason()` says why the tier cannot run here (None when it can); `built_image()` describes the image
(.tools/image/image.json); `Podman` runs podman with the tier's own configuration and storage;
`PodSpec.from_deployment` reads a rendered Deployment (the chart's, or the kustomize base's) and
`PodSpec.podman_args` turns exactly its securityContext, volumes, resources, args and environment into
`podman run` flags, refusing any setting it does not know how to reproduce (so that a new setting in the manifests
is looked at here, not silently dropped).
Switch: IMAGE_TIER=0 (or off/no/false/skip) turns the tier off; IMAGE_TIER=require (what `make test` sets) makes
an image that cannot be used a failure instead of a skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = Path(os.environ.get("IMAGE_WORK_DIR") or REPO / ".tools" / "image")
IMAGE_JSON = IMAGE_DIR / "image.json"
CHART_DIR = REPO / "deploy" / "helm" / "ecs-reinstall-operator"
MANIFESTS_DIR = REPO / "deploy" / "manifests"
OPT_OUT_VALUES = {"0", "off", "no", "false", "skip"}
# Every container the tier starts carries the pytest process' pid: containers of a session that is gone are removed.
LABEL_KEY = "dev.ecs-reinstall.image-test"
CONTAINER_LABEL = f"{LABEL_KEY}={os.getpid()}"
DEFAULT_GRACE_SECONDS = 30  # Kubernetes' terminationGracePeriodSeconds when a Pod does not set it
# Where the kubeconfig goes in the container (read-only): outside a Pod there is no in-cluster service account.
CONTAINER_KUBECONFIG = "/etc/ecs-reinstall/kubeconfig"
RUNS: list[str] = []  # one line per container run, for the session's summary
REBUILDS: list[str] = []  # the tier rebuilt the image because the sources had changed since `make image`


def switch() -> str:
    """IMAGE_TIER: 'off' (opted out), 'require' (an unusable image is an error) or 'auto' (skip with the reason)."""
    value = os.environ.get("IMAGE_TIER", "auto").strip().lower()
    if value in OPT_OUT_VALUES:
        return "off"
    if value in {"1", "require", "required", "on", "yes", "true"}:
        return "require"
    return "auto"


def context_digest() -> str:
    """The digest of the build context in the working tree now (tools/image/context.py, as build.sh records it)."""
    spec = importlib.util.spec_from_file_location("image_context", REPO / "tools" / "image" / "context.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.digest(REPO)


_REASON: list[str | None] = []  # the first answer of the session: the tier does not change its mind halfway


def unavailable_reason() -> str | None:
    """Why the image tier cannot run here, or None when it can (decided once per session)."""
    if not _REASON:
        _REASON.append(_unavailable_reason())
    return _REASON[0]


def _unavailable_reason() -> str | None:
    if switch() == "off":
        return f"container image tier switched off (IMAGE_TIER={os.environ.get('IMAGE_TIER')})"
    if os.geteuid() != 0:
        return f"not root (uid {os.geteuid()}): the image tier runs podman as root; run `make test` as root"
    if not shutil.which("podman"):
        return "podman is not installed: run `make image` (as root it installs podman with apt-get)"
    if not IMAGE_JSON.is_file():
        reason = f"no image built ({IMAGE_JSON} missing): run `make image`"
        failed = IMAGE_DIR / "FAILED"
        if failed.is_file():
            reason += "; the last build failed: " + " ".join(failed.read_text().split())[:500]
        return reason
    image = built_image()
    if Podman(image).run("image", "exists", image.id, check=False).returncode != 0:
        return (
            f"the image {image.ref} ({image.id[:12]}) is no longer in {IMAGE_DIR}/storage: run `make image`"
        )
    if image.context_digest != context_digest():
        # The sources changed since `make image`: rebuild now (the base is cached, the build takes about 20 s),
        # so that the tier never tests an image older than the working tree.
        proc = subprocess.run(
            ["bash", str(REPO / "tools" / "image" / "build.sh")], capture_output=True, text=True, timeout=900
        )
        REBUILDS.append(" ".join(proc.stderr.split())[-300:])
        if proc.returncode != 0 or built_image().context_digest != context_digest():
            return (
                f"the image {image.ref} was built from other sources than the working tree's (Dockerfile, "
                "pyproject.toml, README.md, operator/) and rebuilding it failed or raced with more changes: "
                f"run `make image`; {REBUILDS[-1]}"
            )
    return None


@dataclass(frozen=True)
class BuiltImage:
    """What tools/image/build.sh recorded about the image it built."""

    ref: str
    id: str
    version: str
    revision: str
    dirty: bool
    context_digest: str
    size_bytes: int
    base_ref: str
    base_size_bytes: int
    build_seconds: int
    base_made_seconds: int
    containers_conf: str
    storage_conf: str


def built_image() -> BuiltImage:
    data = json.loads(IMAGE_JSON.read_text())
    return BuiltImage(**{name: data[name] for name in BuiltImage.__dataclass_fields__})


@dataclass
class Podman:
    """podman with the tier's configuration (CONTAINERS_CONF) and storage (CONTAINERS_STORAGE_CONF)."""

    image: BuiltImage

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": self.image.containers_conf,
            "CONTAINERS_STORAGE_CONF": self.image.storage_conf,
        }

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}\n{proc.stdout[-3000:]}"
            )
        return proc

    def inspect(self) -> dict[str, Any]:
        return json.loads(self.run("image", "inspect", self.image.id).stdout)[0]

    def remove_leftovers(self) -> None:
        """Containers of this session, or of an earlier one that was interrupted (its pytest is gone)."""
        listing = self.run(
            "ps", "-a", "--filter", f"label={LABEL_KEY}", "--format", f'{{{{.ID}}}} {{{{index .Labels "{LABEL_KEY}"}}}}',
            check=False,
        )  # fmt: skip
        stale = []
        for line in listing.stdout.splitlines():
            container, _, pid = line.partition(" ")
            if pid.strip() == str(os.getpid()) or not _alive(pid.strip()):
                stale.append(container)
        if stale:
            self.run("rm", "-f", "-t", "0", *stale, check=False)


def _alive(pid: str) -> bool:
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


# --- the manifests' Pod, as podman flags ------------------------------------------------------------------------


def render_chart(values: Mapping[str, Any], namespace: str, workdir: Path) -> list[dict[str, Any]]:
    """`helm template` of the chart with these values (the real helm binary of `make tools`)."""
    helm = os.environ.get("HELM_BIN") or str(REPO / ".tools" / "bin" / "helm")
    values_file = workdir / "values.json"
    values_file.write_text(json.dumps(values))
    home = REPO / ".tools" / "helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    argv = [helm, "template", "ecs-reinstall-operator", str(CHART_DIR), "--namespace", namespace]
    argv += ["--values", str(values_file)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_kustomize_base() -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/manifests` (kubectl 1.35 of `make tools`)."""
    kubectl = os.environ.get("KUBECTL_135_BIN") or str(REPO / ".tools" / "bin" / "kubectl-1.35")
    proc = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS_DIR)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"kubectl kustomize failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def _quantity_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|M|G)?", str(quantity))
    assert match, f"a memory quantity this test cannot read: {quantity}"
    factor = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}
    return int(match.group(1)) * factor[match.group(2)]


# Every securityContext field, and what the translation does with it: a field not listed fails the test.
POD_SECURITY_FIELDS = {
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "seccompProfile",
    "supplementalGroups",
}
CONTAINER_SECURITY_FIELDS = {
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "capabilities",
    "seccompProfile",
    "privileged",
}


@dataclass
class PodSpec:
    """The operator container of a rendered Deployment, and its Pod's settings that a container runtime applies."""

    deployment: dict[str, Any]
    documents: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_deployment(cls, documents: list[dict[str, Any]]) -> PodSpec:
        (deployment,) = [d for d in documents if d.get("kind") == "Deployment"]
        return cls(deployment, documents)

    @property
    def pod(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def container(self) -> dict[str, Any]:
        (operator,) = [c for c in self.pod["containers"] if c["name"] == "operator"]
        return operator

    @property
    def grace_seconds(self) -> int:
        return int(self.pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))

    def security(self) -> tuple[dict[str, Any], dict[str, Any]]:
        pod_sc = self.pod.get("securityContext") or {}
        container_sc = self.container.get("securityContext") or {}
        unknown = (set(pod_sc) - POD_SECURITY_FIELDS) | (set(container_sc) - CONTAINER_SECURITY_FIELDS)
        assert not unknown, f"securityContext fields this tier does not reproduce with podman yet: {unknown}"
        return pod_sc, container_sc

    def user(self) -> tuple[int, int]:
        pod_sc, container_sc = self.security()
        uid = container_sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = container_sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        assert uid is not None and gid is not None, "the manifests leave the user to the image"
        return int(uid), int(gid)

    def environment(self, pod_name: str, namespace: str) -> dict[str, str]:
        """The container's environment as the kubelet builds it: envFrom ConfigMaps (from the rendered documents),
        then env values and the downward API (namespace, Pod name)."""
        env: dict[str, str] = {}
        for source in self.container.get("envFrom", []):
            name = source["configMapRef"]["name"]
            (config_map,) = [
                d for d in self.documents if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == name
            ]
            env.update({k: str(v) for k, v in config_map.get("data", {}).items()})
        for entry in self.container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = str(entry["value"])
            elif entry.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.namespace"}}:
                env[entry["name"]] = namespace
            elif entry.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}}:
                env[entry["name"]] = pod_name
            else:
                raise AssertionError(f"an env entry this tier cannot resolve: {entry}")
        return env

    def podman_args(self, env: Mapping[str, str], mounts: Sequence[tuple[str, str]] = ()) -> list[str]:
        """`podman run` flags for exactly this Pod's settings (host network: the emulators are on loopback)."""
        pod_sc, container_sc = self.security()
        args = ["--network", "host", "--pull", "never", "--label", CONTAINER_LABEL]
        uid, gid = self.user()
        args += ["--user", f"{uid}:{gid}"]
        if container_sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            assert uid != 0, "runAsNonRoot with runAsUser 0: the kubelet would refuse to start the container"
        groups = [*pod_sc.get("supplementalGroups", [])]
        if "fsGroup" in pod_sc:
            groups.append(pod_sc["fsGroup"])
        for group in groups:
            args += ["--group-add", str(group)]
        seccomp = container_sc.get("seccompProfile", pod_sc.get("seccompProfile")) or {
            "type": "RuntimeDefault"
        }
        assert seccomp["type"] in ("RuntimeDefault", "Unconfined"), f"seccomp profile {seccomp}"
        if seccomp["type"] == "Unconfined":
            args += ["--security-opt", "seccomp=unconfined"]
        if container_sc.get("privileged"):
            args.append("--privileged")
        if container_sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        capabilities = container_sc.get("capabilities") or {}
        for capability in capabilities.get("drop", []):
            args += ["--cap-drop", capability]
        for capability in capabilities.get("add", []):
            args += ["--cap-add", capability]
        if container_sc.get("readOnlyRootFilesystem"):
            # podman would otherwise mount its own writable tmpfs on /run, /tmp and /var/tmp: only the Pod's
            # volumes are writable, as in Kubernetes
            args += ["--read-only", "--read-only-tmpfs=false"]
        volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            assert set(volume) == {"name", "emptyDir"}, f"a volume this tier does not reproduce: {volume}"
            options = [f"type=tmpfs,destination={mount['mountPath']}"]
            if (volume["emptyDir"] or {}).get("sizeLimit"):
                options.append(f"tmpfs-size={_quantity_bytes(volume['emptyDir']['sizeLimit'])}")
            options.append("tmpfs-mode=2777" if "fsGroup" in pod_sc else "tmpfs-mode=0777")
            args += ["--mount", ",".join(options)]
        for source, target in mounts:
            args += ["--volume", f"{source}:{target}:ro"]
        limits = (self.container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            args += ["--memory", str(_quantity_bytes(limits["memory"]))]
        if "cpu" in limits:
            cpu = str(limits["cpu"])
            args += ["--cpus", str(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))]
        for name, value in env.items():
            args += ["--env", f"{name}={value}"]
        if self.container.get("command"):
            args += ["--entrypoint", json.dumps(self.container["command"])]
        return args

    def args(self) -> list[str]:
        return [str(a) for a in self.container.get("args", [])]


# --- processes and waiting --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def serving(argv: list[str], log: Path) -> Iterator[str]:
    """A server process that prints its base URL on its first stdout line; stopped when the block ends."""
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), f"{argv} did not start: {log.read_text()[-2000:]}"
            yield url
        finally:
            stop_process(proc)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2, on_timeout=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{on_timeout()}")
        time.sleep(interval)
