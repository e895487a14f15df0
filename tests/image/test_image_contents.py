"""The built image itself: its configuration (user, entrypoint, environment, labels), what is in its filesystem and
what is not (no compiler, no source tree, no wheel or pip cache, no emulators or development extras), and its size
against the budget stated in docs/image.md and the README.
"""

from __future__ import annotations

import json
import subprocess
import tomllib

import pytest
from image_support import REPO, BuiltImage, Podman

# The size budget (decimal MB, as podman reports it). Measured on the Debian stand-in for python:3.11-slim: the
# image 261 MB, of which the base 160 MB and the layers the Dockerfile adds 101 MB (kubernetes 57 MB of those).
# Before the image was trimmed the added layers were 170 MB (330 MB in all on this base).
IMAGE_BUDGET_MB = 275
ADDED_LAYERS_BUDGET_MB = 110

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
RUNTIME_MODULES = ("ecs_reinstall", "kopf", "kubernetes", "httpx", "prometheus_client", "sniffio", "aiohttp")
# Never in the image: the emulators (shipped in the same wheel) and their extras, development and benchmark tools.
ABSENT_MODULES = (
    "ecs_emulator",
    "kube_emulator",
    "kubernetes.aio",
    "celpy",
    "lark",
    "re2",
    "pytest",
    "ruff",
    "huaweicloudsdkecs",
    "lupa",
    "matplotlib",
)
CONTEXT = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "operator")
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as", "cpp", "x86_64-linux-gnu-gcc-12")

# Run as root inside the image (to read everything), from the image's own Python; prints one JSON object.
CONTENTS_PROBE = r"""
import importlib.util, json, os, shutil, sys, sysconfig
found = {"wheels": [], "caches": [], "sources": [], "pyproject": []}
for root, dirs, files in os.walk("/"):
    if root in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for name in dirs:
        path = os.path.join(root, name)
        if name == ".cache" or (name in ("pip", "http", "wheels") and root.endswith((".cache", ".cache/pip"))):
            found["caches"].append(path)
        if name in ("operator", "src", "dist") and root == "/":
            found["sources"].append(path)
    for name in files:
        path = os.path.join(root, name)
        if name.endswith((".whl", ".tar.gz", ".zip")) and "/usr/share/" not in path:
            found["wheels"].append(path)
        if name == "pyproject.toml":
            found["pyproject"].append(path)
def spec(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
modules = sys.argv[1].split(",")
tools = sys.argv[2].split(",")
import ecs_reinstall
package = os.path.dirname(ecs_reinstall.__file__)
found.update(
    present={m: spec(m) for m in modules},
    tools={t: shutil.which(t) for t in tools},
    commands={c: shutil.which(c) for c in ("ecs-reinstall-operator", "ecs-emulator", "kube-emulator")},
    package=package,
    bytecode=sorted(os.listdir(os.path.join(package, "__pycache__"))) if os.path.isdir(os.path.join(package, "__pycache__")) else [],
    sources_py=sorted(n for n in os.listdir(package) if n.endswith(".py")),
    tmp=sorted(os.listdir("/tmp")),
    root_home=sorted(os.listdir("/root")) if os.path.isdir("/root") else [],
)
print(json.dumps(found))
"""


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def config(podman: Podman) -> dict:
    return podman.inspect()


@pytest.fixture(scope="module")
def contents(podman: Podman, image: BuiltImage) -> dict:
    modules = ",".join((*RUNTIME_MODULES, *ABSENT_MODULES))
    proc = podman.run(
        "run", "--rm", "--network", "none", "--pull", "never", "--user", "0:0", "--read-only",
        "--entrypoint", "python", image.id, "-c", CONTENTS_PROBE, modules, ",".join(COMPILERS),
    )  # fmt: skip
    return json.loads(proc.stdout)


def test_runs_as_uid_and_gid_10001_by_number(config: dict) -> None:
    assert config["Config"]["User"] == "10001:10001", "numeric, so that runAsNonRoot can verify it"


