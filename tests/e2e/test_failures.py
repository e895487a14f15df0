"""Terminal outcomes: each says what went wrong and how to fix it, with the cloud's code where there is one."""

import pytest
from e2e_support import spec
from kubernetes.client.exceptions import ApiException


def server(n: int) -> str:
    return f"8b4f0c1a-0000-4000-8000-{n:012d}"


def conditions(body):
    return {c["type"]: (c["status"], c["reason"]) for c in body["status"]["conditions"]}


async def test_a_password_breaking_the_rules_waits_without_showing_it_and_goes_on_once_fixed(harness):
    """What a user fixes outside the resource lets it go on: a password is in a Secret, so a weak one is a wait
    (InvalidInput), noticed again within seconds of the fix, never a failure that only re-creating cures."""
    weak = "alllowercase"
    await harness.create_secret("weak", {"password": weak})
    await harness.ecs.admin.add_server(server(1), status="SHUTOFF")
    await harness.start_operator(input_recheck_seconds=1.0)
    await harness.create("weak", spec(server(1), adminPasswordSecretRef={"name": "weak"}))
    body = await harness.wait_for(
        "weak", lambda b: (b.get("status") or {}).get("waitingFor", "").startswith("a valid value")
    )
    status = body["status"]
    assert status["phase"] == "Pending" and "failure" not in status
    assert "3 of" in status["message"] or "classes" in status["message"]
    assert "Secret" in status["message"] and "weak" in status["message"]  # where to fix it
    assert weak not in str(body)
    assert conditions(body)["Reconciling"] == ("True", "InvalidInput")
    assert await harness.ecs.admin.reinstalls(server(1)) == []
    await harness.replace_secret("weak", {"password": "Reinstall!2026pw"})
    body = await harness.wait_phase("weak", "Succeeded", timeout=30)
    assert len(await harness.ecs.admin.reinstalls(server(1))) == 1


@pytest.mark.since("1.25", reason="the CRD's x-kubernetes-validations (CEL) rules")
async def test_the_api_rejects_a_spec_the_schema_forbids(harness):
    with pytest.raises(ApiException) as rejected:
        await harness.create("bad", spec(server(2), keyName="KeyPair-1"))  # keyName needs userId
    assert rejected.value.status == 422
    assert "userId" in rejected.value.body


@pytest.mark.since("1.25", reason="the CRD's CEL transition rule self == oldSelf")
async def test_the_spec_is_immutable(harness):
    await harness.create("fixed", spec(server(3)))
    with pytest.raises(ApiException) as rejected:
        await harness.call(
            harness.custom.patch_namespaced_custom_object,
            "ecs.reinstall.dev",
            "v1alpha1",
            harness.namespace,
            "ecsreinstalls",
            "fixed",
            {"spec": {"stopServer": True}},
        )
    assert rejected.value.status == 422 and "immutable" in rejected.value.body


async def test_a_failed_job_carries_the_cloud_code_and_reason(harness):
    await harness.ecs.admin.add_server(
        server(4), status="SHUTOFF", outcome="FAIL", fail_code="Ecs.1000", fail_reason="image download failed"
    )
    await harness.start_operator()
    await harness.create("doomed", spec(server(4)))
    body = await harness.wait_phase("doomed", "Failed")
    assert body["status"]["failure"] == {"code": "Ecs.1000", "reason": "image download failed"}
    assert body["status"]["jobStatus"] == "FAIL"
    assert conditions(body)["Stalled"] == ("True", "JobFailed")
    assert conditions(body)["Submitted"][0] == "True"
    assert len(await harness.ecs.admin.reinstalls(server(4))) == 1


async def test_a_missing_key_pair_waits_and_goes_on_once_it_is_created(harness):
    """Ecs.0314: the cloud refused the request (nothing started) for a key pair the user creates in the cloud:
    a wait (InvalidInput), and a new attempt once it exists, never a failure that only re-creating cures."""
    await harness.ecs.admin.add_server(server(5), status="SHUTOFF")
    await harness.start_operator(input_recheck_seconds=0.2)
    await harness.create(
        "no-keypair", spec(server(5), keyName="KeyPair-later", userId="7e25b1da389f4697a79df3a0e5bd494e")
    )
    body = await harness.wait_for(
        "no-keypair",
        lambda b: (
            conditions(b).get("Reconciling", ("", ""))[1] == "InvalidInput"
            if "status" in b and b["status"].get("conditions")
            else False
        ),
    )
    assert body["status"]["phase"] == "Pending" and "failure" not in body["status"]
    assert "Ecs.0314" in body["status"]["message"] and "create it" in body["status"]["message"]
    assert await harness.ecs.admin.reinstalls(server(5)) == []
    await harness.ecs.admin.add_keypair("KeyPair-later")
    await harness.wait_phase("no-keypair", "Succeeded", timeout=30)
    assert len(await harness.ecs.admin.reinstalls(server(5))) == 1


async def test_an_unknown_server_fails(harness):
    await harness.start_operator()
    await harness.create("ghost", spec(server(6)))
    body = await harness.wait_phase("ghost", "Failed")
    assert body["status"]["failure"]["code"] == "Ecs.0114"


async def test_a_job_past_its_timeout_fails_and_says_it_may_still_run(harness):
    await harness.ecs.admin.add_server(server(7), status="SHUTOFF", job_seconds=600)
    await harness.start_operator()
    await harness.create("slow", spec(server(7), timeoutSeconds=60, pollIntervalSeconds=5))
    body = await harness.wait_phase("slow", "Failed", timeout=90)
    assert body["status"]["failure"]["code"] == "Timeout"
    assert "may still run" in body["status"]["message"]
    requests = (await harness.ecs.admin.counters())["requests"]
    # ~60 s / 5 s: the server looked at within every interval (one server: no eager round, it would cost more
    # than half of polling the job); the job read when the timeout passed
    assert 10 <= requests.get("list_servers:200", 0) <= 16, requests
    assert 1 <= requests.get("get_job:200", 0) <= 2, requests
