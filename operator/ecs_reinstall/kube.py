"""The Kubernetes side effects of the operator: configured and authenticated by the official `kubernetes` client,
sent with aiohttp.

Reading Secrets and ConfigMaps (namespace-local), listing and reading EcsReinstall resources, and writing their
status through the status subresource. The `kubernetes` client loads the configuration (in-cluster or kubeconfig:
server, CA, client certificate, token and its refresh); the requests themselves go out on an aiohttp session in
the event loop, as kopf's own do. The client's synchronous transport in a thread pool cost about three times as
much CPU per call (thread hand-offs, urllib3; measured at 1000 reinstalls: 17.8 -> 14.6 ms of operator CPU per
submission). Errors come back as the few exceptions the runner acts on (`NotFound`, `Conflict`, `KubeUnavailable`).

Secret and ConfigMap reads go through a short-lived cache (`ReadCache`, `--input-cache-seconds`): in a fleet
rollout hundreds of resources refer to the same credentials and password Secrets within seconds, and each read
costs a Kubernetes call on both sides.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import kubernetes
import orjson

from . import __version__

GROUP = "ecs.reinstall.dev"
VERSION = "v1alpha1"
PLURAL = "ecsreinstalls"
SET_PLURAL = "ecsreinstallsets"
SET_KIND = "EcsReinstallSet"
# Held only while a request of the resource may be on its way to the cloud (see reconcile.needs_finalizer).
FINALIZER = f"{GROUP}/request-in-flight"
KIND = "EcsReinstall"

T = TypeVar("T")


class KubeError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(f"Kubernetes API error {status}: {reason}")
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class KubeUnavailable(KubeError):
    """Throttled, server error or connection problem: worth retrying."""


async def until_available(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    log: logging.Logger | logging.LoggerAdapter,
    cap: float = 30.0,
) -> T:
    """Runs `call` until the API answers: retried with exponential backoff (0.5 s up to `cap`) while it is
    unavailable; any other error goes to the caller."""
    delay = 0.5
    while True:
        try:
            return await call()
        except KubeUnavailable as exc:
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)


def _error(status: int, reason: str) -> KubeError:
    # Only the status and the API's reason: response bodies (of Secret reads above all) are never echoed.
    if status == 404:
        return NotFound(status, reason)
    if status == 409:
        return Conflict(status, reason)
    return KubeUnavailable(status, reason) if status == 429 or status >= 500 else KubeError(status, reason)


def load_config(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """In-cluster configuration when running in a Pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = f"ecs-reinstall-operator/{__version__}"  # tells our calls apart in audit logs
    return client


class ReadCache:
    """Recent Secret and ConfigMap reads, shared by every runner for `ttl` seconds (0: no caching at all).

    - Concurrent reads of the same object share one API call (the first caller's); their waiters all get its
      result or its error.
    - Only successful reads are kept, for `ttl` seconds from when the call started, so a cached value is never
      older than that; errors (NotFound above all: a Secret created a moment later must be seen) never are.
    - `forget` drops an entry at once: the readers call it when an entry lacks a key they need, or when the
      cloud refused the credentials read from it, so that the retry reads the object again.
    The values stay in memory only (as they do in the runners that use them): never logged, never in a repr.
    """

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 1024):
        self.ttl = ttl
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[tuple[str, ...], tuple[float, dict[str, bytes]]] = {}
        self._inflight: dict[tuple[str, ...], asyncio.Future[dict[str, bytes]]] = {}
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"ReadCache(ttl={self.ttl}, entries={len(self._entries)})"

    async def get(
        self, key: tuple[str, ...], load: Callable[[], Awaitable[dict[str, bytes]]]
    ) -> dict[str, bytes]:
        if self.ttl <= 0:
            return await load()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > now:
                self.hits += 1
                return dict(entry[1])
            del self._entries[key]
        future = self._inflight.get(key)
        if future is None:
            self.misses += 1
            future = asyncio.ensure_future(load())
            self._inflight[key] = future
            future.add_done_callback(functools.partial(self._loaded, key, now + self.ttl))
        else:
            self.hits += 1
        # shield: a waiter cancelled (its resource deleted) must not cancel the read the others wait for.
        return dict(await asyncio.shield(future))

    def _loaded(self, key: tuple[str, ...], expires: float, future: asyncio.Future) -> None:
        failed = future.cancelled() or future.exception() is not None  # retrieved here: never cached
        if self._inflight.get(key) is not future:
            return  # forgotten while in flight: its waiters get it, later readers read again
        del self._inflight[key]
        if not failed and expires > self._clock():
            if len(self._entries) >= self._max_entries:
                self._evict()
            self._entries[key] = (expires, future.result())

    def _evict(self) -> None:
        now = self._clock()
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]  # the oldest insertion

    def forget(self, key: tuple[str, ...]) -> None:
        """Drops a cached value; a read in flight still answers its waiters but is not kept."""
        self._entries.pop(key, None)
        self._inflight.pop(key, None)


