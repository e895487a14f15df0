"""Fixtures for the packaging tests: the real `helm` and `kubectl` binaries.

Helm needs writable cache/config/data directories: each test session gets its own under pytest's tmp dir,
so the tests never touch the developer's Helm setup and run the same on a fresh machine.

The chart refuses to install without a default region and default credentials unless `requireDefaults: false` says
that every EcsReinstall brings its own. `helm` renders on top of that opt-out (CHART_BASE_VALUES), the counterpart
of the kustomize base, which sets neither: so "the chart's defaults" that the packaging tests compare with it stay
the same objects. `chart_helm` is the chart exactly as a user gets it (test_chart.py uses it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The tests import their helpers as `deploy_support` (pytest runs with --import-mode=importlib, which does not
# put test directories on sys.path by itself).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_support import Helm, find_helm_binary

# The opt-out of the default region and credentials: the kustomize base sets neither.
CHART_BASE_VALUES = {"requireDefaults": False}


@dataclass(frozen=True)
class HelmOnBaseValues(Helm):
    """Helm whose `lint` and `template` read a base values file first; the values a test gives override it."""

    base_values_file: str = ""

    def _value_args(
        self, values: Mapping[str, Any] | None, api_versions: Iterable[str], tmp_path: Path | None
    ) -> list[str]:
        return ["--values", self.base_values_file, *super()._value_args(values, api_versions, tmp_path)]


@pytest.fixture(scope="session")
def chart_helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The real helm and the chart as a user gets it: nothing but the values a test gives."""
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        (home / name).mkdir()
        env[name] = str(home / name)
    return Helm(binary=find_helm_binary(), env=env)


@pytest.fixture(scope="session")
def helm(chart_helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The real helm, rendering on top of CHART_BASE_VALUES."""
    base_values = tmp_path_factory.mktemp("helm-base-values") / "base-values.yaml"
    base_values.write_text(json.dumps(CHART_BASE_VALUES))  # JSON is YAML
    return HelmOnBaseValues(binary=chart_helm.binary, env=chart_helm.env, base_values_file=str(base_values))


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
