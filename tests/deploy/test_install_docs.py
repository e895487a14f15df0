"""docs/install.md keeps up with the chart: its values table names every value, and nothing that is not one."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from deploy_support import CHART_DIR, REPO_ROOT

INSTALL_DOC = REPO_ROOT / "docs" / "install.md"
DOCUMENTED_AS_A_WHOLE = {"resources"}  # a Kubernetes structure, documented by its default, not key by key


def leaf_keys(values: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and path not in DOCUMENTED_AS_A_WHOLE:
            yield from leaf_keys(value, path + ".")
        else:
            yield path


def documented_values() -> set[str]:
    section = INSTALL_DOC.read_text().split("\n## Values\n", 1)[1]
    return set(re.findall(r"^\| `([\w.]+)` \|", section, flags=re.MULTILINE))


def test_values_table_lists_every_value() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    expected = set(leaf_keys(values))
    documented = documented_values()
    assert documented == expected, (
        f"undocumented: {sorted(expected - documented)}; not values: {sorted(documented - expected)}"
    )


def test_commands_name_real_paths() -> None:
    text = INSTALL_DOC.read_text()
    for path in re.findall(r"(?<![\w/])((?:deploy|crds)/[\w./-]+)", text):
        assert (REPO_ROOT / path.rstrip(".")).exists(), f"docs/install.md names {path}, which does not exist"
