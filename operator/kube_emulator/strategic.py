"""Strategic merge patch (`application/strategic-merge-patch+json`) for built-in kinds.

Like a JSON merge patch, except that lists with a merge key merge item by item, primitive lists declared as
sets merge as unions, and the directives kubectl emits are honoured: `$patch: replace|delete|merge`,
`$retainKeys`, `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>`.
The merge keys come from `listtypes.BuiltinListRules`, an approximation of the Go struct tags.
"""

from __future__ import annotations

import copy
from typing import Any

from .listtypes import ListKind, ListRules, item_key

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


class StrategicPatchError(ValueError):
    """The patch cannot be applied (the apiserver answers 422 or 400)."""


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any], rules: ListRules) -> dict[str, Any]:
    """Apply `patch` to a copy of `target` and return it."""
    if not isinstance(patch, dict):
        raise StrategicPatchError("a strategic merge patch must be a JSON object")
    result = _merge_map(copy.deepcopy(target), patch, rules, ())
    return result if result is not None else {}


def _strip(value: Any) -> Any:
    """A patch value without its directives, for fields the target does not have yet."""
    if isinstance(value, dict):
        if value.get(_PATCH) == "delete":
            return None
        return {
            k: _strip(v)
            for k, v in value.items()
            if not k.startswith("$") and not (isinstance(v, dict) and v.get(_PATCH) == "delete")
        }
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and v.get(_PATCH) == "delete")]
    return value


def _merge_map(
    target: dict[str, Any], patch: dict[str, Any], rules: ListRules, path: tuple[str, ...]
) -> dict[str, Any] | None:
    directive = patch.get(_PATCH)
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != _PATCH})
    if directive not in (None, "merge"):
        raise StrategicPatchError(f"unknown patch directive {directive!r} at {_dotted(path)}")
    retain = patch.get(_RETAIN_KEYS)
    if retain is not None:
        keep = set(retain) | {k for k in patch if not k.startswith("$")}
        for key in list(target):
            if key not in keep:
                del target[key]
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (_PATCH, _RETAIN_KEYS):
            continue
        if key.startswith(_SET_ORDER):
            orders[key[len(_SET_ORDER) :]] = value
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE) :]
            if isinstance(target.get(field), list):
                target[field] = [v for v in target[field] if v not in value]
            continue
        if value is None:
            target.pop(key, None)
            continue
        child_path = (*path, key)
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and not rules.is_atomic_map(child_path):
            merged = _merge_map(current, value, rules, child_path)
            if merged is None:
                target.pop(key, None)
            else:
                target[key] = merged
        elif isinstance(value, list) and isinstance(current, list):
            target[key] = _merge_list(current, value, rules, child_path)
        elif isinstance(value, dict) and value.get(_PATCH) == "delete":
            target.pop(key, None)
        else:
            target[key] = _strip(value)
    for field, order in orders.items():
        if isinstance(target.get(field), list):
            target[field] = _reorder(target[field], order, rules, (*path, field))
    return target


def _merge_list(target: list[Any], patch: list[Any], rules: ListRules, path: tuple[str, ...]) -> list[Any]:
    rule = rules.list_rule(path)
    if any(isinstance(item, dict) and item.get(_PATCH) == "replace" for item in patch):
        return [_strip(item) for item in patch if not (isinstance(item, dict) and _PATCH in item)]
    if rule.kind is ListKind.SET:
        return _merge_primitives(target, patch)
    if rule.kind is not ListKind.MAP:
        return _strip(patch)
    merged = list(target)
    item_path = (*path, "[]")
    for item in patch:
        key = item_key(item, rule.keys)
        if key is None:
            raise StrategicPatchError(f"{_dotted(path)}: map list item {item!r} has no merge key {rule.keys}")
        index = next((i for i, cur in enumerate(merged) if item_key(cur, rule.keys) == key), None)
        if item.get(_PATCH) == "delete":
            if index is not None:
                del merged[index]
            continue
        if index is None:
            merged.append(_strip(item))
        else:
            result = _merge_map(merged[index], item, rules, item_path)
            if result is None:
                del merged[index]
            else:
                merged[index] = result
    return merged


def _merge_primitives(target: list[Any], patch: list[Any]) -> list[Any]:
    """A union in the apiserver's order (strategicpatch mergeSlice, normalizeElementOrder, mergeSortedSlice): the
    patch's items in patch order and the server's others in server order are merged, an item of the server's
    coming first only when both it and the patch's next item are on the server and it is earlier there; so new
    items come before the server's remaining ones (['a'] patched with ['b'] gives ['b', 'a'])."""
    patch_items: list[Any] = []
    for value in patch:
        if value not in patch_items:
            patch_items.append(value)
    server_only: list[Any] = []
    for value in target:
        if value not in patch_items and value not in server_only:
            server_only.append(value)

    def server_index(value: Any) -> int:
        return target.index(value) if value in target else -1

    merged: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if j >= len(patch_items):
            merged.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            merged.append(patch_items[j])
            j += 1
        else:
            left, right = server_index(server_only[i]), server_index(patch_items[j])
            if left >= 0 and right >= 0 and left < right:
                merged.append(server_only[i])
                i += 1
            else:
                merged.append(patch_items[j])
                j += 1
    return merged


def _reorder(items: list[Any], order: list[Any], rules: ListRules, path: tuple[str, ...]) -> list[Any]:
    """Put the items named by `$setElementOrder` in that order; items the patch did not name keep their place
    relative to each other and follow."""
    rule = rules.list_rule(path)

    def identity(value: Any) -> Any:
        return item_key(value, rule.keys) if rule.kind is ListKind.MAP else repr(value)

    rank = {identity(v): i for i, v in enumerate(order)}
    named = sorted((v for v in items if identity(v) in rank), key=lambda v: rank[identity(v)])
    others = [v for v in items if identity(v) not in rank]
    return named + others


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(p for p in path if p != "[]") or "<root>"
