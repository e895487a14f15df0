"""Classification of ECS failures, parsing of every error body shape, and what error messages may show."""

from datetime import UTC, datetime

import pytest

from ecs_reinstall.cloud.errors import (
    ERROR_CLASSES,
    AmbiguousError,
    CloudError,
    ErrorDetail,
    ErrorKind,
    Operation,
    TerminalError,
    ThrottledError,
    TransientError,
    classify,
    clean_message,
    error_from_response,
    is_rate_limit,
    parse_error_body,
    parse_retry_after,
    transport_error,
)

POST, POST_V1, JOB, SERVER = (
    Operation.REINSTALL,
    Operation.REINSTALL_V1,
    Operation.GET_JOB,
    Operation.GET_SERVER,
)
T, R, X, A = ErrorKind.THROTTLED, ErrorKind.TRANSIENT, ErrorKind.TERMINAL, ErrorKind.AMBIGUOUS

CLASSIFICATION = [
    # (operation, http status, code, request sent, expected)
    # throttling: refused before any work was done
    (JOB, 429, "APIGW.0308", True, T),
    (POST, 429, "APIGW.0308", True, T),
    (POST, 429, None, True, T),
    (POST_V1, 429, "Common.0024", True, T),
    (SERVER, 400, "APIGW.0308", True, T),
    (JOB, 503, "Common.1503", True, T),
    (SERVER, 501, "Ecs.0603", True, T),
    (POST, 501, "Ecs.0603", True, T),  # ECS's own "another operation runs, retry in a minute"
    (POST_V1, 501, "Ecs.0603", True, T),
    # a 503 on the POST proves nothing: a proxy may have given up on a backend that went on working
    (POST, 503, "Common.1503", True, A),
    (POST, 503, None, True, A),
    # 5xx: transient on a read, ambiguous on the write
    (JOB, 500, "Ecs.0001", True, R),
    (SERVER, 502, None, True, R),
    (JOB, 504, None, True, R),
    (JOB, 408, None, True, R),
    (POST, 500, "Ecs.0001", True, A),
    (POST, 502, None, True, A),
    (POST_V1, 504, None, True, A),
    (POST, 408, None, True, A),
    # 4xx: terminal
    (POST, 400, "Ecs.0011", True, X),
    (POST, 400, "Ecs.0100", True, X),
    (POST, 401, "APIGW.0301", True, X),
    (POST, 401, "APIGW.0303", True, X),
    (POST, 403, "Pdp.0001", True, X),
    (SERVER, 404, "Ecs.0114", True, X),
    (SERVER, 404, "Ecs.0614", True, X),
    (JOB, 404, "Common.0011", True, X),
    (JOB, 400, "Common.0011", True, X),
    (POST, 409, "Ecs.0605", True, X),
    (SERVER, 301, None, True, X),  # redirects are not followed: a misconfigured endpoint
    # no response at all
    (POST, None, None, False, R),  # connection refused / connect timeout: nothing was sent
    (JOB, None, None, False, R),
    (POST, None, None, True, A),  # read timeout, connection dropped after sending
    (POST_V1, None, None, True, A),
    (JOB, None, None, True, R),
    (SERVER, None, None, True, R),
]


@pytest.mark.parametrize(("operation", "status", "code", "sent", "expected"), CLASSIFICATION)
def test_classification_table(operation, status, code, sent, expected):
    assert classify(operation, status, code, request_sent=sent) is expected


def test_classify_accepts_operation_names_and_rejects_unknown_ones():
    assert classify("get_job", 500, None, request_sent=True) is ErrorKind.TRANSIENT
    with pytest.raises(ValueError):
        classify("delete_everything", 500, None, request_sent=True)


def test_misconfiguration_is_terminal_even_for_reads():
    assert classify(JOB, None, None, request_sent=False, misconfigured=True) is ErrorKind.TERMINAL


def test_rate_limit_versus_busy():
    assert is_rate_limit(429, None)
    assert is_rate_limit(400, "APIGW.0308")
    assert is_rate_limit(503, "Common.1503")
    assert not is_rate_limit(501, "Ecs.0603")  # busy concerns one server, not the endpoint
    assert not is_rate_limit(500, None)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [(T, ThrottledError), (R, TransientError), (X, TerminalError), (A, AmbiguousError)],
)
def test_each_kind_has_its_own_exception_class(kind, cls):
    assert ERROR_CLASSES[kind] is cls
    assert issubclass(cls, CloudError) and cls.kind is kind
    assert len(set(ERROR_CLASSES.values())) == len(ErrorKind)


# --- body shapes -----------------------------------------------------------------------------------------


def test_ecs_body_with_details():
    body = (
        b'{"error": {"code": "Ecs.0011", "message": "Invalid password.", '
        b'"details": [{"code": "Ecs.0011", "message": "too short"}, {"message": "no digit"}]}}'
    )
    parsed = parse_error_body(body, {"X-Request-Id": "req-1"})
    assert parsed.code == "Ecs.0011"
    assert parsed.message == "Invalid password."
    assert parsed.request_id == "req-1"
    assert parsed.details == (ErrorDetail("Ecs.0011", "too short"), ErrorDetail(None, "no digit"))


def test_ecs_body_without_details():
    parsed = parse_error_body(b'{"error": {"code": "Ecs.0114", "message": "server not found"}}', {})
    assert (parsed.code, parsed.message, parsed.request_id, parsed.details) == (
        "Ecs.0114",
        "server not found",
        None,
        (),
    )


