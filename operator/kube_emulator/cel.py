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
import operator
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


_new_string = functools.partial(str.__new__, celtypes.StringType)  # skips StringType.__new__'s type checks
_new_int = functools.partial(int.__new__, celtypes.IntType)
_TRUE, _FALSE = celtypes.BoolType(True), celtypes.BoolType(False)
_KEYS: dict[str, Any] = {}  # field names as CEL strings, reused (bounded: map keys can be anything)


def _key(name: str) -> Any:
    key = _KEYS.get(name)
    if key is None:
        key = _new_string(name)
        if len(_KEYS) < 50_000:
            _KEYS[name] = key
    return key


def _new_map(items: dict[Any, Any]) -> Any:
    mapping = celtypes.MapType()
    dict.update(mapping, items)  # MapType.__init__ copies item by item in Python
    return mapping


def to_cel(value: Any, shape: CelShape | None = None) -> Any:
    """Decoded JSON -> CEL value; with a schema node, typed like the apiserver's ``UnstructuredToVal``."""
    if shape is None:
        return _json_to_cel(value)
    if value is None:
        return None
    if shape.int_or_string:
        return _new_string(value) if isinstance(value, str) else _json_to_cel(value)
    kind = shape.type
    if kind == "object" and isinstance(value, dict):
        if shape.properties:
            properties = shape.properties
            return _new_map({_key(key): to_cel(item, properties.get(key)) for key, item in value.items()})
        additional = shape.additional_properties
        return _new_map({_key(key): to_cel(item, additional) for key, item in value.items()})
    if kind == "array" and isinstance(value, list):
        items = shape.items
        return celtypes.ListType([to_cel(item, items) for item in value])
    if kind == "string" and isinstance(value, str):
        return _typed_string(value, shape.format) if shape.format else _new_string(value)
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    return _json_to_cel(value)


def _json_to_cel(value: Any) -> Any:
    if isinstance(value, str):
        return _new_string(value)
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, int):
        return _new_int(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, dict):
        return _new_map({_key(key): _json_to_cel(item) for key, item in value.items()})
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


# --- a fast evaluator for the common subset ------------------------------------------------------------------------
#
# celpy walks its parse tree for every evaluation (~300 us for `!(has(self.a) && has(self.b))`). Validation runs
# every rule of every object written, so rules are also compiled here into nested Python closures over the same
# parse tree and the same celpy value types and functions (~5 us). Whatever the closures do not cover (message
# construction, `dot` names, unknown identifiers) makes `compile_rule` keep celpy's own interpreter for that rule.

Evaluator = Callable[[dict[str, Any]], Any]


class _Unsupported(Exception):
    """A construct the closure compiler leaves to celpy's interpreter."""


def _fail(result: Any) -> Any:
    """Raises a CEL error returned as a value by a celpy function; passes other values through."""
    if isinstance(result, CELEvalError):
        raise _evaluation_error(result)
    return result


_NO_SUCH_OVERLOAD = "no such overload"


