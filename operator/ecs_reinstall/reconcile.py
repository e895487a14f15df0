"""The reinstall state machine: every decision of the operator, as pure functions.

Phases: Pending -> Submitting -> Reinstalling -> Succeeded | Failed.

The runner (`runner.py`) asks `next_step(status)` what to do, performs that step's I/O, and hands what it learned
to one of the `on_*` functions here. Each returns a `Transition`: the status to write (a merge patch of `status`),
the Event to post, and when to look again. Nothing here reads a clock, a Secret or the network: `now` and the
facts come in as arguments, so every rule is table-tested.

Exactly one accepted reinstall per resource rests on four rules:
1. the intent (`status.attempt`, phase Submitting) is written before the POST; like every status write, it is
   conditional on the resourceVersion the decision was made from (see runner.Runner._apply);
2. the job ID is written right after the POST;
3. a resource whose POST outcome is unknown (crash, timeout, dropped connection, 5xx) is never re-sent blindly:
   `on_outcome_probe` decides from the server's state and `updated` time whether the cloud took it;
4. status is monotonic: the step follows from the request facts in the status (`attempt`, `jobId`,
   `submittedAt`, `unconfirmedAttempt`), never from the phase alone, and facts lost by a hand edit are put back
   (`regression`). Once an attempt exists, every later status names it: a refused one stays as
   `attempt.refused`, one judged not taken as `unconfirmedAttempt`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from . import conditions as cond
from . import witnesses
from .cloud.models import InstanceAction, Job, JobStatus, Server


class Phase(enum.StrEnum):
    PENDING = "Pending"
    SUBMITTING = "Submitting"
    REINSTALLING = "Reinstalling"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def is_terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class Step(enum.StrEnum):
    PREPARE = "prepare"  # check the spec, resolve Secrets, check the server, write the intent, submit
    PROBE_OUTCOME = "probe-outcome"  # a POST with an unknown outcome: ask the server whether it was taken
    POLL_JOB = "poll-job"
    POLL_SERVER = "poll-server"  # accepted, but the job ID was lost: follow the server's state
    # Failed by the timeout while the job still ran: keep reading it, slowly, to record how it ended.
    FOLLOW_AFTER_TIMEOUT = "follow-after-timeout"
    DONE = "done"


class Reason(enum.StrEnum):
    """Condition reasons and `status.failure.code` values of the operator's own making."""

    PENDING = "Pending"
    WAITING_FOR_INPUT = "WaitingForInput"
    SERVER_BUSY = "ServerBusy"
    THROTTLED = "Throttled"
    CLOUD_UNAVAILABLE = "CloudUnavailable"
    SUBMITTING = "Submitting"
    OUTCOME_UNKNOWN = "OutcomeUnknown"
    REINSTALLING = "Reinstalling"
    ACCEPTED = "Accepted"
    SUCCEEDED = "Succeeded"
    # Job ID lost after the cloud took the request: success read from the server's state, not from the job.
    SUCCEEDED_INFERRED = "SucceededFromServerState"
    # Job ID lost, and the server settled without the new launch time a finished reinstall gives it.
    FAILED_INFERRED = "FailedFromServerState"
    # Job ID lost or its record expired: the outcome read from the server's action log (its rebuild action).
    SUCCEEDED_FROM_ACTION_LOG = "SucceededFromActionLog"
    FAILED_FROM_ACTION_LOG = "FailedFromActionLog"
    INVALID_SPEC = "InvalidSpec"
    JOB_FAILED = "JobFailed"
    CLOUD_ERROR = "CloudError"
    SERVER_NOT_READY = "ServerNotReady"
    TIMEOUT = "Timeout"
    # Someone moved the status backwards (by hand, or a stale writer): the facts were put back, nothing re-sent.
    STATUS_REGRESSED = "StatusRegressed"
    # The cloud refused the credentials before anything was submitted: wait for the Secret to be fixed.
    INVALID_CREDENTIALS = "InvalidCredentials"
    # A Secret or ConfigMap holds a value that cannot work (a password breaking the rules, user data too large, a
    # malformed projectId) or the operator's defaults lack one: wait for it to be fixed where it is.
    INVALID_INPUT = "InvalidInput"
    # failure.code of a resource that waited past spec.pendingTimeoutSeconds (its Stalled reason: the last wait's)
    PENDING_TIMEOUT = "PendingTimeout"
    # Tenancy (tenancy.py) refused the resource: default credentials its namespace may not use, or a server tagged
    # for another namespace. failure.code says which.
    FORBIDDEN = "Forbidden"
    # The server already carries spec.revisionTag (its EcsReinstallSet's revision was done): nothing was sent.
    ALREADY_AT_REVISION = "AlreadyAtRevision"


# Server states in which a job-less reinstall (job ID lost) is taken as finished.
_SETTLED_STATES = frozenset({"ACTIVE", "SHUTOFF"})


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    patch: dict = field(default_factory=dict)  # merge patch for `status`; empty: nothing to write
    event: Event | None = None
    delay: float | None = None  # seconds until the next step; None: go on at once (or stop when terminal)


@dataclass(frozen=True)
class Context:
    """Facts about the resource that every transition needs."""

    generation: int
    now: datetime
    poll_interval: float = 10.0
    timeout: float = 1800.0
    # creation + spec.pendingTimeoutSeconds: a resource still waiting then, never submitted, fails
    pending_deadline: datetime | None = None


