"""The admin API under ``/_emulator/`` (no signature): set up servers, images, key pairs, credentials,
configuration and faults; act on servers as someone else would; read counters, accepted reinstalls (and
changes of OS) and action logs; reset. JSON in and out; a bad request gets 400 ``{"error": "<what is
wrong>"}``, an unknown server, image or fault 404, an operation the server's state refuses 409. See the
package docstring for the list.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from ecs_emulator.clock import SystemClock
from ecs_emulator.errors import json_response
from ecs_emulator.operations import OperationConflict, operate
from ecs_emulator.state import Credential, EmulatorState

PREFIX = "/_emulator"

AdminHandler = Callable[[web.Request], Awaitable[web.Response]]


def _bad_request(message: str) -> web.Response:
    return json_response({"error": message}, status=400)


def _not_found(message: str) -> web.Response:
    return json_response({"error": message}, status=404)


async def _json(request: web.Request) -> object:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "the body is not valid JSON"}), content_type="application/json"
        ) from None


def add_admin_routes(app: web.Application, state: EmulatorState) -> None:
    """Register the admin handlers; they close over ``state``."""

    async def add_server(request: web.Request) -> web.Response:
        try:
            server = state.add_server(await _json(request))
        except ValueError as error:
            return _bad_request(str(error))
        return json_response(server.admin_json(), status=201)

    async def list_servers(request: web.Request) -> web.Response:
        for server in state.servers.values():
            state.refresh(server)
        return json_response([server.admin_json() for server in state.servers.values()])

    async def get_server(request: web.Request) -> web.Response:
        server = state.servers.get(request.match_info["server_id"])
        if server is None:
            return _not_found(f"no server {request.match_info['server_id']!r}")
        state.refresh(server)
        return json_response(server.admin_json())

    async def patch_server(request: web.Request) -> web.Response:
        server_id = request.match_info["server_id"]
        try:
            server = state.patch_server(server_id, await _json(request))
        except KeyError:
            return _not_found(f"no server {server_id!r}")
        except ValueError as error:
            return _bad_request(str(error))
        return json_response(server.admin_json())

    async def server_operation(request: web.Request) -> web.Response:
        server_id = request.match_info["server_id"]
        try:
            server, action = operate(state, server_id, await _json(request))
        except KeyError:
            return _not_found(f"no server {server_id!r}")
        except ValueError as error:
            return _bad_request(str(error))
        except OperationConflict as error:
            return json_response({"error": str(error)}, status=409)
        return json_response(
            {
                "server": server.admin_json(),
                "action": None if action is None else action.to_json(state.action_time, events=True),
            }
        )

    async def server_actions(request: web.Request) -> web.Response:
        server = state.servers.get(request.match_info["server_id"])
        if server is None:
            return _not_found(f"no server {request.match_info['server_id']!r}")
        state.refresh(server)
        return json_response(
            [action.to_json(state.action_time, events=True) for action in reversed(server.actions)]
        )

    async def delete_server(request: web.Request) -> web.Response:
        if state.servers.pop(request.match_info["server_id"], None) is None:
            return _not_found(f"no server {request.match_info['server_id']!r}")
        return web.Response(status=204)

    async def add_keypair(request: web.Request) -> web.Response:
        data = await _json(request)
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            return _bad_request('a key pair needs {"name": "<non-empty string>"}')
        state.keypairs.add(name)
        return json_response({"name": name}, status=201)

    async def list_keypairs(request: web.Request) -> web.Response:
        return json_response(sorted(state.keypairs))

    async def add_image(request: web.Request) -> web.Response:
        try:
            image = state.add_image(await _json(request))
        except ValueError as error:
            return _bad_request(str(error))
        return json_response(image.to_json(), status=201)

    async def list_images(request: web.Request) -> web.Response:
        return json_response([image.to_json() for image in state.images.values()])

    async def get_image(request: web.Request) -> web.Response:
        image = state.images.get(request.match_info["image_id"])
        if image is None:
            return _not_found(f"no image {request.match_info['image_id']!r}")
        return json_response(image.to_json())

    async def patch_image(request: web.Request) -> web.Response:
        image_id = request.match_info["image_id"]
        try:
            image = state.patch_image(image_id, await _json(request))
        except KeyError:
            return _not_found(f"no image {image_id!r}")
        except ValueError as error:
            return _bad_request(str(error))
        return json_response(image.to_json())

    async def delete_image(request: web.Request) -> web.Response:
        if state.images.pop(request.match_info["image_id"], None) is None:
            return _not_found(f"no image {request.match_info['image_id']!r}")
        return web.Response(status=204)

    async def add_credential(request: web.Request) -> web.Response:
        data = await _json(request)
        if not isinstance(data, dict):
            return _bad_request("a credential must be a JSON object")
        allowed = {"access_key", "secret_key", "security_token", "project_id"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            return _bad_request(f"unknown credential field(s) {unknown}; allowed: {sorted(allowed)}")
        for name in ("access_key", "secret_key"):
            if not isinstance(data.get(name), str) or not data[name]:
                return _bad_request(f"{name} is required (a non-empty string)")
        for name in ("security_token", "project_id"):
            if data.get(name) is not None and not isinstance(data[name], str):
                return _bad_request(f"{name} must be a string or null")
        credential = Credential(
            data["access_key"], data["secret_key"], data.get("security_token"), data.get("project_id")
        )
        state.add_credential(credential)
        return json_response(
            {
                "access_key": credential.access_key,
                "temporary": credential.security_token is not None,
                "project_id": credential.project_id,
            },
            status=201,
        )

    async def get_config(request: web.Request) -> web.Response:
        return json_response(state.config.to_json())

    async def put_config(request: web.Request) -> web.Response:
        try:
            config = state.set_config(await _json(request))
        except ValueError as error:
            return _bad_request(str(error))
        return json_response(config.to_json())

    async def add_fault(request: web.Request) -> web.Response:
        try:
            fault = state.faults.add(await _json(request))
        except ValueError as error:
            return _bad_request(str(error))
        return json_response({"id": fault.id, **fault.to_json()}, status=201)

    async def list_faults(request: web.Request) -> web.Response:
        return json_response([fault.to_json() for fault in state.faults.faults])

    async def clear_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return web.Response(status=204)

    async def delete_fault(request: web.Request) -> web.Response:
        if not state.faults.remove(request.match_info["fault_id"]):
            return _not_found(f"no fault {request.match_info['fault_id']!r}")
        return web.Response(status=204)

    async def counters(request: web.Request) -> web.Response:
        return json_response(state.counters.to_json())

    async def reinstalls(request: web.Request) -> web.Response:
        server_id = request.query.get("server_id")
        records = [r for r in state.reinstalls if server_id is None or r.server_id == server_id]
        for server in {r.server_id for r in records} & set(state.servers):
            state.refresh(state.servers[server])
        now, retention = state.now(), state.config.job_retention_seconds
        return json_response([record.to_json(now, retention) for record in records])

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.Response(status=204)

    async def advance_clock(request: web.Request) -> web.Response:
        data = await _json(request)
        seconds = data.get("seconds") if isinstance(data, dict) else None
        if not isinstance(seconds, int | float) or seconds < 0:
            return _bad_request('give {"seconds": <number >= 0>}')
        advance = getattr(state.clock, "advance", None)
        if advance is None:
            return _bad_request("this emulator's clock cannot be moved")
        advance(float(seconds))
        offset = state.clock.offset if isinstance(state.clock, SystemClock) else None
        return json_response({"now": state.now(), "offset": offset})

    routes = [
        ("POST", "/servers", add_server),
        ("GET", "/servers", list_servers),
        ("GET", "/servers/{server_id}", get_server),
        ("PATCH", "/servers/{server_id}", patch_server),
        ("DELETE", "/servers/{server_id}", delete_server),
        ("POST", "/servers/{server_id}/operations", server_operation),
        ("GET", "/servers/{server_id}/actions", server_actions),
        ("POST", "/keypairs", add_keypair),
        ("GET", "/keypairs", list_keypairs),
        ("POST", "/images", add_image),
        ("GET", "/images", list_images),
        ("GET", "/images/{image_id}", get_image),
        ("PATCH", "/images/{image_id}", patch_image),
        ("DELETE", "/images/{image_id}", delete_image),
        ("POST", "/credentials", add_credential),
        ("GET", "/config", get_config),
        ("PUT", "/config", put_config),
        ("POST", "/faults", add_fault),
        ("GET", "/faults", list_faults),
        ("DELETE", "/faults", clear_faults),
        ("DELETE", "/faults/{fault_id}", delete_fault),
        ("GET", "/counters", counters),
        ("GET", "/reinstalls", reinstalls),
        ("POST", "/reset", reset),
        ("POST", "/clock/advance", advance_clock),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, PREFIX + path, handler)
