"""Tenancy on a shared cluster: who may use the operator's default credentials, and which namespace owns a server.

Each refusal is terminal (Failed, reason Forbidden), comes before anything is sent, and is an Event and a metric;
each allowed case goes through. The operator runs with the secure default here: only its own namespace may use
the default credentials unless a setting says more (the other e2e modules opt every namespace in).
"""

from e2e_support import ACCESS_KEY, OPERATOR_NAMESPACE, PASSWORD, PROJECT_ID, SECRET_KEY, spec

OWNER_TAG = "ecs-reinstall-namespace"
SELECTOR = "tenancy.ecs.reinstall.dev/default-credentials=allowed"


def server(n: int) -> str:
    return f"7e4a0c1a-0000-4000-8000-{n:012d}"


def conditions(body: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in body["status"]["conditions"]}


def refused(body: dict, code: str) -> str:
    status = body["status"]
    assert status["phase"] == "Failed" and status["failure"]["code"] == code, status
    assert conditions(body)["Stalled"] == ("True", "Forbidden")
    assert conditions(body)["Ready"][0] == "False"
    assert "submittedAt" not in status and "jobId" not in status and "attempt" not in status
    return status["message"]


def refused_total(metrics: str, reason: str) -> float:
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith(f'ecs_reinstall_refused_total{{reason="{reason}"}}')
    )
    return float(line.split()[-1])


async def make_namespace(harness, name: str, labels: dict[str, str] | None = None) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
    await harness.call(harness.core.create_namespace, body)
    await harness.create_secret("root-password", {"password": PASSWORD}, name)


async def test_default_credentials_are_refused_in_a_namespace_not_allowed_before_any_cloud_call(harness):
    await harness.ecs.admin.add_server(server(1), status="SHUTOFF")
    await harness.start_operator(default_credentials_namespaces=())
    await harness.create("borrowed", spec(server(1)))
    body = await harness.wait_phase("borrowed", "Failed")
    message = refused(body, "DefaultCredentialsNotAllowed")
    assert 'Namespace "team-a" may not use the operator\'s default credentials' in message
    assert "nothing was sent" in message and "spec.credentialsSecretRef" in message
    assert "--default-credentials-namespaces" in message and "create a new EcsReinstall" in message
    counters = await harness.ecs.admin.counters()
    assert counters["total_requests"] == 0, counters["requests"]  # not even a read of the server
    seen = await harness.wait_for_events("borrowed", {"Forbidden"})
    assert "Forbidden" in seen
    metrics = await harness.metrics_text()
    assert refused_total(metrics, "DefaultCredentialsNotAllowed") == 1
    assert refused_total(metrics, "ServerNotOwned") == 0


async def test_default_credentials_in_allowed_namespaces_and_own_credentials_anywhere(harness):
    """Allowed: the operator's own namespace, a listed one, one whose labels match the selector, and any namespace
    with its own credentials Secret. Refused: an unlisted, unlabelled namespace without one."""
    for n in range(2, 7):
        await harness.ecs.admin.add_server(server(n), status="SHUTOFF")
    await make_namespace(harness, "team-b")
    await make_namespace(harness, "team-c", {"tenancy.ecs.reinstall.dev/default-credentials": "allowed"})
    await harness.create_secret("root-password", {"password": PASSWORD}, OPERATOR_NAMESPACE)
    await harness.create_secret(
        "team-credentials", {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "projectId": PROJECT_ID}
    )
    await harness.start_operator(
        default_credentials_namespaces=("team-b",), default_credentials_namespace_selector=SELECTOR
    )
    await harness.create("own-namespace", spec(server(2)), OPERATOR_NAMESPACE)
    await harness.create("listed", spec(server(3)), "team-b")
    await harness.create("labelled", spec(server(4)), "team-c")
    await harness.create(
        "own-credentials", spec(server(5), credentialsSecretRef={"name": "team-credentials"})
    )
    await harness.create("unlisted", spec(server(6)))
    for name, namespace, n in (
        ("own-namespace", OPERATOR_NAMESPACE, 2),
        ("listed", "team-b", 3),
        ("labelled", "team-c", 4),
        ("own-credentials", None, 5),
    ):
        await harness.wait_phase(name, "Succeeded", namespace=namespace)
        assert len(await harness.ecs.admin.reinstalls(server(n))) == 1, name
    refused(await harness.wait_phase("unlisted", "Failed"), "DefaultCredentialsNotAllowed")
    assert await harness.ecs.admin.reinstalls(server(6)) == []
    # the audit line: which Secret each submission used, by name
    assert 'credentials of Secret "default-credentials" in namespace "ecs-system"' in harness.logs.text
    assert 'credentials of Secret "team-credentials" in namespace "team-a"' in harness.logs.text


async def test_a_server_tagged_for_another_namespace_is_refused_and_its_tag_is_not_shown(harness):
    await harness.ecs.admin.add_server(server(10), status="SHUTOFF")  # team-a's
    await harness.ecs.admin.add_server(server(11), status="SHUTOFF")  # team-b's
    await harness.ecs.admin.add_server(server(12), status="SHUTOFF")  # nobody's
    await harness.ecs.admin.add_server(server(13), status="SHUTOFF")  # team-a's, under a listed alias
    await harness.ecs.admin.tag(server(10), tags={OWNER_TAG: "team-a", "role": "web"})
    await harness.ecs.admin.tag(server(11), tags={OWNER_TAG: "team-b-secret-project"})
    await harness.ecs.admin.tag(server(13), tags={OWNER_TAG: "web-fleet-a"})
    await harness.start_operator(
        default_credentials_namespaces=("*",),
        owner_tag_key=OWNER_TAG,
        owner_tag_values=(("team-a", ("web-fleet-a",)),),
    )
    for name, n in (("mine", 10), ("theirs", 11), ("untagged", 12), ("alias", 13)):
        await harness.create(name, spec(server(n)))
    await harness.wait_phase("mine", "Succeeded")
    await harness.wait_phase("alias", "Succeeded")
    for name, n in (("theirs", 11), ("untagged", 12)):
        message = refused(await harness.wait_phase(name, "Failed"), "ServerNotOwned")
        assert f'Server {server(n)} is not tagged for namespace "team-a"' in message
        assert f'"{OWNER_TAG}=team-a" or "{OWNER_TAG}=web-fleet-a"' in message
        assert await harness.ecs.admin.reinstalls(server(n)) == []
    everything = harness.logs.text + str(await harness.events()) + str(await harness.all_reinstalls())
    assert "team-b-secret-project" not in everything  # another tenant's tag value is never shown
    assert {"Forbidden"} <= await harness.wait_for_events("theirs", {"Forbidden"})
    metrics = await harness.metrics_text()
    assert refused_total(metrics, "ServerNotOwned") == 2
    assert 'ecs_reinstall_finished_total{code="ServerNotOwned",result="Failed"} 2.0' in metrics