def _call(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return _fail(function(*args))
    except CelEvaluationError:
        raise
    except ZeroDivisionError:
        raise CelEvaluationError("division by zero") from None
    except (TypeError, AttributeError):
        raise CelEvaluationError(_NO_SUCH_OVERLOAD, no_such_overload=True) from None
    except ValueError as error:
        raise CelEvaluationError(str(error) or "return error for overflow") from None


_BINARY = {
    "relation_lt": "_<_",
    "relation_le": "_<=_",
    "relation_gt": "_>_",
    "relation_ge": "_>=_",
    "relation_eq": "_==_",
    "relation_ne": "_!=_",
    "relation_in": "_in_",
    "addition_add": "_+_",
    "addition_sub": "_-_",
    "multiplication_mul": "_*_",
    "multiplication_div": "_/_",
    "multiplication_mod": "_%_",
}
_TYPE_NAMES = {
    "int": celtypes.IntType,
    "uint": celtypes.UintType,
    "double": celtypes.DoubleType,
    "bool": celtypes.BoolType,
    "string": celtypes.StringType,
    "bytes": celtypes.BytesType,
    "list": celtypes.ListType,
    "map": celtypes.MapType,
    "null_type": type(None),
}
_MACROS = frozenset(("all", "exists", "exists_one", "map", "filter"))


def _is_bool(value: Any, wanted: bool) -> bool:
    return isinstance(value, celtypes.BoolType) and bool(value) is wanted


class _Compiler:
    """Parse tree -> closure taking the activation (a dict of names to CEL values)."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]]):
        self.functions = functions

    def compile(self, tree: lark.Tree) -> Evaluator:
        handler = getattr(self, f"_{tree.data}", None)
        if handler is None:
            raise _Unsupported(tree.data)
        return handler(tree)

    def _single(self, tree: lark.Tree) -> Evaluator:
        if len(tree.children) != 1:
            raise _Unsupported(tree.data)
        return self.compile(tree.children[0])

    def _expr(self, tree: lark.Tree) -> Evaluator:
        if len(tree.children) == 1:
            return self.compile(tree.children[0])
        condition, when_true, when_false = (self.compile(child) for child in tree.children)

        def ternary(act: dict[str, Any]) -> Any:
            chosen = condition(act)
            if not isinstance(chosen, celtypes.BoolType):
                raise CelEvaluationError(_NO_SUCH_OVERLOAD, no_such_overload=True)
            return when_true(act) if chosen else when_false(act)

        return ternary

    def _conditionalor(self, tree: lark.Tree) -> Evaluator:
        return self._logical(tree, absorbing=True)

    def _conditionaland(self, tree: lark.Tree) -> Evaluator:
        return self._logical(tree, absorbing=False)

    def _logical(self, tree: lark.Tree, *, absorbing: bool) -> Evaluator:
        """|| (absorbing true) and && (absorbing false), commutative for errors as CEL specifies."""
        if len(tree.children) == 1:
            return self.compile(tree.children[0])
        left, right = (self.compile(child) for child in tree.children)
        absorbing_value = celtypes.BoolType(absorbing)
        other_value = celtypes.BoolType(not absorbing)

        def logical(act: dict[str, Any]) -> Any:
            error = None
            try:
                first = left(act)
            except CelEvaluationError as failure:
                error = failure
            else:
                if _is_bool(first, absorbing):
                    return absorbing_value
                if not isinstance(first, celtypes.BoolType):
                    error = CelEvaluationError(_NO_SUCH_OVERLOAD, no_such_overload=True)
            second = right(act)
            if _is_bool(second, absorbing):
                return absorbing_value
            if not isinstance(second, celtypes.BoolType):
                raise CelEvaluationError(_NO_SUCH_OVERLOAD, no_such_overload=True)
            if error is not None:
                raise error
            return other_value

        return logical

    def _binary(self, tree: lark.Tree) -> Evaluator:
        if len(tree.children) == 1:
            return self.compile(tree.children[0])
        operator_tree, right_tree = tree.children
        function = self.functions[_BINARY[operator_tree.data]]
        left = self._single(operator_tree)
        right = self.compile(right_tree)
        return lambda act: _call(function, left(act), right(act))

    _relation = _binary
    _addition = _binary
    _multiplication = _binary

    def _unary(self, tree: lark.Tree) -> Evaluator:
        if len(tree.children) == 1:
            return self.compile(tree.children[0])
        operator_tree, operand_tree = tree.children
        operand = self.compile(operand_tree)
        function = self.functions["!_" if operator_tree.data == "unary_not" else "-_"]
        return lambda act: _call(function, operand(act))

    _member = _single
    _primary = _single
    _paren_expr = _single

    def _literal(self, tree: lark.Tree) -> Evaluator:
        token = tree.children[0]
        kinds = {
            "FLOAT_LIT": celtypes.DoubleType,
            "INT_LIT": celtypes.IntType,
            "BOOL_LIT": lambda text: celtypes.BoolType(text == "true"),
            "NULL_LIT": lambda text: None,
            "STRING_LIT": lambda text: celpy.evaluation.celstr(token),
            "MLSTRING_LIT": lambda text: celpy.evaluation.celstr(token),
            "BYTES_LIT": lambda text: celpy.evaluation.celbytes(token),
        }
        if token.type not in kinds:
            raise _Unsupported(token.type)
        value = kinds[token.type](token.value)
        return lambda act: value

    def _ident(self, tree: lark.Tree) -> Evaluator:
        name = tree.children[0].value
        type_value = _TYPE_NAMES.get(name)

        def ident(act: dict[str, Any]) -> Any:
            try:
                return act[name]
            except KeyError:
                if type_value is not None:
                    return type_value
                raise CelEvaluationError(f"undeclared reference to '{name}'") from None

        return ident

    def _member_dot(self, tree: lark.Tree) -> Evaluator:
        member_tree, name_token = tree.children
        member = self.compile(member_tree)
        key = celtypes.StringType(name_token.value)

        def select(act: dict[str, Any]) -> Any:
            container = member(act)
            if isinstance(container, dict):
                try:
                    return container[key]
                except KeyError:
                    raise CelEvaluationError(f"no such key: {key}") from None
            raise CelEvaluationError(_NO_SUCH_OVERLOAD, no_such_overload=True)

        return select

    def _member_index(self, tree: lark.Tree) -> Evaluator:
        member_tree, index_tree = tree.children
        member = self.compile(member_tree)
        index = self.compile(index_tree)

        def item(act: dict[str, Any]) -> Any:
            container = member(act)
            position = index(act)
            if isinstance(container, dict):
                try:
                    return container[position]
                except (KeyError, TypeError):
                    raise CelEvaluationError(f"no such key: {position}") from None
            if isinstance(container, list) and isinstance(position, int) and not isinstance(position, bool):
                if 0 <= position < len(container):
                    return container[position]
                raise CelEvaluationError(f"index '{position}' out of range in list size '{len(container)}'")
            raise CelEvaluationError(_NO_SUCH_OVERLOAD, no_such_overload=True)

        return item

    def _arguments(self, tree: lark.Tree | None) -> list[Evaluator]:
        if tree is None:
            return []
        if tree.data != "exprlist":
            raise _Unsupported(tree.data)
        return [self.compile(child) for child in tree.children]

    def _ident_arg(self, tree: lark.Tree) -> Evaluator:
        name = tree.children[0].value
        argument_tree = tree.children[1] if len(tree.children) > 1 else None
        if name == "has":
            return self._has(argument_tree)
        if name == "dyn":
            (argument,) = self._arguments(argument_tree)
            return argument
        function = self.functions.get(name)
        if function is None:
            raise _Unsupported(name)
        arguments = self._arguments(argument_tree)
        return lambda act: _call(function, *(argument(act) for argument in arguments))

    def _has(self, argument_tree: lark.Tree | None) -> Evaluator:
        """has(e.f): whether map e has key f (an error when e itself cannot be evaluated)."""
        if argument_tree is None or len(argument_tree.children) != 1:
            raise _Unsupported("has")
        node = argument_tree.children[0]
        while (
            node.data
            in (
                "expr",
                "conditionalor",
                "conditionaland",
                "relation",
                "addition",
                "multiplication",
                "unary",
                "member",
            )
            and len(node.children) == 1
        ):
            node = node.children[0]
        if node.data != "member_dot":
            raise _Unsupported("has")
        member = self.compile(node.children[0])
        key = celtypes.StringType(node.children[1].value)

        def has(act: dict[str, Any]) -> Any:
            container = member(act)
            if isinstance(container, dict):
                return _TRUE if key in container else _FALSE
            raise CelEvaluationError(_NO_SUCH_OVERLOAD, no_such_overload=True)

        return has

    def _member_dot_arg(self, tree: lark.Tree) -> Evaluator:
        member_tree, name_token = tree.children[0], tree.children[1]
        argument_tree = tree.children[2] if len(tree.children) > 2 else None
        name = name_token.value
        if name in _MACROS:
            return self._macro(name, self.compile(member_tree), argument_tree)
        function = self.functions.get(name)
        if function is None:
            raise _Unsupported(name)
        member = self.compile(member_tree)
        arguments = self._arguments(argument_tree)
        return lambda act: _call(function, member(act), *(argument(act) for argument in arguments))

    def _macro(self, name: str, target: Evaluator, argument_tree: lark.Tree | None) -> Evaluator:
        if argument_tree is None or len(argument_tree.children) not in (2, 3):
            raise _Unsupported(name)
        variable_tree, *body_trees = argument_tree.children
        variable = _bound_name(variable_tree)
        bodies = [self.compile(body) for body in body_trees]
        if len(bodies) == 2 and name != "map":
            raise _Unsupported(name)

        def items(act: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
            source = target(act)
            if not isinstance(source, list | dict):
                raise CelEvaluationError(_NO_SUCH_OVERLOAD, no_such_overload=True)
            scoped = []
            for item in source:
                inner = dict(act)
                inner[variable] = item
                scoped.append((inner, item))
            return scoped

        predicate = bodies[0]
        if name in ("all", "exists"):
            decisive = name == "exists"  # `exists` stops at a true, `all` at a false

            def quantifier(act: dict[str, Any]) -> Any:
                error = None
                for inner, _ in items(act):
                    try:
                        result = predicate(inner)
                    except CelEvaluationError as failure:
                        error = error or failure
                        continue
                    if not isinstance(result, celtypes.BoolType):
                        error = error or CelEvaluationError(_NO_SUCH_OVERLOAD, no_such_overload=True)
                    elif bool(result) is decisive:
                        return _TRUE if decisive else _FALSE
                if error is not None:
                    raise error
                return _FALSE if decisive else _TRUE

            return quantifier
        if name == "exists_one":

            def exactly_one(act: dict[str, Any]) -> Any:
                count = sum(1 for inner, _ in items(act) if _is_bool(predicate(inner), True))
                return _TRUE if count == 1 else _FALSE

            return exactly_one
        if name == "filter":
            return lambda act: celtypes.ListType(
                [item for inner, item in items(act) if _is_bool(predicate(inner), True)]
            )
        transform = bodies[-1]
        if len(bodies) == 2:
            return lambda act: celtypes.ListType(
                [transform(inner) for inner, _ in items(act) if _is_bool(predicate(inner), True)]
            )
        return lambda act: celtypes.ListType([transform(inner) for inner, _ in items(act)])

    def _list_lit(self, tree: lark.Tree) -> Evaluator:
        elements = self._arguments(tree.children[0] if tree.children else None)
        return lambda act: celtypes.ListType([element(act) for element in elements])

    def _map_lit(self, tree: lark.Tree) -> Evaluator:
        if not tree.children:
            return lambda act: celtypes.MapType({})
        parts = [self.compile(child) for child in tree.children[0].children]
        pairs = list(zip(parts[0::2], parts[1::2], strict=True))
        return lambda act: celtypes.MapType({key(act): value(act) for key, value in pairs})


def _bound_name(tree: lark.Tree) -> str:
    """The variable of a macro (`x` in `self.all(x, ...)`), which must be a plain identifier."""
    node = tree
    while isinstance(node, lark.Tree) and len(node.children) == 1 and node.data != "ident":
        node = node.children[0]
    if not isinstance(node, lark.Tree) or node.data != "ident":
        raise _Unsupported("macro variable")
    return str(node.children[0].value)


def _comparison(compare: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """celpy's `boolean(operator.xx)` without building a wrapper at every call."""

    def boolean(left: Any, right: Any) -> Any:
        return _TRUE if compare(left, right) else _FALSE

    return boolean


def _not(value: Any) -> Any:
    if not isinstance(value, celtypes.BoolType):
        raise TypeError(f"not {type(value)}")
    return _FALSE if value else _TRUE


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **celpy.evaluation.base_functions,
    **KUBERNETES_FUNCTIONS,
    "_<_": _comparison(operator.lt),
    "_<=_": _comparison(operator.le),
    "_>_": _comparison(operator.gt),
    "_>=_": _comparison(operator.ge),
    "_==_": _comparison(operator.eq),
    "_!=_": _comparison(operator.ne),
    "!_": _not,
}
_COMPILER = _Compiler(_FUNCTIONS)


