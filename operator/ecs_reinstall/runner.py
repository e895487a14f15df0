"""The side-effect half of the state machine: one `Runner` task per live EcsReinstall.

A runner asks `reconcile.next_step` what to do, does that step's I/O (Secrets, the ECS API), turns what it learned
into a `reconcile.Transition`, writes the status and posts the Event, then sleeps until the next step. It ends when
the resource is terminal or gone. Runners hold no finalizer: deleting a resource stops its runner and never waits.

`Supervisor` keeps one runner per resource from the watch stream (see handlers.py) and the server locks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from . import reconcile as rc
from . import spec as spec_model
from .cloud.errors import AmbiguousError, CloudError, TerminalError, ThrottledError
from .cloud.models import CloudTarget, Job, Server
from .inputs import MissingInput, resolve, resolve_target
from .inputs import forget as forget_inputs
from .kube import Conflict, Kube, KubeError, NotFound, until_available
from .metrics import Metrics
from .server_locks import Holder, ServerLocks
from .settings import Settings

logger = logging.getLogger("ecs_reinstall.runner")

EventPoster = Callable[[Mapping, rc.Event], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CloudApi(Protocol):
    """What runners need of the cloud: `cloud.client.EcsClient` (or a fake in unit tests)."""

    async def reinstall(
        self, target: CloudTarget, server_id: str, body: Mapping, *, cloud_init: bool = True
    ) -> str: ...

    async def get_job(self, target: CloudTarget, job_id: str) -> Job: ...

    async def get_server(self, target: CloudTarget, server_id: str) -> Server: ...


@dataclass
class Deps:
    """What every runner shares."""

    settings: Settings
    kube: Kube
    cloud: CloudApi
    metrics: Metrics
    post_event: EventPoster
    locks: ServerLocks = field(default_factory=ServerLocks)
    gate: asyncio.Semaphore | None = None
    now: Callable[[], datetime] = _utcnow
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.gate is None:
            self.gate = asyncio.Semaphore(self.settings.max_concurrency)


def _rv(body: Mapping) -> int:
    try:
        return int(body.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def is_deleting(body: Mapping) -> bool:
    return bool(body.get("metadata", {}).get("deletionTimestamp"))


class Gone(Exception):
    """The resource was deleted while we worked on it."""


class Runner:
    def __init__(self, deps: Deps, body: Mapping):
        self.deps = deps
        self.body: Mapping = body
        meta = body["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.server_id: str = str((body.get("spec") or {}).get("serverId") or "")
        self.holder = Holder(self.uid, self.namespace, self.name)
        self.log = logging.LoggerAdapter(
            logger, {"k8s_ref": {"namespace": self.namespace, "name": self.name, "uid": self.uid}}
        )
        self._target: CloudTarget | None = None
        self._waits = 0  # consecutive waits, for the backoff
        self._waiting_for_server: str | None = None  # set while another resource holds our server

    # --- the loop ---------------------------------------------------------------------------------------------

    def observe(self, body: Mapping) -> None:
        """A newer version from the watch stream (our own writes come back here too)."""
        if _rv(body) >= _rv(self.body):
            self.body = body

    @property
    def status(self) -> Mapping:
        return self.body.get("status") or {}

    async def run(self) -> None:
        try:
            while not is_deleting(self.body):
                step = rc.next_step(self.status)
                if step == rc.Step.DONE:
                    return
                assert self.deps.gate is not None
                async with self.deps.gate:
                    self.deps.metrics.in_flight.inc()
                    try:
                        transition = await self._do(step)
                    finally:
                        self.deps.metrics.in_flight.dec()
                if transition is None:
                    continue
                await self._apply(transition)
                if rc.phase_of(self.status) in (rc.Phase.SUCCEEDED, rc.Phase.FAILED):
                    return
                if transition.delay and self._waiting_for_server:
                    server_id, self._waiting_for_server = self._waiting_for_server, None
                    await self.deps.locks.wait_released(server_id, transition.delay)
                elif transition.delay:
                    await asyncio.sleep(transition.delay)
        except Gone:
            self.log.info("resource deleted; stopping")
        finally:
            self.deps.locks.release(self.server_id, self.uid)

    def _context(self, spec: spec_model.ReinstallSpec | None = None) -> rc.Context:
        return rc.Context(
            generation=int(self.body.get("metadata", {}).get("generation") or 1),
            now=self.deps.now(),
            poll_interval=float(spec.poll_interval_seconds) if spec else 10.0,
            timeout=float(spec.timeout_seconds) if spec else 1800.0,
        )

    def _backoff(self) -> float:
        self._waits += 1
        s = self.deps.settings
        return rc.backoff(self._waits - 1, s.retry_base_seconds, s.retry_max_seconds, self.deps.rng)

    async def _do(self, step: rc.Step) -> rc.Transition | None:
        try:
            parsed = spec_model.parse_spec(self.body.get("spec") or {})
        except spec_model.InvalidSpec as exc:
            if step == rc.Step.PREPARE:
                return rc.on_invalid(self._context(), self.status, str(exc))
            parsed = None  # a spec that broke after submission (a looser CRD): keep following the job
        if step == rc.Step.PREPARE:
            assert parsed is not None
            return await self._prepare(parsed)
        if step == rc.Step.PROBE_OUTCOME:
            return await self._probe_outcome(parsed)
        if step == rc.Step.POLL_JOB:
            return await self._poll_job(parsed)
        return await self._poll_server(parsed)

    # --- Pending: resolve, check, claim, write the intent, submit -------------------------------------------

    async def _prepare(self, spec: spec_model.ReinstallSpec) -> rc.Transition | None:
        ctx = self._context(spec)
        try:
            resolved = await resolve(self.deps.kube, self.deps.settings, self.namespace, spec)
            spec_model.check_resolved(spec, resolved.inputs, namespace=self.namespace)
        except MissingInput as missing:
            return rc.on_wait(
                ctx,
                self.status,
                rc.Reason.WAITING_FOR_INPUT,
                missing.what,
                f"Waiting for {missing.what}",
                self._backoff(),
            )
        except spec_model.InvalidSpec as exc:
            self._forget_inputs(spec)
            return rc.on_invalid(ctx, self.status, str(exc))
        except KubeError as exc:  # unavailable, or forbidden by RBAC: both may pass; say which
            return rc.on_wait(
                ctx,
                self.status,
                rc.Reason.WAITING_FOR_INPUT,
                "the Kubernetes API",
                f"Could not read the referenced objects ({exc}); retrying",
                self._backoff(),
            )
        self._target = resolved.target

        holder = self.deps.locks.try_claim(spec.server_id, self.holder)
        if holder is not None:
            # the loop sleeps until the server is released, outside the gate
            self._waiting_for_server = spec.server_id
            return rc.on_wait(
                ctx,
                self.status,
                rc.Reason.SERVER_BUSY,
                f"EcsReinstall {holder}",
                f"Waiting: server {spec.server_id} is being reinstalled by EcsReinstall {holder}",
                self._backoff(),
            )

        try:
            server = await self.deps.cloud.get_server(resolved.target, spec.server_id)
        except TerminalError as exc:
            self.deps.locks.release(spec.server_id, self.uid)
            self._forget_inputs(spec)
            return rc.on_submit_rejected(ctx, self.status, exc.code or "", str(exc))
        except CloudError as exc:
            self.deps.locks.release(spec.server_id, self.uid)
            return self._cloud_wait(ctx, exc)
        # An earlier request judged not taken shows up after all: follow it (keeping the lock), never send again.
        late = rc.on_late_acceptance(ctx, self.status, server)
        if late is not None:
            return late
        if server.busy:
            self.deps.locks.release(spec.server_id, self.uid)
            return rc.on_wait(
                ctx,
                self.status,
                rc.Reason.SERVER_BUSY,
                f"server {spec.server_id}",
                f"Waiting: server {spec.server_id} is busy ({server.status}"
                f"{', ' + server.task_state if server.task_state else ''})",
                self._backoff(),
            )
        blocker = rc.server_blocker(server, stop_server=spec.stop_server)
        if blocker is not None:
            self.deps.locks.release(spec.server_id, self.uid)
            return rc.on_invalid(ctx, self.status, blocker[1], code=blocker[0])

        attempt = rc.new_attempt(uuid.uuid4().hex, server, spec_model.api_version(spec), ctx.now)
        try:
            await self._apply(rc.on_intent(ctx, self.status, attempt, spec.server_id))
        except Conflict:
            # Someone wrote in between (another operator instance?): re-read and decide again, never POST.
            self.deps.locks.release(spec.server_id, self.uid)
            await self._reload()
            return None
        return await self._submit(spec, resolved.target, resolved.inputs)

    async def _submit(
        self, spec: spec_model.ReinstallSpec, target: CloudTarget, inputs: spec_model.ResolvedInputs
    ) -> rc.Transition:
        body = spec_model.build_reinstall_body(spec, inputs, namespace=self.namespace)
        try:
            job_id = await self.deps.cloud.reinstall(target, spec.server_id, body, cloud_init=spec.cloud_init)
        except ThrottledError as exc:
            self.deps.locks.release(spec.server_id, self.uid)
            reason = rc.Reason.SERVER_BUSY if exc.code == "Ecs.0603" else rc.Reason.THROTTLED
            delay = max(exc.retry_after or 0.0, self._backoff())
            return rc.on_not_submitted(
                self._context(spec),
                self.status,
                reason,
                f"The cloud did not take the request ({exc.code or exc.http_status}); "
                f"retrying in {delay:.0f}s",
                delay,
            )
        except AmbiguousError as exc:
            self.log.warning("reinstall outcome unknown: %s", exc)
            settle = self.deps.settings.outcome_settle_seconds
            return rc.on_outcome_unknown(
                self._context(spec), self.status, _short(exc), min(settle / 4, self._backoff())
            )
        except TerminalError as exc:
            self.deps.locks.release(spec.server_id, self.uid)
            self._forget_inputs(spec)
            return rc.on_submit_rejected(
                self._context(spec), self.status, exc.code or "", exc.message or str(exc)
            )
        except CloudError as exc:  # transient and provably not sent (connection refused)
            self.deps.locks.release(spec.server_id, self.uid)
            return rc.on_not_submitted(
                self._context(spec),
                self.status,
                rc.Reason.CLOUD_UNAVAILABLE,
                f"The cloud is unreachable ({_short(exc)}); retrying",
                self._backoff(),
            )
        self._waits = 0
        self.deps.metrics.submitted()
        return rc.on_submitted(self._context(spec), self.status, job_id)

    def _forget_inputs(self, spec: spec_model.ReinstallSpec) -> None:
        """What this resource read failed it: other resources read those objects afresh (see kube.ReadCache)."""
        forget_inputs(self.deps.kube, self.deps.settings, self.namespace, spec)

    def _cloud_wait(self, ctx: rc.Context, exc: CloudError) -> rc.Transition:
        reason = rc.Reason.THROTTLED if isinstance(exc, ThrottledError) else rc.Reason.CLOUD_UNAVAILABLE
        delay = max(exc.retry_after or 0.0, self._backoff())
        return rc.on_wait(
            ctx,
            self.status,
            reason,
            "the cloud API",
            f"Could not read server state ({_short(exc)}); retrying in {delay:.0f}s",
            delay,
        )

    # --- Submitting with an unknown outcome -------------------------------------------------------------------

    async def _ensure_target(self, spec: spec_model.ReinstallSpec | None) -> CloudTarget:
        if self._target is None:
            if spec is None:
                raise MissingInput("a valid spec")
            self._target = await resolve_target(self.deps.kube, self.deps.settings, self.namespace, spec)
        return self._target

    async def _probe_outcome(self, spec: spec_model.ReinstallSpec | None) -> rc.Transition:
        ctx = self._context(spec)
        settle = self.deps.settings.outcome_settle_seconds
        self.deps.locks.try_claim(self.server_id, self.holder)  # an unknown outcome still holds the server
        try:
            target = await self._ensure_target(spec)
            server = await self.deps.cloud.get_server(target, self.server_id)
        except (MissingInput, spec_model.InvalidSpec, CloudError, KubeError) as exc:
            return rc.on_outcome_unknown(
                ctx, self.status, f"cannot read the server: {_short(exc)}", self._backoff()
            )
        transition = rc.on_outcome_probe(
            ctx,
            self.status,
            server,
            settle_seconds=settle,
            recheck=min(max(1.0, settle / 6), self._backoff()),
        )
        if rc.phase_of(transition.patch) == rc.Phase.PENDING:
            self.deps.locks.release(self.server_id, self.uid)
        return transition

    # --- Reinstalling ----------------------------------------------------------------------------------------

    async def _poll_job(self, spec: spec_model.ReinstallSpec | None) -> rc.Transition:
        ctx = self._context(spec)
        self.deps.locks.try_claim(self.server_id, self.holder)
        try:
            target = await self._ensure_target(spec)
            job = await self.deps.cloud.get_job(target, self.status["jobId"])
        except (MissingInput, spec_model.InvalidSpec, CloudError, KubeError) as exc:
            delay = rc.poll_delay(ctx.poll_interval, self.deps.rng)
            if isinstance(exc, CloudError) and exc.retry_after:
                delay = max(delay, exc.retry_after)
            return rc.on_poll_error(ctx, self.status, _short(exc), delay)
        return rc.on_job(ctx, self.status, job)

    async def _poll_server(self, spec: spec_model.ReinstallSpec | None) -> rc.Transition:
        ctx = self._context(spec)
        self.deps.locks.try_claim(self.server_id, self.holder)
        try:
            target = await self._ensure_target(spec)
            server = await self.deps.cloud.get_server(target, self.server_id)
        except (MissingInput, spec_model.InvalidSpec, CloudError, KubeError) as exc:
            return rc.on_poll_error(
                ctx, self.status, _short(exc), rc.poll_delay(ctx.poll_interval, self.deps.rng)
            )
        return rc.on_server_progress(ctx, self.status, server)

    # --- writing ---------------------------------------------------------------------------------------------

    async def _reload(self) -> None:
        """Re-reads the resource (retrying while the API is unavailable: an error escaping here would end the
        runner, and nothing would restart it until the resource changed)."""
        try:
            body = await until_available(
                lambda: self.deps.kube.get_reinstall(self.namespace, self.name),
                what="re-reading the resource",
                log=self.log,
            )
        except NotFound:
            raise Gone() from None
        self.observe(body)

    async def _apply(self, transition: rc.Transition) -> None:
        """Writes the status (retrying while the API is unavailable), then posts the Event."""
        if transition.patch:
            old_phase = rc.phase_of(self.status)
            rv = self.body.get("metadata", {}).get("resourceVersion") if transition.guarded else None
            while True:
                try:
                    updated = await until_available(
                        lambda: self.deps.kube.patch_status(
                            self.namespace, self.name, transition.patch, resource_version=rv
                        ),
                        what="writing the status",
                        log=self.log,
                    )
                    break
                except NotFound:
                    raise Gone() from None
                except Conflict:
                    if transition.guarded:
                        raise
                    await self._reload()
            self.observe(updated)
            new_phase = rc.phase_of(self.status)
            if new_phase != old_phase:
                self.deps.metrics.transition(old_phase, new_phase)
            self.log.info("%s: %s", self.status.get("phase"), self.status.get("message"))
        if transition.event is not None:
            self.deps.post_event(self.body, transition.event)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."


class Supervisor:
    """One runner per live resource, fed by the watch stream."""

    def __init__(self, deps: Deps):
        self.deps = deps
        self._runners: dict[str, tuple[Runner, asyncio.Task]] = {}
        # uid -> newest resourceVersion seen or written: under load kopf delivers events seconds late, and a late
        # event must never restart a runner that has already moved the resource further (or finished it).
        self._newest: dict[str, int] = {}

    def prime(self, bodies: list[Mapping]) -> None:
        """Before any runner starts: learn which servers are held, so a restart never double-books one."""
        for body in bodies:
            self._note(body)

    def _note(self, body: Mapping) -> None:
        meta = body.get("metadata", {})
        server_id = str((body.get("spec") or {}).get("serverId") or "")
        phase = (body.get("status") or {}).get("phase")
        if server_id:
            self.deps.locks.observe(
                server_id, Holder(meta.get("uid", ""), meta.get("namespace", ""), meta.get("name", "")), phase
            )
        self.deps.metrics.observe_phase(meta.get("uid", ""), phase or "Pending")

    def observe(self, event_type: str | None, body: Mapping) -> None:
        meta = body.get("metadata", {})
        uid = meta.get("uid")
        if not uid:
            return
        entry = self._runners.get(uid)
        if event_type == "DELETED" or is_deleting(body):
            self._newest.pop(uid, None)
            self.deps.metrics.observe_phase(uid, None)
            if entry is not None:
                entry[1].cancel()
            self.deps.locks.release(str((body.get("spec") or {}).get("serverId") or ""), uid)
            return
        # What the runner wrote counts too, even when it has just ended and its done-callback has not run yet.
        if entry is not None:
            self._newest[uid] = max(self._newest.get(uid, 0), _rv(entry[0].body))
        if _rv(body) < self._newest.get(uid, 0):
            return  # stale: a newer version was already seen or written
        self._newest[uid] = _rv(body)
        self._note(body)
        if entry is not None and not entry[1].done():
            entry[0].observe(body)
            return
        if rc.next_step(body.get("status")) == rc.Step.DONE:
            return
        runner = Runner(self.deps, body)
        task = asyncio.create_task(runner.run(), name=f"reinstall:{runner.namespace}/{runner.name}")
        self._runners[uid] = (runner, task)
        task.add_done_callback(lambda t, uid=uid: self._finished(uid, t))

    def _finished(self, uid: str, task: asyncio.Task) -> None:
        entry = self._runners.get(uid)
        if entry is not None and entry[1] is task:
            del self._runners[uid]
            if not task.cancelled():  # cancelled: deleted (or stopping); nothing more will come for it
                self._newest[uid] = max(self._newest.get(uid, 0), _rv(entry[0].body))
        if not task.cancelled() and task.exception() is not None:
            # A bug, not a cloud or API error (those are handled in the runner): log it, and try again later
            # rather than leave the resource stuck until its next watch event.
            delay = self.deps.settings.retry_max_seconds
            logger.error("runner for %s crashed; restarting in %.0fs", uid, delay, exc_info=task.exception())
            body = entry[0].body if entry is not None else None
            if body is not None:
                asyncio.get_running_loop().call_later(delay, self._restart, uid, body)

    def _restart(self, uid: str, body: Mapping) -> None:
        if uid in self._newest and uid not in self._runners:  # still known (not deleted), no runner yet
            self._newest[uid] = 0
            self.observe(None, body)

    @property
    def active(self) -> int:
        return len(self._runners)

    async def stop(self) -> None:
        tasks = [task for _, task in self._runners.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