def timestamp(moment: datetime) -> str:
    """RFC 3339 UTC, second precision, as Kubernetes writes its own times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_timestamp(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as the ECS API writes job and server times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def phase_of(status: Mapping | None) -> Phase | None:
    try:
        return Phase((status or {}).get("phase"))
    except ValueError:
        return None


def live_attempt(status: Mapping | None) -> Mapping | None:
    """The attempt whose request may have reached the cloud (None when there is none, or it was refused)."""
    attempt = (status or {}).get("attempt") or None
    return attempt if attempt and not attempt.get("refused") else None


def next_step(status: Mapping | None) -> Step:
    """What to do, from the request facts in the status (never from the phase alone, which a hand edit can move
    back): a job ID means poll it; an accepted request without one means follow the server; a live attempt
    without an answer means probe; nothing may have been sent: prepare."""
    status = status or {}
    phase = phase_of(status)
    if phase is not None and phase.is_terminal:
        return Step.FOLLOW_AFTER_TIMEOUT if still_running_after_timeout(status) else Step.DONE
    if status.get("jobId"):
        return Step.POLL_JOB
    attempt = live_attempt(status)
    if attempt and "jobId" in status and status.get("submittedAt"):
        return Step.POLL_SERVER  # taken, job ID lost ("")
    if attempt:
        return Step.PROBE_OUTCOME
    return Step.PREPARE


def expires_at(status: Mapping | None, ttl: object) -> datetime | None:
    """When a finished resource with spec.ttlSecondsAfterFinished is to be deleted: `ttl` seconds after its end was
    recorded (the latest condition change, by the operator's clock; completedAt is the cloud's end of the job,
    which the operator learns only at its next poll, so counting from it could delete a resource the moment it
    shows Succeeded). None while it is not finished (a job still followed after a Timeout counts as not finished),
    without a TTL, or without a time to count from."""
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0 or next_step(status) != Step.DONE:
        return None
    status = status or {}
    times = [parse_timestamp(c.get("lastTransitionTime")) for c in status.get("conditions") or ()]
    times.append(parse_timestamp(status.get("completedAt")))
    recorded = max((t for t in times if t is not None), default=None)
    return recorded + timedelta(seconds=ttl) if recorded else None


def needs_finalizer(status: Mapping | None) -> bool:
    """True while a request of the resource may be on its way to the cloud: an attempt without an answer. Its
    deletion must wait until the answer (or the proof that there was none) is written, for the status is where
    another operator process, or this one after a restart, learns that the server is held; a request that arrives
    after its resource is gone would otherwise be taken for the next resource's. Once the cloud has answered, its
    record of the request (job, action log) predates anything a resource created later can do."""
    return next_step(status) == Step.PROBE_OUTCOME


# --- monotonic status: facts put back --------------------------------------------------------------------------

FACTS = ("attempt", "jobId", "submittedAt", "unconfirmedAttempt")
_PHASE_RANK = {Phase.PENDING: 0, Phase.SUBMITTING: 1, Phase.REINSTALLING: 2}


def facts(status: Mapping | None) -> dict:
    """The request facts a status records (absent ones left out)."""
    status = status or {}
    return {key: status[key] for key in FACTS if status.get(key) is not None}


def remember(known: Mapping | None, status: Mapping | None) -> dict:
    """The newest request facts seen for one resource, from its statuses in resourceVersion order: what a status
    that lost them must be given back. A new attempt replaces the facts of the one before."""
    known = dict(known or {})
    seen = facts(status)
    new_id = (seen.get("attempt") or {}).get("id")
    if new_id and new_id != (known.get("attempt") or {}).get("id"):
        known = {k: v for k, v in known.items() if k == "unconfirmedAttempt"}
    known.update(seen)
    if seen.get("jobId") is not None and "unconfirmedAttempt" not in seen:
        known.pop("unconfirmedAttempt", None)  # a later request was accepted: the earlier one is moot
    return known


def _referenced_ids(status: Mapping) -> set[str]:
    return {
        str(ref["id"])
        for ref in (status.get("attempt"), status.get("unconfirmedAttempt"))
        if isinstance(ref, Mapping) and ref.get("id")
    }


def implied_phase(status: Mapping) -> Phase:
    """The phase the request facts imply."""
    step = next_step({k: v for k, v in status.items() if k != "phase"})
    if step in (Step.POLL_JOB, Step.POLL_SERVER):
        return Phase.REINSTALLING
    return Phase.SUBMITTING if step == Step.PROBE_OUTCOME else Phase.PENDING


def regression(status: Mapping | None, known: Mapping | None) -> dict | None:
    """The fields to write back when `status` went backwards, else None. Backwards means: it no longer names the
    newest attempt this process has seen for the resource (its facts were removed), or its phase is behind what
    its own facts say (`phase: Pending` beside a job ID)."""
    status = status or {}
    phase = phase_of(status)
    if phase is not None and phase.is_terminal:
        return None
    restored: dict = {}
    known = known or {}
    known_id = (known.get("attempt") or {}).get("id")
    if known_id and str(known_id) not in _referenced_ids(status):
        restored = {k: v for k, v in known.items() if k in FACTS and status.get(k) is None}
    elif known_id and (status.get("attempt") or {}).get("id") == known_id:
        # the attempt is still named, but its answer was removed (a job ID nulled by hand)
        restored = {k: known[k] for k in ("jobId", "submittedAt") if k in known and status.get(k) is None}
    effective = {**status, **restored}
    implied = implied_phase(effective)
    behind = _PHASE_RANK.get(phase or Phase.PENDING, 0) < _PHASE_RANK[implied]
    if not restored and not behind:
        return None
    return restored


# --- building the status ---------------------------------------------------------------------------------------


def _conditions(phase: Phase, reason: str, message: str, *, submitted: bool | None) -> list[cond.Condition]:
    done = phase.is_terminal
    if submitted is None:
        submitted_c = cond.Condition(
            cond.SUBMITTED, None, Reason.OUTCOME_UNKNOWN, "the outcome is being checked"
        )
    elif submitted:
        submitted_c = cond.Condition(
            cond.SUBMITTED, True, Reason.ACCEPTED, "the cloud accepted the reinstall"
        )
    else:
        submitted_c = cond.Condition(
            cond.SUBMITTED, False, reason, "not submitted yet" if not done else message
        )
    return [
        cond.Condition(cond.READY, phase == Phase.SUCCEEDED, reason, message),
        cond.Condition(
            cond.RECONCILING, not done, reason if not done else phase.value, "" if done else message
        ),
        cond.Condition(
            cond.STALLED,
            phase == Phase.FAILED,
            reason if phase == Phase.FAILED else phase.value,
            message if phase == Phase.FAILED else "",
        ),
        submitted_c,
    ]


def _status(
    ctx: Context,
    old: Mapping,
    phase: Phase,
    reason: str,
    message: str,
    *,
    submitted: bool | None,
    **fields: object,
) -> dict:
    """A full status merge patch: phase, message, conditions, observedGeneration, plus `fields`.
    Fields absent from `fields` keep their value; pass None to clear one."""
    patch: dict = {
        "phase": phase.value,
        "message": message,
        "observedGeneration": ctx.generation,
        "conditions": cond.merge(
            old.get("conditions"),
            _conditions(phase, reason, message, submitted=submitted),
            generation=ctx.generation,
            now=timestamp(ctx.now),
        ),
    }
    patch.update(fields)
    return patch


def _failed(
    ctx: Context,
    status: Mapping,
    reason: str,
    message: str,
    *,
    code: str,
    cause: str | None = None,
    submitted: bool | None,
    event_reason: str | None = None,
    completed: datetime | None = None,
    **fields: object,
) -> Transition:
    """Every terminal failure: phase Failed, Stalled=True with `reason`, `failure` = (code, cause or message).
    The spec is immutable, so every terminal message ends by saying that a new EcsReinstall is the way on."""
    cause = cause or message
    if "new EcsReinstall" not in message:
        message = message.rstrip(". ") + ". The spec cannot change: create a new EcsReinstall with the fix"
    patch = _status(
        ctx,
        status,
        Phase.FAILED,
        reason,
        message,
        submitted=submitted,
        failure={"code": str(code), "reason": cause},
        completedAt=timestamp(completed or ctx.now),
        **fields,
    )
    # Event reasons are condition reasons (one vocabulary, README "Events"); the cloud's code is in the message
    return Transition(patch=patch, event=Event("Warning", event_reason or reason, message))


def _unchanged(old: Mapping, patch: Mapping) -> bool:
    """True when writing `patch` would change nothing a reader can see (conditions compared without times)."""
    for key, value in patch.items():
        if key == "conditions":
            strip = lambda cs: [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in cs or ()]  # noqa: E731
            if strip(old.get("conditions")) != strip(value):
                return False
        elif old.get(key) != value:
            return False
    return True


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Jittered exponential backoff for waiting: between half and all of min(cap, base * 2**attempt)."""
    ceiling = min(cap, base * (2 ** max(0, attempt)))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def poll_delay(interval: float, rng: random.Random | None = None) -> float:
    """The next poll in 80–100% of the interval: jitter spreads a fleet out without ever polling later than asked."""
    return interval * (0.8 + 0.2 * (rng or random).random())


