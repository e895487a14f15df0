"""The ECS emulator when others touch a server, over real HTTP: the action log (os-instance-actions), operations
by someone else (admin API), X-Client-Token on the reinstall APIs, job retention, the Date header and the
cloud's clock offset.

Requests are signed with the operator's signer (`ecs_reinstall.cloud.signing`) and sent with httpx.
"""

from __future__ import annotations

import json
import math
import re
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest

from ecs_emulator.actions import API_USER_ID, OTHER_USER_ID
from ecs_emulator.clock import FakeClock, iso_action, iso_millis, iso_seconds
from ecs_emulator.testing import AdminError, EmulatorHandle, running_emulator
from ecs_reinstall.cloud.errors import parse_error_body
from ecs_reinstall.cloud.signing import sign_request

PASSWORD = "Test@12345pass"
ACTION_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


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
        headers: dict[str, str] | None = None,
        sdk_date: str | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        content = json.dumps(body).encode() if body is not None else None
        if not signed:
            return await self.http.request(method, self.emulator.url + path, content=content)
        request = sign_request(
            method,
            self.emulator.url + path,
            headers={"Content-Type": "application/json;charset=UTF-8", **(headers or {})},
            body=content,
            access_key=self.emulator.access_key,
            secret_key=self.emulator.secret_key,
            project_id=self.project_id,
            sdk_date=sdk_date,
        )
        return await self.http.request(method, request.url, headers=request.wire_headers(), content=content)

    async def reinstall(
        self, server_id: str, option: dict | None = None, *, api: str = "v2", token: str | None = None
    ) -> httpx.Response:
        headers = {"X-Client-Token": token} if token is not None else None
        body = {"os-reinstall": option or {"adminpass": PASSWORD}}
        return await self.call(
            "POST", f"/{api}/{self.project_id}/cloudservers/{server_id}/reinstallos", body, headers=headers
        )

    async def job(self, job_id: str) -> httpx.Response:
        return await self.call("GET", f"/v1/{self.project_id}/jobs/{job_id}")

    async def server(self, server_id: str) -> dict:
        response = await self.call("GET", f"/v1/{self.project_id}/cloudservers/{server_id}")
        assert response.status_code == 200, response.text
        return response.json()["server"]

    async def actions(self, server_id: str, **kwargs) -> httpx.Response:
        return await self.call(
            "GET", f"/v2.1/{self.project_id}/servers/{server_id}/os-instance-actions", **kwargs
        )

    async def action(self, server_id: str, request_id: str, **kwargs) -> httpx.Response:
        path = f"/v2.1/{self.project_id}/servers/{server_id}/os-instance-actions/{request_id}"
        return await self.call("GET", path, **kwargs)

    async def action_list(self, server_id: str) -> list[dict]:
        response = await self.actions(server_id)
        assert response.status_code == 200, response.text
        return response.json()["instanceActions"]

    async def action_detail(self, server_id: str, request_id: str) -> dict:
        response = await self.action(server_id, request_id)
        assert response.status_code == 200, response.text
        return response.json()["instanceAction"]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0, verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)) as client:
        yield client


@pytest.fixture
async def cloud(http: httpx.AsyncClient) -> AsyncIterator[tuple[Api, FakeClock]]:
    """An emulator on a fake clock (whole seconds): jobs INIT 2 s, RUNNING 10 s."""
    clock = FakeClock(start=float(math.floor(time.time())))
    async with running_emulator(clock=clock, init_seconds=2, job_seconds=10) as emulator:
        yield Api(emulator, http), clock


def ecs_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def token() -> str:
    return str(uuid.uuid4())


def launched(server: dict) -> str:
    return server["OS-SRV-USG:launched_at"]


def launch_time(timestamp: float) -> str:
    return iso_millis(timestamp).replace("Z", "000")


# --- the action log ---------------------------------------------------------------------------------------


