"""CEL rules as CRDs write them, evaluated as the apiserver evaluates them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kube_emulator import cel

SPEC = {
    "serverId": "6e2f1c0a-8d3b-4f5e-9a7c-1b2d3e4f5a6b",
    "cloudInit": True,
    "keyName": "kp",
    "tags": [1, 2, 3],
}
MISSING = object()

RULE_CASES = [
    ("self == oldSelf", SPEC, dict(SPEC), True),
    ("self == oldSelf", SPEC, {**SPEC, "cloudInit": False}, False),
    ("!(has(self.a) && has(self.b))", {"a": 1}, MISSING, True),
    ("!(has(self.a) && has(self.b))", {"a": 1, "b": 2}, MISSING, False),
    ("!has(self.keyName) || has(self.userId)", {"keyName": "kp"}, MISSING, False),
    ("!has(self.keyName) || has(self.userId)", {"keyName": "kp", "userId": "u"}, MISSING, True),
    ("self.cloudInit || !has(self.userData)", {"cloudInit": False, "userData": {}}, MISSING, False),
    ("self.cloudInit || !has(self.userData)", {"cloudInit": True, "userData": {}}, MISSING, True),
    ("has(self.a) != has(self.b)", {"a": 1}, MISSING, True),
    ("has(self.a) != has(self.b)", {}, MISSING, False),
    ("self.matches('^[0-9a-f-]{36}$')", SPEC["serverId"], MISSING, True),
    ("self.matches('^[0-9a-f-]{36}$')", "nope", MISSING, False),
    ("size(self) <= 10", list(range(10)), MISSING, True),
    ("size(self) <= 10", list(range(11)), MISSING, False),
    ("self.all(x, x > 0)", [1, 2, 3], MISSING, True),
    ("self.all(x, x > 0)", [1, 0], MISSING, False),
    ("self.exists(x, x == 'b')", ["a", "b"], MISSING, True),
    ("self.size > 2 ? self.mode == 'big' : true", {"size": 3, "mode": "big"}, MISSING, True),
    ("self.size > 2 ? self.mode == 'big' : true", {"size": 3, "mode": "small"}, MISSING, False),
    ("self >= oldSelf", 5, 4, True),
    ("self.startsWith('ecs-') && self.endsWith('-01')", "ecs-web-01", MISSING, True),
    ("'b' in self", {"a": 1, "b": 2}, MISSING, True),
    ("self.all(k, k.size() <= 3)", {"abc": 1, "abcd": 2}, MISSING, False),
    ("false || (1 / 0 == 0) || true", None, MISSING, True),  # errors are absorbed by a true operand
]


@pytest.mark.parametrize(("rule", "value", "old", "expected"), RULE_CASES)
def test_common_crd_rules(rule: str, value: Any, old: Any, expected: bool) -> None:
    compiled = cel.compile_rule(rule)
    result = compiled.evaluate(value) if old is MISSING else compiled.evaluate(value, old)
    assert result is expected


KUBERNETES_LIBRARY_CASES = [
    ("isURL(self)", "https://ecs.example.com:8443/v2", True),
    ("isURL(self)", "/just/a/path", True),
    ("isURL(self)", "ecs.example.com", False),
    ("isURL(self)", "https://exa mple.com", False),
    (
        "url(self).getScheme() == 'https' && url(self).getHostname() == 'ecs.example.com'",
        "https://ecs.example.com:8443/x",
        True,
    ),
    (
        "url(self).getPort() == '8443' && url(self).getEscapedPath() == '/x'",
        "https://ecs.example.com:8443/x",
        True,
    ),
    ("self.lowerAscii() == 'ab-c'", "AB-C", True),
    ("self.upperAscii() == 'AB'", "ab", True),
    ("self.trim() == 'x'", "  x ", True),
    ("self.split('-').size() == 3", "a-b-c", True),
    ("self.split('-', 2) == ['a', 'b-c']", "a-b-c", True),
    ("['a', 'b'].join('/') == self", "a/b", True),
    ("self.replace('-', '_') == 'a_b_c'", "a-b-c", True),
    ("self.indexOf('b') == 2 && self.lastIndexOf('a') == 4", "a-b-a", True),
    ("self.substring(2) == 'b-a' && self.substring(0, 1) == 'a' && self.charAt(2) == 'b'", "a-b-a", True),
    ("self.find('[0-9]+') == '42' && self.findAll('[0-9]+') == ['42', '7']", "x42y7", True),
    ("self.isSorted() && self.sum() == 6 && self.max() == 3", [1, 2, 3], True),
    ("[3, 1].isSorted()", None, False),
    ("self.indexOf(2) == 1", [1, 2, 3], True),
]


@pytest.mark.parametrize(("rule", "value", "expected"), KUBERNETES_LIBRARY_CASES)
def test_kubernetes_library(rule: str, value: Any, expected: bool) -> None:
    assert cel.evaluate(rule, value) is expected


def test_optional_old_self() -> None:
    rule = cel.compile_rule("!oldSelf.hasValue() || self >= oldSelf.value()")
    assert rule.evaluate(1, optional_old_self=True) is True  # no old value: oldSelf is optional.none()
    assert rule.evaluate(1, 2, optional_old_self=True) is False
    assert cel.compile_rule("oldSelf.orValue(0) <= self").evaluate(5, optional_old_self=True) is True


@pytest.mark.parametrize(
    ("rule", "value", "message", "no_such_overload"),
    [
        ("self.userId == 'u'", {"keyName": "kp"}, "no such key: userId", False),
        ("self['userId'] == 'u'", {"keyName": "kp"}, "no such key: userId", False),
        ("self.name + 1 == 2", {"name": "a"}, "no such overload", True),
        ("self.n / 0 == 1", {"n": 4}, "division by zero", False),
    ],
)
def test_evaluation_errors_use_cel_go_wording(
    rule: str, value: Any, message: str, no_such_overload: bool
) -> None:
    with pytest.raises(cel.CelEvaluationError) as raised:
        cel.evaluate(rule, value)
    assert raised.value.message == message
    assert raised.value.no_such_overload is no_such_overload


@pytest.mark.parametrize("rule", ["self ==", "has(self.a", "self.a &&& self.b", "", "   "])
def test_compile_errors(rule: str) -> None:
    with pytest.raises(cel.CelCompileError) as raised:
        cel.compile_rule(rule)
    assert str(raised.value).startswith("compilation failed: ERROR: <input>:1:")
    assert "Syntax error" in str(raised.value)


@pytest.mark.parametrize(
    ("rule", "uses_old_self"),
    [
        ("self == oldSelf", True),
        ("self.x == 'oldSelf'", False),
        ("has(self.oldSelfish)", False),
        ("oldSelf.hasValue()", True),
    ],
)
def test_transition_rules_are_recognised(rule: str, uses_old_self: bool) -> None:
    assert cel.compile_rule(rule).uses_old_self is uses_old_self


def test_rules_are_compiled_once() -> None:
    assert cel.compile_rule("self.a == 1") is cel.compile_rule("self.a == 1")


@dataclass
class Shape:
    """A schema node for `to_cel` (the structural schema's nodes have the same attributes)."""

    type: str = ""
    format: str = ""
    int_or_string: bool = False
    properties: dict[str, Shape] = field(default_factory=dict)
    additional_properties: Shape | None = None
    items: Shape | None = None


@pytest.mark.parametrize(
    ("rule", "value", "shape", "expected"),
    [
        ("self == 1.0", 1, Shape("number"), True),  # numbers are doubles even when written as integers
        ("type(self) == int", 1, Shape("integer"), True),
        (
            "self < timestamp('2030-01-01T00:00:00Z')",
            "2029-12-31T23:59:59Z",
            Shape("string", "date-time"),
            True,
        ),
        ("self > duration('1m')", "90s", Shape("string", "duration"), True),
        ("self == b'hi'", "aGk=", Shape("string", "byte"), True),
        ("type(self) == string", "80%", Shape(int_or_string=True), True),
        ("type(self) == int", 80, Shape(int_or_string=True), True),
        (
            "self.items.all(i, i.weight > 0.5)",
            {"items": [{"weight": 1}]},
            Shape(
                "object",
                properties={
                    "items": Shape("array", items=Shape("object", properties={"weight": Shape("number")}))
                },
            ),
            True,
        ),
    ],
)
def test_values_are_typed_by_their_schema(rule: str, value: Any, shape: Shape, expected: bool) -> None:
    assert cel.is_true(cel.compile_rule(rule).run({"self": cel.to_cel(value, shape)})) is expected


def _outcome(run: Any, activation: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", run(activation)
    except cel.CelEvaluationError as error:
        return "error", error.message


PARITY_CASES = [
    *[(rule, value, old) for rule, value, old, _ in RULE_CASES],
    *[(rule, value, MISSING) for rule, value, _ in KUBERNETES_LIBRARY_CASES],
    ("self.userId == 'u'", {"keyName": "kp"}, MISSING),
    ("self['userId'] == 'u'", {"keyName": "kp"}, MISSING),
    ("self.name + 1 == 2", {"name": "a"}, MISSING),
    ("self.n / 0 == 1", {"n": 4}, MISSING),
    ("self.n % 3 == 1 && -self.n < 0 && self.n * 2 - 1 == 7", {"n": 4}, MISSING),
    ("self.l.map(x, x * 2) == [2, 4] && self.l.filter(x, x > 1) == [2]", {"l": [1, 2]}, MISSING),
    ("self.l.exists_one(x, x == 2) && !self.l.exists_one(x, x > 0)", {"l": [1, 2]}, MISSING),
    ("{'a': self.n}.a == self.n && [self.n][0] == 4 && self.l[1] == 2", {"n": 4, "l": [1, 2]}, MISSING),
    ("self.l[5] == 1", {"l": [1, 2]}, MISSING),
    ("self.m.exists(k, self.m[k] > 1)", {"m": {"a": 1, "b": 2}}, MISSING),
    ("self.all(x, x.size() > 0) || self.size() == 0", ["a", ""], MISSING),
    ("self.s.contains('b') && self.s.size() == 3 && size(self.s) == 3", {"s": "abc"}, MISSING),
    ("int(self.s) == 42 && string(self.n) == '4' && double(self.n) == 4.0", {"s": "42", "n": 4}, MISSING),
    ("type(self.n) == int && type(self.s) == string", {"n": 4, "s": "x"}, MISSING),
    ("self.x == null", {"x": None}, MISSING),
    ("true ? 1 : 2", None, MISSING),
    ("self.n ? 1 : 2", {"n": 4}, MISSING),
    ("!self.n", {"n": 4}, MISSING),
    ("self.b && self.n > 0", {"b": True, "n": "x"}, MISSING),
    ("self.b || self.missing", {"b": True}, MISSING),
    ("self.missing || self.b", {"b": True}, MISSING),
    ("self.missing && false", {}, MISSING),
    ("self.all(x, x.y == 1)", [{"y": 2}, {}], MISSING),
    ("b'ab' == b'ab' && \"\"\"x\"\"\" == 'x' && 1.5 > 1.0 && 'a\\n' != 'a'", None, MISSING),
]


# Where celpy's wording differs from cel-go's, the fast evaluator follows cel-go (what the apiserver prints).
CEL_GO_WORDING = {"self.l[5] == 1": "index '5' out of range in list size '2'"}


@pytest.mark.parametrize(("rule", "value", "old"), PARITY_CASES)
def test_fast_evaluator_agrees_with_celpy(rule: str, value: Any, old: Any) -> None:
    compiled = cel.compile_rule(rule)
    assert compiled.fast is not None, "the rule should not need celpy's interpreter"
    activation = {"self": cel.to_cel(value)}
    if old is not MISSING:
        activation["oldSelf"] = cel.to_cel(old)
    fast, reference = _outcome(compiled.run, activation), _outcome(compiled.interpret, activation)
    if rule in CEL_GO_WORDING:
        assert fast == ("error", CEL_GO_WORDING[rule])
        assert reference[0] == "error"
    else:
        assert fast == reference


def test_map_with_a_filter() -> None:  # the three-argument map of CEL, which celpy's interpreter lacks
    assert cel.evaluate("self.map(x, x > 1, x * 10) == [20, 30]", [1, 2, 3]) is True


def test_rules_outside_the_fast_subset_run_with_celpy() -> None:
    compiled = cel.compile_rule(".self.a == 1")  # a leading dot: a name resolved from the root
    assert compiled.fast is None
    assert compiled.evaluate({"a": 1}) is True