def test_gateway_body_request_id_from_body_wins():
    body = (
        b'{"error_code": "APIGW.0308", "error_msg": "The throttling threshold has been reached", '
        b'"request_id": "b1"}'
    )
    parsed = parse_error_body(body, {"x-request-id": "h1"})
    assert (parsed.code, parsed.message, parsed.request_id) == (
        "APIGW.0308",
        "The throttling threshold has been reached",
        "b1",
    )


def test_openstack_style_fault():
    parsed = parse_error_body(b'{"itemNotFound": {"message": "Instance could not be found", "code": 404}}')
    assert parsed.code is None  # a numeric code is the HTTP status, not a cloud error code
    assert parsed.message == "Instance could not be found"


def test_empty_body_takes_request_id_from_header():
    parsed = parse_error_body(b"", {"X-Request-Id": "req-9"})
    assert (parsed.code, parsed.message, parsed.request_id) == (None, None, "req-9")


def test_html_body_gives_its_title():
    body = b"<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
    assert parse_error_body(body).message == "502 Bad Gateway"


def test_html_without_title_gives_text_without_scripts():
    body = b"<html><script>var x = 1;</script><body><p>Service &amp; gateway down</p></body></html>"
    assert clean_message(parse_error_body(body).message) == "Service & gateway down"


def test_plain_text_and_unknown_json_and_bad_utf8():
    assert parse_error_body(b"upstream connect error").message == "upstream connect error"
    assert parse_error_body(b'{"foo": 1}').message == '{"foo": 1}'
    assert parse_error_body(b"\xff\xfe oops").message.endswith("oops")
    assert parse_error_body(b"[1, 2]").message == "[1, 2]"


# --- Retry-After -------------------------------------------------------------------------------------------


def test_retry_after_forms():
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("Wed, 01 May 2024 12:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


# --- building errors and what they show ---------------------------------------------------------------------


def test_error_from_response_carries_every_field():
    error = error_from_response(
        POST,
        400,
        {"X-Request-Id": "req-42", "Content-Type": "application/json"},
        b'{"error": {"code": "Ecs.0011", "message": "Invalid password.", "details": [{"code": "Ecs.0011", '
        b'"message": "needs 3 character classes"}]}}',
    )
    assert isinstance(error, TerminalError) and error.kind is ErrorKind.TERMINAL
    assert (error.http_status, error.code, error.request_id, error.operation) == (
        400,
        "Ecs.0011",
        "req-42",
        "reinstall",
    )
    text = str(error)
    for part in (
        "reinstall",
        "HTTP 400",
        "Ecs.0011",
        "Invalid password.",
        "needs 3 character classes",
        "req-42",
    ):
        assert part in text


def test_throttled_error_keeps_retry_after():
    error = error_from_response(
        JOB,
        429,
        {"Retry-After": "2"},
        b'{"error_code": "APIGW.0308", "error_msg": "throttled", "request_id": "r"}',
    )
    assert isinstance(error, ThrottledError)
    assert error.retry_after == 2.0
    assert "retry after 2 s" in str(error)


def test_ambiguous_message_warns_against_resending():
    error = error_from_response(POST, 500, {}, b"")
    assert isinstance(error, AmbiguousError)
    assert "may have been processed" in str(error)
    assert str(error).startswith("ECS reinstall failed: HTTP 500")


def test_transport_errors():
    refused = transport_error(POST, "connection refused", request_sent=False)
    assert isinstance(refused, TransientError) and "no response (connection refused)" in str(refused)
    dropped = transport_error(POST, "server disconnected", request_sent=True)
    assert isinstance(dropped, AmbiguousError)
    tls = transport_error(JOB, "certificate verify failed", request_sent=False, misconfigured=True)
    assert isinstance(tls, TerminalError)


SECRETS = ("Sup3r-Secret!pw", "SK-very-secret-key", "tok3n-security-value", "I2Nsb3VkLWNvbmZpZw==")


def test_echoed_secrets_are_masked_in_every_text_field():
    echo = " and ".join(SECRETS)
    body = (
        '{"error": {"code": "Ecs.0011", "message": "bad adminpass ' + echo + '", '
        '"details": [{"code": "X", "message": "' + echo + '"}]}}'
    ).encode()
    error = error_from_response(POST, 400, {"X-Request-Id": "r1"}, body, secrets=SECRETS)
    for text in (str(error), repr(error), error.message, *(d.message for d in error.details)):
        for secret in SECRETS:
            assert secret not in text
    assert "***" in str(error)


def test_an_echo_in_the_request_id_is_masked_too():
    body = ('{"error_code": "X.1", "error_msg": "m", "request_id": "id-' + SECRETS[0] + '"}').encode()
    error = error_from_response(POST, 400, {}, body, secrets=SECRETS)
    assert error.request_id == "id-***"
    assert SECRETS[0] not in str(error) and SECRETS[0] not in repr(error)


def test_messages_are_single_line_and_bounded():
    text = clean_message("line1\r\nline2\x00\x1b[31m" + "x" * 2000)
    assert "\n" not in text and "\x00" not in text and "\x1b" not in text
    assert len(text) <= 500


def test_short_values_are_not_masked_as_secrets():
    # masking a 2-character "secret" would garble every message; no secret handled here is that short
    assert clean_message("ok fine", secrets=["ok"]) == "ok fine"


def test_repr_names_class_and_fields():
    error = error_from_response(SERVER, 404, {}, b'{"error": {"code": "Ecs.0114", "message": "gone"}}')
    assert repr(error).startswith("TerminalError(operation='get_server', http_status=404, code='Ecs.0114'")
