"""Kubernetes Events about the operator's resources, posted in the background by the operator's own client.

A runner or the set supervisor queues an Event and goes on; one task posts them, a few at once, as core/v1
Events that `kubectl describe` shows "From: ecs-reinstall-operator", each stamped when it happened. An Event
helps, it never decides anything: one the API server refuses is logged and dropped, one it cannot take now
(unavailable, or the name it generated was taken) is tried again twice, and at most `limit` wait (past that
they are counted and dropped, and the log says so).

kopf posted them before, through a queue it names only inside its per-object workers: runners started elsewhere
had to borrow it through kopf's private context variables. Messages are built from non-secret facts only
(reconcile.Event): nothing here reads a Secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

from . import reconcile as rc
from .kube import Conflict, KubeError, KubeUnavailable

log = logging.getLogger(__name__)

COMPONENT = "ecs-reinstall-operator"
MAX_MESSAGE = 1024  # as kopf and client-go cut them: the API server refuses far longer ones
AT_ONCE = 4  # Events posted at once
RETRY_DELAYS = (0.5, 2.0)  # an Event the API server cannot take now is tried again after these
CLOSE_SECONDS = 5.0  # how long a stop waits for the Events still queued


class EventSink(Protocol):
    async def create_event(self, namespace: str, body: Mapping) -> dict: ...


class Ref(NamedTuple):
    """What an Event says of its object (kept while it waits: a fleet's Events may queue by the thousand)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


def reference(obj: Mapping) -> Ref:
    meta = obj.get("metadata") or {}
    return Ref(
        str(obj.get("apiVersion") or ""),
        str(obj.get("kind") or ""),
        str(meta.get("namespace") or "default"),
        str(meta.get("name") or ""),
        str(meta.get("uid") or ""),
    )


def event_body(ref: Ref, event: rc.Event, *, component: str, instance: str, now: datetime) -> dict:
    """The core/v1 Event about the object `ref` names (an EcsReinstall or an EcsReinstallSet)."""
    message = event.message
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE // 2 - 2] + " ... " + message[-(MAX_MESSAGE // 2 - 3) :]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        # named after the object, as client-go does (the API server adds 5 characters; 253 at most)
        "metadata": {"namespace": ref.namespace, "generateName": f"{(ref.name or 'object')[:200]}."},
        "involvedObject": {
            "apiVersion": ref.api_version,
            "kind": ref.kind,
            "namespace": ref.namespace,
            "name": ref.name,
            "uid": ref.uid,
        },
        "type": event.type,
        "reason": event.reason,
        "message": message,
        "action": event.reason,
        "source": {"component": component},  # the "From" column of `kubectl describe`
        "reportingComponent": component,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "count": 1,
    }


class KubeEvents:
    """`post_event` for runners and sets (runner.EventPoster): queues, and one task posts, `AT_ONCE` at a time."""

    def __init__(
        self, kube: EventSink, *, instance: str, component: str = COMPONENT, limit: int = 10_000
    ) -> None:
        self._kube = kube
        self._component = component
        self._instance = instance
        self._limit = limit
        self._queue: deque[tuple[Ref, rc.Event, datetime]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def __call__(self, obj: Mapping, event: rc.Event) -> None:
        if len(self._queue) >= self._limit:
            if not self.dropped % 1000:
                log.warning("%d Events waiting to be posted: dropping the newest ones", len(self._queue))
            self.dropped += 1
            return
        self._queue.append((reference(obj), event, datetime.now(UTC)))  # stamped when it happened
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._post_queued(), name="post Events")

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def _post_queued(self) -> None:
        # A few at once: one at a time, a fleet's Events (two per reinstall) queued by the thousand behind the
        # API server's answers. Each is stamped when it happened, so `kubectl` shows them in their order.
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(AT_ONCE, len(self._queue)))]
            results = await asyncio.gather(*(self._post(*entry) for entry in batch), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):  # a bug: the Events after it still go out
                    log.error("posting an Event failed", exc_info=result)

    async def _post(self, ref: Ref, event: rc.Event, now: datetime) -> None:
        body = event_body(ref, event, component=self._component, instance=self._instance, now=now)
        what = f"{event.reason} for {ref.namespace}/{ref.name}"
        for delay in (*RETRY_DELAYS, None):
            try:
                await self._kube.create_event(ref.namespace, body)
                return
            except (KubeUnavailable, Conflict) as exc:  # Conflict: the generated name was taken, another one
                if delay is None:
                    log.warning("could not post Event %s (%s); dropped", what, exc)
                    return
                await asyncio.sleep(delay)
            except KubeError as exc:  # refused (forbidden, the namespace being deleted, ...): not again
                log.warning("could not post Event %s (%s); dropped", what, exc)
                return

    async def aclose(self, timeout: float = CLOSE_SECONDS) -> None:
        """Posts what is queued, for `timeout` seconds at most, then stops."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        if not task.done():
            log.warning("stopping with %d Events or more not posted", len(self._queue) + 1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
