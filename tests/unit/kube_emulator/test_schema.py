"""Structural schema semantics, case by case as the apiserver (Kubernetes 1.32) behaves.

The fixture resembles an EcsReinstall: an immutable spec with a UUID pattern, enums, defaults, nested
userData.valueFrom.secretKeyRef, CEL rules with fieldPath/reason, transition rules, list types, and a status with
a preserve-unknown-fields part. Expected messages are those of `kubectl` against a real cluster (field/errors.go,
kube-openapi errors, apiextensions-apiserver's CEL validator).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_emulator import errors
from kube_emulator.schema import SchemaError, StructuralSchema

FIXTURE = r"""
type: object
required: [spec]
properties:
  apiVersion: {type: string}
  kind: {type: string}
  metadata: {type: object}
  spec:
    type: object
    required: [serverId]
    x-kubernetes-validations:
      - rule: self == oldSelf
        message: spec is immutable
      - rule: "!(has(self.passwordSecretRef) && has(self.keyName))"
        message: passwordSecretRef and keyName are mutually exclusive
        fieldPath: .keyName
        reason: FieldValueForbidden
      - rule: "!has(self.keyName) || has(self.userId)"
        message: userId is required with keyName
        fieldPath: .userId
        reason: FieldValueRequired
      - rule: self.cloudInit || !has(self.userData)
        fieldPath: .userData
    properties:
      serverId:
        type: string
        pattern: ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$
      region: {type: string, minLength: 4, maxLength: 20}
      mode: {type: string, enum: [withStopServer, plain], default: plain}
      passwordSecretRef:
        type: object
        required: [name]
        properties:
          name: {type: string}
          key: {type: string, default: password}
      keyName: {type: string}
      userId: {type: string}
      cloudInit: {type: boolean, default: true}
      pollIntervalSeconds: {type: integer, default: 10, minimum: 2, maximum: 600}
      ratio: {type: number, minimum: 0, exclusiveMinimum: true, maximum: 1000000}
      userData:
        type: object
        x-kubernetes-validations:
          - rule: has(self.value) != has(self.valueFrom)
            message: userData needs exactly one of value or valueFrom
        properties:
          value: {type: string, maxLength: 16}
          valueFrom:
            type: object
            properties:
              secretKeyRef:
                type: object
                required: [name, key]
                properties:
                  name: {type: string}
                  key: {type: string}
      retry:
        type: object
        default: {}
        properties:
          attempts: {type: integer, default: 3}
          backoff: {type: string, format: duration, default: 10s}
      tags:
        type: array
        maxItems: 3
        x-kubernetes-list-type: set
        items: {type: string}
      labels:
        type: object
        additionalProperties: {type: string}
        x-kubernetes-validations:
          - rule: self.all(k, k.size() <= 20)
            messageExpression: "'label keys must be at most 20 characters: ' + self.filter(k, k.size() > 20).join(', ')"
      port: {x-kubernetes-int-or-string: true}
      note: {type: string, nullable: true}
      template:
        type: object
        x-kubernetes-embedded-resource: true
        x-kubernetes-preserve-unknown-fields: true
      window:
        type: object
        minProperties: 1
        maxProperties: 2
        x-kubernetes-validations:
          - rule: "!has(self.start) || !has(self.end) || self.start < self.end"
        properties:
          start: {type: string, format: date-time}
          end: {type: string, format: date-time}
          zone: {type: string}
      steps:
        type: array
        minItems: 1
        x-kubernetes-list-type: map
        x-kubernetes-list-map-keys: [name]
        items:
          type: object
          required: [name]
          x-kubernetes-validations:
            - rule: self.timeout >= oldSelf.timeout
              message: a step's timeout may only grow
          properties:
            name: {type: string}
            timeout: {type: integer, default: 60}
  status:
    type: object
    properties:
      phase: {type: string, enum: [Pending, Running, Succeeded, Failed]}
      jobId: {type: string, pattern: '^[0-9a-f]{32}$'}
      submittedAt: {type: string, format: date-time}
      conditions:
        type: array
        x-kubernetes-list-type: map
        x-kubernetes-list-map-keys: [type]
        items:
          type: object
          required: [type, status]
          properties:
            type: {type: string}
            status: {type: string, enum: ["True", "False", "Unknown"]}
      kopf:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"""

SCHEMA = StructuralSchema(yaml.safe_load(FIXTURE))
SERVER_ID = "6e2f1c0a-8d3b-4f5e-9a7c-1b2d3e4f5a6b"
NOT_CHECKED = (
    '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; '
    "correct the existing errors to complete validation"
)
SERVER_ID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def resource(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "ecs.reinstall.dev/v1alpha1",
        "kind": "EcsReinstall",
        "metadata": {"name": "web-01", "namespace": "prod"},
        "spec": {"serverId": SERVER_ID, **(spec or {})},
    }
    if status is not None:
        obj["status"] = status
    return obj


DELETE = object()  # a spec value that removes the key


def created(spec: dict[str, Any]) -> list[str]:
    """What a create answers: decode (prune, drop nulls, default), then validate."""
    obj = resource(spec)
    obj["spec"] = {key: value for key, value in obj["spec"].items() if value is not DELETE}
    SCHEMA.normalize(obj)
    return [str(cause) for cause in SCHEMA.validate(obj)]


# --- validation on create -------------------------------------------------------------------------------------------

CREATE_CASES = [
    ("valid minimal spec", {}, []),
    ("missing required field", {"serverId": DELETE}, ["spec.serverId: Required value", NOT_CHECKED]),
    (
        "pattern",
        {"serverId": "abc"},
        [f"spec.serverId: Invalid value: \"abc\": spec.serverId in body should match '{SERVER_ID_PATTERN}'"],
    ),
    (
        "minLength",
        {"region": "eu"},
        ['spec.region: Invalid value: "eu": spec.region in body should be at least 4 chars long'],
    ),
    ("maxLength counts characters", {"region": "é" * 20}, []),
    (
        "maxLength",
        {"region": "x" * 21},
        ["spec.region: Too long: may not be more than 20 bytes", NOT_CHECKED],
    ),
    (
        "enum",
        {"mode": "fast"},
        ['spec.mode: Unsupported value: "fast": supported values: "withStopServer", "plain"', NOT_CHECKED],
    ),
    (
        "type",
        {"pollIntervalSeconds": "10"},
        [
            'spec.pollIntervalSeconds: Invalid value: "string": spec.pollIntervalSeconds in body must be of type '
            'integer: "string"',
            NOT_CHECKED,
        ],
    ),
    ("an integral float is an integer", {"pollIntervalSeconds": 10.0}, []),
    ("an integer is a number", {"ratio": 3}, []),
    (
        "minimum",
        {"pollIntervalSeconds": 1},
        [
            "spec.pollIntervalSeconds: Invalid value: 1: spec.pollIntervalSeconds in body should be greater than or "
            "equal to 2"
        ],
    ),
    (
        "maximum",
        {"pollIntervalSeconds": 601},
        [
            "spec.pollIntervalSeconds: Invalid value: 601: spec.pollIntervalSeconds in body should be less than or "
            "equal to 600"
        ],
    ),
    (
        "exclusiveMinimum",
        {"ratio": 0},
        ["spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"],
    ),
    (
        "float bounds print like Go's %v",
        {"ratio": 2e6},
        ["spec.ratio: Invalid value: 2e+06: spec.ratio in body should be less than or equal to 1e+06"],
    ),
    (
        "maxItems",
        {"tags": ["a", "b", "c", "d"]},
        ["spec.tags: Too many: 4: must have at most 3 items", NOT_CHECKED],
    ),
    ("list-type set", {"tags": ["a", "b", "a"]}, ['spec.tags[2]: Duplicate value: "a"']),
    (
        "additionalProperties schema",
        {"labels": {"team": 5}},
        [
            'spec.labels.team: Invalid value: "integer": spec.labels.team in body must be of type string: "integer"',
            NOT_CHECKED,
        ],
    ),
    ("int-or-string takes an integer", {"port": 8080}, []),
    ("int-or-string takes a string", {"port": "http"}, []),
    (
        "int-or-string rejects a boolean",
        {"port": True},
        [
            'spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"',
            NOT_CHECKED,
        ],
    ),
    ("nullable keeps null", {"note": None}, []),
    ("a null in a non-nullable field is dropped", {"region": None}, []),
    (
        "embedded resource",
        {"template": {"metadata": {"name": "x"}}},
        [
            "spec.template.apiVersion: Required value: must not be empty",
            "spec.template.kind: Required value: must not be empty",
            NOT_CHECKED,
        ],
    ),
    (
        "minProperties",
        {"window": {}},
        ["spec.window: Invalid value: 0: spec.window in body should have at least 1 properties"],
    ),
    (
        "maxProperties (field.TooMany says items)",
        {"window": {"zone": "a", "start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z"}},
        ["spec.window: Too many: 3: must have at most 2 items", NOT_CHECKED],
    ),
    (
        "format date-time",
        {"window": {"start": "tomorrow"}},
        [
            'spec.window.start: Invalid value: "tomorrow": spec.window.start in body must be of type date-time: '
            '"tomorrow"',
            NOT_CHECKED,
        ],
    ),
    (
        "format duration",
        {"retry": {"backoff": "soon"}},
        [
            'spec.retry.backoff: Invalid value: "soon": spec.retry.backoff in body must be of type duration: "soon"',
            NOT_CHECKED,
        ],
    ),
    (
        "list-type map keys",
        {"steps": [{"name": "a"}, {"name": "a"}]},
        ['spec.steps[1]: Duplicate value: map[string]interface {}{"name":"a"}'],
    ),
    (
        "minItems",
        {"steps": []},
        ["spec.steps: Invalid value: 0: spec.steps in body should have at least 1 items"],
    ),
    (
        "required inside list items",
        {"steps": [{"timeout": 5}]},
        ["spec.steps[0].name: Required value", NOT_CHECKED],
    ),
    (
        "CEL: fieldPath and reasons",
        {"passwordSecretRef": {"name": "pw"}, "keyName": "kp"},
        [
            "spec.keyName: Forbidden: passwordSecretRef and keyName are mutually exclusive",
            "spec.userId: Required value: userId is required with keyName",
        ],
    ),
    (
        "CEL: a rule without message",
        {"cloudInit": False, "userData": {"value": "#cloud-config"}},
        ['spec.userData: Invalid value: "object": failed rule: self.cloudInit || !has(self.userData)'],
    ),
    (
        "CEL: a nested rule",
        {"userData": {"value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}},
        ['spec.userData: Invalid value: "object": userData needs exactly one of value or valueFrom'],
    ),
    (
        "CEL: messageExpression",
        {"labels": {"a-very-long-label-key-here": "x"}},
        [
            'spec.labels: Invalid value: "object": label keys must be at most 20 characters: a-very-long-label-key-here'
        ],
    ),
    (
        "CEL: date-time values are timestamps",
        {"window": {"start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"}},
        [
            'spec.window: Invalid value: "object": failed rule: !has(self.start) || !has(self.end) || self.start < self.end'
        ],
    ),
    ("CEL: transition rules do not run on create", {"steps": [{"name": "a", "timeout": 1}]}, []),
]


@pytest.mark.parametrize(
    ("spec", "expected"), [case[1:] for case in CREATE_CASES], ids=[c[0] for c in CREATE_CASES]
)
def test_create_validation(spec: dict[str, Any], expected: list[str]) -> None:
    assert created(spec) == expected


def test_causes_carry_reason_field_and_body() -> None:
    obj = resource({"mode": "fast"})
    causes = SCHEMA.validate(obj)
    assert causes[0] == errors.Cause(
        reason="FieldValueNotSupported",
        message='Unsupported value: "fast": supported values: "withStopServer", "plain"',
        field="spec.mode",
    )


def test_a_missing_spec_is_required_at_the_root() -> None:
    obj = resource()
    del obj["spec"]
    assert [str(c) for c in SCHEMA.validate(obj)] == ["spec: Required value", NOT_CHECKED]


def test_invalid_error_reads_as_kubectl_prints_it() -> None:
    obj = resource({"mode": "fast", "pollIntervalSeconds": 1})
    del obj["spec"]["serverId"]
    status = errors.invalid("EcsReinstall", "ecs.reinstall.dev", "web-01", SCHEMA.validate(obj)).to_status()
    assert status["code"] == 422
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'EcsReinstall.ecs.reinstall.dev "web-01" is invalid: ['
        'spec.mode: Unsupported value: "fast": supported values: "withStopServer", "plain", '
        "spec.pollIntervalSeconds: Invalid value: 1: spec.pollIntervalSeconds in body should be greater than or "
        "equal to 2, "
        "spec.serverId: Required value, " + NOT_CHECKED + "]"
    )
    assert status["details"]["causes"][2] == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.serverId",
    }


def test_evaluation_errors_name_the_rule() -> None:
    schema = StructuralSchema(
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [{"rule": "self.b == 1"}, {"rule": "self.c + 1 == 2"}],
                    "properties": {"b": {"type": "integer"}, "c": {"type": "string"}},
                }
            },
        }
    )
    assert [str(c) for c in schema.validate({"spec": {"c": "x"}})] == [
        'spec: Invalid value: "object": no such key: b evaluating rule: self.b == 1',
        "spec: Invalid value: \"object\": 'no such overload': call arguments did not match a supported operator, "
        "function or macro signature for rule: self.c + 1 == 2",
    ]


def test_a_rule_at_the_root_reports_the_nil_path() -> None:
    schema = StructuralSchema(
        {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.metadata.name.startsWith('web-')", "message": "bad name"}
            ],
            "properties": {"metadata": {"type": "object"}},
        }
    )
    assert [str(c) for c in schema.validate({"metadata": {"name": "db-01"}})] == [
        '<nil>: Invalid value: "object": bad name'
    ]


# --- updates: transition rules and ratcheting ---------------------------------------------------------------------


def updated(old_spec: dict[str, Any], new_spec: dict[str, Any], **status: Any) -> list[str]:
    old, new = resource(old_spec, status.get("old")), resource(new_spec, status.get("new"))
    SCHEMA.normalize(old)
    SCHEMA.normalize(new)
    return [str(cause) for cause in SCHEMA.validate(new, old)]


IMMUTABLE = 'spec: Invalid value: "object": spec is immutable'
TIMEOUT_SHRANK = 'spec.steps[0]: Invalid value: "object": a step\'s timeout may only grow'

UPDATE_CASES = [
    ("unchanged spec", {"region": "eu-west-1"}, {"region": "eu-west-1"}, []),
    ("changed spec", {}, {"region": "eu-west-1"}, [IMMUTABLE]),
    (
        "transition rule on a list-map item correlated by key",
        {"steps": [{"name": "a", "timeout": 60}]},
        {"steps": [{"name": "a", "timeout": 30}]},
        [IMMUTABLE, TIMEOUT_SHRANK],
    ),
    (
        "a new list-map item has no old value",
        {"steps": [{"name": "a", "timeout": 60}]},
        {"steps": [{"name": "a", "timeout": 60}, {"name": "b", "timeout": 1}]},
        [IMMUTABLE],
    ),
    (
        "reordering list-map items keeps the correlation",
        {"steps": [{"name": "a", "timeout": 60}, {"name": "b", "timeout": 90}]},
        {"steps": [{"name": "b", "timeout": 90}, {"name": "a", "timeout": 60}]},
        [IMMUTABLE],
    ),
    ("ratcheting: an unchanged invalid value is accepted", {"region": "eu"}, {"region": "eu"}, []),
]


@pytest.mark.parametrize(
    ("old_spec", "new_spec", "expected"),
    [case[1:] for case in UPDATE_CASES],
    ids=[c[0] for c in UPDATE_CASES],
)
def test_update_validation(old_spec: dict[str, Any], new_spec: dict[str, Any], expected: list[str]) -> None:
    assert updated(old_spec, new_spec) == expected


def test_ratcheting_keeps_errors_of_changed_fields_only() -> None:
    old = {"phase": "Bogus", "jobId": "0123456789abcdef0123456789abcdef"}
    assert updated({}, {}, old=old, new=dict(old)) == []
    assert updated({}, {}, old=old, new={**old, "jobId": "x"}) == [
        "status.jobId: Invalid value: \"x\": status.jobId in body should match '^[0-9a-f]{32}$'"
    ]


def test_optional_old_self_rules_run_on_create() -> None:
    schema = StructuralSchema(
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [
                        {
                            "rule": "!oldSelf.hasValue() || self.size == oldSelf.value().size",
                            "optionalOldSelf": True,
                            "message": "size is fixed",
                        },
                        {
                            "rule": "oldSelf.hasValue() || self.size <= 10",
                            "optionalOldSelf": True,
                            "message": "too big",
                        },
                    ],
                    "properties": {"size": {"type": "integer"}},
                }
            },
        }
    )
    assert [str(c) for c in schema.validate({"spec": {"size": 20}})] == [
        'spec: Invalid value: "object": too big'
    ]
    assert [str(c) for c in schema.validate({"spec": {"size": 30}}, {"spec": {"size": 20}})] == [
        'spec: Invalid value: "object": size is fixed'
    ]


# --- the status subresource -------------------------------------------------------------------------------------------


def test_status_updates_validate_the_status_with_relative_messages() -> None:
    old = resource()
    new = resource(status={"phase": "Running", "jobId": "x"})
    assert [str(c) for c in SCHEMA.validate_status(new, old)] == [
        "status.jobId: Invalid value: \"x\": jobId in body should match '^[0-9a-f]{32}$'"
    ]


def test_status_updates_are_not_ratcheted() -> None:
    old = resource(status={"phase": "Bogus"})
    new = copy.deepcopy(old)
    assert [str(c) for c in SCHEMA.validate_status(new, old)] == [
        'status.phase: Unsupported value: "Bogus": supported values: "Pending", "Running", "Succeeded", "Failed"',
        NOT_CHECKED,
    ]


def test_status_list_map_duplicates() -> None:
    conditions = [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]
    new = resource(status={"conditions": conditions})
    assert [str(c) for c in SCHEMA.validate_status(new, resource())] == [
        'status.conditions[1]: Duplicate value: map[string]interface {}{"type":"Ready"}'
    ]


# --- pruning ------------------------------------------------------------------------------------------------------


def test_prune_removes_unknown_fields_and_reports_their_paths() -> None:
    obj = resource(
        {
            "extra": 1,
            "passwordSecretRef": {"name": "pw", "extra": True},
            "template": {"anything": {"goes": 1}},
        },
        status={
            "conditions": [{"type": "Ready", "status": "True", "extra": "x"}],
            "kopf": {"progress": {"a": 1}},
        },
    )
    obj["topLevel"] = {"x": 1}
    obj["metadata"]["undeclared"] = "kept"  # metadata is the server's business
    assert SCHEMA.prune(obj) == [
        "spec.extra",
        "spec.passwordSecretRef.extra",
        "status.conditions[0].extra",
        "topLevel",
    ]
    assert obj["spec"]["template"] == {"anything": {"goes": 1}}
    assert obj["status"]["kopf"] == {"progress": {"a": 1}}
    assert obj["metadata"]["undeclared"] == "kept"
    assert obj["apiVersion"] == "ecs.reinstall.dev/v1alpha1" and obj["kind"] == "EcsReinstall"


def test_prune_keeps_root_meta_fields_even_when_undeclared() -> None:
    schema = StructuralSchema({"type": "object", "properties": {"spec": {"type": "object"}}})
    obj = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"x": 1}, "junk": 1}
    assert schema.prune(obj) == ["junk", "spec.x"]
    assert obj == {"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "spec": {}}


# --- defaulting -----------------------------------------------------------------------------------------------------


def test_defaults_fill_missing_fields_and_objects_defaulted_to_empty() -> None:
    obj = resource()
    SCHEMA.apply_defaults(obj)
    assert obj["spec"] == {
        "serverId": SERVER_ID,
        "mode": "plain",
        "cloudInit": True,
        "pollIntervalSeconds": 10,
        "retry": {"attempts": 3, "backoff": "10s"},
    }


@pytest.mark.parametrize(
    ("spec", "expected_subset"),
    [
        ({"passwordSecretRef": {"name": "pw"}}, {"passwordSecretRef": {"name": "pw", "key": "password"}}),
        ({"pollIntervalSeconds": 30}, {"pollIntervalSeconds": 30}),
        ({"cloudInit": None}, {"cloudInit": True}),
        ({"retry": {"attempts": 5}}, {"retry": {"attempts": 5, "backoff": "10s"}}),
        (
            {"steps": [{"name": "a"}, {"name": "b", "timeout": 5}]},
            {"steps": [{"name": "a", "timeout": 60}, {"name": "b", "timeout": 5}]},
        ),
    ],
    ids=[
        "nested default inside a present object",
        "no overwrite",
        "null replaced",
        "partial object",
        "list items",
    ],
)
def test_defaults(spec: dict[str, Any], expected_subset: dict[str, Any]) -> None:
    obj = resource(spec)
    SCHEMA.apply_defaults(obj)
    for key, value in expected_subset.items():
        assert obj["spec"][key] == value


def test_default_values_are_copied_not_shared() -> None:
    first, second = resource(), resource()
    SCHEMA.apply_defaults(first)
    SCHEMA.apply_defaults(second)
    first["spec"]["retry"]["attempts"] = 99
    assert second["spec"]["retry"]["attempts"] == 3


def test_prune_nulls_drops_non_nullable_nulls_without_default() -> None:
    obj = resource({"region": None, "note": None, "cloudInit": None})
    SCHEMA.prune_nulls(obj)
    assert "region" not in obj["spec"]
    assert obj["spec"]["note"] is None  # nullable
    assert obj["spec"]["cloudInit"] is None  # left for defaulting
    SCHEMA.apply_defaults(obj)
    assert obj["spec"]["cloudInit"] is True


# --- schema errors (the CRD is invalid) ---------------------------------------------------------------------------

RULES_PATH = "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0]"


def schema_error(spec_schema: dict[str, Any]) -> list[str]:
    with pytest.raises(SchemaError) as raised:
        StructuralSchema(
            {"type": "object", "properties": {"spec": spec_schema}},
            field_path="spec.versions[0].schema.openAPIV3Schema",
        )
    return [str(cause) for cause in raised.value.causes]


def test_a_rule_that_does_not_compile_rejects_the_crd() -> None:
    (message,) = schema_error({"type": "object", "x-kubernetes-validations": [{"rule": "self.a =="}]})
    assert message.startswith(
        f'{RULES_PATH}.rule: Invalid value: apiextensions.ValidationRule{{Rule:"self.a ==", Message:"", '
    )
    assert "compilation failed: ERROR: <input>:1:" in message


def test_a_field_path_must_exist() -> None:
    assert schema_error(
        {
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "true", "fieldPath": ".b"}],
        }
    ) == [f'{RULES_PATH}.fieldPath: Invalid value: ".b": fieldPath must be a valid path']


def test_a_reason_must_be_supported() -> None:
    assert schema_error(
        {"type": "object", "x-kubernetes-validations": [{"rule": "true", "reason": "Nope"}]}
    ) == [
        f'{RULES_PATH}.reason: Unsupported value: "Nope": supported values: "FieldValueDuplicate", '
        '"FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"'
    ]


def test_a_pattern_must_be_re2() -> None:
    assert schema_error({"type": "string", "pattern": "(?=x)"}) == [
        'spec.versions[0].schema.openAPIV3Schema.properties[spec].pattern: Invalid value: "(?=x)": '
        "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"
    ]


def test_re2_only_syntax_is_matched_with_re2() -> None:
    schema = StructuralSchema(
        {"type": "object", "properties": {"name": {"type": "string", "pattern": r"^\p{Lu}"}}}
    )
    assert schema.validate({"name": "Émile"}) == []
    assert [str(c) for c in schema.validate({"name": "émile"})] == [
        "name: Invalid value: \"émile\": name in body should match '^\\p{Lu}'"
    ]


def test_dollar_does_not_match_before_a_trailing_newline_as_in_go() -> None:
    schema = StructuralSchema(
        {"type": "object", "properties": {"id": {"type": "string", "pattern": "^[a-z]+$"}}}
    )
    assert schema.validate({"id": "abc"}) == []
    assert len(schema.validate({"id": "abc\n"})) == 1


# --- the project's CRD --------------------------------------------------------------------------------------------

CRD_FILE = Path(__file__).resolve().parents[3] / "crds" / "ecsreinstalls.ecs.reinstall.dev.yaml"


@pytest.mark.skipif(not CRD_FILE.exists(), reason="the CRD is not in this checkout")
def test_the_project_crd_compiles_defaults_and_stays_immutable() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    version = crd["spec"]["versions"][0]
    schema = StructuralSchema(version["schema"]["openAPIV3Schema"])
    obj = resource({"adminPasswordSecretRef": {"name": "web-01-root"}})
    assert schema.normalize(obj) == []
    assert schema.validate(obj) == []
    changed = copy.deepcopy(obj)
    changed["spec"]["stopServer"] = not changed["spec"].get("stopServer", False)
    causes = schema.validate(changed, obj)
    assert [cause.field for cause in causes] == ["spec"]
    assert causes[0].message.startswith('Invalid value: "object": ')


def test_callers_errors_count_as_blocking() -> None:
    obj = resource({"passwordSecretRef": {"name": "pw"}, "keyName": "kp", "userId": "u"})
    SCHEMA.normalize(obj)
    metadata_error = errors.field_required("metadata.name", "name or generateName is required")
    assert [str(c) for c in SCHEMA.validate(obj, extra_causes=[metadata_error])] == [
        "metadata.name: Required value: name or generateName is required",
        NOT_CHECKED,
    ]


def test_status_updates_keep_list_errors_that_were_already_there() -> None:
    conditions = [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]
    old = resource(status={"conditions": conditions})
    new = resource(status={"conditions": conditions, "phase": "Running"})
    assert SCHEMA.validate_status(new, old) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"count": 10}, []),
        ({"count": 7}, ["count: Invalid value: 7: count in body should be a multiple of 5"]),
        ({"share": 0.3}, []),
        ({"share": 0.35}, ["share: Invalid value: 0.35: share in body should be a multiple of 0.1"]),
    ],
)
def test_multiple_of(value: dict[str, Any], expected: list[str]) -> None:
    schema = StructuralSchema(
        {
            "type": "object",
            "properties": {
                "count": {"type": "integer", "multipleOf": 5},
                "share": {"type": "number", "multipleOf": 0.1},
            },
        }
    )
    assert [str(c) for c in schema.validate(value)] == expected