class Kube:
    """The few calls the operator makes, on the kubernetes client's configuration and authentication. Answers are
    plain JSON: the generated API methods validate every call with pydantic and build models of the answers, which
    cost more CPU than the operator's own work (profiled: 11% of the operator at 1000 reinstalls)."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        *,
        cache_seconds: float = 0.0,
        connections: int = 32,
        timeout: float = 60.0,
    ):
        self._api_client = api_client
        self._config = api_client.configuration
        self._host = self._config.host.rstrip("/")
        self._connections = connections
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self.cache = ReadCache(cache_seconds)
        self._auth: tuple[float, dict[str, str]] = (-1.0, {})

    def _ssl(self) -> ssl.SSLContext | bool:
        """TLS as the kubernetes client would do it: its CA, client certificate, verify flag."""
        config = self._config
        if not self._host.startswith("https://"):
            return False
        context = ssl.create_default_context(cafile=config.ssl_ca_cert)
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file)
        if not config.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif config.assert_hostname is False:
            context.check_hostname = False
        return context

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:  # created in the event loop that uses it
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl()),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self._api_client.user_agent}
        if content_type:
            headers["Content-Type"] = content_type
        headers.update(self._auth_headers())
        return headers

    def _auth_headers(self) -> dict[str, str]:
        """The kubernetes client's own auth settings: they refresh expiring tokens (in-cluster, exec plugins).
        Asked at most once a second: each asking re-reads the token (profiled: 2% of the operator's CPU)."""
        now = time.monotonic()
        if now - self._auth[0] >= 1.0:
            settings = self._config.auth_settings().values()
            headers = {a["key"]: a["value"] for a in settings if a.get("in") == "header" and a.get("value")}
            self._auth = (now, headers)
        return self._auth[1]

    async def _request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> Any:
        options: dict[str, Any] = {}
        if self._config.proxy:
            options["proxy"] = self._config.proxy
        if self._config.tls_server_name:
            options["server_hostname"] = self._config.tls_server_name
        try:
            async with self._session_now().request(
                method,
                self._host + path,
                data=json.dumps(body).encode() if body is not None else None,
                headers=self._headers(content_type if body is not None else None),
                **options,
            ) as response:
                data = await response.read()
                if not 200 <= response.status <= 299:
                    raise _error(response.status, str(response.reason or ""))
                return orjson.loads(data)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            # Connection problems, timeouts, an answer that is not JSON: worth retrying. Never the body.
            raise KubeUnavailable(0, type(exc).__name__) from None

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        """The Secret's data, decoded (at most `cache_seconds` old). Raises NotFound."""
        return await self.cache.get(("Secret", namespace, name), lambda: self._read_secret(namespace, name))

    async def read_config_map(self, namespace: str, name: str) -> dict[str, bytes]:
        """The ConfigMap's data and binaryData (at most `cache_seconds` old). Raises NotFound."""
        return await self.cache.get(
            ("ConfigMap", namespace, name), lambda: self._read_config_map(namespace, name)
        )

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """The next read of this Secret or ConfigMap goes to the API."""
        self.cache.forget((kind, namespace, name))

    async def namespaces_matching(self, selector: str) -> frozenset[str]:
        """Names of the namespaces whose labels match `selector` (at most `cache_seconds` old): the API server
        evaluates it, so its meaning is exactly Kubernetes'. Needs list on namespaces."""
        found = await self.cache.get(
            ("Namespaces", "", selector), lambda: self._namespaces_matching(selector)
        )
        return frozenset(found)

    async def _namespaces_matching(self, selector: str) -> dict[str, bytes]:
        found = await self._request("GET", "/api/v1/namespaces?labelSelector=" + _q(selector))
        # name -> nothing: the cache holds maps of bytes
        return {item["metadata"]["name"]: b"" for item in found.get("items") or ()}

    async def _read_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        secret = await self._request("GET", f"/api/v1/namespaces/{_q(namespace)}/secrets/{_q(name)}")
        return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}

    async def _read_config_map(self, namespace: str, name: str) -> dict[str, bytes]:
        cm = await self._request("GET", f"/api/v1/namespaces/{_q(namespace)}/configmaps/{_q(name)}")
        data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
        return data

    async def list_reinstalls(self, namespaces: tuple[str, ...] = ()) -> list[dict]:
        paths = (
            [f"/apis/{GROUP}/{VERSION}/{PLURAL}"]
            if not namespaces
            else [f"/apis/{GROUP}/{VERSION}/namespaces/{_q(ns)}/{PLURAL}" for ns in namespaces]
        )
        items: list[dict] = []
        for path in paths:
            items.extend(lean(item) for item in (await self._request("GET", path)).get("items") or [])
        return items

    async def list_reinstalls_at(self, namespaces: tuple[str, ...] = ()) -> tuple[list[dict], int]:
        """Like `list_reinstalls`, with the resourceVersion the list is a snapshot of (the oldest, when there are
        several lists): whatever was seen at a newer version happened after it."""
        paths = (
            [f"/apis/{GROUP}/{VERSION}/{PLURAL}"]
            if not namespaces
            else [f"/apis/{GROUP}/{VERSION}/namespaces/{_q(ns)}/{PLURAL}" for ns in namespaces]
        )
        items: list[dict] = []
        versions = []
        for path in paths:
            answer = await self._request("GET", path)
            items.extend(lean(item) for item in answer.get("items") or [])
            try:
                versions.append(int((answer.get("metadata") or {}).get("resourceVersion") or 0))
            except ValueError:
                versions.append(0)
        return items, min(versions)

    async def get_reinstall(self, namespace: str, name: str) -> dict:
        return lean(await self._request("GET", _reinstall_path(namespace, name)))

    async def patch_status(
        self, namespace: str, name: str, status: Mapping, *, resource_version: str, uid: str
    ) -> dict:
        """Merge-patches `status`, only if the object is still the one (`uid`) at the version (`resource_version`)
        the caller decided from; else Conflict. This is the operator's only write to its resources, and the
        precondition is not optional: a conflict means "someone else moved it: read it again and decide again".
        (The API server checks the resourceVersion; it ignores the uid on a status patch, as kube-apiserver 1.20
        and upstream do. The resourceVersion suffices: an object deleted and re-created under the same name has
        another one, so a write meant for the old object never lands on the new one.)"""
        if not resource_version or not uid:
            raise ValueError("a status write needs the resourceVersion and uid it was decided from")
        body = {"metadata": {"resourceVersion": resource_version, "uid": uid}, "status": dict(status)}
        return lean(
            await self._request(
                "PATCH", _reinstall_path(namespace, name) + "/status", body, "application/merge-patch+json"
            )
        )

    async def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], *, resource_version: str
    ) -> dict:
        """Replaces `metadata.finalizers`, only if the object is still at `resource_version` (else Conflict)."""
        if not resource_version:
            raise ValueError("a finalizer write needs the resourceVersion it was decided from")
        body = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers or None}}
        return lean(
            await self._request(
                "PATCH", _reinstall_path(namespace, name), body, "application/merge-patch+json"
            )
        )

    async def delete_reinstall(self, namespace: str, name: str, *, uid: str, resource_version: str) -> None:
        """Deletes the resource only if it is still that object at that version (else Conflict)."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid, "resourceVersion": resource_version},
        }
        await self._request("DELETE", _reinstall_path(namespace, name), body, "application/json")

    # --- EcsReinstallSet and its children ----------------------------------------------------------------------

    async def list_sets(self, namespaces: tuple[str, ...] = ()) -> list[dict]:
        paths = (
            [f"/apis/{GROUP}/{VERSION}/{SET_PLURAL}"]
            if not namespaces
            else [f"/apis/{GROUP}/{VERSION}/namespaces/{_q(ns)}/{SET_PLURAL}" for ns in namespaces]
        )
        items: list[dict] = []
        for path in paths:
            items.extend(lean(item) for item in (await self._request("GET", path)).get("items") or [])
        return items

    async def get_set(self, namespace: str, name: str) -> dict:
        return await self._request("GET", _set_path(namespace, name))

    async def patch_set_status(
        self, namespace: str, name: str, status: Mapping, *, resource_version: str, uid: str
    ) -> dict:
        """Like `patch_status`, for a set: conditional on the version decided from (else Conflict). What the set
        admits is written this way before any child is created: the in-flight cap rests on it."""
        if not resource_version or not uid:
            raise ValueError("a status write needs the resourceVersion and uid it was decided from")
        body = {"metadata": {"resourceVersion": resource_version, "uid": uid}, "status": dict(status)}
        return await self._request(
            "PATCH", _set_path(namespace, name) + "/status", body, "application/merge-patch+json"
        )

    async def list_children(self, namespace: str, set_uid: str) -> list[dict]:
        """The EcsReinstalls a set created (by the set's uid label)."""
        selector = _q(f"{GROUP}/set={set_uid}")
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{PLURAL}?labelSelector={selector}"
        return (await self._request("GET", path)).get("items") or []

    async def create_reinstall(self, namespace: str, body: Mapping) -> dict:
        """Creates an EcsReinstall; Conflict (409 AlreadyExists) when one has that name."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{PLURAL}"
        return await self._request("POST", path, dict(body), "application/json")

    async def create_event(self, namespace: str, body: Mapping) -> dict:
        """Creates a core/v1 Event (see events.py)."""
        return await self._request(
            "POST", f"/api/v1/namespaces/{_q(namespace)}/events", dict(body), "application/json"
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        await asyncio.to_thread(self._api_client.close)

    # --- coordination.k8s.io/v1 Leases (leader election, see leader.py) ---------------------------------------
    async def get_lease(self, namespace: str, name: str) -> dict:
        """The Lease as stored. Raises NotFound."""
        return await self._request("GET", self._lease_path(namespace, name))

    async def create_lease(self, namespace: str, body: Mapping) -> dict:
        """Creates the Lease `body` names. Raises Conflict if it exists already."""
        return await self._request(
            "POST", self._lease_path(namespace), dict(body), content_type="application/json"
        )

    async def replace_lease(self, namespace: str, name: str, body: Mapping) -> dict:
        """Replaces the Lease (PUT) if it is still at `body`'s metadata.resourceVersion, else Conflict."""
        if not (body.get("metadata") or {}).get("resourceVersion"):
            raise ValueError("a Lease is replaced only at the resourceVersion it was read at")
        return await self._request(
            "PUT", self._lease_path(namespace, name), dict(body), content_type="application/json"
        )

    @staticmethod
    def _lease_path(namespace: str, name: str | None = None) -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{_q(namespace)}/leases"
        return f"{path}/{_q(name)}" if name is not None else path


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def lean(obj: Mapping) -> dict:
    """The object without `metadata.managedFields`: the API server's record of which manager set which field,
    which the operator never reads, and 43% of an EcsReinstall's JSON once it has been written a few times.
    Bodies are kept per resource in flight (the runner's newest, the ownership index's), so at fleet scale this
    is memory: a shallow copy, the caller's object (kopf's watch event, say) is left as it was."""
    meta = obj.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        return {**obj, "metadata": {key: value for key, value in meta.items() if key != "managedFields"}}
    return obj if isinstance(obj, dict) else dict(obj)


def _reinstall_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{PLURAL}/{_q(name)}"


def _set_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{SET_PLURAL}/{_q(name)}"


def has_finalizer(body: Mapping) -> bool:
    return FINALIZER in ((body.get("metadata") or {}).get("finalizers") or ())
