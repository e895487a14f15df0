"""Label and field selectors: what the apiserver matches, and its 400 messages for what it cannot parse."""

from __future__ import annotations

from typing import Any

import pytest

from kube_emulator.selectors import (
    EVENT_FIELD_LABELS,
    SelectorError,
    field_value,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "frontend", "release": "3", "empty": ""}

LABEL_CASES = [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=db", False),
    ("app!=db", True),
    ("missing!=x", True),  # != matches objects without the label
    ("app in (web,db)", True),
    ("app in (db)", False),
    ("missing in (x)", False),
    ("app notin (db)", True),
    ("missing notin (x)", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=frontend", True),
    ("app=web,tier=backend", False),
    ("release>2", True),
    ("release<3", False),
    ("app>1", False),  # a non-numeric label never compares
    ("empty=", True),
    ("empty in ()", True),
    ("  app = web , ! missing  ", True),
    ("example.com/role", False),
]


@pytest.mark.parametrize(("selector", "matches"), LABEL_CASES)
def test_label_selectors_match(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


def test_label_selector_matches_objects_without_labels() -> None:
    assert parse_label_selector("!app").matches(None)
    assert not parse_label_selector("app").matches(None)


def test_requirements_are_sorted_by_key() -> None:
    selector = parse_label_selector("tier in (b,a),app=web")
    assert str(selector) == "app=web,tier in (a,b)"


QUALIFIED_NAME_HELP = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)

LABEL_ERRORS = [
    ("app in (", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
    ("app in web", "unable to parse requirement: found 'web' expected: '('"),
    ("app in (web", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("app=web,", "found '', expected: identifier after ','"),
    ("app=web tier", "found 'tier', expected: ',' or 'end of string'"),
    ("=web", "found '=', expected: !, identifier, or 'end of string'"),
    ("app web", "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt"),
    ("app+x=web", f'unable to parse requirement: <nil>: Invalid value: "app+x": {QUALIFIED_NAME_HELP}'),
    (
        "release>x",
        "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must "
        "be an integer",
    ),
    (
        "app=we$b",
        'unable to parse requirement: values[0][app]: Invalid value: "we$b": a valid label must be an empty string '
        "or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
        "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    ),
]


@pytest.mark.parametrize(("selector", "message"), LABEL_ERRORS)
def test_label_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as raised:
        parse_label_selector(selector)
    assert raised.value.to_status()["message"] == message
    assert (raised.value.code, raised.value.reason) == (400, "BadRequest")


EVENT = {
    "metadata": {"name": "web-01.17a", "namespace": "prod"},
    "involvedObject": {"kind": "EcsReinstall", "name": "web-01", "namespace": "prod"},
    "reason": "Submitted",
    "type": "Normal",
    "source": {"component": "ecs-reinstall-operator"},
    "count": 2,
}

FIELD_CASES = [
    ("", True),
    ("metadata.name=web-01.17a", True),
    ("metadata.name==web-01.17a", True),
    ("metadata.namespace!=prod", False),
    ("involvedObject.name=web-01,involvedObject.kind=EcsReinstall", True),
    ("involvedObject.name=web-02", False),
    ("involvedObject.uid=", True),  # a missing field reads as ""
    ("type!=Warning", True),
    ("source=ecs-reinstall-operator", True),  # Events' `source` is source.component
    ("count=2", True),
]


@pytest.mark.parametrize(("selector", "matches"), FIELD_CASES)
def test_field_selectors_match(selector: str, matches: bool) -> None:
    assert parse_field_selector(selector, aliases=EVENT_FIELD_LABELS).matches(EVENT) is matches


def test_field_selector_escapes() -> None:
    selector = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert selector.matches({"metadata": {"name": r"a,b=c\d"}})
    assert selector.fields() == ["metadata.name"]
    assert selector.exact("metadata.name") == r"a,b=c\d"


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as raised:
        parse_field_selector(selector)
    assert raised.value.message == message


def test_unsupported_field_labels() -> None:
    selector = parse_field_selector("metadata.name=x,spec.serverId=y")
    assert selector.unsupported(["metadata.name", "metadata.namespace"]) == ["spec.serverId"]
    with pytest.raises(SelectorError) as raised:
        selector.check_supported(["metadata.name", "metadata.namespace"])
    assert raised.value.message == "field label not supported: spec.serverId"


@pytest.mark.parametrize(
    ("obj", "path", "value"),
    [
        ({"spec": {"hostNetwork": True}}, "spec.hostNetwork", "true"),
        ({"status": {"phase": "Active"}}, "status.phase", "Active"),
        ({"spec": {}}, "spec.nodeName", ""),
        ({"spec": {"x": {"y": 1}}}, "spec.x", ""),
    ],
)
def test_field_values(obj: dict[str, Any], path: str, value: str) -> None:
    assert field_value(obj, path) == value
