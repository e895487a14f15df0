"""Which EcsReinstall holds which server, derived from persisted statuses: one reinstall at a time per server.

A resource holds its server while its status says that a request may be in flight or running (`holds`: a live
intent, a job, or a request judged not taken that the cloud might still process late). Nothing is claimed or
released by hand: `Ownership` keeps the newest persisted status of every watched resource (from the start-up
LIST, the watch, and what this process has just written) and answers `holder(server)` from them.

Two things are not in any status, and are kept here too:
- a *reservation*: the resource that is about to write its intent for a server (from the check to the write,
  one step of one runner, as a context manager), so that two runners of this process never both pass the check;
- a *ghost*: a resource deleted while its status held the server. The request it may have sent goes on in the
  cloud, so the hold outlives the object until its runner has followed the outcome (`settled`).
A fresh LIST (`replace_all`) drops every view of a resource that no longer exists; one that held its server
becomes a ghost, so that neither the start-up view nor a missed DELETED event can leave a stale holder behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def holds(status: Mapping | None) -> bool:
    """True when this status may have a request in flight or running on its server."""
    status = status or {}
    if status.get("phase") in TERMINAL_PHASES:
        return False
    attempt = status.get("attempt") or {}
    live_attempt = bool(attempt) and not attempt.get("refused")
    return bool(live_attempt or status.get("jobId") or status.get("unconfirmedAttempt"))


@dataclass(frozen=True)
class Holder:
    uid: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of(cls, body: Mapping) -> Holder:
        meta = body.get("metadata") or {}
        return cls(str(meta.get("uid", "")), str(meta.get("namespace", "")), str(meta.get("name", "")))


@dataclass(frozen=True)
class Hold:
    holder: Holder
    # "persisted": its status holds the server; "deleted": a ghost; "reserved": about to write its intent
    how: str

    def describe(self, server_id: str) -> str:
        if self.how == "reserved":
            # only reserved in memory: nothing was submitted, and it may yet wait itself (a cloud it cannot reach)
            return (
                f"EcsReinstall {self.holder} goes first: it is checking server {server_id} before submitting "
                "(nothing submitted yet)"
            )
        if self.how == "deleted":
            return (
                f"the deleted EcsReinstall {self.holder} may still have a reinstall of server {server_id} "
                "running; waiting for its outcome"
            )
        return f"server {server_id} is being reinstalled by EcsReinstall {self.holder}"


@dataclass
class _View:
    holder: Holder
    server_id: str
    holding: bool
    rv: int
    created: str
    body: Mapping | None  # kept only while holding: a ghost's runner starts from it


def _rv(body: Mapping) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def server_of(body: Mapping) -> str:
    return str((body.get("spec") or {}).get("serverId") or "")


class Ownership:
    def __init__(self) -> None:
        self._views: dict[str, _View] = {}  # uid -> newest persisted view
        self._holding: dict[
            str, set[str]
        ] = {}  # server ID -> uids whose view holds it (`holder` reads only these)
        self._ghosts: set[str] = set()  # uids of deleted resources that still hold their server
        self._reserved: dict[str, Holder] = {}  # server ID -> the resource about to write its intent
        self._released: dict[str, asyncio.Event] = {}

    # --- what the API says ---------------------------------------------------------------------------------

    def observe(self, body: Mapping) -> None:
        """The newest persisted state of a resource (a watch event, a LIST item, or our own write's answer).
        An older resourceVersion than the one known is ignored: watch events arrive late under load."""
        holder = Holder.of(body)
        if not holder.uid or holder.uid in self._ghosts:
            return
        old = self._views.get(holder.uid)
        rv = _rv(body)
        # Older: a late watch event. The same version: our write's echo; the view (and the body it keeps, the
        # runner's too) stays: one body per resource in flight, not two.
        if old is not None and (rv < old.rv or (rv == old.rv and rv)):
            return
        holding = holds(body.get("status"))
        created = str((body.get("metadata") or {}).get("creationTimestamp") or "")
        view = _View(holder, server_of(body), holding, rv, created, body if holding else None)
        self._put(holder.uid, view)
        if old is not None and old.holding and not holding:
            self._wake(old.server_id)

    def deleted(self, uid: str) -> Mapping | None:
        """The resource is gone. If its last status held the server, the hold stays (a ghost) and its last body
        is returned, for a runner to follow the outcome and then call `settled`; else None."""
        view = self._views.get(uid)
        if view is None:
            return None
        if view.holding:
            self._ghosts.add(uid)
            return view.body
        self._put(uid, None)
        self._wake(view.server_id)
        return None

    def settled(self, uid: str) -> None:
        """A ghost's request has come to an end (or was proven never taken): its hold ends."""
        self._ghosts.discard(uid)
        view = self._put(uid, None)
        if view is not None:
            self._wake(view.server_id)

    def replace_all(self, bodies: Iterable[Mapping], listed_at: int) -> list[Mapping]:
        """A fresh LIST of every watched resource, a snapshot at resourceVersion `listed_at`: views of resources
        it no longer has (and last seen before it) are dropped, and those that held their server become ghosts.
        Returns the bodies of the new ghosts."""
        listed = set()
        for body in bodies:
            self.observe(body)
            listed.add(Holder.of(body).uid)
        vanished = [
            uid
            for uid, view in self._views.items()
            if uid not in listed and uid not in self._ghosts and view.rv <= listed_at
        ]
        return [body for uid in vanished if (body := self.deleted(uid)) is not None]

    def _put(self, uid: str, view: _View | None) -> _View | None:
        """Sets (or, with None, forgets) the view of `uid`, and keeps the index of who holds what; the old view."""
        old = self._views.pop(uid, None) if view is None else self._views.get(uid)
        if old is not None and old.holding:
            uids = self._holding.get(old.server_id)
            if uids is not None:
                uids.discard(uid)
                if not uids:
                    del self._holding[old.server_id]
        if view is not None:
            self._views[uid] = view
            if view.holding:
                self._holding.setdefault(view.server_id, set()).add(uid)
        return old

    def ghosts(self) -> list[Mapping]:
        return [body for uid in self._ghosts if (body := self._views[uid].body) is not None]

    # --- who holds what ------------------------------------------------------------------------------------

    def holder(self, server_id: str, *, other_than: str = "") -> Hold | None:
        """Who holds `server_id`, other than the resource `other_than`: the oldest resource whose status
        holds it (two never should; the oldest is a stable answer if a hand edit makes it so), else a
        reservation; None if nobody."""
        holding = sorted(
            (self._views[uid] for uid in self._holding.get(server_id, ())),
            key=lambda v: (v.created, v.holder.uid),
        )
        for view in holding:
            if view.holder.uid != other_than:
                return Hold(view.holder, "deleted" if view.holder.uid in self._ghosts else "persisted")
        reserved = self._reserved.get(server_id)
        if reserved is not None and reserved.uid != other_than:
            return Hold(reserved, "reserved")
        return None

    @contextmanager
    def reserve(self, server_id: str, holder: Holder) -> Iterator[Hold | None]:
        """Checks that nobody else holds `server_id` and, if so, reserves it for `holder` for the duration of the
        block (the caller writes its intent inside it; from then on its status holds the server). Yields the
        other hold instead when there is one, reserving nothing. Checked and taken without an await between."""
        other = self.holder(server_id, other_than=holder.uid)
        if other is not None:
            yield other
            return
        self._reserved[server_id] = holder
        try:
            yield None
        finally:
            if self._reserved.get(server_id) == holder:
                del self._reserved[server_id]
                self._wake(server_id)

    async def wait_released(self, server_id: str, timeout: float) -> None:
        """Sleeps up to `timeout`, waking early when a hold on the server ends."""
        event = self._released.setdefault(server_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def _wake(self, server_id: str) -> None:
        event = self._released.pop(server_id, None)
        if event is not None:
            event.set()
