"""The CRD has one source, crds/ at the repository root; the Helm chart and the kustomize base ship copies.

When this fails after a CRD change, run `deploy/helm/sync-crds.sh` (it copies the top-level CRD into both).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploy_support import CHART_DIR, CRD_FILE_NAME, MANIFESTS_DIR, REPO_ROOT, TOP_LEVEL_CRD

COPIES = [CHART_DIR / "crds" / CRD_FILE_NAME, MANIFESTS_DIR / "crds" / CRD_FILE_NAME]
SYNC_HINT = "run deploy/helm/sync-crds.sh to copy crds/ into the chart and the kustomize base"


@pytest.mark.parametrize("copy", COPIES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_copy_is_identical_to_the_top_level_crd(copy: Path) -> None:
    assert copy.is_file(), f"{copy.relative_to(REPO_ROOT)} is missing: {SYNC_HINT}"
    assert copy.read_bytes() == TOP_LEVEL_CRD.read_bytes(), (
        f"{copy.relative_to(REPO_ROOT)} differs: {SYNC_HINT}"
    )


def test_chart_ships_only_the_crd() -> None:
    assert sorted(p.name for p in (CHART_DIR / "crds").iterdir()) == [CRD_FILE_NAME]
    assert sorted(p.name for p in (REPO_ROOT / "crds").iterdir() if p.suffix == ".yaml") == [CRD_FILE_NAME]


def test_the_crd_is_the_one_the_chart_and_examples_use() -> None:
    crd = yaml.safe_load(TOP_LEVEL_CRD.read_text())
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == CRD_FILE_NAME.removesuffix(".yaml")
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == ("ecs.reinstall.dev", "EcsReinstall")
    versions = [v for v in crd["spec"]["versions"] if v["served"]]
    assert [v["name"] for v in versions] == ["v1alpha1"]
    assert versions[0]["subresources"] == {"status": {}}
