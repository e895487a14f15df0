"""CEL for CRD validation rules (``x-kubernetes-validations``), on the cel-python package (``celpy``).

The apiserver compiles each rule once per CRD and evaluates it with ``self`` (and ``oldSelf`` for transition rules)
bound to the value at the schema node. This module does the same: `compile_rule` parses a rule once (cached by its
text), `CompiledRule.evaluate` runs it against converted values, and `to_cel` converts decoded JSON into CEL values
the way Kubernetes does when it knows the schema (``integer`` -> int, ``number`` -> double, ``date-time`` ->
timestamp, ``duration`` -> duration, ``byte`` -> bytes).

What Kubernetes adds to standard CEL and rules commonly use is provided: ``isURL``/``url`` and its getters, the
strings extension (``lowerAscii``, ``upperAscii``, ``trim``, ``split``, ``join``, ``replace``, ``indexOf``,
``lastIndexOf``, ``substring``, ``charAt``), the lists library (``isSorted``, ``sum``, ``max``, ``indexOf``,
``lastIndexOf``), regex ``find``/``findAll``, and optionals for ``optionalOldSelf`` rules (``oldSelf.hasValue()``,
``oldSelf.value()``, ``oldSelf.orValue(x)``). Unlike the apiserver there is no static type check: a rule that
refers to an undeclared field fails when evaluated ("no such key"), not when the CRD is created.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import celpy
import lark
import re2
from celpy import celtypes
from celpy.evaluation import CELEvalError

__all__ = [
    "CelCompileError",
    "CelEvaluationError",
    "CelShape",
    "CompiledRule",
    "compile_rule",
    "evaluate",
    "to_cel",
]


class CelCompileError(ValueError):
    """A rule that does not parse: the CRD carrying it must be rejected."""

    def __init__(self, rule: str, detail: str):
        super().__init__(f"compilation failed: {detail}")
        self.rule = rule
        self.detail = detail


class CelEvaluationError(Exception):
    """A rule that failed at run time (missing field, wrong operand types, division by zero...).

    `message` is worded like cel-go's (``no such key: userId``); `no_such_overload` tells the apiserver's
    special wording apart (``'no such overload': call arguments did not match ...``).
    """

    def __init__(self, message: str, *, no_such_overload: bool = False):
        super().__init__(message)
        self.message = message
        self.no_such_overload = no_such_overload


class CelShape(Protocol):
    """What `to_cel` needs to know of a schema node (the structural schema nodes implement it)."""

    @property
    def type(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def int_or_string(self) -> bool: ...
    @property
    def properties(self) -> Mapping[str, CelShape]: ...
    @property
    def additional_properties(self) -> CelShape | None: ...
    @property
    def items(self) -> CelShape | None: ...


# --- values -------------------------------------------------------------------------------------------------------


class OptionalValue:
    """CEL's ``optional_type``: what ``oldSelf`` is bound to in rules with ``optionalOldSelf: true``."""

    __slots__ = ("present", "value")

    def __init__(self, value: Any = None, *, present: bool):
        self.present = present
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OptionalValue) and (self.present, self.value) == (other.present, other.value)

    def __hash__(self) -> int:
        return hash(self.present)

    def __repr__(self) -> str:
        return f"optional.of({self.value!r})" if self.present else "optional.none()"


def to_cel(value: Any, shape: CelShape | None = None) -> Any:
    """Decoded JSON -> CEL value; with a schema node, typed like the apiserver's ``UnstructuredToVal``."""
    if shape is None:
        return _json_to_cel(value)
    if value is None:
        return None
    if shape.int_or_string:
        return celtypes.StringType(value) if isinstance(value, str) else _json_to_cel(value)
    kind = shape.type
    if kind == "object" and isinstance(value, dict):
        if shape.properties:
            properties = shape.properties
            return celtypes.MapType(
                {celtypes.StringType(key): to_cel(item, properties.get(key)) for key, item in value.items()}
            )
        additional = shape.additional_properties
        return celtypes.MapType(
            {celtypes.StringType(key): to_cel(item, additional) for key, item in value.items()}
        )
    if kind == "array" and isinstance(value, list):
        items = shape.items
        return celtypes.ListType([to_cel(item, items) for item in value])
    if kind == "string" and isinstance(value, str):
        return _typed_string(value, shape.format)
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    return _json_to_cel(value)


