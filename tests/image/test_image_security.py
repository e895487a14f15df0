"""The manifests' securityContext against what the image really needs, checked inside the running image.

The Helm chart's Deployment (rendered with helm) and the kustomize base's (rendered with kubectl kustomize) are each
turned into podman flags by image_support.PodSpec (user and groups, read-only root filesystem, no capabilities, no
privilege escalation, the runtime's default seccomp profile, the /tmp emptyDir with its size limit, the memory
limit); the image then runs a probe under exactly those settings: who it is, what the kernel says about its
capabilities, no_new_privs and seccomp, and which paths it can write. The operator itself runs under the same
flags in test_image_operator.py.
"""

from __future__ import annotations

import json

import pytest
from image_support import BuiltImage, Podman, PodSpec, render_chart, render_kustomize_base

# Inside the image, from its own Python: one JSON object.
SECURITY_PROBE = r"""
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
writable = []
for root, dirs, files in os.walk("/"):
    if root in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    if os.access(root, os.W_OK):
        writable.append(root)
    for name in files:
        path = os.path.join(root, name)
        if os.path.isfile(path) and not os.path.islink(path) and os.access(path, os.W_OK):
            writable.append(path)
# what os.access claims, tried for real in the two places a program would try first
tried = {}
for path in ("/tmp/probe", "/var/tmp/probe", "/etc/probe", os.path.expanduser("~/probe")):
    try:
        with open(path, "w") as handle:
            handle.write("x")
        os.remove(path)
        tried[path] = "ok"
    except OSError as exc:
        tried[path] = exc.strerror
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
    "caps": {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "writable": writable, "tried": tried, "home": os.path.expanduser("~"), "cwd": os.getcwd(),
}))
"""
# Files the container runtime writes into every container (the kubelet does the same): not the image's.
RUNTIME_FILES = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv"}


def manifests_pod(manifests: str, tmp_path_factory: pytest.TempPathFactory) -> PodSpec:
    if manifests == "chart":
        work = tmp_path_factory.mktemp("chart")
        values = {"region": "ap-southeast-1", "credentials": {"existingSecret": "hwc-credentials"}}
        return PodSpec.from_deployment(render_chart(values, "ecs-reinstall-system", work))
    return PodSpec.from_deployment(render_kustomize_base())


def probe(podman: Podman, image: BuiltImage, pod: PodSpec, *, read_only: bool = True) -> dict:
    args = pod.podman_args(pod.environment("probe-pod", "ecs-reinstall-system"))
    if not read_only:
        args = [a for a in args if a not in ("--read-only", "--read-only-tmpfs=false")]
    proc = podman.run("run", "--rm", *args, "--entrypoint", "python", image.id, "-c", SECURITY_PROBE)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module", params=["chart", "kustomize"])
def manifests(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def pod(manifests: str, tmp_path_factory: pytest.TempPathFactory) -> PodSpec:
    return manifests_pod(manifests, tmp_path_factory)


@pytest.fixture(scope="module")
def probed(podman: Podman, image: BuiltImage, pod: PodSpec) -> dict:
    return probe(podman, image, pod)


def test_manifests_ask_for_the_restricted_profile(pod: PodSpec) -> None:
    pod_sc, container_sc = pod.security()
    assert pod_sc.get("runAsNonRoot") is True and container_sc.get("runAsNonRoot") is True
    assert container_sc.get("allowPrivilegeEscalation") is False
    assert container_sc.get("readOnlyRootFilesystem") is True
    assert container_sc.get("capabilities") == {"drop": ["ALL"]}
    assert (container_sc.get("seccompProfile") or pod_sc.get("seccompProfile")) == {"type": "RuntimeDefault"}


def test_manifests_user_is_the_images(pod: PodSpec, podman: Podman) -> None:
    """The image's files (its passwd entry, HOME=/tmp) are made for uid/gid 10001: the manifests must run that."""
    assert podman.inspect()["Config"]["User"] == "{}:{}".format(*pod.user())


def test_runs_as_uid_gid_10001(probed: dict) -> None:
    assert (probed["uid"], probed["euid"], probed["gid"]) == (10001, 10001, 10001)
    assert probed["home"] == "/tmp" and probed["cwd"] == "/tmp"


def test_no_capabilities_at_all(probed: dict) -> None:
    assert set(probed["caps"].values()) == {"0000000000000000"}, probed["caps"]


def test_no_new_privileges_and_seccomp_filtered(probed: dict) -> None:
    assert probed["no_new_privs"] == "1"
    assert probed["seccomp"] == "2", "the runtime's default seccomp profile filters system calls"


def test_only_tmp_is_writable(probed: dict, pod: PodSpec) -> None:
    writable = {p for p in probed["writable"] if p not in RUNTIME_FILES}
    mounts = {m["mountPath"] for m in pod.container.get("volumeMounts", [])}
    assert mounts == {"/tmp"}, "the manifests mount exactly one writable volume, at the image's HOME"
    assert writable == {"/tmp"}, sorted(writable)[:20]
    assert probed["tried"]["/tmp/probe"] == "ok"
    for path in ("/var/tmp/probe", "/etc/probe"):
        assert probed["tried"][path] in ("Read-only file system", "Permission denied"), probed["tried"]


def test_probe_sees_a_writable_root_filesystem_without_readonly(
    podman: Podman, image: BuiltImage, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The probe is not vacuous: without readOnlyRootFilesystem the image's world-writable /var/tmp is writable."""
    loose = probe(podman, image, manifests_pod("chart", tmp_path_factory), read_only=False)
    assert "/var/tmp" in loose["writable"], loose["writable"]
    assert loose["tried"]["/var/tmp/probe"] == "ok"
