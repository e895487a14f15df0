"""Conversion between the served shape of an object and its stored shape.

Custom resources use the CRD `None` strategy (only apiVersion changes, as in the apiserver); events.k8s.io/v1
Events share storage with core/v1 Events and are converted field by field.
"""

from __future__ import annotations

from typing import Any

from .resources import ResourceType
from .store import StoredObject, dumps

# events.k8s.io/v1 name -> core/v1 name
_EVENT_FIELDS = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_CORE_EVENT_FIELDS = {core: new for new, core in _EVENT_FIELDS.items()}


def _rename(obj: dict[str, Any], names: dict[str, str], api_version: str) -> dict[str, Any]:
    converted = {names.get(key, key): value for key, value in obj.items()}
    converted["apiVersion"] = api_version
    return converted


def to_storage(rtype: ResourceType, obj: dict[str, Any], storage_api_version: str) -> dict[str, Any]:
    """The object as stored, from the shape a client sent for `rtype`."""
    if rtype.group == "events.k8s.io":
        return _rename(obj, _EVENT_FIELDS, "v1")
    if obj.get("apiVersion") != storage_api_version:
        obj["apiVersion"] = storage_api_version
    return obj


def from_storage(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The stored object in the shape `rtype` serves (a new dict when it differs; never mutates `obj`)."""
    if rtype.group == "events.k8s.io":
        converted = _rename(obj, _CORE_EVENT_FIELDS, rtype.api_version)
        converted.setdefault("eventTime", None)  # required in this version; core events may lack it
        return converted
    if obj.get("apiVersion") == rtype.api_version:
        return obj
    return {**obj, "apiVersion": rtype.api_version}


def present(rtype: ResourceType, stored: StoredObject) -> bytes:
    """The JSON a client of `rtype` receives for a stored object, reusing the stored bytes when possible."""
    if rtype.group != "events.k8s.io" and stored.obj.get("apiVersion") == rtype.api_version:
        return stored.raw
    return dumps(from_storage(rtype, stored.obj))
