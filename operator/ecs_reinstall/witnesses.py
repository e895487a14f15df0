"""Reading the server's action log: did the cloud take our reinstall request, and how did it end? Pure rules.

The witnesses, most trusted first: the job, by its ID; when the job ID was lost or its record expired (the cloud
deletes finished jobs after a day), the server's action log: the first `rebuild` action that started after our
attempt, compared in the cloud's own clock (`attempt.cloudStartedAt`, estimated from the `Date` header of the
cloud's answers), and its events' results. Unlike the server's `updated` (a stop, start, rename or tag edit moves
it too) and launch time (a resize or migration moves it too), a rebuild action names the operation. Only when the
action log is unavailable (one edition of the docs marks it deprecated) do `updated` and the launch time decide
(see reconcile.judge_outcome and reconcile.relaunched).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime

from .cloud.models import InstanceAction

REBUILD = "rebuild"  # a reinstall or a change of OS, in the action log


class ActionOutcome(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def rebuilds_after(actions: Iterable[InstanceAction], since: datetime) -> list[InstanceAction]:
    """The rebuilds that may be the one our attempt made, first first: those that started at or after `since` (the
    earliest the cloud's clock can have read when the attempt was recorded, just before the POST). The cloud
    writes start times in whole seconds (every documented example ends in .000000), so `since` is compared
    rounded down to its second. The first that did not end before `since` is ours (see `ended_before`): the
    server was idle when we read it, so a later one is somebody else's."""
    earliest = since.replace(microsecond=0)
    found = [
        a for a in actions if a.action == REBUILD and a.start_time is not None and a.start_time >= earliest
    ]
    return sorted(found, key=lambda a: a.start_time or since)


def ended_before(action: InstanceAction, since: datetime) -> bool:
    """An action whose events all finished before `since` cannot be the one a request sent after it made (one that
    started in the same second as our attempt, and ended before we read an idle server)."""
    events = action.events or ()
    return bool(events) and all(e.finish_time is not None and e.finish_time < since for e in events)


def outcome_of(action: InstanceAction) -> tuple[ActionOutcome, str | None]:
    """How the action went, from its events (`result` Success/Error, `finish_time`) and `message` ("Error"); with
    the cloud's words for a failure (the failed event's traceback, else the message)."""
    events = action.events or ()
    failed = [e for e in events if (e.result or "").lower() == "error"]
    if failed or (action.message or "").lower() == "error":
        reason = next((e.traceback for e in failed if e.traceback), None) or action.message
        return ActionOutcome.FAILED, (reason or "the action log reports an error").strip()
    if events and all(e.finish_time is not None and (e.result or "").lower() == "success" for e in events):
        return ActionOutcome.SUCCEEDED, None
    return ActionOutcome.RUNNING, None


def attempt_start_in_cloud(attempt: Mapping) -> datetime | None:
    """When the attempt began in the cloud's clock (recorded with the intent), if known."""
    text = attempt.get("cloudStartedAt")
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
