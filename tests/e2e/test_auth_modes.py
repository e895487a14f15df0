"""Each way to log in reaches the API exactly as the API page describes, and ends Ready."""

import hashlib

from conftest import spec

SERVER = "6e2f0c1a-0000-4000-8000-00000000000{}"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_password_from_a_secret(harness):
    server = SERVER.format(1)
    await harness.ecs.admin.add_server(server, status="ACTIVE")
    await harness.start_operator()
    await harness.create(
        "web-01",
        spec(
            server,
            stopServer=True,
            byol=True,
            systemDiskEncryption={"kmsKeyId": "83cdb0ae-5bb4-4a1e-a2a1-64b71e54f3f6"},
        ),
    )
    body = await harness.wait_phase("web-01", "Succeeded")
    conditions = {c["type"]: c["status"] for c in body["status"]["conditions"]}
    assert conditions == {"Ready": "True", "Reconciling": "False", "Stalled": "False", "Submitted": "True"}
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    [accepted] = await harness.ecs.admin.reinstalls(server)
    print(accepted)
    assert accepted["api"] == "v2"
