"""Field ownership (`metadata.managedFields`) and server-side apply.

A field path is a tuple of FieldsV1 elements: `f:<name>` for a map field, `k:<json>` for a list-map item,
`v:<json>` for a set member and `.` for a list item itself. Every write records which manager set which
leaves; an apply (`application/apply-patch+yaml`) owns exactly the fields of its configuration, removes the
ones it stopped applying (unless another manager owns them too) and conflicts with other owners of the fields
whose values it changes, unless forced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .listtypes import ListKind, ListRules, item_key

Path = tuple[str, ...]
Leaves = dict[Path, Any]

_TRACKED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")
_ITEM = "."


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def leaves(obj: dict[str, Any], rules: ListRules, *, include_status: bool = True) -> Leaves:
    """Every owned leaf of an object, with its value (identity fields and system metadata excluded)."""
    found: Leaves = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            if isinstance(value, dict):
                for meta_key in _TRACKED_METADATA:
                    if meta_key in value:
                        _walk(
                            value[meta_key],
                            ("metadata", meta_key),
                            ("f:metadata", f"f:{meta_key}"),
                            rules,
                            found,
                        )
            continue
        if key == "status" and not include_status:
            continue
        _walk(value, (key,), (f"f:{key}",), rules, found)
    return found


def _walk(value: Any, names: tuple[str, ...], path: Path, rules: ListRules, found: Leaves) -> None:
    if isinstance(value, dict) and value and not rules.is_atomic_map(names):
        for key, child in value.items():
            _walk(child, (*names, key), (*path, f"f:{key}"), rules, found)
        return
    if isinstance(value, list):
        rule = rules.list_rule(names)
        if rule.kind is ListKind.MAP and all(item_key(item, rule.keys) is not None for item in value):
            for item in value:
                key = {k: item[k] for k in rule.keys if k in item}
                item_path = (*path, f"k:{_compact(key)}")
                found[(*item_path, _ITEM)] = True
                for child_key, child in item.items():
                    _walk(child, (*names, "[]", child_key), (*item_path, f"f:{child_key}"), rules, found)
            return
        if rule.kind is ListKind.SET and all(not isinstance(v, dict | list) for v in value):
            for member in value:
                found[(*path, f"v:{_compact(member)}")] = member
            return
    found[path] = value


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    return root


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for element, child in tree.items():
        path = (*prefix, element)
        if isinstance(child, dict) and child:
            paths |= from_fields_v1(child, path)
        else:
            paths.add(path)
    return paths


def describe(path: Path) -> str:
    """`.spec.containers[name="app"].image`: a path the way apply conflicts print it."""
    text = ""
    for element in path:
        kind, _, rest = element.partition(":")
        if element == _ITEM:
            continue
        if kind == "f":
            text += f".{rest}"
        elif kind == "k":
            pairs = json.loads(rest)
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in pairs.items()) + "]"
        elif kind == "v":
            text += f"[={rest}]"
    return text


@dataclass(slots=True)
class ManagerEntry:
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    time: str
    subresource: str = ""
    paths: set[Path] = field(default_factory=set)

    def same_owner(self, manager: str, operation: str, subresource: str) -> bool:
        return (self.manager, self.operation, self.subresource) == (manager, operation, subresource)

    def render(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(self.paths),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def parse_entries(metadata: dict[str, Any]) -> list[ManagerEntry]:
    entries = []
    for raw in metadata.get("managedFields") or ():
        if not isinstance(raw, dict):
            continue
        entries.append(
            ManagerEntry(
                manager=str(raw.get("manager", "")),
                operation=str(raw.get("operation", "Update")),
                api_version=str(raw.get("apiVersion", "")),
                time=str(raw.get("time", "")),
                subresource=str(raw.get("subresource", "")),
                paths=from_fields_v1(raw.get("fieldsV1") or {}),
            )
        )
    return entries


def render_entries(entries: list[ManagerEntry]) -> list[dict[str, Any]]:
    return [entry.render() for entry in entries if entry.paths]


def _entry(
    entries: list[ManagerEntry], manager: str, operation: str, subresource: str, api_version: str, now: str
) -> ManagerEntry:
    for entry in entries:
        if entry.same_owner(manager, operation, subresource):
            entry.api_version, entry.time = api_version, now
            return entry
    entry = ManagerEntry(manager, operation, api_version, now, subresource)
    entries.append(entry)
    return entry


def record_update(
    entries: list[ManagerEntry],
    *,
    manager: str,
    subresource: str,
    api_version: str,
    now: str,
    before: Leaves,
    after: Leaves,
) -> list[ManagerEntry]:
    """Ownership after a non-apply write: the writer takes the fields it changed, nobody keeps removed ones."""
    changed = {path for path, value in after.items() if path not in before or before[path] != value}
    removed = before.keys() - after.keys()
    if not changed and not removed:
        return entries
    for entry in entries:
        entry.paths -= changed
        entry.paths -= removed
    if changed:
        _entry(entries, manager, "Update", subresource, api_version, now).paths |= changed
    return [entry for entry in entries if entry.paths]


@dataclass(frozen=True, slots=True)
class Conflict:
    manager: str
    api_version: str
    path: Path


def apply_conflicts(
    entries: list[ManagerEntry], *, manager: str, subresource: str, live: Leaves, applied: Leaves
) -> list[Conflict]:
    """Fields the apply would change that another manager owns."""
    conflicts = []
    for path, value in applied.items():
        if path not in live or live[path] == value:
            continue
        for entry in entries:
            if entry.same_owner(manager, "Apply", subresource) or entry.subresource != subresource:
                continue
            if path in entry.paths:
                conflicts.append(Conflict(entry.manager, entry.api_version, path))
    return conflicts


def apply_configuration(
    live: dict[str, Any],
    config: dict[str, Any],
    entries: list[ManagerEntry],
    *,
    manager: str,
    subresource: str,
    api_version: str,
    now: str,
    applied: Leaves,
    force: bool,
    conflicts: list[Conflict],
    rules: ListRules,
) -> tuple[dict[str, Any], list[ManagerEntry]]:
    """Merge an applied configuration into (a copy of) the live object; return it and the new ownership."""
    if force:
        taken = {c.path for c in conflicts}
        for entry in entries:
            if not entry.same_owner(manager, "Apply", subresource):
                entry.paths -= taken
    mine = _entry(entries, manager, "Apply", subresource, api_version, now)
    others: set[Path] = set()
    for entry in entries:
        if entry is not mine:
            others |= entry.paths
    dropped = mine.paths - applied.keys() - others
    result = json.loads(json.dumps(live))
    # Whole list items first (outermost first), then leaves (innermost first). An item another manager still
    # has fields in stays, and so do the key fields of every item that stays.
    for path in sorted(dropped, key=lambda p: (p[-1] != _ITEM, len(p) if p[-1] == _ITEM else -len(p))):
        if path[-1] == _ITEM:
            item = path[:-1]
            if any(owned[: len(item)] == item for owned in others):
                continue
        elif _is_key_field(path):
            continue
        _remove(result, path, rules)
    _merge_config(result, config, rules, ())
    mine.paths = set(applied)
    return result, [entry for entry in entries if entry.paths]


def _is_key_field(path: Path) -> bool:
    """Whether the path is a key field of a list-map item (`...k:{"name":"a"}, f:name`)."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    return path[-1][2:] in json.loads(path[-2][2:])


