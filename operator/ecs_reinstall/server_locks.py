"""One reinstall at a time per server, across namespaces.

The registry knows every EcsReinstall the operator watches (fed from the watch stream and primed by a LIST at
start-up) and which of them hold a server: a resource holds its server from the moment it claims it (just before
writing its intent) until it is terminal or gone. Asyncio runs one task at a time, so `try_claim` is atomic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

ACTIVE_PHASES = frozenset({"Submitting", "Reinstalling"})


@dataclass(frozen=True)
class Holder:
    uid: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class ServerLocks:
    def __init__(self) -> None:
        self._holders: dict[str, Holder] = {}  # server ID -> the resource holding it
        self._released: dict[str, asyncio.Event] = {}

    def observe(self, server_id: str, holder: Holder, phase: str | None) -> None:
        """Records what the API says: a resource in an active phase holds its server (e.g. after a restart)."""
        if phase in ACTIVE_PHASES and server_id not in self._holders:
            self._holders[server_id] = holder

    def try_claim(self, server_id: str, holder: Holder) -> Holder | None:
        """Claims the server for `holder`; returns None on success, else the resource that holds it."""
        current = self._holders.get(server_id)
        if current is not None and current.uid != holder.uid:
            return current
        self._holders[server_id] = holder
        return None

    def release(self, server_id: str, uid: str) -> None:
        current = self._holders.get(server_id)
        if current is not None and current.uid == uid:
            del self._holders[server_id]
            event = self._released.pop(server_id, None)
            if event is not None:
                event.set()

    def holder(self, server_id: str) -> Holder | None:
        return self._holders.get(server_id)

    async def wait_released(self, server_id: str, timeout: float) -> None:
        """Sleeps up to `timeout`, waking early when the server's holder lets go."""
        event = self._released.setdefault(server_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def __len__(self) -> int:
        return len(self._holders)
