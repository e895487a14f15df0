"""Running the emulator inside a test's event loop, with an admin client.

    async with running_emulator(job_seconds=0.3) as emulator:
        await emulator.admin.add_server("srv-1", status="SHUTOFF")
        ...  # sign requests with emulator.access_key / secret_key against emulator.url
        assert (await emulator.admin.counters())["accepted_reinstalls"] == {"srv-1": 1}

``running_emulator`` keyword arguments beyond the credentials are configuration fields, as for
``PUT /_emulator/config`` (``job_seconds``, ``init_seconds``, ``outcome``, ``rate_limit``, ...).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from ecs_emulator.clock import Clock
from ecs_emulator.server import start_server
from ecs_emulator.state import Credential, EmulatorConfig, EmulatorState, apply_config

DEFAULT_ACCESS_KEY = "EMULATORAK0000000000"
DEFAULT_SECRET_KEY = "emulatorSK000000000000000000000000000000"  # noqa: S105 (a fake test credential)
DEFAULT_PROJECT_ID = "0123456789abcdef0123456789abcdef"


class AdminError(RuntimeError):
    """The admin API refused a call; the message is its explanation, ``status`` the HTTP status (400 bad
    input, 404 unknown server or fault, 409 an operation the server's state refuses)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    """Async helpers over the admin API (``/_emulator/...``)."""

    def __init__(self, base_url: str) -> None:
        # Plain HTTP only: a bare TLS context (no CA bundle to load) keeps start-up fast and trusts nothing.
        self._http = httpx.AsyncClient(
            base_url=f"{base_url}/_emulator", timeout=10.0, verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, payload: object = None, **params: Any) -> Any:
        response = await self._http.request(
            method, path, json=payload, params={k: v for k, v in params.items() if v is not None}
        )
        if response.status_code >= 400:
            raise AdminError(
                f"{method} /_emulator{path} -> {response.status_code}: {response.text}", response.status_code
            )
        return response.json() if response.content else None

    async def add_server(self, server_id: str, **attributes: Any) -> dict:
        """Create a server: status, locked, has_system_disk, task_state, os_type, image_id, availability_zone, name,
        project_id,
        created, updated, and job overrides (outcome, fail_code, fail_reason, fail_status, job_seconds,
        init_seconds)."""
        return await self._call("POST", "/servers", {"id": server_id, **attributes})

    async def get_server(self, server_id: str) -> dict:
        return await self._call("GET", f"/servers/{server_id}")

    async def patch_server(self, server_id: str, **attributes: Any) -> dict:
        return await self._call("PATCH", f"/servers/{server_id}", attributes)

    async def delete_server(self, server_id: str) -> None:
        await self._call("DELETE", f"/servers/{server_id}")

    # --- someone else acts on a server (POST /servers/{id}/operations); each returns {"server", "action"} ---

    async def operate(self, server_id: str, action: str, **fields: Any) -> dict:
        """Any operation: ``action`` stop|start|reboot|resize|migrate|rename|tag, plus its fields and the
        common ones (``user_id``, ``fail``, ``record_action``). 409 (`AdminError`) when the state refuses it."""
        return await self._call("POST", f"/servers/{server_id}/operations", {"action": action, **fields})

    async def stop(self, server_id: str, **options: Any) -> dict:
        return await self.operate(server_id, "stop", **options)

    async def start(self, server_id: str, **options: Any) -> dict:
        return await self.operate(server_id, "start", **options)

    async def reboot(self, server_id: str, kind: str = "SOFT", **options: Any) -> dict:
        """``kind`` is the reboot ``type``: SOFT (ACTIVE only) or HARD (also SHUTOFF, ERROR)."""
        return await self.operate(server_id, "reboot", type=kind, **options)

    async def resize(self, server_id: str, flavor: str | None = None, **options: Any) -> dict:
        if flavor is not None:
            options["flavor"] = flavor
        return await self.operate(server_id, "resize", **options)

    async def migrate(self, server_id: str, **options: Any) -> dict:
        return await self.operate(server_id, "migrate", **options)

    async def rename(self, server_id: str, name: str, **options: Any) -> dict:
        return await self.operate(server_id, "rename", name=name, **options)

    async def tag(
        self,
        server_id: str,
        tags: dict[str, str] | None = None,
        remove: list[str] | None = None,
        **options: Any,
    ) -> dict:
        """Set ``tags`` {key: value} and/or ``remove`` keys (the body's ``set`` / ``remove``)."""
        if tags is not None:
            options["set"] = tags
        if remove is not None:
            options["remove"] = remove
        return await self.operate(server_id, "tag", **options)

    async def actions(self, server_id: str) -> list[dict]:
        """The server's action log, newest first, each with its events (whatever ``action_log`` says)."""
        return await self._call("GET", f"/servers/{server_id}/actions")

    async def add_keypair(self, name: str) -> dict:
        return await self._call("POST", "/keypairs", {"name": name})

    # --- the image catalogue (what a change of OS may use) ---

    async def add_image(
        self,
        image_id: str,
        name: str | None = None,
        os_type: str = "Linux",
        cloud_init: bool = True,
        status: str = "active",
    ) -> dict:
        """Add an image (``image_id`` a lower-case UUID); ``name`` defaults to ``image-<its first 8>``."""
        payload: dict[str, Any] = {
            "id": image_id,
            "os_type": os_type,
            "cloud_init": cloud_init,
            "status": status,
        }
        if name is not None:
            payload["name"] = name
        return await self._call("POST", "/images", payload)

    async def images(self) -> list[dict]:
        return await self._call("GET", "/images")

    async def get_image(self, image_id: str) -> dict:
        return await self._call("GET", f"/images/{image_id}")

    async def patch_image(self, image_id: str, **attributes: Any) -> dict:
        """Change name, os_type, cloud_init or status (e.g. ``status="deleted"``)."""
        return await self._call("PATCH", f"/images/{image_id}", attributes)

    async def delete_image(self, image_id: str) -> None:
        await self._call("DELETE", f"/images/{image_id}")

    async def add_credential(
        self,
        access_key: str,
        secret_key: str,
        security_token: str | None = None,
        project_id: str | None = None,
    ) -> dict:
        payload = {"access_key": access_key, "secret_key": secret_key}
        if security_token is not None:
            payload["security_token"] = security_token
        if project_id is not None:
            payload["project_id"] = project_id
        return await self._call("POST", "/credentials", payload)

    async def get_config(self) -> dict:
        return await self._call("GET", "/config")

    async def set_config(self, **config: Any) -> dict:
        return await self._call("PUT", "/config", config)

    async def add_fault(self, operation: str = "*", **fault: Any) -> str:
        """Add a fault (status, body, retry_after, latency_ms, drop_connection, count, probability); its id."""
        return (await self._call("POST", "/faults", {"operation": operation, **fault}))["id"]

    async def faults(self) -> list[dict]:
        return await self._call("GET", "/faults")

    async def delete_fault(self, fault_id: str) -> None:
        await self._call("DELETE", f"/faults/{fault_id}")

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/faults")

    async def counters(self) -> dict:
        return await self._call("GET", "/counters")

    async def reinstalls(self, server_id: str | None = None) -> list[dict]:
        """Accepted reinstalls and changes of OS (``kind``, ``imageid``), oldest first."""
        return await self._call("GET", "/reinstalls", server_id=server_id)

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    async def advance_clock(self, seconds: float) -> dict:
        return await self._call("POST", "/clock/advance", {"seconds": seconds})


@dataclass
class EmulatorHandle:
    url: str
    access_key: str
    secret_key: str = field(repr=False)
    project_id: str
    state: EmulatorState = field(repr=False)
    admin: AdminClient = field(repr=False)

    @property
    def clock(self) -> Clock:
        return self.state.clock


@asynccontextmanager
async def running_emulator(
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    project_id: str = DEFAULT_PROJECT_ID,
    credentials: Sequence[Credential] = (),
    clock: Clock | None = None,
    host: str = "127.0.0.1",
    **config: Any,
) -> AsyncIterator[EmulatorHandle]:
    """Serve an emulator on ``host`` (a free port) in the current event loop until the block exits."""
    state = EmulatorState(
        project_id=project_id,
        credentials=[Credential(access_key, secret_key), *credentials],
        config=apply_config(EmulatorConfig(), config),
        clock=clock,
    )
    server = await start_server(state, host=host)
    admin = AdminClient(server.url)
    try:
        yield EmulatorHandle(server.url, access_key, secret_key, project_id, state, admin)
    finally:
        await admin.aclose()
        await server.stop()
