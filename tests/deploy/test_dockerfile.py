"""The Dockerfile: its rules checked by parsing it, its install steps reproduced without a container engine.

No container engine runs here, so `test_install_steps_reproduced_in_a_clean_venv` replays the two stages:
the builder's `pip wheel` over exactly the files the builder stage COPYs, then the final stage's `pip install`
of that wheel alone into a fresh virtual environment, and finally the image's ENTRYPOINT + `run --help` with
the image's ENV.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deploy_support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

# Every flag of `run` in the operator contract (settings.py): the chart and the kustomize base rely on them.
CONTRACT_RUN_FLAGS = (
    "--region",
    "--project-id",
    "--endpoint",
    "--credentials-secret",
    "--operator-namespace",
    "--ca-bundle",
    "--qps",
    "--burst",
    "--max-concurrency",
    "--namespace",
    "--log-format",
    "--log-level",
    "--metrics-port",
    "--health-port",
)
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "git", "curl", "wget")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of ENTRYPOINT/CMD; fails if the shell form was used."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} must use the exec (JSON array) form"
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.arguments):
                key, sep, value = token.partition("=")
                assert sep, f"ENV {instruction.arguments!r}: use the KEY=value form"
                values[key] = value
        return values

    def labels(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("LABEL"):
            for token in shlex.split(instruction.arguments):
                key, _, value = token.partition("=")
                values[key] = value
        return values


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages). Handles comments, `\\` continuations and `${ARG}` in FROM."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment line inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), re.sub(r"\s+", " ", arguments.strip())
        if keyword == "FROM":
            words = arguments.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif keyword == "ARG" and not stages:
            key, _, default = arguments.partition("=")
            global_args[key] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="module")
def builder(stages: list[Stage]) -> Stage:
    return stages[0]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_parser_joins_continuations_and_skips_comments() -> None:
    args, parsed = parse_dockerfile(
        'ARG BASE=python:3.11-slim\nFROM ${BASE} AS b\n# c\nRUN a \\\n  # inner\n  && b\nFROM b\nCMD ["x"]\n'
    )
    assert args == {"BASE": "python:3.11-slim"}
    assert [(s.base, s.name) for s in parsed] == [("python:3.11-slim", "b"), ("b", None)]
    assert parsed[0].instructions == [Instruction("RUN", "a && b")]
    assert parsed[1].last("CMD").exec_form() == ["x"]


def test_two_stages_on_slim_python_311(stages: list[Stage]) -> None:
    assert len(stages) == 2, "a builder stage and a final stage"
    assert stages[0].name == "builder"
    for stage in stages:
        assert stage.base == "python:3.11-slim"


def test_builder_builds_only_the_project_wheel(builder: Stage) -> None:
    runs = [i.arguments for i in builder.all("RUN")]
    assert runs == ["python -m pip wheel --no-deps . -w /dist"]


def test_final_stage_installs_only_the_wheel_from_the_builder(final: Stage) -> None:
    copies = [i.arguments for i in final.all("COPY")]
    assert copies == ["--from=builder /dist/ /tmp/wheels/"], "the final stage takes only the built wheel"
    (install,) = [i.arguments for i in final.all("RUN")]
    commands = [c.strip() for c in install.split("&&")]
    assert commands[0] == "python -m pip install --no-cache-dir /tmp/wheels/*.whl"
    assert "rm -rf /tmp/wheels" in commands, "the wheel is removed after the install"
    for tool in BUILD_TOOLS:
        assert not re.search(rf"\b{re.escape(tool)}\b", install), f"{tool} installed in the final stage"
    assert "apt-get" not in install


def test_final_stage_runs_as_uid_10001(final: Stage) -> None:
    assert final.last("USER").arguments == "10001:10001", "numeric uid:gid, so runAsNonRoot can verify it"
    (install,) = [i.arguments for i in final.all("RUN")]
    assert "--uid 10001" in install and "--gid 10001" in install, "a passwd entry for uid 10001 exists"


def test_final_stage_environment_fits_a_read_only_root_filesystem(final: Stage) -> None:
    env = final.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["HOME"] == "/tmp", "the only writable path (an emptyDir) is /tmp"
    assert final.last("WORKDIR").arguments == "/tmp"


def test_entrypoint_is_the_operator_and_default_command_runs_it(final: Stage) -> None:
    assert final.last("ENTRYPOINT").exec_form() == ["ecs-reinstall-operator"]
    assert final.last("CMD").exec_form() == ["run"]
    assert sorted(final.last("EXPOSE").arguments.split()) == ["8080", "8081"]


def test_oci_labels(final: Stage) -> None:
    labels = final.labels()
    for key in ("title", "description", "version", "revision", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"OCI label org.opencontainers.image.{key}"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    version_arg = next(i.arguments for i in final.all("ARG") if i.arguments.startswith("VERSION="))
    assert version_arg == f"VERSION={project['version']}", "the image's default version is the project's"


def test_dockerignore_sends_only_the_wheel_sources(builder: Stage) -> None:
    lines = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*", "exclude everything, then re-include what the builder COPYs"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {src.rstrip("/") for i in builder.all("COPY") for src in i.arguments.split()[:-1]}
    assert copied == included


def _copy_build_context(builder: Stage, context: Path) -> None:
    """Lay out what the builder stage's COPY instructions put under its WORKDIR (sources only, no caches)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for instruction in builder.all("COPY"):
        *sources, destination = instruction.arguments.split()
        for source in sources:
            origin = REPO_ROOT / source
            target = context / destination / (origin.name if destination.endswith("/") else "")
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=ignore)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.timeout(290)
def test_install_steps_reproduced_in_a_clean_venv(builder: Stage, final: Stage, tmp_path: Path) -> None:
    # Builder stage: `pip wheel --no-deps . -w /dist` over the copied sources, in their own directory.
    context = tmp_path / "src"
    _copy_build_context(builder, context)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", ".", "-w", str(dist)], cwd=context)
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}"

    # Final stage: a Python with nothing but the wheel and its runtime dependencies.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", str(wheels[0])], cwd=tmp_path)

    # The image's environment: its ENV (HOME=/tmp ...) and PATH to the installed console script.
    home = tmp_path / "home"
    home.mkdir()
    env = {**final.env(), "HOME": str(home), "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    entrypoint = [str(venv / "bin" / final.last("ENTRYPOINT").exec_form()[0])]
    before = _tree(venv)

    top_help = _run([*entrypoint, "--help"], cwd=home, env=env).stdout
    for subcommand in ("run", "demo"):
        assert re.search(rf"\b{subcommand}\b", top_help), f"`{subcommand}` missing from --help:\n{top_help}"
    run_help = _run([*entrypoint, *final.last("CMD").exec_form(), "--help"], cwd=home, env=env).stdout
    missing = [flag for flag in CONTRACT_RUN_FLAGS if flag not in run_help]
    assert not missing, f"`run --help` lacks the contract flags {missing}:\n{run_help}"

    # Read-only root filesystem: running the entrypoint wrote nothing next to the installed code.
    assert _tree(venv) == before, f"the entrypoint wrote into its install tree: {_tree(venv) - before}"
    # The emulators' own dependencies are development extras: the image does not get them.
    probe = "import importlib.util as u; print(u.find_spec('celpy') is None)"
    assert _run([str(python), "-c", probe], cwd=home, env=env).stdout.strip() == "True"
