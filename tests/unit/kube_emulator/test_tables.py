"""meta.k8s.io/v1 Tables, as the apiserver serves them to `kubectl get`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kube_emulator import tables
from kube_emulator.errors import ApiError

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

# The EcsReinstall printer columns (crds/ecsreinstalls.ecs.reinstall.dev.yaml).
COLUMNS = [
    {"name": "Server", "type": "string", "jsonPath": ".spec.serverId", "description": "The ECS ID."},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Job", "type": "string", "jsonPath": ".status.jobId"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]


def reinstall(name: str, *, age: timedelta, status: dict[str, Any] | None = None) -> dict[str, Any]:
    created = (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj: dict[str, Any] = {
        "apiVersion": "ecs.reinstall.dev/v1alpha1",
        "kind": "EcsReinstall",
        "metadata": {
            "name": name,
            "namespace": "prod",
            "creationTimestamp": created,
            "resourceVersion": "42",
        },
        "spec": {"serverId": "6e2f1c0a-8d3b-4f5e-9a7c-1b2d3e4f5a6b"},
    }
    if status is not None:
        obj["status"] = status
    return obj


def test_crd_columns_rows_and_definitions() -> None:
    done = reinstall(
        "web-01",
        age=timedelta(minutes=5, seconds=3),
        status={
            "phase": "Succeeded",
            "jobId": "ff80",
            "message": "done",
            "conditions": [{"type": "Reconciling", "status": "False"}, {"type": "Ready", "status": "True"}],
        },
    )
    fresh = reinstall("web-02", age=timedelta(seconds=7))
    table = tables.build_table(
        [done, fresh], COLUMNS, list_meta={"resourceVersion": "99", "continue": ""}, now=NOW
    )
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "99"}
    assert [column["name"] for column in table["columnDefinitions"]] == [
        "Name",
        "Server",
        "Phase",
        "Job",
        "Ready",
        "Age",
        "Message",
    ]
    assert table["columnDefinitions"][0]["format"] == "name"
    assert table["columnDefinitions"][1]["description"] == "The ECS ID."
    assert table["columnDefinitions"][2]["description"] == (
        "Custom resource definition column (in JSONPath format): .status.phase"
    )
    assert table["columnDefinitions"][6]["priority"] == 1
    assert [row["cells"] for row in table["rows"]] == [
        ["web-01", "6e2f1c0a-8d3b-4f5e-9a7c-1b2d3e4f5a6b", "Succeeded", "ff80", "True", "5m3s", "done"],
        ["web-02", "6e2f1c0a-8d3b-4f5e-9a7c-1b2d3e4f5a6b", None, None, None, "7s", None],
    ]
    assert table["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": done["metadata"],
    }


def test_without_columns_name_and_age() -> None:
    table = tables.build_table([reinstall("a", age=timedelta(hours=3))], None, now=NOW)
    assert [(c["name"], c["type"]) for c in table["columnDefinitions"]] == [
        ("Name", "string"),
        ("Age", "date"),
    ]
    assert table["rows"][0]["cells"] == ["a", "3h"]


@pytest.mark.parametrize(
    ("column_type", "value", "cell"),
    [
        ("integer", 3, 3),
        ("integer", 3.7, 3),
        ("integer", "3", None),
        ("number", 2, 2.0),
        ("boolean", True, True),
        ("boolean", "true", None),
        ("string", {"b": 1, "a": "<x>"}, '{"a":"\\u003cx\\u003e","b":1}'),
        ("string", [1, 2], "[1,2]"),
        ("string", 5, "5"),
        ("string", 1e6, "1e+06"),
        ("string", False, "false"),
        ("date", "not a time", "<invalid>"),
        ("date", "", "<unknown>"),
        ("date", 5, None),
    ],
)
def test_cells_are_typed_like_the_apiserver(column_type: str, value: Any, cell: Any) -> None:
    obj = {"metadata": {"name": "x"}, "spec": {"v": value}}
    table = tables.build_table([obj], [{"name": "V", "type": column_type, "jsonPath": ".spec.v"}], now=NOW)
    assert table["rows"][0]["cells"] == ["x", cell]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".spec.items[0].name", ["a"]),
        (".spec.items[-1].name", ["c"]),
        (".spec.items[*].name", ["a", "b", "c"]),
        (".spec.items[0:2].name", ["a", "b"]),
        (".spec.items[?(@.weight > 1)].name", ["b", "c"]),
        (".spec.items[?(@.tag)].name", ["c"]),
        (".spec['dotted.key']", [1]),
        ("{.spec.items[1].weight}", [2]),
        ("..weight", [1, 2, 3]),
        (".spec.missing.deeper", []),
    ],
)
def test_jsonpath(path: str, expected: list[Any]) -> None:
    data = {
        "spec": {
            "items": [
                {"name": "a", "weight": 1},
                {"name": "b", "weight": 2},
                {"name": "c", "weight": 3, "tag": "x"},
            ],
            "dotted.key": 1,
        }
    }
    assert tables.JsonPath(path).find(data) == expected


def test_a_column_that_does_not_parse() -> None:
    with pytest.raises(tables.JsonPathError):
        tables.crd_printer([{"name": "Bad", "type": "string", "jsonPath": ".spec.items[?(@.x =="}])


@pytest.mark.parametrize(
    ("include_object", "expected"),
    [("None", None), ("Object", "full"), ("Metadata", "partial"), ("", "partial")],
)
def test_include_object(include_object: str, expected: str | None) -> None:
    obj = reinstall("a", age=timedelta(seconds=1))
    row = tables.build_table([obj], COLUMNS, include_object=include_object, now=NOW)["rows"][0]
    if expected is None:
        assert row["object"] is None
    elif expected == "full":
        assert row["object"] is obj
    else:
        assert row["object"]["kind"] == "PartialObjectMetadata"


def test_unknown_include_object_is_a_bad_request() -> None:
    with pytest.raises(ApiError) as raised:
        tables.build_table([], COLUMNS, include_object="Everything")
    assert raised.value.message == 'unrecognized includeObject value: "Everything"'


def test_no_headers() -> None:
    table = tables.build_table([reinstall("a", age=timedelta(0))], COLUMNS, no_headers=True, now=NOW)
    assert table["columnDefinitions"] is None


def test_builtin_printers() -> None:
    secret = {
        "metadata": {"name": "hwc", "creationTimestamp": "2025-06-01T11:00:00Z"},
        "type": "Opaque",
        "data": {"accessKey": "QUs=", "secretKey": "U0s="},
    }
    table = tables.build_table([secret], printer=tables.builtin_printer("Secret"), now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    assert table["rows"][0]["cells"] == ["hwc", "Opaque", 2, "60m"]

    crd = {
        "metadata": {"name": "ecsreinstalls.ecs.reinstall.dev", "creationTimestamp": "2025-06-01T11:00:00Z"}
    }
    table = tables.build_table([crd], printer=tables.builtin_printer("CustomResourceDefinition"), now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Created At"]
    assert table["rows"][0]["cells"] == ["ecsreinstalls.ecs.reinstall.dev", "2025-06-01T11:00:00Z"]


def test_event_printer() -> None:
    event = {
        "metadata": {"name": "web-01.1", "creationTimestamp": "2025-06-01T11:58:00Z"},
        "involvedObject": {"kind": "EcsReinstall", "name": "web-01"},
        "reason": "Submitted",
        "type": "Normal",
        "message": " Reinstall submitted \n",
        "firstTimestamp": "2025-06-01T11:50:00Z",
        "lastTimestamp": "2025-06-01T11:58:00Z",
        "count": 3,
        "source": {"component": "ecs-reinstall-operator"},
    }
    table = tables.build_table([event], printer=tables.builtin_printer("Event"), now=NOW)
    assert table["rows"][0]["cells"] == [
        "2m",
        "Normal",
        "Submitted",
        "ecsreinstall/web-01",
        "",
        "ecs-reinstall-operator",
        "Reinstall submitted",
        "10m",
        3,
        "web-01.1",
    ]


# duration.HumanDuration's own test table (k8s.io/apimachinery/pkg/util/duration/duration_test.go).
HOUR = 3600


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1s"),
        (70, "70s"),
        (190, "3m10s"),
        (70 * 60, "70m"),
        (47 * HOUR, "47h"),
        (49 * HOUR, "2d1h"),
        ((8 * 24 + 2) * HOUR, "8d"),
        (367 * 24 * HOUR, "367d"),
        ((365 * 2 * 24 + 25) * HOUR, "2y1d"),
        ((365 * 8 * 24 + 2) * HOUR, "8y"),
        (-2, "<invalid>"),
        (-1.999, "0s"),
        (119.999, "119s"),
        (120, "2m"),
        (599.999, "9m59s"),
        (3 * HOUR - 0.001, "179m"),
        (3 * HOUR + 60, "3h1m"),
        (8 * HOUR - 0.001, "7h59m"),
        (8 * HOUR + 59 * 60, "8h"),
        (8 * 24 * HOUR - 0.001, "7d23h"),
        (2 * 365 * 24 * HOUR - 0.001, "729d"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert tables.human_duration(seconds) == text
