"""Fixtures shared by every test directory: the real API server tier (see tests/realkube.py).

`real_kube` is one etcd + kube-apiserver + kube-controller-manager (1.20.2) for the whole session, started on
first use; it skips with the reason when the binaries are missing or REAL_KUBE=0 switches the tier off, and fails
instead when REAL_KUBE=require. The `since` marker states the Kubernetes version that introduced what a test
checks; directories whose tests know the server's version skip them on older servers (tests/kube_emulator).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for realkube (pytest uses importlib mode)

import realkube


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "since(version, reason=''): what the test checks came with Kubernetes `version` (e.g. '1.25'); "
        "skipped on servers older than that",
    )


@pytest.fixture(scope="session")
def real_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[realkube.RealKube]:
    """A real kube-apiserver 1.20.2 (+ etcd, kube-controller-manager) on loopback, for the whole session."""
    reason = realkube.unavailable_reason()
    if reason:
        if realkube.switch() == "require":
            pytest.fail(f"REAL_KUBE=require: {reason}")
        pytest.skip(reason)
    with realkube.running_real_kube(tmp_path_factory.mktemp("realkube")) as kube:
        yield kube


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line on the real API server tier: why it did not run, or how often it started and how fast."""
    reason = realkube.unavailable_reason()
    starts = realkube.STARTUP_SECONDS
    if reason:
        line = f"NOT RUN: {reason}"
    elif starts:
        line = (
            f"{len(starts)} server start(s), ready in {min(starts):.1f}-{max(starts):.1f} s "
            f"(mean {sum(starts) / len(starts):.1f} s); binaries in {realkube.BIN_DIR}"
        )
    else:
        line = f"available ({realkube.BIN_DIR}) but not used by the selected tests"
    terminalreporter.write_line(f"real kube-apiserver tier ({realkube.BACKEND_ID}): {line}")