async def test_a_reinstall_writes_a_rebuild_action_that_follows_the_job(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    created = clock.now()
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    [create] = await api.action_list("srv-1")
    assert (create["action"], create["message"], create["start_time"]) == (
        "create",
        None,
        iso_action(created),
    )

    clock.advance(5)
    t0 = clock.now()
    response = await api.reinstall("srv-1")
    assert response.status_code == 200
    request_id = response.headers["X-Request-Id"]
    rebuild, older = await api.action_list("srv-1")  # newest first
    assert older == create
    assert rebuild == {
        "action": "rebuild",
        "instance_uuid": "srv-1",
        "message": None,
        "project_id": api.project_id,
        "request_id": request_id,
        "start_time": iso_action(t0),
        "updated_at": iso_action(t0),
        "user_id": API_USER_ID,
    }
    assert ACTION_TIME.match(rebuild["start_time"]) and rebuild["start_time"].endswith(".000000")
    detail = await api.action_detail("srv-1", request_id)
    assert {k: v for k, v in detail.items() if k != "events"} == rebuild
    assert detail["events"] == [
        {
            "event": "compute_rebuild_instance",
            "result": None,
            "traceback": None,
            "start_time": iso_action(t0),
            "finish_time": None,
        }
    ]

    clock.advance(8)  # still running
    assert (await api.action_detail("srv-1", request_id))["events"][0]["result"] is None
    clock.advance(4)  # t0 + 12: the job ended
    detail = await api.action_detail("srv-1", request_id)
    assert (detail["message"], detail["updated_at"]) == (None, iso_action(t0 + 12))
    [event] = detail["events"]
    assert (event["result"], event["traceback"], event["finish_time"]) == (
        "Success",
        None,
        iso_action(t0 + 12),
    )
    assert (await api.job(response.json()["job_id"])).json()["status"] == "SUCCESS"


async def test_a_failed_reinstall_writes_error_with_the_jobs_reason(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    await api.emulator.admin.add_server(
        "srv-1", status="SHUTOFF", outcome="FAIL", fail_code="Ecs.1234", fail_reason="disk exploded"
    )
    t0 = clock.now()
    response = await api.reinstall("srv-1")
    clock.advance(12)
    detail = await api.action_detail("srv-1", response.headers["X-Request-Id"])
    assert (detail["action"], detail["message"], detail["updated_at"]) == (
        "rebuild",
        "Error",
        iso_action(t0 + 12),
    )
    [event] = detail["events"]
    assert (event["result"], event["finish_time"]) == ("Error", iso_action(t0 + 12))
    assert event["traceback"] == "Ecs.1234: disk exploded"
    # the list shows the message too
    assert (await api.action_list("srv-1"))[0]["message"] == "Error"


async def test_the_action_log_needs_a_signature_and_a_known_server(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1")
    unsigned = await api.actions("srv-1", signed=False)
    assert unsigned.status_code == 401 and unsigned.json()["error_code"] == "APIGW.0301"
    missing = await api.actions("nope")
    assert missing.status_code == 404 and ecs_code(missing) == "Ecs.0114"
    assert (await api.action("nope", "req-x")).status_code == 404
    no_action = await api.action("srv-1", "req-0000")
    assert no_action.status_code == 404
    assert no_action.json() == {"itemNotFound": {"code": 404, "message": "Action req-0000 not found"}}
    assert no_action.headers["X-Request-Id"]
    # the operator's error parser reads the Nova shape
    assert parse_error_body(no_action.content).message == "Action req-0000 not found"
    counters = (await api.emulator.admin.counters())["requests"]
    assert counters == {"list_actions:401": 1, "list_actions:404": 1, "get_action:404": 2}


@pytest.mark.parametrize("mode", ["404", "403"])
async def test_the_action_log_can_be_unavailable(cloud: tuple[Api, FakeClock], mode: str) -> None:
    api, _ = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    request_id = (await api.reinstall("srv-1")).headers["X-Request-Id"]
    await admin.set_config(action_log=mode)
    for response in (await api.actions("srv-1"), await api.action("srv-1", request_id)):
        assert response.status_code == int(mode)
        if mode == "404":  # the API is not published: the gateway answers, whatever the signature
            assert response.json()["error_code"] == "APIGW.0101"
        else:  # the policy refuses it
            assert set(response.json()) == {"forbidden"} and response.json()["forbidden"]["code"] == 403
    if mode == "404":
        assert (await api.actions("srv-1", signed=False)).status_code == 404
    # the admin API still shows the log; switching back shows it again
    assert [a["action"] for a in await admin.actions("srv-1")] == ["rebuild", "create"]
    await admin.set_config(action_log="enabled")
    assert (await api.actions("srv-1")).status_code == 200


async def test_action_switches_request_id_resolution_and_stop_before_rebuild(http: httpx.AsyncClient) -> None:
    clock = FakeClock(start=1_700_000_000.25)
    async with running_emulator(
        clock=clock,
        action_request_id="generated",
        action_time_resolution="microsecond",
        reinstall_stop_action=True,
    ) as emulator:
        api = Api(emulator, http)
        await emulator.admin.add_server("srv-1", status="ACTIVE")
        response = await api.reinstall("srv-1", {"adminpass": PASSWORD, "mode": "withStopServer"})
        rebuild, stop, create = await api.action_list("srv-1")
        assert (rebuild["action"], stop["action"], create["action"]) == ("rebuild", "stop", "create")
        assert re.fullmatch(r"req-[0-9a-f-]{36}", rebuild["request_id"])
        assert rebuild["request_id"] != response.headers["X-Request-Id"]
        assert rebuild["start_time"] == "2023-11-14T22:13:20.250000"
        assert stop["start_time"] == rebuild["start_time"]
        assert (await api.action_detail("srv-1", stop["request_id"]))["events"][0]["result"] == "Success"
        [record] = await emulator.admin.reinstalls()
        assert record["action_request_id"] == rebuild["request_id"]


# --- operations by someone else --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "operation", "fields", "final", "action", "events", "moves_launch"),
    [
        ("ACTIVE", "stop", {}, "SHUTOFF", "stop", ["compute_stop_instance"], False),
        ("ERROR", "stop", {}, "SHUTOFF", "stop", ["compute_stop_instance"], False),
        ("SHUTOFF", "start", {}, "ACTIVE", "start", ["compute_start_instance"], False),
        ("ACTIVE", "reboot", {}, "ACTIVE", "reboot", ["compute_reboot_instance"], False),
        ("SHUTOFF", "reboot", {"type": "HARD"}, "ACTIVE", "reboot", ["compute_reboot_instance"], False),
        ("SHUTOFF", "resize", {"flavor": "s6.large.2"}, "SHUTOFF", "resize",
         ["compute_prep_resize", "compute_resize_instance", "compute_finish_resize"], True),
        ("ACTIVE", "migrate", {}, "ACTIVE", "migrate",
         ["compute_prep_resize", "compute_resize_instance", "compute_finish_resize"], True),
        ("SHUTOFF", "rename", {"name": "renamed"}, "SHUTOFF", None, [], False),
        ("ACTIVE", "tag", {"set": {"env": "prod", "team": "a"}}, "ACTIVE", None, [], False),
    ],
)  # fmt: skip
async def test_operations_move_updated_and_launch_time_as_nova_does(
    cloud: tuple[Api, FakeClock],
    status: str,
    operation: str,
    fields: dict,
    final: str,
    action: str | None,
    events: list[str],
    moves_launch: bool,
) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.add_server(
        "srv-1", status=status, updated="2024-01-01T00:00:00Z", launched_at="2024-01-01T00:00:00Z"
    )
    clock.advance(30)
    now = clock.now()
    answer = await admin.operate("srv-1", operation, **fields)
    server = await api.server("srv-1")
    assert server["status"] == final and server["updated"] == iso_seconds(now)
    assert launched(server) == (launch_time(now) if moves_launch else "2024-01-01T00:00:00.000000")
    if operation == "resize":
        assert server["flavor"]["id"] == "s6.large.2" and answer["server"]["flavor"] == "s6.large.2"
    if operation == "rename":
        assert server["name"] == "renamed"
    if operation == "tag":
        assert server["tags"] == ["env=prod", "team=a"] and answer["server"]["tags"] == {
            "env": "prod",
            "team": "a",
        }
    listed = await api.action_list("srv-1")
    if action is None:  # Nova records no action for a rename or a tag edit
        assert answer["action"] is None and [a["action"] for a in listed] == ["create"]
    else:
        newest = listed[0]
        assert (newest["action"], newest["user_id"], newest["message"]) == (action, OTHER_USER_ID, None)
        assert newest["start_time"] == iso_action(now) and re.fullmatch(
            r"req-[0-9a-f-]{36}", newest["request_id"]
        )
        detail = await api.action_detail("srv-1", newest["request_id"])
        assert [e["event"] for e in detail["events"]] == events
        assert all(e["result"] == "Success" and e["finish_time"] == iso_action(now) for e in detail["events"])
        assert answer["action"] == detail
    assert (await admin.counters())["operations"] == {operation: 1}


async def test_tags_are_set_and_removed(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1")
    await admin.tag("srv-1", {"a": "1", "b": "2"})
    answer = await admin.tag("srv-1", {"c": "3"}, remove=["a", "missing"])
    assert answer["server"]["tags"] == {"b": "2", "c": "3"}
    assert (await api.server("srv-1"))["tags"] == ["b=2", "c=3"]


async def test_power_operations_are_refused_while_busy_or_locked(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    t0 = clock.now()
    await api.reinstall("srv-1")
    for operation in ("stop", "start", "reboot", "resize", "migrate"):
        with pytest.raises(AdminError, match="busy") as refused:
            await admin.operate("srv-1", operation)
        assert refused.value.status == 409
    # a rename and a tag edit go through during the rebuild (Nova checks no state for them) and move updated
    clock.advance(1)
    await admin.rename("srv-1", "during-rebuild")
    assert (await api.server("srv-1"))["updated"] == iso_seconds(t0 + 1)
    clock.advance(7)  # t0 + 8: spawning started at t0 + 7
    assert (await api.server("srv-1"))["updated"] == iso_seconds(t0 + 7)
    await admin.tag("srv-1", {"k": "v"})
    assert (await api.server("srv-1"))["updated"] == iso_seconds(t0 + 8)
    clock.advance(4)
    server = await api.server("srv-1")
    assert (server["status"], server["updated"], server["name"]) == (
        "ACTIVE",
        iso_seconds(t0 + 12),
        "during-rebuild",
    )
    # a task_state makes it busy too; a lock refuses
    await admin.patch_server("srv-1", task_state="image_snapshot")
    with pytest.raises(AdminError, match="409"):
        await admin.stop("srv-1")
    await admin.patch_server("srv-1", task_state=None, locked=True)
    with pytest.raises(AdminError, match="locked"):
        await admin.stop("srv-1")
    assert [a["action"] for a in await admin.actions("srv-1")] == ["rebuild", "create"]


@pytest.mark.parametrize(
    ("status", "operation", "fields"),
    [("ACTIVE", "start", {}), ("SHUTOFF", "stop", {}), ("SHUTOFF", "reboot", {}), ("ERROR", "resize", {}),
     ("ERROR", "migrate", {}), ("ERROR", "reboot", {"type": "SOFT"})],
)  # fmt: skip
async def test_operations_the_state_does_not_allow_are_409(
    cloud: tuple[Api, FakeClock], status: str, operation: str, fields: dict
) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status=status)
    with pytest.raises(AdminError) as refused:
        await api.emulator.admin.operate("srv-1", operation, **fields)
    assert refused.value.status == 409 and "allowed" in str(refused.value)
    assert len(await api.action_list("srv-1")) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"action": "explode"},
        {"action": "stop", "colour": "red"},
        {"action": "reboot", "type": "GENTLE"},
        {"action": "rename"},
        {"action": "rename", "name": "x", "fail": True},
        {"action": "tag"},
        {"action": "tag", "set": {"k": 1}},
        {"action": "stop", "fail": "yes"},
        {"action": "stop", "user_id": ""},
    ],
)
async def test_bad_operations_are_400(cloud: tuple[Api, FakeClock], body: dict) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1")
    with pytest.raises(AdminError) as refused:
        await api.emulator.admin.operate("srv-1", **body)
    assert refused.value.status == 400


