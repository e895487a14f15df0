"""Huawei's rules for server tags: a key of 1-36 characters, a value of 0-43, neither holding an ASCII control
character nor any of = * < > \\ , | /. At most 10 tags per server."""

from __future__ import annotations

import re

KEY_MAX, VALUE_MAX, PER_SERVER = 36, 43, 10
_FORBIDDEN = re.compile(r"[\x00-\x1f=*<>\\,|/]")


def problem(text: str, *, key: bool) -> str | None:
    """Why `text` cannot be a tag key (or value), in words; None when it can."""
    limit = KEY_MAX if key else VALUE_MAX
    if key and not text:
        return "is empty"
    if len(text) > limit:
        return f"is longer than {limit} characters"
    bad = _FORBIDDEN.search(text)
    if bad:
        return f"contains {bad.group()!r} (tags allow no control characters nor = * < > \\ , | /)"
    return None
