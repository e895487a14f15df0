"""events.KubeEvents: Events queued by runners and sets are posted in order by one task; one the API server
refuses is dropped, one it cannot take now is tried again; a flood is cut; a stop posts what is queued."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from ecs_reinstall import events as events_module
from ecs_reinstall import reconcile as rc
from ecs_reinstall.events import MAX_MESSAGE, KubeEvents, event_body, reference
from ecs_reinstall.kube import Conflict, KubeError, KubeUnavailable


def body(name: str, namespace: str = "ns") -> dict:
    return {
        "apiVersion": "ecs.reinstall.dev/v1alpha1",
        "kind": "EcsReinstall",
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", "resourceVersion": "7"},
        "spec": {"serverId": "s-1"},
    }


def event(reason: str, message: str = "") -> rc.Event:
    return rc.Event(type="Normal", reason=reason, message=message or f"{reason} happened")


class Sink:
    """The API server's side: records what was created; `answers` are raised in turn before accepting."""

    def __init__(self, delay: float = 0.0) -> None:
        self.created: list[tuple[str, dict]] = []
        self.answers: list[Exception] = []
        self.delay = delay
        self.in_flight = self.most_in_flight = 0

    async def create_event(self, namespace: str, body: dict) -> dict:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.answers:
            raise self.answers.pop(0)
        self.created.append((namespace, body))
        return body


async def drained(events: KubeEvents) -> None:
    for _ in range(200):
        if not events.posting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("Events still queued")


def test_the_event_is_a_core_v1_event_about_the_object() -> None:
    now = datetime(2026, 12, 2, 4, 5, 6, 789000, tzinfo=UTC)
    made = event_body(
        reference(body("web")),
        event("Submitted"),
        component="ecs-reinstall-operator",
        instance="pod-1",
        now=now,
    )
    assert made["metadata"] == {"namespace": "ns", "generateName": "web."}
    assert made["involvedObject"] == {
        "apiVersion": "ecs.reinstall.dev/v1alpha1",
        "kind": "EcsReinstall",
        "namespace": "ns",
        "name": "web",
        "uid": "uid-web",
    }
    assert (made["type"], made["reason"], made["message"]) == ("Normal", "Submitted", "Submitted happened")
    assert made["source"] == {"component": "ecs-reinstall-operator"}  # "From" in kubectl describe
    assert (made["reportingComponent"], made["reportingInstance"]) == ("ecs-reinstall-operator", "pod-1")
    assert made["firstTimestamp"] == made["lastTimestamp"] == "2026-12-02T04:05:06Z"
    assert made["eventTime"] == "2026-12-02T04:05:06.789000Z"
    assert "spec" not in str(made) and "s-1" not in str(made)  # nothing of the object but its reference


def test_a_long_message_is_cut_in_the_middle_to_the_api_servers_byte_limit() -> None:
    now = datetime.now(UTC)
    for filler in ("x", "é", "服"):  # 1, 2 and 3 bytes a character: the API server counts bytes
        message = "head " + filler * 3000 + " tail"
        made = event_body(
            reference(body("n" * 253)), event("Failed", message), component="c", instance="i" * 300, now=now
        )
        assert len(made["message"].encode()) <= MAX_MESSAGE
        assert made["message"].startswith("head ") and made["message"].endswith(" tail")
        assert " ... " in made["message"]
    assert made["metadata"]["generateName"] == "n" * 57 + "."  # the API server keeps 58 and adds 5
    assert made["reportingInstance"] == "i" * 128
    short = event_body(
        reference(body("web")), event("Failed", "déjà vu"), component="c", instance="i", now=now
    )
    assert short["message"] == "déjà vu"


