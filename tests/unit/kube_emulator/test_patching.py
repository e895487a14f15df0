"""Merge patch, JSON patch and patch types, as the apiserver applies them (evanphx/json-patch v4 underneath)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kube_emulator import patching
from kube_emulator.errors import ApiError

# RFC 7386 appendix A, on object targets (the apiserver only patches objects), plus the library's null handling.
MERGE_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ({"a": 1}, {"a": {"b": None, "c": 2}}, {"a": {"c": 2}}),  # a new object: its nulls are dropped
    ({}, {"l": [None, {"x": None, "y": 1}]}, {"l": [None, {"y": 1}]}),  # null items stay, null members go
    ({"m": {"a": 1}}, {"m": {}}, {"m": {"a": 1}}),
    ({"gone": 1}, {"gone": None, "never": None}, {}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), MERGE_CASES)
def test_merge_patch(target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    original = copy.deepcopy(target)
    assert patching.merge_patch(target, patch) == expected
    assert target == original  # the target is not modified


@pytest.mark.parametrize("patch", [None, "x", 1, True])
def test_merge_patch_that_is_not_an_object_is_a_bad_request(patch: Any) -> None:
    with pytest.raises(ApiError) as raised:
        patching.merge_patch({"a": 1}, patch)
    assert (raised.value.code, raised.value.message) == (400, "Invalid JSON Patch")


DOC = {"metadata": {"name": "x", "labels": {"a/b": "1"}}, "spec": {"list": ["a", "b", "c"], "n": 1}}

JSON_PATCH_CASES = [
    ([{"op": "add", "path": "/spec/new", "value": {"x": 1}}], lambda d: d["spec"].update(new={"x": 1})),
    ([{"op": "add", "path": "/spec/list/1", "value": "z"}], lambda d: d["spec"]["list"].insert(1, "z")),
    ([{"op": "add", "path": "/spec/list/-", "value": "z"}], lambda d: d["spec"]["list"].append("z")),
    ([{"op": "add", "path": "/spec/list/3", "value": "z"}], lambda d: d["spec"]["list"].append("z")),
    ([{"op": "remove", "path": "/spec/list/0"}], lambda d: d["spec"]["list"].pop(0)),
    (
        [{"op": "remove", "path": "/spec/list/-1"}],
        lambda d: d["spec"]["list"].pop(),
    ),  # negative index: the library's
    ([{"op": "remove", "path": "/metadata/labels/a~1b"}], lambda d: d["metadata"].update(labels={})),
    ([{"op": "replace", "path": "/spec/n", "value": 2}], lambda d: d["spec"].update(n=2)),
    (
        [{"op": "replace", "path": "/spec/missing", "value": 2}],
        lambda d: d["spec"].update(missing=2),
    ),  # quirk
    (
        [{"op": "move", "from": "/spec/n", "path": "/spec/m"}],
        lambda d: d["spec"].update(m=d["spec"].pop("n")),
    ),
    (
        [{"op": "copy", "from": "/spec/list", "path": "/spec/copy"}],
        lambda d: d["spec"].update(copy=["a", "b", "c"]),
    ),
    ([{"op": "test", "path": "/spec/n", "value": 1.0}], lambda d: None),
    ([{"op": "test", "path": "/spec/missing", "value": None}], lambda d: None),
    (
        [{"op": "test", "path": "/metadata/name", "value": "x"}, {"op": "add", "path": "/x", "value": 1}],
        lambda d: d.update(x=1),
    ),
]


@pytest.mark.parametrize(("ops", "change"), JSON_PATCH_CASES)
def test_json_patch(ops: list[dict[str, Any]], change: Any) -> None:
    expected = copy.deepcopy(DOC)
    change(expected)
    original = copy.deepcopy(DOC)
    assert patching.json_patch(DOC, ops) == expected
    assert original == DOC


JSON_PATCH_FAILURES = [
    ([{"op": "test", "path": "/spec/n", "value": 2}], "testing value /spec/n failed: test failed"),
    ([{"op": "test", "path": "/spec/n", "value": True}], "testing value /spec/n failed: test failed"),
    (
        [{"op": "remove", "path": "/spec/nope"}],
        "error in remove for path: '/spec/nope': Unable to remove nonexistent key: nope: missing value",
    ),
    (
        [{"op": "add", "path": "/nope/x", "value": 1}],
        'add operation does not apply: doc is missing path: "/nope/x"',
    ),
    ([{"op": "add", "path": "", "value": {}}], 'add operation does not apply: doc is missing path: ""'),
    (
        [{"op": "add", "path": "/spec/list/9", "value": 1}],
        "error in add for path: '/spec/list/9': Unable to access invalid index: 9: invalid index referenced",
    ),
    (
        [{"op": "replace", "path": "/spec/list/5", "value": 1}],
        "replace operation does not apply: doc is missing key: /spec/list/5: missing value",
    ),
    (
        [{"op": "move", "from": "/spec/nope", "path": "/x"}],
        "error in move for path: 'nope': Unable to remove nonexistent key: nope: missing value",
    ),
    ([{"op": "jump", "path": "/x"}], "Unexpected kind: jump"),
    ([{"path": "/x"}], "Unexpected kind: unknown"),
]


@pytest.mark.parametrize(("ops", "reason"), JSON_PATCH_FAILURES)
def test_json_patch_failures_are_422_with_the_generic_message(ops: list[dict[str, Any]], reason: str) -> None:
    with pytest.raises(ApiError) as raised:
        patching.json_patch(DOC, ops)
    assert raised.value.to_status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server rejected our request due to an error in our request",
        "reason": "Invalid",
        "details": {},
        "code": 422,
    }
    assert raised.value.detail == reason


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"op": "add"}, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
        ("x", "json: cannot unmarshal string into Go value of type jsonpatch.Patch"),
        ([1], "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
    ],
)
def test_json_patch_bodies_that_do_not_decode_are_bad_requests(body: Any, message: str) -> None:
    with pytest.raises(ApiError) as raised:
        patching.json_patch(DOC, body)
    assert (raised.value.code, raised.value.reason, raised.value.message) == (400, "BadRequest", message)


def test_json_patch_operation_limit() -> None:
    with pytest.raises(ApiError) as raised:
        patching.json_patch({}, [{"op": "test", "path": "/x", "value": None}] * 10001)
    assert raised.value.code == 413
    assert raised.value.message.endswith("The allowed maximum operations in a JSON patch is 10000, got 10001")


def test_custom_resources_refuse_strategic_merge_patch_with_415() -> None:
    with pytest.raises(ApiError) as raised:
        patching.check_patch_type("application/strategic-merge-patch+json", custom_resource=True)
    assert raised.value.code == 415
    assert raised.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )
    assert not patching.strategic_merge_allowed(custom_resource=True)
    assert patching.strategic_merge_allowed(custom_resource=False)
    assert (
        patching.check_patch_type(
            "application/strategic-merge-patch+json; charset=utf-8", custom_resource=False
        )
        == patching.STRATEGIC_MERGE_PATCH
    )


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            {"metadata": {"labels": {"b": "2"}}},
            {"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["f1", "f2"]}},
        ),
        (
            {"metadata": {"labels": {"$patch": "replace", "c": "3"}}},
            {"metadata": {"labels": {"c": "3"}, "finalizers": ["f1", "f2"]}},
        ),
        ({"metadata": {"labels": {"$patch": "delete"}}}, {"metadata": {"finalizers": ["f1", "f2"]}}),
        (
            {"metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}},
            {"metadata": {"labels": {"a": "1"}, "finalizers": ["f2"]}},
        ),
        (
            {"metadata": {"$setElementOrder/finalizers": ["f2"], "finalizers": ["f2"]}},
            {"metadata": {"labels": {"a": "1"}, "finalizers": ["f2"]}},
        ),
    ],
)
def test_strategic_merge_patch_fallback(patch: dict[str, Any], expected: dict[str, Any]) -> None:
    target = {"metadata": {"labels": {"a": "1"}, "finalizers": ["f1", "f2"]}}
    assert patching.strategic_merge_patch(target, patch) == expected


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (1, 1.0, True),
        (1, True, False),
        (0, False, False),
        ({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}, True),
        ([1], [1, 2], False),
        ("1", 1, False),
    ],
)
def test_json_equal(left: Any, right: Any, equal: bool) -> None:
    assert patching.json_equal(left, right) is equal