def test_entrypoint_command_workdir_and_ports(config: dict) -> None:
    assert config["Config"]["Entrypoint"] == ["ecs-reinstall-operator"]
    assert config["Config"]["Cmd"] == ["run"]
    assert config["Config"]["WorkingDir"] == "/tmp"
    assert set(config["Config"]["ExposedPorts"]) == {"8080/tcp", "8081/tcp"}
    env = dict(item.split("=", 1) for item in config["Config"]["Env"])
    assert env["HOME"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"


def test_labels_name_the_version_and_the_git_revision(config: dict, image: BuiltImage) -> None:
    labels = config["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == PROJECT["version"] == image.version
    assert labels["org.opencontainers.image.licenses"] == PROJECT["license"]
    assert labels["org.opencontainers.image.title"] == PROJECT["name"]
    # The revision build.sh saw; HEAD may have moved on since (others commit), as long as nothing the image is
    # built from changed in between (the working tree's own changes are checked by the tier: a stale image fails).
    revision = labels["org.opencontainers.image.revision"]
    assert revision == image.revision, (revision, image.revision)
    assert git("rev-parse", f"{revision}^{{commit}}").returncode == 0, (
        f"{revision} is no commit of this repository"
    )
    head = git("rev-parse", "HEAD").stdout.strip()
    if revision != head:
        assert git("merge-base", "--is-ancestor", revision, head).returncode == 0, (revision, head)
        changed = git("diff", "--name-only", revision, head, "--", *CONTEXT).stdout.split()
        assert not changed, f"labelled {revision}, but HEAD {head} changed {changed}: run `make image`"
    assert labels["org.opencontainers.image.base.name"] == image.base_ref


def test_image_version_is_the_operators(podman: Podman, image: BuiltImage) -> None:
    proc = podman.run(
        "run", "--rm", "--network", "none", "--pull", "never", "--read-only", image.id, "--version"
    )
    assert proc.stdout.strip() == PROJECT["version"]


def test_no_compiler(contents: dict) -> None:
    assert {tool: path for tool, path in contents["tools"].items() if path} == {}


def test_no_source_tree_and_no_build_leftovers(contents: dict) -> None:
    assert contents["sources"] == [], "the builder's /src, /dist or an operator/ tree reached the image"
    assert contents["pyproject"] == []
    assert contents["wheels"] == [], "wheels or source archives left in the image"
    assert contents["tmp"] == [], "the image's /tmp is empty (it is an emptyDir in the Pod anyway)"


def test_no_pip_or_wheel_cache(contents: dict) -> None:
    assert contents["caches"] == []
    assert not {".cache", ".pip"} & set(contents["root_home"])


def test_runtime_dependencies_installed_with_bytecode(contents: dict) -> None:
    missing = [m for m in RUNTIME_MODULES if not contents["present"][m]]
    assert not missing, f"runtime modules missing from the image: {missing}"
    # compiled at build time: the read-only image never compiles (PYTHONDONTWRITEBYTECODE=1)
    compiled = {name.split(".")[0] + ".py" for name in contents["bytecode"]}
    assert set(contents["sources_py"]) <= compiled, set(contents["sources_py"]) - compiled
    assert contents["commands"]["ecs-reinstall-operator"]


def test_no_emulators_extras_or_development_tools(contents: dict) -> None:
    present = [m for m in ABSENT_MODULES if contents["present"][m]]
    assert not present, f"not needed by the running operator, yet in the image: {present}"
    assert contents["commands"]["ecs-emulator"] is None and contents["commands"]["kube-emulator"] is None


def test_dependencies_consistent(podman: Podman, image: BuiltImage) -> None:
    proc = podman.run(
        "run", "--rm", "--network", "none", "--pull", "never", "--read-only", "--entrypoint", "python",
        image.id, "-m", "pip", "check", check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_image_size_within_budget(podman: Podman, image: BuiltImage) -> None:
    size = int(podman.inspect()["Size"])
    base = int(json.loads(podman.run("image", "inspect", image.base_ref).stdout)[0]["Size"])
    added = size - base
    print(f"image {size / 1e6:.0f} MB = base {base / 1e6:.0f} MB + added layers {added / 1e6:.0f} MB")
    assert added <= ADDED_LAYERS_BUDGET_MB * 1e6, (
        f"the Dockerfile's layers are {added / 1e6:.0f} MB, over the budget of {ADDED_LAYERS_BUDGET_MB} MB"
    )
    assert size <= IMAGE_BUDGET_MB * 1e6, (
        f"the image is {size / 1e6:.0f} MB, over the budget of {IMAGE_BUDGET_MB} MB"
    )
