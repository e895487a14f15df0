"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

Only the holder of the Lease runs reinstalls (DESIGN.md, "Exactly once, by construction"):
- A candidate reads the Lease every retry period and creates it when it is missing. It takes the Lease over only
  when the holder's record (its spec) has not changed for the record's leaseDurationSeconds, as observed on the
  candidate's own monotonic clock since it first saw that record (client-go's "observed time": no other host's
  clock is trusted; acquireTime and renewTime are for people). A record naming this candidate, or nobody, may be
  taken at once.
- Every write is a create or a PUT at the resourceVersion that was read: a 409 means someone else moved the
  Lease, so the candidate reads it again and decides again. Two candidates never both succeed.
- The leader renews every retry period. When no renewal has succeeded for the renew deadline, counted from the
  start of the last successful one (a request still in flight at the deadline is abandoned and counts as
  failed), or when the Lease names someone else, it steps down: `on_stopped` runs first, synchronously, and
  `run` returns. The renew deadline being shorter than the lease duration, the leader has stopped all work
  before another candidate can have seen its record unchanged for a whole lease duration.
- `release`, on a graceful stop once all work has stopped, empties holderIdentity: a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import enum
import logging
import math
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .kube import Conflict, Kube, KubeError, NotFound
from .metrics import Metrics

log = logging.getLogger("ecs_reinstall.leader")


class LeadershipLost(Exception):
    """This instance lost the leader lease (or could not renew it in time): all its work has stopped."""


def default_identity() -> str:
    """A holder identity for a process without a Pod name: the host name and a random suffix, so that two
    processes on one host (or a restarted one) are never taken for each other."""
    return f"{socket.gethostname()}_{secrets.token_hex(4)}"


def check_timings(lease_seconds: float, renew_deadline: float, retry_period: float) -> None:
    """Raises ValueError unless 0 < retry period < renew deadline < lease duration."""
    if not (lease_seconds > 0 and renew_deadline > 0 and retry_period > 0):
        raise ValueError(
            f"leader election timings must be positive (lease {lease_seconds:g}s, "
            f"renew deadline {renew_deadline:g}s, retry period {retry_period:g}s)"
        )
    if not renew_deadline < lease_seconds:
        raise ValueError(
            f"the leader election renew deadline ({renew_deadline:g}s) must be shorter than the lease duration "
            f"({lease_seconds:g}s): a leader that cannot renew must stop before another instance may take over"
        )
    if not retry_period < renew_deadline:
        raise ValueError(
            f"the leader election retry period ({retry_period:g}s) must be shorter than the renew deadline "
            f"({renew_deadline:g}s): the leader must be able to retry a failed renewal before it steps down"
        )


class _Outcome(enum.Enum):
    HELD = "held"  # we hold the Lease now (created, taken over or renewed)
    OTHER = "other"  # someone else holds it (or, while we lead, anyone but us is named in it)
    MOVED = "moved"  # it moved under our write (409): read again next time


