"""spec.imageId: a change of OS through the change-OS API, v2 and v1, with the image recorded before and after,
a refused image with a clear message, and a lost job ID decided by the action log like a reinstall's; and a set whose template changes the image."""

import asyncio

from e2e_support import spec

OLD_IMAGE = "0b4a6d2e-1f3c-4e5a-9b7d-2c8e6f0a1b3d"
NEW_IMAGE = "67f433d8-ed0e-4321-a8a2-a71838539e09"
NO_CLOUD_INIT = "5d1c8a4e-7b2f-4c3a-9e6d-1f0a2b3c4d5e"
WINDOWS = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"


def server(n: int) -> str:
    return f"ab2c0c1a-0000-4000-8000-{n:012d}"


async def catalogue(harness) -> None:
    await harness.ecs.admin.add_image(OLD_IMAGE, name="ubuntu-22.04")
    await harness.ecs.admin.add_image(NEW_IMAGE, name="ubuntu-24.04-golden")
    await harness.ecs.admin.add_image(NO_CLOUD_INIT, name="legacy-no-cloud-init", cloud_init=False)
    await harness.ecs.admin.add_image(WINDOWS, name="windows-2022", os_type="Windows")


async def test_a_change_of_os_on_v2_and_v1_records_the_image_before_and_after(harness):
    await catalogue(harness)
    await harness.ecs.admin.add_server(server(1), status="SHUTOFF", image_id=OLD_IMAGE)
    await harness.ecs.admin.add_server(server(2), status="SHUTOFF", image_id=OLD_IMAGE)
    await harness.start_operator()
    await harness.create("golden", spec(server(1), imageId=NEW_IMAGE))
    await harness.create("legacy", spec(server(2), imageId=NO_CLOUD_INIT, cloudInit=False))
    for name, n, image, api in (("golden", 1, NEW_IMAGE, "v2"), ("legacy", 2, NO_CLOUD_INIT, "v1")):
        body = await harness.wait_phase(name, "Succeeded")
        status = body["status"]
        assert status["imageBefore"] == OLD_IMAGE and status["imageAfter"] == image, name
        [record] = await harness.ecs.admin.reinstalls(server(n))
        assert record["kind"] == "change_os" and record["imageid"] == image and record["api"] == api
        assert (await harness.ecs.admin.get_server(server(n)))["image_id"] == image
    events = {e["reason"] for e in await harness.events()}
    assert {"Submitted", "Succeeded"} <= events
    metrics = await harness.metrics_text()
    assert 'operation="change_os"' in metrics and 'operation="change_os_v1"' in metrics


async def test_a_refused_image_fails_with_the_clouds_words(harness):
    await catalogue(harness)
    await harness.ecs.admin.add_server(server(3), status="SHUTOFF", image_id=OLD_IMAGE)
    await harness.ecs.admin.add_server(server(4), status="SHUTOFF", image_id=OLD_IMAGE)
    await harness.start_operator()
    await harness.create("to-windows", spec(server(3), imageId=WINDOWS))
    await harness.create("no-cloud-init-on-v2", spec(server(4), imageId=NO_CLOUD_INIT))
    for name, words in (("to-windows", "Windows"), ("no-cloud-init-on-v2", "Cloud-Init")):
        body = await harness.wait_phase(name, "Failed")
        status = body["status"]
        assert status["failure"]["code"].startswith("Ecs."), status["failure"]
        assert words in status["message"], status["message"]
        assert "create a new EcsReinstall" in status["message"]
    for n in (3, 4):
        assert await harness.ecs.admin.reinstalls(server(n)) == []
        assert (await harness.ecs.admin.get_server(server(n)))["image_id"] == OLD_IMAGE


async def test_a_change_of_os_whose_job_id_is_lost_is_decided_by_the_action_log(harness):
    await catalogue(harness)
    await harness.ecs.admin.add_server(server(5), status="SHUTOFF", image_id=OLD_IMAGE)
    # the cloud takes the request, but the answer never arrives
    await harness.ecs.admin.add_fault("change_os", drop_connection="after", count=1)
    await harness.start_operator()
    await harness.create("lost", spec(server(5), imageId=NEW_IMAGE))
    body = await harness.wait_phase("lost", "Succeeded", timeout=60)
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "SucceededFromActionLog"
    assert body["status"]["imageAfter"] == NEW_IMAGE
    assert len(await harness.ecs.admin.reinstalls(server(5))) == 1  # never sent twice


async def test_a_set_moves_every_tagged_server_to_a_new_image_a_few_at_a_time(harness):
    """'Move everything tagged role=web to image X, two at a time' is one EcsReinstallSet."""
    await catalogue(harness)
    for n in range(10, 16):
        await harness.ecs.admin.add_server(server(n), status="SHUTOFF", image_id=OLD_IMAGE)
        await harness.ecs.admin.tag(server(n), tags={"role": "web"})
    await harness.start_operator()
    body = {
        "apiVersion": "ecs.reinstall.dev/v1alpha1",
        "kind": "EcsReinstallSet",
        "metadata": {"name": "golden"},
        "spec": {
            "selector": {"tags": {"role": "web"}},
            "template": {"imageId": NEW_IMAGE, "adminPasswordSecretRef": {"name": "root-password"}},
            "revision": "ubuntu-24.04",
            "strategy": {"maxInFlight": 2},
        },
    }
    await harness.call(
        harness.custom.create_namespaced_custom_object,
        "ecs.reinstall.dev",
        "v1alpha1",
        harness.namespace,
        "ecsreinstallsets",
        body,
    )
    for _ in range(600):
        got = await harness.call(
            harness.custom.get_namespaced_custom_object,
            "ecs.reinstall.dev",
            "v1alpha1",
            harness.namespace,
            "ecsreinstallsets",
            "golden",
        )
        if (got.get("status") or {}).get("phase") == "Completed":
            break
        await asyncio.sleep(0.2)
    assert got["status"]["phase"] == "Completed" and got["status"]["done"] == 6, got.get("status")
    for n in range(10, 16):
        assert (await harness.ecs.admin.get_server(server(n)))["image_id"] == NEW_IMAGE
        [record] = await harness.ecs.admin.reinstalls(server(n))
        assert record["kind"] == "change_os"