async def test_events_are_posted_a_few_at_once_stamped_in_order_without_holding_the_caller() -> None:
    sink = Sink(delay=0.01)
    events = KubeEvents(sink, instance="pod-1")
    for i in range(10):
        events(body(f"r{i}", namespace=f"ns{i % 2}"), event(f"Reason{i}"))  # returns at once
    assert not sink.created
    await drained(events)
    assert sink.most_in_flight == 4  # AT_ONCE, not one by one
    posted = sorted(sink.created, key=lambda created: created[1]["eventTime"])
    assert [(ns, b["reason"], b["involvedObject"]["name"]) for ns, b in posted] == [
        (f"ns{i % 2}", f"Reason{i}", f"r{i}") for i in range(10)
    ]


async def test_an_unavailable_api_is_tried_again_and_a_refusal_is_dropped(monkeypatch) -> None:
    monkeypatch.setattr(events_module, "RETRY_DELAYS", (0.01, 0.01))
    sink = Sink()
    events = KubeEvents(sink, instance="pod-1")
    sink.answers = [KubeUnavailable(503, "Service Unavailable"), Conflict(409, "AlreadyExists")]
    events(body("a"), event("Submitted"))  # accepted at the third try (the second's generated name was taken)
    await drained(events)
    sink.answers = [KubeError(403, "Forbidden")]
    events(body("b"), event("Submitted"))  # refused: dropped, not tried again
    events(body("c"), event("Succeeded"))  # the next one goes on
    await drained(events)
    sink.answers = [KubeUnavailable(503, "x")] * 3
    events(body("d"), event("Submitted"))  # unavailable three times: dropped
    await drained(events)
    assert [b["involvedObject"]["name"] for _, b in sink.created] == ["a", "c"]


async def test_a_flood_is_cut_at_the_limit() -> None:
    sink = Sink(delay=0.01)
    events = KubeEvents(sink, instance="pod-1", limit=3)
    for i in range(10):
        events(body(f"r{i}"), event("Submitted"))
    await drained(events)
    assert len(sink.created) == 3 and events.dropped == 7


async def test_a_stop_posts_what_is_queued_within_its_time() -> None:
    sink = Sink(delay=0.01)
    events = KubeEvents(sink, instance="pod-1")
    for i in range(5):
        events(body(f"r{i}"), event("DeletionWaitsForRequest"))
    await events.aclose()
    assert len(sink.created) == 5

    events(body("late"), event("Submitted"))  # after the stop: dropped, nothing left running
    assert events.dropped == 1 and not events.posting

    slow = Sink(delay=10.0)
    events = KubeEvents(slow, instance="pod-1")
    events(body("r"), event("Submitted"))
    started = asyncio.get_running_loop().time()
    await events.aclose(timeout=0.1)  # does not wait for an API server that hangs
    assert asyncio.get_running_loop().time() - started < 1.0 and not slow.created and not events.posting


async def test_an_unexpected_failure_is_logged_and_the_next_events_still_go(caplog) -> None:
    sink = Sink()
    events = KubeEvents(sink, instance="pod-1")
    sink.answers = [RuntimeError("a bug")]
    for name in "abcde":  # two rounds: the first one's failure must not end the posting task
        events(body(name), event("Submitted"))
    await drained(events)
    assert sorted(b["involvedObject"]["name"] for _, b in sink.created) == ["b", "c", "d", "e"]
    assert "posting an Event failed" in caplog.text


async def test_an_event_slow_to_post_holds_no_other(monkeypatch) -> None:
    monkeypatch.setattr(events_module, "RETRY_DELAYS", (0.3, 0.3))
    sink = Sink()
    events = KubeEvents(sink, instance="pod-1")
    sink.answers = [KubeUnavailable(503, "x")]  # the first one waits 0.3 s for its second try
    for i in range(9):
        events(body(f"r{i}"), event("Submitted"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    while len(sink.created) < 8:  # the other eight, before the first one's second try (0.3 s)
        assert loop.time() - started < 0.25, "the Events after a slow one waited for it"
        await asyncio.sleep(0.01)
    assert sorted(b["involvedObject"]["name"] for _, b in sink.created) == [f"r{i}" for i in range(1, 9)]
    await drained(events)
    assert len(sink.created) == 9
