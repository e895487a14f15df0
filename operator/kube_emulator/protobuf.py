"""Decoding the Kubernetes protobuf encoding for the few kinds kubectl writes with its typed client.

`kubectl create secret|configmap|namespace|serviceaccount`, `kubectl auth can-i` and Helm (deleting its release
Secrets) send
`application/vnd.kubernetes.protobuf` bodies (the `k8s\\x00` magic, then a `runtime.Unknown` envelope holding
the object's own protobuf). Those messages are decoded here into the JSON shape, from field tables written after
the Kubernetes `generated.proto` files; any other kind gets a clear 415. Answers are always JSON, which these
clients also accept.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


@dataclass(frozen=True)
class Field:
    name: str
    kind: Any  # "string" | "bytes" | "int" | "bool" | "time" | Message | MapOf
    repeated: bool = False


@dataclass(frozen=True)
class MapOf:
    value: str  # "string" | "bytes"


Message = dict[int, Field]

_OWNER_REFERENCE: Message = {
    5: Field("apiVersion", "string"),
    1: Field("kind", "string"),
    3: Field("name", "string"),
    4: Field("uid", "string"),
    6: Field("controller", "bool"),
    7: Field("blockOwnerDeletion", "bool"),
}
_OBJECT_META: Message = {
    1: Field("name", "string"),
    2: Field("generateName", "string"),
    3: Field("namespace", "string"),
    5: Field("uid", "string"),
    6: Field("resourceVersion", "string"),
    7: Field("generation", "int"),
    8: Field("creationTimestamp", "time"),
    11: Field("labels", MapOf("string")),
    12: Field("annotations", MapOf("string")),
    13: Field("ownerReferences", _OWNER_REFERENCE, repeated=True),
    14: Field("finalizers", "string", repeated=True),
}
_OBJECT_REFERENCE: Message = {
    1: Field("kind", "string"),
    2: Field("namespace", "string"),
    3: Field("name", "string"),
    4: Field("uid", "string"),
    5: Field("apiVersion", "string"),
}
_RESOURCE_ATTRIBUTES: Message = {
    1: Field("namespace", "string"),
    2: Field("verb", "string"),
    3: Field("group", "string"),
    4: Field("version", "string"),
    5: Field("resource", "string"),
    6: Field("subresource", "string"),
    7: Field("name", "string"),
}
KINDS: dict[str, Message] = {
    "ConfigMap": {
        1: Field("metadata", _OBJECT_META),
        2: Field("data", MapOf("string")),
        3: Field("binaryData", MapOf("bytes")),
        4: Field("immutable", "bool"),
    },
    "Secret": {
        1: Field("metadata", _OBJECT_META),
        2: Field("data", MapOf("bytes")),
        3: Field("type", "string"),
        4: Field("stringData", MapOf("string")),
        5: Field("immutable", "bool"),
    },
    "Namespace": {
        1: Field("metadata", _OBJECT_META),
        2: Field("spec", {1: Field("finalizers", "string", repeated=True)}),
    },
    "ServiceAccount": {
        1: Field("metadata", _OBJECT_META),
        2: Field("secrets", _OBJECT_REFERENCE, repeated=True),
        3: Field("imagePullSecrets", {1: Field("name", "string")}, repeated=True),
        4: Field("automountServiceAccountToken", "bool"),
    },
    "SelfSubjectAccessReview": {
        1: Field("metadata", _OBJECT_META),
        2: Field(
            "spec",
            {
                1: Field("resourceAttributes", _RESOURCE_ATTRIBUTES),
                2: Field("nonResourceAttributes", {1: Field("path", "string"), 2: Field("verb", "string")}),
            },
        ),
    },
    "DeleteOptions": {
        1: Field("gracePeriodSeconds", "int"),
        2: Field("preconditions", {1: Field("uid", "string"), 2: Field("resourceVersion", "string")}),
        3: Field("orphanDependents", "bool"),
        4: Field("propagationPolicy", "string"),
        5: Field("dryRun", "string", repeated=True),
    },
    "SelfSubjectRulesReview": {
        1: Field("metadata", _OBJECT_META),
        2: Field("spec", {1: Field("namespace", "string")}),
    },
}


class _Malformed(ValueError):
    pass


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise _Malformed("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise _Malformed("varint too long")


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) triples: ints for varints, bytes for length-delimited fields."""
    fields = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 2:
            length, position = _varint(data, position)
            value = data[position : position + length]
            if len(value) != length:
                raise _Malformed("truncated field")
            position += length
        elif wire == 1:
            value, position = data[position : position + 8], position + 8
        elif wire == 5:
            value, position = data[position : position + 4], position + 4
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        fields.append((number, wire, value))
    return fields


def _scalar(kind: str, value: Any) -> Any:
    if kind == "string":
        return bytes(value).decode()
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode()
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return value - (1 << 64) if value >= 1 << 63 else value
    raise _Malformed(f"unknown scalar {kind}")


def _decode(data: bytes, message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, _wire, value in _fields(data):
        field = message.get(number)
        if field is None:
            continue  # a field this table does not know: dropped, like an unknown JSON field pruned
        if isinstance(field.kind, MapOf):
            entry = {n: v for n, _w, v in _fields(value)}
            key = _scalar("string", entry.get(1, b""))
            out.setdefault(field.name, {})[key] = _scalar(field.kind.value, entry.get(2, b""))
            continue
        if field.kind == "time":
            parts = {n: v for n, _w, v in _fields(value)}
            moment = datetime.fromtimestamp(parts.get(1, 0), UTC)
            decoded: Any = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif isinstance(field.kind, dict):
            decoded = _decode(value, field.kind)
        else:
            decoded = _scalar(field.kind, value)
        if field.repeated:
            out.setdefault(field.name, []).append(decoded)
        else:
            out[field.name] = decoded
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object; 415 for kinds this module has no table for."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "protobuf body does not start with the Kubernetes magic number")
    try:
        envelope = {n: v for n, _w, v in _fields(body[len(MAGIC) :])}
        type_meta = {n: v for n, _w, v in _fields(envelope.get(1, b""))}
        api_version = _scalar("string", type_meta.get(1, b""))
        kind = _scalar("string", type_meta.get(2, b""))
        table = KINDS.get(kind)
        if table is None:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"kube-emulator decodes protobuf only for {', '.join(sorted(KINDS))}, not {kind!r}: "
                "send JSON (kubectl apply does)",
            )
        obj = _decode(envelope.get(2, b""), table)
    except _Malformed as error:
        raise ApiError(400, "BadRequest", f"malformed protobuf body: {error}") from None
    return {"apiVersion": api_version, "kind": kind, **obj}
