"""The server's action log: Nova's ``os-instance-actions`` as Huawei ECS serves it under ``/v2.1``.

Every operation the emulator models writes an `Action` on its server: ``create`` (a server added by the admin
API or auto-created), ``rebuild`` (an accepted reinstall, v1 or v2), and the operations "someone else" makes
through the admin API (``stop``, ``start``, ``reboot``, ``resize``, ``migrate``; ``update`` for a rename or a
tag edit only when asked, since Nova records none for those). Each action has Nova's events, e.g. a rebuild has
one event ``compute_rebuild_instance`` that stays unfinished (``finish_time`` and ``result`` null) while the job
runs, then ends ``Success`` or ``Error`` (with the job's error code and reason as ``traceback``; the action's
``message`` becomes ``"Error"``). ``updated_at`` follows the last change (the action's start, then the last
event's finish).

Times are kept as epoch seconds (the cloud's clock) and formatted when read: ``2014-12-16T10:58:14.000000``
(UTC, no zone), truncated to the second unless ``action_time_resolution`` is ``"microsecond"``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

API_USER_ID = "emulated0user0id0000000000000000"  # who signs API calls (also the server's user_id)
OTHER_USER_ID = "0ther0user0id0000000000000000000"  # "someone else" (admin operations), unless given
RESULT_SUCCESS = "Success"
RESULT_ERROR = "Error"
ACTION_ERROR_MESSAGE = "Error"

# Nova's event names per action (nova/compute/manager.py wraps each step in an event of that name).
EVENTS: dict[str, tuple[str, ...]] = {
    "create": ("compute__do_build_and_run_instance",),
    "stop": ("compute_stop_instance",),
    "start": ("compute_start_instance",),
    "reboot": ("compute_reboot_instance",),
    "rebuild": ("compute_rebuild_instance",),
    "resize": ("compute_prep_resize", "compute_resize_instance", "compute_finish_resize"),
    "migrate": ("compute_prep_resize", "compute_resize_instance", "compute_finish_resize"),
    "update": ("api_update_instance",),  # invented: Nova records no action for a rename or tag edit
}

TimeFormat = Callable[[float], str]


def new_request_id() -> str:
    """A request ID as Nova writes it (``req-<uuid>``), for actions no API response of ours carried."""
    return f"req-{uuid.uuid4()}"


@dataclass
class ActionEvent:
    event: str
    start_time: float
    finish_time: float | None = None
    result: str | None = None
    traceback: str | None = None

    def to_json(self, fmt: TimeFormat) -> dict:
        return {
            "event": self.event,
            "result": self.result,
            "traceback": self.traceback,
            "start_time": fmt(self.start_time),
            "finish_time": None if self.finish_time is None else fmt(self.finish_time),
        }


@dataclass
class Action:
    action: str
    instance_uuid: str
    project_id: str
    request_id: str
    user_id: str
    start_time: float
    updated_at: float
    message: str | None = None
    events: list[ActionEvent] = field(default_factory=list)

    @classmethod
    def begin(
        cls, name: str, *, server_id: str, project_id: str, request_id: str, user_id: str, at: float
    ) -> Action:
        """A started action whose events (Nova's for ``name``) have started and not finished."""
        events = [ActionEvent(event, at) for event in EVENTS[name]]
        return cls(name, server_id, project_id, request_id, user_id, at, at, events=events)

    def finish(self, at: float, *, failed: bool = False, traceback: str | None = None) -> None:
        """End the unfinished events at ``at``: all ``Success``, or the last one ``Error`` (with ``traceback``)
        and the action's message ``"Error"``."""
        unfinished = [event for event in self.events if event.finish_time is None]
        for index, event in enumerate(unfinished):
            event.finish_time = at
            last = index == len(unfinished) - 1
            event.result = RESULT_ERROR if failed and last else RESULT_SUCCESS
            if failed and last:
                event.traceback = traceback
        if failed:
            self.message = ACTION_ERROR_MESSAGE
        self.updated_at = max(self.updated_at, at)

    @property
    def finished(self) -> bool:
        return all(event.finish_time is not None for event in self.events)

    def to_json(self, fmt: TimeFormat, *, events: bool) -> dict:
        """The list item (``events=False``) or the ``instanceAction`` of the detail (``events=True``)."""
        data = {
            "action": self.action,
            "instance_uuid": self.instance_uuid,
            "message": self.message,
            "project_id": self.project_id,
            "request_id": self.request_id,
            "start_time": fmt(self.start_time),
            "updated_at": fmt(self.updated_at),
            "user_id": self.user_id,
        }
        if events:
            data["events"] = [event.to_json(fmt) for event in self.events]
        return data