# --- Pending -----------------------------------------------------------------------------------------------------


def on_invalid(ctx: Context, status: Mapping, message: str, *, code: str = Reason.INVALID_SPEC) -> Transition:
    """The spec can never work, or the server cannot be reinstalled as it is (a cloud code such as Ecs.0100, kept
    in failure.code; the condition and Event reason is then ServerNotReady): terminal, saying what to fix."""
    reason = code if code in Reason.__members__.values() else Reason.SERVER_NOT_READY
    return _failed(ctx, status, reason, message, code=code, submitted=False, waitingFor=None)


def on_forbidden(ctx: Context, status: Mapping, code: str, message: str) -> Transition:
    """A tenancy refusal (tenancy.Forbidden): terminal, nothing sent; failure.code names the rule."""
    return _failed(ctx, status, Reason.FORBIDDEN, message, code=code, submitted=False, waitingFor=None)


def on_wait(
    ctx: Context, status: Mapping, reason: Reason, waiting_for: str, message: str, delay: float
) -> Transition:
    """Something is missing or busy: stay Pending, say what we wait for, look again after `delay`. Past the
    pending deadline (spec.pendingTimeoutSeconds) a resource that never had a request taken fails instead."""
    # never while an earlier request judged not taken (unconfirmedAttempt) may yet be processed late
    never_taken = (
        not status.get("submittedAt") and "jobId" not in status and not status.get("unconfirmedAttempt")
    )
    if ctx.pending_deadline is not None and never_taken:
        left = (ctx.pending_deadline - ctx.now).total_seconds()
        if left <= 0:
            return _failed(
                ctx,
                status,
                reason,
                f"Nothing was submitted within spec.pendingTimeoutSeconds; the last wait: {message}",
                code=Reason.PENDING_TIMEOUT,
                submitted=False,
                waitingFor=None,
            )
        delay = min(delay, max(1.0, left))
    patch = _status(ctx, status, Phase.PENDING, reason, message, submitted=False, waitingFor=waiting_for)
    if _unchanged(status, patch):
        return Transition(delay=delay)
    first_time = status.get("waitingFor") != waiting_for
    event = (
        Event("Normal" if reason == Reason.THROTTLED else "Warning", str(reason), message)
        if first_time
        else None
    )
    return Transition(patch=patch, event=event, delay=delay)


# What the resolver says when a host name does not exist (glibc, musl, macOS, aiohttp/httpx wording).
_NO_SUCH_HOST = (
    "name or service not known",
    "nodename nor servname",
    "no address associated",
    "name resolution",
    "getaddrinfo failed",
    "name does not resolve",
)


def unreachable_hint(error: str) -> str:
    """A hint for a cloud that cannot be reached because its host does not exist: a mistyped region."""
    if any(words in error.lower() for words in _NO_SUCH_HOST):
        return "; that host does not exist: check spec.region / spec.endpoint or the operator's --region"
    return ""


