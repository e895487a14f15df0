"""Looks at many servers in one call: the list API's `server_id=` filter instead of one GET per server.

A fleet rollout reads each server before its POST (is it idle, whose is it) and then waits for its job to end. One
GET per server per poll would cost more calls than a script that polls every job (and, under a cloud rate
limit, starve the POSTs), while one list call answers for up to 100 servers. So reads are gathered per target
(endpoint, project and the very same credentials: a call is signed with them) and sent together:

- a look asks for a server `within` some seconds: it goes out with the first list call that leaves before then
  (the most overdue first, 100 a call, a few calls at once);
- while budget is spare, a round of every pending look leaves every `eager_interval` (1 s at the least), so
  that a fleet's finished jobs are seen within a second or two instead of up to a poll interval later. Those
  rounds cost at most half the calls that polling each job every interval would, at most 10% of the rate limit
  and `EAGER_CALLS_PER_SECOND`; and none leaves while other calls queue for the rate limiter or while servers
  are being read before their POSTs (submissions come first: only looks that are due go out then, each server
  still looked at within its poll interval).

A look answers the server (None: the cloud does not know the ID) or raises the call's `CloudError` (every look
of that call gets it; a refused call also turns bulk reads off at that target for `OFF_SECONDS`, when looks raise
`LooksUnavailable`). Callers read a server alone when a look fails: nothing is decided on a failed list call.
The job, not the server, stays the witness of a reinstall's outcome: a look only tells the runner when reading
the job is worth a call (see runner.Runner._look_until_settled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ecs_reinstall.cloud.client import LIST_BY_ID
from ecs_reinstall.cloud.errors import TerminalError, TransientError
from ecs_reinstall.cloud.models import CloudTarget, Credentials, Server
from ecs_reinstall.cloud.ratelimit import TokenBucket

log = logging.getLogger(__name__)

EAGER_MIN_SECONDS = 1.0  # the shortest time between two rounds of every pending look
EAGER_CALLS_PER_SECOND = 5.0  # list calls a second that eager rounds may cost, per target
EAGER_SHARE_OF_POLLING = 0.5  # eager rounds cost at most this share of the calls of polling each job
EAGER_SHARE_OF_LIMIT = 0.1  # ... and of the rate limit
CALLS_AT_ONCE = 4  # list calls in flight at once, per target: one endpoint that hangs holds only its own
OFF_SECONDS = 300.0  # how long a target whose list call was refused (403, 400, ...) is not read in bulk
IDLE_SECONDS = 600.0  # a target without looks for this long is forgotten (with the credentials it holds)
RIPE_SHARE = 0.1  # a look due within this share of its interval may leave now, with a full call
EAGER_RETRY_SECONDS = 0.25  # an eager round held back (budget short) is tried again this soon


class ServerReader(Protocol):
    def limiter(self, target: CloudTarget) -> TokenBucket: ...

    async def get_servers(
        self, target: CloudTarget, server_ids: Sequence[str], *, slot_taken: bool = False
    ) -> dict[str, Server | None]: ...


class LookObserver(Protocol):
    def on_look_round(self, kind: str, servers: int) -> None: ...


@dataclass
class _Want:
    due: float
    interval: float
    futures: list[asyncio.Future[Server | None]] = field(default_factory=list)


class LooksUnavailable(TransientError):
    """The list call was refused at this target lately (an IAM policy without the list permission, a gateway
    that refuses the filter): read the server alone."""

    def __init__(self) -> None:
        super().__init__(operation="list_servers", message="bulk server reads are unavailable at this target")


_Key = tuple[str, str, Credentials]  # endpoint, project, the whole credentials: a call is signed with them


class _Queue:
    """The looks pending at one target, and the task that sends them."""

    def __init__(self, target: CloudTarget) -> None:
        self.target = target
        self.slots = asyncio.Semaphore(CALLS_AT_ONCE)
        self.wants: dict[str, _Want] = {}
        self.kicked = asyncio.Event()
        # While the sender sleeps, when it will wake (-inf while it runs): a new look wakes it only if due sooner.
        # Waking it for every look cost a pass over every pending look per look: quadratic in a fleet.
        self.sleeps_until = -math.inf
        self.last_round = -math.inf  # when the last round of every pending look left (or was tried)
        self.holding = False  # whether the last eager round tried was held back
        self.last_urgent = -math.inf  # when a look due within a second (a read before a POST) last came
        self.sending: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None
        self.last_used = -math.inf

    def idle(self) -> bool:
        return not self.wants and not self.sending and (self.task is None or self.task.done())


class ServerLooks:
    def __init__(
        self,
        reader: ServerReader,
        *,
        observer: LookObserver | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._reader = reader
        self._observer = observer
        self._clock = clock
        self._queues: dict[_Key, _Queue] = {}
        self._off: dict[_Key, float] = {}  # target -> until when its list calls are not tried
        self._swept = -math.inf

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def look(self, target: CloudTarget, server_id: str, *, within: float) -> Server | None:
        """The server as the cloud reports it, read at the latest `within` seconds from now (None: the cloud does
        not know it). Raises the list call's `CloudError`, or `LooksUnavailable` while this target refuses them:
        the caller then reads the server alone."""
        # Only looks signed with the very same credentials share a call: never one tenant's with another's key.
        key = (target.endpoint, target.project_id, target.credentials)
        now = self._now()
        if self._off.get(key, -math.inf) > now:
            raise LooksUnavailable()
        self._sweep(now)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(target)
        queue.last_used = now
        if within < EAGER_MIN_SECONDS:
            queue.last_urgent = now
        want = queue.wants.get(server_id)
        if want is None:
            want = queue.wants[server_id] = _Want(due=now + within, interval=max(within, 0.001))
        else:
            want.due = min(want.due, now + within)
            want.interval = min(want.interval, max(within, 0.001))
        future: asyncio.Future[Server | None] = asyncio.get_running_loop().create_future()
        want.futures.append(future)
        if want.due < queue.sleeps_until:
            queue.kicked.set()
        if queue.task is None or queue.task.done():
            queue.task = asyncio.create_task(
                self._send_when_due(key, queue), name=f"server-looks {target.endpoint}"
            )
        try:
            return await future
        finally:
            if future.cancelled() or not future.done():  # the look is not wanted any more
                want.futures.remove(future)
                if not want.futures and queue.wants.get(server_id) is want:
                    del queue.wants[server_id]

    def eager_interval(self, queue: _Queue) -> float:
        """Seconds between two rounds of every pending look (see the module's docstring)."""
        calls = math.ceil(len(queue.wants) / LIST_BY_ID)
        if calls == 0:
            return math.inf
        polling = sum(1.0 / want.interval for want in queue.wants.values())  # job reads a second, if polled
        rounds = min(
            1.0 / EAGER_MIN_SECONDS,
            EAGER_CALLS_PER_SECOND / calls,
            EAGER_SHARE_OF_LIMIT * self._reader.limiter(queue.target).qps / calls,
            EAGER_SHARE_OF_POLLING * polling / calls,
        )
        return 1.0 / rounds

    async def _send_when_due(self, key: _Key, queue: _Queue) -> None:
        while queue.wants:
            now = self._now()
            due = min(want.due for want in queue.wants.values())
            interval = self.eager_interval(queue)
            eager_at = queue.last_round + interval
            # a call's worth of looks that are nearly due (within a tenth of their interval) need not wait
            ripe = sum(1 for want in queue.wants.values() if want.due - now <= RIPE_SHARE * want.interval)
            # A new look wakes the sender only when it is due sooner, not when it makes eager rounds more frequent
            # (that needs a pass over every look): the sender looks again at least every EAGER_MIN_SECONDS.
            wake = now if ripe >= LIST_BY_ID else min(due, eager_at, now + EAGER_MIN_SECONDS)
            if wake > now:
                queue.kicked.clear()
                queue.sleeps_until = wake
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(queue.kicked.wait(), wake - now)
                finally:
                    queue.sleeps_until = -math.inf
                continue
            limiter = self._reader.limiter(queue.target)
            eager = ripe < LIST_BY_ID and due > now
            if eager and (limiter.waiting or now - queue.last_urgent < EAGER_MIN_SECONDS):
                # Budget short (calls queue for the rate limit) or submissions under way (reads before
                # POSTs): no eager round now, the looks go out when due (their poll interval), and the round is
                # tried again shortly (a burst of job reads queues for a second, not for a whole round).
                queue.last_round = now - interval + min(EAGER_RETRY_SECONDS, interval)
                if not queue.holding:
                    self._observe("skipped", 0)
                queue.holding = True
                continue
            # A round: every pending look when eager; else those due or ripe, topped up to whole calls.
            order = sorted(queue.wants, key=lambda server_id: queue.wants[server_id].due)
            if not eager:
                ripe_or_due = sum(
                    1 for want in queue.wants.values() if want.due - now <= RIPE_SHARE * want.interval
                )
                order = order[: math.ceil(max(ripe_or_due, 1) / LIST_BY_ID) * LIST_BY_ID]
            # Only a round of every pending look puts off the next eager one. Rounds of the looks due (one a
            # second in a fleet whose polls are spread) used to, and the fleet's ends waited for their polls.
            if eager or len(order) == len(queue.wants):
                queue.last_round = now
                queue.holding = False
            urgent = queue.last_urgent
            for first in range(0, len(order), LIST_BY_ID):
                if eager and first and (limiter.waiting or queue.last_urgent != urgent):
                    break  # submissions started meanwhile: the rest of the round waits until due
                await queue.slots.acquire()
                try:
                    await limiter.acquire()
                except BaseException:
                    queue.slots.release()
                    raise
                chunk = [
                    server_id for server_id in order[first : first + LIST_BY_ID] if server_id in queue.wants
                ]
                if not chunk:  # every look of it was cancelled while waiting for the token
                    queue.slots.release()
                    continue
                wants = {server_id: queue.wants.pop(server_id) for server_id in chunk}
                self._observe("eager" if eager else "due", len(chunk))
                task = asyncio.create_task(self._send(key, queue, wants))
                queue.sending.add(task)
                task.add_done_callback(queue.sending.discard)
        queue.holding = False  # no look left: a hold (if any) ended with them

    def _sweep(self, now: float) -> None:
        """Targets unused for `IDLE_SECONDS` are forgotten, with the credentials they hold; a target in use keeps
        its pacing (when its last round left) from one look to the next."""
        if now - self._swept < 60.0:
            return
        self._swept = now
        for key, queue in list(self._queues.items()):
            if queue.idle() and now - queue.last_used > IDLE_SECONDS:
                del self._queues[key]
        for key, until in list(self._off.items()):
            if until <= now:
                del self._off[key]

    async def _send(self, key: _Key, queue: _Queue, wants: dict[str, _Want]) -> None:
        try:
            found = await self._reader.get_servers(queue.target, list(wants), slot_taken=True)
        except Exception as exc:  # every look of this call gets the error, whatever it is
            if isinstance(exc, TerminalError):  # refused, not failing: do not try again for a while
                log.warning(
                    "bulk server reads at %s are refused (%s); reading servers one by one for %.0f s",
                    queue.target.endpoint,
                    exc.code or exc.http_status,
                    OFF_SECONDS,
                )
                self._off[key] = self._now() + OFF_SECONDS
            for want in wants.values():
                for future in want.futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        finally:
            queue.slots.release()
        for server_id, want in wants.items():
            for future in want.futures:
                if not future.done():
                    future.set_result(found.get(server_id))

    def _observe(self, kind: str, servers: int) -> None:
        if self._observer is not None:
            try:
                self._observer.on_look_round(kind, servers)
            except Exception:
                log.exception("look observer failed")

    async def aclose(self) -> None:
        queues = list(self._queues.values())
        tasks = [q.task for q in queues if q.task] + [t for q in queues for t in q.sending]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
