"""Kubernetes API errors as the apiserver returns them: `kind: Status` bodies with its exact wording.

Two layers, as in k8s.io/apimachinery:
- field errors (`Cause`, built by the `field_*` functions) follow `pkg/util/validation/field/errors.go`: a reason
  such as ``FieldValueRequired``, a field path such as ``spec.items[0].name`` and a message body such as
  ``Invalid value: "abc": spec.serverId in body should match '^[0-9a-f-]{36}$'``;
- request errors (`ApiError`, built by `not_found`, `invalid`, ...) follow `pkg/api/errors/errors.go`, so that
  kubectl prints what its users know, e.g. ``The EcsReinstall "x" is invalid: spec.serverId: Required value``.

Values inside messages are formatted the way Go's ``fmt`` does (``%q`` for strings, ``%v`` for numbers), because
clients and people match on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# Reasons of field errors (metav1.CauseType), verbatim from field/errors.go.
FIELD_VALUE_NOT_FOUND = "FieldValueNotFound"
FIELD_VALUE_REQUIRED = "FieldValueRequired"
FIELD_VALUE_DUPLICATE = "FieldValueDuplicate"
FIELD_VALUE_INVALID = "FieldValueInvalid"
FIELD_VALUE_NOT_SUPPORTED = "FieldValueNotSupported"
FIELD_VALUE_FORBIDDEN = "FieldValueForbidden"
FIELD_VALUE_TOO_LONG = "FieldValueTooLong"
FIELD_VALUE_TOO_MANY = "FieldValueTooMany"
FIELD_VALUE_TYPE_INVALID = "FieldValueTypeInvalid"
INTERNAL_ERROR = "InternalError"

_REASON_TITLES = {
    FIELD_VALUE_NOT_FOUND: "Not found",
    FIELD_VALUE_REQUIRED: "Required value",
    FIELD_VALUE_DUPLICATE: "Duplicate value",
    FIELD_VALUE_INVALID: "Invalid value",
    FIELD_VALUE_NOT_SUPPORTED: "Unsupported value",
    FIELD_VALUE_FORBIDDEN: "Forbidden",
    FIELD_VALUE_TOO_LONG: "Too long",
    FIELD_VALUE_TOO_MANY: "Too many",
    INTERNAL_ERROR: "Internal error",
    FIELD_VALUE_TYPE_INVALID: "Invalid value",
}

# The field path of an error with no path: Go prints a nil *field.Path as "<nil>" (seen for root-level CEL rules).
NIL_PATH = "<nil>"

OPTIMISTIC_LOCK_MESSAGE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


class _Omitted:
    """The bad value of errors whose message leaves the value out (Go's `omitValue`)."""


OMIT_VALUE = _Omitted()


@dataclass(frozen=True)
class GoStruct:
    """A bad value that Go prints with ``%#v`` from a typed struct: the text is given as Go would print it."""

    text: str


# --- Go value formatting ------------------------------------------------------------------------------------------

_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v"}


def go_quote(text: str) -> str:
    """`text` as Go's ``%q`` / ``strconv.Quote`` writes it (printable Unicode kept, control characters escaped)."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def go_float(number: float) -> str:
    """A float64 as Go's ``%v`` writes it (``%g`` with the shortest digits: ``1e+06``, ``1.5``, ``100``)."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number == 0:
        return "0" if math.copysign(1, number) > 0 else "-0"
    sign, digit_tuple, exponent = Decimal(repr(float(number))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    decimal_point = len(digits) + int(exponent)  # digits before the decimal point
    exp = decimal_point - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:  # strconv 'g' with the shortest precision decides with precision 6
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if decimal_point <= 0:
        return f"{prefix}0.{'0' * -decimal_point}{digits}"
    if decimal_point >= len(digits):
        return prefix + digits + "0" * (decimal_point - len(digits))
    return f"{prefix}{digits[:decimal_point]}.{digits[decimal_point:]}"


def go_value(value: Any) -> str:
    """A bad value inside a field error message, as `field.Error.ErrorBody` prints it (nil becomes the string
    "null", hence quoted)."""
    if value is None:
        return '"null"'
    if isinstance(value, GoStruct):
        return value.text
    return go_sharp_v(value)  # scalars print the same either way


def go_sharp_v(value: Any) -> str:
    """Go's ``%#v`` of a decoded JSON value (how the apiserver prints lists and maps in messages)."""
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_sharp_v(item) for item in value) + "}"
    if isinstance(value, dict):
        items = ", ".join(f"{go_quote(key)}:{go_sharp_v(value[key])}" for key in sorted(value))
        return "map[string]interface {}{" + items + "}"
    return repr(value)


# --- field errors -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cause:
    """One field error: a `metav1.StatusCause` (reason = the field error type, message = its body)."""

    reason: str
    message: str
    field: str

    def __str__(self) -> str:  # field.Error.Error()
        return f"{self.field}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        cause = {"reason": self.reason, "message": self.message, "field": self.field}
        return {key: text for key, text in cause.items() if text}


def field_error(reason: str, path: str, value: Any = OMIT_VALUE, detail: str = "") -> Cause:
    """A field error with the body `field.Error.ErrorBody` builds: title, value (unless omitted), detail."""
    title = _REASON_TITLES[reason]
    if reason in (FIELD_VALUE_REQUIRED, FIELD_VALUE_FORBIDDEN, FIELD_VALUE_TOO_LONG, INTERNAL_ERROR) or (
        value is OMIT_VALUE
    ):
        body = title
    else:
        body = f"{title}: {go_value(value)}"
    if detail:
        body += f": {detail}"
    return Cause(reason=reason, message=body, field=path or NIL_PATH)


def field_required(path: str, detail: str = "") -> Cause:
    return field_error(FIELD_VALUE_REQUIRED, path, detail=detail)


def field_forbidden(path: str, detail: str) -> Cause:
    return field_error(FIELD_VALUE_FORBIDDEN, path, detail=detail)


def field_invalid(path: str, value: Any, detail: str) -> Cause:
    return field_error(FIELD_VALUE_INVALID, path, value, detail)


def field_type_invalid(path: str, value: Any, detail: str) -> Cause:
    return field_error(FIELD_VALUE_TYPE_INVALID, path, value, detail)


def field_duplicate(path: str, value: Any) -> Cause:
    return field_error(FIELD_VALUE_DUPLICATE, path, value)


def field_not_found(path: str, value: Any) -> Cause:
    return field_error(FIELD_VALUE_NOT_FOUND, path, value)


def field_not_supported(path: str, value: Any, supported: list[str]) -> Cause:
    detail = "supported values: " + ", ".join(go_quote(str(item)) for item in supported) if supported else ""
    return field_error(FIELD_VALUE_NOT_SUPPORTED, path, value, detail)


def field_too_long(path: str, max_length: int) -> Cause:
    detail = f"may not be more than {max_length} bytes" if max_length >= 0 else "value is too long"
    return field_error(FIELD_VALUE_TOO_LONG, path, detail=detail)


def field_too_many(path: str, actual: int, max_items: int) -> Cause:
    detail = f"must have at most {max_items} items" if max_items >= 0 else "has too many items"
    return field_error(FIELD_VALUE_TOO_MANY, path, actual if actual >= 0 else OMIT_VALUE, detail)


def field_internal_error(path: str, detail: str) -> Cause:
    return field_error(INTERNAL_ERROR, path, detail=detail)


def aggregate(causes: list[Cause]) -> str:
    """`ErrorList.ToAggregate().Error()`: one error as is, several as ``[a, b]``, duplicates dropped."""
    seen: list[str] = []
    for cause in causes:
        text = str(cause)
        if text not in seen:
            seen.append(text)
    if len(seen) == 1:
        return seen[0]
    return "[" + ", ".join(seen) + "]"


# --- request errors -----------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error the server answers with a `kind: Status` body and the HTTP status `code`."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        detail: str | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        # Why, when the apiserver's message does not say (a JSON patch's failing operation): for logs and tests,
        # never sent to clients.
        self.detail = detail

    def to_status(self) -> dict[str, Any]:
        """The `metav1.Status` body, with the fields in the apiserver's order and its omitempty rules."""
        status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        if self.message:
            status["message"] = self.message
        if self.reason:
            status["reason"] = self.reason
        if self.details is not None:
            status["details"] = self.details
        status["code"] = self.code
        return status

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def split_group_resource(group_resource: str) -> tuple[str, str]:
    """``"ecsreinstalls.ecs.reinstall.dev"`` -> (resource, group); ``"secrets"`` -> ("secrets", "")."""
    resource, _, group = group_resource.partition(".")
    return resource, group


def _resource_details(group_resource: str, name: str | None = None) -> dict[str, Any]:
    resource, group = split_group_resource(group_resource)
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if resource:
        details["kind"] = resource  # the apiserver puts the resource (plural) here, not the kind
    return details


def not_found(group_resource: str, name: str) -> ApiError:
    """404, e.g. ``ecsreinstalls.ecs.reinstall.dev "x" not found``."""
    return ApiError(
        404,
        "NotFound",
        f"{group_resource} {go_quote(name)} not found",
        details=_resource_details(group_resource, name),
    )


def already_exists(group_resource: str, name: str) -> ApiError:
    """409, e.g. ``ecsreinstalls.ecs.reinstall.dev "x" already exists``."""
    return ApiError(
        409,
        "AlreadyExists",
        f"{group_resource} {go_quote(name)} already exists",
        details=_resource_details(group_resource, name),
    )


def conflict(group_resource: str, name: str, message: str = OPTIMISTIC_LOCK_MESSAGE) -> ApiError:
    """409 Conflict: ``Operation cannot be fulfilled on <resource> "<name>": <message>``."""
    return ApiError(
        409,
        "Conflict",
        f"Operation cannot be fulfilled on {group_resource} {go_quote(name)}: {message}",
        details=_resource_details(group_resource, name),
    )


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid: ``EcsReinstall.ecs.reinstall.dev "x" is invalid: [spec.a: Required value, ...]``."""
    group_kind = f"{kind}.{group}" if group else kind
    message = f"{group_kind} {go_quote(name)} is invalid"
    if causes:
        message += ": " + aggregate(causes)
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    details["causes"] = [cause.to_dict() for cause in causes]
    return ApiError(422, "Invalid", message, details=details)


def gone(message: str) -> ApiError:
    """410 with reason Gone (the older form; watch and list use `expired`)."""
    return ApiError(410, "Gone", message)


def expired(message: str) -> ApiError:
    """410 with reason Expired, as for a resourceVersion or continue token older than the server keeps."""
    return ApiError(410, "Expired", message)


def too_old_resource_version(requested: int, oldest_kept: int) -> ApiError:
    """The watch cache's 410 for a resourceVersion older than its window (watch_cache.go)."""
    return expired(f"too old resource version: {requested} ({oldest_kept - 1})")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(group_resource: str, action: str) -> ApiError:
    """405, e.g. ``create is not supported on resources of kind "events"``."""
    resource, group = split_group_resource(group_resource)
    details = {key: text for key, text in (("group", group), ("kind", resource)) if text}
    return ApiError(
        405,
        "MethodNotAllowed",
        f"{action} is not supported on resources of kind {go_quote(group_resource)}",
        details=details,
    )


def unsupported_media_type(accepted: list[str]) -> ApiError:
    """415 for a body (or patch) type the endpoint does not take (negotiation/errors.go)."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def not_acceptable(accepted: list[str]) -> ApiError:
    """406 for an Accept header the endpoint cannot serve."""
    return ApiError(
        406, "NotAcceptable", "only the following media types are accepted: " + ", ".join(accepted)
    )


def internal_error(detail: str) -> ApiError:
    """500 ``Internal error occurred: ...``."""
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {detail}",
        details={"causes": [{"message": detail}]},
    )


def unprocessable_patch(detail: str = "") -> ApiError:
    """422 for a JSON patch that cannot be applied: the apiserver drops the library's reason (patch.go uses
    NewGenericServerResponse), so clients see only this generic sentence; `detail` keeps the reason."""
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        details={},
        detail=detail or None,
    )
