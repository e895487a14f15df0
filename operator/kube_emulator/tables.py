"""``meta.k8s.io/v1`` Tables: what ``kubectl get`` asks for (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``).

For custom resources the columns come from the CRD version's ``additionalPrinterColumns`` (apiextensions-apiserver
``tableconvertor``): Name first, then each column's JSONPath evaluated on the object; with no columns, Name and
Age. Cells are typed as the apiserver types them: ``string`` columns print the value (objects and lists as
compact JSON), ``integer``/``number``/``boolean`` keep JSON values, and ``date`` columns are turned into an age
such as ``5m3s`` by the server itself (``ConvertToHumanReadableDateType``), so kubectl prints them as they come.
Built-in kinds get the apiserver's printers for the kinds this project uses (Secret, ConfigMap, Namespace, Event)
and its default convertor (Name, Created At) otherwise.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import bad_request, go_float

__all__ = [
    "JsonPath",
    "Printer",
    "build_table",
    "builtin_printer",
    "crd_printer",
    "human_duration",
]

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources may "
    "allow a client to request the generation of an appropriate name automatically. Name is primarily intended "
    "for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATION_TIMESTAMP_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It "
    "is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More "
    "info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")

Cells = Callable[[Mapping[str, Any], datetime], list[Any]]


def _column(
    name: str, kind: str = "string", description: str = "", *, fmt: str = "", priority: int = 0
) -> dict[str, Any]:
    return {"name": name, "type": kind, "format": fmt, "description": description, "priority": priority}


_NAME_COLUMN = _column("Name", "string", NAME_DESCRIPTION, fmt="name")
_AGE_COLUMN_DEFINITION = {
    "name": "Age",
    "type": "date",
    "description": CREATION_TIMESTAMP_DESCRIPTION,
    "jsonPath": ".metadata.creationTimestamp",
}


# --- ages -----------------------------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """duration.HumanDuration: ``45s``, ``2m``, ``5m3s``, ``3h``, ``7h10m``, ``2d3h``, ``40d``, ``3y``."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(text)
    return parsed


def _age(timestamp: Any, now: datetime) -> str:
    """ConvertToHumanReadableDateType of a timestamp string: ``<unknown>`` when empty, ``<invalid>`` when bad."""
    if timestamp in (None, "", "null"):
        return "<unknown>"
    if not isinstance(timestamp, str):
        return "<invalid>"
    try:
        return human_duration((now - _parse_time(timestamp)).total_seconds())
    except ValueError:
        return "<invalid>"


# --- JSONPath (the subset of client-go's util/jsonpath that printer columns use) -------------------------------------


class JsonPathError(ValueError):
    """A column whose jsonPath does not parse (the apiserver refuses such a CRD)."""


@dataclass(frozen=True)
class _Step:
    kind: str  # field, index, slice, wildcard, filter, recursive
    name: str = ""
    index: int = 0
    start: int | None = None
    stop: int | None = None
    filter_path: tuple[_Step, ...] = ()
    filter_op: str = ""
    filter_value: Any = None


_FILTER = re.compile(r"^\?\(\s*@((?:\.[^\s=!<>)]+|\[[^\]]+\])*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*\)$")


class JsonPath:
    """A compiled ``{.a.b[0].c}``-style path, evaluated with missing keys allowed (no result, not an error)."""

    def __init__(self, expression: str):
        text = expression.strip()
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1].strip()
        if not text:
            raise JsonPathError(f"unrecognized column definition {json.dumps(expression)}")
        self.expression = expression
        try:
            self.steps = _parse_steps(text)
        except (ValueError, IndexError):
            raise JsonPathError(f"unrecognized column definition {json.dumps(expression)}") from None

    def find(self, data: Any) -> list[Any]:
        """All results, in order (an empty list when the path leads nowhere)."""
        return _evaluate(self.steps, [data])


