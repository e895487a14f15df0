"""Server tags through the public API: ``GET`` and ``POST .../tags/action`` on ``/v1/{project_id}/cloudservers/{id}``.

Rules (Huawei's "Adding Tags to an ECS in a Batch" / "Deleting Tags from an ECS in a Batch" / "Querying Tags of
an ECS", api-ecs ecs_02_1002 / 1003 / 1008, and the ECS.ServerTags type):

- body ``{"action": "create"|"delete", "tags": [{"key", "value"?}, ...]}``; nothing else; ``action`` lower case
  only; ``tags`` a non-empty list of objects with ``key`` and an optional ``value`` (strings; a missing or null
  value is ``""``, as the SDK leaves it out when unset);
- key: not blank (empty or only white space), at most 36 characters, unique within the request;
- value: at most 43 characters, may be empty;
- neither may contain ASCII 0-31 nor any of ``=*<>\\,|/`` (the official SDK's docstrings announce a narrower
  set, ``A-Z a-z 0-9 - _`` plus ``.`` in values and CJK; the API pages and ECS.ServerTags give the forbidden
  list, which is what the emulator enforces);
- an ECS has at most 10 tags (`MAX_TAGS`): a create that would leave more is refused as a whole.

The same key/value rules apply to ``delete`` (the SDK's ``ServerTag`` documents 36/43 for it; an older page said
127/255, but no such tag can exist). Every problem is a 400 ``Ecs.0005`` naming the item, e.g.
``tags[2].key "a/b" contains "/"``; nothing is changed unless the whole request is valid.

Semantics: ``create`` is idempotent and overwrites the value of an existing key. ``delete`` removes the listed
keys, and is idempotent (an absent key is fine). The docs are silent on a ``value`` in a delete: the emulator
deletes by key when the value is absent or empty, and when a non-empty value is given it deletes only if it
equals the stored one (a differing value leaves the tag). Either action answers 204 and, like the admin
``tag`` operation (and Nova), writes no instance action but moves the server's ``updated``; it is allowed in any
server state (busy or locked included).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ecs_emulator.errors import invalid_request

MAX_TAGS = 10
MAX_KEY_LENGTH = 36
MAX_VALUE_LENGTH = 43
FORBIDDEN_CHARACTERS = "=*<>\\,|/"
ACTIONS = ("create", "delete")


@dataclass(frozen=True)
class TagRequest:
    action: str
    tags: tuple[tuple[str, str], ...]  # (key, value), in request order


def _shown(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def tag_problem(text: str, what: str, max_length: int) -> str | None:
    """Why ``text`` is not a valid tag key/value (``what`` is "key" or "value"), or None."""
    if what == "key" and not text.strip():
        return "is blank; a tag key must not be empty"
    if len(text) > max_length:
        return f"is {len(text)} characters long; a tag {what} has at most {max_length}"
    for char in text:
        if ord(char) < 32:
            return f"contains the control character U+{ord(char):04X} (ASCII 0-31 are not allowed)"
        if char in FORBIDDEN_CHARACTERS:
            return f"contains {_shown(char)}; none of {FORBIDDEN_CHARACTERS} is allowed"
    return None


def parse_tag_body(body: object) -> TagRequest:
    """Check a ``tags/action`` body; raise ``Ecs.0005`` on the first problem."""
    if not isinstance(body, dict):
        raise invalid_request('the body must be a JSON object {"action": ..., "tags": [...]}')
    unknown = sorted(set(body) - {"action", "tags"})
    if unknown:
        raise invalid_request(f"unexpected field(s) {unknown}; only action and tags are allowed")
    action = body.get("action")
    if action not in ACTIONS:
        raise invalid_request(f'action must be "create" or "delete" (lower case), not {json.dumps(action)}')
    items = body.get("tags")
    if not isinstance(items, list) or not items:
        raise invalid_request("tags must be a non-empty list of {key, value} objects")
    seen: dict[str, int] = {}
    tags: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        where = f"tags[{index}]"
        if not isinstance(item, dict):
            raise invalid_request(f"{where} must be an object with key and value")
        extra = sorted(set(item) - {"key", "value"})
        if extra:
            raise invalid_request(f"{where} has unexpected field(s) {extra}; only key and value are allowed")
        key = item.get("key")
        if not isinstance(key, str):
            raise invalid_request(f"{where}.key is required and must be a string")
        value = item.get("value")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise invalid_request(f"{where}.value must be a string, not {type(value).__name__}")
        for what, text, limit in (("key", key, MAX_KEY_LENGTH), ("value", value, MAX_VALUE_LENGTH)):
            problem = tag_problem(text, what, limit)
            if problem is not None:
                raise invalid_request(f"{where}.{what} {_shown(text)} {problem}")
        if key in seen:
            raise invalid_request(
                f"{where}.key {_shown(key)} repeats tags[{seen[key]}].key; keys must be unique in a request"
            )
        seen[key] = index
        tags.append((key, value))
    return TagRequest(action=action, tags=tuple(tags))


def apply_tags(current: dict[str, str], request: TagRequest, server_id: str) -> dict[str, str]:
    """The server's tags after the request (``current`` is not changed); ``Ecs.0005`` beyond `MAX_TAGS`."""
    result = dict(current)
    if request.action == "create":
        result.update(request.tags)
        if len(result) > MAX_TAGS:
            added = len(result) - len(current)
            raise invalid_request(
                f"tags: the ECS {server_id} has {len(current)} tag(s) and this request adds {added} new "
                f"key(s), which makes {len(result)}; an ECS allows at most {MAX_TAGS} tags"
            )
        return result
    for key, value in request.tags:
        if key in result and (not value or result[key] == value):
            del result[key]
    return result
