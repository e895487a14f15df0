"""The Kubernetes side effects of the operator, on the official `kubernetes` client.

Reading Secrets and ConfigMaps (namespace-local), listing and reading EcsReinstall resources, and writing their
status through the status subresource. The client is synchronous, so calls run in a small dedicated thread pool;
errors come back as the few exceptions the runner acts on (`NotFound`, `Conflict`, `KubeUnavailable`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from . import __version__

GROUP = "ecs.reinstall.dev"
VERSION = "v1alpha1"
PLURAL = "ecsreinstalls"
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


def _translate(exc: ApiException) -> KubeError:
    # Only the status and the API's reason: response bodies of Secret reads are never echoed.
    status = exc.status or 0
    reason = str(exc.reason or "")
    if status == 404:
        return NotFound(status, reason)
    if status == 409:
        return Conflict(status, reason)
    return (
        KubeUnavailable(status, reason) if status in (0, 429) or status >= 500 else KubeError(status, reason)
    )


def load_config(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """In-cluster configuration when running in a Pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = f"ecs-reinstall-operator/{__version__}"  # tells our calls apart in audit logs
    return client


class Kube:
    """The few calls the operator makes, on the kubernetes client's configuration, authentication and connection
    pool. Requests go through `ApiClient.call_api` and answers are plain JSON: the generated API methods validate
    every call with pydantic and build models of the answers, which cost more CPU than the operator's own work
    (profiled: 11% of the operator at 1000 reinstalls)."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, threads: int = 16):
        self._api_client = api_client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")

    def _request_sync(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = self._api_client.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self._api_client.call_api(*request)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(response.data)

    async def _request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._request_sync, method, path, body, content_type)
        try:
            return await loop.run_in_executor(self._pool, call)
        except ApiException as exc:
            raise _translate(exc) from None
        except (
            OSError,
            ValueError,
            kubernetes.client.exceptions.OpenApiException,
            urllib3.exceptions.HTTPError,
        ) as exc:
            raise KubeUnavailable(0, type(exc).__name__) from None

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        """The Secret's data, decoded. Raises NotFound."""
        secret = await self._request("GET", f"/api/v1/namespaces/{_q(namespace)}/secrets/{_q(name)}")
        return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}

    async def read_config_map(self, namespace: str, name: str) -> dict[str, bytes]:
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
            items.extend((await self._request("GET", path)).get("items") or [])
        return items

    async def get_reinstall(self, namespace: str, name: str) -> dict:
        return await self._request("GET", _reinstall_path(namespace, name))

    async def patch_status(
        self, namespace: str, name: str, status: Mapping, *, resource_version: str | None = None
    ) -> dict:
        """Merge-patches `status`; with `resource_version`, only if the object is still at that version
        (else Conflict): the optimistic lock the intent write relies on."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._request(
            "PATCH", _reinstall_path(namespace, name) + "/status", body, "application/merge-patch+json"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api_client.close()


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _reinstall_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{PLURAL}/{_q(name)}"
