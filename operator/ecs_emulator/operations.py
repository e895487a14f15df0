"""Operations on a server by someone else (a console user, another tool), through the admin API:
``POST /_emulator/servers/{server_id}/operations`` with ``{"action": ..., ...}``.

Each is instantaneous (done at the cloud's current time), moves ``updated`` and ``OS-SRV-USG:launched_at`` the
way Nova does, and writes its own action (Nova's name and events) as ``user_id`` (default `OTHER_USER_ID`):

=========  ==============================  ==========================================  ========================
action     allowed when (else 409)         effect                                      action written
=========  ==============================  ==========================================  ========================
stop       ACTIVE or ERROR                 SHUTOFF; updated                            ``stop``
start      SHUTOFF                         ACTIVE; updated                             ``start``
reboot     ACTIVE (``type: "HARD"``: also  ACTIVE; updated                             ``reboot``
           SHUTOFF, ERROR)
resize     ACTIVE or SHUTOFF               ``flavor``; launched_at and updated (Nova   ``resize`` (3 events)
                                           sets launched_at when a resize finishes)
migrate    ACTIVE or SHUTOFF               launched_at and updated                     ``migrate`` (3 events)
rename     any state, even busy            ``name``; updated                           none (Nova writes none)
tag        any state, even busy            ``set`` {key: value}, ``remove`` [key];     none (Nova writes none)
                                           updated
=========  ==============================  ==========================================  ========================

stop, start, reboot, resize and migrate are refused (409) while the server is busy (a reinstall runs, status
REBUILD, or any task_state) or locked, as Nova refuses them. ``record_action`` (true/false) overrides whether
an action is written (rename and tag edits then write an invented ``update`` action with one event
``api_update_instance``). ``fail: true`` (not for rename/tag) makes the operation fail: nothing changes but
``updated``; the action's message is ``"Error"`` and its last event ``Error`` with a traceback.
"""

from __future__ import annotations

from ecs_emulator.actions import OTHER_USER_ID, Action
from ecs_emulator.state import EmulatorState, Server, ServerStatus

ACTIONS = ("stop", "start", "reboot", "resize", "migrate", "rename", "tag")
_POWER = frozenset({"stop", "start", "reboot", "resize", "migrate"})
_COMMON_FIELDS = frozenset({"action", "user_id", "fail", "record_action"})
_EXTRA_FIELDS = {"reboot": {"type"}, "resize": {"flavor"}, "rename": {"name"}, "tag": {"set", "remove"}}
_ACTION_NAME = {"rename": "update", "tag": "update"}
_FAIL_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "nova/compute/manager.py", line 1, in {event}\n'
    "nova.exception.NovaException: the {action} failed (emulated failure)\n"
)
_ALLOWED = {
    "stop": (ServerStatus.ACTIVE, ServerStatus.ERROR),
    "start": (ServerStatus.SHUTOFF,),
    "reboot": (ServerStatus.ACTIVE,),
    "hard_reboot": (ServerStatus.ACTIVE, ServerStatus.SHUTOFF, ServerStatus.ERROR),
    "resize": (ServerStatus.ACTIVE, ServerStatus.SHUTOFF),
    "migrate": (ServerStatus.ACTIVE, ServerStatus.SHUTOFF),
}


class OperationConflict(Exception):
    """The server's state does not allow the operation (the admin API answers 409)."""


def _parse(data: object) -> dict:
    if not isinstance(data, dict):
        raise ValueError("an operation must be a JSON object")
    action = data.get("action")
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {list(ACTIONS)}, not {action!r}")
    allowed = _COMMON_FIELDS | _EXTRA_FIELDS.get(action, set())
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} for {action!r}; allowed: {sorted(allowed)}")
    for name in ("fail", "record_action"):
        if name in data and not isinstance(data[name], bool):
            raise ValueError(f"{name} must be true or false")
    if data.get("fail") and action not in _POWER:
        raise ValueError(f"fail is only for {sorted(_POWER)}")
    if "user_id" in data and (not isinstance(data["user_id"], str) or not data["user_id"]):
        raise ValueError("user_id must be a non-empty string")
    if action == "reboot" and data.get("type", "SOFT") not in ("SOFT", "HARD"):
        raise ValueError("type must be 'SOFT' or 'HARD'")
    if action == "resize" and (not isinstance(data.get("flavor", "x"), str) or not data.get("flavor", "x")):
        raise ValueError("flavor must be a non-empty string")
    if action == "rename" and (not isinstance(data.get("name"), str) or not data["name"]):
        raise ValueError('rename needs {"name": "<non-empty string>"}')
    if action == "tag":
        tags, remove = data.get("set", {}), data.get("remove", [])
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in tags.items()
        ):
            raise ValueError('set must be an object {"<key>": "<value>"} of strings (keys non-empty)')
        if not isinstance(remove, list) or not all(isinstance(k, str) for k in remove):
            raise ValueError("remove must be a list of tag keys")
        if not tags and not remove:
            raise ValueError("a tag edit needs set and/or remove")
    return data


def _check_state(server: Server, action: str, data: dict) -> None:
    if action not in _POWER:
        return
    if server.busy:
        raise OperationConflict(
            f"server {server.id} is busy (status {server.status}, task_state {server.task_state}): "
            f"cannot {action} it now"
        )
    if server.locked:
        raise OperationConflict(f"server {server.id} is locked: cannot {action} it")
    allowed = _ALLOWED["hard_reboot" if action == "reboot" and data.get("type") == "HARD" else action]
    if server.status not in allowed:
        raise OperationConflict(
            f"cannot {action} server {server.id} in status {server.status}; "
            f"allowed: {[status.value for status in allowed]}"
        )


def _apply(server: Server, action: str, data: dict, now: float) -> None:
    if action == "stop":
        server.status = ServerStatus.SHUTOFF.value
    elif action in ("start", "reboot"):
        server.status = ServerStatus.ACTIVE.value
    elif action in ("resize", "migrate"):
        if action == "resize" and "flavor" in data:
            server.flavor = data["flavor"]
        server.launched_at = now
    elif action == "rename":
        server.name = data["name"]
    elif action == "tag":
        server.tags.update(data.get("set", {}))
        for key in data.get("remove", []):
            server.tags.pop(key, None)


def operate(state: EmulatorState, server_id: str, data: object) -> tuple[Server, Action | None]:
    """Do the operation now; `KeyError` unknown server, `ValueError` bad body, `OperationConflict` refused."""
    server = state.servers.get(server_id)
    if server is None:
        raise KeyError(server_id)
    body = _parse(data)
    action = body["action"]
    state.refresh(server)
    _check_state(server, action, body)
    now = state.now()
    failed = bool(body.get("fail"))
    if not failed:
        _apply(server, action, body, now)
    server.updated = max(server.updated, now)
    state.counters.operations[action] += 1
    if not body.get("record_action", action in _POWER):
        return server, None
    name = _ACTION_NAME.get(action, action)
    logged = state.log_action(server, name, at=now, user_id=body.get("user_id", OTHER_USER_ID))
    traceback = _FAIL_TRACEBACK.format(event=logged.events[-1].event, action=name) if failed else None
    logged.finish(now, failed=failed, traceback=traceback)
    return server, logged
