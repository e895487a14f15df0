"""The semantics of one CRD version's structural schema (`openAPIV3Schema`): pruning, defaulting, validation.

Each part follows the apiserver's code, so that the emulator accepts, changes and rejects exactly what a cluster
would, with the same messages:
- `prune` (apiextensions-apiserver `schema/pruning`): drops fields the schema does not declare, except under
  ``x-kubernetes-preserve-unknown-fields`` and the root's apiVersion, kind and metadata; returns their paths
  (``spec.foo``), which the server reports as ``unknown field "spec.foo"`` warnings or strict-mode errors;
- `prune_nulls` (``PruneNonNullableNullsWithoutDefaults``) and `apply_defaults` (``defaulting.Default``), which the
  apiserver applies after pruning, both to request bodies and to what it reads from storage; `normalize` does all
  three in that order;
- `validate` (kube-openapi's validator as `apiextensions-apiserver/pkg/apiserver/validation` converts its errors,
  then list-type uniqueness, then the CEL rules of ``x-kubernetes-validations``), with validation ratcheting on
  updates (Kubernetes >= 1.30): an error in a part of the object that the update did not change is dropped, and so
  is a rule without ``oldSelf`` on an unchanged value. Transition rules (``oldSelf``) run only when the old value
  exists (or with ``optionalOldSelf``). When a blocking error (required, type, enum, too long, too many) is found,
  the rules are skipped and the apiserver's "some validation rules were not checked" error is added.

Deliberate differences, all in favour of speed: a rule without ``oldSelf`` is not evaluated at all on an unchanged
value (the apiserver evaluates it and turns a failure into a warning, but still reports an evaluation error), and
this also holds for status updates (which the apiserver does not ratchet). CEL rules inside ``allOf`` are ignored.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import re2

from . import cel
from .errors import (
    FIELD_VALUE_DUPLICATE,
    FIELD_VALUE_FORBIDDEN,
    FIELD_VALUE_INVALID,
    FIELD_VALUE_NOT_SUPPORTED,
    FIELD_VALUE_REQUIRED,
    FIELD_VALUE_TOO_LONG,
    FIELD_VALUE_TOO_MANY,
    FIELD_VALUE_TYPE_INVALID,
    NIL_PATH,
    Cause,
    GoStruct,
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_not_supported,
    field_required,
    field_too_long,
    field_too_many,
    field_type_invalid,
    go_float,
    go_quote,
    go_sharp_v,
)
from .patching import copy_json, json_equal

__all__ = ["SchemaError", "StructuralSchema"]

_ABSENT: Any = object()
_META_FIELDS = frozenset(("apiVersion", "kind", "metadata"))
_BLOCKING_REASONS = frozenset(
    (
        FIELD_VALUE_NOT_SUPPORTED,
        FIELD_VALUE_REQUIRED,
        FIELD_VALUE_TOO_LONG,
        FIELD_VALUE_TOO_MANY,
        FIELD_VALUE_TYPE_INVALID,
    )
)
RULES_NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)
_SUPPORTED_REASONS = (FIELD_VALUE_DUPLICATE, FIELD_VALUE_FORBIDDEN, FIELD_VALUE_INVALID, FIELD_VALUE_REQUIRED)
_MAX_MESSAGE_EXPRESSION_BYTES = 5 * 1024
_IMMUTABILITY_RULES = frozenset(("self==oldSelf", "oldSelf==self"))


class SchemaError(ValueError):
    """The schema cannot be used (a rule that does not compile, a bad pattern or fieldPath): the CRD is invalid."""

    def __init__(self, causes: list[Cause]):
        super().__init__("; ".join(str(cause) for cause in causes))
        self.causes = causes


# --- Go regular expressions ---------------------------------------------------------------------------------------

_PERL_ONLY = re.compile(r"\(\?[=!<>]|\(\?<[=!]|\\[1-9]|[*+?}]\+|\\Z|\(\?[a-zA-Z]*[^a-zA-Z:)smiU-]")
_ASCII_CLASSES = re.compile(r"\\[dDwWsSbB]")


class GoRegexp:
    """A pattern with Go's RE2 semantics, matched with Python's `re` when that gives the same answer (it is ~15x
    faster than the re2 binding) and with re2 otherwise (``\\p{L}`` classes, text with newlines and ``$``)."""

    __slots__ = ("_python", "_re2", "pattern")

    def __init__(self, pattern: str):
        self.pattern = pattern
        perl_only = _PERL_ONLY.search(pattern)
        if perl_only:
            raise ValueError(
                f"error parsing regexp: invalid or unsupported Perl syntax: `{perl_only.group(0)}`"
            )
        self._re2: Any = None
        self._python: re.Pattern[str] | None = None
        try:
            flags = re.ASCII if _ASCII_CLASSES.search(pattern) else 0
            self._python = re.compile(pattern.replace(r"\z", r"\Z"), flags)
        except re.error:
            self._python = None
        if self._python is None:
            self._compile_re2()

    def _compile_re2(self) -> Any:
        if self._re2 is None:
            try:
                self._re2 = re2.compile(self.pattern)
            except re2.error as error:
                message = (
                    error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else str(error)
                )
                raise ValueError(f"error parsing regexp: {message}") from None
        return self._re2

    def search(self, text: str) -> bool:
        if self._python is not None and not ("\n" in text and "$" in self.pattern):
            return self._python.search(text) is not None
        return self._compile_re2().search(text) is not None


# --- formats (the ones apiextensions-apiserver keeps, checked like kube-openapi's strfmt) -------------------------

_UUID = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_UUID3 = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_UUID4 = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
_UUID5 = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$", re.ASCII)
_TIME = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$")
_IPV4_SLOPPY = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$", re.ASCII)
_MAC = re.compile(
    r"^(?:[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){7}"
    r"|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){19}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2}"
    r"|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){3}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){9})$"
)
_HEXCOLOR = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_RGB_PART = r"\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*"
_RGBCOLOR = re.compile(rf"^rgb\({_RGB_PART},{_RGB_PART},{_RGB_PART}\)$", re.ASCII)
_SSN = re.compile(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$", re.ASCII)
_BSON_ID = re.compile(r"^[0-9a-fA-F]{24}$")
_EMAIL = re.compile(r"^[^\s@<>()\[\]\\,;:\"]+@[^\s@<>()\[\]\\,;:\"]+$")
_GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$|^[-+]?0$")
_LOOSE_DURATION = re.compile(r"((\d+)\s*([A-Za-zµ]+))")
_DURATION_UNITS = (
    ("ns", "nano"),
    ("us", "µs", "micro"),
    ("ms", "milli"),
    ("s", "sec"),
    ("m", "min"),
    ("h", "hr", "hour"),
    ("d", "day"),
    ("w", "wk", "week"),
)


def _is_date(text: str) -> bool:
    match = _DATE.match(text)
    if not match:
        return False
    try:
        date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return False
    return True


def _is_datetime(text: str) -> bool:
    if len(text) < 4:
        return False
    parts = text.lower().split("t")
    if len(parts) < 2 or not _is_date(parts[0]):
        return False
    match = _TIME.match(parts[1])
    return bool(match) and match.group(1) <= "23" and match.group(2) <= "59" and match.group(3) <= "59"


def _is_ipv4(text: str) -> bool:
    match = _IPV4_SLOPPY.match(text)
    if match:
        return all(int(octet) <= 255 for octet in match.groups())
    return "." in text and _is_ipv6_address(text)


def _is_ipv6_address(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_cidr(text: str) -> bool:
    address, slash, bits = text.partition("/")
    if not slash or not bits.isdigit():
        return False
    if _IPV4_SLOPPY.match(address):
        return _is_ipv4(address) and int(bits) <= 32
    return _is_ipv6_address(address) and int(bits) <= 128


def _is_hostname_char(char: str, *, hyphen: bool) -> bool:
    if char.isascii():
        return char.isalnum() or (hyphen and char == "-")
    category = unicodedata.category(char)
    return category.startswith("L") or category.startswith("S")


def _is_hostname(text: str) -> bool:
    if not text or len(text) > 255:
        return False
    labels = text.split(".")
    if any(len(label) > 63 for label in labels):
        return False
    if len(labels) == 1:  # a single label: first char, then an optional hyphen run of up to 62 chars
        label = labels[0]
        return (
            _is_hostname_char(label[0], hyphen=False)
            and len(label) <= 64
            and all(_is_hostname_char(char, hyphen=True) for char in label[1:])
            and not label[1:].startswith("--")
        )
    *domain, top = labels
    if not (2 <= len(top) <= 63 and all(char.isalpha() for char in top)):
        return False
    for label in domain:
        if not label or not _is_hostname_char(label[0], hyphen=False):
            return False
        if len(label) > 1 and (
            not _is_hostname_char(label[-1], hyphen=False)
            or not all(_is_hostname_char(char, hyphen=True) for char in label[1:-1])
        ):
            return False
    return True


def _is_duration(text: str) -> bool:
    if _GO_DURATION.match(text):
        return True
    for _, _count, unit in _LOOSE_DURATION.findall(text):
        unit = unit.strip().lower()
        for variants in _DURATION_UNITS:
            for position, variant in enumerate(variants):
                last = position == len(variants) - 1
                if (last and unit.startswith(variant)) or unit == variant.lower():
                    return True
    return False


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_isbn10(text: str) -> bool:
    digits = re.sub(r"[\s-]", "", text)
    if not re.fullmatch(r"[0-9]{9}[0-9X]", digits):
        return False
    total = sum((10 - i) * (10 if char == "X" else int(char)) for i, char in enumerate(digits))
    return total % 11 == 0


def _is_isbn13(text: str) -> bool:
    digits = re.sub(r"[\s-]", "", text)
    if not re.fullmatch(r"[0-9]{13}", digits):
        return False
    return sum(int(char) * (1 if i % 2 == 0 else 3) for i, char in enumerate(digits)) % 10 == 0


def _is_credit_card(text: str) -> bool:
    digits = re.sub(r"[^0-9]", "", text)
    pattern = (
        r"(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)"
        r"[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}"
        r"|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})"
    )
    return bool(re.fullmatch(pattern, digits)) and _luhn(digits)


_FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "bsonobjectid": lambda text: bool(_BSON_ID.match(text)),
    "uri": lambda text: cel.parse_request_uri(text) is not None,
    "email": lambda text: bool(_EMAIL.match(text.strip().rpartition("<")[2].rstrip(">"))),
    "hostname": _is_hostname,
    "ipv4": _is_ipv4,
    "ipv6": lambda text: ":" in text and _is_ipv6_address(text),
    "cidr": _is_cidr,
    "mac": lambda text: bool(_MAC.match(text)),
    "uuid": lambda text: bool(_UUID.match(text)),
    "uuid3": lambda text: bool(_UUID3.match(text)),
    "uuid4": lambda text: bool(_UUID4.match(text)),
    "uuid5": lambda text: bool(_UUID5.match(text)),
    "isbn": lambda text: _is_isbn10(text) or _is_isbn13(text),
    "isbn10": _is_isbn10,
    "isbn13": _is_isbn13,
    "creditcard": _is_credit_card,
    "ssn": lambda text: bool(_SSN.match(text)),
    "hexcolor": lambda text: bool(_HEXCOLOR.match(text)),
    "rgbcolor": lambda text: bool(_RGBCOLOR.match(text)),
    "byte": lambda text: bool(_BASE64.match(text)),
    "password": lambda text: True,
    "date": _is_date,
    "duration": _is_duration,
    "datetime": _is_datetime,
}


# --- compiled schema nodes ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """One compiled x-kubernetes-validations entry."""

    program: cel.CompiledRule
    rule: str
    message: str
    message_expression: cel.CompiledRule | None
    reason: str | None
    field_path: str  # normalized (``keyName``, ``a.b``, ``[key]``), "" when not set
    optional_old_self: bool
    immutability: bool  # ``self == oldSelf``: true whenever the value is unchanged

    @property
    def uses_old_self(self) -> bool:
        return self.program.uses_old_self

    def error_string(self) -> str:  # ruleErrorString
        return self.message or self.rule.strip()

    def default_message(self) -> str:  # ruleMessageOrDefault
        return self.message or f"failed rule: {self.rule.strip()}"


def _child(path: str, name: str) -> str:
    """field.Path.Child: ``spec`` + ``serverId`` -> ``spec.serverId``."""
    return f"{path}.{name}" if path else name


def _openapi_child(path: str, name: str) -> str:
    """kube-openapi's property path (no leading dot at the root)."""
    return f"{path}.{name}" if path else name


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _rule_struct(rule: Mapping[str, Any]) -> GoStruct:
    """How the apiserver prints an `apiextensions.ValidationRule` in a CRD validation error (``%#v``)."""
    reason = rule.get("reason")
    optional = rule.get("optionalOldSelf")
    return GoStruct(
        "apiextensions.ValidationRule{"
        f"Rule:{go_quote(str(rule.get('rule', '')))}, Message:{go_quote(str(rule.get('message', '')))}, "
        f"MessageExpression:{go_quote(str(rule.get('messageExpression', '')))}, "
        "Reason:"
        + (
            f"(*apiextensions.FieldValueErrorReason)({go_quote(reason)})"
            if reason
            else "(*apiextensions.FieldValueErrorReason)(nil)"
        )
        + f", FieldPath:{go_quote(str(rule.get('fieldPath', '')))}, OptionalOldSelf:"
        + ("(*bool)(nil)" if optional is None else f"(*bool)({'true' if optional else 'false'})")
        + "}"
    )


