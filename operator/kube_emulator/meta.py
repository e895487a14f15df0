"""Object metadata rules shared by every kind: names, labels, annotations, timestamps.

Messages follow the apiserver's wording so that clients and people see what they would see on a cluster.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from .errors import Cause, field_invalid, field_required, field_too_long, field_type_invalid

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
_LABEL_RE = re.compile(DNS1123_LABEL)
_SUBDOMAIN_RE = re.compile(DNS1123_SUBDOMAIN)
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME)
_LABEL_VALUE = rf"({_QUALIFIED_NAME})?"
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE)

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    f"'{DNS1123_SUBDOMAIN}')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    f"end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    f"'{DNS1123_LABEL}')"
)
_QUALIFIED_MESSAGE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    f"'{_QUALIFIED_NAME}')"
)
_LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    f"validation is '{_LABEL_VALUE}')"
)
_GENERATED_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's: no vowels, no look-alikes
MAX_ANNOTATIONS_BYTES = 256 * 1024


def now_rfc3339() -> str:
    """A timestamp with second precision, like metav1.Time."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """A timestamp with microsecond precision, like metav1.MicroTime."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def generate_name(prefix: str) -> str:
    """`generateName` + five random characters, the prefix cut so the name stays within 63 characters."""
    suffix = "".join(secrets.choice(_GENERATED_ALPHABET) for _ in range(5))
    return prefix[: 63 - len(suffix)] + suffix


def _invalid(field: str, value: Any, detail: str) -> Cause:
    return field_invalid(field, value, detail)


class NameRule:
    SUBDOMAIN = "subdomain"
    LABEL = "label"
    PATH_SEGMENT = "path-segment"


def validate_name(name: str, rule: str, field: str = "metadata.name") -> list[Cause]:
    if not name:
        return [field_required(field, "name or generateName is required")]
    if rule == NameRule.PATH_SEGMENT:
        if name in (".", ".."):
            return [_invalid(field, name, f"may not be '{name}'")]
        for bad in ("/", "%"):
            if bad in name:
                return [_invalid(field, name, f"may not contain '{bad}'")]
        return []
    if rule == NameRule.LABEL:
        if len(name) > 63:
            return [_invalid(field, name, "must be no more than 63 characters")]
        if not _LABEL_RE.fullmatch(name):
            return [_invalid(field, name, LABEL_MESSAGE)]
        return []
    if len(name) > 253:
        return [_invalid(field, name, "must be no more than 253 characters")]
    if not _SUBDOMAIN_RE.fullmatch(name):
        return [_invalid(field, name, SUBDOMAIN_MESSAGE)]
    return []


def _qualified_name_causes(key: str, field: str) -> list[Cause]:
    prefix, slash, name = key.rpartition("/")
    causes = []
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN_RE.fullmatch(prefix)):
        causes.append(_invalid(field, key, "prefix part " + SUBDOMAIN_MESSAGE))
    if not name or len(name) > 63 or not _QUALIFIED_NAME_RE.fullmatch(name):
        detail = "name part must be no more than 63 characters" if len(name) > 63 else _QUALIFIED_MESSAGE
        causes.append(_invalid(field, key, detail))
    return causes


def validate_metadata(metadata: dict[str, Any]) -> list[Cause]:
    """Labels, annotations and finalizers of any object."""
    causes: list[Cause] = []
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        return [field_type_invalid("metadata.labels", labels, "must be a map of strings")]
    for key, value in labels.items():
        causes += _qualified_name_causes(key, "metadata.labels")
        if not isinstance(value, str):
            causes.append(field_type_invalid("metadata.labels", value, "label values must be strings"))
        elif len(value) > 63:
            causes.append(_invalid("metadata.labels", value, "must be no more than 63 characters"))
        elif not _LABEL_VALUE_RE.fullmatch(value):
            causes.append(_invalid("metadata.labels", value, _LABEL_VALUE_MESSAGE))
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        return [field_type_invalid("metadata.annotations", annotations, "must be a map of strings")]
    size = 0
    for key, value in annotations.items():
        causes += _qualified_name_causes(key.lower(), "metadata.annotations")
        if not isinstance(value, str):
            causes.append(
                field_type_invalid("metadata.annotations", value, "annotation values must be strings")
            )
            continue
        size += len(key) + len(value)
    if size > MAX_ANNOTATIONS_BYTES:
        causes.append(field_too_long("metadata.annotations", MAX_ANNOTATIONS_BYTES))
    finalizers = metadata.get("finalizers") or []
    if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        causes.append(field_type_invalid("metadata.finalizers", finalizers, "must be a list of strings"))
    else:
        for index, finalizer in enumerate(finalizers):
            causes += _qualified_name_causes(finalizer, f"metadata.finalizers[{index}]")
    return causes
