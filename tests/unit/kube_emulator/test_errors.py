"""`kind: Status` bodies with the apiserver's wording (k8s.io/apimachinery pkg/api/errors, validation/field)."""

from __future__ import annotations

import pytest

from kube_emulator import errors

GR = "ecsreinstalls.ecs.reinstall.dev"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (
            errors.not_found(GR, "web-01"),
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": 'ecsreinstalls.ecs.reinstall.dev "web-01" not found',
                "reason": "NotFound",
                "details": {"name": "web-01", "group": "ecs.reinstall.dev", "kind": "ecsreinstalls"},
                "code": 404,
            },
        ),
        (
            errors.not_found("secrets", "hwc"),
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": 'secrets "hwc" not found',
                "reason": "NotFound",
                "details": {"name": "hwc", "kind": "secrets"},
                "code": 404,
            },
        ),
        (
            errors.bad_request("the export parameter, deprecated since v1.14, is no longer supported"),
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "the export parameter, deprecated since v1.14, is no longer supported",
                "reason": "BadRequest",
                "code": 400,
            },
        ),
    ],
    ids=["not found", "not found in the core group", "bad request has no details"],
)
def test_status_bodies(error: errors.ApiError, status: dict) -> None:
    assert error.to_status() == status
    assert list(error.to_status()) == list(status)  # the apiserver's field order


@pytest.mark.parametrize(
    ("error", "code", "reason", "message"),
    [
        (errors.already_exists(GR, "web-01"), 409, "AlreadyExists", f'{GR} "web-01" already exists'),
        (
            errors.conflict(GR, "web-01"),
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {GR} "web-01": the object has been modified; please apply your '
            "changes to the latest version and try again",
        ),
        (errors.gone("too old"), 410, "Gone", "too old"),
        (errors.too_old_resource_version(5, 100), 410, "Expired", "too old resource version: 5 (99)"),
        (
            errors.method_not_allowed("events", "create"),
            405,
            "MethodNotAllowed",
            'create is not supported on resources of kind "events"',
        ),
        (
            errors.unsupported_media_type(["application/json-patch+json", "application/merge-patch+json"]),
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json",
        ),
        (
            errors.unprocessable_patch("testing value /a failed: test failed"),
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        ),
        (errors.internal_error("boom"), 500, "InternalError", "Internal error occurred: boom"),
    ],
)
def test_error_wording(error: errors.ApiError, code: int, reason: str, message: str) -> None:
    assert (error.code, error.reason, error.message) == (code, reason, message)


def test_invalid_lists_causes_and_aggregates_the_message() -> None:
    causes = [errors.field_required("spec.serverId"), errors.field_invalid("spec.region", "eu", "too short")]
    status = errors.invalid("EcsReinstall", "ecs.reinstall.dev", "web-01", causes).to_status()
    assert status["message"] == (
        'EcsReinstall.ecs.reinstall.dev "web-01" is invalid: '
        '[spec.serverId: Required value, spec.region: Invalid value: "eu": too short]'
    )
    assert status["details"] == {
        "name": "web-01",
        "group": "ecs.reinstall.dev",
        "kind": "EcsReinstall",
        "causes": [
            {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.serverId"},
            {
                "reason": "FieldValueInvalid",
                "message": 'Invalid value: "eu": too short',
                "field": "spec.region",
            },
        ],
    }


def test_invalid_with_one_cause_has_no_brackets_and_core_kinds_no_group() -> None:
    error = errors.invalid("Secret", "", "hwc", [errors.field_required("data[accessKey]")])
    assert error.message == 'Secret "hwc" is invalid: data[accessKey]: Required value'


def test_duplicate_messages_are_listed_once() -> None:
    cause = errors.field_required("spec.a")
    assert (
        errors.invalid("X", "g.io", "n", [cause, cause]).message
        == 'X.g.io "n" is invalid: spec.a: Required value'
    )


@pytest.mark.parametrize(
    ("cause", "text"),
    [
        (errors.field_required("spec.a", "must be set"), "spec.a: Required value: must be set"),
        (errors.field_forbidden("spec.a", "not allowed"), "spec.a: Forbidden: not allowed"),
        (errors.field_too_long("spec.a", 64), "spec.a: Too long: may not be more than 64 bytes"),
        (errors.field_too_many("spec.a", 5, 3), "spec.a: Too many: 5: must have at most 3 items"),
        (errors.field_duplicate("spec.a[1]", "x"), 'spec.a[1]: Duplicate value: "x"'),
        (
            errors.field_not_supported("spec.a", 7, ["1", "2"]),
            'spec.a: Unsupported value: 7: supported values: "1", "2"',
        ),
        (errors.field_invalid("spec.a", None, "no"), 'spec.a: Invalid value: "null": no'),
        (errors.field_invalid("spec.a", True, "no"), "spec.a: Invalid value: true: no"),
        (errors.field_invalid("spec.a", 1.5, "no"), "spec.a: Invalid value: 1.5: no"),
        (errors.field_invalid("spec.a", ["x", 1], "no"), 'spec.a: Invalid value: []interface {}{"x", 1}: no'),
        (errors.field_invalid("", "x", "no"), '<nil>: Invalid value: "x": no'),
    ],
)
def test_field_error_bodies(cause: errors.Cause, text: str) -> None:
    assert str(cause) == text


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain", '"plain"'),
        ('a "b"', '"a \\"b\\""'),
        ("tab\there\n", '"tab\\there\\n"'),
        ("é", '"é"'),
        ("\x01", '"\\x01"'),
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    assert errors.go_quote(text) == quoted


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (600.0, "600"),
        (1.5, "1.5"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
    ],
)
def test_go_float(number: float, text: str) -> None:
    assert errors.go_float(number) == text
