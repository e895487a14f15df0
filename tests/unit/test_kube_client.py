"""kube.Kube on a local HTTP server: auth and user agent from the kubernetes client's configuration, JSON in and
out, errors translated by status (never with the body), Secret reads decoded and shared through the cache."""

import asyncio
import base64
import json

import kubernetes
import pytest
from aiohttp import web

from ecs_reinstall.kube import Conflict, Kube, KubeError, KubeUnavailable, NotFound, lean

SECRET_VALUE = "s3cret-Value!"


@pytest.fixture
async def server():
    seen: list[dict] = []
    answers: dict[str, tuple[int, object]] = {}

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "auth": request.headers.get("Authorization"),
                "agent": request.headers.get("User-Agent"),
                "type": request.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
        )
        status, payload = answers.get(request.path, (404, {"kind": "Status", "message": "not found"}))
        return web.Response(status=status, text=json.dumps(payload), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seen, answers
    await runner.cleanup()


def make_kube(host: str, **kwargs) -> Kube:
    configuration = kubernetes.client.Configuration()
    configuration.host = host
    configuration.api_key = {"authorization": "token-1"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = "ecs-reinstall-operator/test"
    return Kube(client, **kwargs)


SECRET_PATH = "/api/v1/namespaces/ns/secrets/pw"
STATUS_PATH = "/apis/ecs.reinstall.dev/v1alpha1/namespaces/ns/ecsreinstalls/web/status"


async def test_a_status_write_without_its_precondition_is_refused_before_any_call(server):
    host, seen, _ = server
    kube = make_kube(host)
    try:
        with pytest.raises(ValueError, match="resourceVersion and uid"):
            await kube.patch_status("ns", "web", {"phase": "Pending"}, resource_version="", uid="u1")
    finally:
        await kube.aclose()
    assert seen == []


async def test_an_event_is_created_in_its_namespace(server):
    host, seen, answers = server
    path = "/api/v1/namespaces/team a/events"  # as the server decodes it (sent as team%20a)
    answers[path] = (201, {"metadata": {"name": "web.abcde"}})
    kube = make_kube(host)
    try:
        created = await kube.create_event("team a", {"kind": "Event", "reason": "Submitted"})
    finally:
        await kube.aclose()
    assert created["metadata"]["name"] == "web.abcde"
    assert [(s["method"], s["path"], s["type"], s["body"]) for s in seen] == [
        (
            "POST",
            "/api/v1/namespaces/team a/events",
            "application/json",
            {"kind": "Event", "reason": "Submitted"},
        )
    ]


async def test_auth_user_agent_and_a_guarded_merge_patch(server):
    host, seen, answers = server
    answers[STATUS_PATH] = (200, {"metadata": {"resourceVersion": "8"}, "status": {"phase": "Submitting"}})
    kube = make_kube(host)
    try:
        updated = await kube.patch_status(
            "ns", "web", {"phase": "Submitting"}, resource_version="7", uid="u1"
        )
    finally:
        await kube.aclose()
    assert updated["metadata"]["resourceVersion"] == "8"
    assert seen == [
        {
            "method": "PATCH",
            "path": STATUS_PATH,
            "auth": "Bearer token-1",
            "agent": "ecs-reinstall-operator/test",
            "type": "application/merge-patch+json",
            "body": {"status": {"phase": "Submitting"}, "metadata": {"resourceVersion": "7", "uid": "u1"}},
        }
    ]


async def test_a_refreshed_token_is_used_on_the_next_call(server):
    host, seen, answers = server
    answers[SECRET_PATH] = (200, {"data": {}})
    kube = make_kube(host)
    tokens = iter(["token-2", "token-3"])

    def refresh(configuration):
        configuration.api_key["authorization"] = next(tokens)

    kube._config.refresh_api_key_hook = refresh
    try:
        await kube.read_secret("ns", "pw")
        kube.cache.forget(("Secret", "ns", "pw"))
        await kube.read_secret("ns", "pw")  # within the second: the same header, the token not read again
        await asyncio.sleep(1.05)
        kube.cache.forget(("Secret", "ns", "pw"))
        await kube.read_secret("ns", "pw")
    finally:
        await kube.aclose()
    assert [s["auth"] for s in seen] == ["Bearer token-2", "Bearer token-2", "Bearer token-3"]


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, NotFound), (409, Conflict), (429, KubeUnavailable), (500, KubeUnavailable), (403, KubeError)],
)
async def test_errors_are_translated_by_status_without_the_body(server, status, error):
    host, _, answers = server
    answers[SECRET_PATH] = (status, {"kind": "Status", "message": f"echo {SECRET_VALUE}"})
    kube = make_kube(host)
    try:
        with pytest.raises(error) as exc:
            await kube.read_secret("ns", "pw")
    finally:
        await kube.aclose()
    assert exc.value.status == status and SECRET_VALUE not in str(exc.value)
    if error is KubeError:
        assert not isinstance(exc.value, KubeUnavailable)