# --- compiling and evaluating -------------------------------------------------------------------------------------

_ENVIRONMENT = celpy.Environment()


@dataclass(frozen=True, eq=False)
class CompiledRule:
    """One parsed rule (or message expression), ready to run any number of times."""

    source: str
    uses_old_self: bool
    program: celpy.Runner
    fast: Evaluator | None = None  # the closure evaluator, when the rule is in its subset

    def run(self, activation: dict[str, Any]) -> Any:
        """Evaluates with already converted values; returns the CEL result or raises `CelEvaluationError`."""
        if self.fast is not None:
            try:
                return self.fast(activation)
            except CelEvaluationError:
                raise
            except RecursionError:
                raise CelEvaluationError("max recursion depth exceeded") from None
        return self.interpret(activation)

    def interpret(self, activation: dict[str, Any]) -> Any:
        """Evaluates with celpy's own interpreter (the reference the fast evaluator is tested against)."""
        try:
            result = self.program.evaluate(activation)
        except CELEvalError as error:
            raise _evaluation_error(error) from None
        except (RecursionError, TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
            raise CelEvaluationError(str(error) or type(error).__name__) from None
        if isinstance(result, CELEvalError):
            raise _evaluation_error(result)
        return result

    def evaluate(self, self_value: Any, old_self: Any = None, *, optional_old_self: bool = False) -> bool:
        """True when the rule holds for decoded JSON values. `old_self` binds ``oldSelf`` (None: no old value, as
        for the apiserver, where a null old value counts as absent); with `optional_old_self` it is an optional."""
        activation = {"self": to_cel(self_value)}
        if optional_old_self:
            present = old_self is not None
            activation["oldSelf"] = OptionalValue(to_cel(old_self) if present else None, present=present)
        elif old_self is not None:
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
    try:
        fast: Evaluator | None = _COMPILER.compile(tree)
    except (_Unsupported, KeyError, ValueError):
        fast = None
    return CompiledRule(source=rule, uses_old_self=_uses_old_self(tree), program=program, fast=fast)


def evaluate(rule: str, self_value: Any, old_self: Any = None) -> bool:
    """Compiles (cached) and evaluates `rule` on decoded JSON values; `old_self` (when not None) binds
    ``oldSelf``. Raises `CelCompileError` or `CelEvaluationError`."""
    return compile_rule(rule).evaluate(self_value, old_self)


def message_of(result: Any) -> str | None:
    """The text of a messageExpression result, or None when it is not a string."""
    return str(result) if isinstance(result, str) else None


def is_true(result: Any) -> bool:
    return isinstance(result, celtypes.BoolType) and bool(result)
