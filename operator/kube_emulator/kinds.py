"""What particular built-in kinds do on write (their registry strategies): defaults, derived fields, checks.

Each hook gets the object about to be stored (storage shape, modifiable) and the previous version (or None on
create) and returns field errors. Kinds without a hook are stored as sent.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
from collections.abc import Callable
from typing import Any

from .crds import normalize_crd, validate_crd
from .errors import Cause, field_forbidden, field_invalid, field_type_invalid

Hook = Callable[[dict[str, Any], dict[str, Any] | None], list[Cause]]

_cluster_ips = itertools.count(10)


def _immutable_data(obj: dict[str, Any], old: dict[str, Any] | None, fields: tuple[str, ...]) -> list[Cause]:
    if not old or not old.get("immutable"):
        return []
    causes = []
    for name in fields:
        if obj.get(name) != old.get(name):
            causes.append(field_forbidden(name, "field is immutable when `immutable` is set"))
    if obj.get("immutable") is not True:
        causes.append(field_forbidden("immutable", "field is immutable when `immutable` is set"))
    return causes


def secret(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    causes: list[Cause] = []
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        return [field_type_invalid("data", data, "must be a map of base64-encoded strings")]
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            causes.append(field_invalid(f"data[{key}]", "<secret data>", "must be valid base64"))
    string_data = obj.pop("stringData", None) or {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        obj["data"] = data
    if not obj.get("type"):
        obj["type"] = "Opaque"
    if old is not None and obj["type"] != old.get("type", "Opaque"):
        causes.append(field_invalid("type", obj["type"], "field is immutable"))
    return causes + _immutable_data(obj, old, ("data",))


def config_map(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    causes = []
    for key, value in (obj.get("data") or {}).items():
        if not isinstance(value, str):
            causes.append(field_type_invalid(f"data[{key}]", value, "must be a string"))
    return causes + _immutable_data(obj, old, ("data", "binaryData"))


def namespace(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    spec = obj.setdefault("spec", {})
    spec.setdefault("finalizers", ["kubernetes"])
    if old is not None:
        obj["status"] = old.get("status") or {"phase": "Active"}
    else:
        obj["status"] = {"phase": "Active"}
    return []


def service(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        if old is not None and (old.get("spec") or {}).get("clusterIP"):
            spec.setdefault("clusterIP", old["spec"]["clusterIP"])
        if "clusterIP" not in spec:
            number = next(_cluster_ips)
            spec["clusterIP"] = str(ipaddress.ip_address("10.96.0.0") + number)
        if spec["clusterIP"] != "None":
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {"loadBalancer": {}})
    return []


def custom_resource_definition(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    causes = validate_crd(obj)
    if not causes:
        normalize_crd(obj, old)
    return causes


HOOKS: dict[tuple[str, str], Hook] = {
    ("", "secrets"): secret,
    ("", "configmaps"): config_map,
    ("", "namespaces"): namespace,
    ("", "services"): service,
    ("apiextensions.k8s.io", "customresourcedefinitions"): custom_resource_definition,
}


def review_response(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The answer to a (self) access review: this emulator authorizes every request."""
    answer = dict(body)
    answer.setdefault("metadata", {})
    if kind == "SelfSubjectRulesReview":
        answer["status"] = {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        }
    else:
        answer["status"] = {"allowed": True, "reason": "kube-emulator authorizes every request"}
    return answer