def server_blocker(server: Server, *, stop_server: bool) -> tuple[str, str] | None:
    """Why the cloud would refuse to reinstall this server now: (code, message), or None when it can go.
    Busy is not here: it is a reason to wait, not to fail."""
    if not server.has_system_disk:
        return "Ecs.0105", f"server {server.id} has no system disk; the reinstall needs one"
    if server.locked:
        return "Ecs.0605", f"server {server.id} is locked; unlock it, then create a new EcsReinstall"
    if server.status == "ACTIVE" and not stop_server:
        return "Ecs.0100", (
            f"server {server.id} is running: create a new EcsReinstall with spec.stopServer: true to let the "
            "cloud stop it, or stop the server first and create a new EcsReinstall"
        )
    if server.status not in ("ACTIVE", "SHUTOFF"):
        return Reason.SERVER_NOT_READY, (
            f"server {server.id} is {server.status}; a reinstall needs it ACTIVE or SHUTOFF"
        )
    return None


def new_attempt(
    attempt_id: str, server: Server, api: str, now: datetime, cloud_now: datetime | None = None
) -> dict:
    """The intent's record. `cloud_now`: the earliest the cloud's clock can read now (from its Date headers),
    against which its action log is compared by any process, whatever that process's own clock says."""
    return {
        "id": attempt_id,
        "startedAt": precise_timestamp(now),
        "cloudStartedAt": precise_timestamp(cloud_now) if cloud_now else None,
        "serverUpdatedBefore": precise_timestamp(server.updated) if server.updated else None,
        "serverLaunchedBefore": precise_timestamp(server.launched_at) if server.launched_at else None,
        "serverStatusBefore": server.status,
        "api": api,
    }


def whole_attempt(attempt: Mapping) -> dict:
    """An attempt as a merge patch that replaces the one in the status, rather than merging into it: a key the
    new one lacks (`refused`) must not survive from the old one."""
    return {"refused": None, **attempt}


def on_intent(
    ctx: Context,
    status: Mapping,
    attempt: Mapping,
    server_id: str,
    *,
    image_before: str | None = None,
    image: str | None = None,
    credentials: str | None = None,
) -> Transition:
    """Written just before the POST (conditionally, like every write): if we die after this, the next runner
    probes. `image_before`: the server's image as just read; `image`: the one a change of OS moves it to;
    `credentials`: where the credentials come from (a Secret's name, never its content)."""
    if image:
        message = f"Submitting the change of server {server_id}'s OS to image {image}"
    else:
        message = f"Submitting the reinstall of server {server_id}"
    if credentials:
        message += f" with the credentials of {credentials}"
    images = {"imageBefore": image_before} if image_before else {}
    patch = _status(
        ctx,
        status,
        Phase.SUBMITTING,
        Reason.SUBMITTING,
        message,
        submitted=False,
        attempt=whole_attempt(attempt),
        waitingFor=None,
        failure=None,
        **images,
    )
    # No Event: the Submitted one follows within the second, with the job ID (Events cost a write each).
    return Transition(patch=patch)


def on_already_at_revision(ctx: Context, status: Mapping, server_id: str, tag: tuple[str, str]) -> Transition:
    """The server's tag records that this revision was done already (by a set, a re-created one, another
    cluster): Succeeded without a request."""
    message = (
        f"Server {server_id} already carries the tag {tag[0]}={tag[1]} (spec.revisionTag): this revision was done "
        "already; nothing was sent"
    )
    patch = _status(
        ctx,
        status,
        Phase.SUCCEEDED,
        Reason.ALREADY_AT_REVISION,
        message,
        submitted=False,
        completedAt=timestamp(ctx.now),
        waitingFor=None,
    )
    return Transition(patch=patch, event=Event("Normal", str(Reason.ALREADY_AT_REVISION), message))


def with_revision_tag(transition: Transition, written: bool) -> Transition:
    """A success whose spec.revisionTag was (or could not be) written on the server: status.revisionTagged."""
    return replace(transition, patch={**transition.patch, "revisionTagged": written})


def with_image_after(transition: Transition, image_after: str | None) -> Transition:
    """A change of OS that just succeeded, with the image the server reports now (status.imageAfter)."""
    if not image_after:
        return transition
    return replace(transition, patch={**transition.patch, "imageAfter": image_after})


# --- Submitting --------------------------------------------------------------------------------------------------


def on_submitted(ctx: Context, status: Mapping, job_id: str) -> Transition:
    message = f"Reinstalling: cloud job {job_id} accepted"
    patch = _status(
        ctx,
        status,
        Phase.REINSTALLING,
        Reason.REINSTALLING,
        message,
        submitted=True,
        jobId=job_id,
        jobStatus=JobStatus.INIT.value,
        submittedAt=timestamp(ctx.now),
        unconfirmedAttempt=None,  # this one is accepted: the cloud refuses the earlier one while it runs
    )
    return Transition(
        patch=patch, event=Event("Normal", "Submitted", message), delay=poll_delay(ctx.poll_interval)
    )


def on_not_submitted(ctx: Context, status: Mapping, reason: Reason, message: str, delay: float) -> Transition:
    """The POST provably was not processed (throttled, busy, connection refused): back to Pending, retry later.
    The attempt stays in the status, marked refused, so that the status still names its latest attempt."""
    transition = on_wait(ctx, status, reason, "the cloud to accept the request", message, delay)
    attempt = status.get("attempt")
    if not attempt or attempt.get("refused"):
        return transition
    patch = transition.patch or _status(
        ctx,
        status,
        Phase.PENDING,
        reason,
        message,
        submitted=False,
        waitingFor="the cloud to accept the request",
    )
    return Transition(
        patch={**patch, "attempt": {**attempt, "refused": True}}, event=transition.event, delay=delay
    )


def on_invalid_credentials(ctx: Context, status: Mapping, secret: str, code: str, delay: float) -> Transition:
    """The cloud refused the credentials before anything was submitted: nothing can be sent until the Secret is
    fixed (or the policy granted), which happens outside the resource, so wait for it rather than fail."""
    message = (
        f"The cloud refused the credentials of {secret} ({code}); fix the accessKey/secretKey/securityToken "
        "there (or the account's permissions): the operator retries on its own"
    )
    return on_not_submitted(ctx, status, Reason.INVALID_CREDENTIALS, message, delay)


