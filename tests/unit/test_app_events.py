"""app.KopfEvents: Events of runners started outside kopf's per-object context (by `Supervisor.lead`) reach kopf's
poster queue, in order, once the watch has shown where it is; inside that context they go straight through."""

from __future__ import annotations

import asyncio
import contextvars

import kopf
from kopf._core.engines import posting

from ecs_reinstall import reconcile as rc
from ecs_reinstall.app import KopfEvents


def body(name: str) -> dict:
    return {
        "apiVersion": "ecs.reinstall.dev/v1alpha1",
        "kind": "EcsReinstall",
        "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}"},
    }


def event(reason: str) -> rc.Event:
    return rc.Event(type="Normal", reason=reason, message=f"{reason} happened")


async def test_events_wait_for_kopfs_queue_then_flow_in_order() -> None:
    posting.settings_var.set(kopf.OperatorSettings())  # kopf sets it for the whole operator
    events = KopfEvents()
    queue: asyncio.Queue = asyncio.Queue()
    events(body("a"), event("Submitting"))  # a runner started by `lead`, before any watch event
    events(body("b"), event("Pending"))
    events.learn()  # outside kopf's per-object context: nothing learnt
    assert queue.empty()

    def in_kopfs_worker() -> None:  # what kopf sets while it processes a watch event
        posting.event_queue_loop_var.set(asyncio.get_running_loop())
        posting.event_queue_var.set(queue)
        events.learn()
        events(body("c"), event("Direct"))

    contextvars.copy_context().run(in_kopfs_worker)
    events(body("a"), event("Accepted"))  # outside the context again, now through the learnt queue
    posted = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [(e.ref["name"], e.reason) for e in posted] == [
        ("a", "Submitting"),
        ("b", "Pending"),
        ("c", "Direct"),
        ("a", "Accepted"),
    ]
    assert posted[0].message == "Submitting happened" and posted[0].type == "Normal"
