"""Each way to log in reaches the API exactly as the API page describes, and the resource ends Ready."""

import base64
import hashlib

from e2e_support import PASSWORD, spec

KMS_KEY = "83cdb0ae-5bb4-4a1e-a2a1-64b71e54f3f6"
USER_ID = "7e25b1da389f4697a79df3a0e5bd494e"
CLOUD_CONFIG = (
    "#cloud-config\nchpasswd:\n  expire: false\nruncmd:\n  - echo e2e-user-data-marker > /etc/motd\n"
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def server(n: int) -> str:
    return f"6e2f0c1a-0000-4000-8000-{n:012d}"


async def reinstalled(harness, name: str, server_id: str) -> dict:
    body = await harness.wait_phase(name, "Succeeded")
    conditions = {c["type"]: c["status"] for c in body["status"]["conditions"]}
    assert conditions == {"Ready": "True", "Reconciling": "False", "Stalled": "False", "Submitted": "True"}
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    assert body["status"]["jobStatus"] == "SUCCESS" and body["status"]["completedAt"]
    [accepted] = await harness.ecs.admin.reinstalls(server_id)  # exactly one reinstall reached the cloud
    assert accepted["job_id"] == body["status"]["jobId"]
    return accepted


async def test_password_from_a_secret_with_every_option(harness):
    await harness.ecs.admin.add_server(server(1), status="ACTIVE")
    await harness.start_operator()
    await harness.create(
        "web-01",
        spec(
            server(1), stopServer=True, byol=True, userId=USER_ID, systemDiskEncryption={"kmsKeyId": KMS_KEY}
        ),
    )
    accepted = await reinstalled(harness, "web-01", server(1))
    assert accepted["api"] == "v2"
    assert accepted["adminpass_sha256"] == sha256(PASSWORD.encode())
    assert accepted["mode"] == "withStopServer" and accepted["userid"] == USER_ID
    assert accepted["metadata"] == {"BYOL": "true", "__system__encrypted": "1", "__system__cmkid": KMS_KEY}


async def test_key_pair(harness):
    await harness.ecs.admin.add_server(server(2), status="SHUTOFF")
    await harness.ecs.admin.add_keypair("KeyPair-350b")
    await harness.start_operator()
    await harness.create("web-02", spec(server(2), keyName="KeyPair-350b", userId=USER_ID))
    accepted = await reinstalled(harness, "web-02", server(2))
    assert accepted["keyname"] == "KeyPair-350b" and accepted["userid"] == USER_ID
    assert accepted["adminpass_sha256"] is None and "mode" not in accepted["fields"]


async def test_user_data_inline_from_a_secret_and_from_a_config_map(harness):
    for n in (3, 4, 5):
        await harness.ecs.admin.add_server(server(n), status="SHUTOFF")
    await harness.create_secret("cloud-init", {"user-data": CLOUD_CONFIG})
    await harness.create_config_map("cloud-config", {"user-data": CLOUD_CONFIG})
    await harness.start_operator()
    await harness.create("inline", spec(server(3), userData={"value": CLOUD_CONFIG}))
    await harness.create(
        "from-secret",
        spec(server(4), userData={"valueFrom": {"secretKeyRef": {"name": "cloud-init", "key": "user-data"}}}),
    )
    await harness.create(
        "from-config-map",
        spec(
            server(5),
            userData={"valueFrom": {"configMapKeyRef": {"name": "cloud-config", "key": "user-data"}}},
        ),
    )
    for name, n in (("inline", 3), ("from-secret", 4), ("from-config-map", 5)):
        accepted = await reinstalled(harness, name, server(n))
        assert accepted["user_data_sha256"] == sha256(CLOUD_CONFIG.encode()), name  # decoded by the cloud
        assert accepted["adminpass_sha256"] is None and accepted["keyname"] is None
    encoded = base64.b64encode(CLOUD_CONFIG.encode()).decode()
    assert encoded not in harness.logs.text


async def test_cloud_init_false_uses_the_v1_api(harness):
    await harness.ecs.admin.add_server(server(6), status="SHUTOFF")
    await harness.start_operator()
    await harness.create("legacy", spec(server(6), cloudInit=False))
    accepted = await reinstalled(harness, "legacy", server(6))
    assert accepted["api"] == "v1"
    assert accepted["adminpass_sha256"] == sha256(PASSWORD.encode())


async def test_credentials_from_the_resource_namespace_and_temporary_tokens(harness):
    """spec.credentialsSecretRef (a Secret of the resource's own namespace) with a security token."""
    token = "e2e-security-token-value-000000000001"
    await harness.ecs.admin.add_credential(
        "E2ETEMPORARYAK000001",
        "e2e-temporary-secret-key-00000000000000001",
        security_token=token,
        project_id=harness.ecs.project_id,
    )
    await harness.create_secret(
        "team-credentials",
        {
            "accessKey": "E2ETEMPORARYAK000001",
            "secretKey": "e2e-temporary-secret-key-00000000000000001",
            "securityToken": token,
            "projectId": harness.ecs.project_id,
        },
    )
    await harness.ecs.admin.add_server(server(7), status="SHUTOFF")
    await harness.start_operator()
    await harness.create(
        "own-credentials", spec(server(7), credentialsSecretRef={"name": "team-credentials"})
    )
    accepted = await reinstalled(harness, "own-credentials", server(7))
    assert accepted["access_key"] == "E2ETEMPORARYAK000001"