# The cloud's refusals of the X-Client-Token (the attempt's ID): what they mean for us. Each attempt sends its own
# new token once, so these point at a bug or at a cloud that treats tokens differently than documented.
TOKEN_REFUSALS = {
    "Ecs.0122": "the cloud saw this request's X-Client-Token before with other parameters; nothing was sent twice",
    "Ecs.0123": "the cloud did not take the request's X-Client-Token as a UUID",
    "Ecs.0124": "the cloud says the request's X-Client-Token expired (tokens live 8 hours)",
}


# The cloud's refusals of a request for something the user fixes outside the resource: nothing was started, so the
# resource waits for the fix (InvalidInput) and sends a new attempt then, rather than fail for good.
FIXABLE_OUTSIDE = {
    "Ecs.0314": "the key pair named by spec.keyName does not exist in that region and project: create it (or "
    "import it) in the cloud",
    "Ecs.0011": "the cloud refused the password (for example the Windows rule on three characters of "
    "'Administrator'): put another one in the Secret",
}


def on_submit_rejected(
    ctx: Context, status: Mapping, code: str, message: str, delay: float = 0.0
) -> Transition:
    """A terminal cloud error (4xx) on the POST: nothing was started. For what the user fixes outside the resource
    (FIXABLE_OUTSIDE), wait and try again after `delay`; else fail."""
    if code in FIXABLE_OUTSIDE:
        said = f": {message.strip().rstrip('.')}" if message and message.strip() else ""
        text = (
            f"Waiting for a fix: the cloud rejected the reinstall ({code}{said}): {FIXABLE_OUTSIDE[code]}. The "
            "resource goes on by itself once it is fixed"
        )
        return on_not_submitted(ctx, status, Reason.INVALID_INPUT, text, delay)
    text = f"The cloud rejected the reinstall: {message}"
    if code in TOKEN_REFUSALS:
        text += f" ({TOKEN_REFUSALS[code]}; create a new EcsReinstall to try again, and report it)"
    return _failed(
        ctx, status, Reason.CLOUD_ERROR, text, code=code or Reason.CLOUD_ERROR, cause=message, submitted=False
    )


def on_outcome_unknown(ctx: Context, status: Mapping, detail: str, delay: float) -> Transition:
    """The POST may or may not have been processed: keep the intent, probe the server before anything else.
    Written and announced once: repeated probes that learn nothing new change nothing."""
    message = (
        f"The reinstall request's outcome is unknown ({detail}); checking the server before anything else"
    )
    patch = _status(ctx, status, Phase.SUBMITTING, Reason.OUTCOME_UNKNOWN, message, submitted=None)
    if _unchanged(status, patch):
        return Transition(delay=delay)
    first_time = (cond.find(status.get("conditions"), cond.RECONCILING) or {}).get(
        "reason"
    ) != Reason.OUTCOME_UNKNOWN
    event = Event("Warning", "OutcomeUnknown", message) if first_time else None
    return Transition(patch=patch, event=event, delay=delay)


def probe_expired(ctx: Context, status: Mapping) -> bool:
    """An unknown outcome is probed for at most the resource's timeout, from the attempt's start."""
    started = parse_timestamp((status.get("attempt") or {}).get("startedAt"))
    return started is not None and (ctx.now - started).total_seconds() > ctx.timeout


def on_probe_gave_up(ctx: Context, status: Mapping, why: str) -> Transition:
    """The outcome of a request cannot be learnt (deadline passed, or the server is gone): fail, never re-send."""
    message = (
        f"Cannot tell whether the cloud took the reinstall request: {why}. Not re-sending, to never reinstall "
        "twice; check the server, then create a new EcsReinstall if needed"
    )
    return _failed(ctx, status, Reason.OUTCOME_UNKNOWN, message, code=Reason.OUTCOME_UNKNOWN, submitted=None)


def on_regressed(ctx: Context, status: Mapping, restored: Mapping) -> Transition:
    """The status went backwards (see `regression`): put the facts back, with the phase they imply, and say so.
    Nothing is submitted again: the next step follows the request the facts name."""
    effective = {**status, **restored}
    phase = implied_phase(effective)
    job = effective.get("jobId")
    doing = f"cloud job {job} runs" if job else "a reinstall request may have been sent"
    what = (
        "its request facts were removed"
        if restored
        else f"phase set back to {status.get('phase') or 'nothing'}"
    )
    message = (
        f"The status was moved backwards ({what}) while {doing}: restored, and nothing is submitted again. "
        "Status is written by the operator only"
    )
    patch = _status(
        ctx,
        status,
        phase,
        Reason.STATUS_REGRESSED,
        message,
        submitted=True if phase == Phase.REINSTALLING else None,
        **restored,
    )
    return Transition(patch=patch, event=Event("Warning", Reason.STATUS_REGRESSED, message))


class Verdict(enum.StrEnum):
    TAKEN = "taken"  # the cloud processed the request
    NOT_TAKEN = "not-taken"  # the server shows no trace of it after the settle time: safe to submit again
    UNDECIDED = "undecided"  # no trace yet, but too early to conclude
    UNDECIDABLE = "undecidable"  # no safe way to tell: fail rather than guess


def judge_outcome(attempt: Mapping, server: Server, now: datetime, settle_seconds: float) -> Verdict:
    """Was the POST of `attempt` processed? Decided from the server alone, never by re-sending.

    A reinstall moves the server to REBUILD with a rebuild task state and bumps its `updated` time; both outlast
    the request. Comparing `updated` with the value read before the POST needs no clock agreement with the cloud.
    """
    if server.rebuilding:
        return Verdict.TAKEN
    before = parse_timestamp(attempt.get("serverUpdatedBefore"))
    if before is None or server.updated is None:
        return Verdict.TAKEN if server.busy else Verdict.UNDECIDABLE
    if server.updated > before or relaunched(attempt, server):
        return Verdict.TAKEN
    started = parse_timestamp(attempt.get("startedAt")) or now
    if (now - started).total_seconds() < settle_seconds:
        return Verdict.UNDECIDED
    return Verdict.NOT_TAKEN


