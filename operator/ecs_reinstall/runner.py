"""The side-effect half of the state machine: one `Runner` task per live EcsReinstall.

A runner takes the resource as it is now (its *basis*), asks `reconcile` what to do, does that step's I/O (Secrets,
the ECS API), turns what it learned into a `reconcile.Transition`, and writes the status *conditionally on the
basis* (`_apply`: resourceVersion and uid). A conflict means someone else moved the resource: it re-reads and
decides again, never writes anyway. It ends when the resource is terminal or gone.

A finalizer (kube.FINALIZER) is held only while a request may be on its way to the cloud without an answer
(`reconcile.needs_finalizer`): added just before the intent is written, removed as soon as the answer (or the
proof that there was none) is. Deleting a resource waits only for that window, so that a request arriving late is
never credited to a resource created after it, by any operator process. A resource deleted while its job runs
becomes a *ghost*: its runner goes on following the job without writing (the object is gone), and the server stays
held in this process until then (see ownership.py).

`Supervisor` keeps one runner per resource from the watch stream (see handlers.py), and runs them only while
this process leads (`lead` / `step_down`, see leader.py).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from . import reconcile as rc
from . import spec as spec_model
from . import tenancy, witnesses
from .cloud.clock import CloudClock
from .cloud.errors import AmbiguousError, CloudError, TerminalError, ThrottledError
from .cloud.looks import ServerLooks
from .cloud.models import CloudTarget, InstanceAction, Job, Server
from .inputs import MissingInput, credentials_source, forget_credentials, resolve, resolve_target
from .inputs import forget as forget_inputs
from .kube import FINALIZER, Conflict, Kube, KubeError, NotFound, has_finalizer, lean, until_available
from .metrics import Metrics
from .ownership import Holder, Ownership, holds
from .settings import Settings

logger = logging.getLogger("ecs_reinstall.runner")

EventPoster = Callable[[Mapping, rc.Event], None]
# How often the leader compares the whole list of resources with what the watch told (see Supervisor.resync).
RESYNC_SECONDS = 120.0
# How long a graceful stop waits for POSTs on their way and the writing of their answers (below the Pod's 30 s
# grace period).
GRACEFUL_POST_SECONDS = 20.0
# How long an endpoint whose action log answered 403/404 is read through the server's state only.
ACTION_LOG_RETRY_SECONDS = 300.0
TOMBSTONES = 10_000
# Status codes with which the cloud refuses the caller's credentials or permissions (AK/SK, token, IAM policy).
AUTH_STATUSES = frozenset({401, 403})
# How long the read of a server before its POST waits for others to go out in the same call (see cloud/looks.py).
GATHER_SECONDS = 0.05


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CloudApi(Protocol):
    """What runners need of the cloud: `cloud.client.EcsClient` (or a fake in unit tests)."""

    clock: CloudClock  # the cloud's clock, estimated from its answers

    async def reinstall(
        self,
        target: CloudTarget,
        server_id: str,
        body: Mapping,
        *,
        cloud_init: bool = True,
        client_token: str | None = None,
        slot_taken: bool = False,
    ) -> str: ...

    async def acquire_send_slot(self, target: CloudTarget) -> None: ...

    async def get_job(self, target: CloudTarget, job_id: str) -> Job: ...

    async def get_server(self, target: CloudTarget, server_id: str) -> Server: ...

    async def tag_server(self, target: CloudTarget, server_id: str, tags: Mapping[str, str]) -> None: ...

    async def list_servers(
        self, target: CloudTarget, *, tags: Mapping[str, str] | None = None
    ) -> list[Server]: ...

    async def list_actions(self, target: CloudTarget, server_id: str) -> list[InstanceAction]: ...

    async def get_action(self, target: CloudTarget, server_id: str, request_id: str) -> InstanceAction: ...


@dataclass
class Deps:
    """What every runner shares."""

    settings: Settings
    kube: Kube
    cloud: CloudApi
    metrics: Metrics
    post_event: EventPoster
    ownership: Ownership = field(default_factory=Ownership)
    # uid -> the newest request facts seen of that resource (reconcile.remember): what a status that went
    # backwards is given back. Fed by every persisted version this process sees or writes.
    facts_seen: dict[str, dict] = field(default_factory=dict)
    # (endpoint, project, access key) -> monotonic time until which the action log is taken as unavailable
    # (it answered 403/404)
    action_log_off: dict[str, float] = field(default_factory=dict)
    gate: asyncio.Semaphore | None = None  # steps that may send a request (PREPARE)
    # Steps that follow a request already sent (job reads, outcome probes): a gate of their own, so that a job that
    # ended is read at once instead of queueing behind a fleet's submissions (they are one call each, and few).
    follow_gate: asyncio.Semaphore | None = None
    # Many servers read in one call (cloud/looks.py); without it, one GET per read and job polls on a timer.
    looks: ServerLooks | None = None
    now: Callable[[], datetime] = _utcnow
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.gate is None:
            self.gate = asyncio.Semaphore(self.settings.max_concurrency)
        if self.follow_gate is None:
            self.follow_gate = asyncio.Semaphore(self.settings.max_concurrency)

    def note(self, body: Mapping) -> None:
        """A persisted version of a resource, newer than any seen before: the one place that learns from it."""
        uid = (body.get("metadata") or {}).get("uid")
        if not uid:
            return
        self.ownership.observe(body)
        self.facts_seen[uid] = rc.remember(self.facts_seen.get(uid), body.get("status"))
        namespace = str((body.get("metadata") or {}).get("namespace") or "")
        self.metrics.observe_phase(uid, namespace, (body.get("status") or {}).get("phase") or "Pending")

    def forget(self, uid: str) -> None:
        self.facts_seen.pop(uid, None)
        self.metrics.observe_phase(uid, "", None)


def _rv(body: Mapping) -> int:
    try:
        return int(body.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def is_deleting(body: Mapping) -> bool:
    return bool(body.get("metadata", {}).get("deletionTimestamp"))


def _has_work(body: Mapping) -> bool:
    """Unfinished, or finished with our finalizer still to remove."""
    return rc.next_step(body.get("status")) != rc.Step.DONE or has_finalizer(body)


class Gone(Exception):
    """The resource was deleted while we worked on it, and no request of it is in flight."""


@dataclass(frozen=True)
class Learnt:
    """Something the cloud told about an attempt that is not written yet (the write met a conflict): written again
    from the fresh status as long as that still shows the same attempt without an answer."""

    attempt_id: str
    transition: Callable[[rc.Context, Mapping], rc.Transition]
    what: str
    accepted: bool = False  # the cloud accepted it: the job ID must be written


class Runner:
    def __init__(self, deps: Deps, body: Mapping, *, ghost: bool = False):
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
        self.ghost = ghost  # deleted while a request may run: follow it, write nothing
        self._target: CloudTarget | None = None
        self._waits = 0  # consecutive waits, for the backoff
        self._waiting_for_server: str | None = None  # set while another resource holds our server
        self._learnt: Learnt | None = None
        self._told_deletion_waits = False
        # The job was read still running while its server looked idle (a cloud that frees the server before the
        # job ends): the server cannot tell when to read this job, so it is polled on a timer.
        self._idle_before_job_end: str | None = None
        # the job whose server the last look found idle after its rebuild
        self._looked_idle: str | None = None
        self._seen_busy: str | None = None  # the job whose server a look found rebuilding
        # A graceful stop lets a POST that is on its way finish and its answer be written (see Supervisor.stop).
        self.sending = False
        self.stopping = False

    # --- the loop ---------------------------------------------------------------------------------------------

    def observe(self, body: Mapping) -> None:
        """A newer version from the watch stream. Our own writes come back here too, at the version we already
        hold: the answer to our write is kept and the echo dropped (at fleet scale, one body less per resource)."""
        rv, held = _rv(body), _rv(self.body)
        if not self.ghost and (rv > held or rv == held == 0):
            self.body = body

    def become_ghost(self) -> None:
        """The resource was deleted while its status held the server: follow the request to its end."""
        if self.ghost:
            return
        self.ghost = True
        self.body = copy.deepcopy(self.body)
        self.deps.ownership.observe(self.body)  # the newest we know (our intent, at least) ...
        self.deps.ownership.deleted(self.uid)  # ... holds the server until `_ghost_ended`
        status = self.status
        job = f" (cloud job {status['jobId']})" if status.get("jobId") else ""
        message = (
            f"EcsReinstall {self.holder} was deleted while its reinstall of server {self.server_id} may be "
            f"running{job}. The cloud job goes on; the operator follows it to its end and keeps the server "
            "held until then. Applying the same manifest again creates a new EcsReinstall, which reinstalls "
            "the server again"
        )
        self.log.warning("%s", message)
        self.deps.post_event(self.body, rc.Event("Warning", "DeletedWhileReinstalling", message))

    @property
    def status(self) -> Mapping:
        return self.body.get("status") or {}

    async def run(self) -> None:
        cancelled = False
        try:
            while True:
                if self.stopping and not self.sending:
                    return
                basis = self.body
                deleting = is_deleting(basis) and not self.ghost
                if deleting and not has_finalizer(basis):
                    return  # nothing of ours on its way (else the finalizer would be there); see Supervisor
                transition = self._repair(basis)
                if transition is None:
                    if self._release_due(basis):
                        if await self._set_finalizer(basis, held=False):
                            self.sending = False  # a graceful stop waited for this too
                        continue
                    step = rc.next_step(basis.get("status"))
                    if step == rc.Step.DONE or (step == rc.Step.PREPARE and (self.ghost or deleting)):
                        return
                    if deleting:
                        self._deletion_waits()
                    gate = self.deps.gate if step == rc.Step.PREPARE else self.deps.follow_gate
                    assert gate is not None
                    async with gate:
                        self.deps.metrics.in_flight.inc()
                        try:
                            decided = await self._do(step, basis)
                        finally:
                            self.deps.metrics.in_flight.dec()
                    if decided is None:
                        continue
                    transition, basis = decided
                written = await self._apply(transition, basis)
                if written and self._release_due(self.body):
                    # the answer is written: release the resource now, not after the transition's delay (which
                    # is still waited: a refusal's Retry-After holds whatever the release met)
                    await self._set_finalizer(self.body, held=False)
                if written and not self._release_due(self.body):
                    # the answer of our POST, if any, is written, and the finalizer gone
                    self.sending = False
                if not written:
                    continue  # someone else moved it: decide again from what is there now
                if rc.next_step(self.status) == rc.Step.DONE and not has_finalizer(self.body):
                    return
                if transition.delay and self._waiting_for_server:
                    server_id, self._waiting_for_server = self._waiting_for_server, None
                    await self.deps.ownership.wait_released(server_id, transition.delay)
                elif transition.delay and not await self._look_until_settled(transition.delay):
                    await asyncio.sleep(transition.delay)
        except Gone:
            self.log.info("resource deleted; stopping")
        except asyncio.CancelledError:
            cancelled = True  # stepping down or stopping: a ghost's outcome is not known then
            raise
        finally:
            if self.ghost and not cancelled:
                self._ghost_ended()

    def _release_due(self, body: Mapping) -> bool:
        """Our finalizer is on the resource, and nothing of it is on its way any more."""
        return not self.ghost and has_finalizer(body) and not rc.needs_finalizer(body.get("status"))

    def _deletion_waits(self) -> None:
        if self._told_deletion_waits:
            return
        self._told_deletion_waits = True
        message = (
            f"The deletion of EcsReinstall {self.holder} waits until the cloud's answer to its reinstall request "
            f"for server {self.server_id} is known (the finalizer {FINALIZER}); the operator removes the finalizer "
            "then, within the outcome settle time"
        )
        self.log.info("%s", message)
        self.deps.post_event(self.body, rc.Event("Normal", "DeletionWaitsForRequest", message))

    def _ghost_ended(self) -> None:
        self.deps.ownership.settled(self.uid)
        message = (
            f"The reinstall of server {self.server_id} by the deleted EcsReinstall {self.holder} is over "
            f"as far as the operator can tell: {self.status.get('message') or 'no outcome recorded'}"
        )
        self.log.info("%s", message)
        self.deps.post_event(self.body, rc.Event("Normal", "DeletedReinstallEnded", message))

    def _repair(self, basis: Mapping) -> rc.Transition | None:
        """Before any step: an answer of the cloud that a conflict kept from being written, or a status that went
        backwards. Both are decided from `basis` and written conditionally on it, like every other write."""
        status = basis.get("status") or {}
        ctx = self._context(self._spec_or_none(basis))
        learnt, self._learnt = self._learnt, None
        attempt = rc.live_attempt(status)
        if learnt is not None:
            same = attempt is not None and attempt.get("id") == learnt.attempt_id
            # An accepted job ID is written as long as none is (another process may have written that the
            # request was taken, without the ID); any other answer only while nothing is known of the request.
            unanswered = not status.get("jobId") if learnt.accepted else not status.get("submittedAt")
            if same and unanswered:
                self._learnt = learnt  # kept until written
                return learnt.transition(ctx, status)
            earlier = status.get("unconfirmedAttempt") or {}
            if learnt.accepted and attempt is None and earlier.get("id") == learnt.attempt_id and unanswered:
                # Another process judged the request not taken meanwhile, and nothing was sent since: the job
                # ID we hold proves it was taken; write it, with the attempt back in place.
                self._learnt = learnt
                taken = learnt.transition(ctx, status)
                return rc.Transition(
                    {**taken.patch, "attempt": rc.whole_attempt(earlier)}, taken.event, taken.delay
                )
            if not same:
                self.log.warning(
                    "%s, but the resource moved on to another attempt meanwhile; not recorded", learnt.what
                )
        if self.ghost:
            return None
        restored = rc.regression(status, self.deps.facts_seen.get(self.uid))
        if restored is not None:
            self.log.warning("status moved backwards; restoring the request facts %s", sorted(restored))
            return rc.on_regressed(ctx, status, restored)
        return None

    def _spec_or_none(self, body: Mapping) -> spec_model.ReinstallSpec | None:
        try:
            return spec_model.parse_spec(body.get("spec") or {})
        except spec_model.InvalidSpec:
            return None

    def _context(self, spec: spec_model.ReinstallSpec | None = None) -> rc.Context:
        meta = self.body.get("metadata", {})
        created = rc.parse_timestamp(meta.get("creationTimestamp"))
        pending = spec.pending_timeout_seconds if spec else None
        return rc.Context(
            generation=int(meta.get("generation") or 1),
            now=self.deps.now(),
            poll_interval=float(spec.poll_interval_seconds) if spec else 10.0,
            timeout=float(spec.timeout_seconds) if spec else 1800.0,
            pending_deadline=created + timedelta(seconds=pending) if created and pending else None,
        )

    def _backoff(self) -> float:
        self._waits += 1
        s = self.deps.settings
        return rc.backoff(self._waits - 1, s.retry_base_seconds, s.retry_max_seconds, self.deps.rng)

    def _input_recheck(self) -> float:
        """Waiting for something fixed outside the resource: look again soon (reads are shared through the
        ReadCache, so many resources waiting for one Secret cost one read), never later than the backoff."""
        recheck = self.deps.settings.input_recheck_seconds * self.deps.rng.uniform(0.8, 1.2)
        return min(self._backoff(), recheck)

    async def _do(self, step: rc.Step, basis: Mapping) -> tuple[rc.Transition, Mapping] | None:
        """One step's I/O: the transition to write, and the version it was decided from."""
        status = basis.get("status") or {}
        try:
            parsed = spec_model.parse_spec(basis.get("spec") or {})
        except spec_model.InvalidSpec as exc:
            if step == rc.Step.PREPARE:
                return rc.on_invalid(self._context(), status, str(exc)), basis
            parsed = None  # a spec that broke after submission (a looser CRD): keep following the job
        if step == rc.Step.PREPARE:
            assert parsed is not None
            return await self._prepare(parsed, basis)
        if step == rc.Step.PROBE_OUTCOME:
            transition = await self._probe_outcome(parsed, status)
        elif step == rc.Step.POLL_JOB:
            transition = await self._poll_job(parsed, status)
        elif step == rc.Step.FOLLOW_AFTER_TIMEOUT:
            transition = await self._follow_after_timeout(parsed, status)
        else:
            transition = await self._poll_server(parsed, status)
        return await self._after_success(parsed, transition), basis

    async def _after_success(
        self, spec: spec_model.ReinstallSpec | None, transition: rc.Transition
    ) -> rc.Transition:
        """What a success records besides its witness: the revision tag on the server, the image after a change."""
        if spec is None or transition.patch.get("phase") != "Succeeded":
            return transition
        if spec.revision_tag:
            transition = rc.with_revision_tag(transition, await self._write_revision_tag(spec))
        return await self._image_after(spec, transition)

    async def _write_revision_tag(self, spec: spec_model.ReinstallSpec) -> bool:
        """The durable record that this revision is done, on the server itself: a set (or a re-created one, or
        one in another cluster) never reinstalls it again for that revision. No compare-and-swap exists on tags;
        creating one is idempotent."""
        assert spec.revision_tag is not None
        key, value = spec.revision_tag
        try:
            target = await self._ensure_target(spec)
            await self.deps.cloud.tag_server(target, self.server_id, {key: value})
        except (MissingInput, spec_model.InvalidSpec, CloudError, KubeError) as exc:
            self.log.warning(
                "the reinstall succeeded, but the tag %s=%s could not be written on server %s (%s): a new set for "
                "the same revision would reinstall it again",
                key,
                value,
                self.server_id,
                _short(exc),
            )
            return False
        return True

    async def _image_after(self, spec: spec_model.ReinstallSpec, transition: rc.Transition) -> rc.Transition:
        """A change of OS that just succeeded, by whichever witness, records the server's image now: one read,
        only then (a reinstall keeps its image). A read that fails leaves imageAfter out; the outcome stands."""
        if not spec.image_id:
            return transition
        try:
            server = await self.deps.cloud.get_server(await self._ensure_target(spec), self.server_id)
        except (MissingInput, spec_model.InvalidSpec, CloudError, KubeError) as exc:
            self.log.warning("could not read the server's image after the change of OS (%s)", _short(exc))
            return transition
        if server.image_id != spec.image_id:
            self.log.warning(
                "the change of OS succeeded, but server %s reports image %s, not %s",
                self.server_id,
                server.image_id,
                spec.image_id,
            )
        return rc.with_image_after(transition, server.image_id)

    async def _read_server(self, target: CloudTarget, server_id: str) -> Server:
        """The server, read with others in one call when the operator batches reads. A server the batch does not
        find, or a list call that failed, is read alone: the decision rests on this server's own answer."""
        if self.deps.looks is not None:
            try:
                server = await self.deps.looks.look(target, server_id, within=GATHER_SECONDS)
            except CloudError as exc:
                self.log.debug("bulk read of server %s failed (%s); reading it alone", server_id, _short(exc))
            else:
                if server is not None:
                    return server
        return await self.deps.cloud.get_server(target, server_id)

    async def _look_until_settled(self, delay: float) -> bool:
        """Waits for the job being followed to be worth a read: its server idle (or gone) again after it was seen
        busy, through the batched looks; else at `delay`, when the server never showed the rebuild (not started
        yet, or a cloud that does not show it); at the latest at the job read's own deadline
        (`rc.job_read_deadline`). False when it does not apply (no batching, no job followed, the server cannot
        tell, or the looks failed): the caller sleeps `delay`, and the job is polled."""
        basis = self.body
        status = self.status
        job_id = str(status.get("jobId") or "")
        looks, target = self.deps.looks, self._target
        if looks is None or target is None or not job_id or self._idle_before_job_end == job_id:
            return False
        if rc.next_step(status) != rc.Step.POLL_JOB:
            return False
        ctx = self._context(self._spec_or_none(self.body))
        loop = asyncio.get_running_loop()
        started = loop.time()
        poll_at, until = started + delay, started + rc.job_read_deadline(ctx, status, delay)
        within = delay
        while True:
            if _rv(self.body) != _rv(basis):
                return True  # the resource changed (a hand edit, a deletion): decide again from it now
            left = until - loop.time()
            if left <= 0:
                return True
            try:
                look = looks.look(target, self.server_id, within=min(within, left))
                server = await asyncio.wait_for(look, timeout=max(left, 1.0))
            except TimeoutError:
                return True  # the deadline passed (a cloud that does not answer): the job read decides
            except CloudError:
                if loop.time() - started >= delay:
                    return True
                await asyncio.sleep(started + delay - loop.time())
                return True  # as a plain poll: the job read tells (and waits on errors its own way)
            if server is not None and server.busy:
                self._seen_busy = job_id
            elif server is None or self._seen_busy == job_id:
                self._looked_idle = job_id  # gone, or idle again after the rebuild: the job has ended
                return True
            elif loop.time() >= poll_at:
                return True  # idle, never seen rebuilding: no hint either way, read at the poll interval
            within = rc.poll_delay(ctx.poll_interval, self.deps.rng)
            if self._seen_busy != job_id:
                within = min(within, max(poll_at - loop.time(), 0.01))

    async def _follow_after_timeout(
        self, spec: spec_model.ReinstallSpec | None, status: Mapping
    ) -> rc.Transition:
        ctx = self._context(spec)
        try:
            target = await self._ensure_target(spec)
            job = await self.deps.cloud.get_job(target, status["jobId"])
        except TerminalError as exc:
            if exc.http_status != 404:
                return rc.Transition(delay=rc.after_timeout_delay(ctx))
            # the record expired: the action log may still say how the job ended
            try:
                rebuild = await self._rebuild_of(target, status.get("attempt") or {})
            except CloudError:
                return rc.Transition(delay=rc.after_timeout_delay(ctx))
            found = rebuild if isinstance(rebuild, InstanceAction) else None
            return rc.on_job_after_timeout(ctx, status, None, action=found)
        except (MissingInput, spec_model.InvalidSpec, CloudError, KubeError):
            return rc.Transition(delay=rc.after_timeout_delay(ctx))
        return rc.on_job_after_timeout(ctx, status, job)

    # --- Pending: resolve, check, reserve the server, write the intent, submit -------------------------------

    async def _prepare(
        self, spec: spec_model.ReinstallSpec, basis: Mapping
    ) -> tuple[rc.Transition, Mapping] | None:
        ctx = self._context(spec)
        status = basis.get("status") or {}
        try:
            # before anything is read with them: may this namespace use the default credentials at all?
            await tenancy.check_default_credentials(self.deps.kube, self.deps.settings, self.namespace, spec)
            resolved = await resolve(self.deps.kube, self.deps.settings, self.namespace, spec)
            spec_model.check_resolved(spec, resolved.inputs, namespace=self.namespace)
        except tenancy.Forbidden as exc:
            return rc.on_forbidden(ctx, status, exc.code, str(exc)), basis
        except MissingInput as missing:
            message = f"Waiting for {missing.what}{missing.hint}"
            wait = rc.on_wait(
                ctx, status, rc.Reason.WAITING_FOR_INPUT, missing.what, message, self._input_recheck()
            )
            return wait, basis
        except spec_model.InvalidSpec as exc:
            # What the spec refers to (or the operator's defaults) cannot work as it is: nothing was sent, and the
            # spec itself passed its checks, so wait for it to be fixed where it is rather than fail for good.
            self._forget_inputs(spec)
            message = f"Waiting for a fix: {exc}. The resource goes on by itself once it is fixed"
            wait = rc.on_wait(
                ctx,
                status,
                rc.Reason.INVALID_INPUT,
                f"a valid value for {exc.field}",
                message,
                self._input_recheck(),
            )
            return wait, basis
        except KubeError as exc:  # unavailable, or forbidden by RBAC: both may pass; say which
            return rc.on_wait(
                ctx,
                status,
                rc.Reason.WAITING_FOR_INPUT,
                "the Kubernetes API",
                f"Could not read the referenced objects ({exc}); retrying",
                self._backoff(),
            ), basis
        self._target = resolved.target

        with self.deps.ownership.reserve(spec.server_id, self.holder) as other:
            if other is not None:
                # the loop sleeps until the hold ends, outside the gate
                self._waiting_for_server = spec.server_id
                message = f"Waiting: {other.describe(spec.server_id)}"
                wait = rc.on_wait(
                    ctx,
                    status,
                    rc.Reason.SERVER_BUSY,
                    f"EcsReinstall {other.holder}",
                    message,
                    self._backoff(),
                )
                return wait, basis
            try:
                server = await self._read_server(resolved.target, spec.server_id)
            except TerminalError as exc:
                if exc.http_status in AUTH_STATUSES:
                    return self._credentials_refused(ctx, status, spec, exc, sent=False), basis
                self._forget_inputs(spec)
                return rc.on_submit_rejected(ctx, status, exc.code or "", str(exc), self._backoff()), basis
            except CloudError as exc:
                return self._cloud_wait(ctx, status, exc), basis
            # An earlier request judged not taken shows up after all: follow it, never send again.
            late = await self._late_acceptance(ctx, status, resolved.target, server)
            if late is not None:
                return late, basis
            try:  # a server tagged for another namespace is refused, busy or not
                tenancy.check_owner(self.deps.settings, self.namespace, server)
            except tenancy.Forbidden as exc:
                return rc.on_forbidden(ctx, status, exc.code, str(exc)), basis
            if spec.revision_tag and server.tag(spec.revision_tag[0]) == spec.revision_tag[1]:
                return rc.on_already_at_revision(ctx, status, spec.server_id, spec.revision_tag), basis
            if server.busy:
                return rc.on_wait(
                    ctx,
                    status,
                    rc.Reason.SERVER_BUSY,
                    f"server {spec.server_id}",
                    f"Waiting: server {spec.server_id} is busy ({server.status}"
                    f"{', ' + server.task_state if server.task_state else ''})",
                    self._backoff(),
                ), basis
            blocker = rc.server_blocker(server, stop_server=spec.stop_server)
            if blocker is not None:
                return rc.on_invalid(ctx, status, blocker[1], code=blocker[0]), basis

            # The rate limiter first: waiting there must hold no finalizer (a stop meanwhile would leave it).
            await self.deps.cloud.acquire_send_slot(resolved.target)
            # Deleting the resource now waits until the request's answer is written (see needs_finalizer).
            if not has_finalizer(basis):
                try:
                    if not await self._set_finalizer(basis, held=True, errors_raise=True):
                        return None  # moved meanwhile (deleted?): decide again
                except KubeError as exc:  # forbidden (RBAC without patch?), invalid: say so, hold no slot
                    return rc.on_wait(
                        ctx,
                        status,
                        rc.Reason.WAITING_FOR_INPUT,
                        "the Kubernetes API",
                        f"Could not add the finalizer {FINALIZER} ({exc}): the operator needs the patch verb on "
                        "ecsreinstalls; retrying",
                        self._backoff(),
                    ), basis
                basis = self.body
            # Timed now, after the server was read idle and the rate limiter let the request go (it leaves right
            # after the intent is written): the settle time and the action log count from here.
            now = self.deps.now()
            in_cloud = self.deps.cloud.clock.to_cloud(resolved.target.endpoint, now)
            cloud_now = in_cloud[0] - timedelta(seconds=in_cloud[1]) if in_cloud else None
            # The attempt's ID is a UUID: it is also the request's X-Client-Token.
            attempt = rc.new_attempt(str(uuid.uuid4()), server, spec_model.api_version(spec), now, cloud_now)
            intent = rc.on_intent(
                ctx,
                status,
                attempt,
                spec.server_id,
                image_before=server.image_id,
                image=spec.image_id,
                credentials=credentials_source(self.deps.settings, self.namespace, spec),
            )
            if not await self._apply(intent, basis):
                return None  # someone wrote in between (another operator instance?): decide again, never POST
            if self.ghost:
                return None  # deleted meanwhile: a deleted resource never sends a request
        after_intent = self.body
        return await self._submit(spec, resolved.target, resolved.inputs, after_intent), after_intent

    async def _submit(
        self,
        spec: spec_model.ReinstallSpec,
        target: CloudTarget,
        inputs: spec_model.ResolvedInputs,
        basis: Mapping,
    ) -> rc.Transition:
        """Sends the request of the attempt that `basis` (the version with our intent) records. Every answer is
        decided from `basis` and remembered until written (see `_learn`)."""
        status = basis.get("status") or {}
        body = spec_model.build_reinstall_body(spec, inputs, namespace=self.namespace)
        self.sending = True
        try:
            job_id = await self.deps.cloud.reinstall(
                target,
                spec.server_id,
                body,
                cloud_init=spec.cloud_init,
                client_token=_token(status["attempt"]),
                slot_taken=True,
            )
        except ThrottledError as exc:
            reason = rc.Reason.SERVER_BUSY if exc.code == "Ecs.0603" else rc.Reason.THROTTLED
            delay = max(exc.retry_after or 0.0, self._backoff())
            message = f"The cloud did not take the request ({exc.code or exc.http_status}); retrying in {delay:.0f}s"
            return self._learn(
                status,
                "the cloud refused the request",
                lambda ctx, status: rc.on_not_submitted(ctx, status, reason, message, delay),
            )
        except AmbiguousError as exc:
            self.log.warning("reinstall outcome unknown: %s", exc)
            settle = self.deps.settings.outcome_settle_seconds
            return rc.on_outcome_unknown(
                self._context(spec), status, _short(exc), min(settle / 4, self._backoff())
            )
        except TerminalError as exc:
            if exc.http_status in AUTH_STATUSES:
                return self._learn(
                    status,
                    "the cloud refused the credentials",
                    lambda ctx, status, exc=exc: self._credentials_refused(ctx, status, spec, exc, sent=True),
                )
            self._forget_inputs(spec)
            # a fix in the cloud (a key pair) is waited for less eagerly than one in a Secret: each look is a POST
            delay = min(self._backoff(), 12 * self.deps.settings.input_recheck_seconds)
            return self._learn(
                status,
                "the cloud rejected the request",
                lambda ctx, status, exc=exc: rc.on_submit_rejected(
                    ctx, status, exc.code or "", exc.message or str(exc), delay
                ),
            )
        except CloudError as exc:  # transient and provably not sent (connection refused)
            message = f"The cloud is unreachable ({_short(exc)}); retrying"
            delay = self._backoff()
            return self._learn(
                status,
                "the request could not be sent",
                lambda ctx, status: rc.on_not_submitted(
                    ctx, status, rc.Reason.CLOUD_UNAVAILABLE, message, delay
                ),
            )
        self._waits = 0
        self.deps.metrics.submitted()
        return self._learn(
            status,
            f"the cloud accepted the request as job {job_id}",
            lambda ctx, status: rc.on_submitted(ctx, status, job_id),
            accepted=True,
        )

    def _learn(
        self,
        status: Mapping,
        what: str,
        transition: Callable[[rc.Context, Mapping], rc.Transition],
        *,
        accepted: bool = False,
    ) -> rc.Transition:
        """The transition for what the cloud answered about the attempt in `status`, remembered until it is
        written: a conflict on the write must not lose a job ID (see `_repair`)."""
        self._learnt = Learnt(str(status["attempt"]["id"]), transition, what, accepted)
        return transition(self._context(self._spec_or_none(self.body)), status)

    def _credentials_refused(
        self, ctx: rc.Context, status: Mapping, spec: spec_model.ReinstallSpec, exc: CloudError, *, sent: bool
    ) -> rc.Transition:
        """Refused credentials wait for the Secret (or the policy) to be fixed; a refused POST (`sent`: each look
        is another intent, POST and Events) looks again at most every minute, a refused read within seconds."""
        forget_credentials(self.deps.kube, self.deps.settings, self.namespace, spec)
        self._target = None
        source = credentials_source(self.deps.settings, self.namespace, spec)
        code = exc.code or f"HTTP {exc.http_status}"
        delay = (
            min(self._backoff(), 12 * self.deps.settings.input_recheck_seconds)
            if sent
            else self._input_recheck()
        )
        return rc.on_invalid_credentials(ctx, status, source, code, delay)

    def _forget_inputs(self, spec: spec_model.ReinstallSpec) -> None:
        """What this resource read failed it: other resources read those objects afresh (see kube.ReadCache)."""
        forget_inputs(self.deps.kube, self.deps.settings, self.namespace, spec)

    def _cloud_wait(self, ctx: rc.Context, status: Mapping, exc: CloudError) -> rc.Transition:
        reason = rc.Reason.THROTTLED if isinstance(exc, ThrottledError) else rc.Reason.CLOUD_UNAVAILABLE
        delay = max(exc.retry_after or 0.0, self._backoff())
        where = f" at {self._target.endpoint}" if self._target is not None else ""
        return rc.on_wait(
            ctx,
            status,
            reason,
            "the cloud API",
            f"Could not read the server's state from the ECS API{where} ({_short(exc)}"
            f"{rc.unreachable_hint(str(exc))}); retrying in {delay:.0f}s",
            delay,
        )

    # --- a request with an unknown outcome --------------------------------------------------------------------

    async def _ensure_target(self, spec: spec_model.ReinstallSpec | None) -> CloudTarget:
        if self._target is None:
            if spec is None:
                raise MissingInput("a valid spec")
            self._target = await resolve_target(self.deps.kube, self.deps.settings, self.namespace, spec)
        return self._target

    def _refused_while_following(self, spec: spec_model.ReinstallSpec | None, exc: BaseException) -> str:
        """A poll met an error; if the cloud refused the credentials (rotated keys, an expired token), the
        Secret is read afresh for the next poll."""
        if isinstance(exc, CloudError) and exc.http_status in AUTH_STATUSES and spec is not None:
            forget_credentials(self.deps.kube, self.deps.settings, self.namespace, spec)
            self._target = None
            source = credentials_source(self.deps.settings, self.namespace, spec)
            return f"the cloud refused the credentials ({exc.code or exc.http_status}); re-reading {source}"
        return _short(exc)

    async def _rebuild_of(self, target: CloudTarget, attempt: Mapping) -> InstanceAction | _NoLog | None:
        """The rebuild action `attempt` made, with its events, from the server's action log; None when the log
        has none (yet); NO_LOG when the log cannot tell (unavailable, or the attempt's cloud time unknown)."""
        since = witnesses.attempt_start_in_cloud(attempt)
        loop = asyncio.get_running_loop()
        # Keyed by who asks where: one account's policy may deny the log while another's allows it.
        key = f"{target.endpoint} {target.project_id} {target.credentials.access_key}"
        if since is None or self.deps.action_log_off.get(key, 0.0) > loop.time():
            return NO_LOG
        try:
            actions = await self.deps.cloud.list_actions(target, self.server_id)
        except TerminalError as exc:
            if exc.http_status not in (403, 404):
                raise
            self.log.warning("the server's action log is unavailable (%s); reading the server's state", exc)
            self.deps.action_log_off[key] = loop.time() + ACTION_LOG_RETRY_SECONDS
            return NO_LOG
        known = attempt.get("requestId")
        if known:
            listed = [a for a in actions if a.request_id == known]
        else:
            listed = witnesses.rebuilds_after(actions, since)[:3]
        for candidate in listed:
            rebuild = await self.deps.cloud.get_action(target, self.server_id, candidate.request_id)
            if known or not witnesses.ended_before(rebuild, since):
                return rebuild
        return None

    async def _late_acceptance(
        self, ctx: rc.Context, status: Mapping, target: CloudTarget, server: Server
    ) -> rc.Transition | None:
        """Before sending again after a request judged not taken: did the cloud process it late after all? The
        action log tells; without it, the server's state. (Only an unconfirmed request still holds the server, so
        no other resource's rebuild can be taken for it; a refused one does not, and is not looked up.)"""
        earlier = status.get("unconfirmedAttempt")
        if not earlier:
            return None
        rebuild = await self._rebuild_of(target, earlier)
        if rebuild is NO_LOG:
            return rc.on_late_acceptance(ctx, status, server)
        if rebuild is None:
            return None
        return rc.on_action(ctx, status, earlier, rebuild, how="the earlier request was processed late")

    async def _probe_outcome(self, spec: spec_model.ReinstallSpec | None, status: Mapping) -> rc.Transition:
        ctx = self._context(spec)
        settle = self.deps.settings.outcome_settle_seconds
        recheck = min(max(1.0, settle / 6), self._backoff())
        try:
            target = await self._ensure_target(spec)
            rebuild = await self._rebuild_of(target, status.get("attempt") or {})
            if rebuild is not NO_LOG:
                return rc.on_outcome_probe_actions(
                    ctx, status, rebuild, settle_seconds=settle, recheck=recheck
                )
            server = await self.deps.cloud.get_server(target, self.server_id)
        except (MissingInput, spec_model.InvalidSpec, CloudError, KubeError) as exc:
            if isinstance(exc, TerminalError) and exc.http_status == 404:
                return rc.on_probe_gave_up(ctx, status, f"server {self.server_id} no longer exists")
            if rc.probe_expired(ctx, status):
                return rc.on_probe_gave_up(
                    ctx, status, f"the server could not be read for {ctx.timeout:.0f}s ({_short(exc)})"
                )
            detail = f"cannot read the server: {self._refused_while_following(spec, exc)}"
            return rc.on_outcome_unknown(ctx, status, detail, self._backoff())
        return rc.on_outcome_probe(ctx, status, server, settle_seconds=settle, recheck=recheck)

    # --- Reinstalling ----------------------------------------------------------------------------------------

    async def _poll_job(self, spec: spec_model.ReinstallSpec | None, status: Mapping) -> rc.Transition:
        ctx = self._context(spec)
        looked_idle, self._looked_idle = self._looked_idle, None
        try:
            target = await self._ensure_target(spec)
            job = await self.deps.cloud.get_job(target, status["jobId"])
        except TerminalError as exc:
            if exc.http_status == 404 and spec is not None:  # the record expired (a day after the job ended)
                return await self._decide_without_job(
                    spec, status, "the job record has expired", job_ended=True
                )
            return rc.on_poll_error(ctx, status, self._refused_while_following(spec, exc), ctx.poll_interval)
        except (MissingInput, spec_model.InvalidSpec, CloudError, KubeError) as exc:
            delay = rc.poll_delay(ctx.poll_interval, self.deps.rng)
            if isinstance(exc, CloudError) and exc.retry_after:
                delay = max(delay, exc.retry_after)
            return rc.on_poll_error(ctx, status, self._refused_while_following(spec, exc), delay)
        if looked_idle == status["jobId"] and not job.status.is_terminal:
            # the server was idle again after the rebuild while the job runs on: it cannot tell this job's end
            self._idle_before_job_end = looked_idle
        return rc.on_job(ctx, status, job)

    async def _poll_server(self, spec: spec_model.ReinstallSpec | None, status: Mapping) -> rc.Transition:
        return await self._decide_without_job(spec, status, "the job ID was lost")

    async def _decide_without_job(
        self, spec: spec_model.ReinstallSpec | None, status: Mapping, why: str, *, job_ended: bool = False
    ) -> rc.Transition:
        """No job to read (its ID lost, or its record expired: then the job is over, and no timeout applies):
        the action log decides, else the server's state."""
        ctx = self._context(spec)
        attempt = status.get("attempt") or status.get("unconfirmedAttempt") or {}
        try:
            target = await self._ensure_target(spec)
            rebuild = await self._rebuild_of(target, attempt)
            if isinstance(rebuild, InstanceAction):
                return rc.on_action(ctx, status, attempt, rebuild, how=why)
            server = await self.deps.cloud.get_server(target, self.server_id)
        except (MissingInput, spec_model.InvalidSpec, CloudError, KubeError) as exc:
            detail = self._refused_while_following(spec, exc)
            delay = rc.poll_delay(ctx.poll_interval, self.deps.rng)
            return rc.on_poll_error(ctx, status, detail, delay, job_ended=job_ended)
        return rc.on_server_progress(ctx, status, server, job_ended=job_ended)

    # --- writing ---------------------------------------------------------------------------------------------

    async def _reload(self) -> None:
        """Re-reads the resource (retrying while the API is unavailable: an error escaping here would end the
        runner, and nothing would restart it until the resource changed). If it is gone (or re-created under the
        same name: that one has a runner of its own) while a request of ours may run, follow it as a ghost."""
        try:
            body = await until_available(
                lambda: self.deps.kube.get_reinstall(self.namespace, self.name),
                what="re-reading the resource",
                log=self.log,
            )
        except NotFound:
            body = None
        if body is None or (body.get("metadata") or {}).get("uid") != self.uid:
            if holds(self.status) or self._learnt is not None:
                self.become_ghost()
                return
            raise Gone()
        self.body = body
        self.deps.note(body)

    async def _set_finalizer(self, basis: Mapping, *, held: bool, errors_raise: bool = False) -> bool:
        """Adds or removes our finalizer, conditionally on `basis` like every write. False when the resource moved
        meanwhile (it was re-read: decide again). Another refusal (forbidden...) is raised with `errors_raise`,
        else waited out here."""
        meta = basis.get("metadata") or {}
        others = [f for f in meta.get("finalizers") or () if f != FINALIZER]
        wanted = [*others, FINALIZER] if held else others
        rv = str(meta.get("resourceVersion") or "")
        try:
            updated = await until_available(
                lambda: self.deps.kube.set_finalizers(self.namespace, self.name, wanted, resource_version=rv),
                what="adding the finalizer" if held else "removing the finalizer",
                log=self.log,
            )
        except Conflict:
            await self._reload()
            return False
        except NotFound:
            await self._reload()  # gone: Gone, or a ghost if a request of it may run
            return False
        except KubeError as exc:  # forbidden (RBAC without patch on ecsreinstalls?), invalid...
            if errors_raise:
                raise
            delay = self._backoff()
            self.log.error(
                "%s the finalizer %s failed (%s); the operator needs the patch verb on ecsreinstalls; "
                "trying again in %.0fs",
                "adding" if held else "removing",
                FINALIZER,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            await self._reload()
            return False
        if not held and is_deleting(updated):
            # Its last finalizer gone, the object was deleted as it was stored: the answer still lists ours.
            meta = updated.setdefault("metadata", {})
            meta["finalizers"] = [f for f in meta.get("finalizers") or () if f != FINALIZER]
        if self.ghost:  # deleted while the write was on its way: nothing more to learn from it
            return True
        self.body = updated
        self.deps.note(updated)
        return True

    async def _apply(self, transition: rc.Transition, basis: Mapping) -> bool:
        """Writes the status, conditionally on `basis` (the version the transition was decided from: same uid,
        same resourceVersion), then posts the Event. False on a conflict: the resource was re-read, and the caller
        decides again. Retries while the API is unavailable. A ghost writes nothing: it keeps the status in
        memory only."""
        if transition.patch and self.ghost:
            self.body = _merged(self.body, transition.patch)
        elif transition.patch:
            old_phase = rc.phase_of(basis.get("status"))
            rv = str((basis.get("metadata") or {}).get("resourceVersion") or "")
            try:
                updated = await until_available(
                    lambda: self.deps.kube.patch_status(
                        self.namespace, self.name, transition.patch, resource_version=rv, uid=self.uid
                    ),
                    what="writing the status",
                    log=self.log,
                )
            except NotFound:
                if self._learnt is not None or rc.next_step(basis.get("status")) != rc.Step.PREPARE:
                    # deleted while a request of ours may run: the supervisor's DELETED event may not be here
                    # yet; follow the request to its end
                    self.become_ghost()
                    self.body = _merged(basis, transition.patch)
                    return True
                raise Gone() from None
            except Conflict:
                self.log.info("the resource changed since it was read; deciding again")
                await self._reload()
                return False
            except KubeError as exc:  # forbidden, invalid...: keep what was learnt, try again later
                delay = self._backoff()
                self.log.error("writing the status failed (%s); deciding again in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                await self._reload()
                return False
            self._learnt = None
            self.body = updated
            self.deps.note(updated)
            self.deps.metrics.finished_now(old_phase, self.status, self.deps.now())
            message = str(self.status.get("message") or "")
            phase = str(self.status.get("phase") or "")
            self.log.info("%s", message if message.startswith(phase) else f"{phase}: {message}")
        if transition.event is not None and not self.ghost:
            self.deps.post_event(self.body, transition.event)
        return True


class _NoLog:
    """The action log cannot tell (unavailable, or the attempt's time in the cloud's clock is unknown)."""


NO_LOG = _NoLog()


def _token(attempt: Mapping) -> str | None:
    """The attempt's ID as the request's X-Client-Token, when it is a UUID (attempts before tokens were not)."""
    try:
        return str(uuid.UUID(str(attempt.get("id")))) if len(str(attempt.get("id"))) == 36 else None
    except ValueError:
        return None


def _merged(body: Mapping, patch: Mapping) -> dict:
    """`body` with the status merge patch applied in memory, as the API server would (a ghost's status)."""
    return {**body, "status": _merge_patch(body.get("status") or {}, patch)}


def _merge_patch(target: object, patch: object) -> object:
    """RFC 7386: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."


class Supervisor:
    """One runner per live resource, fed by the watch stream; runners run only while this process leads."""

    def __init__(
        self,
        deps: Deps,
        *,
        list_all: Callable[[], Awaitable[tuple[list[dict], int]]] | None = None,
    ):
        self.deps = deps
        self.leading = False
        # How `lead` lists every watched resource, with the list's resourceVersion (Kube.list_reinstalls_at).
        self._list_all = list_all
        self._runners: dict[str, tuple[Runner, asyncio.Task]] = {}
        # uid -> newest resourceVersion seen or written: under load kopf delivers events seconds late, and a late
        # event must never restart a runner that has already moved the resource further (or finished it).
        self._newest: dict[str, int] = {}
        self._resyncing: asyncio.Task | None = None
        # uids seen deleted (the newest few thousand): a LIST answer or a watch event older than the deletion
        # must never bring one back to life.
        self._tombstones: OrderedDict[str, None] = OrderedDict()
        # uid -> the task that deletes a finished resource once its spec.ttlSecondsAfterFinished has passed
        self._expiries: dict[str, asyncio.Task] = {}

    def prime(self, bodies: list[Mapping]) -> None:
        """Before any runner starts: learn which servers are held and what requests were made."""
        for body in bodies:
            self._note(body)

    def _note(self, body: Mapping) -> bool:
        """Records a version if it is the newest seen; False if it is stale."""
        uid = (body.get("metadata") or {}).get("uid")
        if not uid or uid in self._tombstones:
            return False
        entry = self._runners.get(uid)
        # What the runner wrote counts too, even when it has just ended and its done-callback has not run yet.
        if entry is not None:
            self._newest[uid] = max(self._newest.get(uid, 0), _rv(entry[0].body))
        if _rv(body) < self._newest.get(uid, 0):
            return False
        self._newest[uid] = _rv(body)
        self.deps.note(body)
        return True

    def observe(self, event_type: str | None, body: Mapping) -> None:
        body = lean(body)  # it may be kept (the newest version of a resource in flight)
        meta = body.get("metadata", {})
        uid = meta.get("uid")
        if not uid:
            return
        entry = self._runners.get(uid)
        if event_type == "DELETED" or (is_deleting(body) and not has_finalizer(body)):
            self._deleted(uid, body, entry)
            return
        if not self._note(body):
            return  # stale: a newer version was already seen or written
        self._schedule_expiry(body)
        if entry is not None and not entry[1].done():
            entry[0].observe(body)
            return
        if self.leading and _has_work(body):
            self._start(Runner(self.deps, body))

    def _deleted(self, uid: str, body: Mapping, entry: tuple[Runner, asyncio.Task] | None) -> None:
        if uid not in self._newest and entry is None:
            return  # never seen, or already handled
        if is_deleting(body) and self._note(body) and entry is not None:
            entry[0].observe(body)
        self._newest.pop(uid, None)
        expiry = self._expiries.pop(uid, None)
        if expiry is not None:
            expiry.cancel()
        self._tombstones[uid] = None
        if len(self._tombstones) > TOMBSTONES:
            self._tombstones.popitem(last=False)
        ghost_body = self.deps.ownership.deleted(uid)
        self.deps.forget(uid)
        running = entry is not None and not entry[1].done()
        if ghost_body is None:
            if running:
                entry[1].cancel()
            return
        if running:
            entry[0].become_ghost()
        elif self.leading:
            self._start_ghost(ghost_body)

    def _start(self, runner: Runner) -> None:
        task = asyncio.create_task(runner.run(), name=f"reinstall:{runner.namespace}/{runner.name}")
        self._runners[runner.uid] = (runner, task)
        task.add_done_callback(lambda t, uid=runner.uid: self._finished(uid, t))

    def _start_ghost(self, body: Mapping) -> None:
        runner = Runner(self.deps, copy.deepcopy(dict(body)), ghost=False)
        runner.become_ghost()
        self._start(runner)

    def _finished(self, uid: str, task: asyncio.Task) -> None:
        entry = self._runners.get(uid)
        if entry is not None and entry[1] is task:
            del self._runners[uid]
            if not task.cancelled() and uid in self._newest:  # cancelled: deleted or stepping down
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

    async def lead(self) -> None:
        """This process leads from now on: runners start for what the watch brings, and for every unfinished
        resource of a fresh LIST; the LIST is taken again every `RESYNC_SECONDS` while leading."""
        self.leading = True
        self.deps.metrics.working = True
        await self.resync()
        if self.leading and self._list_all is not None and self._resyncing is None:
            self._resyncing = asyncio.create_task(self._resync_forever(), name="resync")

    async def resync(self) -> None:
        """A fresh LIST against what the watch has told: the watch may lag, and a resource deleted unseen (between
        the start-up LIST and the watch, say) must not hold its server forever; one deleted while holding its
        server is followed as a ghost. Unfinished resources without a runner get one."""
        if self._list_all is None:
            return
        bodies, listed_at = await until_available(self._list_all, what="listing EcsReinstalls", log=logger)
        if not self.leading:
            return  # stepped down while listing
        bodies = [body for body in bodies if self._note(body) or body["metadata"]["uid"] in self._newest]
        self.deps.ownership.replace_all(bodies, listed_at)
        listed = {body["metadata"]["uid"] for body in bodies}
        # gone before the LIST without a DELETED event (a watch gap): what was learnt of them goes too (metrics)
        for uid in [u for u, rv in self._newest.items() if u not in listed and rv <= listed_at]:
            if uid not in self._runners:
                self._newest.pop(uid, None)
                self.deps.forget(uid)
        for uid, (runner, task) in list(self._runners.items()):
            if uid not in listed and not runner.ghost and _rv(runner.body) <= listed_at:
                task.cancel()  # its resource is gone and no request of it runs (else it would be a ghost)
        for body in bodies:
            uid = body["metadata"]["uid"]
            self._schedule_expiry(body)
            if uid not in self._runners and _has_work(body):
                if _rv(body) >= self._newest.get(uid, 0):
                    self._start(Runner(self.deps, body))
        for body in self.deps.ownership.ghosts():
            if body["metadata"]["uid"] not in self._runners:
                self._start_ghost(body)

    async def _resync_forever(self) -> None:
        while self.leading:
            await asyncio.sleep(RESYNC_SECONDS)
            try:
                await self.resync()
            except KubeError as exc:  # forbidden, or another answer that may pass: try again next time
                logger.warning("resync failed (%s); trying again in %ss", exc, RESYNC_SECONDS)

    # --- spec.ttlSecondsAfterFinished ---------------------------------------------------------------------------

    def _schedule_expiry(self, body: Mapping) -> None:
        """A finished resource with a TTL is deleted once it has passed (by the leader only)."""
        uid = body["metadata"]["uid"]
        at = rc.expires_at(body.get("status"), (body.get("spec") or {}).get("ttlSecondsAfterFinished"))
        if not self.leading or at is None or uid in self._expiries:
            return
        delay = max(0.0, (at - self.deps.now()).total_seconds())
        meta = body["metadata"]
        task = asyncio.create_task(
            self._expire(uid, meta["namespace"], meta["name"], delay),
            name=f"ttl:{meta['namespace']}/{meta['name']}",
        )
        self._expiries[uid] = task
        task.add_done_callback(
            lambda t, uid=uid: self._expiries.pop(uid, None) if self._expiries.get(uid) is t else None
        )

    async def _expire(self, uid: str, namespace: str, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        log = logging.LoggerAdapter(logger, {"k8s_ref": {"namespace": namespace, "name": name, "uid": uid}})
        while True:
            try:
                body = await until_available(
                    lambda: self.deps.kube.get_reinstall(namespace, name),
                    what="re-reading the resource",
                    log=log,
                )
            except NotFound:
                return
            if body["metadata"]["uid"] != uid:
                return  # re-created under the same name: that one has its own TTL
            spec = body.get("spec") or {}
            at = rc.expires_at(body.get("status"), spec.get("ttlSecondsAfterFinished"))
            if at is None:
                return  # no longer finished (a status moved back by hand): its runner sees to it
            left = (at - self.deps.now()).total_seconds()
            if left > 0:
                await asyncio.sleep(left)
                continue
            rv = str(body["metadata"]["resourceVersion"])
            try:
                await until_available(
                    lambda rv=rv: self.deps.kube.delete_reinstall(
                        namespace, name, uid=uid, resource_version=rv
                    ),
                    what="deleting the finished resource",
                    log=log,
                )
            except NotFound:
                return
            except Conflict:
                continue  # changed meanwhile: decide again from what is there now
            except KubeError as exc:  # forbidden (no delete verb?): say so, do not retry in a loop
                log.error("deleting it after spec.ttlSecondsAfterFinished failed (%s)", exc)
                return
            log.info(
                "deleted: finished at %s, spec.ttlSecondsAfterFinished %ss",
                (body.get("status") or {}).get("completedAt"),
                spec.get("ttlSecondsAfterFinished"),
            )
            return

    def _cancel_expiries(self) -> None:
        for task in list(self._expiries.values()):
            task.cancel()
        self._expiries.clear()

    def step_down(self) -> None:
        """Stops every runner at once (leadership lost): nothing more is written or sent by this process."""
        self.leading = False
        self.deps.metrics.working = False
        self._cancel_expiries()
        if self._resyncing is not None:
            self._resyncing.cancel()
            self._resyncing = None
        for _, task in list(self._runners.values()):
            task.cancel()

    @property
    def active(self) -> int:
        return len(self._runners)

    async def stop(self) -> None:
        """A graceful stop (SIGTERM, a rolling update): every runner stops at once, except those whose POST is on
        its way; they get up to GRACEFUL_POST_SECONDS to write its answer (the job ID), so that the next leader
        follows the job instead of reading the outcome from the server. Losing the lease stops everything at
        once instead (`step_down`)."""
        self.leading = False
        self._cancel_expiries()
        if self._resyncing is not None:
            self._resyncing.cancel()
            self._resyncing = None
        tasks = [task for _, task in self._runners.values()]
        sending = []
        for runner, task in self._runners.values():
            runner.stopping = True
            if runner.sending:
                sending.append(task)
            else:
                task.cancel()
        if sending:
            _, late = await asyncio.wait(sending, timeout=GRACEFUL_POST_SECONDS)
            for task in late:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