class _Node:
    """One node of the schema, with everything needed at run time precomputed."""

    __slots__ = (
        "additional_allowed",
        "additional_properties",
        "all_of",
        "any_of",
        "default",
        "defaults_below",
        "embedded",
        "enum",
        "enum_display",
        "exclusive_maximum",
        "exclusive_minimum",
        "format",
        "format_check",
        "format_name",
        "has_default",
        "int_or_string",
        "items",
        "list_map_keys",
        "list_type",
        "max_items",
        "max_length",
        "max_properties",
        "maximum",
        "min_items",
        "min_length",
        "min_properties",
        "minimum",
        "multiple_of",
        "not_",
        "nullable",
        "one_of",
        "pattern",
        "preserve_unknown",
        "properties",
        "regexp",
        "required",
        "rules",
        "rules_below",
        "structure_below",
        "type",
        "type_names",
        "unique_items",
    )

    def __init__(self, raw: Mapping[str, Any], crd_path: str, problems: list[Cause]):
        if not isinstance(raw, Mapping):
            problems.append(field_invalid(crd_path, raw, "must be an object"))
            raw = {}
        self.type: str = str(raw.get("type") or "")
        self.int_or_string: bool = bool(raw.get("x-kubernetes-int-or-string"))
        self.type_names: tuple[str, ...] = (
            ("integer", "string") if self.int_or_string else ((self.type,) if self.type else ())
        )
        self.format: str = str(raw.get("format") or "")
        self.format_name = self.format.replace("-", "")
        self.format_check = _FORMAT_CHECKS.get(
            self.format_name
        )  # unsupported formats are stripped, not checked
        self.nullable: bool = bool(raw.get("nullable"))
        self.preserve_unknown: bool = bool(raw.get("x-kubernetes-preserve-unknown-fields"))
        self.embedded: bool = bool(raw.get("x-kubernetes-embedded-resource"))
        self.list_type: str | None = raw.get("x-kubernetes-list-type")
        self.list_map_keys: tuple[str, ...] = tuple(raw.get("x-kubernetes-list-map-keys") or ())
        self.required: tuple[str, ...] = tuple(raw.get("required") or ())
        self.enum: list[Any] | None = list(raw["enum"]) if raw.get("enum") is not None else None
        self.enum_display: list[str] = [
            item if isinstance(item, str) else _json_text(item) for item in (self.enum or [])
        ]
        self.min_length = _as_int(raw.get("minLength"))
        self.max_length = _as_int(raw.get("maxLength"))
        self.min_items = _as_int(raw.get("minItems"))
        self.max_items = _as_int(raw.get("maxItems"))
        self.min_properties = _as_int(raw.get("minProperties"))
        self.max_properties = _as_int(raw.get("maxProperties"))
        self.minimum: int | float | None = raw.get("minimum")
        self.maximum: int | float | None = raw.get("maximum")
        self.exclusive_minimum: bool = bool(raw.get("exclusiveMinimum"))
        self.exclusive_maximum: bool = bool(raw.get("exclusiveMaximum"))
        self.multiple_of: int | float | None = raw.get("multipleOf")
        self.unique_items: bool = bool(raw.get("uniqueItems"))
        self.has_default: bool = "default" in raw
        self.default: Any = raw.get("default")

        self.pattern: str = str(raw.get("pattern") or "")
        self.regexp: GoRegexp | None = None
        if self.pattern:
            try:
                self.regexp = GoRegexp(self.pattern)
            except ValueError as error:
                problems.append(field_invalid(_child(crd_path, "pattern"), self.pattern, str(error)))

        self.properties: dict[str, _Node] = {
            name: _Node(sub, f"{crd_path}.properties[{name}]", problems)
            for name, sub in (raw.get("properties") or {}).items()
        }
        additional = raw.get("additionalProperties")
        self.additional_allowed: bool | None = additional if isinstance(additional, bool) else None
        self.additional_properties: _Node | None = (
            _Node(additional, f"{crd_path}.additionalProperties", problems)
            if isinstance(additional, Mapping)
            else None
        )
        items = raw.get("items")
        self.items: _Node | None = (
            _Node(items, f"{crd_path}.items", problems) if isinstance(items, Mapping) else None
        )
        self.all_of = tuple(
            _Node(sub, f"{crd_path}.allOf[{i}]", problems) for i, sub in enumerate(raw.get("allOf") or ())
        )
        self.any_of = tuple(
            _Node(sub, f"{crd_path}.anyOf[{i}]", problems) for i, sub in enumerate(raw.get("anyOf") or ())
        )
        self.one_of = tuple(
            _Node(sub, f"{crd_path}.oneOf[{i}]", problems) for i, sub in enumerate(raw.get("oneOf") or ())
        )
        self.not_: _Node | None = (
            _Node(raw["not"], f"{crd_path}.not", problems) if isinstance(raw.get("not"), Mapping) else None
        )
        self.rules: tuple[_Rule, ...] = self._compile_rules(
            raw.get("x-kubernetes-validations") or (), crd_path, problems
        )

        children = [*self.properties.values(), self.additional_properties, self.items]
        self.rules_below: bool = bool(self.rules) or any(child.rules_below for child in children if child)
        self.defaults_below: bool = any(
            child.has_default or child.defaults_below for child in children if child
        ) or (self.items is not None and self.items.has_default)
        # list-type sets and maps, or embedded resources, here or below: the checks made after the schema's
        self.structure_below: bool = (self.type == "array" and self.list_type in ("set", "map")) or any(
            child.structure_below or child.embedded for child in children if child
        )

    def _compile_rules(self, raws: Iterable[Any], crd_path: str, problems: list[Cause]) -> tuple[_Rule, ...]:
        rules = []
        for index, raw in enumerate(raws):
            where = f"{crd_path}.x-kubernetes-validations[{index}]"
            if not isinstance(raw, Mapping):
                problems.append(field_invalid(where, raw, "must be an object"))
                continue
            source = str(raw.get("rule") or "")
            if not source.strip():
                problems.append(field_required(f"{where}.rule", "rule is not specified"))
                continue
            reason = raw.get("reason")
            if reason is not None and reason not in _SUPPORTED_REASONS:
                problems.append(field_not_supported(f"{where}.reason", reason, sorted(_SUPPORTED_REASONS)))
                continue
            field_path = ""
            if raw.get("fieldPath"):
                try:
                    field_path = self._normalize_field_path(str(raw["fieldPath"]))
                except ValueError:
                    problems.append(
                        field_invalid(
                            f"{where}.fieldPath", raw["fieldPath"], "fieldPath must be a valid path"
                        )
                    )
                    continue
            try:
                program = cel.compile_rule(source)
            except cel.CelCompileError as error:
                problems.append(field_invalid(f"{where}.rule", _rule_struct(raw), str(error)))
                continue
            message_expression = None
            if raw.get("messageExpression"):
                try:
                    message_expression = cel.compile_rule(str(raw["messageExpression"]))
                except cel.CelCompileError as error:
                    problems.append(
                        field_invalid(f"{where}.messageExpression", _rule_struct(raw), str(error))
                    )
                    continue
            optional_old_self = bool(raw.get("optionalOldSelf"))
            if optional_old_self and not program.uses_old_self:
                problems.append(
                    field_invalid(
                        f"{where}.optionalOldSelf", True, "may not be set if oldSelf is not used in rule"
                    )
                )
                continue
            rules.append(
                _Rule(
                    program=program,
                    rule=source,
                    message=str(raw.get("message") or "").strip(),
                    message_expression=message_expression,
                    reason=reason,
                    field_path=field_path,
                    optional_old_self=optional_old_self,
                    immutability=re.sub(r"\s+", "", source) in _IMMUTABILITY_RULES,
                )
            )
        return tuple(rules)

    def _normalize_field_path(self, json_path: str) -> str:
        """A rule's fieldPath (``.keyName``, ``.a['b.c']``) as field.Path prints it; ValueError when invalid."""
        tokens = re.findall(r"\.|\[|\]|'(?:[^'\\]|\\.)*'|[^.\[\]']+", json_path)
        if "".join(tokens) != json_path:
            raise ValueError(json_path)
        node: _Node | None = self
        parts: list[str] = []
        position = 0
        while position < len(tokens):
            piece = tokens[position]
            if piece == ".":
                name = tokens[position + 1] if position + 1 < len(tokens) else ""
                position += 2
            elif piece == "[":
                if (
                    position + 2 >= len(tokens)
                    or tokens[position + 2] != "]"
                    or not tokens[position + 1].startswith("'")
                ):
                    raise ValueError(json_path)
                name = re.sub(r"\\(.)", r"\1", tokens[position + 1][1:-1])
                position += 3
            else:
                raise ValueError(json_path)
            if node is None or not name:
                raise ValueError(json_path)
            if node.properties:
                node = node.properties.get(name)
                if node is None:
                    raise ValueError(json_path)
                parts.append(("." if parts else "") + name)
            elif node.additional_properties is not None:
                node = node.additional_properties
                parts.append(f"[{name}]")
            else:
                raise ValueError(json_path)
        return "".join(parts)

    # CelShape protocol (used by cel.to_cel): type, format, int_or_string, properties, additional_properties, items


