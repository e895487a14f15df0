"""OpenAPI v3 documents: /openapi/v3 (the index) and /openapi/v3/{api/v1 | apis/{group}/{version}}.

kubectl reads them to learn that the server validates fields itself (the `fieldValidation` parameter of each
PATCH operation, tagged with its group/version/kind), so it sends `fieldValidation=Strict` instead of
validating on the client; `kubectl explain` reads the component schemas. Custom resources get their CRD schema;
built-in kinds get a schema of their object metadata only (their fields are not validated here).
/openapi/v2 is not served: kubectl only needs it when v3 is missing.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from .discovery import SERVER_VERSION
from .resources import Registry, ResourceType

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"

_STRING = {"type": "string"}
_META_SCHEMAS: dict[str, Any] = {
    OBJECT_META: {
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects "
        "users must create.",
        "type": "object",
        "properties": {
            "name": {"description": "Name must be unique within a namespace.", "type": "string"},
            "generateName": {
                "description": "An optional prefix used to generate a unique name.",
                "type": "string",
            },
            "namespace": {"description": "The namespace of the object.", "type": "string"},
            "uid": {
                "description": "UID is the unique in time and space value for this object.",
                "type": "string",
            },
            "resourceVersion": {
                "description": "An opaque value that represents the internal version of this object.",
                "type": "string",
            },
            "generation": {
                "description": "A sequence number representing a specific generation of the desired state.",
                "type": "integer",
                "format": "int64",
            },
            "creationTimestamp": {
                "description": "The time this object was created.",
                "type": "string",
                "format": "date-time",
            },
            "deletionTimestamp": {
                "description": "The time this object will be deleted.",
                "type": "string",
                "format": "date-time",
            },
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
            "labels": {
                "description": "Map of string keys and values to organize and categorize objects.",
                "type": "object",
                "additionalProperties": {"type": "string", "default": ""},
            },
            "annotations": {
                "description": "Annotations is an unstructured key value map.",
                "type": "object",
                "additionalProperties": {"type": "string", "default": ""},
            },
            "finalizers": {
                "description": "Must be empty before the object is deleted from the registry.",
                "type": "array",
                "items": {"type": "string", "default": ""},
                "x-kubernetes-list-type": "set",
                "x-kubernetes-patch-strategy": "merge",
            },
            "ownerReferences": {
                "description": "List of objects depended by this object.",
                "type": "array",
                "items": {"type": "object", "x-kubernetes-map-type": "atomic"},
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["uid"],
                "x-kubernetes-patch-merge-key": "uid",
                "x-kubernetes-patch-strategy": "merge",
            },
            "managedFields": {"type": "array", "items": {"type": "object"}},
        },
    },
    LIST_META: {
        "type": "object",
        "properties": {
            "resourceVersion": _STRING,
            "continue": _STRING,
            "remainingItemCount": {"type": "integer", "format": "int64"},
        },
    },
    STATUS: {
        "type": "object",
        "properties": {
            "apiVersion": _STRING,
            "kind": _STRING,
            "status": _STRING,
            "message": _STRING,
            "reason": _STRING,
            "code": {"type": "integer", "format": "int32"},
            "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    },
    PATCH: {
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
        "type": "object",
    },
}


def _param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": "string", "uniqueItems": True},
    }


_DRY_RUN = _param("dryRun", "When present, indicates that modifications should not be persisted.")
_FIELD_MANAGER = _param(
    "fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."
)
_FIELD_VALIDATION = _param(
    "fieldValidation",
    "fieldValidation instructs the server on how to handle objects in "
    "the request containing unknown or duplicate fields. Valid values are: Ignore, Warn "
    "(the default) and Strict.",
)
_FORCE = {
    "name": "force",
    "in": "query",
    "description": 'Force is going to "force" Apply requests.',
    "schema": {"type": "boolean", "uniqueItems": True},
}
_LIST_PARAMS = [
    _param("labelSelector", "A selector to restrict the list of returned objects by their labels."),
    _param("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
    {"name": "limit", "in": "query", "schema": {"type": "integer", "uniqueItems": True}},
    _param("continue", "The continue option should be set when retrieving more results from the server."),
    _param(
        "resourceVersion",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    {"name": "watch", "in": "query", "schema": {"type": "boolean", "uniqueItems": True}},
    {"name": "allowWatchBookmarks", "in": "query", "schema": {"type": "boolean", "uniqueItems": True}},
    {"name": "timeoutSeconds", "in": "query", "schema": {"type": "integer", "uniqueItems": True}},
]


def schema_name(rtype: ResourceType) -> str:
    """`com.example.v1.Widget` for CRDs (group reversed, like the apiserver); `io.k8s.api.apps.v1.Deployment`."""
    if rtype.custom:
        return ".".join([*reversed(rtype.group.split(".")), rtype.version, rtype.kind])
    group = (rtype.group or "core").split(".")[0]
    return f"io.k8s.api.{group}.{rtype.version}.{rtype.kind}"


def _gvk(rtype: ResourceType, kind: str | None = None) -> dict[str, str]:
    return {"group": rtype.group, "kind": kind or rtype.kind, "version": rtype.version}


def _object_schema(rtype: ResourceType) -> dict[str, Any]:
    if rtype.openapi_schema is not None:
        schema = copy.deepcopy(rtype.openapi_schema)
    else:
        schema = {
            "description": f"{rtype.kind} (kube-emulator serves its object metadata; other fields are stored as sent).",
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {
        "description": "APIVersion defines the versioned schema of this representation of an object.",
        "type": "string",
    }
    properties["kind"] = {
        "description": "Kind is a string value representing the REST resource this object represents.",
        "type": "string",
    }
    properties["metadata"] = {
        "description": "Standard object's metadata.",
        "allOf": [{"$ref": f"#/components/schemas/{OBJECT_META}"}],
        "default": {},
    }
    schema["x-kubernetes-group-version-kind"] = [_gvk(rtype)]
    return schema


def _ref(name: str) -> dict[str, Any]:
    return {"schema": {"$ref": f"#/components/schemas/{name}"}}


def _operations(rtype: ResourceType, base: str) -> dict[str, Any]:
    """Paths of one resource with the operations kubectl inspects."""
    name = schema_name(rtype)
    list_name = f"{name}List"
    gvk = _gvk(rtype)
    ident = rtype.kind

    def op(
        action: str,
        verb: str,
        *,
        params: list[dict[str, Any]] | None = None,
        body: str | None = None,
        response: str = name,
        kind: str | None = None,
    ) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "description": f"{verb} {ident}",
            "operationId": f"{verb}{ident}",
            "parameters": params or [],
            "responses": {"200": {"description": "OK", "content": {"application/json": _ref(response)}}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": _gvk(rtype, kind) if kind else gvk,
        }
        if body == "object":
            operation["requestBody"] = {"content": {"*/*": _ref(name)}, "required": True}
        elif body == "patch":
            types = [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ]
            operation["requestBody"] = {"content": {t: _ref(PATCH) for t in types}, "required": True}
        return operation

    write = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
    paths: dict[str, Any] = {}
    if rtype.virtual:
        paths[base] = {"post": op("post", "create", params=write, body="object")}
        return paths
    paths[base] = {
        "get": op("list", "list", params=_LIST_PARAMS, response=list_name),
        "post": op("post", "create", params=write, body="object"),
        "delete": op("deletecollection", "deletecollection", params=_LIST_PARAMS, response=STATUS),
    }
    item = f"{base}/{{name}}"
    paths[item] = {
        "get": op("get", "read"),
        "put": op("put", "replace", params=write, body="object"),
        "patch": op("patch", "patch", params=[*write, _FORCE], body="patch"),
        "delete": op("delete", "delete", params=[_DRY_RUN], response=STATUS),
    }
    for sub in sorted(rtype.subresources):
        paths[f"{item}/{sub}"] = {
            "get": op("get", f"read{sub.title()}"),
            "put": op("put", f"replace{sub.title()}", params=write, body="object"),
            "patch": op("patch", f"patch{sub.title()}", params=[*write, _FORCE], body="patch"),
        }
    return paths


def group_version_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = dict(copy.deepcopy(_META_SCHEMAS))
    for rtype in sorted(types, key=lambda t: t.plural):
        base = (
            f"{prefix}/namespaces/{{namespace}}/{rtype.plural}"
            if rtype.namespaced
            else f"{prefix}/{rtype.plural}"
        )
        paths.update(_operations(rtype, base))
        name = schema_name(rtype)
        schemas[name] = _object_schema(rtype)
        schemas[f"{name}List"] = {
            "description": f"{rtype.kind}List is a list of {rtype.kind}",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": _STRING,
                "kind": _STRING,
                "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
                "metadata": {"allOf": [{"$ref": f"#/components/schemas/{LIST_META}"}], "default": {}},
            },
            "x-kubernetes-group-version-kind": [_gvk(rtype, rtype.list_kind)],
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def document_hash(document: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()


def group_version_paths(registry: Registry) -> list[tuple[str, str, str]]:
    """(index path, group, version) of every served group version."""
    result = [("api/v1", "", "v1")]
    for group, versions, _preferred in registry.groups():
        result += [(f"apis/{group}/{version}", group, version) for version in versions]
    return result


class OpenApiCache:
    """Documents are rebuilt only when the served resources change (CRDs come and go)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._generation = -1
        self._documents: dict[str, tuple[bytes, str]] = {}

    def _refresh(self) -> None:
        if self._generation == self._registry.generation:
            return
        self._documents = {}
        for path, group, version in group_version_paths(self._registry):
            document = group_version_document(self._registry, group, version)
            if document is not None:
                raw = json.dumps(document, separators=(",", ":")).encode()
                self._documents[path] = (raw, document_hash(document))
        self._generation = self._registry.generation

    def index(self) -> dict[str, Any]:
        self._refresh()
        return {
            "paths": {
                path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
                for path, (_raw, digest) in self._documents.items()
            }
        }

    def document(self, path: str) -> tuple[bytes, str] | None:
        self._refresh()
        return self._documents.get(path)