def _merge_config(
    target: dict[str, Any], config: dict[str, Any], rules: ListRules, names: tuple[str, ...]
) -> None:
    for key, value in config.items():
        child_names = (*names, key)
        current = target.get(key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict) and not rules.is_atomic_map(child_names):
            _merge_config(current, value, rules, child_names)
        elif isinstance(value, list) and isinstance(current, list):
            target[key] = _merge_list(current, value, rules, child_names)
        else:
            target[key] = json.loads(json.dumps(value))


def _merge_list(
    current: list[Any], applied: list[Any], rules: ListRules, names: tuple[str, ...]
) -> list[Any]:
    rule = rules.list_rule(names)
    if rule.kind is ListKind.SET:
        return list(current) + [v for v in applied if v not in current]
    if rule.kind is ListKind.MAP:
        merged = list(current)
        for item in applied:
            key = item_key(item, rule.keys)
            index = next((i for i, cur in enumerate(merged) if item_key(cur, rule.keys) == key), None)
            if index is None or not isinstance(item, dict):
                merged.append(json.loads(json.dumps(item)))
            else:
                _merge_config(merged[index], item, rules, (*names, "[]"))
        return merged
    return json.loads(json.dumps(applied))


def _remove(obj: dict[str, Any], path: Path, rules: ListRules) -> None:
    """Remove one owned path from an object and the maps or list items that only it kept alive."""
    trail: list[tuple[Any, Any]] = []  # (container, key-or-index) for each step taken
    node: Any = obj
    for element in path:
        kind, _, rest = element.partition(":")
        if element == _ITEM:
            break
        if kind == "f":
            if not isinstance(node, dict) or rest not in node:
                return
            trail.append((node, rest))
            node = node[rest]
        elif kind == "k":
            if not isinstance(node, list):
                return
            wanted = json.loads(rest)
            index = next(
                (
                    i
                    for i, item in enumerate(node)
                    if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items())
                ),
                None,
            )
            if index is None:
                return
            trail.append((node, index))
            node = node[index]
        elif kind == "v":
            if isinstance(node, list):
                member = json.loads(rest)
                if member in node:
                    node.remove(member)
            _prune(trail)
            return
    if not trail:
        return
    container, key = trail.pop()
    del container[key]
    _prune(trail)


def _prune(trail: list[tuple[Any, Any]]) -> None:
    while trail:
        container, key = trail.pop()
        value = container[key]
        if isinstance(value, dict) and not value:
            del container[key]
        else:
            return
