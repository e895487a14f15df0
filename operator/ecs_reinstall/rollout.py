"""An EcsReinstallSet's rollout as pure decisions: from the set (spec and persisted status) and its children's
phases, what the status becomes and which servers are admitted next. No I/O (see sets.py).

The one rule that keeps the cap: a server is **admitted** (written into status.admitted, by a compare-and-swap of
the set's status) before its child EcsReinstall is created, and a server leaves the in-flight count only once its
child's terminal phase is recorded in status.succeeded / status.failed. So the in-flight count is
|admitted - succeeded - failed|, read from what is persisted; whatever crashes, restarts, leader changes or late
watch events happen, no writer can admit beyond maxInFlight, since two writers cannot both win one
compare-and-swap.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .cloud import tags as tag_rules
from .reconcile import parse_timestamp, timestamp

GROUP_LABEL = "ecs.reinstall.dev/set"  # the set's uid, on every child
REVISION_LABEL = "ecs.reinstall.dev/set-revision"  # the revision's hash, on every child (for people)
ROUND_LABEL = "ecs.reinstall.dev/set-round"  # the round (status.round) a child belongs to: what the set reads
SERVER_ANNOTATION = "ecs.reinstall.dev/server-id"
ACKNOWLEDGED_ANNOTATION = "ecs.reinstall.dev/failures-acknowledged"
# What a dry run assumes of a reinstall it cannot time (Huawei's reinstalls take minutes).
ASSUMED_JOB_SECONDS = 300
ASSUMED_POLL_SECONDS = 10


class Phase:
    RESOLVING = "Resolving"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    STALLED = "Stalled"
    ABORTED = "Aborted"
    COMPLETED = "Completed"
    PLANNED = "Planned"


@dataclass(frozen=True)
class Strategy:
    max_in_flight: int | str = 1
    max_failures: int | str = 0
    soak_seconds: int = 0
    max_in_flight_per_zone: int | None = None


@dataclass(frozen=True)
class SetSpec:
    revision: str
    template: Mapping
    server_ids: tuple[str, ...] | None = None
    tags: Mapping[str, str] | None = None
    strategy: Strategy = field(default_factory=Strategy)
    paused: bool = False
    abort: bool = False
    dry_run: bool = False


class InvalidSet(ValueError):
    """A set spec that cannot work; the message names the field and the fix."""


_PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")


def _count_or_percent(value: object, where: str, default: int) -> int | str:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidSet(f'{where} must be a count or a percentage such as 10 or "10%"')
    if isinstance(value, int):
        if value < 0:
            raise InvalidSet(f"{where} must be 0 or more")
        return value
    if not _PERCENT.match(value):
        raise InvalidSet(f"{where} {value!r} is not a percentage from 0% to 100%")
    return value


def _at_least_one(value: int | str) -> int | str:
    if value == 0:
        raise InvalidSet("spec.strategy.maxInFlight must be 1 or more (or a percentage)")
    return value


def parse_set_spec(raw: Mapping) -> SetSpec:
    """The set's spec, checked again here (the cluster's CRD may be older or looser)."""
    selector = raw.get("selector") or {}
    ids, tags = selector.get("serverIds"), selector.get("tags")
    if (ids is None) == (tags is None):
        raise InvalidSet("spec.selector: set exactly one of serverIds or tags")
    if tags is not None:
        if not isinstance(tags, Mapping) or not tags:
            raise InvalidSet("spec.selector.tags must be a non-empty map of tag key to value")
        for key, value in tags.items():
            problem = tag_rules.problem(str(key), key=True) or tag_rules.problem(str(value), key=False)
            if problem:
                raise InvalidSet(f"spec.selector.tags {key!r}: {problem}")
    revision = raw.get("revision")
    if not isinstance(revision, str) or not revision:
        raise InvalidSet("spec.revision is required: a name for this round, such as golden-2026-12")
    template = raw.get("template")
    if not isinstance(template, Mapping):
        raise InvalidSet("spec.template is required: an EcsReinstall spec without serverId")
    if template.get("ttlSecondsAfterFinished") is not None:
        raise InvalidSet(
            "spec.template.ttlSecondsAfterFinished cannot be used in a set: a child deleted before the set recorded "
            "its end would be lost; children go with their set (delete the set, or start a new revision)"
        )
    strategy = raw.get("strategy") or {}
    soak = strategy.get("soakSeconds") or 0
    per_zone = strategy.get("maxInFlightPerZone")
    return SetSpec(
        revision=revision,
        template=template,
        server_ids=tuple(dict.fromkeys(ids)) if ids is not None else None,
        tags=dict(tags) if tags is not None else None,
        strategy=Strategy(
            max_in_flight=_at_least_one(
                _count_or_percent(strategy.get("maxInFlight"), "spec.strategy.maxInFlight", 1)
            ),
            max_failures=_count_or_percent(strategy.get("maxFailures"), "spec.strategy.maxFailures", 0),
            soak_seconds=int(soak),
            max_in_flight_per_zone=int(per_zone) if per_zone else None,
        ),
        paused=bool(raw.get("paused")),
        abort=bool(raw.get("abort")),
        dry_run=bool(raw.get("dryRun")),
    )


def resolve(value: int | str, total: int, *, at_least_one: bool) -> int:
    """A count, or a percentage of `total` rounded down (maxInFlight: at least 1)."""
    count = value if isinstance(value, int) else math.floor(total * int(value[:-1]) / 100)
    return max(1, count) if at_least_one else count


# --- names and tags -----------------------------------------------------------------------------------------


def _hex(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def revision_tag(namespace: str, name: str, revision: str) -> dict[str, str]:
    """The server tag recording that this set did this revision: key `ecsr-<12 hex of namespace/name>` (one key
    per set, so that sets sharing servers do not overwrite each other's record), value the revision itself when
    it is a valid tag value, else `h-` and 32 hex of it."""
    value = revision if tag_rules.problem(revision, key=False) is None else f"h-{_hex(revision, 32)}"
    return {"key": f"ecsr-{_hex(f'{namespace}/{name}', 12)}", "value": value}


def revision_hash(revision: str) -> str:
    return _hex(revision, 10)


def child_name(set_name: str, set_uid: str, round_: int, server_id: str) -> str:
    """Deterministic: the same set (this very object: its uid), round and server always name the same child, so
    a create that meets an existing one is not a second reinstall; another round (a revision changed, even back
    to an earlier one) or a re-created set never meets the children of another."""
    suffix = f"-{_hex(set_uid, 4)}r{round_}-{_hex(server_id, 10)}"
    return set_name[: 253 - len(suffix)].rstrip("-.") + suffix


# --- the status -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """What the set needs of one child: its server, phase and end."""

    server_id: str
    phase: str
    round: str  # the round label
    completed_at: datetime | None = None
    code: str | None = None
    owned: bool = True
    holds_request: bool = False  # a request may have reached the cloud (an attempt or a job ID is recorded)


@dataclass(frozen=True)
class Decision:
    patch: dict  # merge patch of the set's status ({}: nothing to write)
    admit: tuple[str, ...] = ()  # servers admitted by this patch: create their children once it is written
    create: tuple[str, ...] = ()  # admitted servers without a child: create them now
    soak_checks: tuple[str, ...] = ()  # servers whose soak is over: read them (ACTIVE?) before counting them
    events: tuple[tuple[str, str, str], ...] = ()  # (type, reason, message)
    wake_in: float | None = None  # seconds until something is due (a soak ending)


def failed_ids(status: Mapping) -> set[str]:
    return {str(f.get("serverId")) for f in status.get("failed") or ()}


def in_flight(status: Mapping) -> list[str]:
    done = set(status.get("succeeded") or ()) | failed_ids(status)
    return [s for s in status.get("admitted") or () if s not in done]


def decide(
    spec: SetSpec,
    status: Mapping,
    children: Mapping[str, Child],
    *,
    now: datetime,
    acknowledged: int = 0,
    soak_results: Mapping[str, bool] | None = None,
) -> Decision:
    """The next status of a set whose selection for spec.revision is frozen in `status`, and what to do.

    `children`: the set's children of this revision, by server. `soak_results`: server -> ACTIVE after its soak
    (read by the caller for the servers a previous decision listed in `soak_checks`)."""
    soak_results = soak_results or {}
    selection = [s["id"] for s in status.get("selection") or ()]
    zones = {s["id"]: s.get("zone") or "" for s in status.get("selection") or ()}
    total = len(selection)
    succeeded = list(status.get("succeeded") or ())
    failed = [dict(f) for f in status.get("failed") or ()]
    finished = set(succeeded) | {f["serverId"] for f in failed}
    events: list[tuple[str, str, str]] = []
    soak_checks: list[str] = []
    wake_in: float | None = None
    soak = timedelta(seconds=spec.strategy.soak_seconds)

    created = list(status.get("created") or ())
    known = set(created)
    # 1. what the children say of the admitted servers
    for server in status.get("admitted") or ():
        if server in finished:
            continue
        child = children.get(server)
        if child is None and server in known:
            # created once and gone (deleted by hand, or with its namespace): never created again, as it may
            # have reinstalled the server already; a person decides (a new revision reinstalls it)
            failed.append({"serverId": server, "code": "ChildDeleted"})
            finished.add(server)
            continue
        if child is None or not child.owned:
            continue
        if server not in known:
            created.append(server)
            known.add(server)
        if child.phase == "Failed":
            failed.append({"serverId": server, "code": child.code or "Failed"})
            finished.add(server)
        elif child.phase == "Succeeded":
            due = (child.completed_at or now) + soak
            if soak and now < due:
                left = (due - now).total_seconds()
                wake_in = left if wake_in is None else min(wake_in, left)
                continue
            if soak and server not in soak_results:
                soak_checks.append(server)
                continue
            if soak and not soak_results[server]:
                failed.append({"serverId": server, "code": "NotActiveAfterSoak"})
            else:
                succeeded.append(server)
            finished.add(server)

    admitted = list(status.get("admitted") or ())
    flying = [s for s in admitted if s not in finished]
    budget = resolve(spec.strategy.max_failures, total, at_least_one=False)
    over_budget = len(failed) - acknowledged > budget
    cap = resolve(spec.strategy.max_in_flight, total, at_least_one=True)

    # 2. admissions, only while nothing holds the rollout
    admit: list[str] = []
    if not (spec.paused or spec.abort or over_budget or spec.dry_run):
        per_zone: dict[str, int] = {}
        for server in flying:
            per_zone[zones.get(server, "")] = per_zone.get(zones.get(server, ""), 0) + 1
        taken = set(admitted)
        for server in selection:
            if len(flying) + len(admit) >= cap:
                break
            if server in taken:
                continue
            zone = zones.get(server, "")
            limit = spec.strategy.max_in_flight_per_zone
            if limit is not None and per_zone.get(zone, 0) >= limit:
                continue
            per_zone[zone] = per_zone.get(zone, 0) + 1
            admit.append(server)
    admitted.extend(admit)
    flying.extend(admit)

    # 3. the phase and conditions
    done = len(succeeded)
    left = total - len(finished)
    if over_budget:
        phase, reason = Phase.STALLED, "FailureBudgetExceeded"
        message = (
            f"Paused: {len(failed) - acknowledged} failures exceed the budget of {budget} "
            f"(spec.strategy.maxFailures); {len(flying)} in flight finish. Look at the failed servers, then "
            "`kubectl ecsr resume` to go on"
        )
    elif total == 0:
        phase, reason = Phase.STALLED, "NothingSelected"
        message = (
            f"Revision {spec.revision}: no server matches spec.selector (the selection is frozen for the revision): "
            "fix the selector or tag the servers, then change spec.revision"
        )
    elif left == 0:
        missing = len(status.get("missing") or ())
        phase = Phase.COMPLETED
        reason = "CompletedWithFailures" if failed else "CompletedWithMissing" if missing else "Completed"
        message = f"Revision {spec.revision}: {done} of {total} servers done, {len(failed)} failed"
        if missing:
            message += f"; {missing} listed servers not found, or not this namespace's (status.missing)"
    elif spec.abort:
        phase, reason = Phase.ABORTED, "Aborted"
        message = f"Aborted: {done} of {total} done; {len(flying)} in flight finish, no new reinstalls"
    elif spec.paused:
        phase, reason = Phase.PAUSED, "Paused"
        message = f"Paused: {done} of {total} done; {len(flying)} in flight finish"
    else:
        phase, reason = Phase.PROGRESSING, "Progressing"
        message = (
            f"Revision {spec.revision}: {done} of {total} done, {len(flying)} in flight, {len(failed)} failed"
        )
    ready = reason == "Completed"
    # a finished round with failures or missing servers needs a person, like an exceeded budget
    stalled = phase == Phase.STALLED or (phase == Phase.COMPLETED and not ready)
    progressing = phase == Phase.PROGRESSING or (phase in (Phase.PAUSED, Phase.ABORTED) and bool(flying))
    conditions = [
        {"type": "Ready", "status": _b(ready), "reason": reason, "message": message if ready else ""},
        {
            "type": "Reconciling",
            "status": _b(progressing),
            "reason": reason,
            "message": message if progressing else "",
        },
        {"type": "Stalled", "status": _b(stalled), "reason": reason, "message": message if stalled else ""},
    ]
    previous_phase = status.get("phase")
    if phase != previous_phase and phase in (Phase.STALLED, Phase.COMPLETED, Phase.ABORTED, Phase.PAUSED):
        kind = "Warning" if phase == Phase.STALLED or (phase == Phase.COMPLETED and failed) else "Normal"
        events.append((kind, reason, message))
    patch = {
        "phase": phase,
        "message": message,
        "admitted": admitted,
        "created": created,
        "succeeded": succeeded,
        "failed": failed,
        "failuresAcknowledged": acknowledged,
        "total": total,
        "done": done,
        "inFlight": len(flying),
        "failedCount": len(failed),
        "progress": f"{done}/{total}",
        "conditions": merge_conditions(status.get("conditions"), conditions, now),
    }
    patch = {k: v for k, v in patch.items() if status.get(k) != v}
    create = tuple(s for s in flying if s not in children and s not in admit)
    return Decision(
        patch=patch,
        admit=tuple(admit),
        create=create,
        soak_checks=tuple(soak_checks),
        events=tuple(events),
        wake_in=wake_in,
    )


def _b(value: bool) -> str:
    return "True" if value else "False"


def merge_conditions(old: Sequence[Mapping] | None, new: Sequence[Mapping], now: datetime) -> list[dict]:
    """New conditions keep their lastTransitionTime while their status does not change."""
    before = {c.get("type"): c for c in old or ()}
    merged = []
    for condition in new:
        previous = before.get(condition["type"])
        moved = previous is None or previous.get("status") != condition["status"]
        since = timestamp(now) if moved else previous.get("lastTransitionTime") or timestamp(now)
        merged.append({**condition, "lastTransitionTime": since})
    return merged


def new_revision(
    spec: SetSpec,
    namespace: str,
    name: str,
    servers: Sequence[tuple[str, str]],
    missing: Sequence[str],
    now: datetime,
    *,
    previous_round: int = 0,
    not_owned: int = 0,
) -> dict:
    """The status patch that starts spec.revision, as a new round, over `servers` ((id, zone), in selection
    order): everything of the previous round is replaced."""
    message = f"Revision {spec.revision}: {len(servers)} servers selected"
    if not_owned:
        message += f" ({not_owned} more match the selector but are not tagged for this namespace: left out)"
    return {
        "round": previous_round + 1,
        "notOwned": not_owned,
        "revision": spec.revision,
        "revisionTag": revision_tag(namespace, name, spec.revision),
        "selection": [{"id": s, "zone": z} for s, z in servers],
        "missing": list(missing),
        "admitted": [],
        "created": [],
        "succeeded": [],
        "failed": [],
        "failuresAcknowledged": 0,
        "plan": None,
        "total": len(servers),
        "done": 0,
        "inFlight": 0,
        "failedCount": 0,
        "progress": f"0/{len(servers)}",
        "phase": Phase.PROGRESSING,
        "message": message,
    }


def plan(
    spec: SetSpec, servers: Sequence[Mapping], blockers: Sequence[tuple[str, str]], already: int
) -> dict:
    """A dry run's report: how many would go, what blocks the others, and an estimate of calls and time (each
    reinstall: a server read, the POST, a job poll every ASSUMED_POLL_SECONDS for ASSUMED_JOB_SECONDS, and the
    revision tag; in waves of maxInFlight)."""
    total = len(servers)
    ready = total - len(blockers) - already
    cap = resolve(spec.strategy.max_in_flight, total, at_least_one=True)
    waves = math.ceil(ready / cap) if ready else 0
    per_reinstall = 3 + math.ceil(ASSUMED_JOB_SECONDS / ASSUMED_POLL_SECONDS)
    return {
        "servers": total,
        "ready": ready,
        "alreadyAtRevision": already,
        "blockers": [{"serverId": s, "reason": r} for s, r in blockers],
        "waves": waves,
        "estimatedCloudCalls": math.ceil(total / 1000) + ready * per_reinstall + already,
        "estimatedSeconds": waves * (ASSUMED_JOB_SECONDS + spec.strategy.soak_seconds),
    }


def parse_child(body: Mapping) -> Child | None:
    meta = body.get("metadata") or {}
    server = (body.get("spec") or {}).get("serverId")
    if not server:
        return None
    status = body.get("status") or {}
    return Child(
        server_id=str(server),
        phase=str(status.get("phase") or "Pending"),
        round=str((meta.get("labels") or {}).get(ROUND_LABEL) or ""),
        completed_at=parse_timestamp(status.get("completedAt")),
        code=(status.get("failure") or {}).get("code"),
        holds_request=bool(status.get("attempt") or status.get("jobId") or status.get("submittedAt")),
    )


def acknowledged(annotation: str | None, round_: int) -> int:
    """The failures a resume acknowledged for this round: the annotation reads `<round>:<count>` (what `kubectl
    ecsr resume` writes); an acknowledgement of another round, or in another form, counts for nothing."""
    text = (annotation or "").strip()
    head, sep, count = text.partition(":")
    if not sep or head != str(round_):
        return 0
    try:
        return max(0, int(count))
    except ValueError:
        return 0