async def test_operation_on_an_unknown_server_is_404(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    with pytest.raises(AdminError) as refused:
        await api.emulator.admin.stop("nope")
    assert refused.value.status == 404


async def test_a_failed_operation_changes_nothing_but_updated(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="ACTIVE", launched_at="2024-01-01T00:00:00Z")
    clock.advance(10)
    answer = await admin.resize("srv-1", "s6.large.2", fail=True, user_id="console-user")
    server = await api.server("srv-1")
    assert (server["status"], server["flavor"]["id"], launched(server)) == (
        "ACTIVE", "s6.small.1", "2024-01-01T00:00:00.000000",
    )  # fmt: skip
    assert server["updated"] == iso_seconds(clock.now())
    action = answer["action"]
    assert (action["action"], action["message"], action["user_id"]) == ("resize", "Error", "console-user")
    assert [e["result"] for e in action["events"]] == ["Success", "Success", "Error"]
    assert "emulated failure" in action["events"][-1]["traceback"]


async def test_record_action_overrides_the_default(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    renamed = await admin.rename("srv-1", "n", record_action=True)
    assert renamed["action"]["action"] == "update"
    assert [e["event"] for e in renamed["action"]["events"]] == ["api_update_instance"]
    started = await admin.start("srv-1", record_action=False)
    assert started["action"] is None and started["server"]["status"] == "ACTIVE"
    assert [a["action"] for a in await api.action_list("srv-1")] == ["update", "create"]


# --- X-Client-Token --------------------------------------------------------------------------------------


async def test_same_token_and_body_replays_the_original_answer(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    the_token = token()
    first = await api.reinstall("srv-1", {"adminpass": PASSWORD, "userid": "u"}, token=the_token)
    assert first.status_code == 200
    # the same parameters in another key order, while the job runs (the server is busy)
    again = await api.reinstall("srv-1", {"userid": "u", "adminpass": PASSWORD}, token=the_token)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    clock.advance(7 * 3600)  # the job is long finished; the token lives 8 h
    late = await api.reinstall("srv-1", {"adminpass": PASSWORD, "userid": "u"}, token=the_token)
    assert late.status_code == 200 and late.json() == first.json()
    counters = await admin.counters()
    assert counters["accepted_reinstalls"] == {"srv-1": 1} and counters["replayed_reinstalls"] == {"srv-1": 2}
    assert counters["requests"] == {"reinstall:200": 3}
    [record] = await admin.reinstalls()
    assert (record["client_token"], record["replays"], record["job_id"]) == (
        the_token,
        2,
        first.json()["job_id"],
    )
    assert [a["action"] for a in await api.action_list("srv-1")] == ["rebuild", "create"]


@pytest.mark.parametrize(
    "bad", ["", "not-a-uuid", str(uuid.uuid4()).upper(), uuid.uuid4().hex, "{" + str(uuid.uuid4()) + "}"]
)
async def test_a_token_that_is_not_a_lower_case_uuid_is_ecs_0123(
    cloud: tuple[Api, FakeClock], bad: str
) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    response = await api.reinstall("srv-1", token=bad)
    assert response.status_code == 400 and ecs_code(response) == "Ecs.0123"
    assert (await api.emulator.admin.counters())["accepted_reinstalls"] == {}


async def test_a_token_reused_for_something_else_is_ecs_0122(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    await admin.add_server("srv-2", status="SHUTOFF")
    the_token = token()
    assert (await api.reinstall("srv-1", token=the_token)).status_code == 200
    clock.advance(20)
    for response in (
        await api.reinstall("srv-2", token=the_token),  # another server
        await api.reinstall("srv-1", {"adminpass": "Other@12345pass"}, token=the_token),  # another body
        await api.reinstall("srv-1", {"adminpass": PASSWORD}, api="v1", token=the_token),  # another API
    ):
        assert response.status_code == 400 and ecs_code(response) == "Ecs.0122"
    assert (await admin.counters())["accepted_reinstalls"] == {"srv-1": 1}


async def test_a_token_older_than_8_hours_is_ecs_0124(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    the_token = token()
    assert (await api.reinstall("srv-1", token=the_token)).status_code == 200
    clock.advance(8 * 3600 + 1)
    for option in ({"adminpass": PASSWORD}, {"adminpass": "Other@12345pass"}):
        response = await api.reinstall("srv-1", option, token=the_token)
        assert response.status_code == 400 and ecs_code(response) == "Ecs.0124"
    assert (await api.emulator.admin.counters())["accepted_reinstalls"] == {"srv-1": 1}
    # a fresh token works
    fresh = await api.reinstall("srv-1", {"adminpass": PASSWORD, "mode": "withStopServer"}, token=token())
    assert fresh.status_code == 200


async def test_a_refused_request_does_not_bind_its_token(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF", task_state="image_snapshot")
    the_token = token()
    busy = await api.reinstall("srv-1", {"adminpass": PASSWORD}, api="v1", token=the_token)
    assert busy.status_code == 501 and ecs_code(busy) == "Ecs.0603"
    await admin.patch_server("srv-1", task_state=None)
    accepted = await api.reinstall("srv-1", {"adminpass": PASSWORD}, api="v1", token=the_token)
    assert accepted.status_code == 200
    replayed = await api.reinstall("srv-1", {"adminpass": PASSWORD}, api="v1", token=the_token)
    assert replayed.json() == accepted.json()
    [record] = await admin.reinstalls()
    assert (record["api"], record["client_token"], record["replays"]) == ("v1", the_token, 1)


async def test_a_cloud_that_ignores_the_token(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.set_config(client_token="ignored")
    await admin.add_server("srv-1", status="SHUTOFF")
    the_token = token()
    first = await api.reinstall("srv-1", token=the_token)
    assert first.status_code == 200
    busy = await api.reinstall("srv-1", token=the_token)  # no replay: the server is busy
    assert busy.status_code == 501 and ecs_code(busy) == "Ecs.0603"
    clock.advance(12)
    second = await api.reinstall("srv-1", {"adminpass": PASSWORD, "mode": "withStopServer"}, token=the_token)
    assert second.status_code == 200 and second.json() != first.json()
    assert (await api.reinstall("srv-1", token="NOT A UUID")).status_code == 501  # not even checked
    counters = await admin.counters()
    assert counters["accepted_reinstalls"] == {"srv-1": 2} and counters["replayed_reinstalls"] == {}
    assert [r["client_token"] for r in await admin.reinstalls()] == [the_token, the_token]


async def test_a_token_replays_after_a_dropped_answer(cloud: tuple[Api, FakeClock]) -> None:
    """The case the token is for: the cloud took the POST, the answer was lost; the resend gets the job ID."""
    api, _ = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    await admin.add_fault("reinstall", drop_connection="after", count=1)
    the_token = token()
    with pytest.raises(httpx.RemoteProtocolError):
        await api.reinstall("srv-1", token=the_token)
    resent = await api.reinstall("srv-1", token=the_token)
    [record] = await admin.reinstalls()
    assert resent.status_code == 200 and resent.json()["job_id"] == record["job_id"]


# --- the accepted reinstalls in the admin API -------------------------------------------------------------


async def test_reinstall_records_show_accept_and_end_times(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF", outcome="FAIL")
    t0 = clock.now()
    job_id = (await api.reinstall("srv-1")).json()["job_id"]
    [record] = await admin.reinstalls("srv-1")
    assert (record["at"], record["end_at"]) == (iso_millis(t0), iso_millis(t0 + 12))
    assert (record["at_epoch"], record["end_at_epoch"]) == (t0, t0 + 12)
    assert (record["outcome"], record["job_status"], record["job_expired"]) == ("FAIL", "INIT", False)
    assert record["client_token"] is None and record["replays"] == 0 and record["job_id"] == job_id
    clock.advance(12)
    [record] = await admin.reinstalls("srv-1")
    assert record["job_status"] == "FAIL"


# --- job retention ----------------------------------------------------------------------------------------


async def test_finished_jobs_disappear_after_the_retention(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    assert (await admin.get_config())["job_retention_seconds"] == 86400
    await admin.add_server("srv-1", status="SHUTOFF")
    t0 = clock.now()
    response = await api.reinstall("srv-1")
    job_id, request_id = response.json()["job_id"], response.headers["X-Request-Id"]
    clock.advance(12 + 86400 - 1)
    assert (await api.job(job_id)).json()["status"] == "SUCCESS"
    clock.advance(1)
    gone = await api.job(job_id)
    assert gone.status_code == 404 and ecs_code(gone) == "Common.0011"
    parsed = parse_error_body(gone.content)
    assert parsed.code == "Common.0011"
    # the action log keeps the rebuild, and the admin API says the record expired
    detail = await api.action_detail("srv-1", request_id)
    assert detail["events"][0]["result"] == "Success" and detail["events"][0]["finish_time"] == iso_action(
        t0 + 12
    )
    [record] = await admin.reinstalls()
    assert record["job_expired"] is True and record["job_status"] == "SUCCESS"
    counters = await admin.counters()
    assert counters["expired_job_lookups"] == 1
    assert counters["requests"]["get_job:404"] == 1


async def test_a_running_job_never_expires_and_the_retention_is_configurable(
    cloud: tuple[Api, FakeClock],
) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.set_config(job_retention_seconds=60, job_seconds=1000)
    await admin.add_server("srv-1", status="SHUTOFF")
    job_id = (await api.reinstall("srv-1")).json()["job_id"]
    clock.advance(900)
    assert (await api.job(job_id)).json()["status"] == "RUNNING"
    clock.advance(102 + 59)
    assert (await api.job(job_id)).status_code == 200
    clock.advance(1)
    assert (await api.job(job_id)).status_code == 404
    await admin.set_config(job_retention_seconds=86400)  # read at lookup time
    assert (await api.job(job_id)).status_code == 200


async def test_job_expiry_follows_the_admin_clock_advance(api_on_system_clock: Api) -> None:
    api = api_on_system_clock
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    job_id = (await api.reinstall("srv-1")).json()["job_id"]
    await admin.advance_clock(3600)
    assert (await api.job(job_id)).json()["status"] == "SUCCESS"
    await admin.advance_clock(86400)
    gone = await api.job(job_id)
    assert gone.status_code == 404 and ecs_code(gone) == "Common.0011"


@pytest.fixture
async def api_on_system_clock(ecs_emulator: EmulatorHandle, http: httpx.AsyncClient) -> Api:
    return Api(ecs_emulator, http)


# --- the Date header and the cloud's clock ----------------------------------------------------------------


def date_of(response: httpx.Response) -> float:
    return parsedate_to_datetime(response.headers["Date"]).timestamp()


async def test_every_answer_carries_a_date_from_the_emulator_clock(api_on_system_clock: Api) -> None:
    api = api_on_system_clock
    admin = api.emulator.admin
    await admin.add_server("srv-1")
    answers = [
        await api.call("GET", f"/v1/{api.project_id}/cloudservers/srv-1"),
        await api.job("nope"),
        await api.call("GET", f"/v1/{api.project_id}/cloudservers/srv-1", signed=False),
        await api.call("GET", "/no/such/api"),
        await api.http.get(f"{api.emulator.url}/_emulator/config"),
    ]
    for response in answers:
        assert re.fullmatch(
            r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", response.headers["Date"]
        )
        assert abs(date_of(response) - time.time()) < 3
    await admin.advance_clock(3600)
    moved = await api.call("GET", f"/v1/{api.project_id}/cloudservers/srv-1")
    assert moved.status_code == 200  # signatures still compare with the real time
    assert abs(date_of(moved) - (time.time() + 3600)) < 3


async def test_a_clock_offset_moves_every_stamp_and_the_signature_window(http: httpx.AsyncClient) -> None:
    async with running_emulator(clock_offset_seconds=300) as emulator:
        api = Api(emulator, http)
        await emulator.admin.add_server("srv-1", status="SHUTOFF")
        response = await api.reinstall("srv-1")
        assert response.status_code == 200  # 5 minutes of skew: within the gateway's 15
        assert abs(date_of(response) - (time.time() + 300)) < 3
        job = (await api.job(response.json()["job_id"])).json()
        begin = datetime.fromisoformat(job["begin_time"].replace("Z", "+00:00")).timestamp()
        assert abs(begin - (time.time() + 300)) < 3
        [rebuild, _] = await api.action_list("srv-1")
        start = datetime.fromisoformat(rebuild["start_time"]).replace(tzinfo=UTC).timestamp()
        assert abs(start - (time.time() + 300)) < 3
        assert abs(datetime.fromisoformat((await api.server("srv-1"))["updated"]).timestamp() - begin) < 2

        # beyond 15 minutes the gateway refuses what the machine's clock signs, and takes what its own would
        await emulator.admin.set_config(clock_offset_seconds=1200)
        refused = await api.call("GET", f"/v1/{api.project_id}/cloudservers/srv-1")
        assert refused.status_code == 401 and refused.json()["error_code"] == "APIGW.0303"
        assert abs(date_of(refused) - (time.time() + 1200)) < 3  # the client can read the cloud's time here
        cloud_date = (datetime.now(UTC) + timedelta(seconds=1200)).strftime("%Y%m%dT%H%M%SZ")
        ok = await api.call("GET", f"/v1/{api.project_id}/cloudservers/srv-1", sdk_date=cloud_date)
        assert ok.status_code == 200


async def test_new_config_fields_are_validated(cloud: tuple[Api, FakeClock]) -> None:
    admin = cloud[0].emulator.admin
    config = await admin.get_config()
    assert {k: config[k] for k in (
        "job_retention_seconds", "clock_offset_seconds", "action_log", "action_request_id",
        "action_time_resolution", "reinstall_stop_action", "client_token", "client_token_ttl_seconds",
    )} == {
        "job_retention_seconds": 86400, "clock_offset_seconds": 0, "action_log": "enabled",
        "action_request_id": "response", "action_time_resolution": "second", "reinstall_stop_action": False,
        "client_token": "honoured", "client_token_ttl_seconds": 28800,
    }  # fmt: skip
    for bad in (
        {"action_log": "off"},
        {"client_token": "maybe"},
        {"job_retention_seconds": -1},
        {"client_token_ttl_seconds": 0},
        {"clock_offset_seconds": "1h"},
        {"action_request_id": "x"},
        {"action_time_resolution": "ms"},
        {"reinstall_stop_action": "yes"},
    ):
        with pytest.raises(AdminError, match="400"):
            await admin.set_config(**bad)
