"""Fixtures for the packaging tests: the real `helm` and `kubectl` binaries.

Helm needs writable cache/config/data directories: each test session gets its own under pytest's tmp dir,
so the tests never touch the developer's Helm setup and run the same on a fresh machine.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

# The tests import their helpers as `deploy_support` (pytest runs with --import-mode=importlib, which does not
# put test directories on sys.path by itself).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_support import Helm, find_helm_binary


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        (home / name).mkdir()
        env[name] = str(home / name)
    return Helm(binary=find_helm_binary(), env=env)


@pytest.fixture(scope="session")
def kubectl_binary() -> str:
    found = os.environ.get("KUBECTL_BIN") or shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found on PATH (set KUBECTL_BIN to a kubectl v1.27+ binary)")
    return found


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Run the operator-on-kube_emulator module last: its least-privilege check also reads the API calls that
    the e2e suite (tests/e2e, collected after tests/deploy) records in the same session."""
    last = [item for item in items if item.path.name == "test_operator_on_kube_emulator.py"]
    if last:
        moved = set(last)
        items[:] = [item for item in items if item not in moved] + last
