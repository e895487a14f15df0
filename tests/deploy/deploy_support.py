"""Helpers of the packaging tests: repository paths, the real `helm` binary, YAML documents.

Imported by the tests of tests/deploy (their conftest.py puts this directory on sys.path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "ecs-reinstall-operator"
MANIFESTS_DIR = REPO_ROOT / "deploy" / "manifests"
ARGOCD_DIR = REPO_ROOT / "deploy" / "argocd"
# The CRDs, one source each in crds/ (deploy/helm/sync-crds.sh copies them into the chart and the kustomize base):
# EcsReinstall, and EcsReinstallSet (generated from it by tools/crds/make_set_crd.py).
CRD_FILE_NAME = "ecsreinstalls.ecs.reinstall.dev.yaml"
SET_CRD_FILE_NAME = "ecsreinstallsets.ecs.reinstall.dev.yaml"
CRD_FILE_NAMES = (CRD_FILE_NAME, SET_CRD_FILE_NAME)
# (file name, kind) of each CRD
CRD_KINDS = {CRD_FILE_NAME: "EcsReinstall", SET_CRD_FILE_NAME: "EcsReinstallSet"}
TOP_LEVEL_CRD = REPO_ROOT / "crds" / CRD_FILE_NAME
TOP_LEVEL_CRDS = tuple(REPO_ROOT / "crds" / name for name in CRD_FILE_NAMES)
# The namespace and release name the kustomize base uses; the chart's default render is compared against them.
DEFAULT_NAMESPACE = "ecs-reinstall-system"
DEFAULT_RELEASE = "ecs-reinstall-operator"


class ToolError(AssertionError):
    """A real tool (helm, kubectl) exited non-zero; carries its output so the failing test shows why."""


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: str
    stderr: str


def run_tool(argv: list[str], *, env: Mapping[str, str] | None = None, check: bool = True) -> ToolResult:
    proc = subprocess.run(argv, capture_output=True, text=True, env=dict(env) if env else None, timeout=120)
    result = ToolResult(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise ToolError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}\n{proc.stdout}")
    return result


def load_yaml_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass(frozen=True)
class Helm:
    """The real helm binary with a private, writable home."""

    binary: str
    env: Mapping[str, str]

    def run(self, *args: str, check: bool = True) -> ToolResult:
        return run_tool([self.binary, *args], env=self.env, check=check)

    def _value_args(
        self, values: Mapping[str, Any] | None, api_versions: Iterable[str], tmp_path: Path | None
    ) -> list[str]:
        args: list[str] = []
        if values:
            assert tmp_path is not None, "values need a tmp_path to be written to"
            values_file = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
            values_file.write_text(json.dumps(values))  # JSON is YAML: no quoting surprises
            args += ["--values", str(values_file)]
        for api_version in api_versions:
            args += ["--api-versions", api_version]
        return args

    def lint(
        self, values: Mapping[str, Any] | None = None, *, tmp_path: Path | None = None, check: bool = True
    ) -> ToolResult:
        value_args = self._value_args(values, (), tmp_path)
        return self.run("lint", "--strict", str(CHART_DIR), *value_args, check=check)

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        tmp_path: Path | None = None,
        release: str = DEFAULT_RELEASE,
        namespace: str = DEFAULT_NAMESPACE,
        api_versions: Iterable[str] = (),
        include_crds: bool = False,
        check: bool = True,
    ) -> ToolResult:
        args = ["template", release, str(CHART_DIR), "--namespace", namespace]
        if include_crds:
            args.append("--include-crds")
        return self.run(*args, *self._value_args(values, api_versions, tmp_path), check=check)

    def render(self, values: Mapping[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        return load_yaml_documents(self.template(values, **kwargs).stdout)


def find_helm_binary() -> str:
    local_helm = str(REPO_ROOT / ".tools" / "bin" / "helm")
    candidates = [os.environ.get("HELM_BIN"), local_helm, shutil.which("helm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "helm not found: run `make tools` (it unpacks helm into .tools/bin) or set HELM_BIN to a helm binary"
    )


def by_kind(docs: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [doc for doc in docs if doc.get("kind") == kind]


def only(docs: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


def container(deployment: Mapping[str, Any], name: str = "operator") -> Mapping[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    matching = [c for c in containers if c["name"] == name]
    assert len(matching) == 1, (
        f"expected one container named {name!r}, found {[c['name'] for c in containers]}"
    )
    return matching[0]


# --- RBAC, evaluated the way the Kubernetes RBAC authorizer does ---------------------------------------------


@dataclass(frozen=True, order=True)
class ApiCall:
    """One resource request to the API server, in RBAC terms (verb as RBAC names it: list vs watch)."""

    verb: str
    group: str  # "" for the core group
    resource: str
    subresource: str = ""
    namespace: str = ""  # "" for cluster-scoped or all-namespaces requests
    name: str = ""

    @property
    def rbac_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True, order=True)
class Grant:
    """One (group, resource, verb[, resourceName]) a rule allows, in a namespace ("" = cluster-wide)."""

    namespace: str
    group: str
    resource: str
    verb: str
    resource_name: str = ""


def rule_grants(rules: Iterable[Mapping[str, Any]], namespace: str = "") -> set[Grant]:
    grants = set()
    for rule in rules:
        names = rule.get("resourceNames") or [""]
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    for resource_name in names:
                        grants.add(Grant(namespace, group, resource, verb, resource_name))
    return grants


def service_account_grants(docs: Iterable[Mapping[str, Any]], namespace: str, name: str) -> set[Grant]:
    """Everything the ServiceAccount namespace/name may do according to the (Cluster)Roles and bindings in docs."""
    docs = list(docs)
    cluster_roles = {d["metadata"]["name"]: d for d in by_kind(docs, "ClusterRole")}
    roles = {(d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in by_kind(docs, "Role")}
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    grants: set[Grant] = set()
    for binding in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
        if subject not in [dict(s) for s in binding.get("subjects", [])]:
            continue
        binding_namespace = (
            binding["metadata"].get("namespace", "") if binding["kind"] == "RoleBinding" else ""
        )
        ref = binding["roleRef"]
        if ref["kind"] == "ClusterRole":
            role = cluster_roles.get(ref["name"])
        else:
            role = roles.get((binding_namespace, ref["name"]))
        assert role is not None, f"{binding['kind']} {binding['metadata']['name']} refers to a missing {ref}"
        grants |= rule_grants(role.get("rules", []), binding_namespace)
    return grants


def _matches(wanted: str, granted: str) -> bool:
    return granted in ("*", wanted)


def is_allowed(grants: Iterable[Grant], call: ApiCall) -> bool:
    for grant in grants:
        if grant.namespace and grant.namespace != call.namespace:
            continue
        if not (
            _matches(call.group, grant.group)
            and _matches(call.rbac_resource, grant.resource)
            and _matches(call.verb, grant.verb)
        ):
            continue
        # resourceNames never match list/watch of a collection nor create (the name is not known up front).
        if grant.resource_name and grant.resource_name != call.name:
            continue
        return True
    return False
