"""Kubernetes Events about the operator's resources, posted in the background by the operator's own client.

A runner or the set supervisor queues an Event and goes on; a few tasks post them, as core/v1 Events that
`kubectl describe` shows "From: ecs-reinstall-operator", each stamped when it happened (to the second there).
An Event helps, it never decides anything: one the API server refuses is logged and dropped, one it cannot take
now (unavailable, or the name it generated was taken) is tried again twice, and at most `limit` wait (past that
they are counted and dropped, and the log says so).

kopf posted them before, through a queue it names only inside its per-object workers: runners started elsewhere
had to borrow it through kopf's private context variables. Messages are built from non-secret facts only
(reconcile.Event): nothing here reads a Secret.
"""

from __future__ import annotations

import asyncio
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
AT_ONCE = 4  # Events posted at once (one task each)
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
    message = _cut(event.message, MAX_MESSAGE)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        # named after the object, as client-go does (the API server keeps 58 characters and adds 5)
        "metadata": {"namespace": ref.namespace, "generateName": f"{(ref.name or 'object')[:57]}."},
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
        "reportingInstance": instance[:128],  # the API server's limit
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "count": 1,
    }


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` bytes of UTF-8 (the API server counts bytes), cut in the middle: both ends tell."""
    data = text.encode()
    if len(data) <= limit:
        return text
    half = (limit - 5) // 2
    head = data[:half].decode(errors="ignore")
    tail = data[len(data) - half :].decode(errors="ignore")
    return f"{head} ... {tail}"


class KubeEvents:
    """`post_event` for runners and sets (runner.EventPoster): queues, and up to `AT_ONCE` tasks post."""

    def __init__(
        self, kube: EventSink, *, instance: str, component: str = COMPONENT, limit: int = 10_000
    ) -> None:
        self._kube = kube
        self._component = component
        self._instance = instance
        self._limit = limit
        self._queue: deque[tuple[Ref, rc.Event, datetime]] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._closed = False
        self.dropped = 0

    def __call__(self, obj: Mapping, event: rc.Event) -> None:
        if self._closed or len(self._queue) >= self._limit:
            if not self.dropped % 1000:
                why = "stopping" if self._closed else f"{len(self._queue)} Events waiting to be posted"
                log.warning("%s: dropping Event %s (and more, if any)", why, event.reason)
            self.dropped += 1
            return
        self._queue.append((reference(obj), event, datetime.now(UTC)))  # stamped when it happened
        # A few posters at once (with one, a fleet's Events queued by the thousand behind the API server's
        # answers), each taking the next Event when done: one Event slow to post holds no other.
        # (a worker that has just ended may not have left `_workers` yet: its done-callback is still to run)
        if sum(not worker.done() for worker in self._workers) < min(AT_ONCE, len(self._queue)):
            worker = asyncio.get_running_loop().create_task(self._post_queued(), name="post Events")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    @property
    def posting(self) -> bool:
        return bool(self._queue) or any(not worker.done() for worker in self._workers)

    async def _post_queued(self) -> None:
        while self._queue:
            try:
                await self._post(*self._queue.popleft())
            except Exception:  # a bug: the Events after it still go out
                log.exception("posting an Event failed")

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
        """Posts what is queued, for `timeout` seconds at most, then stops; Events queued later are dropped."""
        self._closed = True
        workers = set(self._workers)
        if not workers:
            return
        _, pending = await asyncio.wait(workers, timeout=timeout)
        if pending:
            log.warning("stopping with %d Events or more not posted", len(self._queue) + len(pending))
            for worker in pending:
                worker.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