def _json_text(value: Any) -> str:
    """Go's json.Marshal of an enum value (for messages)."""
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- the schema ---------------------------------------------------------------------------------------------------


class StructuralSchema:
    """The compiled `openAPIV3Schema` of one CRD version.

    Compile once per CRD version (rules and patterns are compiled here) and reuse for every object. Raises
    `SchemaError` when a rule does not compile, a pattern is not RE2 or a fieldPath does not exist; the causes'
    fields start with `field_path` (``spec.versions[0].schema.openAPIV3Schema`` for the server's 422).
    """

    def __init__(
        self, openapi_v3_schema: Mapping[str, Any], *, field_path: str = "spec.validation.openAPIV3Schema"
    ):
        problems: list[Cause] = []
        self.root = _Node(openapi_v3_schema or {}, field_path, problems)
        if problems:
            raise SchemaError(problems)
        status = self.root.properties.get("status")
        self.status: _Node | None = status

    # --- pruning and defaulting ---

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Removes undeclared fields in place; returns their paths sorted (``spec.foo``, ``status.items[0].x``)."""
        pruned: list[str] = []
        _prune(obj, self.root, "", pruned, embedded=True)
        pruned.sort()
        return pruned

    def prune_nulls(self, obj: dict[str, Any]) -> None:
        """Removes nulls from non-nullable fields that have no default (the apiserver does it after pruning)."""
        _prune_nulls(obj, self.root)

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        """Sets defaults in place, like the apiserver on every decode (request bodies and reads from storage):
        a missing field with a default gets a copy of it, then defaults apply inside it (so ``default: {}`` on an
        object fills its own defaulted fields); a null in a non-nullable field with a default is replaced."""
        _default(obj, self.root)

    def normalize(self, obj: dict[str, Any]) -> list[str]:
        """Everything the apiserver does to a decoded object before validation: prune, drop nulls, default."""
        pruned = self.prune(obj)
        self.prune_nulls(obj)
        self.apply_defaults(obj)
        return pruned

    # --- validation ---

    def validate(
        self,
        obj: Mapping[str, Any],
        old: Mapping[str, Any] | None = None,
        *,
        extra_causes: Iterable[Cause] = (),
    ) -> list[Cause]:
        """Validates a create (`old` None) or an update of the whole object (not the status subresource).

        `extra_causes` are errors the caller found first (such as metadata validation); they are listed after the
        schema errors, as the apiserver does, and count when deciding whether CEL rules run.
        """
        causes: list[Cause] = []
        old_root = _ABSENT if old is None else old
        _validate_openapi(self.root, obj, old_root, "", "", causes)
        causes.extend(extra_causes)
        if self.root.structure_below:
            _validate_embedded(self.root, obj, "", causes, is_root=True)
            if old is None or not _list_errors(self.root, old):
                causes.extend(_list_errors(self.root, obj))
        return self._with_rules(causes, obj, old_root)

    def validate_status(
        self, obj: Mapping[str, Any], old: Mapping[str, Any], *, extra_causes: Iterable[Cause] = ()
    ) -> list[Cause]:
        """Validates an update through the status subresource: the status against its own schema (paths under
        ``status``, messages relative to it, no ratcheting), list types, then the rules of the whole object."""
        causes: list[Cause] = []
        causes.extend(extra_causes)
        if self.status is not None and "status" in obj:
            _validate_openapi(self.status, obj["status"], _ABSENT, "", "status", causes)
        if self.root.structure_below:
            new_list_errors = _list_errors(self.root, obj)
            if new_list_errors and not _list_errors(self.root, old):
                causes.extend(new_list_errors)
        return self._with_rules(causes, obj, old)

    def _with_rules(self, causes: list[Cause], obj: Mapping[str, Any], old: Any) -> list[Cause]:
        if not self.root.rules_below:
            return causes
        if any(cause.reason in _BLOCKING_REASONS for cause in causes):
            causes.append(field_invalid("", None, RULES_NOT_CHECKED))
            return causes
        _validate_rules(self.root, obj, old, "", causes, unchanged=False)
        return causes


# --- pruning, nulls, defaults -------------------------------------------------------------------------------------


def _prune(value: Any, node: _Node | None, path: str, pruned: list[str], *, embedded: bool = False) -> None:
    if node is not None and node.preserve_unknown:
        _skip_prune(value, node, path, pruned)
        return
    if isinstance(value, dict):
        if node is None:
            for key in list(value):
                pruned.append(_openapi_child(path, key))
                del value[key]
            return
        keep_meta = embedded or node.embedded
        for key in list(value):
            if keep_meta and key in _META_FIELDS:
                continue
            sub = node.properties.get(key)
            if sub is not None:
                _prune(value[key], sub, _openapi_child(path, key), pruned)
            elif node.additional_properties is not None or node.additional_allowed:
                _prune(value[key], node.additional_properties, _openapi_child(path, key), pruned)
            else:
                if key not in _META_FIELDS or path:
                    pruned.append(_openapi_child(path, key))
                del value[key]
    elif isinstance(value, list):
        items = node.items if node is not None else None
        for index, item in enumerate(value):
            _prune(item, items, f"{path}[{index}]", pruned)


def _skip_prune(value: Any, node: _Node | None, path: str, pruned: list[str]) -> None:
    if node is None:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if node.embedded and key in _META_FIELDS:
                continue
            sub = node.properties.get(key)
            if sub is not None:
                _prune(item, sub, _openapi_child(path, key), pruned)
            elif node.additional_properties is not None:
                _prune(item, node.additional_properties, _openapi_child(path, key), pruned)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _skip_prune(item, node.items, f"{path}[{index}]", pruned)


def _schema_for_key(node: _Node | None, key: str) -> _Node | None:
    if node is None:
        return None
    sub = node.properties.get(key)
    return sub if sub is not None else node.additional_properties


def _prune_nulls(value: Any, node: _Node | None) -> None:
    if isinstance(value, dict):
        for key in list(value):
            sub = _schema_for_key(node, key)
            item = value[key]
            if item is None and sub is not None and not sub.nullable and not sub.has_default:
                del value[key]
            elif isinstance(item, dict | list):
                _prune_nulls(item, sub)
    elif isinstance(value, list):
        items = node.items if node is not None else None
        for item in value:
            if isinstance(item, dict | list):
                _prune_nulls(item, items)


def _default(value: Any, node: _Node | None) -> None:
    if node is None:
        return
    if isinstance(value, dict):
        if node.defaults_below:
            for key, sub in node.properties.items():
                if sub.has_default and (key not in value or (value[key] is None and not sub.nullable)):
                    value[key] = copy_json(sub.default)
        for key, item in value.items():
            sub = node.properties.get(key)
            if sub is not None:
                if sub.defaults_below and isinstance(item, dict | list):
                    _default(item, sub)
            elif node.additional_properties is not None:
                additional = node.additional_properties
                if item is None and not additional.nullable and additional.has_default:
                    value[key] = item = copy_json(additional.default)
                if isinstance(item, dict | list):
                    _default(item, additional)
    elif isinstance(value, list) and node.items is not None:
        items = node.items
        for index, item in enumerate(value):
            if item is None and not items.nullable and items.has_default:
                value[index] = item = copy_json(items.default)
            if isinstance(item, dict | list):
                _default(item, items)


# --- OpenAPI validation (kube-openapi, errors converted as apiextensions-apiserver does) --------------------------


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


def _field_path(prefix: str, name: str) -> str:
    """kubeOpenAPIResultToFieldErrors: the error's name without its leading dot, as a child of `prefix`."""
    name = name.removeprefix(".")
    if not name:
        return prefix or NIL_PATH
    return f"{prefix}.{name}" if prefix else name


