"""Label and field selectors (the ``labelSelector`` and ``fieldSelector`` query parameters), as the apiserver parses
and matches them (k8s.io/apimachinery ``pkg/labels/selector.go`` and ``pkg/fields/selector.go``).

Syntax errors raise `SelectorError`, an `errors.ApiError` (400 BadRequest) carrying the apiserver's message, such
as ``unable to parse requirement: found '', expected: identifier``: the server should let it through as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from .errors import ApiError, Cause, aggregate, field_invalid, go_quote

__all__ = [
    "EVENT_FIELD_LABELS",
    "FieldSelector",
    "FieldTerm",
    "LabelSelector",
    "Requirement",
    "SelectorError",
    "field_value",
    "parse_field_selector",
    "parse_label_selector",
]


class SelectorError(ApiError):
    """A selector that does not parse: 400 BadRequest with the apiserver's message."""

    def __init__(self, message: str):
        super().__init__(400, "BadRequest", message)


# --- label selectors ------------------------------------------------------------------------------------------------


class Operator(StrEnum):
    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"
_INT64 = re.compile(r"^[+-]?[0-9]+$")


@dataclass(frozen=True)
class Requirement:
    """One comma-separated term: a key, an operator and its values (sorted, as a Go string set)."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if self.operator in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return present
        if self.operator is Operator.DOES_NOT_EXIST:
            return not present
        if not present or len(self.values) != 1:
            return False
        label_value = _parse_int64(labels[self.key])
        bound = _parse_int64(self.values[0])
        if label_value is None or bound is None:
            return False
        return label_value > bound if self.operator is Operator.GREATER_THAN else label_value < bound

    def __str__(self) -> str:
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if self.operator in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {self.operator.value} ({','.join(self.values)})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(self.operator, self.operator.value)
        return f"{self.key}{symbol}{self.values[0] if self.values else ''}"


def _parse_int64(text: str) -> int | None:
    if not _INT64.match(text):
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


@dataclass(frozen=True)
class LabelSelector:
    """The AND of requirements, sorted by key; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


class _Token(Enum):
    ERROR = 0
    END = 1
    CLOSED_PAR = 2
    COMMA = 3
    DOES_NOT_EXIST = 4
    DOUBLE_EQUALS = 5
    EQUALS = 6
    GREATER_THAN = 7
    IDENTIFIER = 8
    IN = 9
    LESS_THAN = 10
    NOT_EQUALS = 11
    NOT_IN = 12
    OPEN_PAR = 13


_KEYWORDS = {
    ")": _Token.CLOSED_PAR,
    ",": _Token.COMMA,
    "!": _Token.DOES_NOT_EXIST,
    "==": _Token.DOUBLE_EQUALS,
    "=": _Token.EQUALS,
    ">": _Token.GREATER_THAN,
    "in": _Token.IN,
    "<": _Token.LESS_THAN,
    "!=": _Token.NOT_EQUALS,
    "notin": _Token.NOT_IN,
    "(": _Token.OPEN_PAR,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[_Token, str]]:
    """The Go lexer: identifiers run until a special symbol or whitespace; symbols are matched greedily."""
    items: list[tuple[_Token, str]] = []
    position = 0
    while True:
        while position < len(text) and text[position] in _WHITESPACE:
            position += 1
        if position >= len(text):
            items.append((_Token.END, ""))
            return items
        if text[position] in _SPECIAL:
            buffer = ""
            last: tuple[_Token, str] | None = None
            while position < len(text) and text[position] in _SPECIAL:
                candidate = buffer + text[position]
                if candidate in _KEYWORDS:
                    buffer = candidate
                    last = (_KEYWORDS[candidate], candidate)
                    position += 1
                elif last is not None:
                    break
                else:
                    buffer = candidate
                    position += 1
            items.append(last or (_Token.ERROR, f"error expected: keyword found '{buffer}'"))
        else:
            start = position
            while (
                position < len(text) and text[position] not in _SPECIAL and text[position] not in _WHITESPACE
            ):
                position += 1
            word = text[start:position]
            items.append((_KEYWORDS.get(word, _Token.IDENTIFIER), word))


