"""Shared fixtures for integration tests: a real ECS emulator on a loopback port, one per test.

``ecs_emulator`` yields an `ecs_emulator.testing.EmulatorHandle`: ``.url``, ``.access_key``, ``.secret_key``,
``.project_id``, ``.state`` (in-process state, e.g. ``.state.clock``) and ``.admin`` (async admin API helpers:
add_server, patch_server, add_keypair, add_credential, set_config, add_fault, clear_faults, counters,
reinstalls, reset, advance_clock). Jobs default to 0.1 s INIT + 0.3 s RUNNING so lifecycle tests stay fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ecs_emulator.testing import EmulatorHandle, running_emulator

EMULATOR_ACCESS_KEY = "ITESTAK0000000000000"
EMULATOR_SECRET_KEY = "itestSK0000000000000000000000000000000000"
EMULATOR_PROJECT_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


@pytest.fixture
async def ecs_emulator() -> AsyncIterator[EmulatorHandle]:
    async with running_emulator(
        access_key=EMULATOR_ACCESS_KEY,
        secret_key=EMULATOR_SECRET_KEY,
        project_id=EMULATOR_PROJECT_ID,
        init_seconds=0.1,
        job_seconds=0.3,
    ) as handle:
        yield handle
