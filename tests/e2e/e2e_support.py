"""Helpers the e2e tests import (a module of its own: `conftest` is a name every test folder has)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx


def spec(server_id: str, **fields: Any) -> dict:
    """A valid spec for a SHUTOFF server, logging in with the default test password Secret unless told."""
    base: dict[str, Any] = {"serverId": server_id, "pollIntervalSeconds": 2}
    if not {"keyName", "userData", "adminPasswordSecretRef"} & fields.keys():
        base["adminPasswordSecretRef"] = {"name": "root-password"}
    base.update(fields)
    return base


PASSWORD = "Reinstall!2026pw"
ACCESS_KEY = "E2EACCESSKEY00000001"
SECRET_KEY = "e2e-secret-key-never-shown-0000000000001"
PROJECT_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
OPERATOR_NAMESPACE = "ecs-system"


class History:
    """Every version of every EcsReinstall of a namespace, in order, as a watch delivers them, with the monotonic
    time each arrived: what polling would miss (a status that lasted a few milliseconds) is here.

        async with History(harness.kube.url, harness.kube.token, harness.namespace) as history:
            ...
            history.versions("name")  # [{"type", "at", "object"}, ...]
    """

    def __init__(self, url: str, token: str | None, namespace: str, plural_path: str | None = None):
        self.url, self.namespace = url, namespace
        self.path = plural_path or f"/apis/ecs.reinstall.dev/v1alpha1/namespaces/{namespace}/ecsreinstalls"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.events: list[dict] = []
        self._connected = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> History:
        self._task = asyncio.create_task(self._run(), name="history-watch")
        await asyncio.wait_for(self._connected.wait(), 10)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        rv: str | None = None
        timeout = httpx.Timeout(10.0, read=None)  # a watch may be quiet for long
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout) as client:
            while True:
                params = {"watch": "true"}
                if rv:
                    params["resourceVersion"] = rv
                async with client.stream("GET", self.path, params=params) as response:
                    response.raise_for_status()
                    self._connected.set()
                    async for line in response.aiter_lines():
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                            self.events.append({"type": event["type"], "at": time.monotonic(), "object": obj})

    def versions(self, name: str, uid: str | None = None) -> list[dict]:
        """The events about `name` (of the object with `uid` only, when given), oldest first."""
        return [
            e
            for e in self.events
            if e["object"]["metadata"]["name"] == name
            and (uid is None or e["object"]["metadata"].get("uid") == uid)
        ]

    def statuses(self, name: str, uid: str | None = None) -> list[dict]:
        return [e["object"].get("status") or {} for e in self.versions(name, uid)]

    def condition_reasons(self, name: str, uid: str | None = None) -> set[str]:
        return {
            c.get("reason", "") for status in self.statuses(name, uid) for c in status.get("conditions") or ()
        }


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else ():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ".".join(str(b) for b in reversed(raw))
    else:  # IPv6: four little-endian 32-bit words
        words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
        ip = ":".join(b"".join(words)[i : i + 2].hex() for i in range(0, 16, 2))
    return f"{ip}:{int(port, 16)}"


def listening_addresses(pid: int) -> list[str]:
    """The TCP addresses process `pid` listens on ("127.0.0.1:8080", "0000:...:0001:9090"), from /proc."""
    inodes = _socket_inodes(pid)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    found.append(_address(fields[1]))
    return found


LOOPBACK_PREFIXES = ("127.", "0000:0000:0000:0000:0000:0000:0000:0001", "0000:0000:0000:0000:0000:ffff:7f")