class _LabelParser:
    def __init__(self, text: str):
        self.items = _lex(text)
        self.position = 0

    def lookahead(self, values: bool) -> tuple[_Token, str]:
        return self._as_context(self.items[self.position], values)

    def consume(self, values: bool) -> tuple[_Token, str]:
        item = self.items[self.position]
        self.position += 1
        return self._as_context(item, values)

    @staticmethod
    def _as_context(item: tuple[_Token, str], values: bool) -> tuple[_Token, str]:
        token, literal = item
        if values and token in (_Token.IN, _Token.NOT_IN):
            return _Token.IDENTIFIER, literal
        return token, literal

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token, literal = self.lookahead(values=True)
            if token in (_Token.IDENTIFIER, _Token.DOES_NOT_EXIST):
                try:
                    requirements.append(self.requirement())
                except _ParseError as error:
                    raise _ParseError(f"unable to parse requirement: {error}") from None
                token, literal = self.consume(values=True)
                if token is _Token.END:
                    return requirements
                if token is not _Token.COMMA:
                    raise _ParseError(f"found '{literal}', expected: ',' or 'end of string'")
                following, following_literal = self.lookahead(values=True)
                if following not in (_Token.IDENTIFIER, _Token.DOES_NOT_EXIST):
                    raise _ParseError(f"found '{following_literal}', expected: identifier after ','")
            elif token is _Token.END:
                return requirements
            else:
                raise _ParseError(f"found '{literal}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        operator: Operator | None = None
        token, literal = self.consume(values=True)
        if token is _Token.DOES_NOT_EXIST:
            operator = Operator.DOES_NOT_EXIST
            token, literal = self.consume(values=True)
        if token is not _Token.IDENTIFIER:
            raise _ParseError(f"found '{literal}', expected: identifier")
        key = literal
        key_problems = _qualified_name_problems(key)
        if key_problems:
            raise _ParseError(str(field_invalid("", key, "; ".join(key_problems))))
        following, _ = self.lookahead(values=True)
        if following in (_Token.END, _Token.COMMA) and operator is None:
            operator = Operator.EXISTS
        if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            return Requirement(key, operator)
        operator = self.operator()
        if operator in (Operator.IN, Operator.NOT_IN):
            values = self.value_set()
        else:
            values = self.exact_value()
        return _new_requirement(key, operator, sorted(values))

    def operator(self) -> Operator:
        token, literal = self.consume(values=False)
        operators = {
            _Token.IN: Operator.IN,
            _Token.EQUALS: Operator.EQUALS,
            _Token.DOUBLE_EQUALS: Operator.DOUBLE_EQUALS,
            _Token.GREATER_THAN: Operator.GREATER_THAN,
            _Token.LESS_THAN: Operator.LESS_THAN,
            _Token.NOT_IN: Operator.NOT_IN,
            _Token.NOT_EQUALS: Operator.NOT_EQUALS,
        }
        if token not in operators:
            raise _ParseError(f"found '{literal}', expected: {_BINARY_OPERATORS}")
        return operators[token]

    def value_set(self) -> set[str]:
        token, literal = self.consume(values=True)
        if token is not _Token.OPEN_PAR:
            raise _ParseError(f"found '{literal}' expected: '('")
        token, literal = self.lookahead(values=True)
        if token in (_Token.IDENTIFIER, _Token.COMMA):
            values = self.identifiers()
            closing, _ = self.consume(values=True)
            if closing is not _Token.CLOSED_PAR:
                raise _ParseError(f"found '{literal}', expected: ')'")
            return values
        if token is _Token.CLOSED_PAR:
            self.consume(values=True)
            return {""}
        raise _ParseError(f"found '{literal}', expected: ',', ')' or identifier")

    def identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            token, literal = self.consume(values=True)
            if token is _Token.IDENTIFIER:
                values.add(literal)
                following, following_literal = self.lookahead(values=True)
                if following is _Token.COMMA:
                    continue
                if following is _Token.CLOSED_PAR:
                    return values
                raise _ParseError(f"found '{following_literal}', expected: ',' or ')'")
            if token is _Token.COMMA:
                if not values:
                    values.add("")
                following, _ = self.lookahead(values=True)
                if following is _Token.CLOSED_PAR:
                    values.add("")
                    return values
                if following is _Token.COMMA:
                    self.consume(values=True)
                    values.add("")
                continue
            raise _ParseError(f"found '{literal}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        token, _ = self.lookahead(values=True)
        if token in (_Token.END, _Token.COMMA):
            return {""}
        token, literal = self.consume(values=True)
        if token is _Token.IDENTIFIER:
            return {literal}
        raise _ParseError(f"found '{literal}', expected: identifier")


class _ParseError(Exception):
    pass


_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME = re.compile(f"^{_QUALIFIED_NAME_FMT}$")
_QUALIFIED_NAME_MESSAGE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    f"character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{_QUALIFIED_NAME_FMT}')"
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = f"{_DNS1123_LABEL_FMT}(\\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1123_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    f"and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    f"'{_DNS1123_SUBDOMAIN_FMT}')"
)
_LABEL_VALUE_FMT = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
    f"and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    f"validation is '{_LABEL_VALUE_FMT}')"
)


