"""The aiohttp application: the ECS API operations behind the gateway pipeline, plus the admin API.

Every API request goes through `_gateway`: read the body, apply an injected fault if one hits, check the
signature and the project, apply the rate limit, run the operation, count the result, and stamp the response
with ``X-Request-Id``. Per-request work is kept small (one signature check, dictionary lookups, one JSON dump).
Every answer (API, admin, unknown path) carries a ``Date`` header in the cloud's time (`EmulatorState.now`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web

from ecs_emulator import tokens
from ecs_emulator.admin import add_admin_routes
from ecs_emulator.auth import authenticate
from ecs_emulator.clock import http_date
from ecs_emulator.errors import (
    ApiError,
    GatewayError,
    NovaError,
    default_fault_error,
    invalid_request,
    json_response,
)
from ecs_emulator.faults import Drop, Fault
from ecs_emulator.listing import parse_list_query, select, select_by_id
from ecs_emulator.state import EmulatorState
from ecs_emulator.tags import apply_tags, parse_tag_body
from ecs_emulator.validation import CHANGE_OS, REINSTALL, parse_os_body
from ecs_reinstall.cloud.signing import parse_query_string

STATE_KEY = web.AppKey("ecs_emulator_state", EmulatorState)
REQUEST_ID_HEADER = "X-Request-Id"


ACTION_LOG_OPERATIONS = frozenset({"list_actions", "get_action"})


class CallContext:
    """What an operation needs about the call: path parameters, body, the signer's AK, the request ID, the
    request headers and the query (decoded as it was signed: RFC 3986, ``+`` is a plus)."""

    __slots__ = ("access_key", "body", "headers", "match", "query", "request_id")

    def __init__(
        self,
        match: dict[str, str],
        body: bytes,
        access_key: str,
        request_id: str,
        headers: Mapping[str, str] | None = None,
        query: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.match = match
        self.body = body
        self.access_key = access_key
        self.request_id = request_id
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.query = query


Operation = Callable[[EmulatorState, CallContext], web.Response]


def _os_job(api: str, kind: str = REINSTALL) -> Operation:
    """A reinstall (``.../reinstallos``) or a change of OS (``.../changeos``, ``kind`` "change_os"): the same
    pipeline (X-Client-Token, body rules, server checks, job); they differ in the body's root and
    ``imageid``."""
    start = {REINSTALL: EmulatorState.reinstall, CHANGE_OS: EmulatorState.change_os}[kind]
    # the token's fingerprint names the API: a token reused across reinstall and change OS is Ecs.0122
    token_api = api if kind == REINSTALL else f"changeos/{api}"

    def operation(state: EmulatorState, call: CallContext) -> web.Response:
        project_id, server_id = call.match["project_id"], call.match["server_id"]
        token = call.headers.get(tokens.HEADER)
        honoured = token is not None and state.config.client_token == "honoured"  # noqa: S105
        if honoured:
            assert token is not None
            fingerprint = tokens.fingerprint(project_id, server_id, token_api, call.body)
            now = state.now()
            use = state.client_tokens.check(token, fingerprint, now, state.config.client_token_ttl_seconds)
            if use is not None:
                return json_response({"job_id": state.replay_reinstall(use)})
        try:
            body = json.loads(call.body) if call.body else None
        except ValueError:
            raise invalid_request("the body is not valid JSON") from None
        request = parse_os_body(body, api, kind)
        job = start(
            state,
            project_id,
            server_id,
            request,
            access_key=call.access_key,
            request_id=call.request_id,
            client_token=token,
        )
        if honoured:
            assert token is not None
            state.client_tokens.remember(token, fingerprint, job.accepted_at, job.job_id)
        return json_response({"job_id": job.job_id})

    return operation


def _get_job(state: EmulatorState, call: CallContext) -> web.Response:
    job = state.find_job(call.match["project_id"], call.match["job_id"])
    return json_response(job.to_json(state.now()))


def _action_log_policy(state: EmulatorState, rule: str) -> None:
    if state.config.action_log == "403":
        raise NovaError(
            403,
            "forbidden",
            f"Policy doesn't allow os_compute_api:os-instance-actions:{rule} to be performed.",
        )


def _list_actions(state: EmulatorState, call: CallContext) -> web.Response:
    """``GET /v2.1/{project_id}/servers/{server_id}/os-instance-actions``: newest first, without events."""
    _action_log_policy(state, "list")
    server = state.find_server(call.match["project_id"], call.match["server_id"])
    actions = [action.to_json(state.action_time, events=False) for action in reversed(server.actions)]
    return json_response({"instanceActions": actions})


def _get_action(state: EmulatorState, call: CallContext) -> web.Response:
    """``GET /v2.1/{project_id}/servers/{server_id}/os-instance-actions/{request_id}``: with its events."""
    _action_log_policy(state, "show")
    server = state.find_server(call.match["project_id"], call.match["server_id"])
    action = state.find_action(server, call.match["request_id"])
    if action is None:
        raise NovaError(404, "itemNotFound", f"Action {call.match['request_id']} not found")
    return json_response({"instanceAction": action.to_json(state.action_time, events=True)})


def _get_server(state: EmulatorState, call: CallContext) -> web.Response:
    server = state.find_server(call.match["project_id"], call.match["server_id"])
    return json_response({"server": server.api_json()})


def _list_servers(state: EmulatorState, call: CallContext) -> web.Response:
    """``GET /v1/{project_id}/cloudservers/detail``: a page of server details (`listing`)."""
    query = parse_list_query(call.query)
    project_id = call.match["project_id"]
    if query.server_ids:  # server_id wins: the other filters and paging are ignored
        entries = select_by_id(state, project_id, query.server_ids)
        return json_response({"count": len(entries), "servers": entries})
    servers = [server for server in state.servers.values() if server.project_id == project_id]
    for server in servers:
        state.refresh(server)
    count, page = select(servers, query)
    return json_response({"count": count, "servers": [server.api_json() for server in page]})


def _get_server_tags(state: EmulatorState, call: CallContext) -> web.Response:
    """``GET /v1/{project_id}/cloudservers/{server_id}/tags``: ``{"tags": [{"key", "value"}]}`` by key."""
    server = state.find_server(call.match["project_id"], call.match["server_id"])
    return json_response({"tags": [{"key": k, "value": v} for k, v in sorted(server.tags.items())]})


def _tag_server(state: EmulatorState, call: CallContext) -> web.Response:
    """``POST /v1/{project_id}/cloudservers/{server_id}/tags/action``: create / delete tags (`tags`); 204."""
    server = state.find_server(call.match["project_id"], call.match["server_id"])
    try:
        body = json.loads(call.body) if call.body else None
    except ValueError:
        raise invalid_request("the body is not valid JSON") from None
    server.tags = apply_tags(server.tags, parse_tag_body(body), server.id)
    server.updated = max(server.updated, state.now())  # as the admin "tag" operation: no action written
    return web.Response(status=204)


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
        if name in ACTION_LOG_OPERATIONS and config.action_log == "404":
            raise _unpublished(request)
        credential = authenticate(
            method=request.method,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=request.headers,
            body=body,
            credentials=state.credentials,
            max_skew_seconds=config.max_clock_skew_seconds,
            accept_any_security_token=config.accept_any_security_token,
            now=state.gateway_now(),
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
        call = CallContext(
            match, body, credential.access_key, request_id, request.headers, parse_query_string(raw_query)
        )
        return operation(state, call)
    except ApiError as error:
        return error.to_response(request_id)


def _unpublished(request: web.Request) -> GatewayError:
    return GatewayError(
        404,
        "APIGW.0101",
        f"The API does not exist or has not been published: {request.method} {request.path}",
    )


async def _no_such_api(request: web.Request) -> web.Response:
    request_id = secrets.token_hex(16)
    request.app[STATE_KEY].counters.requests["unknown:404"] += 1
    response = _unpublished(request).to_response(request_id)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


async def _stamp_date(request: web.Request, response: web.StreamResponse) -> None:
    """``Date`` in the cloud's time (aiohttp would write the machine's): moves with the clock and its offset."""
    response.headers["Date"] = http_date(request.app[STATE_KEY].now())


def create_app(state: EmulatorState) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = state
    app.on_response_prepare.append(_stamp_date)
    add_admin_routes(app, state)
    servers = "/{version}/{project_id}/cloudservers/{server_id}"
    for api, suffix in (("v2", ""), ("v1", "_v1")):
        path = servers.replace("{version}", api)
        app.router.add_post(f"{path}/reinstallos", _gateway(f"reinstall{suffix}", _os_job(api)))
        app.router.add_post(f"{path}/changeos", _gateway(f"change_os{suffix}", _os_job(api, CHANGE_OS)))
    app.router.add_get("/v1/{project_id}/jobs/{job_id}", _gateway("get_job", _get_job), allow_head=False)
    # "detail" first: the list answers GET .../cloudservers/detail, never a server named "detail"
    app.router.add_get(
        "/v1/{project_id}/cloudservers/detail", _gateway("list_servers", _list_servers), allow_head=False
    )
    app.router.add_get(
        "/v1/{project_id}/cloudservers/{server_id}", _gateway("get_server", _get_server), allow_head=False
    )
    tags = "/v1/{project_id}/cloudservers/{server_id}/tags"
    app.router.add_get(tags, _gateway("get_server_tags", _get_server_tags), allow_head=False)
    app.router.add_post(tags + "/action", _gateway("tag_server", _tag_server))
    actions = "/v2.1/{project_id}/servers/{server_id}/os-instance-actions"
    app.router.add_get(actions, _gateway("list_actions", _list_actions), allow_head=False)
    app.router.add_get(actions + "/{request_id}", _gateway("get_action", _get_action), allow_head=False)
    app.router.add_route("*", "/{tail:.*}", _no_such_api)
    return app
