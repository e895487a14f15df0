"""The ECS emulator's public server tag API and server list API, over real HTTP, signed like every other call:
``GET /v1/{project_id}/cloudservers/{id}/tags``, ``POST .../tags/action`` (create / delete) and
``GET /v1/{project_id}/cloudservers/detail`` (paging, tag / not-tags / status / name filters).

Requests are signed with the operator's signer (`ecs_reinstall.cloud.signing`) and sent with httpx.
"""

from __future__ import annotations

import json
import math
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ecs_emulator.clock import FakeClock, iso_seconds
from ecs_emulator.testing import EmulatorHandle, running_emulator
from ecs_reinstall.cloud.signing import sign_request


class Api:
    """Signed calls to one emulator."""

    def __init__(self, emulator: EmulatorHandle, http: httpx.AsyncClient) -> None:
        self.emulator = emulator
        self.http = http
        self.project_id = emulator.project_id

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        raw_body: bytes | None = None,
        query: list[tuple[str, object]] | None = None,
        signed: bool = True,
        access_key: str | None = None,
        secret_key: str | None = None,
        project_id: str | None = None,
    ) -> httpx.Response:
        content = (
            raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        )
        if not signed:
            return await self.http.request(
                method, self.emulator.url + path, params=query or None, content=content
            )
        request = sign_request(
            method,
            self.emulator.url + path,
            headers={"Content-Type": "application/json;charset=UTF-8"},
            body=content,
            access_key=access_key or self.emulator.access_key,
            secret_key=secret_key or self.emulator.secret_key,
            project_id=project_id or self.project_id,
            query=query,
        )
        return await self.http.request(method, request.url, headers=request.wire_headers(), content=content)

    # --- tags ---

    async def tag_action(self, server_id: str, body: object, **kwargs) -> httpx.Response:
        return await self.call(
            "POST", f"/v1/{self.project_id}/cloudservers/{server_id}/tags/action", body, **kwargs
        )

    async def create(self, server_id: str, tags: dict[str, str]) -> httpx.Response:
        items = [{"key": key, "value": value} for key, value in tags.items()]
        return await self.tag_action(server_id, {"action": "create", "tags": items})

    async def delete(self, server_id: str, items: list[dict]) -> httpx.Response:
        return await self.tag_action(server_id, {"action": "delete", "tags": items})

    async def tags_response(self, server_id: str, **kwargs) -> httpx.Response:
        return await self.call("GET", f"/v1/{self.project_id}/cloudservers/{server_id}/tags", **kwargs)

    async def tags(self, server_id: str) -> dict[str, str]:
        response = await self.tags_response(server_id)
        assert response.status_code == 200, response.text
        items = response.json()["tags"]
        assert [item["key"] for item in items] == sorted(item["key"] for item in items)
        assert all(set(item) == {"key", "value"} for item in items)
        return {item["key"]: item["value"] for item in items}

    async def server(self, server_id: str) -> dict:
        response = await self.call("GET", f"/v1/{self.project_id}/cloudservers/{server_id}")
        assert response.status_code == 200, response.text
        return response.json()["server"]

    # --- the list ---

    async def list_response(self, **params: object) -> httpx.Response:
        query = [
            (key.replace("_", "-") if key == "not_tags" else key, value) for key, value in params.items()
        ]
        return await self.call("GET", f"/v1/{self.project_id}/cloudservers/detail", query=query)

    async def list(self, **params: object) -> tuple[int, list[str]]:
        """(count, the IDs of the page)."""
        response = await self.list_response(**params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"count", "servers"}
        return body["count"], [server["id"] for server in body["servers"]]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0, verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)) as client:
        yield client


@pytest.fixture
def api(ecs_emulator: EmulatorHandle, http: httpx.AsyncClient) -> Api:
    return Api(ecs_emulator, http)


@pytest.fixture
async def cloud(http: httpx.AsyncClient) -> AsyncIterator[tuple[Api, FakeClock]]:
    """An emulator on a fake clock (whole seconds)."""
    clock = FakeClock(start=float(math.floor(time.time())))
    async with running_emulator(clock=clock) as emulator:
        yield Api(emulator, http), clock


