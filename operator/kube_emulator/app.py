"""The HTTP face of the emulator: Kubernetes REST paths on aiohttp, in front of a `Cluster`.

Routing follows the apiserver: `/api/v1/...` and `/apis/{group}/{version}/...`, optionally
`namespaces/{ns}/`, then `{resource}[/{name}[/{subresource}]]`; GET on a collection lists or (with `watch=1`)
watches. Responses are JSON; `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` gets a Table (what kubectl
asks for), `as=PartialObjectMetadata[List]` gets metadata only. Every API request is counted and may be hit by
an injected fault. The admin API lives under `/_emulator/` (see `admin_routes`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from . import conversion, discovery, protobuf
from .cluster import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    Cluster,
    DeleteOptions,
    ListOptions,
    WatchOptions,
    WriteOptions,
)
from .errors import ApiError, bad_request, internal_error, not_acceptable, unsupported_media_type
from .faults import FaultEffect, FaultInjector, FaultRule, FaultRuleError
from .openapi import OpenApiCache
from .requestlog import RequestKey, RequestLog, product
from .resources import ResourceType
from .store import EventType, StoredObject, Watcher, dumps
from .tables import build_table, builtin_printer

log = logging.getLogger("kube_emulator")

JSON = "application/json"
_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
_UNAUTHENTICATED = ("/version", "/healthz", "/livez", "/readyz", "/_emulator")
_NOT_FOUND = ApiError(404, "NotFound", "the server could not find the requested resource", details={})


@dataclass
class ServerOptions:
    token: str | None = None  # bearer token a client presenting credentials must present (None: any)
    history_limit: int = 10_000  # changes kept per resource for watches that resume (older: 410 Gone)
    bookmark_interval: float = 60.0  # seconds between BOOKMARK events on watches that allow them
    default_watch_timeout: float = 1800.0  # a watch without timeoutSeconds ends after this
    fault_seed: int | None = None


@dataclass
class Target:
    """A parsed resource request."""

    rtype: ResourceType
    namespace: str | None
    name: str
    subresource: str
    verb: str


@dataclass
class Rendering:
    """How the client wants objects back (from the Accept header)."""

    form: str = "object"  # object | Table | PartialObjectMetadata
    meta_version: str = "v1"


def _parse_accept(header: str) -> Rendering:
    if not header:
        return Rendering()
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        options = dict(p.split("=", 1) for p in params if "=" in p)
        if media not in (JSON, "*/*", "application/*", "application/yaml"):
            continue
        wanted = options.get("as")
        if wanted == "Table" and options.get("g") == "meta.k8s.io":
            return Rendering("Table", options.get("v", "v1"))
        if (
            wanted in ("PartialObjectMetadata", "PartialObjectMetadataList")
            and options.get("g") == "meta.k8s.io"
        ):
            return Rendering("PartialObjectMetadata", options.get("v", "v1"))
        if wanted is None:
            return Rendering()
    if any(p.strip().startswith("application/vnd.kubernetes.protobuf") for p in header.split(",")):
        raise not_acceptable([JSON, "application/yaml"])
    return Rendering()


def _warning_header(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def _json_response(
    body: bytes | dict[str, Any], status: int = 200, warnings: list[str] | None = None
) -> web.Response:
    raw = body if isinstance(body, bytes) else dumps(body)
    response = web.Response(body=raw, status=status, content_type=JSON)
    for warning in warnings or ():
        response.headers.add("Warning", _warning_header(warning))
    return response


def _error_response(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    response = _json_response(error.to_status(), status=error.code)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "yes")


class KubeEmulator:
    """One emulated API server: a `Cluster`, its fault injector, its request counters and the aiohttp app."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.cluster = Cluster(history_limit=self.options.history_limit)
        self.faults = FaultInjector(self.options.fault_seed)
        self.requests = RequestLog()
        self.openapi = OpenApiCache(self.cluster.registry)
        self.server_address = "127.0.0.1:0"
        self._watchers: set[tuple[ResourceType, Watcher]] = set()

    # -- application --------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors_and_auth], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/version", self._version)
        app.router.add_get("/version/", self._version)
        for probe in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(probe, self._health)
        app.router.add_get("/openapi/v3", self._openapi_index)
        app.router.add_get("/openapi/v3/{path:.+}", self._openapi_document)
        admin_routes(app, self)
        app.router.add_route("*", "/api", self._dispatch)
        app.router.add_route("*", "/api/{tail:.*}", self._dispatch)
        app.router.add_route("*", "/apis", self._dispatch)
        app.router.add_route("*", "/apis/{tail:.*}", self._dispatch)
        app.on_shutdown.append(self._close_watches)
        return app

    async def _close_watches(self, _app: web.Application) -> None:
        for rtype, watcher in list(self._watchers):
            self.cluster.unwatch(rtype, watcher)

    @web.middleware
    async def _errors_and_auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.options.token and not request.path.startswith(_UNAUTHENTICATED):
            # kubectl sends no credentials over plain HTTP, so anonymous requests are served; a request that
            # does present credentials must present the right token (a misconfigured client fails loudly).
            presented = request.headers.get("Authorization")
            if presented is not None and presented != f"Bearer {self.options.token}":
                return _error_response(ApiError(401, "Unauthorized", "Unauthorized"))
        try:
            return await handler(request)
        except ApiError as error:
            return _error_response(error)
        except web.HTTPException as error:
            if error.status == 404:
                return _error_response(_NOT_FOUND)
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as error:  # an emulator bug: answer like the apiserver would and keep serving
            log.exception("internal error serving %s %s", request.method, request.path)
            return _error_response(internal_error(f"{type(error).__name__}: {error}"))

    async def _version(self, request: web.Request) -> web.Response:
        self.requests.count_non_resource("get", request.path)
        return _json_response(discovery.SERVER_VERSION)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _openapi_index(self, request: web.Request) -> web.Response:
        self.requests.count_non_resource("get", request.path)
        return _json_response(self.openapi.index())

    async def _openapi_document(self, request: web.Request) -> web.Response:
        self.requests.count_non_resource("get", request.path)
        found = self.openapi.document(request.match_info["path"])
        if found is None:
            raise _NOT_FOUND
        raw, digest = found
        response = web.Response(body=raw, content_type=JSON)
        response.headers["ETag"] = f'"{digest}"'
        response.headers["Cache-Control"] = (
            "public, immutable" if request.query.get("hash") == digest else "no-cache"
        )
        return response

    # -- resource requests --------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        segments = [s for s in request.path.split("/") if s]
        root = segments[0]
        rest = segments[1:]
        if root == "api":
            if not rest:
                self.requests.count_non_resource("get", request.path)
                return _json_response(discovery.core_versions(self.server_address))
            group, version, rest = "", rest[0], rest[1:]
            if version != "v1":
                raise _NOT_FOUND
        else:
            if not rest:
                self.requests.count_non_resource("get", request.path)
                return _json_response(discovery.group_list(self.cluster.registry))
            if len(rest) == 1:
                self.requests.count_non_resource("get", request.path)
                found = discovery.group(self.cluster.registry, rest[0])
                if found is None:
                    raise _NOT_FOUND
                return _json_response(found)
            group, version, rest = rest[0], rest[1], rest[2:]
        if not rest:
            self.requests.count_non_resource("get", request.path)
            document = discovery.resource_list(self.cluster.registry, group, version)
            if document is None:
                raise _NOT_FOUND
            return _json_response(document)
        target = self._target(request, group, version, rest)
        self.requests.count(
            RequestKey(
                target.verb,
                target.rtype.group,
                target.rtype.plural,
                target.subresource,
                target.namespace or "",
                product(request.headers.get("User-Agent")),
            )
        )
        effect = self.faults.effect(target.verb, request.path)
        if effect is not None:
            if effect.latency_seconds:
                await asyncio.sleep(effect.latency_seconds)
            if effect.error is not None:
                error, headers = effect.error
                return _error_response(error, headers)
        rendering = _parse_accept(request.headers.get("Accept", ""))
        if target.verb == "watch":
            return await self._watch(request, target, rendering, effect)
        return await self._serve(request, target, rendering)

    def _target(self, request: web.Request, group: str, version: str, rest: list[str]) -> Target:
        registry = self.cluster.registry
        watch_prefix = rest[0] == "watch"
        if watch_prefix:
            rest = rest[1:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = registry.lookup(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise _NOT_FOUND
        rtype = registry.lookup(group, version, rest[0])
        if rtype is None:
            raise _NOT_FOUND
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        if subresource and subresource not in rtype.subresources:
            raise _NOT_FOUND
        if namespace is not None and not rtype.namespaced:
            raise _NOT_FOUND
        if rtype.namespaced and namespace is None and name:
            raise _NOT_FOUND
        method = request.method
        watching = watch_prefix or _flag(request.query.get("watch"))
        if method == "GET":
            verb = ("watch" if watching else "get") if name else ("watch" if watching else "list")
        elif method == "POST" and not name:
            verb = "create"
        elif method == "PUT" and name:
            verb = "update"
        elif method == "PATCH" and name:
            verb = "patch"
        elif method == "DELETE":
            verb = "delete" if name else "deletecollection"
        else:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                details={},
            )
        if rtype.namespaced and namespace is None and verb in ("create", "deletecollection"):
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                details={},
            )
        if verb not in rtype.verbs and not subresource:
            raise ApiError(
                405,
                "MethodNotAllowed",
                f"{verb} is not supported on resources of kind {rtype.group_resource!r}",
                details={"group": rtype.group, "kind": rtype.plural},
            )
        return Target(rtype, namespace, name, subresource, verb)

    async def _body(self, request: web.Request, *, patch: bool = False) -> tuple[Any, str]:
        content_type = request.headers.get("Content-Type", JSON).split(";")[0].strip().lower()
        raw = await request.read()
        if patch:
            if content_type not in _PATCH_TYPES:
                raise unsupported_media_type(list(_PATCH_TYPES))
        elif content_type == protobuf.CONTENT_TYPE:
            return protobuf.decode(raw), content_type
        elif content_type not in (JSON, "application/yaml", "*/*", ""):
            raise unsupported_media_type([JSON, "application/yaml", protobuf.CONTENT_TYPE])
        if not raw.strip():
            return ({} if not patch else None), content_type
        try:
            if content_type in (APPLY_PATCH, "application/yaml"):
                return yaml.safe_load(raw), content_type
            return json.loads(raw), content_type
        except (ValueError, yaml.YAMLError) as error:
            raise bad_request(f"couldn't get version/kind; json parse error: {error}") from error

    def _write_options(self, request: web.Request) -> WriteOptions:
        query = request.query
        dry_run = query.getall("dryRun", [])
        for value in dry_run:
            if value != "All":
                raise bad_request(f'Invalid dry run value: {value!r}; the only supported value is "All"')
        validation = query.get("fieldValidation", "") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(
                f"fieldValidation parameter unsupported: {validation}; use one of Ignore, Warn or Strict"
            )
        return WriteOptions(
            dry_run=bool(dry_run),
            field_manager=query.get("fieldManager", ""),
            field_validation=validation,
            force=_flag(query.get("force")),
            user_agent=request.headers.get("User-Agent", ""),
        )

    def _list_options(self, request: web.Request) -> ListOptions:
        query = request.query
        try:
            limit = int(query.get("limit", "0") or 0)
        except ValueError as error:
            raise bad_request(f"invalid limit: {query.get('limit')!r}") from error
        return ListOptions(
            label_selector=query.get("labelSelector", ""),
            field_selector=query.get("fieldSelector", ""),
            limit=limit,
            continue_token=query.get("continue", ""),
            resource_version=query.get("resourceVersion", ""),
            resource_version_match=query.get("resourceVersionMatch", ""),
        )

    def _render(
        self, target: Target, stored: StoredObject, rendering: Rendering, request: web.Request
    ) -> bytes:
        if rendering.form == "object":
            return conversion.present(target.rtype, stored)
        served = conversion.from_storage(target.rtype, stored.obj)
        if rendering.form == "PartialObjectMetadata":
            return dumps(
                {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": f"meta.k8s.io/{rendering.meta_version}",
                    "metadata": served["metadata"],
                }
            )
        return dumps(self._table(target.rtype, [served], rendering, request, {}))

    def _table(
        self,
        rtype: ResourceType,
        objects: list[dict[str, Any]],
        rendering: Rendering,
        request: web.Request,
        list_meta: dict[str, Any],
        *,
        with_columns: bool = True,
    ) -> dict[str, Any]:
        return build_table(
            objects,
            list(rtype.printer_columns) if rtype.printer_columns else None,
            include_object=request.query.get("includeObject", "Metadata"),
            list_meta=list_meta,
            printer=None if rtype.custom else builtin_printer(rtype.kind),
            no_headers=not with_columns,
            group_version=f"meta.k8s.io/{rendering.meta_version}",
        )

    async def _serve(self, request: web.Request, target: Target, rendering: Rendering) -> web.Response:
        cluster = self.cluster
        rtype = target.rtype
        verb = target.verb
        if verb == "get":
            return _json_response(
                self._render(target, cluster.get(rtype, target.namespace, target.name), rendering, request)
            )
        if verb == "list":
            return _json_response(self._list(request, target, rendering))
        if verb == "deletecollection":
            options, _ = await self._delete_options(request)
            deleted = cluster.delete_collection(rtype, target.namespace, self._list_options(request), options)
            body = self._list_body(rtype, [conversion.present(rtype, s) for s in deleted], {})
            return _json_response(body)
        if verb == "delete":
            options, _ = await self._delete_options(request)
            result = cluster.delete(rtype, target.namespace, target.name, options)
            if result.removed:
                meta = result.stored.obj["metadata"]
                details: dict[str, Any] = {
                    "name": meta["name"],
                    "kind": rtype.plural,
                    "uid": meta.get("uid", ""),
                }
                if rtype.group:
                    details["group"] = rtype.group
                status = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                }
                return _json_response(status)
            return _json_response(self._render(target, result.stored, rendering, request))
        write = self._write_options(request)
        if verb == "create":
            body, _ = await self._body(request)
            stored = cluster.create(rtype, target.namespace, body, write)
            return _json_response(self._render(target, stored, rendering, request), 201, write.warnings)
        if verb == "update":
            body, _ = await self._body(request)
            stored = cluster.update(rtype, target.namespace, target.name, body, write, target.subresource)
            return _json_response(self._render(target, stored, rendering, request), 200, write.warnings)
        if verb == "patch":
            patch, patch_type = await self._body(request, patch=True)
            if patch is None:
                raise bad_request("the body of the request must not be empty")
            stored, created = cluster.patch(
                rtype, target.namespace, target.name, patch_type, patch, write, target.subresource
            )
            return _json_response(
                self._render(target, stored, rendering, request), 201 if created else 200, write.warnings
            )
        raise _NOT_FOUND

    async def _delete_options(self, request: web.Request) -> tuple[DeleteOptions, dict[str, Any]]:
        raw = await request.read()
        body: dict[str, Any] = {}
        content_type = request.headers.get("Content-Type", JSON).split(";")[0].strip().lower()
        if content_type == protobuf.CONTENT_TYPE and raw:
            body = protobuf.decode(raw)
        elif raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as error:
                raise bad_request(f"couldn't decode DeleteOptions: {error}") from error
            if not isinstance(body, dict):
                raise bad_request("DeleteOptions must be a JSON object")
        query = request.query
        preconditions = body.get("preconditions") or {}
        policy = query.get("propagationPolicy") or body.get("propagationPolicy") or ""
        if _flag(query.get("orphanDependents")) or body.get("orphanDependents") is True:
            policy = "Orphan"
        if policy not in ("", "Background", "Foreground", "Orphan"):
            raise bad_request(f"propagationPolicy {policy!r} is not one of Background, Foreground, Orphan")
        dry_run = query.getall("dryRun", []) or body.get("dryRun") or []
        return (
            DeleteOptions(
                propagation_policy=policy,
                uid=preconditions.get("uid"),
                resource_version=preconditions.get("resourceVersion"),
                dry_run=bool(dry_run),
            ),
            body,
        )

    def _list_body(self, rtype: ResourceType, items: list[bytes], metadata: dict[str, Any]) -> bytes:
        head = dumps({"kind": rtype.list_kind, "apiVersion": rtype.api_version, "metadata": metadata})
        return head[:-1] + b',"items":[' + b",".join(items) + b"]}"

    def _list(self, request: web.Request, target: Target, rendering: Rendering) -> bytes:
        rtype = target.rtype
        result = self.cluster.list(rtype, target.namespace, self._list_options(request))
        metadata: dict[str, Any] = {"resourceVersion": result.resource_version}
        if result.continue_token:
            metadata["continue"] = result.continue_token
        if result.remaining is not None:
            metadata["remainingItemCount"] = result.remaining
        if rendering.form == "object":
            return self._list_body(rtype, [conversion.present(rtype, s) for s in result.items], metadata)
        served = [conversion.from_storage(rtype, s.obj) for s in result.items]
        if rendering.form == "PartialObjectMetadata":
            return dumps(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": f"meta.k8s.io/{rendering.meta_version}",
                    "metadata": metadata,
                    "items": [
                        {
                            "kind": "PartialObjectMetadata",
                            "apiVersion": f"meta.k8s.io/{rendering.meta_version}",
                            "metadata": obj["metadata"],
                        }
                        for obj in served
                    ],
                }
            )
        return dumps(self._table(rtype, served, rendering, request, metadata))

    # -- watch --------------------------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, target: Target, rendering: Rendering, effect: FaultEffect | None
    ) -> web.StreamResponse:
        query = request.query
        field_selector = query.get("fieldSelector", "")
        if target.name:
            name_selector = f"metadata.name={target.name}"
            field_selector = f"{field_selector},{name_selector}" if field_selector else name_selector
        initial = query.get("sendInitialEvents")
        options = WatchOptions(
            label_selector=query.get("labelSelector", ""),
            field_selector=field_selector,
            resource_version=query.get("resourceVersion", ""),
            resource_version_match=query.get("resourceVersionMatch", ""),
            allow_bookmarks=_flag(query.get("allowWatchBookmarks")),
            send_initial_events=None if initial is None else _flag(initial),
        )
        try:
            timeout = (
                float(query["timeoutSeconds"])
                if query.get("timeoutSeconds")
                else self.options.default_watch_timeout
            )
        except ValueError as error:
            raise bad_request(f"invalid timeoutSeconds: {query.get('timeoutSeconds')!r}") from error
        rtype = target.rtype
        watcher = self.cluster.watch(rtype, target.namespace, options)
        entry = (rtype, watcher)
        self._watchers.add(entry)
        response = web.StreamResponse(headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + timeout
        if effect is not None and effect.watch_close_after_seconds is not None:
            deadline = min(deadline, start + effect.watch_close_after_seconds)
        close_after = effect.watch_close_after_events if effect is not None else None
        abort = effect is not None and effect.watch_abort
        bookmarks = options.allow_bookmarks
        final_bookmark = deadline - min(1.0, timeout / 2)
        next_bookmark = min(start + self.options.bookmark_interval, final_bookmark)
        sent = 0
        first_table = True
        try:
            await response.prepare(request)
            while True:
                now = loop.time()
                if now >= deadline:
                    break
                wait = deadline - now
                if bookmarks:
                    wait = max(0.0, min(wait, next_bookmark - now))
                event = await watcher.next(timeout=wait)
                if event is None:
                    if watcher.closed:
                        break
                    if bookmarks and loop.time() >= next_bookmark:
                        await response.write(
                            self._event_line(
                                EventType.BOOKMARK,
                                self.cluster.bookmark(rtype),
                                target,
                                rendering,
                                request,
                                False,
                            )
                        )
                        next_bookmark = loop.time() + self.options.bookmark_interval
                        if next_bookmark > final_bookmark > loop.time():
                            next_bookmark = final_bookmark
                    continue
                lines = [self._event_line(*event, target, rendering, request, first_table)]
                first_table = False
                sent += 1
                while watcher.pending and len(lines) < 256 and (close_after is None or sent < close_after):
                    nxt = await watcher.next(timeout=0)
                    if nxt is None:
                        break
                    lines.append(self._event_line(*nxt, target, rendering, request, False))
                    sent += 1
                await response.write(b"".join(lines))
                if close_after is not None and sent >= close_after:
                    break
            if abort and request.transport is not None:
                request.transport.close()
                return response
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(entry)
            self.cluster.unwatch(rtype, watcher)
        return response

    def _event_line(
        self,
        event: EventType,
        stored: StoredObject,
        target: Target,
        rendering: Rendering,
        request: web.Request,
        with_columns: bool,
    ) -> bytes:
        if event in (EventType.BOOKMARK, EventType.ERROR):
            raw = stored.raw
        elif rendering.form == "object":
            raw = conversion.present(target.rtype, stored)
        elif rendering.form == "PartialObjectMetadata":
            served = conversion.from_storage(target.rtype, stored.obj)
            raw = dumps(
                {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": f"meta.k8s.io/{rendering.meta_version}",
                    "metadata": served["metadata"],
                }
            )
        else:
            served = conversion.from_storage(target.rtype, stored.obj)
            raw = dumps(
                self._table(target.rtype, [served], rendering, request, {}, with_columns=with_columns)
            )
        return b'{"type":"' + event.value.encode() + b'","object":' + raw + b"}\n"


# -- admin API ----------------------------------------------------------------------------------------------


def admin_routes(app: web.Application, emulator: KubeEmulator) -> None:
    """`/_emulator/`: fault rules and request counters (no authentication: for the test harness)."""

    async def list_faults(_request: web.Request) -> web.Response:
        return _json_response({"faults": [rule.to_json() for rule in emulator.faults.rules()]})

    async def add_fault(request: web.Request) -> web.Response:
        try:
            data = await request.json()
            rule = emulator.faults.add(FaultRule.from_json(data))
        except (ValueError, FaultRuleError) as error:
            return _error_response(bad_request(f"invalid fault rule: {error}"))
        return _json_response(rule.to_json(), status=201)

    async def clear_faults(_request: web.Request) -> web.Response:
        emulator.faults.clear()
        return _json_response({"faults": []})

    async def delete_fault(request: web.Request) -> web.Response:
        try:
            rule_id = int(request.match_info["id"])
        except ValueError:
            return _error_response(bad_request("fault ids are integers"))
        if not emulator.faults.remove(rule_id):
            return _error_response(ApiError(404, "NotFound", f"no fault rule with id {rule_id}"))
        return _json_response({"deleted": rule_id})

    async def requests(_request: web.Request) -> web.Response:
        return _json_response(emulator.requests.snapshot())

    async def reset_counters(_request: web.Request) -> web.Response:
        emulator.requests.reset()
        return _json_response({"reset": True})

    app.router.add_get("/_emulator/faults", list_faults)
    app.router.add_post("/_emulator/faults", add_fault)
    app.router.add_delete("/_emulator/faults", clear_faults)
    app.router.add_delete("/_emulator/faults/{id}", delete_fault)
    app.router.add_get("/_emulator/requests", requests)
    app.router.add_post("/_emulator/reset-counters", reset_counters)