def _micro_time() -> str:
    """A Kubernetes MicroTime, now (for people only: no decision is made from these)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _holder(lease: Mapping | None) -> str:
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        check_timings(lease_seconds, renew_deadline, retry_period)
        if not identity:
            raise ValueError("the leader election identity must not be empty")
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._metrics = metrics
        self._clock = clock
        self._duration = max(1, math.ceil(lease_seconds))  # leaseDurationSeconds is a whole number
        self._lease: dict | None = None  # the newest Lease read or written
        # The holder's record as last seen, and since when (our clock).
        self._observed_spec: dict | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0  # our clock at the start of the last successful acquire or renewal
        self._leader = False
        self._standby_for: str | None = None  # the holder last logged while waiting
        self._last_error = ""

    def __repr__(self) -> str:
        return f"LeaderElector({self.where}, identity={self.identity!r}, leader={self._leader})"

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_leader(self) -> bool:
        return self._leader

    # --- the loop ----------------------------------------------------------------------------------------------
    async def run(self, on_started: Callable[[], Awaitable[None]], on_stopped: Callable[[], None]) -> None:
        """Waits for the Lease, calls `on_started` once it holds it, then renews it until it is lost: then calls
        `on_stopped` (synchronously, first of all) and returns. `on_started` runs alongside the renewals; if it
        fails, the instance steps down and releases the Lease, and its error is raised.
        Cancelled, the Lease is kept: the caller stops the work, then calls `release`."""
        await self._acquire()
        self._leader = True
        if self._metrics is not None:
            self._metrics.leader_acquired()
        log.info(
            "acquired the leader lease %s as %s (leader transitions: %s); starting work",
            self.where,
            self.identity,
            ((self._lease or {}).get("spec") or {}).get("leaseTransitions"),
        )
        starting = asyncio.create_task(on_started(), name=f"leader {self.where}: on_started")
        try:
            why = await self._hold(starting)
        except asyncio.CancelledError:
            starting.cancel()
            raise
        except Exception as exc:  # on_started failed (or a bug): step down, and let a standby take over now
            failed = starting.done() and not starting.cancelled() and starting.exception() is exc
            what = "starting the work failed" if failed else "unexpected error while renewing"
            self._step_down(on_stopped, f"{what} ({type(exc).__name__}: {exc})")
            starting.cancel()
            await self._give_up()
            raise
        try:
            self._step_down(on_stopped, why)
        finally:
            starting.cancel()
            await asyncio.wait({starting})
            _retrieve(starting)

    def _step_down(self, on_stopped: Callable[[], None], why: str) -> None:
        self._leader = False
        try:
            on_stopped()  # before anything else: every runner stops now
        finally:
            if self._metrics is not None:
                self._metrics.leader_lost()
            log.warning(
                "lost the leader lease %s as %s: %s; all work stopped", self.where, self.identity, why
            )

    async def _acquire(self) -> None:
        """Returns once this instance holds the Lease."""
        while True:
            attempt_at = self._clock()
            try:
                async with asyncio.timeout(self.renew_deadline):
                    outcome = await self._try_acquire_or_renew()
            except (KubeError, TimeoutError) as exc:
                self._note_error("reading or acquiring", exc)
                outcome = None
            if outcome is _Outcome.HELD:
                self._renewed_at = attempt_at
                self._last_error = ""
                return
            await asyncio.sleep(self.retry_period)

    async def _hold(self, starting: asyncio.Task) -> str:
        """Renews until the Lease is lost; returns why, at the moment it finds out (no await after that).
        Raises what `starting` raised, if it fails."""
        while True:
            pause = min(self.retry_period, self._renewed_at + self.renew_deadline - self._clock())
            if pause > 0:
                if starting.done():
                    await asyncio.sleep(pause)
                else:
                    await asyncio.wait({starting}, timeout=pause)
            if starting.done() and not starting.cancelled() and starting.exception() is not None:
                raise starting.exception()  # type: ignore[misc]
            remaining = self._renewed_at + self.renew_deadline - self._clock()
            if remaining <= 0:
                return f"no renewal succeeded for {self.renew_deadline:g}s"
            attempt_at = self._clock()
            try:
                async with asyncio.timeout(remaining):
                    outcome = await self._try_acquire_or_renew()
            except TimeoutError:
                return (
                    f"no renewal succeeded for {self.renew_deadline:g}s "
                    "(the last request was still unanswered at the deadline)"
                )
            except KubeError as exc:
                self._note_error("renewing", exc)
                continue
            if outcome is _Outcome.HELD:
                self._renewed_at = attempt_at
                self._last_error = ""
            elif outcome is _Outcome.OTHER:
                if self._lease is None:
                    return "the lease was deleted"
                holder = _holder(self._lease)
                return (
                    f"the lease now names {holder!r}" if holder else "the lease was released by someone else"
                )
            # MOVED: someone wrote it between our read and our write; read again at the next round

    def _note_error(self, doing: str, exc: Exception) -> None:
        text = str(exc) or type(exc).__name__
        if text != self._last_error:  # once per distinct error, not every retry period
            log.warning("%s the leader lease %s failed: %s", doing, self.where, text)
        self._last_error = text

    # --- one round -------------------------------------------------------------------------------------------
    async def _try_acquire_or_renew(self) -> _Outcome:
        """One round of client-go's tryAcquireOrRenew: a leader first writes its cached Lease back renewed (one
        PUT); else, or on a 409, the Lease is read and the decision made from what is there now."""
        if self._leader and self._lease is not None:
            try:
                return self._stored(await self.kube.replace_lease(self.namespace, self.name, self._claim()))
            except (Conflict, NotFound):
                pass  # moved (or deleted) since our last write: read it and decide again
        try:
            lease = await self.kube.get_lease(self.namespace, self.name)
        except NotFound:
            if self._leader:
                self._lease = None
                return _Outcome.OTHER  # deleted under us: whoever creates it next holds it, not us
            try:
                return self._stored(await self.kube.create_lease(self.namespace, self._new_lease()))
            except Conflict:
                return _Outcome.MOVED  # another candidate created it first
        self._lease = lease
        spec = dict(lease.get("spec") or {})
        now = self._clock()
        if spec != self._observed_spec:
            self._observed_spec, self._observed_at = copy.deepcopy(spec), now
        holder = _holder(lease)
        if holder != self.identity:
            if self._leader:
                return _Outcome.OTHER  # someone else wrote the Lease: we no longer hold it
            duration = spec.get("leaseDurationSeconds")
            if not isinstance(duration, int) or duration <= 0:
                duration = self._duration
            if holder and now < self._observed_at + duration:
                if holder != self._standby_for:
                    log.info(
                        "the leader lease %s is held by %s; %s waits as a standby",
                        self.where,
                        holder,
                        self.identity,
                    )
                    self._standby_for = holder
                return _Outcome.OTHER
        try:
            return self._stored(await self.kube.replace_lease(self.namespace, self.name, self._claim()))
        except Conflict:
            return _Outcome.MOVED

    def _stored(self, lease: dict) -> _Outcome:
        self._lease = lease
        self._observed_spec = copy.deepcopy(dict(lease.get("spec") or {}))
        self._observed_at = self._clock()
        self._standby_for = None
        return _Outcome.HELD

    def _new_lease(self) -> dict[str, Any]:
        now = _micro_time()
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._duration,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }

    def _claim(self) -> dict[str, Any]:
        """The cached Lease (with its resourceVersion) naming us, renewed now; a new holder counts a transition."""
        assert self._lease is not None
        body = copy.deepcopy(self._lease)
        spec = dict(body.get("spec") or {})
        now = _micro_time()
        if _holder(body) != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self._duration, renewTime=now)
        body["spec"] = spec
        return body

    # --- graceful stop ---------------------------------------------------------------------------------------
    async def release(self) -> None:
        """If leading: empties the Lease's holder so that a standby takes over at once. Call it once all work
        has stopped (and `run` was cancelled). Never raises: at worst a standby waits for the lease to expire."""
        if not self._leader:
            return
        self._leader = False
        if self._metrics is not None:
            self._metrics.leader_released()
        await self._give_up()

    async def _give_up(self) -> None:
        try:
            async with asyncio.timeout(self.renew_deadline):
                for _ in range(2):
                    if self._lease is None or _holder(self._lease) != self.identity:
                        return  # not ours (any more): nothing to release
                    body = copy.deepcopy(self._lease)
                    now = _micro_time()
                    spec = dict(body.get("spec") or {})
                    spec.update(holderIdentity="", leaseDurationSeconds=1, acquireTime=now, renewTime=now)
                    body["spec"] = spec
                    try:
                        self._lease = await self.kube.replace_lease(self.namespace, self.name, body)
                    except Conflict:
                        self._lease = await self.kube.get_lease(self.namespace, self.name)
                        continue
                    log.info(
                        "released the leader lease %s (%s): a standby may take over at once",
                        self.where,
                        self.identity,
                    )
                    return
        except Exception as exc:
            log.warning(
                "could not release the leader lease %s (%s): a standby takes over when it expires",
                self.where,
                str(exc) or type(exc).__name__,
            )


def _retrieve(task: asyncio.Task) -> None:
    """Marks a finished task's exception as retrieved (it was already acted on, or is moot)."""
    if task.done() and not task.cancelled():
        task.exception()