def ecs_error(response: httpx.Response, status: int, code: str) -> str:
    """Assert an ECS-shaped error with this status and code; return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert response.headers["X-Request-Id"]
    return body["error"]["message"]


# --- tags: read, create, overwrite, delete ----------------------------------------------------------------


async def test_tags_create_read_overwrite_and_delete(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    assert await api.tags("srv-1") == {}

    response = await api.create("srv-1", {"owner": "team-a", "env": "prod", "empty": ""})
    assert response.status_code == 204 and response.content == b""
    assert response.headers["X-Request-Id"]
    assert await api.tags("srv-1") == {"empty": "", "env": "prod", "owner": "team-a"}
    assert (await api.server("srv-1"))["tags"] == ["empty=", "env=prod", "owner=team-a"]
    assert (await api.emulator.admin.get_server("srv-1"))["tags"] == {
        "owner": "team-a",
        "env": "prod",
        "empty": "",
    }

    assert (await api.create("srv-1", {"env": "prod"})).status_code == 204  # idempotent
    assert (await api.create("srv-1", {"env": "staging"})).status_code == 204  # overwrites the value
    assert await api.tags("srv-1") == {"empty": "", "env": "staging", "owner": "team-a"}

    # a value that differs leaves the tag; the same value, or none, deletes it; an absent key is fine
    assert (await api.delete("srv-1", [{"key": "env", "value": "prod"}])).status_code == 204
    assert await api.tags("srv-1") == {"empty": "", "env": "staging", "owner": "team-a"}
    assert (
        await api.delete("srv-1", [{"key": "env", "value": "staging"}, {"key": "owner"}])
    ).status_code == 204
    assert await api.tags("srv-1") == {"empty": ""}
    assert (await api.delete("srv-1", [{"key": "empty", "value": ""}, {"key": "never"}])).status_code == 204
    assert await api.tags("srv-1") == {}
    assert (await api.server("srv-1"))["tags"] == []

    counters = await api.emulator.admin.counters()
    assert counters["requests"]["tag_server:204"] == 6
    assert counters["requests"]["get_server_tags:200"] >= 6
    assert counters["operations"] == {}  # not an operation by someone else


async def test_value_may_be_left_out_on_create(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    response = await api.tag_action(
        "srv-1", {"action": "create", "tags": [{"key": "k"}, {"key": "n", "value": None}]}
    )
    assert response.status_code == 204, response.text
    assert await api.tags("srv-1") == {"k": "", "n": ""}


async def test_a_tag_edit_moves_updated_and_writes_no_action(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    created = (await api.server("srv-1"))["updated"]
    clock.advance(5)
    assert (await api.create("srv-1", {"a": "1"})).status_code == 204
    after_create = (await api.server("srv-1"))["updated"]
    assert after_create == iso_seconds(clock.now()) and after_create != created
    clock.advance(5)
    assert (await api.delete("srv-1", [{"key": "a"}])).status_code == 204
    assert (await api.server("srv-1"))["updated"] == iso_seconds(clock.now())
    actions = await api.emulator.admin.actions("srv-1")
    assert [action["action"] for action in actions] == ["create"]  # as the admin "tag" operation


async def test_tags_can_be_edited_on_a_busy_or_locked_server(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1", status="REBUILD", task_state="rebuilding", locked=True)
    assert (await api.create("srv-1", {"a": "1"})).status_code == 204
    assert await api.tags("srv-1") == {"a": "1"}


# --- tags: the documented limits ----------------------------------------------------------------------------


async def test_the_eleventh_tag_is_refused(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    ten = {f"key-{i}": f"value-{i}" for i in range(10)}
    assert (await api.create("srv-1", ten)).status_code == 204
    assert (await api.create("srv-1", {"key-3": "changed"})).status_code == 204  # overwriting stays at 10
    message = ecs_error(await api.create("srv-1", {"key-10": "x"}), 400, "Ecs.0005")
    assert "at most 10 tags" in message and "makes 11" in message and "srv-1" in message
    assert len(await api.tags("srv-1")) == 10

    await api.emulator.admin.add_server("srv-2")
    eleven = {f"k{i}": "" for i in range(11)}
    message = ecs_error(await api.create("srv-2", eleven), 400, "Ecs.0005")
    assert "at most 10 tags" in message
    assert await api.tags("srv-2") == {}


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        (
            {"key": "k" * 37, "value": "v"},
            f'tags[1].key "{"k" * 37}" is 37 characters long; a tag key has at most 36',
        ),
        (
            {"key": "k", "value": "v" * 44},
            f'tags[1].value "{"v" * 44}" is 44 characters long; a tag value has at most 43',
        ),
        ({"key": "", "value": "v"}, 'tags[1].key "" is blank'),
        ({"key": "   ", "value": "v"}, 'tags[1].key "   " is blank'),
        ({"key": "a/b", "value": "v"}, 'tags[1].key "a/b" contains "/"'),
        ({"key": "k", "value": "a=b"}, 'tags[1].value "a=b" contains "="'),
        ({"key": "k", "value": "a,b"}, 'tags[1].value "a,b" contains ","'),
        ({"key": "a\\b", "value": "v"}, 'tags[1].key "a\\\\b" contains "\\\\"'),
        ({"key": "k\tx", "value": "v"}, "contains the control character U+0009"),
        ({"key": "k", "value": "x\x00"}, "tags[1].value"),
        ({"key": "k", "value": 5}, "tags[1].value must be a string, not int"),
        ({"value": "v"}, "tags[1].key is required and must be a string"),
        ({"key": "k", "value": "v", "extra": 1}, "tags[1] has unexpected field(s) ['extra']"),
        ({"key": "first", "value": "again"}, 'tags[1].key "first" repeats tags[0].key'),
    ],
)
async def test_bad_tags_are_refused_with_where_and_what(api: Api, tag: dict, message: str) -> None:
    await api.emulator.admin.add_server("srv-1")
    body = {"action": "create", "tags": [{"key": "first", "value": "ok"}, tag]}
    got = ecs_error(await api.tag_action("srv-1", body), 400, "Ecs.0005")
    assert message in got
    assert await api.tags("srv-1") == {}  # nothing applied: the whole request is refused
    body["action"] = "delete"
    assert message in ecs_error(await api.tag_action("srv-1", body), 400, "Ecs.0005")


@pytest.mark.parametrize("char", [*"=*<>\\,|/", "\x00", "\x1f"])
async def test_each_forbidden_character_is_refused_in_key_and_value(api: Api, char: str) -> None:
    await api.emulator.admin.add_server("srv-1")
    for tag in ({"key": f"a{char}b", "value": "v"}, {"key": "k", "value": f"a{char}b"}):
        message = ecs_error(
            await api.tag_action("srv-1", {"action": "create", "tags": [tag]}), 400, "Ecs.0005"
        )
        assert message.startswith("Invalid request: tags[0].")
    assert await api.tags("srv-1") == {}


async def test_the_largest_allowed_tag_is_accepted(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    key, value = "k" * 36, "v" * 43
    assert (await api.create("srv-1", {key: value, "中文-键_1": "值.2"})).status_code == 204
    assert await api.tags("srv-1") == {key: value, "中文-键_1": "值.2"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"action": "Create", "tags": [{"key": "k"}]},
            'action must be "create" or "delete" (lower case), not "Create"',
        ),
        ({"action": "update", "tags": [{"key": "k"}]}, 'not "update"'),
        ({"tags": [{"key": "k"}]}, "not null"),
        ({"action": "create", "tags": []}, "tags must be a non-empty list"),
        ({"action": "create", "tags": {"k": "v"}}, "tags must be a non-empty list"),
        ({"action": "create", "tags": ["k=v"]}, "tags[0] must be an object"),
        ({"action": "create", "tags": [{"key": "k"}], "extra": 1}, "unexpected field(s) ['extra']"),
        (["create"], "the body must be a JSON object"),
    ],
)
async def test_bad_tag_bodies_are_refused(api: Api, body: object, message: str) -> None:
    await api.emulator.admin.add_server("srv-1")
    assert message in ecs_error(await api.tag_action("srv-1", body), 400, "Ecs.0005")


async def test_a_body_that_is_not_json_is_refused(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    response = await api.tag_action("srv-1", None, raw_body=b"{not json")
    assert "not valid JSON" in ecs_error(response, 400, "Ecs.0005")


async def test_unknown_server_is_404(api: Api) -> None:
    assert "nope" in ecs_error(await api.tags_response("nope"), 404, "Ecs.0114")
    assert "nope" in ecs_error(await api.create("nope", {"a": "1"}), 404, "Ecs.0114")


async def test_unsigned_or_badly_signed_tag_calls_are_refused(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    for response in (
        await api.tags_response("srv-1", signed=False),
        await api.tag_action("srv-1", {"action": "create", "tags": [{"key": "a"}]}, signed=False),
        await api.tag_action(
            "srv-1", {"action": "create", "tags": [{"key": "a"}]}, secret_key="wrong-secret"
        ),
    ):
        assert response.status_code == 401
        assert response.json()["error_code"] == "APIGW.0301"
    assert await api.tags("srv-1") == {}


async def test_faults_apply_to_the_new_operations(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    await api.emulator.admin.add_fault("tag_server", status=503, count=1)
    await api.emulator.admin.add_fault("list_servers", status=429, retry_after=3, count=1)
    assert ecs_error(await api.create("srv-1", {"a": "1"}), 503, "Common.1503")
    assert await api.tags("srv-1") == {}
    throttled = await api.list_response()
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert (await api.create("srv-1", {"a": "1"})).status_code == 204


# --- the server list ----------------------------------------------------------------------------------------

BASE = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def add_servers(api: Api, count: int, **attributes: object) -> list[str]:
    """Servers srv-00.. created one second apart; the IDs newest first (the list's order)."""
    ids = [f"srv-{i:02d}" for i in range(count)]
    for i, server_id in enumerate(ids):
        await api.emulator.admin.add_server(server_id, created=at(i), **attributes)
    return ids[::-1]


async def test_list_pages_by_page_number(api: Api) -> None:
    newest_first = await add_servers(api, 30)
    pages = [await api.list(limit=10, offset=page) for page in (1, 2, 3, 4)]
    assert [count for count, _ in pages] == [30, 30, 30, 30]
    assert [ids for _, ids in pages] == [newest_first[:10], newest_first[10:20], newest_first[20:], []]
    assert await api.list(limit=10, offset=0) == pages[0]  # 0 is the first page, as 1
    assert await api.list(limit=7, offset=5) == (30, newest_first[28:])
    assert await api.list() == (30, newest_first[:25])  # default limit 25, first page
    assert await api.list(limit=1000) == (30, newest_first)


async def test_list_entries_are_the_server_details(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1", name="web-01", status="SHUTOFF")
    await api.create("srv-1", {"env": "prod"})
    response = await api.list_response()
    [entry] = response.json()["servers"]
    assert entry == await api.server("srv-1")
    assert entry["tags"] == ["env=prod"]


async def test_list_pages_by_marker(api: Api) -> None:
    newest_first = await add_servers(api, 12)
    count, first = await api.list(limit=5)
    assert (count, first) == (12, newest_first[:5])
    assert await api.list(limit=5, marker=first[-1]) == (12, newest_first[5:10])
    assert await api.list(limit=5, marker=newest_first[9]) == (12, newest_first[10:])
    assert await api.list(limit=5, marker=newest_first[-1]) == (12, [])
    message = ecs_error(await api.list_response(marker="nope"), 400, "Ecs.0005")
    assert "marker 'nope'" in message
    message = ecs_error(await api.list_response(marker=first[-1], offset=2), 400, "Ecs.0005")
    assert "either offset" in message


async def test_list_tag_filters(api: Api) -> None:
    admin = api.emulator.admin
    for i, tags in enumerate(
        [
            {"env": "prod", "role": "web"},  # a
            {"env": "prod", "role": "db"},  # b
            {"env": "dev", "role": "web"},  # c
            {"env": "prod"},  # d
            {},  # e
        ]
    ):
        server_id = "abcde"[i]
        await admin.add_server(server_id, created=at(i))
        if tags:
            assert (await api.create(server_id, tags)).status_code == 204

    async def ids(**params: object) -> list[str]:
        count, page = await api.list(**params)
        assert count == len(page)
        return sorted(page)

    assert await ids(tags="env=prod") == ["a", "b", "d"]
    assert await ids(tags="env=prod,role=web") == ["a"]
    assert await ids(tags="role") == ["a", "b", "c"]  # a key alone: any value
    assert await ids(tags="env=qa") == []
    assert await ids(not_tags="env=prod") == ["c", "e"]
    assert await ids(not_tags="role") == ["d", "e"]
    assert await ids(not_tags="env=prod,role=web") == ["b", "c", "d", "e"]  # left out: servers with both
    assert await ids(tags="env=prod", not_tags="role=db") == ["a", "d"]
    assert await api.list(tags="role=web", limit=1) == (2, ["c"])  # paging applies after filtering
    # a + in a value is a plus (RFC 3986), a space a space
    await api.create("e", {"note": "a+b c"})
    assert await ids(tags="note=a+b c") == ["e"]
    assert await ids(tags="note=a b c") == []


async def test_list_status_and_name_filters(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("act", name="web-01", status="ACTIVE", created=at(0))
    await admin.add_server("off", name="web-02", status="SHUTOFF", created=at(1))
    await admin.add_server("err", name="db-01", status="ERROR", created=at(2))
    await admin.add_server("reb", name="db.x", status="REBUILD", task_state="rebuilding", created=at(3))

    async def ids(**params: object) -> list[str]:
        return sorted((await api.list(**params))[1])

    assert await ids(status="ACTIVE") == ["act"]
    # a REBUILD server (vm_state stopped) is listed under SHUTOFF too, as the docs' intermediate-state note says
    assert await ids(status="SHUTOFF") == ["off", "reb"]
    assert await ids(status="ERROR") == ["err"]
    assert await ids(status="REBUILD") == ["reb"]
    assert await ids(status="MIGRATING") == []
    assert "status='active'" in ecs_error(await api.list_response(status="active"), 400, "Ecs.0005")

    assert await ids(name="web") == ["act", "off"]  # fuzzy: a substring
    assert await ids(name="01") == ["act", "err"]
    assert await ids(name="db.") == ["err", "reb"]  # "." is any character
    assert await ids(name=r"db\.") == ["reb"]
    assert await ids(name="web", status="SHUTOFF") == ["off"]
    assert "not a valid pattern" in ecs_error(await api.list_response(name="db("), 400, "Ecs.0005")


async def test_list_follows_a_reinstall(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    body = {"os-reinstall": {"adminpass": "Test@12345pass"}}
    response = await api.call("POST", f"/v2/{api.project_id}/cloudservers/srv-1/reinstallos", body)
    assert response.status_code == 200, response.text
    assert await api.list(status="REBUILD") == (1, ["srv-1"])
    assert await api.list(status="ACTIVE") == (0, [])
    clock.advance(60)
    assert await api.list(status="ACTIVE") == (1, ["srv-1"])
    [entry] = (await api.list_response()).json()["servers"]
    assert entry["OS-EXT-STS:task_state"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 1001}, "limit=1001 must be an integer from 1 to 1000"),
        ({"limit": 0}, "limit=0 must be an integer from 1 to 1000"),
        ({"limit": "ten"}, "limit='ten' must be an integer from 1 to 1000"),
        ({"offset": -1}, "offset='-1' must be an integer >= 0"),
        ({"ip": "192.168.0.1"}, "'ip' is not modelled by the emulator"),
        ({"sort_key": "name"}, "'sort_key' is not a parameter of this API"),
        ({"tags": "=v"}, "has no key"),
    ],
)
async def test_bad_list_queries_are_refused(api: Api, params: dict, message: str) -> None:
    await api.emulator.admin.add_server("srv-1")
    assert message in ecs_error(await api.list_response(**params), 400, "Ecs.0005")


async def test_list_limit_1000_is_accepted(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    assert await api.list(limit=1000) == (1, ["srv-1"])


async def test_a_repeated_parameter_is_refused_but_tags_add_up(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    await api.create("srv-1", {"a": "1", "b": "2"})
    path = f"/v1/{api.project_id}/cloudservers/detail"
    response = await api.call("GET", path, query=[("limit", 5), ("limit", 6)])
    assert "limit is given 2 times" in ecs_error(response, 400, "Ecs.0005")
    response = await api.call("GET", path, query=[("tags", "a=1"), ("tags", "b=2")])
    assert response.json()["count"] == 1
    response = await api.call("GET", path, query=[("tags", "a=1"), ("tags", "b=3")])
    assert response.json()["count"] == 0


async def test_list_shows_only_the_projects_servers(api: Api) -> None:
    other = "ffffffffffffffffffffffffffffffff"
    await api.emulator.admin.add_credential("OTHERAK", "other-secret", project_id=other)
    await api.emulator.admin.add_server("mine", created=at(0))
    await api.emulator.admin.add_server("theirs", project_id=other, created=at(1))
    assert await api.list() == (1, ["mine"])
    response = await api.call(
        "GET",
        f"/v1/{other}/cloudservers/detail",
        access_key="OTHERAK",
        secret_key="other-secret",
        project_id=other,
    )
    assert response.status_code == 200, response.text
    assert [server["id"] for server in response.json()["servers"]] == ["theirs"]
    # and another project's server is unknown to the tag API
    ecs_error(await api.tags_response("theirs"), 404, "Ecs.0114")


async def test_unsigned_list_is_refused(api: Api) -> None:
    response = await api.list_response()
    assert response.status_code == 200
    response = await api.call("GET", f"/v1/{api.project_id}/cloudservers/detail", signed=False)
    assert response.status_code == 401 and response.json()["error_code"] == "APIGW.0301"
    counters = await api.emulator.admin.counters()
    assert counters["requests"]["list_servers:401"] == 1 and counters["requests"]["list_servers:200"] == 1


# --- the list by ID (server_id) ---


async def by_id(api: Api, **params: object) -> tuple[int, list[dict]]:
    """(count, the entries) of a list call expected to succeed."""
    response = await api.list_response(**params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"count", "servers"}
    return body["count"], body["servers"]


def assert_fault_entry(entry: dict, server_id: str, keys: set[str]) -> None:
    """The documented entry of an ID naming no server: every field null except id and fault."""
    assert set(entry) == keys | {"fault"}, entry
    assert entry["id"] == server_id
    assert {key: value for key, value in entry.items() if key not in ("id", "fault")} == dict.fromkeys(
        keys - {"id"}
    )
    fault = entry["fault"]
    assert set(fault) == {"code", "created", "message", "details"}
    assert fault["code"] == 404 and server_id in fault["message"]


async def test_list_by_id_returns_the_requested_servers_in_full(api: Api) -> None:
    newest_first = await add_servers(api, 5)  # srv-04 .. srv-00
    await api.create("srv-01", {"env": "prod"})
    count, entries = await by_id(api, server_id="srv-01,srv-03")
    assert count == 2
    assert entries == [await api.server("srv-01"), await api.server("srv-03")]  # the order as requested
    assert entries[0]["tags"] == ["env=prod"]
    count, entries = await by_id(api, server_id="srv-03,srv-01,srv-03,")  # repeats collapse, empties skipped
    assert (count, [entry["id"] for entry in entries]) == (2, ["srv-03", "srv-01"])
    count, entries = await by_id(api, server_id=",".join(newest_first[::-1]))
    assert (count, [entry["id"] for entry in entries]) == (5, newest_first[::-1])


async def test_list_by_id_gives_a_fault_entry_for_an_unknown_id(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    keys = set(await api.server("srv-1"))
    count, entries = await by_id(api, server_id="nope,srv-1")
    assert count == 2
    assert_fault_entry(entries[0], "nope", keys)
    assert entries[1] == await api.server("srv-1")
    # only unknown IDs: still one entry each
    count, entries = await by_id(api, server_id="x,y")
    assert count == 2
    assert_fault_entry(entries[0], "x", keys)
    assert_fault_entry(entries[1], "y", keys)


async def test_list_by_id_does_not_create_servers_even_with_auto_create(api: Api) -> None:
    await api.emulator.admin.set_config(auto_create_servers=True)
    await api.emulator.admin.add_server("srv-1")
    count, [entry] = await by_id(api, server_id="ghost")
    assert count == 1 and entry["fault"]["code"] == 404
    assert await api.list() == (1, ["srv-1"])


async def test_list_by_id_follows_a_reinstall(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    await api.emulator.admin.add_server("srv-2")
    body = {"os-reinstall": {"adminpass": "Test@12345pass"}}
    response = await api.call("POST", f"/v2/{api.project_id}/cloudservers/srv-1/reinstallos", body)
    assert response.status_code == 200, response.text

    async def entry() -> dict:
        count, entries = await by_id(api, server_id="srv-1")
        assert count == 1
        return entries[0]

    first = await entry()
    assert (first["status"], first["OS-EXT-STS:task_state"]) == ("REBUILD", "rebuilding")
    clock.advance(2)  # past the job's half-way point: spawning; only the listing refreshes the server here
    spawning = await entry()
    assert (spawning["status"], spawning["OS-EXT-STS:task_state"]) == ("REBUILD", "rebuild_spawning")
    assert spawning["updated"] == iso_seconds(clock.now() - 0.5)
    assert spawning == await api.server("srv-1")
    clock.advance(60)
    done = await entry()
    assert (done["status"], done["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
    assert done == await api.server("srv-1")


async def test_list_by_id_ignores_the_other_filters_and_paging(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("web", name="web-01", status="ACTIVE", created=at(0))
    await admin.add_server("db", name="db-01", status="SHUTOFF", created=at(1))
    await api.create("db", {"env": "prod"})
    wanted = ["web", "db"]
    ignored: list[dict[str, object]] = [
        {"name": "nothing-matches"},
        {"status": "ERROR"},
        {"flavor": "no-such-flavor"},
        {"tags": "env=qa"},
        {"not_tags": "env=prod"},
        {"limit": 1},
        {"limit": 1, "offset": 2},
        {"limit": 1, "marker": "not-a-server"},  # not looked up
        {"name": "web", "status": "SHUTOFF", "tags": "env=prod", "limit": 1, "offset": 5},
    ]
    for params in ignored:
        count, entries = await by_id(api, server_id="web,db", **params)
        assert (count, [entry["id"] for entry in entries]) == (2, wanted), params
    # still checked for form: a malformed value is refused as without server_id
    message = ecs_error(await api.list_response(server_id="web", status="active"), 400, "Ecs.0005")
    assert "status='active'" in message
    message = ecs_error(await api.list_response(server_id="web", limit=0), 400, "Ecs.0005")
    assert "limit=0" in message


async def test_list_by_id_does_not_leak_another_projects_server(api: Api) -> None:
    other = "ffffffffffffffffffffffffffffffff"
    await api.emulator.admin.add_credential("OTHERAK", "other-secret", project_id=other)
    await api.emulator.admin.add_server("mine")
    await api.emulator.admin.add_server("theirs", project_id=other, name="secret-name")
    keys = set(await api.server("mine"))
    count, entries = await by_id(api, server_id="theirs,mine")
    assert count == 2
    assert_fault_entry(entries[0], "theirs", keys)
    assert "secret-name" not in json.dumps(entries[0]) and other not in json.dumps(entries[0])
    assert entries[1]["id"] == "mine"
    # the owner sees it
    response = await api.call(
        "GET",
        f"/v1/{other}/cloudservers/detail",
        query=[("server_id", "theirs")],
        access_key="OTHERAK",
        secret_key="other-secret",
        project_id=other,
    )
    assert response.status_code == 200, response.text
    [entry] = response.json()["servers"]
    assert entry["name"] == "secret-name" and "fault" not in entry


async def test_list_by_id_limit_on_the_number_of_ids(api: Api) -> None:
    await api.emulator.admin.add_server("0")
    ids = [f"{i:x}" for i in range(1000)]  # short IDs keep the request line under the server's limit
    count, entries = await by_id(api, server_id=",".join([*ids, "0"]))  # 1000 distinct IDs (a repeat)
    assert count == 1000 and len(entries) == 1000
    assert entries[0] == await api.server("0") and all("fault" in entry for entry in entries[1:])
    message = ecs_error(await api.list_response(server_id=",".join([*ids, "3e8"])), 400, "Ecs.0005")
    assert "server_id names 1001 servers; at most 1000" in message


async def test_an_empty_server_id_is_the_same_as_none(api: Api) -> None:
    newest_first = await add_servers(api, 3)
    assert await api.list(server_id="") == (3, newest_first)
    assert await api.list(server_id=",,") == (3, newest_first)
    assert await api.list(server_id="", status="ACTIVE", limit=1) == (3, newest_first[:1])
    assert await api.list(server_id="", name="nothing") == (0, [])
    path = f"/v1/{api.project_id}/cloudservers/detail"
    response = await api.call("GET", path, query=[("server_id", "srv-00"), ("server_id", "srv-01")])
    assert "server_id is given 2 times" in ecs_error(response, 400, "Ecs.0005")
