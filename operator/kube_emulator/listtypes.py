"""How a list inside an object merges: by key (a list-map), as a set, or atomically (replaced as a whole).

Strategic merge patch and server-side apply both need this. Built-in kinds carry it in Go struct tags
(`patchMergeKey`, `listType`), approximated here by a table of the fields that install manifests use;
custom resources carry it in their schema (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`).
A path is the tuple of field names from the object's root, list items contributing "[]".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class ListKind(StrEnum):
    MAP = "map"
    SET = "set"
    ATOMIC = "atomic"


@dataclass(frozen=True, slots=True)
class ListRule:
    kind: ListKind
    keys: tuple[str, ...] = ()


ATOMIC = ListRule(ListKind.ATOMIC)
SET = ListRule(ListKind.SET)


class ListRules(Protocol):
    def list_rule(self, path: tuple[str, ...]) -> ListRule: ...

    def is_atomic_map(self, path: tuple[str, ...]) -> bool: ...


_BY_NAME = ListRule(ListKind.MAP, ("name",))

# Field name -> rule, for lists whose meaning does not depend on where they are.
_BUILTIN_LISTS: dict[str, ListRule] = {
    "containers": _BY_NAME,
    "initContainers": _BY_NAME,
    "ephemeralContainers": _BY_NAME,
    "env": _BY_NAME,
    "volumes": _BY_NAME,
    "imagePullSecrets": _BY_NAME,
    "resourceClaims": _BY_NAME,
    "schedulingGates": _BY_NAME,
    "webhooks": _BY_NAME,
    "versions": _BY_NAME,  # CustomResourceDefinition spec.versions
    "volumeMounts": ListRule(ListKind.MAP, ("mountPath",)),
    "volumeDevices": ListRule(ListKind.MAP, ("devicePath",)),
    "hostAliases": ListRule(ListKind.MAP, ("ip",)),
    "ownerReferences": ListRule(ListKind.MAP, ("uid",)),
    "conditions": ListRule(ListKind.MAP, ("type",)),
    "topologySpreadConstraints": ListRule(ListKind.MAP, ("topologyKey",)),
    "finalizers": SET,
}


class BuiltinListRules:
    """Merge keys of the built-in kinds, after their Go types."""

    def list_rule(self, path: tuple[str, ...]) -> ListRule:
        if not path:
            return ATOMIC
        name = path[-1]
        if name == "ports":
            # container ports merge by containerPort, service ports by port
            inside_container = any(p in ("containers", "initContainers", "ephemeralContainers") for p in path)
            return ListRule(ListKind.MAP, ("containerPort",) if inside_container else ("port",))
        if name == "finalizers" and path != ("metadata", "finalizers"):
            return ATOMIC  # e.g. Namespace spec.finalizers
        return _BUILTIN_LISTS.get(name, ATOMIC)

    def is_atomic_map(self, path: tuple[str, ...]) -> bool:
        return False


_METADATA_RULES = BuiltinListRules()


class SchemaListRules:
    """List and map semantics read from a custom resource's OpenAPI v3 schema."""

    def __init__(self, schema: dict[str, Any] | None) -> None:
        self._schema = schema or {}

    def _node(self, path: tuple[str, ...]) -> dict[str, Any] | None:
        node: dict[str, Any] | None = self._schema
        for part in path:
            if node is None:
                return None
            if part == "[]":
                node = node.get("items")
            else:
                properties = node.get("properties") or {}
                if part in properties:
                    node = properties[part]
                elif isinstance(node.get("additionalProperties"), dict):
                    node = node["additionalProperties"]
                else:
                    return None
        return node

    def list_rule(self, path: tuple[str, ...]) -> ListRule:
        if path and path[0] == "metadata":
            return _METADATA_RULES.list_rule(path)
        node = self._node(path)
        if not node:
            return ATOMIC
        kind = node.get("x-kubernetes-list-type")
        if kind == "map":
            return ListRule(ListKind.MAP, tuple(node.get("x-kubernetes-list-map-keys") or ()))
        if kind == "set":
            return SET
        return ATOMIC

    def is_atomic_map(self, path: tuple[str, ...]) -> bool:
        node = self._node(path)
        return bool(node) and node.get("x-kubernetes-map-type") == "atomic"


def item_key(item: Any, keys: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The identity of a list-map item (None when it is not a map or lacks every key)."""
    if not isinstance(item, dict) or not any(k in item for k in keys):
        return None
    return tuple(_hashable(item.get(k)) for k in keys)


def _hashable(value: Any) -> Any:
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, sort_keys=True)
    return value
