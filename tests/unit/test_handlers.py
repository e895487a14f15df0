"""handlers.py: kopf's per-event diff-base is switched off only while no handler needs it."""

import kopf

from ecs_reinstall import handlers


def test_the_operator_registers_no_change_detecting_handler():
    # NoDiffBase is only right while every resource handler is an on.event one: adding on.create/update/resume,
    # on.field or a daemon needs kopf's diff-base back (`start` then keeps kopf's default).
    assert handlers.only_event_handlers(kopf.get_default_registry())


def test_a_change_detecting_handler_keeps_the_diffbase():
    registry = kopf.OperatorRegistry()

    @kopf.on.update("ecs.reinstall.dev", "v1alpha1", "ecsreinstalls", registry=registry)
    def updated(**_):
        pass

    assert not handlers.only_event_handlers(registry)


def test_no_diffbase_builds_and_remembers_nothing():
    storage = handlers.NoDiffBase()
    body = kopf.Body({"metadata": {"name": "x", "annotations": {"a": "b"}}, "spec": {"serverId": "s"}})
    assert storage.build(body=body) == {} and storage.fetch(body=body) is None