def _qualified_name_problems(value: str) -> list[str]:
    """validation.IsQualifiedName: an optional DNS subdomain prefix and '/', then a name of up to 63 characters."""
    problems: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                problems.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN.match(prefix):
                problems.append("prefix part " + _DNS1123_SUBDOMAIN_MESSAGE)
    else:
        return [
            "a qualified name "
            + _QUALIFIED_NAME_MESSAGE
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if not _QUALIFIED_NAME.match(name):
        problems.append("name part " + _QUALIFIED_NAME_MESSAGE)
    return problems


def _new_requirement(key: str, operator: Operator, values: list[str]) -> Requirement:
    """labels.NewRequirement's checks of the values (the key was checked while parsing)."""
    causes: list[Cause] = []
    if operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
        for index, value in enumerate(values):
            if _parse_int64(value) is None:
                causes.append(
                    field_invalid(
                        f"values[{index}]", value, "for 'Gt', 'Lt' operators, the value must be an integer"
                    )
                )
    for index, value in enumerate(values):
        problems = []
        if len(value) > 63:
            problems.append("must be no more than 63 characters")
        if not _LABEL_VALUE.match(value):
            problems.append(_LABEL_VALUE_MESSAGE)
        if problems:
            causes.append(field_invalid(f"values[{index}][{key}]", value, "; ".join(problems)))
    if causes:
        raise _ParseError(aggregate(causes))
    return Requirement(key, operator, tuple(values))


def parse_label_selector(text: str) -> LabelSelector:
    """Parses a label selector (``app=web,tier in (a,b),!legacy``); raises `SelectorError` (400)."""
    try:
        requirements = _LabelParser(text).parse()
    except _ParseError as error:
        raise SelectorError(str(error)) from None
    return LabelSelector(tuple(sorted(requirements, key=lambda requirement: requirement.key)))


# --- field selectors ------------------------------------------------------------------------------------------------

# Field labels of core/v1 Events whose value is not at the same JSON path (event strategy's ToSelectableFields).
EVENT_FIELD_LABELS = {"source": "source.component"}


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negated: bool = False

    def matches(self, obj: Mapping[str, Any], aliases: Mapping[str, str]) -> bool:
        actual = field_value(obj, aliases.get(self.field, self.field))
        return (actual != self.value) if self.negated else (actual == self.value)

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        return f"{self.field}{'!=' if self.negated else '='}{escaped}"


@dataclass(frozen=True)
class FieldSelector:
    """The AND of ``field=value`` / ``field!=value`` terms; the empty selector matches everything."""

    terms: tuple[FieldTerm, ...] = ()
    aliases: Mapping[str, str] | None = None

    def fields(self) -> list[str]:
        """The field labels used, for the server to check against those the resource supports."""
        return [term.field for term in self.terms]

    def unsupported(self, supported: Iterable[str]) -> list[str]:
        allowed = set(supported)
        return [term.field for term in self.terms if term.field not in allowed]

    def check_supported(self, supported: Iterable[str]) -> None:
        """Raises the apiserver's 400 ``field label not supported: <label>`` for the first unsupported label."""
        unsupported = self.unsupported(supported)
        if unsupported:
            raise SelectorError(f"field label not supported: {unsupported[0]}")

    def matches(self, obj: Mapping[str, Any]) -> bool:
        aliases = self.aliases or {}
        return all(term.matches(obj, aliases) for term in self.terms)

    def exact(self, field: str) -> str | None:
        """The value `field` must equal, when a term requires it (RequiresExactMatch)."""
        for term in self.terms:
            if term.field == field and not term.negated:
                return term.value
        return None

    @property
    def empty(self) -> bool:
        return not self.terms

    def __str__(self) -> str:
        return ",".join(str(term) for term in self.terms)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The value of a dotted field label as the field set holds it: strings as is, booleans and numbers as
    text, missing fields as ""."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return ""
        current = current[part]
    if current is None or isinstance(current, dict | list):
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    start = 0
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for index in range(len(term)):
        for operator in ("!=", "==", "="):
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


def _unescape(value: str) -> str:
    if not any(char in value for char in "\\,="):
        return value
    out: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{char}")
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(char)}")
        else:
            out.append(char)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(text: str, *, aliases: Mapping[str, str] | None = None) -> FieldSelector:
    """Parses a field selector (``metadata.name=x,status.phase!=Failed``); raises `SelectorError` (400).

    `aliases` maps field labels to the JSON paths that hold their values (`EVENT_FIELD_LABELS` for Events).
    """
    terms: list[FieldTerm] = []
    for part in sorted(_split_terms(text)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, operator, raw_value = split
        terms.append(FieldTerm(field, _unescape(raw_value), negated=operator == "!="))
    return FieldSelector(tuple(terms), aliases)


def describe(selector: LabelSelector | FieldSelector) -> str:
    """The selector as text, quoted as in the apiserver's messages."""
    return go_quote(str(selector))
