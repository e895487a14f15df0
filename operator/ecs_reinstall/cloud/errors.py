"""Typed, classified errors of the ECS API: what went wrong, and what the caller may safely do about it.

Every failure of a cloud call becomes one `CloudError` whose class says what to do next:

- `ThrottledError`: the cloud refused to work *now* (rate limit, or the server is busy); nothing was done.
- `TransientError`: a failure that may pass (5xx on a read, connection refused...); retrying a read is safe.
- `TerminalError`: the request itself is wrong or not allowed (4xx); retrying cannot help.
- `AmbiguousError`: a write may or may not have been processed (5xx, or the connection lost after sending).
  The reinstall POST has no idempotency token, so the caller must look at the server before sending it again.

`classify` is the one place where that decision is made. Exceptions never carry the request body, headers or
credentials; the cloud's own message is kept (it is theirs), cleaned of control characters, shortened, and any
secret value the caller names is masked, in case the cloud echoes it.
"""

from __future__ import annotations

import enum
import html
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar


class ErrorKind(enum.StrEnum):
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    TERMINAL = "terminal"
    AMBIGUOUS = "ambiguous"


class Operation(enum.StrEnum):
    """The ECS calls the client makes (the same names the emulator's fault injection uses)."""

    REINSTALL = "reinstall"  # POST /v2/{project}/cloudservers/{server}/reinstallos (Cloud-Init images)
    REINSTALL_V1 = "reinstall_v1"  # POST /v1/{project}/cloudservers/{server}/reinstallos (no Cloud-Init)
    CHANGE_OS = "change_os"  # POST /v2/{project}/cloudservers/{server}/changeos (spec.imageId, Cloud-Init)
    CHANGE_OS_V1 = "change_os_v1"  # POST /v1/{project}/cloudservers/{server}/changeos (no Cloud-Init)
    GET_JOB = "get_job"  # GET /v1/{project}/jobs/{job}
    LIST_SERVERS = "list_servers"  # GET /v1/{project}/cloudservers/detail (pages, tag filters)
    TAG_SERVER = "tag_server"  # POST /v1/{project}/cloudservers/{server}/tags/action (create: idempotent)
    GET_SERVER = "get_server"  # GET /v1/{project}/cloudservers/{server}
    LIST_ACTIONS = "list_actions"  # GET /v2.1/{project}/servers/{server}/os-instance-actions
    GET_ACTION = "get_action"  # GET /v2.1/{project}/servers/{server}/os-instance-actions/{request_id}

    @property
    def mutating(self) -> bool:
        """A mutating call has effects in the cloud: it must not be repeated while its outcome is unknown."""
        return self in (
            Operation.REINSTALL,
            Operation.REINSTALL_V1,
            Operation.CHANGE_OS,
            Operation.CHANGE_OS_V1,
        )


# Rate limiting by the API gateway or the service: the request was refused before any work was done.
RATE_LIMIT_CODES = frozenset({"APIGW.0308", "Common.0024", "Common.1503"})
# ECS refuses the operation because another one runs on the server ("retry in a minute", HTTP 501).
BUSY_CODES = frozenset({"Ecs.0603"})


def classify(
    operation: Operation | str,
    http_status: int | None,
    code: str | None,
    *,
    request_sent: bool,
    misconfigured: bool = False,
) -> ErrorKind:
    """Decide what a failed call means. `http_status` is None when no response arrived.

    `request_sent` says whether any byte of the request may have reached the server (False for connection
    refused / connect timeout). `misconfigured` means no retry can help: TLS verification failed, or the
    request could not even be written (an invalid header value).

    Choice for the reinstall POST: only answers that prove the request was refused before processing are
    THROTTLED (HTTP 429 with any code, a gateway rate-limit code on a 4xx, or ECS's own busy code Ecs.0603).
    Every other 5xx on the POST, including 503 Common.1503, is AMBIGUOUS: a 503 may come from a proxy or
    gateway that gave up waiting for a backend that went on to process the request, so it proves nothing.
    """
    operation = Operation(operation)
    if http_status is None:
        if misconfigured:
            return ErrorKind.TERMINAL
        if not request_sent:
            return ErrorKind.TRANSIENT
        return ErrorKind.AMBIGUOUS if operation.mutating else ErrorKind.TRANSIENT
    if code in BUSY_CODES:
        return ErrorKind.THROTTLED
    server_side = http_status >= 500 or http_status == 408
    if operation.mutating and server_side:
        return ErrorKind.AMBIGUOUS
    if http_status == 429 or code in RATE_LIMIT_CODES:
        return ErrorKind.THROTTLED
    if server_side:
        return ErrorKind.TRANSIENT
    # 4xx: the request is wrong (400), not authorised (401/403) or aims at nothing (404); 3xx: a misconfigured
    # endpoint (redirects are not followed). Neither was processed, and repeating it cannot help.
    return ErrorKind.TERMINAL


