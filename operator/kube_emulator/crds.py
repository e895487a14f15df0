"""CustomResourceDefinitions: checking them, their status, and the resource types they make the server serve."""

from __future__ import annotations

from typing import Any

from .errors import Cause, field_invalid, field_not_supported, field_required
from .meta import NameRule, now_rfc3339, validate_name
from .resources import COMMON_FIELD_LABELS, ResourceType
from .schema import SchemaError, StructuralSchema

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def _schema_class() -> type[StructuralSchema]:
    return StructuralSchema


def validate_crd(crd: dict[str, Any]) -> list[Cause]:
    """The checks of apiextensions validation that a mistaken manifest most often trips."""
    causes: list[Cause] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [field_required("spec", "")]
    group = spec.get("group") or ""
    names = spec.get("names") or {}
    plural = names.get("plural") or ""
    if not group:
        causes.append(field_required("spec.group", ""))
    elif "." not in group:
        causes.append(field_invalid("spec.group", group, "should be a domain with at least one dot"))
    if not plural:
        causes.append(field_required("spec.names.plural", ""))
    else:
        causes += validate_name(plural, NameRule.LABEL, "spec.names.plural")
    if not names.get("kind"):
        causes.append(field_required("spec.names.kind", ""))
    name = crd.get("metadata", {}).get("name", "")
    if group and plural and name != f"{plural}.{group}":
        causes.append(field_invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        causes.append(field_not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        causes.append(
            field_invalid(
                "spec.versions", versions or [], "must have exactly one version marked as storage version"
            )
        )
        return causes
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if len(storage) != 1:
        causes.append(
            field_invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    seen: set[str] = set()
    for index, version in enumerate(versions):
        path = f"spec.versions[{index}]"
        if not isinstance(version, dict) or not version.get("name"):
            causes.append(field_required(f"{path}.name", ""))
            continue
        if version["name"] in seen:
            causes.append(field_invalid(f"{path}.name", version["name"], "must be unique"))
        seen.add(version["name"])
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            causes.append(field_required(f"{path}.schema.openAPIV3Schema", "schemas are required"))
            continue
        if schema.get("type") != "object":
            causes.append(
                field_invalid(f"{path}.schema.openAPIV3Schema.type", schema.get("type"), "must be object")
            )
        try:
            _schema_class()(schema, field_path=f"{path}.schema.openAPIV3Schema")
        except SchemaError as error:
            causes += error.causes
    return causes


def normalize_crd(crd: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Defaults the apiserver fills in on a CRD and the status that says its names are served."""
    spec = crd["spec"]
    names = spec["names"]
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})
    for version in spec["versions"]:
        version.setdefault("served", True)
        version.setdefault("storage", False)
    metadata = crd["metadata"]
    finalizers = metadata.setdefault("finalizers", [])
    if old is None and CLEANUP_FINALIZER not in finalizers:
        finalizers.append(CLEANUP_FINALIZER)
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    old_status = (old or {}).get("status") or {}
    stored = list(old_status.get("storedVersions") or [])
    if storage not in stored:
        stored.append(storage)
    old_conditions = {c.get("type"): c for c in old_status.get("conditions") or [] if isinstance(c, dict)}
    now = now_rfc3339()

    def condition(kind: str, reason: str, message: str) -> dict[str, Any]:
        previous = old_conditions.get(kind)
        since = previous["lastTransitionTime"] if previous and previous.get("status") == "True" else now
        return {
            "type": kind,
            "status": "True",
            "lastTransitionTime": since,
            "reason": reason,
            "message": message,
        }

    accepted = {
        k: names[k]
        for k in ("plural", "singular", "shortNames", "kind", "listKind", "categories")
        if k in names
    }
    crd["status"] = {
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    }


def mark_terminating(crd: dict[str, Any]) -> None:
    conditions = crd.setdefault("status", {}).setdefault("conditions", [])
    conditions[:] = [c for c in conditions if c.get("type") != "Terminating"]
    conditions.append(
        {
            "type": "Terminating",
            "status": "True",
            "lastTransitionTime": now_rfc3339(),
            "reason": "InstanceDeletionInProgress",
            "message": "CustomResource deletion is in progress",
        }
    )


def resource_types(crd: dict[str, Any]) -> tuple[list[ResourceType], str]:
    """The served versions of a CRD as resource types, and the preferred (storage) version."""
    spec = crd["spec"]
    names = spec["names"]
    group = spec["group"]
    namespaced = spec.get("scope") == "Namespaced"
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    schema_class = _schema_class()
    types = []
    for index, version in enumerate(spec["versions"]):
        if not version.get("served", True):
            continue
        openapi = (version.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"}
        subresources = version.get("subresources") or {}
        selectable = frozenset(
            f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or [] if f.get("jsonPath")
        )
        types.append(
            ResourceType(
                group=group,
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=namespaced,
                singular=names.get("singular") or names["kind"].lower(),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=frozenset(k for k in ("status",) if k in subresources),
                tracks_generation=True,
                custom=True,
                schema=schema_class(openapi, field_path=f"spec.versions[{index}].schema.openAPIV3Schema"),
                status_schema_present="status" in (openapi.get("properties") or {}),
                openapi_schema=openapi,
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()) or None,
                field_labels=COMMON_FIELD_LABELS | selectable,
                deprecated=bool(version.get("deprecated")),
                extra={"crd": crd["metadata"]["name"], "storage_version": storage},
            )
        )
    return types, storage
