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
from datetime import datetime, timedelta

from .cloud.models import InstanceAction

REBUILD = "rebuild"  # a reinstall or a change of OS, in the action log
# How much earlier than the recorded attempt a rebuild may appear to start: the cloud writes its start time when
# it takes the request, after we recorded ours, but in whole seconds (every documented example ends in .000000),
# and the clock estimate has its own rounding. A rebuild before ours cannot be that close: the server was idle.
SLACK_SECONDS = 2.0


class ActionOutcome(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def rebuild_after(actions: Iterable[InstanceAction], since: datetime) -> InstanceAction | None:
    """The first rebuild that started at or after `since` (cloud clock): the one our attempt made, since the
    server was idle when we sent it (a later one is somebody else's)."""
    earliest = since - timedelta(seconds=SLACK_SECONDS)
    found = [
        a for a in actions if a.action == REBUILD and a.start_time is not None and a.start_time >= earliest
    ]
    return min(found, key=lambda a: a.start_time or since, default=None)


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