def is_rate_limit(http_status: int | None, code: str | None) -> bool:
    """Rate limiting (unlike a busy server) concerns every call to the endpoint: the shared bucket pauses."""
    return http_status == 429 or code in RATE_LIMIT_CODES


@dataclass(frozen=True)
class ErrorDetail:
    code: str | None
    message: str | None


class CloudError(Exception):
    """A failed ECS call. Subclasses tell the caller what to do; `kind` is the same as a value."""

    kind: ClassVar[ErrorKind]

    def __init__(
        self,
        *,
        operation: Operation | str,
        message: str | None = None,
        http_status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        details: tuple[ErrorDetail, ...] = (),
        reason: str | None = None,
    ) -> None:
        self.operation = str(operation)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.details = details
        self.reason = reason  # why no answer came (transport failures), or why an answer was unusable
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"ECS {self.operation} failed"]
        if self.http_status is not None:
            parts.append(f": HTTP {self.http_status}")
            if self.code:
                parts.append(f" {self.code}")
            parts.append(f": {self.message}" if self.message else "")
        else:
            parts.append(": no response")
        if self.reason:
            parts.append(f" ({self.reason})")
        detail_text = "; ".join(
            f"{d.code}: {d.message}" if d.code and d.message else (d.code or d.message or "")
            for d in self.details
        )
        if detail_text:
            parts.append(f" [details: {detail_text}]")
        if self.request_id:
            parts.append(f" (request ID {self.request_id})")
        parts.append(_ADVICE[self.kind](self))
        return "".join(parts)

    def __str__(self) -> str:
        return self.args[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(operation={self.operation!r}, http_status={self.http_status!r}, "
            f"code={self.code!r}, request_id={self.request_id!r}, retry_after={self.retry_after!r}, "
            f"message={self.message!r})"
        )


class ThrottledError(CloudError):
    kind = ErrorKind.THROTTLED


class TransientError(CloudError):
    kind = ErrorKind.TRANSIENT


class TerminalError(CloudError):
    kind = ErrorKind.TERMINAL


class AmbiguousError(CloudError):
    kind = ErrorKind.AMBIGUOUS


ERROR_CLASSES: Mapping[ErrorKind, type[CloudError]] = {
    ErrorKind.THROTTLED: ThrottledError,
    ErrorKind.TRANSIENT: TransientError,
    ErrorKind.TERMINAL: TerminalError,
    ErrorKind.AMBIGUOUS: AmbiguousError,
}


def _throttled_advice(error: CloudError) -> str:
    if error.retry_after is not None:
        return f"; the cloud asks to retry after {error.retry_after:g} s"
    return "; nothing was done, retry later"


_ADVICE = {
    ErrorKind.THROTTLED: _throttled_advice,
    ErrorKind.TRANSIENT: lambda _e: "; this may pass, retry later",
    ErrorKind.TERMINAL: lambda _e: "",
    ErrorKind.AMBIGUOUS: lambda _e: (
        "; the request may have been processed: check the server before sending it again"
    ),
}


# --- parsing error responses --------------------------------------------------------------------------------

MAX_MESSAGE_CHARS = 500
_MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words; no secret this client handles is that short
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_TAGS = re.compile(r"<[^>]*>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_NOT_TEXT = re.compile(r"<(script|style)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ErrorBody:
    """What an error response says, whichever of the cloud's body shapes it uses."""

    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    details: tuple[ErrorDetail, ...] = ()


def parse_error_body(body: bytes, headers: Mapping[str, str] | None = None) -> ErrorBody:
    """Read an error response: ECS `{"error": {code, message, details?}}`, API gateway
    `{error_code, error_msg, request_id}`, OpenStack-style `{"itemNotFound": {message, code}}`, or any text.
    The request ID comes from the body, else from the `X-Request-Id` header."""
    header_request_id = _header(headers or {}, "x-request-id")
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        parsed = _parse_json_error(data)
        if parsed is not None:
            return ErrorBody(
                code=parsed.code,
                message=parsed.message,
                request_id=parsed.request_id or header_request_id,
                details=parsed.details,
            )
    return ErrorBody(message=_text_message(text) if text else None, request_id=header_request_id)


def _parse_json_error(data: dict[str, Any]) -> ErrorBody | None:
    error = data.get("error")
    if isinstance(error, dict):  # ECS
        details = tuple(
            ErrorDetail(code=_str(item.get("code")), message=_str(item.get("message")))
            for item in error.get("details") or ()
            if isinstance(item, dict)
        )
        return ErrorBody(
            code=_str(error.get("code")),
            message=_str(error.get("message")),
            request_id=_str(data.get("request_id")),
            details=details,
        )
    if "error_code" in data or "error_msg" in data:  # API gateway and most Huawei services
        return ErrorBody(
            code=_str(data.get("error_code")),
            message=_str(data.get("error_msg")),
            request_id=_str(data.get("request_id")),
        )
    if "code" in data and ("message" in data or "msg" in data):
        return ErrorBody(
            code=_str(data.get("code")),
            message=_str(data.get("message", data.get("msg"))),
            request_id=_str(data.get("request_id")),
        )
    if len(data) == 1:  # OpenStack-style fault: {"badRequest": {"message": ..., "code": 400}}
        (fault,) = data.values()
        if isinstance(fault, dict) and "message" in fault:
            code = fault.get("code")
            return ErrorBody(code=code if isinstance(code, str) else None, message=_str(fault.get("message")))
    return None


def _text_message(text: str) -> str:
    """A short human line out of a non-JSON body: the title of an HTML page, else its text."""
    if "<" in text and ">" in text:
        title = _TITLE.search(text)
        text = title.group(1) if title else _TAGS.sub(" ", _NOT_TEXT.sub(" ", text))
        text = html.unescape(text)
    return text


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value or None
    return None


def clean_message(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """Make a cloud-provided text safe to show: no control characters, bounded length, secrets masked."""
    if not text:
        return None
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = " ".join(_CONTROL.sub(" ", text).split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text or None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP date. Garbage gives None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


# --- building errors ----------------------------------------------------------------------------------------


def error_from_response(
    operation: Operation | str,
    http_status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Iterable[str] = (),
) -> CloudError:
    """The classified error for an HTTP error response; `secrets` are masked should the cloud echo them."""
    secrets = tuple(secrets)
    parsed = parse_error_body(body, headers)
    kind = classify(operation, http_status, parsed.code, request_sent=True)
    return ERROR_CLASSES[kind](
        operation=operation,
        http_status=http_status,
        code=clean_message(parsed.code, secrets),
        message=clean_message(parsed.message, secrets),
        request_id=clean_message(parsed.request_id, secrets),
        retry_after=parse_retry_after(_header(headers, "retry-after")),
        details=tuple(
            ErrorDetail(clean_message(d.code, secrets), clean_message(d.message, secrets))
            for d in parsed.details
        ),
    )


def transport_error(
    operation: Operation | str,
    reason: str,
    *,
    request_sent: bool,
    misconfigured: bool = False,
) -> CloudError:
    """The classified error for a call that got no usable HTTP answer (refused, timed out, cut off)."""
    kind = classify(operation, None, None, request_sent=request_sent, misconfigured=misconfigured)
    return ERROR_CLASSES[kind](operation=operation, reason=clean_message(reason))