def _json_to_cel(value: Any) -> Any:
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(key): _json_to_cel(item) for key, item in value.items()})
    if isinstance(value, list):
        return celtypes.ListType([_json_to_cel(item) for item in value])
    return value


def _typed_string(text: str, fmt: str) -> Any:
    """Strings with a date, date-time, duration or byte format become CEL values of those types."""
    try:
        if fmt in ("date-time", "datetime"):
            return celtypes.TimestampType(_parse_datetime(text))
        if fmt == "date":
            return celtypes.TimestampType(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC))
        if fmt == "duration":
            return celtypes.DurationType(text)
        if fmt == "byte":
            return celtypes.BytesType(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        return celtypes.StringType(text)  # the schema validation reports the bad format
    return celtypes.StringType(text)


def _parse_datetime(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- the Kubernetes additions to the CEL environment --------------------------------------------------------------

_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


def parse_request_uri(text: str) -> urllib.parse.SplitResult | None:
    """Go's ``url.ParseRequestURI``: an absolute URL or an absolute path, no fragment, no bad escapes."""
    if not text or any(ord(char) < 0x20 or ord(char) == 0x7F for char in text) or " " in text:
        return None
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        return None
    if text.startswith("/"):
        return urllib.parse.urlsplit(text, allow_fragments=False)
    scheme, colon, _rest = text.partition(":")
    if not colon or not _URL_SCHEME.match(scheme):
        return None
    try:
        parts = urllib.parse.urlsplit(text, allow_fragments=False)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        return None
    return parts


class CelURL:
    """The value of ``url(s)``: its getters follow Go's net/url."""

    def __init__(self, parts: urllib.parse.SplitResult):
        self.parts = parts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelURL) and self.parts == other.parts

    def __hash__(self) -> int:
        return hash(self.parts)


def _is_url(text: Any) -> celtypes.BoolType:
    return celtypes.BoolType(parse_request_uri(str(text)) is not None)


def _url(text: Any) -> Any:
    parts = parse_request_uri(str(text))
    if parts is None:
        return CELEvalError(f"URL parse error during conversion from string: {text}", ValueError, ())
    return CelURL(urllib.parse.urlsplit(str(text)))


def _url_getter(pick: Callable[[urllib.parse.SplitResult], str]) -> Callable[[Any], Any]:
    def getter(url: Any) -> Any:
        if not isinstance(url, CelURL):
            return CELEvalError("no such overload", TypeError, (url,))
        return celtypes.StringType(pick(url.parts))

    return getter


def _hostname(parts: urllib.parse.SplitResult) -> str:
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.partition(":")[0]


def _port(parts: urllib.parse.SplitResult) -> str:
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        host = host[host.find("]") + 1 :]
    return host.partition(":")[2]


def _string_method(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps a Python string function so that CEL errors come back as values, as celpy expects."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except (IndexError, ValueError, TypeError) as error:
            return CELEvalError(str(error) or "no such overload", type(error), ())

    return wrapper


def _substring(text: Any, start: Any, end: Any = None) -> Any:
    start = int(start)
    stop = len(text) if end is None else int(end)
    if start < 0 or stop > len(text) or start > stop:
        raise IndexError(f"index out of range: {start if start < 0 or start > len(text) else stop}")
    return celtypes.StringType(str(text)[start:stop])


def _char_at(text: Any, index: Any) -> Any:
    index = int(index)
    if index < 0 or index > len(text):
        raise IndexError(f"index out of range: {index}")
    return celtypes.StringType(str(text)[index : index + 1])


def _index_of(container: Any, item: Any, start: Any = 0) -> Any:
    if isinstance(container, str):
        return celtypes.IntType(str(container).find(str(item), int(start)))
    for position, element in enumerate(container):
        if element == item:
            return celtypes.IntType(position)
    return celtypes.IntType(-1)


def _last_index_of(container: Any, item: Any) -> Any:
    if isinstance(container, str):
        return celtypes.IntType(str(container).rfind(str(item)))
    for position in range(len(container) - 1, -1, -1):
        if container[position] == item:
            return celtypes.IntType(position)
    return celtypes.IntType(-1)


def _split(text: Any, separator: Any, limit: Any = -1) -> Any:
    limit = int(limit)
    if limit == 0:
        return celtypes.ListType([])
    parts = str(text).split(str(separator), limit - 1) if limit > 0 else str(text).split(str(separator))
    return celtypes.ListType([celtypes.StringType(part) for part in parts])


def _join(items: Any, separator: Any = "") -> Any:
    return celtypes.StringType(str(separator).join(str(item) for item in items))


def _replace(text: Any, old: Any, new: Any, count: Any = -1) -> Any:
    return celtypes.StringType(str(text).replace(str(old), str(new), int(count)))


def _find(text: Any, pattern: Any) -> Any:
    match = re2.search(str(pattern), str(text))
    return celtypes.StringType(match.group(0) if match else "")


def _find_all(text: Any, pattern: Any, limit: Any = -1) -> Any:
    found = [celtypes.StringType(match.group(0)) for match in re2.finditer(str(pattern), str(text))]
    return celtypes.ListType(found if int(limit) < 0 else found[: int(limit)])


def _is_sorted(items: Any) -> Any:
    return celtypes.BoolType(all(items[i] <= items[i + 1] for i in range(len(items) - 1)))


def _sum(items: Any) -> Any:
    total: Any = celtypes.IntType(0)
    for item in items:
        total = item if total == 0 and not isinstance(total, type(item)) else total + item
    return total


def _max(items: Any) -> Any:
    if not items:
        return CELEvalError("max(list) argument must not be empty", ValueError, ())
    return max(items)


def _has_value(optional: Any) -> Any:
    if not isinstance(optional, OptionalValue):
        return CELEvalError("no such overload", TypeError, (optional,))
    return celtypes.BoolType(optional.present)


def _value(optional: Any) -> Any:
    if not isinstance(optional, OptionalValue):
        return CELEvalError("no such overload", TypeError, (optional,))
    if not optional.present:
        return CELEvalError("optional.none() dereference", ValueError, ())
    return optional.value


def _or_value(optional: Any, default: Any) -> Any:
    if not isinstance(optional, OptionalValue):
        return CELEvalError("no such overload", TypeError, (optional,))
    return optional.value if optional.present else default


KUBERNETES_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "isURL": _is_url,
    "url": _url,
    "getScheme": _url_getter(lambda parts: parts.scheme),
    "getHost": _url_getter(lambda parts: parts.netloc.rpartition("@")[2]),
    "getHostname": _url_getter(_hostname),
    "getPort": _url_getter(_port),
    "getEscapedPath": _url_getter(lambda parts: parts.path),
    "lowerAscii": _string_method(lambda text: celtypes.StringType(str(text).lower())),
    "upperAscii": _string_method(lambda text: celtypes.StringType(str(text).upper())),
    "trim": _string_method(lambda text: celtypes.StringType(str(text).strip())),
    "substring": _string_method(_substring),
    "charAt": _string_method(_char_at),
    "indexOf": _string_method(_index_of),
    "lastIndexOf": _string_method(_last_index_of),
    "split": _string_method(_split),
    "join": _string_method(_join),
    "replace": _string_method(_replace),
    "find": _string_method(_find),
    "findAll": _string_method(_find_all),
    "isSorted": _string_method(_is_sorted),
    "sum": _string_method(_sum),
    "max": _string_method(_max),
    "hasValue": _has_value,
    "value": _value,
    "orValue": _or_value,
}


# --- compiling and evaluating -------------------------------------------------------------------------------------

_ENVIRONMENT = celpy.Environment()
_MISSING = object()


@dataclass(frozen=True, eq=False)
class CompiledRule:
    """One parsed rule (or message expression), ready to run any number of times."""

    source: str
    uses_old_self: bool
    program: celpy.Runner

    def run(self, activation: dict[str, Any]) -> Any:
        """Evaluates with already converted values; returns the CEL result or raises `CelEvaluationError`."""
        try:
            result = self.program.evaluate(activation)
        except CELEvalError as error:
            raise _evaluation_error(error) from None
        except (RecursionError, TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
            raise CelEvaluationError(str(error) or type(error).__name__) from None
        if isinstance(result, CELEvalError):
            raise _evaluation_error(result)
        return result

    def evaluate(self, self_value: Any, old_self: Any = _MISSING, *, optional_old_self: bool = False) -> bool:
        """True when the rule holds for decoded JSON values (`old_self` for transition rules)."""
        activation = {"self": to_cel(self_value)}
        if optional_old_self:
            present = old_self is not _MISSING and old_self is not None
            activation["oldSelf"] = OptionalValue(to_cel(old_self) if present else None, present=present)
        elif old_self is not _MISSING:
            activation["oldSelf"] = to_cel(old_self)
        return is_true(self.run(activation))


def _evaluation_error(error: CELEvalError) -> CelEvaluationError:
    """celpy's error -> cel-go's wording, which the apiserver puts in its messages."""
    message = str(error.args[0]) if error.args else "evaluation error"
    cause = error.args[2] if len(error.args) > 2 else None
    if message == "evaluation error" and isinstance(cause, tuple) and cause:
        nested = cause[0]
        message = str(nested)
    no_member = re.match(r"no such member in mapping: '(.*)'", message)
    if no_member:
        return CelEvaluationError(f"no such key: {no_member.group(1)}")
    if message == "no such key" and isinstance(cause, tuple) and cause:
        return CelEvaluationError(f"no such key: {cause[0]}")
    if "divide by zero" in message:
        return CelEvaluationError("division by zero")
    if "no matching overload" in message or message.startswith("no such overload"):
        return CelEvaluationError("no such overload", no_such_overload=True)
    return CelEvaluationError(message)


def _uses_old_self(tree: lark.Tree) -> bool:
    return any(
        isinstance(token, lark.Token) and token.type == "IDENT" and token.value == "oldSelf"
        for token in tree.scan_values(lambda value: isinstance(value, lark.Token))
    )


def _syntax_error(rule: str, line: int, column: int) -> str:
    """cel-go's layout: ``ERROR: <input>:1:8: Syntax error: ...`` then the line and a caret under the column."""
    lines = rule.splitlines() or [""]
    text = lines[min(line, len(lines)) - 1]
    return (
        f"ERROR: <input>:{line}:{column}: Syntax error: unexpected input\n | {text}\n | {'.' * (column - 1)}^"
    )


@functools.lru_cache(maxsize=4096)
def compile_rule(rule: str) -> CompiledRule:
    """Parses `rule` once (cached by its text); raises `CelCompileError` when it does not parse."""
    if not rule or not rule.strip():
        raise CelCompileError(rule, _syntax_error(rule or "", 1, 1))
    try:
        tree = _ENVIRONMENT.compile(rule)
    except celpy.CELParseError as error:
        raise CelCompileError(rule, _syntax_error(rule, error.line or 1, error.column or 1)) from None
    except (lark.exceptions.LarkError, RecursionError) as error:
        raise CelCompileError(rule, f"ERROR: <input>: Syntax error: {error}") from None
    program = _ENVIRONMENT.program(tree, functions=KUBERNETES_FUNCTIONS)
    return CompiledRule(source=rule, uses_old_self=_uses_old_self(tree), program=program)


def evaluate(rule: str, self_value: Any, old_self: Any = _MISSING) -> bool:
    """Compiles (cached) and evaluates `rule` on decoded JSON values; `old_self` binds ``oldSelf``."""
    return compile_rule(rule).evaluate(self_value, old_self)


def message_of(result: Any) -> str | None:
    """The text of a messageExpression result, or None when it is not a string."""
    return str(result) if isinstance(result, str) else None


def is_true(result: Any) -> bool:
    return isinstance(result, celtypes.BoolType) and bool(result)
