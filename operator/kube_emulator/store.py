"""Object storage: one global resourceVersion, per-resource objects, a bounded change history and watchers.

Everything here runs on the event loop's thread and never awaits while changing state, so a write, the
history entry it leaves and the events it hands to watchers happen atomically, like one etcd transaction.
Each stored version is serialised to JSON once (`StoredObject.raw`); reads, lists and every watcher reuse it.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

ObjectKey = tuple[str, str]  # (namespace or "", name)


def dumps(obj: Any) -> bytes:
    """Compact JSON, the way the apiserver writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"
    ERROR = "ERROR"


@dataclass(slots=True, eq=False)
class StoredObject:
    """One version of an object. Never mutated after it is stored: writers build a new one."""

    obj: dict[str, Any]
    raw: bytes
    rv: int

    @property
    def key(self) -> ObjectKey:
        meta = self.obj["metadata"]
        return meta.get("namespace", ""), meta["name"]

    def copy(self) -> dict[str, Any]:
        """A private deep copy to modify (parsing the JSON is faster than copy.deepcopy)."""
        return json.loads(self.raw)


@dataclass(slots=True, eq=False)
class Change:
    """A committed write, as kept in the history for watches that resume from an older resourceVersion."""

    rv: int
    type: EventType
    new: StoredObject  # for DELETED: the last state, carrying the deletion's resourceVersion
    old: StoredObject | None


class Revision:
    """The cluster-wide, monotonic resourceVersion counter (etcd's revision)."""

    def __init__(self, start: int = 1) -> None:
        self.current = start

    def next(self) -> int:
        self.current += 1
        return self.current


class ResourceVersionTooOld(Exception):
    """A watch asked for changes older than the kept history (the apiserver answers 410 Gone)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


WatchEvent = tuple[EventType, StoredObject]
ObjectFilter = Callable[[dict[str, Any]], bool]


class Watcher:
    """One watch stream's queue. Writers push into it synchronously; the HTTP handler drains it.

    Selector transitions follow the apiserver: an object that starts to match arrives as ADDED, one that stops
    matching leaves as DELETED.
    """

    def __init__(self, namespace: str | None, matches: ObjectFilter | None) -> None:
        self.namespace = namespace
        self.matches = matches
        self._events: deque[WatchEvent] = deque()
        self._wakeup = asyncio.Event()
        self.closed = False

    def _visible(self, stored: StoredObject | None) -> bool:
        if stored is None:
            return False
        if self.namespace is not None and stored.obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.matches is None or self.matches(stored.obj)

    def offer(self, change: Change) -> None:
        if self.closed:
            return
        now = self._visible(change.new)
        if change.type is EventType.ADDED:
            event = EventType.ADDED if now else None
        elif change.type is EventType.DELETED:
            event = EventType.DELETED if now or self._visible(change.old) else None
        else:
            before = self._visible(change.old)
            if before and now:
                event = EventType.MODIFIED
            elif now:
                event = EventType.ADDED
            elif before:
                event = EventType.DELETED
            else:
                event = None
        if event is not None:
            self.push(event, change.new)

    def push(self, event: EventType, stored: StoredObject) -> None:
        self._events.append((event, stored))
        self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._events)

    async def next(self, timeout: float | None) -> WatchEvent | None:
        """The next event, or None when `timeout` passes first or the watcher is closed."""
        while not self._events:
            if self.closed:
                return None
            self._wakeup.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                return None
        return self._events.popleft()


@dataclass(eq=False)
class ResourceStore:
    """The objects of one resource (all its versions share it), their recent changes and their watchers."""

    revision: Revision
    history_limit: int
    objects: dict[ObjectKey, StoredObject] = field(default_factory=dict)
    history: deque[Change] = field(default_factory=deque)
    # Changes up to and including this rv are not in the history. A store starts with the revision of its
    # creation, like the apiserver's watch cache: older resourceVersions are "too old" (410) from the start.
    compacted_rv: int = -1
    watchers: set[Watcher] = field(default_factory=set)
    _sorted_keys: list[ObjectKey] | None = None

    def __post_init__(self) -> None:
        if self.compacted_rv < 0:
            self.compacted_rv = self.revision.current

    def get(self, namespace: str, name: str) -> StoredObject | None:
        return self.objects.get((namespace, name))

    def sorted_keys(self) -> list[ObjectKey]:
        """Keys in etcd order (namespace, then name); cached until an object is added or removed."""
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self.objects)
        return self._sorted_keys

    def scan(self, namespace: str | None = None, after: ObjectKey | None = None) -> Iterable[StoredObject]:
        """Objects in key order, optionally within one namespace and strictly after a continue key."""
        keys = self.sorted_keys()
        start = 0
        if namespace is not None:
            start = bisect.bisect_left(keys, (namespace, ""))
        if after is not None:
            start = max(start, bisect.bisect_right(keys, after))
        for index in range(start, len(keys)):
            key = keys[index]
            if namespace is not None and key[0] != namespace:
                break
            stored = self.objects.get(key)
            if stored is not None:
                yield stored

    def count(self, namespace: str | None = None) -> int:
        if namespace is None:
            return len(self.objects)
        return sum(1 for _ in self.scan(namespace))

    # -- writes ---------------------------------------------------------------------------------------------

    def put(self, obj: dict[str, Any], old: StoredObject | None) -> StoredObject:
        """Store a new version of an object (created when `old` is None) under a fresh resourceVersion."""
        rv = self.revision.next()
        obj["metadata"]["resourceVersion"] = str(rv)
        stored = StoredObject(obj, dumps(obj), rv)
        key = stored.key
        if key not in self.objects:
            self._sorted_keys = None
        self.objects[key] = stored
        self._record(Change(rv, EventType.MODIFIED if old else EventType.ADDED, stored, old))
        return stored

    def remove(self, old: StoredObject) -> StoredObject:
        """Remove an object; its DELETED event carries the last state under a fresh resourceVersion."""
        rv = self.revision.next()
        final = old.copy()
        final["metadata"]["resourceVersion"] = str(rv)
        stored = StoredObject(final, dumps(final), rv)
        del self.objects[old.key]
        self._sorted_keys = None
        self._record(Change(rv, EventType.DELETED, stored, old))
        return stored

    def _record(self, change: Change) -> None:
        if len(self.history) >= self.history_limit:
            self.compacted_rv = self.history.popleft().rv
        self.history.append(change)
        for watcher in tuple(self.watchers):
            watcher.offer(change)

    # -- watches --------------------------------------------------------------------------------------------

    def changes_since(self, rv: int) -> list[Change]:
        """The changes after `rv`, or ResourceVersionTooOld when some of them were already compacted."""
        if rv < self.compacted_rv:
            raise ResourceVersionTooOld(rv, self.compacted_rv + 1)
        if not self.history or self.history[-1].rv <= rv:
            return []
        rvs = [change.rv for change in self.history]
        return list(self.history)[bisect.bisect_right(rvs, rv) :]

    def subscribe(self, watcher: Watcher) -> None:
        self.watchers.add(watcher)

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        watcher.close()

    def close_watchers(self) -> None:
        for watcher in tuple(self.watchers):
            self.unsubscribe(watcher)
