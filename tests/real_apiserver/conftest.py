"""Fixtures of the real-API-server tier's own tests (the chart's RBAC on a real kube-apiserver).

The servers themselves come from tests/realkube.py; these tests reuse the deploy tests' helpers (helm rendering,
the RBAC model, the samples), put on sys.path as those tests do (pytest runs with --import-mode=importlib).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

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
