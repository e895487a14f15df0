"""Patches as the apiserver applies them, and the JSON document helpers they need.

- `merge_patch`: ``application/merge-patch+json`` (RFC 7386) with the behaviour of the library the apiserver
  uses (evanphx/json-patch v4): a null deletes a key, objects merge recursively, anything else replaces, and nulls
  are dropped from objects that are added whole.
- `json_patch`: ``application/json-patch+json`` (RFC 6902) with that library's quirks kept, because clients see
  them: negative array indices count from the end, ``replace`` of a missing object key adds it, ``add`` at the
  root is an error. A patch that cannot be applied is a 422 whose message is the apiserver's generic sentence
  (it drops the library's reason; the reason stays readable on the error as `ApiError.detail`).
- `strategic_merge_patch`: custom resources do not take strategic merge patches (the apiserver answers 415, see
  `check_patch_type`); for built-in kinds this is only a merge patch that understands the ``$patch`` and
  ``$deleteFromPrimitiveList`` directives, not the per-field merge keys of the Go types.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import ApiError, bad_request, field_invalid, invalid, unprocessable_patch, unsupported_media_type

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
MAX_JSON_PATCH_OPERATIONS = 10000

_GO_INT = re.compile(r"^[+-]?[0-9]+$")


# --- JSON values ------------------------------------------------------------------------------------------------


def copy_json(value: Any) -> Any:
    """A deep copy of a decoded JSON value (several times faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


def json_equal(left: Any, right: Any) -> bool:
    """Equality of decoded JSON values, with booleans kept apart from numbers (``true != 1``, ``1 == 1.0``)."""
    if left is right:
        return True
    if isinstance(left, dict):
        if not isinstance(right, dict) or len(left) != len(right):
            return False
        for key, item in left.items():
            if key not in right or not json_equal(item, right[key]):
                return False
        return True
    if isinstance(left, list):
        if not isinstance(right, list) or len(left) != len(right):
            return False
        return all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    return type(left) is type(right) and left == right


# --- patch types --------------------------------------------------------------------------------------------------


def supported_patch_types(*, custom_resource: bool) -> list[str]:
    """The patch content types an endpoint takes, in the apiserver's order (for its 415 message)."""
    if custom_resource:
        return [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
    return [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH]


def strategic_merge_allowed(*, custom_resource: bool) -> bool:
    """Strategic merge patch works on built-in kinds only: custom resources have no patch strategies."""
    return not custom_resource


def check_patch_type(content_type: str, *, custom_resource: bool) -> str:
    """The patch type of a PATCH request's Content-Type (parameters ignored), or the apiserver's 415."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    accepted = supported_patch_types(custom_resource=custom_resource)
    if media_type not in accepted:
        raise unsupported_media_type(accepted)
    return media_type


# --- merge patch (RFC 7386, evanphx/json-patch v4 MergePatch) -----------------------------------------------------


def merge_patch(target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Returns `target` with the JSON merge patch `patch` applied (`target` is not modified)."""
    if patch is None or isinstance(patch, str | int | float | bool):
        raise bad_request("Invalid JSON Patch")
    if isinstance(patch, list):
        text = json.dumps(_prune_nulls(copy_json(patch)), separators=(",", ":"))
        raise invalid("", "", "", [field_invalid("patch", text, f"Object 'Kind' is missing in '{text}'")])
    result = copy_json(target)
    _merge_into(result, patch)
    return result


def _merge_into(document: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            document.pop(key, None)
            continue
        current = document.get(key)
        if current is None:
            document[key] = _prune_nulls(copy_json(value))
        elif not isinstance(current, dict):
            document[key] = _prune_nulls(copy_json(value))
        elif not isinstance(value, dict):
            document[key] = copy_json(value)
        else:
            _merge_into(current, value)


def _prune_nulls(value: Any) -> Any:
    """Drops null members of objects (inside lists too); null list items stay, as in the library."""
    if isinstance(value, dict):
        for key in [key for key, item in value.items() if item is None]:
            del value[key]
        for item in value.values():
            _prune_nulls(item)
    elif isinstance(value, list):
        for item in value:
            _prune_nulls(item)
    return value


# --- JSON patch (RFC 6902, evanphx/json-patch v4.12 semantics) ----------------------------------------------------


class _PatchFailure(Exception):
    """One operation that cannot be applied; the message is the library's."""


def json_patch(target: dict[str, Any], ops: Any) -> dict[str, Any]:
    """Returns `target` with the JSON patch `ops` applied (`target` is not modified).

    Raises the apiserver's errors: 400 when `ops` is not a list of operations, 413 above 10000 operations, 422
    (generic message, the reason in `ApiError.detail`) when an operation cannot be applied.
    """
    if not isinstance(ops, list):
        kind = "object" if isinstance(ops, dict) else _go_json_kind(ops)
        raise bad_request(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch")
    for op in ops:
        if not isinstance(op, dict):
            kind = _go_json_kind(op)
            raise bad_request(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Operation")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise ApiError(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}",
        )
    document: Any = copy_json(target)
    try:
        for op in ops:
            document = _apply_operation(document, op)
    except _PatchFailure as failure:
        raise unprocessable_patch(str(failure)) from None
    return document


def _go_json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _decode_key(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _string_field(op: dict[str, Any], name: str) -> str | None:
    value = op.get(name)
    return value if isinstance(value, str) else None


def _apply_operation(document: Any, op: dict[str, Any]) -> Any:
    kind = op.get("op") if isinstance(op.get("op"), str) else "unknown"
    path = _string_field(op, "path")
    if kind == "add":
        if path is None:
            raise _PatchFailure("add operation failed to decode path: missing value")
        _add(document, path, copy_json(op.get("value")), "add")
    elif kind == "remove":
        if path is None:
            raise _PatchFailure("remove operation failed to decode path: missing value")
        container, key = _find_container(document, path, "remove")
        _remove(container, key, path, "remove")
    elif kind == "replace":
        if path is None:
            raise _PatchFailure("replace operation failed to decode path")
        return _replace(document, path, copy_json(op.get("value")))
    elif kind == "move":
        source = _string_field(op, "from")
        if source is None:
            raise _PatchFailure("move operation failed to decode from")
        container, key = _find_container(document, source, "move", what="from path")
        value = _get(container, key, source, f"error in move for path: '{key}'")
        _remove(container, key, key, "move")
        if path is None:
            raise _PatchFailure("move operation failed to decode path")
        _add(document, path, value, "move", what="destination path")
    elif kind == "copy":
        source = _string_field(op, "from")
        if source is None:
            raise _PatchFailure("copy operation failed to decode from")
        container, key = _find_container(document, source, "copy", what="from path")
        value = _get(container, key, source, f"error in copy for from: '{source}'")
        if value is None:
            raise _PatchFailure(f"copy operation does not apply: doc is missing from path: {source}")
        if path is None:
            raise _PatchFailure("copy operation failed to decode path")
        _add(document, path, copy_json(value), "copy", what="destination path")
    elif kind == "test":
        if path is None:
            raise _PatchFailure("test operation failed to decode path")
        _test(document, path, op.get("value"))
    else:
        raise _PatchFailure(f"Unexpected kind: {kind}")
    return document


def _find_container(document: Any, path: str, operation: str, *, what: str = "path") -> tuple[Any, str]:
    """findObject: the object or list holding the last token of `path`, and that token."""
    tokens = path.split("/")
    missing = _PatchFailure(
        f'{operation} operation does not apply: doc is missing {what}: "{path}"'
        if operation in ("add", "remove") and what == "path"
        else f"{operation} operation does not apply: doc is missing {what}: {path}"
    )
    if len(tokens) < 2:
        raise missing
    container = document
    for token in tokens[1:-1]:
        key = _decode_key(token)
        if isinstance(container, dict):
            following = container.get(key)
        else:
            index = _list_index(container, key)
            following = container[index] if index is not None and 0 <= index < len(container) else None
        if not isinstance(following, dict | list):
            raise missing
        container = following
    return container, _decode_key(tokens[-1])


def _list_index(container: list[Any], key: str) -> int | None:
    """An existing index for `key` (negative ones counting from the end), else None."""
    if not _GO_INT.match(key):
        return None
    index = int(key)
    if index < 0:
        if index < -len(container):
            return None
        index += len(container)
    return index if index < len(container) else None


def _get(container: Any, key: str, path: str, context: str) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    if not _GO_INT.match(key):
        raise _PatchFailure(f"{context}: strconv.Atoi: parsing {json.dumps(key)}: invalid syntax")
    index = _list_index(container, key)
    if index is None:
        raise _PatchFailure(
            f"{context}: Unable to access invalid index: {int(key)}: invalid index referenced"
        )
    return container[index]


def _add(document: Any, path: str, value: Any, operation: str, *, what: str = "path") -> None:
    container, key = _find_container(document, path, operation, what=what)
    if isinstance(container, dict):
        container[key] = value
        return
    context = (
        f"error in {operation} for path: '{path}'" if operation != "copy" else "error while adding value"
    )
    if key == "-":
        container.append(value)
        return
    if not _GO_INT.match(key):
        raise _PatchFailure(f"{context}: value was not a proper array index: '{key}'")
    index = int(key)
    size = len(container) + 1
    if index >= size or index < -size:
        raise _PatchFailure(f"{context}: Unable to access invalid index: {index}: invalid index referenced")
    if index < 0:
        index += size
    container.insert(index, value)


def _remove(container: Any, key: str, path: str, operation: str) -> None:
    context = f"error in {operation} for path: '{path}'"
    if isinstance(container, dict):
        if key not in container:
            raise _PatchFailure(f"{context}: Unable to remove nonexistent key: {key}: missing value")
        del container[key]
        return
    if not _GO_INT.match(key):
        raise _PatchFailure(f"{context}: strconv.Atoi: parsing {json.dumps(key)}: invalid syntax")
    index = _list_index(container, key)
    if index is None:
        raise _PatchFailure(
            f"{context}: Unable to access invalid index: {int(key)}: invalid index referenced"
        )
    del container[index]


def _replace(document: Any, path: str, value: Any) -> Any:
    if path == "":
        if not isinstance(value, dict | list):
            raise _PatchFailure("replace operation value must be object or array")
        return value
    container, key = _find_container(document, path, "replace")
    if isinstance(container, dict):
        container[key] = value  # the library does not check that the key exists
        return document
    index = _list_index(container, key) if _GO_INT.match(key) else None
    if index is None:
        raise _PatchFailure(f"replace operation does not apply: doc is missing key: {path}: missing value")
    container[index] = value
    return document


def _test(document: Any, path: str, expected: Any) -> None:
    if path == "":
        if not json_equal(document, expected):
            raise _PatchFailure(f"testing value {path} failed: test failed")
        return
    container, key = _find_container(document, path, "test", what="path")
    actual = _get(container, key, path, f"error in test for path: '{path}'")
    if actual is None:
        if expected is None:
            return
        raise _PatchFailure(f"testing value {path} failed: test failed")
    if expected is None or not json_equal(actual, expected):
        raise _PatchFailure(f"testing value {path} failed: test failed")


# --- strategic merge patch fallback -------------------------------------------------------------------------------

_PATCH_DIRECTIVE = "$patch"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"
_DIRECTIVE_PREFIXES = ("$setElementOrder/", "$retainKeys", _DELETE_FROM_PRIMITIVE_LIST)


def strategic_merge_patch(target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """A strategic merge patch applied as a merge patch that honours ``$patch: replace|delete`` on objects and
    ``$deleteFromPrimitiveList/<field>``, ignoring the ordering directives. Lists are replaced, not merged by key:
    use it only where no list merge key matters (never for custom resources, see `strategic_merge_allowed`)."""
    if not isinstance(patch, dict):
        raise bad_request("Invalid JSON Patch")
    result = copy_json(target)
    _strategic_into(result, patch)
    return result


def _strategic_into(document: dict[str, Any], patch: dict[str, Any]) -> None:
    directive = patch.get(_PATCH_DIRECTIVE)
    if directive == "replace":
        document.clear()
        document.update(_without_directives(copy_json(patch)))
        return
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM_PRIMITIVE_LIST):
            field = key[len(_DELETE_FROM_PRIMITIVE_LIST) :]
            current = document.get(field)
            if isinstance(current, list) and isinstance(value, list):
                document[field] = [item for item in current if not any(json_equal(item, v) for v in value)]
            continue
        if key == _PATCH_DIRECTIVE or key.startswith(_DIRECTIVE_PREFIXES):
            continue
        if value is None or (isinstance(value, dict) and value.get(_PATCH_DIRECTIVE) == "delete"):
            document.pop(key, None)
            continue
        current = document.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            _strategic_into(current, value)
        else:
            document[key] = _without_directives(_prune_nulls(copy_json(value)))


def _without_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _without_directives(item)
            for key, item in value.items()
            if key != _PATCH_DIRECTIVE and not key.startswith(_DIRECTIVE_PREFIXES)
        }
    if isinstance(value, list):
        return [_without_directives(item) for item in value]
    return value
