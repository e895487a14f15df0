"""The CRDs have one source, crds/ at the repository root; the Helm chart and the kustomize base ship copies.

Two CRDs: EcsReinstall, and EcsReinstallSet (generated from it by tools/crds/make_set_crd.py). When this fails after
a CRD change, run `deploy/helm/sync-crds.sh` (it copies every CRD of crds/ into both).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import CHART_DIR, CRD_FILE_NAMES, CRD_KINDS, MANIFESTS_DIR, REPO_ROOT

SYNC_HINT = "run deploy/helm/sync-crds.sh to copy crds/ into the chart and the kustomize base"
COPIES = [(name, place / "crds" / name) for name in CRD_FILE_NAMES for place in (CHART_DIR, MANIFESTS_DIR)]


@pytest.mark.parametrize(
    ("name", "copy"), COPIES, ids=lambda p: str(p.relative_to(REPO_ROOT)) if isinstance(p, Path) else ""
)
def test_copy_is_identical_to_the_top_level_crd(name: str, copy: Path) -> None:
    assert copy.is_file(), f"{copy.relative_to(REPO_ROOT)} is missing: {SYNC_HINT}"
    assert copy.read_bytes() == (REPO_ROOT / "crds" / name).read_bytes(), (
        f"{copy.relative_to(REPO_ROOT)} differs: {SYNC_HINT}"
    )


def test_the_chart_and_the_kustomize_base_ship_exactly_the_two_crds() -> None:
    expected = sorted(CRD_FILE_NAMES)
    assert sorted(p.name for p in (REPO_ROOT / "crds").iterdir() if p.suffix == ".yaml") == expected
    assert sorted(p.name for p in (CHART_DIR / "crds").iterdir()) == expected, SYNC_HINT
    assert sorted(p.name for p in (MANIFESTS_DIR / "crds").iterdir()) == expected, SYNC_HINT


def test_the_kustomize_base_lists_both_crds() -> None:
    kustomization = yaml.safe_load((MANIFESTS_DIR / "kustomization.yaml").read_text())
    listed = [r for r in kustomization["resources"] if r.startswith("crds/")]
    assert sorted(listed) == sorted(f"crds/{name}" for name in CRD_FILE_NAMES)


@pytest.mark.parametrize("name", CRD_FILE_NAMES)
def test_the_crds_are_the_ones_the_chart_and_examples_use(name: str) -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / name).read_text())
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == name.removesuffix(".yaml")
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == ("ecs.reinstall.dev", CRD_KINDS[name])
    assert crd["spec"]["scope"] == "Namespaced"
    versions = [v for v in crd["spec"]["versions"] if v["served"]]
    assert [v["name"] for v in versions] == ["v1alpha1"]
    assert versions[0]["subresources"] == {"status": {}}


def test_the_set_crd_is_named_as_the_operator_and_kubectl_use_it() -> None:
    names = yaml.safe_load((REPO_ROOT / "crds" / CRD_FILE_NAMES[1]).read_text())["spec"]["names"]
    assert (names["plural"], names["singular"], names["shortNames"]) == (
        "ecsreinstallsets",
        "ecsreinstallset",
        ["ecsrs"],
    )


def test_the_sync_script_copies_every_crd_of_crds_and_drops_stale_copies(tmp_path: Path) -> None:
    """sync-crds.sh, run in a scratch tree: every *.yaml of crds/ (not a fixed list) lands in both places, and a
    copy whose source is gone is removed."""
    (tmp_path / "deploy" / "helm").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "deploy" / "helm" / "sync-crds.sh", tmp_path / "deploy" / "helm" / "sync-crds.sh")
    (tmp_path / "crds").mkdir()
    for name in CRD_FILE_NAMES:
        shutil.copy(REPO_ROOT / "crds" / name, tmp_path / "crds" / name)
    stale = tmp_path / "deploy" / "manifests" / "crds" / "old.ecs.reinstall.dev.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("kind: CustomResourceDefinition\n")
    subprocess.run(
        ["sh", str(tmp_path / "deploy" / "helm" / "sync-crds.sh")], check=True, capture_output=True
    )
    for place in ("deploy/helm/ecs-reinstall-operator/crds", "deploy/manifests/crds"):
        assert sorted(p.name for p in (tmp_path / place).iterdir()) == sorted(CRD_FILE_NAMES), place
        for name in CRD_FILE_NAMES:
            assert (tmp_path / place / name).read_bytes() == (REPO_ROOT / "crds" / name).read_bytes()
