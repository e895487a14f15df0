"""The EcsReinstall CRD: a structural schema that matches the typed spec model, declares every status field the
operator writes, and whose CEL rules compile and behave (evaluated here with cel-python, independently of the
kube emulator)."""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from ecs_reinstall import spec as spec_module
from ecs_reinstall.spec import (
    FIELD_PATHS,
    InvalidSpec,
    ReinstallSpec,
    ResolvedInputs,
    build_reinstall_body,
    parse_spec,
)

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "ecsreinstalls.ecs.reinstall.dev.yaml"
CRD = yaml.safe_load(CRD_PATH.read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC_SCHEMA = SCHEMA["properties"]["spec"]
STATUS_SCHEMA = SCHEMA["properties"]["status"]

SERVER = "6e2f41a5-b61e-4d32-9a1c-0f3b6e2c1d7a"
USER = "7e25b1da389f4697a79df3a0e5bd494e"
KMS = "83cdb52d-9ebf-4469-9cfa-e7b5b80da846"


# --- a tiny apiserver: defaulting, validation, pruning, CEL (what the real one does for these rules) ---


def apply_defaults(schema: dict, value: Any) -> Any:
    """Fill the schema's defaults into a copy of value, as the apiserver does before validation."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(child, value[name])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def schema_errors(schema: dict, value: Any, path: str = "") -> list[str]:
    """OpenAPI validation errors plus fields the apiserver would prune (undeclared), as 'path: problem'."""
    errors: list[str] = []
    kind = schema.get("type")
    if kind and not _TYPES[kind](value):
        return [f"{path}: expected {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", len(value)) or len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: length {len(value)} out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: does not match {schema['pattern']}")
        if schema.get("format") == "date-time":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                errors.append(f"{path}: not a date-time")
    if kind == "integer":
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            errors.append(f"{path}: {value} out of bounds")
    if isinstance(value, dict):
        errors += [f"{path}.{name}: required" for name in schema.get("required", []) if name not in value]
        properties = schema.get("properties", {})
        for name, child_value in value.items():
            if name in properties:
                errors += schema_errors(properties[name], child_value, f"{path}.{name}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and path != ".metadata":
                errors.append(f"{path}.{name}: pruned (not declared)")
    if isinstance(value, list):
        for index, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{index}]")
        keys = schema.get("x-kubernetes-list-map-keys")
        if keys:
            seen = [tuple(item.get(key) for key in keys) for item in value]
            if len(seen) != len(set(seen)):
                errors.append(f"{path}: duplicate map keys")
    return errors


_CEL = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def cel_program(rule: str) -> Any:
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _CEL.program(_CEL.compile(rule))
    return _PROGRAMS[rule]


def is_transition_rule(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None


def cel_failures(schema: dict, value: Any, old: Any = None, *, has_old: bool = False) -> list[str]:
    """Messages of the x-kubernetes-validations rules that fail on value (rules that error fail the test).

    Transition rules (those using oldSelf) run only on updates, where the old value exists, as in Kubernetes.
    """
    failures = []
    for validation in schema.get("x-kubernetes-validations", []):
        rule = validation["rule"]
        activation = {"self": celpy.json_to_cel(value)}
        if is_transition_rule(rule):
            if not has_old:
                continue
            activation["oldSelf"] = celpy.json_to_cel(old)
        result = cel_program(rule).evaluate(activation)
        assert isinstance(result, celpy.celtypes.BoolType), f"rule {rule!r} gave {result!r}"
        if not result:
            failures.append(validation["message"])
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                old_child_exists = has_old and isinstance(old, dict) and name in old
                failures += cel_failures(
                    child, value[name], old[name] if old_child_exists else None, has_old=old_child_exists
                )
    return failures


def admit(resource: dict, old: dict | None = None) -> list[str]:
    """Everything the apiserver would refuse or prune in a create (or an update from old)."""
    resource = apply_defaults(SCHEMA, resource)
    errors = schema_errors(SCHEMA, resource)
    if old is not None:
        old = apply_defaults(SCHEMA, old)
    return errors + cel_failures(SCHEMA, resource, old, has_old=old is not None)


def resource(spec: dict, **extra: Any) -> dict:
    return {
        "apiVersion": "ecs.reinstall.dev/v1alpha1",
        "kind": "EcsReinstall",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": spec,
        **extra,
    }


def walk(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


# --- the definition ---


def test_names_scope_version_and_status_subresource():
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1"
    assert CRD["metadata"]["name"] == "ecsreinstalls.ecs.reinstall.dev"
    assert CRD["spec"]["group"] == "ecs.reinstall.dev"
    assert CRD["spec"]["scope"] == "Namespaced"
    assert CRD["spec"]["names"] == {
        "kind": "EcsReinstall",
        "listKind": "EcsReinstallList",
        "plural": "ecsreinstalls",
        "singular": "ecsreinstall",
        "shortNames": ["ecsr"],
        "categories": ["ecs"],
    }
    assert [(v["name"], v["served"], v["storage"]) for v in CRD["spec"]["versions"]] == [
        ("v1alpha1", True, True)
    ]
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns():
    columns = [
        (c["name"].upper(), c["jsonPath"], c["type"], c.get("priority", 0))
        for c in VERSION["additionalPrinterColumns"]
    ]
    assert columns == [
        ("SERVER", ".spec.serverId", "string", 0),
        ("PHASE", ".status.phase", "string", 0),
        ("JOB", ".status.jobId", "string", 0),
        ("READY", '.status.conditions[?(@.type=="Ready")].status', "string", 0),
        ("AGE", ".metadata.creationTimestamp", "date", 0),
        ("IMAGE", ".spec.imageId", "string", 1),
        ("MESSAGE", ".status.message", "string", 1),
    ]


def test_the_schema_is_structural():
    for path, node in walk(SCHEMA):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "$ref" not in node and "anyOf" not in node and "oneOf" not in node, path
        if node.get("type") == "array":
            assert "items" in node, f"{path}: array without items"
        if "default" in node:
            assert schema_errors(node, node["default"], path) == [], f"{path}: invalid default"
            assert node.get("nullable") is not True, path
        for key in node.get("x-kubernetes-list-map-keys", []):
            assert key in node["items"].get("required", []), f"{path}: map key {key} must be required"
    assert SCHEMA["properties"]["metadata"] == {"type": "object"}
    assert SCHEMA["required"] == ["spec"]


def test_every_spec_field_is_described_for_kubectl_explain():
    for path, node in walk(SPEC_SCHEMA, ".spec"):
        assert node.get("description", "").strip(), f"{path} has no description"
    for name, node in STATUS_SCHEMA["properties"].items():
        assert node.get("description", "").strip(), f".status.{name} has no description"


def test_spec_strings_are_bounded_so_cel_costs_are_bounded():
    for path, node in walk(SPEC_SCHEMA, ".spec"):
        if node.get("type") == "string":
            assert "maxLength" in node, f"{path}: unbounded string"
        assert node.get("type") != "array", f"{path}: arrays need maxItems"


def test_cel_rules_compile_and_have_messages():
    rules = [(path, v) for path, node in walk(SCHEMA) for v in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 9
    for path, validation in rules:
        cel_program(validation["rule"])
        assert validation["message"].strip(), path
        assert validation.get("reason", "FieldValueInvalid") in {
            "FieldValueInvalid",
            "FieldValueForbidden",
            "FieldValueRequired",
            "FieldValueDuplicate",
        }
        if "fieldPath" in validation:  # must name a declared field below the rule's node
            node = dict(walk(SCHEMA))[path]
            assert validation["fieldPath"].lstrip(".") in node["properties"], validation["fieldPath"]


# --- the schema and the typed model agree ---


def _schema_at(dotted: str) -> dict:
    node = SCHEMA
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


def test_every_model_field_exists_in_the_schema_and_back():
    assert set(FIELD_PATHS) == {f.name for f in fields(ReinstallSpec)}
    for path in FIELD_PATHS.values():
        _schema_at(path)  # raises KeyError when the CRD lacks the field
    top_level_in_model = {path.split(".")[1] for path in FIELD_PATHS.values()}
    assert top_level_in_model == set(SPEC_SCHEMA["properties"])


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("spec.projectId", spec_module.HEX32_PATTERN),
        ("spec.userId", spec_module.HEX32_PATTERN),
        ("spec.region", spec_module.REGION_PATTERN),
        ("spec.endpoint", spec_module.ENDPOINT_PATTERN),
        ("spec.keyName", spec_module.KEY_PAIR_NAME_PATTERN),
        ("spec.credentialsSecretRef.name", spec_module.DNS_SUBDOMAIN_PATTERN),
        ("spec.adminPasswordSecretRef.name", spec_module.DNS_SUBDOMAIN_PATTERN),
        ("spec.adminPasswordSecretRef.key", spec_module.DATA_KEY_PATTERN),
        ("spec.userData.valueFrom.secretKeyRef.name", spec_module.DNS_SUBDOMAIN_PATTERN),
        ("spec.userData.valueFrom.secretKeyRef.key", spec_module.DATA_KEY_PATTERN),
        ("spec.userData.valueFrom.configMapKeyRef.name", spec_module.DNS_SUBDOMAIN_PATTERN),
        ("spec.userData.valueFrom.configMapKeyRef.key", spec_module.DATA_KEY_PATTERN),
    ],
)
def test_patterns_are_the_same_as_the_operators(path, pattern):
    assert _schema_at(path)["pattern"] == pattern


def test_kms_key_rule_uses_the_operators_pattern():
    [rule] = _schema_at("spec.systemDiskEncryption")["x-kubernetes-validations"]
    assert rule["rule"] == f"self.kmsKeyId.matches('{spec_module.UUID_PATTERN}')"


def test_defaults_and_bounds_are_the_same_as_the_operators():
    properties = SPEC_SCHEMA["properties"]
    assert (
        properties["adminPasswordSecretRef"]["properties"]["key"]["default"]
        == spec_module.DEFAULT_PASSWORD_KEY
    )
    assert (properties["stopServer"]["default"], properties["byol"]["default"]) == (False, False)
    assert properties["cloudInit"]["default"] is True
    poll, timeout = properties["pollIntervalSeconds"], properties["timeoutSeconds"]
    assert poll["default"] == spec_module.DEFAULT_POLL_INTERVAL_SECONDS
    assert (poll["minimum"], poll["maximum"]) == spec_module.POLL_INTERVAL_RANGE
    assert timeout["default"] == spec_module.DEFAULT_TIMEOUT_SECONDS
    assert (timeout["minimum"], timeout["maximum"]) == spec_module.TIMEOUT_RANGE
    assert properties["userData"]["properties"]["value"]["maxLength"] == spec_module.USER_DATA_MAX_BYTES
    assert properties["region"]["maxLength"] == spec_module.REGION_MAX_LENGTH
    assert properties["endpoint"]["maxLength"] == spec_module.ENDPOINT_MAX_LENGTH
    assert properties["keyName"]["maxLength"] == spec_module.KEY_PAIR_NAME_MAX_LENGTH


def test_defaulting_fills_what_parse_spec_assumes():
    raw = {"serverId": SERVER, "adminPasswordSecretRef": {"name": "pw"}}
    defaulted = apply_defaults(SPEC_SCHEMA, raw)
    assert defaulted == {
        **raw,
        "adminPasswordSecretRef": {"name": "pw", "key": "password"},
        "stopServer": False,
        "byol": False,
        "cloudInit": True,
        "pollIntervalSeconds": 10,
        "timeoutSeconds": 1800,
    }
    assert parse_spec(defaulted) == parse_spec(raw)


# --- status: everything the operator and kopf write is kept ---

FULL_STATUS = {
    "phase": "Reinstalling",
    "message": "the cloud job 8a2b is RUNNING",
    "observedGeneration": 1,
    "waitingFor": 'Secret "hwc" in namespace "ns"',
    "jobId": "ff80808288d41e1b018a4b5a6e3a2c1f",
    "jobStatus": "RUNNING",
    "jobBeginTime": "2024-05-06T07:08:09.123Z",
    "jobEndTime": "",
    "submittedAt": "2024-05-06T07:08:09Z",
    "completedAt": "2024-05-06T07:18:09.5+00:00",
    "imageBefore": "0b4a6d2e-1f3c-4e5a-9b7d-2c8e6f0a1b3d",
    "imageAfter": "67f433d8-ed0e-4321-a8a2-a71838539e09",
    "revisionTagged": True,
    "subJobs": [
        {
            "jobId": "ff80808288d41e1b018a4b5a6e3a2c20",
            "jobType": "rebuildServer",
            "status": "FAIL",
            "errorCode": "Ecs.0011",
            "failReason": "password invalid",
            "beginTime": "2024-05-06T07:08:10.000Z",
            "endTime": "",
        }
    ],
    "failure": {"code": "Ecs.0011", "reason": "password invalid"},
    "attempt": {
        "id": "3f1c",
        "startedAt": "2024-05-06T07:08:08Z",
        "serverUpdatedBefore": "2024-05-06T07:00:00Z",
        "serverLaunchedBefore": "2024-04-01T10:00:00.250Z",
        "serverStatusBefore": "ACTIVE",
        "api": "v2",
    },
    "unconfirmedAttempt": {
        "id": "29aa",
        "startedAt": "2024-05-06T07:06:00Z",
        "serverUpdatedBefore": "2024-05-06T07:00:00Z",
        "serverLaunchedBefore": "2024-04-01T10:00:00.250Z",
        "serverStatusBefore": "ACTIVE",
        "api": "v2",
    },
    "conditions": [
        {
            "type": t,
            "status": s,
            "reason": "JobRunning",
            "message": "m",
            "lastTransitionTime": "2024-05-06T07:08:09Z",
            "observedGeneration": 1,
        }
        for t, s in [("Ready", "False"), ("Reconciling", "True"), ("Stalled", "False"), ("Submitted", "True")]
    ],
    "kopf": {"progress": {"reconcile": {"started": "2024-05-06T07:08:08.1", "retries": 1}}, "dummy": "x"},
}


def test_every_status_field_the_operator_writes_is_declared_and_kept():
    body = resource({"serverId": SERVER, "keyName": "kp", "userId": USER}, status=FULL_STATUS)
    assert admit(body) == []
    declared = set(STATUS_SCHEMA["properties"])
    assert declared == set(FULL_STATUS)


@pytest.mark.parametrize("phase", ["Pending", "Submitting", "Reinstalling", "Succeeded", "Failed"])
def test_phases(phase):
    assert (
        admit(resource({"serverId": SERVER, "keyName": "kp", "userId": USER}, status={"phase": phase})) == []
    )


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        ({"phase": "Running"}, ".status.phase"),
        ({"conditions": [{"type": "Ready", "status": "Yes"}]}, ".status.conditions[0].status"),
        ({"conditions": [{"status": "True"}]}, ".status.conditions[0].type: required"),
        ({"conditions": [{"type": "Ready", "status": "True"}] * 2}, ".status.conditions: duplicate"),
        ({"submittedAt": "yesterday"}, ".status.submittedAt"),
        ({"attempt": {"api": "v3"}}, ".status.attempt.api"),
        ({"jobID": "x"}, ".status.jobID: pruned"),
    ],
)
def test_status_mistakes_are_caught(status, problem):
    errors = admit(resource({"serverId": SERVER, "keyName": "kp", "userId": USER}, status=status))
    assert any(error.startswith(problem) for error in errors), errors


# --- CEL rules behave ---

IMMUTABLE = "spec is immutable: create a new EcsReinstall to reinstall again"
BOTH = "adminPasswordSecretRef and keyName cannot both be set"
USER_ID = "userId is required with keyName"
NO_USER_DATA_V1 = "userData needs Cloud-Init"
EXACTLY_ONE_V1 = "cloudInit false (the v1 API for images without Cloud-Init) needs exactly one"
ONE_OF = "set one of adminPasswordSecretRef, keyName or userData"
USER_DATA_ONE = "userData needs exactly one of value or valueFrom"
VALUE_FROM_ONE = "userData.valueFrom needs exactly one of secretKeyRef or configMapKeyRef"
KMS_FORM = "kmsKeyId must be a KMS key ID"

PW = {"name": "pw"}
UD = {"value": "#cloud-config\n"}
SECRET_UD = {"secretKeyRef": {"name": "ud", "key": "k"}}
CM_UD = {"configMapKeyRef": {"name": "ud", "key": "k"}}

CEL_CASES = [
    # (spec fields besides serverId, the messages expected; [] = admitted)
    ({"adminPasswordSecretRef": PW}, []),
    ({"keyName": "kp", "userId": USER}, []),
    ({"userData": UD}, []),
    ({"userData": {"valueFrom": SECRET_UD}}, []),
    ({"userData": {"valueFrom": CM_UD}}, []),
    ({"adminPasswordSecretRef": PW, "userData": UD}, []),
    ({"adminPasswordSecretRef": PW, "keyName": "kp", "userId": USER}, [BOTH]),
    ({"keyName": "kp"}, [USER_ID]),
    ({}, [ONE_OF]),
    ({"userId": USER, "stopServer": True}, [ONE_OF]),
    ({"cloudInit": False, "adminPasswordSecretRef": PW}, []),
    ({"cloudInit": False, "keyName": "kp", "userId": USER}, []),
    ({"cloudInit": False, "userData": UD}, [NO_USER_DATA_V1, EXACTLY_ONE_V1]),
    ({"cloudInit": False, "adminPasswordSecretRef": PW, "userData": UD}, [NO_USER_DATA_V1]),
    ({"cloudInit": False}, [EXACTLY_ONE_V1, ONE_OF]),
    (
        {"cloudInit": False, "adminPasswordSecretRef": PW, "keyName": "kp", "userId": USER},
        [BOTH, EXACTLY_ONE_V1],
    ),
    ({"userData": {"value": "x", "valueFrom": SECRET_UD}}, [USER_DATA_ONE]),
    ({"userData": {}}, [USER_DATA_ONE]),
    ({"userData": {"valueFrom": {}}}, [VALUE_FROM_ONE]),
    ({"userData": {"valueFrom": {**SECRET_UD, **CM_UD}}}, [VALUE_FROM_ONE]),
    ({"adminPasswordSecretRef": PW, "systemDiskEncryption": {"kmsKeyId": KMS}}, []),
    ({"adminPasswordSecretRef": PW, "systemDiskEncryption": {"kmsKeyId": KMS.upper()}}, [KMS_FORM]),
    ({"adminPasswordSecretRef": PW, "systemDiskEncryption": {"kmsKeyId": "alias/disk-key"}}, [KMS_FORM]),
    ({"adminPasswordSecretRef": PW, "systemDiskEncryption": {"kmsKeyId": KMS.replace("-", "")}}, [KMS_FORM]),
]


@pytest.mark.parametrize(("fields", "expected"), CEL_CASES)
def test_cel_rules_on_create(fields, expected):
    failures = cel_failures(SCHEMA, apply_defaults(SCHEMA, resource({"serverId": SERVER, **fields})))
    assert len(failures) == len(expected), failures
    for message, fragment in zip(failures, expected, strict=True):
        assert message.startswith(fragment)


@pytest.mark.parametrize(("fields", "expected"), CEL_CASES)
def test_cel_rules_also_hold_without_defaults(fields, expected):
    """A looser cluster may not default cloudInit: the rules treat an absent cloudInit as true."""
    assert len(cel_failures(SCHEMA, resource({"serverId": SERVER, **fields}))) == len(expected)


@pytest.mark.parametrize(("fields", "expected"), CEL_CASES)
def test_parse_spec_agrees_with_the_cel_rules(fields, expected):
    raw = {"serverId": SERVER, **fields}
    if expected:
        with pytest.raises(InvalidSpec):
            parse_spec(raw)
    else:
        parse_spec(raw)


def test_combination_messages_are_the_same_in_the_crd_and_the_operator():
    cel_messages = {v["message"] for v in SPEC_SCHEMA["x-kubernetes-validations"]}
    operator_messages = {
        problem.message
        for flags in [
            dict(has_password=True, has_key=True, has_user_id=False, has_user_data=True, cloud_init=False),
            dict(has_password=False, has_key=False, has_user_id=False, has_user_data=False, cloud_init=True),
        ]
        for problem in spec_module.combination_problems(**flags)
    }
    assert operator_messages == cel_messages - {IMMUTABLE}


def test_spec_is_immutable():
    old = resource({"serverId": SERVER, "adminPasswordSecretRef": PW})
    assert admit(old, old) == []
    changed = resource({"serverId": SERVER, "adminPasswordSecretRef": PW, "stopServer": True})
    assert admit(changed, old) == [IMMUTABLE]
    other_server = resource({"serverId": SERVER.replace("6e2f", "7e2f"), "adminPasswordSecretRef": PW})
    assert admit(other_server, old) == [IMMUTABLE]
    # Defaults applied on both sides: writing a default explicitly is no change.
    explicit = resource({"serverId": SERVER, "adminPasswordSecretRef": {"name": "pw", "key": "password"}})
    assert admit(explicit, old) == []
    # Status and metadata may change freely (the operator and kopf write them).
    touched = resource({"serverId": SERVER, "adminPasswordSecretRef": PW}, status={"phase": "Succeeded"}) | {
        "metadata": {"name": "r", "namespace": "ns", "finalizers": ["kopf.zalando.org/KopfFinalizerMarker"]}
    }
    assert admit(touched, old) == []


def test_schema_rejects_malformed_fields_before_cel():
    bad = resource(
        {
            "serverId": "i-0123",
            "region": "CN North 4",
            "endpoint": "ftp://x",
            "adminPasswordSecretRef": {"name": "Bad_Name"},
            "pollIntervalSeconds": 1,
            "timeoutSeconds": 90000,
            "userData": {"value": "x" * 32769},
        }
    )
    errors = schema_errors(SCHEMA, apply_defaults(SCHEMA, bad))
    assert {error.split(":")[0] for error in errors} == {  # serverId: by its CEL rule (see below)
        ".spec.region",
        ".spec.endpoint",
        ".spec.adminPasswordSecretRef.name",
        ".spec.pollIntervalSeconds",
        ".spec.timeoutSeconds",
        ".spec.userData.value",
    }


def test_unknown_spec_fields_would_be_pruned():
    errors = admit(resource({"serverId": SERVER, "adminPasswordSecretRef": PW, "adminpass": "x"}))
    assert errors == [".spec.adminpass: pruned (not declared)"]


# --- the samples in deploy/examples ---

EXAMPLES = ROOT / "deploy" / "examples"


def load_examples() -> dict[Path, list[dict]]:
    return {
        path: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(EXAMPLES.glob("*.yaml"))
    }


def example_objects(kind: str) -> dict[str, dict]:
    return {
        doc["metadata"]["name"]: doc
        for docs in load_examples().values()
        for doc in docs
        if doc["kind"] == kind
    }


def example_data(kind: str, name: str, key: str) -> bytes:
    obj = example_objects(kind)[name]
    if key in obj.get("stringData", {}):
        return obj["stringData"][key].encode()
    if key in obj.get("data", {}):
        return base64.b64decode(obj["data"][key]) if kind == "Secret" else obj["data"][key].encode()
    raise KeyError(f"{kind} {name} has no key {key}")


def resolve_from_examples(spec: ReinstallSpec) -> ResolvedInputs:
    """What the operator would read from the sample Secrets and ConfigMaps."""
    password = None
    if spec.admin_password_ref:
        password = example_data("Secret", spec.admin_password_ref.name, spec.admin_password_ref.key).decode()
    user_data = None
    if spec.user_data and spec.user_data.secret_ref:
        user_data = example_data("Secret", spec.user_data.secret_ref.name, spec.user_data.secret_ref.key)
    if spec.user_data and spec.user_data.config_map_ref:
        ref = spec.user_data.config_map_ref
        user_data = example_data("ConfigMap", ref.name, ref.key)
    return ResolvedInputs(admin_password=password, user_data=user_data)


def test_the_samples_cover_every_login_mode_and_the_v1_api():
    samples = {name: parse_spec(doc["spec"]) for name, doc in example_objects("EcsReinstall").items()}
    assert set(samples) == {"web-01", "web-02", "web-03", "web-04", "legacy-01"}
    assert (samples["web-01"].auth_mode, samples["web-01"].stop_server) == ("password", True)
    assert samples["web-02"].auth_mode == "keypair"
    assert samples["web-03"].auth_mode == "user-data"
    assert (samples["legacy-01"].api_version, samples["legacy-01"].auth_mode) == ("v1", "password")
    assert samples["web-04"].image_id and samples["web-04"].api_version == "v2"  # a change of OS
    assert len({sample.server_id for sample in samples.values()}) == len(samples)


@pytest.mark.parametrize("name", ["web-01", "web-02", "web-03", "web-04", "legacy-01"])
def test_each_sample_is_admitted_and_builds_a_request(name):
    doc = example_objects("EcsReinstall")[name]
    assert doc["apiVersion"] == "ecs.reinstall.dev/v1alpha1"
    assert admit(doc) == []
    parsed = parse_spec(apply_defaults(SPEC_SCHEMA, doc["spec"]))
    assert parsed == parse_spec(doc["spec"])
    body = build_reinstall_body(parsed, resolve_from_examples(parsed), namespace="default")
    assert body["os-change"]["imageid"] == parsed.image_id if parsed.image_id else body["os-reinstall"]
    credentials = example_objects("Secret")[parsed.credentials_secret]["stringData"]
    assert {"accessKey", "secretKey", "projectId"} <= set(credentials)
    assert re.fullmatch(spec_module.HEX32_PATTERN, credentials["projectId"])


def test_each_file_lists_its_server_ids_at_the_top():
    for path, docs in load_examples().items():
        listed = set()
        for line in path.read_text().splitlines():
            if line.startswith("# Demo ECS servers:"):
                listed |= set(line.split(":", 1)[1].split())
        in_file = {doc["spec"]["serverId"] for doc in docs if doc["kind"] == "EcsReinstall"}
        assert listed == in_file, path.name
        assert all(re.fullmatch(spec_module.UUID_PATTERN, server) for server in listed)


def test_sample_credentials_are_clearly_fake():
    credentials = example_objects("Secret")["hwc-credentials"]["stringData"]
    assert credentials["accessKey"].startswith("DEMO") and "fake" in credentials["secretKey"]


@pytest.mark.parametrize(
    ("server_id", "admitted"),
    [
        (SERVER, True),
        ("web-01", False),  # a name, not an ID
        (SERVER.upper(), False),
        (SERVER.replace("-", "")[:36], False),
        (SERVER[:-1] + "g", False),
    ],
)
def test_server_id_is_told_to_be_a_lowercase_uuid_by_the_crd_and_the_operator_alike(server_id, admitted):
    """`serverId: web-01` used to say "should be at least 36 chars long": the rule says what to write."""
    failures = cel_failures(SCHEMA, resource({"serverId": server_id, "adminPasswordSecretRef": PW}))
    assert (failures == []) is admitted
    if not admitted:
        assert failures == [failures[0]] and failures[0].startswith("serverId must be a lowercase UUID")
        with pytest.raises(InvalidSpec, match="lowercase UUID"):
            parse_spec({"serverId": server_id, "adminPasswordSecretRef": PW})
    rule = _schema_at("spec.serverId")["x-kubernetes-validations"][0]["rule"]
    assert spec_module.UUID_PATTERN in rule  # the operator's own check is the same
    assert "pattern" not in _schema_at("spec.serverId") and "minLength" not in _schema_at("spec.serverId")