def _parse_steps(text: str) -> tuple[_Step, ...]:
    steps: list[_Step] = []
    position = 0
    if text.startswith("$"):
        position = 1
    if text.startswith("@"):
        position = 1
    while position < len(text):
        char = text[position]
        if text.startswith("..", position):
            position += 2
            name, position = _read_name(text, position)
            steps.append(_Step("recursive", name=name))
        elif char == ".":
            position += 1
            if position < len(text) and text[position] == "*":
                steps.append(_Step("wildcard"))
                position += 1
                continue
            name, position = _read_name(text, position)
            if not name:
                raise ValueError(text)
            steps.append(_Step("field", name=name))
        elif char == "[":
            end = _closing_bracket(text, position)
            steps.append(_parse_bracket(text[position + 1 : end].strip()))
            position = end + 1
        else:
            name, position = _read_name(text, position)
            if not name:
                raise ValueError(text)
            steps.append(_Step("field", name=name))
    return tuple(steps)


def _read_name(text: str, position: int) -> tuple[str, int]:
    start = position
    while position < len(text) and text[position] not in ".[":
        position += 1
    return text[start:position].strip(), position


def _closing_bracket(text: str, start: int) -> int:
    depth = 0
    quote = ""
    for position in range(start, len(text)):
        char = text[position]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return position
    raise ValueError(text)


def _parse_bracket(inner: str) -> _Step:
    if inner == "*":
        return _Step("wildcard")
    if inner.startswith("?"):
        match = _FILTER.match(inner)
        if not match:
            raise ValueError(inner)
        path_text, operator, literal = match.group(1), match.group(2) or "", match.group(3)
        value = _literal(literal) if operator else None
        return _Step("filter", filter_path=_parse_steps(path_text), filter_op=operator, filter_value=value)
    if inner[:1] in "'\"" and inner[-1:] == inner[:1]:
        return _Step("field", name=inner[1:-1])
    if ":" in inner:
        parts = [part.strip() for part in inner.split(":")]
        start = int(parts[0]) if parts[0] else None
        stop = int(parts[1]) if len(parts) > 1 and parts[1] else None
        return _Step("slice", start=start, stop=stop)
    return _Step("index", index=int(inner))


def _literal(text: str) -> Any:
    text = text.strip()
    if text[:1] in "'\"" and text[-1:] == text[:1]:
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return float(text)


def _evaluate(steps: Sequence[_Step], current: list[Any]) -> list[Any]:
    for step in steps:
        following: list[Any] = []
        for value in current:
            following.extend(_apply_step(step, value))
        current = following
    return current


def _apply_step(step: _Step, value: Any) -> list[Any]:
    if step.kind == "field":
        return [value[step.name]] if isinstance(value, dict) and step.name in value else []
    if step.kind == "index":
        if isinstance(value, list) and -len(value) <= step.index < len(value):
            return [value[step.index]]
        return []
    if step.kind == "slice":
        return list(value[step.start : step.stop]) if isinstance(value, list) else []
    if step.kind == "wildcard":
        if isinstance(value, dict):
            return [value[key] for key in sorted(value)]
        return list(value) if isinstance(value, list) else []
    if step.kind == "recursive":
        return _recursive(value, step.name)
    if step.kind == "filter":
        items = value if isinstance(value, list) else []
        return [item for item in items if _filter_matches(step, item)]
    return []


