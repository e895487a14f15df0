"""spec.revisionTag: the durable record of a reinstall on the server itself (what EcsReinstallSet builds on).

A success writes the tag; a resource for a server that already carries it ends Succeeded (AlreadyAtRevision)
without a request, whichever cluster or set made the first one."""

from e2e_support import spec

TAG = {"key": "ecsr-0123456789ab", "value": "golden-2026-12"}


def server(n: int) -> str:
    return f"8a1b0c1a-0000-4000-8000-{n:012d}"


async def test_a_success_writes_the_tag_and_a_second_resource_sends_nothing(harness):
    await harness.ecs.admin.add_server(server(1), status="SHUTOFF")
    await harness.start_operator()
    await harness.create("first", spec(server(1), revisionTag=TAG))
    first = await harness.wait_phase("first", "Succeeded")
    assert first["status"]["revisionTagged"] is True
    details = await harness.ecs.admin.get_server(server(1))
    assert details["tags"][TAG["key"]] == TAG["value"]

    await harness.create("again", spec(server(1), revisionTag=TAG))
    again = await harness.wait_phase("again", "Succeeded")
    ready = next(c for c in again["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "AlreadyAtRevision"
    assert "submittedAt" not in again["status"] and "jobId" not in again["status"]
    assert len(await harness.ecs.admin.reinstalls(server(1))) == 1  # one reinstall for one revision
    assert "AlreadyAtRevision" in await harness.wait_for_events("again", {"AlreadyAtRevision"})

    # another revision of the same set is a new reinstall
    await harness.create(
        "next", spec(server(1), stopServer=True, revisionTag={**TAG, "value": "golden-2027-01"})
    )
    await harness.wait_phase("next", "Succeeded")
    assert len(await harness.ecs.admin.reinstalls(server(1))) == 2


async def test_a_tag_that_cannot_be_written_leaves_the_success_standing_and_says_so(harness):
    await harness.ecs.admin.add_server(server(2), status="SHUTOFF")
    await harness.ecs.admin.add_fault(
        "tag_server", status=403, body={"error": {"code": "Ecs.0008", "message": "no tag permission"}}
    )
    await harness.start_operator()
    await harness.create("untagged", spec(server(2), revisionTag=TAG))
    body = await harness.wait_phase("untagged", "Succeeded")
    assert body["status"]["revisionTagged"] is False
    assert "could not be written on server" in harness.logs.text