def relaunched(attempt: Mapping, server: Server) -> bool | None:
    """Did a reinstall finish on the server since `attempt` began? Its launch time moves only then (a failed
    one leaves it). None when either launch time is unknown, so nothing can be concluded."""
    before = parse_timestamp(attempt.get("serverLaunchedBefore"))
    if before is None or server.launched_at is None:
        return None
    return server.launched_at > before


def _taken_without_job_id(
    ctx: Context, status: Mapping, server: Server, attempt: Mapping, how: str
) -> Transition:
    """The cloud has the request but we have no job ID: follow the server's state against `attempt`'s record."""
    message = (
        f"Reinstalling: {how} (server {server.id} is {server.status}"
        f"{', ' + server.task_state if server.task_state else ''}) but its job ID was lost; "
        "following the server's state"
    )
    patch = _status(
        ctx,
        status,
        Phase.REINSTALLING,
        Reason.REINSTALLING,
        message,
        submitted=True,
        jobId="",
        submittedAt=timestamp(parse_timestamp(attempt.get("startedAt")) or ctx.now),
        attempt=whole_attempt(attempt),
        unconfirmedAttempt=None,
        waitingFor=None,
    )
    return Transition(
        patch=patch,
        event=Event("Normal", "Submitted", message),
        delay=0 if not server.busy else poll_delay(ctx.poll_interval),
    )


def on_late_acceptance(ctx: Context, status: Mapping, server: Server) -> Transition | None:
    """Before sending again after a request judged not taken: has the server changed since that request? Then
    the cloud processed it late (nothing else reinstalls a server we hold the lock of), so follow it instead of
    sending a second one. None: no earlier request, or no trace of it: go on."""
    earlier = status.get("unconfirmedAttempt")
    if not earlier:
        return None
    if judge_outcome(earlier, server, ctx.now, settle_seconds=0) != Verdict.TAKEN:
        return None
    return _taken_without_job_id(
        ctx, status, server, earlier, "the cloud processed the earlier request late, after all"
    )


def _not_taken(ctx: Context, status: Mapping, attempt: Mapping, evidence: str) -> Transition:
    """No trace of the request after the settle time: send again, keeping the request as unconfirmed in case the
    cloud processes it late after all."""
    message = f"The cloud shows no trace of the earlier request ({evidence}); submitting again"
    patch = _status(
        ctx,
        status,
        Phase.PENDING,
        Reason.PENDING,
        message,
        submitted=False,
        attempt=None,
        unconfirmedAttempt=dict(attempt),
    )
    return Transition(patch=patch, event=Event("Normal", "Resubmitting", message))


def on_action(
    ctx: Context, status: Mapping, attempt: Mapping, action: InstanceAction, *, how: str
) -> Transition:
    """The server's action log holds the rebuild our `attempt` made (found by `witnesses.rebuild_after`); `how`
    says why it is the witness (the job ID was lost, the job record expired...). It decides the outcome."""
    outcome, reason = witnesses.outcome_of(action)
    if outcome == witnesses.ActionOutcome.SUCCEEDED:
        message = f"Reinstalled: the server's action log shows rebuild {action.request_id} succeeded ({how})"
        patch = _status(
            ctx,
            status,
            Phase.SUCCEEDED,
            Reason.SUCCEEDED_FROM_ACTION_LOG,
            message,
            submitted=True,
            completedAt=timestamp(ctx.now),  # ours: the action's finish time is in the cloud's clock
            attempt=whole_attempt({**attempt, "requestId": action.request_id}),
        )
        return Transition(patch=patch, event=Event("Normal", "Succeeded", message))
    if outcome == witnesses.ActionOutcome.FAILED:
        message = (
            f"Reinstall failed: the server's action log shows rebuild {action.request_id} failed ({how}): "
            f"{reason}. Create a new EcsReinstall once the cause is fixed"
        )
        return _failed(
            ctx,
            status,
            Reason.FAILED_FROM_ACTION_LOG,
            message,
            code=Reason.FAILED_FROM_ACTION_LOG,
            cause=reason,
            submitted=True,
            attempt=whole_attempt({**attempt, "requestId": action.request_id}),
        )
    if timed_out(ctx, status):
        return on_timeout(ctx, status)
    if phase_of(status) == Phase.REINSTALLING and (status.get("attempt") or {}).get("requestId"):
        return Transition(delay=poll_delay(ctx.poll_interval))
    message = (
        f"Reinstalling: the server's action log shows rebuild {action.request_id} running ({how}); "
        "following it"
    )
    patch = _status(
        ctx,
        status,
        Phase.REINSTALLING,
        Reason.REINSTALLING,
        message,
        submitted=True,
        jobId=status.get("jobId") or "",
        submittedAt=status.get("submittedAt")
        or timestamp(parse_timestamp(attempt.get("startedAt")) or ctx.now),
        attempt=whole_attempt({**attempt, "requestId": action.request_id}),
        unconfirmedAttempt=None,
        waitingFor=None,
    )
    return Transition(
        patch=patch, event=Event("Normal", "Submitted", message), delay=poll_delay(ctx.poll_interval)
    )


