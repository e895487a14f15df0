"""The aiohttp application: the four ECS API operations behind the gateway pipeline, plus the admin API.

Every API request goes through `_gateway`: read the body, apply an injected fault if one hits, check the
signature and the project, apply the rate limit, run the operation, count the result, and stamp the response
with ``X-Request-Id``. Per-request work is kept small (one signature check, dictionary lookups, one JSON dump).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from ecs_emulator.admin import add_admin_routes
from ecs_emulator.auth import authenticate
from ecs_emulator.errors import ApiError, GatewayError, default_fault_error, invalid_request, json_response
from ecs_emulator.faults import Drop, Fault
from ecs_emulator.state import EmulatorState
from ecs_emulator.validation import parse_reinstall_body

STATE_KEY = web.AppKey("ecs_emulator_state", EmulatorState)
REQUEST_ID_HEADER = "X-Request-Id"


class CallContext:
    """What an operation needs about the call: path parameters, body, the signer's AK, the request ID."""

    __slots__ = ("access_key", "body", "match", "request_id")

    def __init__(self, match: dict[str, str], body: bytes, access_key: str, request_id: str) -> None:
        self.match = match
        self.body = body
        self.access_key = access_key
        self.request_id = request_id


Operation = Callable[[EmulatorState, CallContext], web.Response]


def _reinstall(api: str) -> Operation:
    def operation(state: EmulatorState, call: CallContext) -> web.Response:
        try:
            body = json.loads(call.body) if call.body else None
        except ValueError:
            raise invalid_request("the body is not valid JSON") from None
        request = parse_reinstall_body(body, api)
        job = state.reinstall(
            call.match["project_id"],
            call.match["server_id"],
            request,
            access_key=call.access_key,
            request_id=call.request_id,
        )
        return json_response({"job_id": job.job_id})

    return operation


def _get_job(state: EmulatorState, call: CallContext) -> web.Response:
    job = state.find_job(call.match["project_id"], call.match["job_id"])
    return json_response(job.to_json(state.clock.now()))


def _get_server(state: EmulatorState, call: CallContext) -> web.Response:
    server = state.find_server(call.match["project_id"], call.match["server_id"])
    return json_response({"server": server.api_json()})


def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer; the client sees a disconnect (httpx RemoteProtocolError)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)


def _fault_response(fault: Fault, request_id: str) -> web.Response:
    assert fault.status is not None
    if fault.body is None:
        return default_fault_error(fault.status, fault.retry_after).to_response(request_id)
    response = json_response(fault.body, status=fault.status)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = str(fault.retry_after)
    return response


def _check_project(
    state: EmulatorState, request: web.Request, project_id: str, credential_project: str | None
):
    header_project = request.headers.get("X-Project-Id")
    if header_project is not None and header_project != project_id:
        raise GatewayError(
            403, "APIGW.0302",
            f"The IAM user is not authorized to access the API: X-Project-Id {header_project} does not match "
            f"the project {project_id} in the path.",
        )  # fmt: skip
    if credential_project is not None and credential_project != project_id:
        raise GatewayError(
            403, "APIGW.0302",
            f"The IAM user is not authorized to access the API: these credentials belong to project "
            f"{credential_project}, not {project_id}.",
        )  # fmt: skip
    if project_id not in state.known_projects:
        raise GatewayError(
            403,
            "APIGW.0302",
            f"The IAM user is not authorized to access the API: unknown project {project_id}.",
        )


def _gateway(name: str, operation: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        state = request.app[STATE_KEY]
        request_id = secrets.token_hex(16)
        body = await request.read()
        fault = state.faults.pick(name)
        if fault is not None:
            state.counters.faults_hit += 1
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault.drop_connection is Drop.BEFORE:
                state.counters.requests[f"{name}:dropped"] += 1
                return _drop(request)
        if fault is not None and fault.status is not None:
            response = _fault_response(fault, request_id)
        else:
            response = _process(state, request, name, operation, body, request_id)
        if fault is not None and fault.drop_connection is Drop.AFTER:
            state.counters.requests[f"{name}:dropped"] += 1
            return _drop(request)
        state.counters.requests[f"{name}:{response.status}"] += 1
        response.headers[REQUEST_ID_HEADER] = request_id
        return response

    return handler


def _process(
    state: EmulatorState, request: web.Request, name: str, operation: Operation, body: bytes, request_id: str
) -> web.Response:
    raw_path, _, raw_query = request.raw_path.partition("?")
    config = state.config
    try:
        credential = authenticate(
            method=request.method,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=request.headers,
            body=body,
            credentials=state.credentials,
            max_skew_seconds=config.max_clock_skew_seconds,
            accept_any_security_token=config.accept_any_security_token,
        )
        match = dict(request.match_info)
        _check_project(state, request, match["project_id"], credential.project_id)
        retry_after = state.rate_limiter.check(name)
        if retry_after is not None:
            state.counters.throttled += 1
            raise GatewayError(
                429, "APIGW.0308", "The throttling threshold has been reached: policy user over ratelimit",
                retry_after=retry_after,
            )  # fmt: skip
        return operation(state, CallContext(match, body, credential.access_key, request_id))
    except ApiError as error:
        return error.to_response(request_id)


async def _no_such_api(request: web.Request) -> web.Response:
    request_id = secrets.token_hex(16)
    request.app[STATE_KEY].counters.requests["unknown:404"] += 1
    error = GatewayError(
        404,
        "APIGW.0101",
        f"The API does not exist or has not been published: {request.method} {request.path}",
    )
    response = error.to_response(request_id)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def create_app(state: EmulatorState) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = state
    add_admin_routes(app, state)
    app.router.add_post(
        "/v2/{project_id}/cloudservers/{server_id}/reinstallos", _gateway("reinstall", _reinstall("v2"))
    )
    app.router.add_post(
        "/v1/{project_id}/cloudservers/{server_id}/reinstallos", _gateway("reinstall_v1", _reinstall("v1"))
    )
    app.router.add_get("/v1/{project_id}/jobs/{job_id}", _gateway("get_job", _get_job), allow_head=False)
    app.router.add_get(
        "/v1/{project_id}/cloudservers/{server_id}", _gateway("get_server", _get_server), allow_head=False
    )
    app.router.add_route("*", "/{tail:.*}", _no_such_api)
    return app
