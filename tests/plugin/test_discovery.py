"""The installed console script as kubectl finds it: `kubectl ecsr ...` through plugin discovery on the PATH,
`kubectl plugin list`, and rich output on a real terminal (a pseudo-terminal)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import OUTPUT_ENV, kubectl_binaries, venv_bin

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SCRIPT = venv_bin() / "kubectl-ecsr"

pytestmark = [
    pytest.mark.skipif(not SCRIPT.exists(), reason=f"{SCRIPT} missing: pip install -e '.[dev]'"),
]
each_kubectl = pytest.mark.parametrize(
    "kubectl",
    kubectl_binaries()
    or [pytest.param("kubectl", marks=pytest.mark.skip(reason="no kubectl on PATH nor in .tools"))],
    ids=lambda b: Path(b).name,
)


def _environment(kube, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OUTPUT_ENV}
    env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    env["KUBECONFIG"] = str(kube.kubeconfig)
    env["HOME"] = str(tmp_path)  # no kubectl cache or config of the machine's user
    return env


@each_kubectl
def test_kubectl_finds_the_plugin_and_runs_it(kube, sets, namespace, tmp_path: Path, kubectl: str) -> None:
    sets.create("web", servers=200)
    sets.progress("web", total=200, done=120, in_flight=10, failed=1, phase="Progressing")
    env = _environment(kube, tmp_path)
    table = subprocess.run(
        [kubectl, "ecsr", "status", "-n", namespace], env=env, capture_output=True, text=True, timeout=60
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout == "web  golden-1  120/200  in-flight=10  failed=1  Progressing\n"
    detail = subprocess.run(
        [kubectl, "ecsr", "status", "web", "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert detail.returncode == 0, detail.stderr
    assert "done=120  in-flight=10  failed=1  waiting=69" in detail.stdout.splitlines()
    missing = subprocess.run(
        [kubectl, "ecsr", "status", "nope", "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stderr == f"error: EcsReinstallSet {namespace}/nope not found\n"


@each_kubectl
def test_kubectl_plugin_list_shows_it(kube, tmp_path: Path, kubectl: str) -> None:
    listed = subprocess.run(
        [kubectl, "plugin", "list"],
        env=_environment(kube, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert str(SCRIPT) in listed.stdout.splitlines()
    assert "kubectl-ecsr" not in listed.stderr  # no warning about it (shadowing, not executable)


def test_a_terminal_gets_rich_output(kube, sets, namespace, tmp_path: Path) -> None:
    sets.create("web", servers=4)
    sets.progress("web", total=4, done=1, in_flight=1, failed=0, phase="Progressing")
    env = _environment(kube, tmp_path) | {"COLUMNS": "100", "TERM": "xterm-256color"}
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(SCRIPT), "status", "web", "-n", namespace], env=env, stdout=terminal, stderr=subprocess.PIPE
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(controller)
    assert process.wait(timeout=30) == 0, process.stderr.read() if process.stderr else ""
    text = output.decode()
    assert "\x1b[" in text  # colors
    plain = ANSI.sub("", text)
    assert "━" in plain and "25%  1/4" in plain and "waiting 2" in plain


def test_ctrl_c_ends_a_watch(kube, sets, namespace, tmp_path: Path) -> None:
    sets.create("web")
    sets.progress("web", total=5, done=1, in_flight=1, failed=0, phase="Progressing")
    process = subprocess.Popen(
        [str(SCRIPT), "status", "web", "-n", namespace, "--watch"],
        env=_environment(kube, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a test run started in the background (`make test &`, a CI runner's shell) hands
        # its children SIGINT ignored, and a program keeps an ignored SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # the first view is out: the watch loop runs
    assert first.startswith("set: ")
    process.send_signal(2)  # SIGINT, as Ctrl-C
    assert process.wait(timeout=10) == 130
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")