def on_outcome_probe_actions(
    ctx: Context, status: Mapping, action: InstanceAction | None, *, settle_seconds: float, recheck: float
) -> Transition:
    """An unknown POST outcome decided by the action log: our rebuild there means taken (and maybe already
    ended); none after the settle time means not taken. A stop, start or rename by someone else meanwhile is not a
    rebuild, so it proves nothing either way."""
    attempt = status.get("attempt") or {}
    if action is not None:
        return on_action(
            ctx,
            status,
            attempt,
            action,
            how="the cloud took the request, but its answer with the job ID was lost",
        )
    started = parse_timestamp(attempt.get("startedAt")) or ctx.now
    if (ctx.now - started).total_seconds() < settle_seconds:
        return Transition(delay=recheck)
    return _not_taken(
        ctx, status, attempt, f"no rebuild in the server's action log after {settle_seconds:.0f}s"
    )


def on_outcome_probe(
    ctx: Context, status: Mapping, server: Server, *, settle_seconds: float, recheck: float
) -> Transition:
    attempt = status.get("attempt") or {}
    verdict = judge_outcome(attempt, server, ctx.now, settle_seconds)
    if verdict == Verdict.TAKEN:
        return _taken_without_job_id(ctx, status, server, attempt, "the cloud took the request")
    if verdict == Verdict.NOT_TAKEN:
        return _not_taken(ctx, status, attempt, f"server {server.id} unchanged after {settle_seconds:.0f}s")
    if verdict == Verdict.UNDECIDABLE:
        message = (
            f"Cannot tell whether the cloud took the reinstall of server {server.id}: the server reports "
            "no update time. Not re-sending, to never reinstall twice; check the server in the console "
            "and create a new EcsReinstall if needed"
        )
        return _failed(
            ctx, status, Reason.OUTCOME_UNKNOWN, message, code=Reason.OUTCOME_UNKNOWN, submitted=None
        )
    return Transition(delay=recheck)


# --- Reinstalling ------------------------------------------------------------------------------------------------


def timed_out(ctx: Context, status: Mapping, *, factor: float = 1.0) -> bool:
    started = parse_timestamp(status.get("submittedAt"))
    return started is not None and (ctx.now - started).total_seconds() > ctx.timeout * factor


_RUNNING_JOB_STATES = frozenset(
    {"", JobStatus.INIT.value, JobStatus.RUNNING.value, JobStatus.PENDING_PAYMENT.value}
)


def still_running_after_timeout(status: Mapping) -> bool:
    """Failed by the timeout, and the job (known by its ID) was last seen running."""
    return (
        phase_of(status) == Phase.FAILED
        and (status.get("failure") or {}).get("code") == Reason.TIMEOUT
        and bool(status.get("jobId"))
        and str(status.get("jobStatus") or "") in _RUNNING_JOB_STATES
    )


def job_read_deadline(ctx: Context, status: Mapping, delay: float) -> float:
    """Seconds from now by which a job followed through its server's state (cloud/looks.py) is read even if the
    server still looks busy: six poll intervals (a minute at least), or just past the timeout, never before
    `delay`. The server only tells when reading the job is worth a call; the job stays the witness."""
    cap = max(delay, 6 * ctx.poll_interval, 60.0)
    started = parse_timestamp(status.get("submittedAt"))
    if started is not None:
        to_timeout = (started - ctx.now).total_seconds() + ctx.timeout + 1
        cap = min(cap, max(delay, to_timeout))
    return cap


def after_timeout_delay(ctx: Context) -> float:
    """How often a job is read once its resource timed out: six poll intervals, at least a minute."""
    return max(60.0, 6 * ctx.poll_interval)


def on_job_after_timeout(
    ctx: Context, status: Mapping, job: Job | None, *, action: InstanceAction | None = None
) -> Transition:
    """The phase stays Failed (Timeout): the resource gave up waiting. What the job did later is recorded, and
    said in the message and an Event, so that nobody has to look it up. `job` None: its record can no longer
    be read (expired); the server's action log (`action`, our rebuild) may still tell how it ended; else
    following ends."""
    if job is None:
        outcome, reason = witnesses.outcome_of(action) if action is not None else (None, None)
        if outcome == witnesses.ActionOutcome.SUCCEEDED:
            job = Job(job_id=str(status.get("jobId")), job_type="", status=JobStatus.SUCCESS)
        elif outcome == witnesses.ActionOutcome.FAILED:
            job = Job(job_id=str(status.get("jobId")), job_type="", status=JobStatus.FAIL, fail_reason=reason)
        else:
            message = f"{status.get('message') or ''} Its record can no longer be read.".strip()
            return Transition(patch={"jobStatus": "UNKNOWN", "message": message})
    if not job.status.is_terminal:
        patch = {"jobStatus": job.status.value}
        delay = after_timeout_delay(ctx)
        return Transition(delay=delay) if _unchanged(status, patch) else Transition(patch=patch, delay=delay)
    ended = f" at {precise_timestamp(job.end_time)}" if job.end_time else ""
    how = "succeeded" if job.status == JobStatus.SUCCESS else "failed: " + ": ".join(failure_of(job))
    message = (
        f"Timed out after {ctx.timeout:.0f}s waiting for cloud job {job.job_id}; the job then {how}{ended}. "
        "The resource stays Failed (Timeout): check the server, and create a new EcsReinstall if it needs "
        "another reinstall"
    )
    patch = {"jobStatus": job.status.value, "message": message}
    if job.end_time:
        patch["jobEndTime"] = precise_timestamp(job.end_time)
    if job.sub_jobs:
        patch["subJobs"] = _sub_jobs(job)
    kind = "Normal" if job.status == JobStatus.SUCCESS else "Warning"
    return Transition(patch=patch, event=Event(kind, "JobEndedAfterTimeout", message))


def on_timeout(ctx: Context, status: Mapping) -> Transition:
    job = status.get("jobId") or "(unknown job)"
    message = (
        f"Timed out after {ctx.timeout:.0f}s waiting for cloud job {job}; the cloud job may still run "
        "(the operator keeps reading it and records how it ends): check the server before creating a new "
        "EcsReinstall"
    )
    transition = _failed(ctx, status, Reason.TIMEOUT, message, code=Reason.TIMEOUT, submitted=True)
    return Transition(transition.patch, transition.event, delay=after_timeout_delay(ctx))


