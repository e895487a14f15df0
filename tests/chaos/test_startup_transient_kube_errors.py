"""Regression: a transient Kubernetes error on the operator's start-up LIST must not idle it for a minute.

Found while building the chaos run: `app.start` lists every EcsReinstall (to learn which servers are held) inside
kopf's startup handler. One 500 on that LIST failed the handler, and kopf retries a failed handler after its
default backoff of 60 s: the operator, watching nothing yet, did nothing for a minute (measured: a resource created
at start-up was Submitted after 61.5 s instead of about 1 s). app.start now retries that LIST itself.
"""

from __future__ import annotations

import asyncio

from operator_parts import GROUP, PLURAL, SERVER_ID, VERSION, Parts

from ecs_reinstall import app as app_module
from kube_emulator.faults import FaultRule


async def test_the_startup_list_is_retried_at_once_while_the_api_fails(parts: Parts) -> None:
    await parts.reinstalling(await parts.finished_job())
    list_path = rf"/apis/{GROUP}/{VERSION}/{PLURAL}$"
    parts.kube_handle.faults.add(
        FaultRule(verbs=frozenset({"list"}), path_regex=list_path, error_code=500, times=2)
    )

    app = await asyncio.wait_for(
        app_module.start(parts.settings, kubeconfig=str(parts.kube_handle.kubeconfig), metrics=parts.metrics),
        timeout=30,
    )
    try:
        assert parts.kube_handle.faults.rules() == [], "both injected failures were hit"
        assert app.supervisor.deps.ownership.holder(SERVER_ID) is not None, (
            "the resources were listed and primed"
        )
    finally:
        await app.close()