async def test_an_unreachable_api_is_unavailable():
    kube = make_kube("http://127.0.0.1:9")  # discard port: connection refused
    try:
        with pytest.raises(KubeUnavailable) as exc:
            await kube.get_reinstall("ns", "web")
    finally:
        await kube.aclose()
    assert exc.value.status == 0


async def test_secret_data_is_decoded_and_reads_are_shared_through_the_cache(server):
    host, seen, answers = server
    data = {"password": base64.b64encode(SECRET_VALUE.encode()).decode()}
    answers[SECRET_PATH] = (200, {"kind": "Secret", "data": data})
    kube = make_kube(host, cache_seconds=30)
    try:
        assert await kube.read_secret("ns", "pw") == {"password": SECRET_VALUE.encode()}
        assert await kube.read_secret("ns", "pw") == {"password": SECRET_VALUE.encode()}
        kube.forget("Secret", "ns", "pw")
        await kube.read_secret("ns", "pw")
    finally:
        await kube.aclose()
    assert [s["path"] for s in seen] == [SECRET_PATH, SECRET_PATH]


async def test_config_maps_merge_data_and_binary_data(server):
    host, _, answers = server
    path = "/api/v1/namespaces/ns/configmaps/ud"
    answers[path] = (
        200,
        {"data": {"a": "text"}, "binaryData": {"b": base64.b64encode(b"\x00\x01").decode()}},
    )
    kube = make_kube(host)
    try:
        assert await kube.read_config_map("ns", "ud") == {"a": b"text", "b": b"\x00\x01"}
    finally:
        await kube.aclose()


async def test_list_reinstalls_per_namespace_or_cluster_wide(server):
    host, seen, answers = server
    answers["/apis/ecs.reinstall.dev/v1alpha1/ecsreinstalls"] = (200, {"items": [{"n": 1}]})
    answers["/apis/ecs.reinstall.dev/v1alpha1/namespaces/a/ecsreinstalls"] = (200, {"items": [{"n": 2}]})
    answers["/apis/ecs.reinstall.dev/v1alpha1/namespaces/b/ecsreinstalls"] = (200, {"items": []})
    kube = make_kube(host)
    try:
        assert await kube.list_reinstalls() == [{"n": 1}]
        assert await kube.list_reinstalls(("a", "b")) == [{"n": 2}]
    finally:
        await kube.aclose()
    assert all(s["method"] == "GET" and s["type"] is None for s in seen)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (
            {"metadata": {"name": "a", "managedFields": [{"manager": "kubectl"}]}, "spec": {"x": 1}},
            {"metadata": {"name": "a"}, "spec": {"x": 1}},
        ),
        ({"metadata": {"name": "a"}, "status": {}}, {"metadata": {"name": "a"}, "status": {}}),
        ({"kind": "Status"}, {"kind": "Status"}),
    ],
)
def test_lean_drops_managed_fields_and_leaves_the_given_object_as_it_was(given, kept):
    before = json.dumps(given, sort_keys=True)
    assert lean(given) == kept
    assert json.dumps(given, sort_keys=True) == before  # kopf's watch event, say, is not ours to change