def _recursive(value: Any, name: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(value, dict):
        if name in value:
            found.append(value[name])
        for key in sorted(value):
            found.extend(_recursive(value[key], name))
    elif isinstance(value, list):
        for item in value:
            found.extend(_recursive(item, name))
    return found


def _filter_matches(step: _Step, item: Any) -> bool:
    results = _evaluate(step.filter_path, [item])
    if not step.filter_op:
        return bool(results)
    if not results:
        return False
    left, right = results[0], step.filter_value
    if step.filter_op in ("==", "!="):
        equal = left == right and isinstance(left, bool) == isinstance(right, bool)
        return equal if step.filter_op == "==" else not equal
    try:
        if step.filter_op == "<":
            return bool(left < right)
        if step.filter_op == ">":
            return bool(left > right)
        if step.filter_op == "<=":
            return bool(left <= right)
        return bool(left >= right)
    except TypeError:
        return False


# --- cells ---------------------------------------------------------------------------------------------------------


def _go_json(value: Any) -> str:
    """Go's json.Marshal: compact, map keys sorted, <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _printed(value: Any) -> str | None:
    """What the jsonpath printer writes for a value in a string column."""
    if value is None:
        return None
    if isinstance(value, dict | list):
        return _go_json(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    return str(value)


def _typed_cell(column_type: str, value: Any, now: datetime) -> Any:
    """cellForJSONValue."""
    if value is None:
        return None
    if column_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        return None
    if column_type == "number":
        if isinstance(value, bool):
            return None
        return float(value) if isinstance(value, int | float) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "string":
        return value if isinstance(value, str) else None
    if column_type == "date":
        return _age(value, now) if isinstance(value, str) else None
    return None


# --- printers ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Printer:
    """The column definitions of a table and how to compute one row's cells."""

    columns: tuple[dict[str, Any], ...]
    cells: Cells


@functools.lru_cache(maxsize=256)
def _crd_printer_cached(columns_json: str) -> Printer:
    columns = json.loads(columns_json) or [_AGE_COLUMN_DEFINITION]
    definitions = [_NAME_COLUMN]
    paths: list[tuple[str, JsonPath]] = []
    for column in columns:
        json_path = str(column.get("jsonPath") or "")
        paths.append((str(column.get("type") or "string"), JsonPath(json_path)))
        description = column.get("description") or (
            f"Custom resource definition column (in JSONPath format): {json_path}"
        )
        definitions.append(
            _column(
                str(column.get("name") or ""),
                str(column.get("type") or "string"),
                description,
                fmt=str(column.get("format") or ""),
                priority=int(column.get("priority") or 0),
            )
        )

    def cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
        row: list[Any] = [(obj.get("metadata") or {}).get("name", "")]
        for column_type, path in paths:
            results = path.find(obj)
            if not results:
                row.append(None)
            elif column_type == "string":
                row.append(_printed(results[0]))
            else:
                row.append(_typed_cell(column_type, results[0], now))
        return row

    return Printer(tuple(definitions), cells)


def crd_printer(additional_printer_columns: Sequence[Mapping[str, Any]] | None) -> Printer:
    """The table of a CRD version; raises `JsonPathError` for a column whose jsonPath does not parse."""
    return _crd_printer_cached(json.dumps(list(additional_printer_columns or []), sort_keys=True))


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _creation_age(obj: Mapping[str, Any], now: datetime) -> str:
    return _age((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _event_times(obj: Mapping[str, Any], now: datetime) -> tuple[str, str, int]:
    """printEvent: (last seen, first seen, count), the series taking precedence as in the apiserver."""
    first = obj.get("firstTimestamp") or obj.get("eventTime")
    first_seen = _age(first, now)
    last_seen = _age(obj["lastTimestamp"], now) if obj.get("lastTimestamp") else first_seen
    count = int(obj.get("count") or 0)
    series = obj.get("series")
    if isinstance(series, dict):
        last_seen = _age(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1
    return last_seen, first_seen, count


def _event_source(obj: Mapping[str, Any]) -> str:
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingComponent") or ""
    host = source.get("host") or obj.get("reportingInstance") or ""
    if not component:
        return ""
    return f"{component}, {host}" if host else str(component)


def _event_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    last_seen, first_seen, count = _event_times(obj, now)
    involved = obj.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [
        last_seen,
        obj.get("type", ""),
        obj.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        _event_source(obj),
        str(obj.get("message", "")).strip(),
        first_seen,
        count,
        _name(obj),
    ]


_BUILTIN_PRINTERS: dict[str, Printer] = {
    "Secret": Printer(
        (
            _NAME_COLUMN,
            _column("Type", description="Used to facilitate programmatic handling of secret data."),
            _column("Data", description="Data contains the secret data."),
            _column("Age", description=CREATION_TIMESTAMP_DESCRIPTION),
        ),
        lambda obj, now: [
            _name(obj),
            obj.get("type", ""),
            len(obj.get("data") or {}),
            _creation_age(obj, now),
        ],
    ),
    "ConfigMap": Printer(
        (
            _NAME_COLUMN,
            _column("Data", description="Data contains the configuration data."),
            _column("Age", description=CREATION_TIMESTAMP_DESCRIPTION),
        ),
        lambda obj, now: [
            _name(obj),
            len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
            _creation_age(obj, now),
        ],
    ),
    "Namespace": Printer(
        (
            _NAME_COLUMN,
            _column("Status", description="The status of the namespace"),
            _column("Age", description=CREATION_TIMESTAMP_DESCRIPTION),
        ),
        lambda obj, now: [_name(obj), (obj.get("status") or {}).get("phase", ""), _creation_age(obj, now)],
    ),
    "Event": Printer(
        (
            _column(
                "Last Seen",
                description="The time at which the most recent occurrence of this event was recorded.",
            ),
            _column(
                "Type",
                description="Type of this event (Normal, Warning), new types could be added in the future",
            ),
            _column(
                "Reason",
                description="This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            _column("Object", description="The object that this event is about."),
            _column(
                "Subobject",
                priority=1,
                description="If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
            ),
            _column(
                "Source",
                priority=1,
                description="The component reporting this event. Should be a short machine understandable string.",
            ),
            _column("Message", description="A human-readable description of the status of this operation."),
            _column(
                "First Seen",
                priority=1,
                description="The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            ),
            _column("Count", priority=1, description="The number of times this event has occurred."),
            _column("Name", priority=1, fmt="name", description=NAME_DESCRIPTION),
        ),
        _event_cells,
    ),
}

_DEFAULT_PRINTER = Printer(
    (_NAME_COLUMN, _column("Created At", "date", CREATION_TIMESTAMP_DESCRIPTION)),
    lambda obj, now: [_name(obj), _rfc3339((obj.get("metadata") or {}).get("creationTimestamp"))],
)


def _rfc3339(timestamp: Any) -> str:
    """The default convertor's Created At cell: the timestamp in UTC, RFC 3339 (Go's zero time when unset)."""
    if not isinstance(timestamp, str) or not timestamp:
        return "0001-01-01T00:00:00Z"
    try:
        return _parse_time(timestamp).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return timestamp


def builtin_printer(kind: str) -> Printer:
    """The apiserver's table for a built-in kind: its printer for Secret, ConfigMap, Namespace and Event, else the
    default convertor (Name, Created At) as for CustomResourceDefinitions."""
    return _BUILTIN_PRINTERS.get(kind, _DEFAULT_PRINTER)


# --- the table -------------------------------------------------------------------------------------------------------


def build_table(
    objects: Sequence[Mapping[str, Any]],
    columns: Sequence[Mapping[str, Any]] | None = None,
    *,
    include_object: str = "Metadata",
    list_meta: Mapping[str, Any] | None = None,
    printer: Printer | None = None,
    no_headers: bool = False,
    now: datetime | None = None,
    group_version: str = "meta.k8s.io/v1",
) -> dict[str, Any]:
    """A Table of `objects` (one for a get, all items for a list).

    `columns` are a CRD version's additionalPrinterColumns (None or empty: Name and Age); `printer` overrides them
    (see `builtin_printer`). `include_object` is the request's ``includeObject`` (None, Metadata or Object; an
    unknown value is the apiserver's 400). `list_meta` is the list's metadata (resourceVersion, continue,
    remainingItemCount) or, for a single object, ``{"resourceVersion": ...}``. `no_headers` leaves out the column
    definitions (``TableOptions.noHeaders``).
    """
    if include_object not in INCLUDE_OBJECT_VALUES and include_object != "":
        raise bad_request(f'unrecognized includeObject value: "{include_object}"')
    include_object = include_object or "Metadata"
    printer = printer or crd_printer(columns)
    moment = now or datetime.now(UTC)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer.cells(obj, moment)}
        if include_object == "Metadata":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": group_version,
                "metadata": obj.get("metadata") or {},
            }
        elif include_object == "Object":
            row["object"] = obj
        else:
            row["object"] = None
        rows.append(row)
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": group_version,
        "metadata": {key: value for key, value in (list_meta or {}).items() if value not in (None, "")},
    }
    table["columnDefinitions"] = None if no_headers else [dict(column) for column in printer.columns]
    table["rows"] = rows
    return table
