"""The error body shapes the real API returns, and the codes the emulator uses.

ECS errors (from the ECS service itself): ``{"error": {"code": "Ecs.0011", "message": "..."}}``.
Gateway errors (authentication, throttling, routing, done before ECS sees the request):
``{"error_code": "APIGW.0308", "error_msg": "...", "request_id": "..."}``.
Nova faults (the ``/v2.1`` OpenStack-compatible API): ``{"itemNotFound": {"code": 404, "message": "..."}}``.

Codes used, with their HTTP status:

====================  ======  =====================================================================
code                  status  when
====================  ======  =====================================================================
APIGW.0101            404     no such API (unknown path or method)
APIGW.0301            401     missing / malformed Authorization, missing X-Sdk-Date, unknown AK,
                              wrong signature, bad or missing security token
APIGW.0302            403     X-Project-Id differs from the path's project, or the credentials
                              are bound to another project
APIGW.0303            401     X-Sdk-Date more than 15 minutes away from the server time
APIGW.0308            429     throttled (rate limit or injected fault), with ``Retry-After``
APIGW.0202 / 0203     502/504 injected backend unavailable / timeout faults
Ecs.0005              400     invalid request (body shape, field types, adminpass with keyname, ...;
                              a tag breaking the rules or the 10-tag limit; a bad list query)
Ecs.0007              400     change OS: the image cannot be used (Windows; no Cloud-Init on the v2 API)
                              ("Invalid image attributes": the closest documented code, a guess)
Ecs.0011              400     adminpass breaks the password rules
Ecs.0031              400     change OS: the image does not exist (unknown or deleted) ("Image [%s] does
                              not exist.", Huawei's ECS error code list)
Ecs.0032              400     change OS: the image is not active ("Image [%s] must be active.", same list)
Ecs.0090              400     BYOL not supported (configurable)
Ecs.0100              409     server running and no ``mode: withStopServer``; status ERROR; change OS with
                              ``change_os_requires_stopped``: not stopped and its last job did not fail
Ecs.0105              400     server has no system disk
Ecs.0122              400     X-Client-Token reused with other parameters (server, API or body)
Ecs.0123              400     X-Client-Token not a lower-case UUID (8-4-4-4-12)
Ecs.0124              400     X-Client-Token first used more than 8 hours ago (expired)
Ecs.0114              404     no such server
Ecs.0314              400     no such key pair
Ecs.0603              501     another operation runs on the server (REBUILD or a task_state)
Ecs.0605              409     server locked
Common.0011           404     no such job (never existed, or finished longer than the retention ago)
itemNotFound          404     (Nova shape) no such action for this server
forbidden             403     (Nova shape) the action log refused (``action_log: "403"``)
Ecs.0000              500     injected internal error fault
Common.1503           503     injected service-busy fault
====================  ======  =====================================================================
"""

from __future__ import annotations

import json

from aiohttp import web

JSON_CONTENT_TYPE = "application/json"


class ApiError(Exception):
    """An error response. Messages never contain secrets (passwords, keys, tokens, user data)."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def body(self, request_id: str) -> dict:
        raise NotImplementedError

    def to_response(self, request_id: str) -> web.Response:
        response = json_response(self.body(request_id), status=self.status)
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(self.retry_after)
        return response


class EcsError(ApiError):
    def body(self, request_id: str) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class NovaError(ApiError):
    """A Nova fault: ``code`` is the fault name (``itemNotFound``, ``forbidden``), the body repeats the status."""

    def body(self, request_id: str) -> dict:
        return {self.code: {"code": self.status, "message": self.message}}


class GatewayError(ApiError):
    def body(self, request_id: str) -> dict:
        return {"error_code": self.code, "error_msg": self.message, "request_id": request_id}


def json_response(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), status=status, content_type=JSON_CONTENT_TYPE)


def invalid_request(message: str) -> EcsError:
    return EcsError(400, "Ecs.0005", f"Invalid request: {message}")


def auth_failure(message: str) -> GatewayError:
    return GatewayError(401, "APIGW.0301", f"Incorrect IAM authentication information: {message}")


def throttled(retry_after: int, detail: str = "policy user over ratelimit") -> GatewayError:
    return GatewayError(
        429, "APIGW.0308", f"The throttling threshold has been reached: {detail}", retry_after=retry_after
    )


def default_fault_error(status: int, retry_after: int | None) -> ApiError:
    """A realistic error for an injected fault that gives a status but no body."""
    if status == 429:
        return throttled(retry_after if retry_after is not None else 1, "injected fault")
    if status == 401:
        return auth_failure("verify aksk signature fail (injected fault)")
    if status == 502:
        return GatewayError(502, "APIGW.0202", "Backend unavailable", retry_after=retry_after)
    if status == 504:
        return GatewayError(504, "APIGW.0203", "Backend timeout", retry_after=retry_after)
    if status == 503:
        return EcsError(503, "Common.1503", "The service is busy. Try again later.", retry_after=retry_after)
    if status == 501:
        return EcsError(
            501,
            "Ecs.0603",
            "Another operation is running on the ECS. Try again in a minute.",
            retry_after=retry_after,
        )
    if status == 404:
        return EcsError(404, "Ecs.0114", "The ECS does not exist (injected fault).")
    if status == 400:
        return invalid_request("injected fault")
    return EcsError(status, "Ecs.0000", "Internal server error.", retry_after=retry_after)
