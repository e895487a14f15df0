"""``X-Client-Token`` on the reinstall APIs: ECS's idempotent requests, as documented for "ECS APIs".

With ``client_token: "honoured"`` (the default), a reinstall POST that carries the header:

- the token must be a lower-case UUID in 8-4-4-4-12 form, else 400 ``Ecs.0123`` (nothing else is checked);
- a token first used more than ``client_token_ttl_seconds`` (8 h) ago, on the cloud's clock: 400 ``Ecs.0124``;
- a token already used for an accepted reinstall with the same project, server, API (v1/v2) and body (compared
  as parsed JSON, so key order and spacing do not matter): the original answer, HTTP 200 with the same
  ``job_id``, and nothing new is started (counted in ``replayed_reinstalls``, never in ``accepted_reinstalls``);
- a token already used with anything different: 400 ``Ecs.0122``;
- a token never used: the request is processed as usual; only an accepted reinstall binds the token (a refused
  request leaves it free, so a client may retry it after, e.g., ``Ecs.0603``).

With ``client_token: "ignored"`` the header changes nothing (as if the API did not know it); the reinstall
records still show the token each accepted POST carried.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ecs_emulator.errors import EcsError

HEADER = "X-Client-Token"
_TOKEN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class TokenUse:
    """The first accepted request that carried a token, and its answer."""

    token: str
    fingerprint: tuple[str, str, str, str]  # project, server, api, canonical body
    first_used: float
    job_id: str


def fingerprint(project_id: str, server_id: str, api: str, body: bytes) -> tuple[str, str, str, str]:
    """What a replay must repeat: project, server, API and the body (canonical JSON if it parses)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = body.decode("utf-8", errors="replace")
    return (project_id, server_id, api, canonical)


def _shown(token: str) -> str:
    return repr(token if len(token) <= 64 else token[:64] + "...")


class ClientTokens:
    def __init__(self) -> None:
        self.uses: dict[str, TokenUse] = {}

    def check(self, token: str, print_: tuple[str, str, str, str], now: float, ttl: float) -> TokenUse | None:
        """The use to replay, None for a fresh token; `EcsError` Ecs.0123 / Ecs.0124 / Ecs.0122."""
        if not _TOKEN.match(token):
            raise EcsError(
                400,
                "Ecs.0123",
                f"Invalid X-Client-Token {_shown(token)}: it must be a UUID in 8-4-4-4-12 form "
                "(lower-case hexadecimal).",
            )
        use = self.uses.get(token)
        if use is None:
            return None
        if now - use.first_used > ttl:
            raise EcsError(
                400,
                "Ecs.0124",
                f"The X-Client-Token {_shown(token)} has expired: it was first used more than "
                f"{ttl / 3600:g} hours ago.",
            )
        if use.fingerprint != print_:
            raise EcsError(
                400,
                "Ecs.0122",
                f"The X-Client-Token {_shown(token)} was already used for another request "
                "(different server, API or parameters).",
            )
        return use

    def remember(self, token: str, print_: tuple[str, str, str, str], now: float, job_id: str) -> None:
        self.uses.setdefault(token, TokenUse(token, print_, now, job_id))

    def clear(self) -> None:
        self.uses.clear()