def _sub_jobs(job: Job) -> list[dict]:
    return [
        {
            k: v
            for k, v in {
                "jobId": s.job_id,
                "jobType": s.job_type,
                "status": s.status.value,
                "errorCode": s.error_code,
                "failReason": s.fail_reason or s.errorcode_message,
                "beginTime": precise_timestamp(s.begin_time) if s.begin_time else None,
                "endTime": precise_timestamp(s.end_time) if s.end_time else None,
            }.items()
            if v
        }
        for s in job.sub_jobs
    ]


def failure_of(job: Job) -> tuple[str, str]:
    """The most specific (code, reason) a failed job offers: its own, else its first failed sub-job's."""
    code, reason = job.error_code, job.fail_reason
    for sub in job.sub_jobs:
        if sub.status == JobStatus.FAIL:
            code = code or sub.error_code
            reason = reason or sub.fail_reason or sub.errorcode_message
    return code or Reason.JOB_FAILED.value, reason or "the cloud job failed without a reason"


def on_job(ctx: Context, status: Mapping, job: Job) -> Transition:
    times = {
        "jobStatus": job.status.value,
        "jobBeginTime": precise_timestamp(job.begin_time) if job.begin_time else None,
        "jobEndTime": precise_timestamp(job.end_time) if job.end_time else None,
        "subJobs": _sub_jobs(job),
    }
    if job.status == JobStatus.SUCCESS:
        message = f"Reinstalled: cloud job {job.job_id} succeeded"
        patch = _status(
            ctx,
            status,
            Phase.SUCCEEDED,
            Reason.SUCCEEDED,
            message,
            submitted=True,
            completedAt=timestamp(job.end_time or ctx.now),
            **times,
        )
        return Transition(patch=patch, event=Event("Normal", "Succeeded", message))
    if job.status == JobStatus.FAIL:
        code, reason = failure_of(job)
        message = f"Cloud job {job.job_id} failed: {code}: {reason}"
        return _failed(
            ctx,
            status,
            Reason.JOB_FAILED,
            message,
            code=code,
            cause=reason,
            submitted=True,
            completed=job.end_time,
            **times,
        )
    if timed_out(ctx, status):
        return on_timeout(ctx, status)
    waiting = " (waiting for payment)" if job.status == JobStatus.PENDING_PAYMENT else ""
    message = f"Reinstalling: cloud job {job.job_id} is {job.status.value}{waiting}"
    patch = _status(ctx, status, Phase.REINSTALLING, Reason.REINSTALLING, message, submitted=True, **times)
    delay = poll_delay(ctx.poll_interval)
    return Transition(delay=delay) if _unchanged(status, patch) else Transition(patch=patch, delay=delay)


def on_server_progress(
    ctx: Context, status: Mapping, server: Server, *, job_ended: bool = False
) -> Transition:
    """Job ID lost: the server's state is the only witness. Busy: still running. ERROR: failed. Back to ACTIVE or
    SHUTOFF: finished, and the launch time tells how. A new one means the new system booted (Succeeded, Ready
    reason SucceededFromServerState); the old one means the reinstall failed (the cloud may put a server back in
    its old state). Without launch times nothing can be told apart, so the resource fails as OutcomeUnknown
    rather than guess."""
    if not server.busy and server.status in _SETTLED_STATES:
        attempt = status.get("attempt") or {}
        verdict = relaunched(attempt, server)
        if verdict:
            message = (
                f"Reinstalled: server {server.id} is {server.status} again with a new launch time "
                f"({timestamp(server.launched_at)}); outcome read from the server, the job ID having been lost"
            )
            patch = _status(
                ctx,
                status,
                Phase.SUCCEEDED,
                Reason.SUCCEEDED_INFERRED,
                message,
                submitted=True,
                completedAt=timestamp(ctx.now),
            )
            return Transition(patch=patch, event=Event("Normal", "Succeeded", message))
        if verdict is False:
            message = (
                f"Reinstall failed: server {server.id} is {server.status} again but its launch time did not "
                "change, so the new system never booted. The job ID was lost, so the cloud's error code is "
                "unknown: check the server's failed tasks in the console, then create a new EcsReinstall"
            )
            return _failed(
                ctx, status, Reason.FAILED_INFERRED, message, code=Reason.FAILED_INFERRED, submitted=True
            )
        message = (
            f"Cannot tell whether the reinstall of server {server.id} succeeded: the job ID was lost and the "
            f"server, {server.status} again, reports no launch time to compare. Not re-sending, to never "
            "reinstall twice; check the server, then create a new EcsReinstall if needed"
        )
        return _failed(
            ctx, status, Reason.OUTCOME_UNKNOWN, message, code=Reason.OUTCOME_UNKNOWN, submitted=True
        )
    if server.status == "ERROR":
        message = f"Reinstall failed: server {server.id} is in ERROR after the reinstall"
        return _failed(ctx, status, Reason.JOB_FAILED, message, code="ServerError", submitted=True)
    if not job_ended and timed_out(ctx, status):
        return on_timeout(ctx, status)
    return Transition(delay=poll_delay(ctx.poll_interval))


def on_poll_error(
    ctx: Context, status: Mapping, detail: str, delay: float, *, job_ended: bool = False
) -> Transition:
    """A failed read never fails the resource by itself: the timeout fails it when the job was last seen running,
    and only once reads have failed for twice the timeout (the job may have ended unseen: a later read tells).
    `job_ended`: the job is known to be over (its record expired), so no timeout applies at all. The message
    shows the last error."""
    if not job_ended and timed_out(ctx, status, factor=2.0):
        return on_timeout(ctx, status)
    message = f"Reinstalling: could not read the cloud job ({detail}); retrying"
    patch = {"message": message}
    return Transition(delay=delay) if _unchanged(status, patch) else Transition(patch=patch, delay=delay)
