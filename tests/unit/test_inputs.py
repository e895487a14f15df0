"""Resolving what a spec points to: a password Secret's trailing newline is dropped; non-UTF-8 is refused."""

import pytest

from ecs_reinstall.inputs import MissingInput, resolve_inputs
from ecs_reinstall.spec import InvalidSpec, parse_spec

SPEC = parse_spec(
    {"serverId": "6e2f0c1a-0000-4000-8000-000000000001", "adminPasswordSecretRef": {"name": "pw"}}
)


class Secrets:
    def __init__(self, data):
        self.data = data

    async def read_secret(self, namespace, name):
        return self.data


async def test_a_trailing_newline_is_not_part_of_the_password():
    inputs = await resolve_inputs(Secrets({"password": b"Reinstall!2026pw\n"}), "ns", SPEC)
    assert inputs.admin_password == "Reinstall!2026pw"


async def test_a_password_that_is_not_text_is_refused_without_showing_it():
    with pytest.raises(InvalidSpec) as exc:
        await resolve_inputs(Secrets({"password": b"\xff\xfesecret"}), "ns", SPEC)
    assert "UTF-8" in str(exc.value) and "secret" not in str(exc.value).replace("Secret", "")


async def test_a_missing_key_is_named():
    with pytest.raises(MissingInput) as exc:
        await resolve_inputs(Secrets({}), "ns", SPEC)
    assert exc.value.what == 'key "password" in Secret "pw" in namespace "ns"'
