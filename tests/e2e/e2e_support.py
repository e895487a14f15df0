"""Helpers the e2e tests import (a module of its own: `conftest` is a name every test folder has)."""

from __future__ import annotations

from typing import Any


def spec(server_id: str, **fields: Any) -> dict:
    """A valid spec for a SHUTOFF server, logging in with the default test password Secret unless told."""
    base: dict[str, Any] = {"serverId": server_id, "pollIntervalSeconds": 2}
    if not {"keyName", "userData", "adminPasswordSecretRef"} & fields.keys():
        base["adminPasswordSecretRef"] = {"name": "root-password"}
    base.update(fields)
    return base


PASSWORD = "Reinstall!2026pw"