def _number_text(bound: int | float, value: Any) -> str:
    """A minimum/maximum/multipleOf in a message: an int64 for integer data, a float64 otherwise (Go ``%v``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(bound))
    return go_float(float(bound))


def _enum_matches(value: Any, enum: list[Any]) -> bool:
    return any(json_equal(value, allowed) for allowed in enum)


def _validate_openapi(node: _Node, value: Any, old: Any, name: str, prefix: str, causes: list[Cause]) -> None:
    """Checks `value` at kube-openapi path `name`; `old` is the correlated old value (ratcheting) or _ABSENT."""
    if old is not _ABSENT and json_equal(value, old):
        return  # ratcheting: errors in an unchanged part of the object are dropped
    in_body = f"{name} in body"
    if value is None:
        if node.type_names and not node.nullable:
            causes.append(
                field_type_invalid(
                    _field_path(prefix, name),
                    "null",
                    f'{in_body} must be of type {",".join(node.type_names)}: "null"',
                )
            )
        if node.enum is not None and not _enum_matches(value, node.enum):
            causes.append(field_not_supported(_field_path(prefix, name), None, node.enum_display))
        return

    kind = _json_kind(value)
    type_names = node.type_names
    kept_format = node.format if node.format_check is not None else ""  # unsupported formats are stripped
    if kept_format and kind not in ("string", "array"):
        if kind not in type_names and not (kind == "integer" and "number" in type_names):
            integral_float = kind == "number" and "integer" in type_names and float(value).is_integer()
            if not integral_float:
                data_format = {"integer": "int64", "number": "float64"}.get(kind, "")
                causes.append(
                    field_type_invalid(
                        _field_path(prefix, name),
                        data_format,
                        f"{in_body} must be of type {kept_format}: {go_quote(data_format)}",
                    )
                )
                type_names = ()  # the type validator stops at its first error
    elif kept_format and not ({"number", "integer"} & set(type_names)):
        type_names = ()  # kube-openapi skips the type check of strings and lists that have a format
    if type_names and kind not in type_names:
        integral_float = kind == "number" and "integer" in type_names and float(value).is_integer()
        int_as_number = kind == "integer" and "number" in type_names
        if not (integral_float or int_as_number):
            causes.append(
                field_type_invalid(
                    _field_path(prefix, name),
                    kind,
                    f"{in_body} must be of type {','.join(type_names)}: {go_quote(kind)}",
                )
            )

    if node.all_of or node.any_of or node.one_of or node.not_ is not None:
        _validate_combinators(node, value, name, prefix, causes)

    if kind == "string":
        _validate_string(node, value, name, prefix, causes)
    elif kind in ("integer", "number"):
        _validate_number(node, value, name, prefix, causes)
    elif kind == "array":
        _validate_array(node, value, old, name, prefix, causes)

    if node.enum is not None and not _enum_matches(value, node.enum):
        causes.append(field_not_supported(_field_path(prefix, name), value, node.enum_display))

    if kind == "object":
        _validate_object(node, value, old, name, prefix, causes)


def _validate_string(node: _Node, value: str, name: str, prefix: str, causes: list[Cause]) -> None:
    in_body = f"{name} in body"
    if node.max_length is not None and len(value) > node.max_length:
        causes.append(field_too_long(_field_path(prefix, name), node.max_length))
    elif node.min_length is not None and len(value) < node.min_length:
        causes.append(
            field_invalid(
                _field_path(prefix, name), value, f"{in_body} should be at least {node.min_length} chars long"
            )
        )
    elif node.regexp is not None and not node.regexp.search(value):
        causes.append(
            field_invalid(_field_path(prefix, name), value, f"{in_body} should match '{node.pattern}'")
        )
    if node.format_check is not None and not node.format_check(value):
        causes.append(
            field_type_invalid(
                _field_path(prefix, name),
                value,
                f"{in_body} must be of type {node.format}: {go_quote(value)}",
            )
        )


def _validate_number(node: _Node, value: int | float, name: str, prefix: str, causes: list[Cause]) -> None:
    in_body = f"{name} in body"
    path = _field_path(prefix, name)
    if node.multiple_of is not None:
        _check_multiple_of(node.multiple_of, value, name, path, causes)
    if node.minimum is not None:
        bound = int(node.minimum) if isinstance(value, int) else node.minimum
        if value < bound or (node.exclusive_minimum and value == bound):
            relation = "greater than" if node.exclusive_minimum else "greater than or equal to"
            causes.append(
                field_invalid(
                    path, value, f"{in_body} should be {relation} {_number_text(node.minimum, value)}"
                )
            )
    if node.maximum is not None:
        bound = int(node.maximum) if isinstance(value, int) else node.maximum
        if value > bound or (node.exclusive_maximum and value == bound):
            relation = "less than" if node.exclusive_maximum else "less than or equal to"
            causes.append(
                field_invalid(
                    path, value, f"{in_body} should be {relation} {_number_text(node.maximum, value)}"
                )
            )


def _check_multiple_of(
    factor: int | float, value: int | float, name: str, path: str, causes: list[Cause]
) -> None:
    """MultipleOfNativeType: integer data against int64(factor), float data with a relative tolerance."""
    if isinstance(value, int):
        factor = int(factor)
    if factor <= 0:
        causes.append(
            field_invalid(
                path,
                factor,
                f"factor MultipleOf declared for {name} must be positive: {_number_text(factor, value)}",
            )
        )
        return
    if isinstance(value, int):
        holds = value % int(factor) == 0
    else:
        quotient = (1 / factor) * value if factor < 1 else value / factor
        holds = abs(quotient - round(quotient)) <= 1e-9 * max(1.0, abs(quotient))
    if not holds:
        causes.append(
            field_invalid(
                path, value, f"{name} in body should be a multiple of {_number_text(factor, value)}"
            )
        )


def _validate_array(
    node: _Node, value: list[Any], old: Any, name: str, prefix: str, causes: list[Cause]
) -> None:
    in_body = f"{name} in body"
    if node.items is not None:
        old_items = _correlate_list(node, old)
        for index, item in enumerate(value):
            old_item = old_items(item) if old_items is not None else _ABSENT
            _validate_openapi(node.items, item, old_item, f"{name}[{index}]", prefix, causes)
    size = len(value)
    if node.min_items is not None and size < node.min_items:
        causes.append(
            field_invalid(
                _field_path(prefix, name), size, f"{in_body} should have at least {node.min_items} items"
            )
        )
    if node.max_items is not None and size > node.max_items:
        causes.append(field_too_many(_field_path(prefix, name), size, node.max_items))
    if node.unique_items:
        for index, item in enumerate(value):
            if any(json_equal(item, earlier) for earlier in value[:index]):
                causes.append(
                    field_invalid(_field_path(prefix, name), "", f"{in_body} shouldn't contain duplicates")
                )
                break


def _validate_object(
    node: _Node, value: dict[str, Any], old: Any, name: str, prefix: str, causes: list[Cause]
) -> None:
    in_body = f"{name} in body"
    size = len(value)
    if node.min_properties is not None and size < node.min_properties:
        causes.append(
            field_invalid(
                _field_path(prefix, name),
                size,
                f"{in_body} should have at least {node.min_properties} properties",
            )
        )
    if node.max_properties is not None and size > node.max_properties:
        causes.append(field_too_many(_field_path(prefix, name), size, node.max_properties))
    old_map = old if isinstance(old, dict) else None
    if node.additional_allowed is False:
        for key in value:
            if key not in node.properties:
                causes.append(
                    field_invalid(
                        _field_path(prefix, name), key, f"{name}.{key} in body is a forbidden property"
                    )
                )
    elif node.additional_properties is not None:
        additional = node.additional_properties
        for key, item in value.items():
            if key not in node.properties:
                old_item = old_map.get(key, _ABSENT) if old_map is not None else _ABSENT
                _validate_openapi(additional, item, old_item, f"{name}.{key}", prefix, causes)
    for key, sub in node.properties.items():
        if key in value:
            old_item = old_map.get(key, _ABSENT) if old_map is not None else _ABSENT
            _validate_openapi(sub, value[key], old_item, _openapi_child(name, key), prefix, causes)
    for key in node.required:
        if key not in value:
            causes.append(field_required(_field_path(prefix, f"{name}.{key}")))


def _validate_combinators(node: _Node, value: Any, name: str, prefix: str, causes: list[Cause]) -> None:
    """allOf, anyOf, oneOf and not: value validations at the same path (structural schemas allow no types there)."""
    path = _field_path(prefix, "")
    if node.any_of:
        results = [_sub_causes(sub, value, name, prefix) for sub in node.any_of]
        if not any(not result for result in results):
            causes.append(
                field_invalid(path, "", f"{go_quote(name)} must validate at least one schema (anyOf)")
            )
            causes.extend(min(results, key=len))
    if node.one_of:
        results = [_sub_causes(sub, value, name, prefix) for sub in node.one_of]
        valid = sum(1 for result in results if not result)
        if valid != 1:
            detail = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
            causes.append(
                field_invalid(
                    path, "", f"{go_quote(name)} must validate one and only one schema (oneOf). {detail}"
                )
            )
            if valid == 0:
                causes.extend(min(results, key=len))
    if node.all_of:
        results = [_sub_causes(sub, value, name, prefix) for sub in node.all_of]
        failed = [result for result in results if result]
        for result in results:
            causes.extend(result)
        if failed:
            detail = ". None validated" if len(failed) == len(results) else ""
            causes.append(
                field_invalid(path, "", f"{go_quote(name)} must validate all the schemas (allOf){detail}")
            )
    if node.not_ is not None and not _sub_causes(node.not_, value, name, prefix):
        causes.append(field_invalid(path, "", f"{go_quote(name)} must not validate the schema (not)"))


def _sub_causes(node: _Node, value: Any, name: str, prefix: str) -> list[Cause]:
    found: list[Cause] = []
    _validate_openapi(node, value, _ABSENT, name, prefix, found)
    return found


def _correlate_list(node: _Node, old: Any) -> Callable[[Any], Any] | None:
    """For list-type=map lists, the old item with the same keys (ratcheting and transition rules); else None."""
    if node.list_type != "map" or not node.list_map_keys or not isinstance(old, list):
        return None
    keys = node.list_map_keys
    by_key: dict[str, Any] = {}
    for item in old:
        if isinstance(item, dict):
            by_key.setdefault(_json_text([item.get(key) for key in keys]), item)

    def find(item: Any) -> Any:
        if not isinstance(item, dict):
            return _ABSENT
        return by_key.get(_json_text([item.get(key) for key in keys]), _ABSENT)

    return find


# --- embedded resources and list types (validated after the schema, with field.Path paths) ------------------------


def _validate_embedded(
    node: _Node, value: Any, path: str, causes: list[Cause], *, is_root: bool = False
) -> None:
    if isinstance(value, dict):
        if node.embedded and not is_root:
            for meta_field in ("apiVersion", "kind"):
                if meta_field not in value:
                    causes.append(field_required(_child(path, meta_field), "must not be empty"))
                elif not isinstance(value[meta_field], str):
                    causes.append(
                        field_invalid(_child(path, meta_field), value[meta_field], "must be a string")
                    )
                elif not value[meta_field]:
                    causes.append(field_invalid(_child(path, meta_field), "", "must not be empty"))
        for key, item in value.items():
            sub = node.properties.get(key)
            if sub is not None:
                if sub.structure_below or sub.embedded:
                    _validate_embedded(sub, item, _child(path, key), causes)
            elif node.additional_properties is not None and (
                node.additional_properties.structure_below or node.additional_properties.embedded
            ):
                _validate_embedded(node.additional_properties, item, f"{path}[{key}]", causes)
    elif (
        isinstance(value, list)
        and node.items is not None
        and (node.items.structure_below or node.items.embedded)
    ):
        for index, item in enumerate(value):
            _validate_embedded(node.items, item, f"{path}[{index}]", causes)


def _list_errors(node: _Node, value: Any, path: str = "") -> list[Cause]:
    """ValidateListSetsAndMaps: duplicates in list-type=set lists and duplicate keys in list-type=map lists."""
    found: list[Cause] = []
    if isinstance(value, dict):
        for key, item in value.items():
            sub = node.properties.get(key)
            if sub is not None:
                if sub.structure_below:
                    found.extend(_list_errors(sub, item, _child(path, key)))
            elif node.additional_properties is not None and node.additional_properties.structure_below:
                found.extend(_list_errors(node.additional_properties, item, f"{path}[{key}]"))
    elif isinstance(value, list):
        if node.list_type == "set":
            found.extend(
                field_duplicate(f"{path}[{index}]", value[index]) for index in _second_occurrences(value)
            )
        elif node.list_type == "map":
            found.extend(_list_map_errors(node, value, path))
        if node.items is not None and node.items.structure_below:
            for index, item in enumerate(value):
                found.extend(_list_errors(node.items, item, f"{path}[{index}]"))
    return found


def _second_occurrences(values: list[Any]) -> list[int]:
    """Indices where a value is seen for the second time (each duplicated value reported once, at that index)."""
    counts: dict[str, int] = {}
    indices = []
    for index, item in enumerate(values):
        marker = _json_text(item)
        counts[marker] = counts.get(marker, 0) + 1
        if counts[marker] == 2:
            indices.append(index)
    return indices


def _list_map_errors(node: _Node, value: list[Any], path: str) -> list[Cause]:
    for index, item in enumerate(value):
        if item is not None and not isinstance(item, dict):
            return [
                field_invalid(f"{path}[{index}]", item, "must be an object for an array of list-type map")
            ]
    keys = []
    for item in value:
        item = item or {}
        keys.append({key: item[key] for key in node.list_map_keys if key in item})
    return [field_duplicate(f"{path}[{index}]", keys[index]) for index in _second_occurrences(keys)]


# --- CEL rules ----------------------------------------------------------------------------------------------------


def _validate_rules(
    node: _Node,
    value: Any,
    old: Any,
    path: str,
    causes: list[Cause],
    *,
    unchanged: bool,
    cel_self: Any = _ABSENT,
    cel_old: Any = _ABSENT,
) -> None:
    """The CEL validator's walk: the rules of this node, then its properties, additional properties and items.

    `cel_self`/`cel_old` are the values already converted to CEL by a parent with rules (converting once).
    """
    if value is None:
        return
    if old is not _ABSENT and old is not None and not unchanged:
        unchanged = json_equal(value, old)
    if node.rules:
        cel_self, cel_old = _run_rules(node, value, old, path, causes, unchanged, cel_self, cel_old)
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else None
        additional = node.additional_properties
        for key, item in value.items():
            sub = node.properties.get(key)
            if sub is not None:
                if not sub.rules_below:
                    continue
                child_path = _child(path, key)
            elif additional is not None and additional.rules_below:
                sub, child_path = additional, f"{path}[{key}]"
            else:
                continue
            old_item = old_map.get(key, _ABSENT) if old_map is not None else _ABSENT
            _validate_rules(
                sub,
                item,
                old_item,
                child_path,
                causes,
                unchanged=unchanged,
                cel_self=_cel_member(cel_self, key),
                cel_old=_cel_member(cel_old, key) if old_item is not _ABSENT else _ABSENT,
            )
    elif isinstance(value, list) and node.items is not None and node.items.rules_below:
        find_old = _correlate_list(node, old)
        for index, item in enumerate(value):
            old_item = find_old(item) if find_old is not None else _ABSENT
            converted = cel_self[index] if isinstance(cel_self, list) and index < len(cel_self) else _ABSENT
            _validate_rules(
                node.items,
                item,
                old_item,
                f"{path}[{index}]",
                causes,
                unchanged=unchanged,
                cel_self=converted,
            )


def _cel_member(converted: Any, key: str) -> Any:
    if isinstance(converted, dict):
        return converted.get(key, _ABSENT)
    return _ABSENT


def _run_rules(
    node: _Node,
    value: Any,
    old: Any,
    path: str,
    causes: list[Cause],
    unchanged: bool,
    cel_self: Any,
    cel_old: Any,
) -> tuple[Any, Any]:
    """Runs the rules of one node; returns the CEL values of self and oldSelf (converted when a rule ran)."""
    has_old = old is not _ABSENT and old is not None
    for rule in node.rules:
        if rule.uses_old_self and not has_old and not rule.optional_old_self:
            continue  # transition rules run on updates only, where the old value exists
        if unchanged and (not rule.uses_old_self or rule.immutability):
            continue  # ratcheting; and `self == oldSelf` holds on an unchanged value
        if cel_self is _ABSENT:
            cel_self = cel.to_cel(value, node)
        activation = {"self": cel_self}
        if rule.uses_old_self:
            if has_old and cel_old is _ABSENT:
                cel_old = cel.to_cel(old, node)
            if rule.optional_old_self:
                activation["oldSelf"] = cel.OptionalValue(cel_old if has_old else None, present=has_old)
            elif has_old:
                activation["oldSelf"] = cel_old
        try:
            result = rule.program.run(activation)
        except cel.CelEvaluationError as error:
            if error.no_such_overload:
                detail = (
                    f"'{error.message}': call arguments did not match a supported operator, function or macro "
                    f"signature for rule: {rule.error_string()}"
                )
            else:
                detail = f"{error.message} evaluating rule: {rule.error_string()}"
            causes.append(field_invalid(path, node.type, detail))
            continue
        if cel.is_true(result):
            continue
        where = _child(path, rule.field_path) if rule.field_path else path
        message = rule.default_message()
        if rule.message_expression is not None:
            message = _message_from_expression(rule, activation) or message
        causes.append(_rule_failure(where, node.type, message, rule.reason))
    return cel_self, cel_old


def _message_from_expression(rule: _Rule, activation: dict[str, Any]) -> str | None:
    assert rule.message_expression is not None
    try:
        result = rule.message_expression.run(activation)
    except cel.CelEvaluationError:
        return None
    text = cel.message_of(result)
    if text is None:
        return None
    text = text.strip()
    if not text or "\n" in text or len(text.encode()) > _MAX_MESSAGE_EXPRESSION_BYTES:
        return None
    return text


def _rule_failure(path: str, schema_type: str, message: str, reason: str | None) -> Cause:
    """fieldErrorForReason."""
    if reason == FIELD_VALUE_FORBIDDEN:
        return field_forbidden(path, message)
    if reason == FIELD_VALUE_REQUIRED:
        return field_required(path, message)
    if reason == FIELD_VALUE_DUPLICATE:
        return field_duplicate(path, schema_type)
    return field_invalid(path, schema_type, message)


def describe_value(value: Any) -> str:
    """A value as the apiserver prints it in messages (exposed for the server's own errors)."""
    return go_sharp_v(value)
