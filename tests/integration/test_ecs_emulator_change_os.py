"""The ECS emulator's change-OS APIs over real HTTP (``POST /v2|v1/{project_id}/cloudservers/{id}/changeos``):
the image catalogue, the body and image rules, the server checks shared with the reinstall, the
``change_os_requires_stopped`` switch, the job (``changeOS``) and the ``rebuild`` action, the server's image
moving only on SUCCESS, failure injection, X-Client-Token, faults and the admin records.

Requests are signed with the operator's signer (`ecs_reinstall.cloud.signing`) and sent with httpx; the
emulator runs on a fake clock so that jobs finish when the test says.
"""

from __future__ import annotations

import base64
import json
import math
import ssl
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from ecs_emulator.clock import FakeClock, iso_millis
from ecs_emulator.testing import AdminError, EmulatorHandle, running_emulator
from ecs_reinstall.cloud.signing import sign_request

PASSWORD = "Test@12345pass"
LINUX = "7b0f5f4e-3c1d-4a51-9f57-0a1c2b3d4e5f"  # Linux, Cloud-Init, active
PLAIN = "1d6f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"  # Linux without Cloud-Init, active
WINDOWS = "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a"  # Windows, Cloud-Init (Cloudbase-Init), active
QUEUED = "0a0b0c0d-1e1f-4a2b-8c3d-4e5f6a7b8c9d"  # Linux, Cloud-Init, still queued
DEFAULT_IMAGE = "emulated-image-0000"


class Api:
    """Signed calls to one emulator."""

    def __init__(self, emulator: EmulatorHandle, http: httpx.AsyncClient) -> None:
        self.emulator = emulator
        self.http = http
        self.project_id = emulator.project_id

    async def call(
        self, method: str, path: str, body: object = None, *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        content = json.dumps(body).encode() if body is not None else None
        request = sign_request(
            method,
            self.emulator.url + path,
            headers={"Content-Type": "application/json;charset=UTF-8", **(headers or {})},
            body=content,
            access_key=self.emulator.access_key,
            secret_key=self.emulator.secret_key,
            project_id=self.project_id,
        )
        return await self.http.request(method, request.url, headers=request.wire_headers(), content=content)

    async def change_os(
        self,
        server_id: str,
        option: dict | None = None,
        *,
        api: str = "v2",
        token: str | None = None,
        body: object = None,
    ) -> httpx.Response:
        headers = {"X-Client-Token": token} if token is not None else None
        if body is None:
            body = {"os-change": option if option is not None else {"adminpass": PASSWORD, "imageid": LINUX}}
        path = f"/{api}/{self.project_id}/cloudservers/{server_id}/changeos"
        return await self.call("POST", path, body, headers=headers)

    async def reinstall(
        self, server_id: str, option: dict | None = None, *, api: str = "v2", token: str | None = None
    ) -> httpx.Response:
        headers = {"X-Client-Token": token} if token is not None else None
        body = {"os-reinstall": option or {"adminpass": PASSWORD}}
        path = f"/{api}/{self.project_id}/cloudservers/{server_id}/reinstallos"
        return await self.call("POST", path, body, headers=headers)

    async def job(self, job_id: str) -> dict:
        response = await self.call("GET", f"/v1/{self.project_id}/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def server(self, server_id: str) -> dict:
        response = await self.call("GET", f"/v1/{self.project_id}/cloudservers/{server_id}")
        assert response.status_code == 200, response.text
        return response.json()["server"]

    async def actions(self, server_id: str) -> list[dict]:
        response = await self.call("GET", f"/v2.1/{self.project_id}/servers/{server_id}/os-instance-actions")
        assert response.status_code == 200, response.text
        return response.json()["instanceActions"]

    async def action(self, server_id: str, request_id: str) -> dict:
        path = f"/v2.1/{self.project_id}/servers/{server_id}/os-instance-actions/{request_id}"
        response = await self.call("GET", path)
        assert response.status_code == 200, response.text
        return response.json()["instanceAction"]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0, verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)) as client:
        yield client


@pytest.fixture
async def cloud(http: httpx.AsyncClient) -> AsyncIterator[tuple[Api, FakeClock]]:
    """An emulator on a fake clock (whole seconds): jobs INIT 2 s, RUNNING 10 s; the four catalogue images."""
    clock = FakeClock(start=float(math.floor(time.time())))
    async with running_emulator(clock=clock, init_seconds=2, job_seconds=10) as emulator:
        admin = emulator.admin
        await admin.add_image(LINUX, name="Ubuntu 22.04")
        await admin.add_image(PLAIN, name="Debian 12 plain", cloud_init=False)
        await admin.add_image(WINDOWS, name="Windows Server 2019", os_type="Windows")
        await admin.add_image(QUEUED, name="Ubuntu 24.04 (uploading)", status="queued")
        yield Api(emulator, http), clock


def error(response: httpx.Response) -> tuple[int, str, str]:
    """(status, code, message) of an ECS error, checking its shape."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert response.headers["X-Request-Id"]
    return response.status_code, body["error"]["code"], body["error"]["message"]


def launch_time(timestamp: float) -> str:
    return iso_millis(timestamp).replace("Z", "000")


# --- success: v2 and v1 -----------------------------------------------------------------------------------


async def test_v2_change_os_succeeds_and_the_image_changes_only_at_success(
    cloud: tuple[Api, FakeClock],
) -> None:
    api, clock = cloud
    t0 = clock.now()
    await api.emulator.admin.add_server("srv-1", status="ACTIVE")
    assert (await api.server("srv-1"))["image"] == {"id": DEFAULT_IMAGE}

    option = {"adminpass": PASSWORD, "imageid": LINUX, "mode": "withStopServer", "userid": "u-1"}
    response = await api.change_os("srv-1", option)
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    assert set(response.json()) == {"job_id"} and len(job_id) == 32

    job = await api.job(job_id)
    assert (job["status"], job["job_type"]) == ("INIT", "changeOS")
    assert job["entities"]["sub_jobs"][0]["job_type"] == "changeOSSingleServer"
    assert job["entities"]["server_id"] == "srv-1" and job["end_time"] == ""
    server = await api.server("srv-1")
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("REBUILD", "rebuilding")
    assert server["image"] == {"id": DEFAULT_IMAGE}  # not yet: the job runs

    clock.advance(7)
    assert (await api.job(job_id))["status"] == "RUNNING"
    server = await api.server("srv-1")
    assert server["OS-EXT-STS:task_state"] == "rebuild_spawning" and server["image"] == {"id": DEFAULT_IMAGE}

    clock.advance(5)
    job = await api.job(job_id)
    assert job["status"] == "SUCCESS" and job["end_time"] == iso_millis(t0 + 12)
    assert job["entities"]["sub_jobs"][0]["status"] == "SUCCESS"
    server = await api.server("srv-1")
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
    assert server["image"] == {"id": LINUX}
    assert server["OS-SRV-USG:launched_at"] == launch_time(t0 + 12)
    assert server["metadata"]["os_type"] == "Linux"
    assert (await api.emulator.admin.get_server("srv-1"))["image_id"] == LINUX

    [rebuild, create] = await api.actions("srv-1")
    assert (rebuild["action"], create["action"]) == ("rebuild", "create")
    assert rebuild["request_id"] == response.headers["X-Request-Id"]
    detail = await api.action("srv-1", rebuild["request_id"])
    assert [(e["event"], e["result"]) for e in detail["events"]] == [("compute_rebuild_instance", "Success")]

    [record] = await api.emulator.admin.reinstalls()
    assert (record["kind"], record["imageid"], record["api"], record["job_id"]) == (
        "change_os",
        LINUX,
        "v2",
        job_id,
    )
    assert record["fields"] == ["adminpass", "imageid", "mode", "userid"]
    assert (record["outcome"], record["job_status"], record["is_auto_pay"]) == ("SUCCESS", "SUCCESS", None)
    counters = await api.emulator.admin.counters()
    assert counters["requests"]["change_os:200"] == 1
    assert counters["accepted_reinstalls"] == {"srv-1": 1}


async def test_v1_change_os_with_a_key_pair_to_an_image_without_cloud_init(
    cloud: tuple[Api, FakeClock],
) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-w", status="SHUTOFF", os_type="Windows", image_id="old-windows-image")
    await admin.add_keypair("KeyPair-1")
    option = {"keyname": "KeyPair-1", "userid": "u-1", "imageid": PLAIN, "isAutoPay": "true"}
    response = await api.change_os("srv-w", option, api="v1")
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    assert (await api.server("srv-w"))["image"] == {"id": "old-windows-image"}

    clock.advance(12)
    job = await api.job(job_id)
    assert (job["status"], job["job_type"]) == ("SUCCESS", "changeOS")
    server = await api.server("srv-w")
    assert server["image"] == {"id": PLAIN} and server["key_name"] == "KeyPair-1"
    assert server["status"] == "ACTIVE"
    assert server["metadata"]["os_type"] == "Linux"  # the new image's OS
    [record] = await admin.reinstalls()
    assert (record["kind"], record["api"], record["imageid"], record["is_auto_pay"]) == (
        "change_os",
        "v1",
        PLAIN,
        "true",
    )
    assert (record["keyname"], record["adminpass_sha256"]) == ("KeyPair-1", None)
    assert (await admin.counters())["requests"]["change_os_v1:200"] == 1


async def test_v1_accepts_an_image_with_cloud_init_too(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    response = await api.change_os("srv-1", {"adminpass": PASSWORD, "imageid": LINUX}, api="v1")
    assert response.status_code == 200, response.text


async def test_v2_with_user_data_only(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    user_data = base64.b64encode(b"#cloud-config\n").decode()
    response = await api.change_os("srv-1", {"imageid": LINUX, "metadata": {"user_data": user_data}})
    assert response.status_code == 200, response.text
    [record] = await api.emulator.admin.reinstalls()
    assert record["fields"] == ["imageid", "metadata.user_data"] and record["user_data_size"] == 14


async def test_a_reinstall_after_a_change_of_os_keeps_the_new_image(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    assert (await api.change_os("srv-1")).status_code == 200
    clock.advance(12)
    reinstall = await api.reinstall("srv-1", {"adminpass": PASSWORD, "mode": "withStopServer"})
    assert reinstall.status_code == 200, reinstall.text
    job = await api.job(reinstall.json()["job_id"])
    assert job["job_type"] == "reinstallOS"
    clock.advance(12)
    assert (await api.server("srv-1"))["image"] == {"id": LINUX}
    records = await api.emulator.admin.reinstalls()
    assert [(r["kind"], r["imageid"]) for r in records] == [("change_os", LINUX), ("reinstall", None)]
    assert (await api.emulator.admin.counters())["accepted_reinstalls"] == {"srv-1": 2}


# --- failure ----------------------------------------------------------------------------------------------


async def test_a_failed_change_of_os_leaves_the_image(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.add_server(
        "srv-1", status="SHUTOFF", image_id="the-old-one", outcome="FAIL", fail_code="Ecs.1234",
        fail_reason="disk exploded",
    )  # fmt: skip
    launched = (await api.server("srv-1"))["OS-SRV-USG:launched_at"]
    response = await api.change_os("srv-1")
    job_id = response.json()["job_id"]
    clock.advance(12)
    job = await api.job(job_id)
    assert (job["status"], job["job_type"], job["error_code"], job["fail_reason"]) == (
        "FAIL",
        "changeOS",
        "Ecs.1234",
        "disk exploded",
    )
    sub_job = job["entities"]["sub_jobs"][0]
    assert (sub_job["status"], sub_job["job_type"]) == ("FAIL", "changeOSSingleServer")
    assert sub_job["entities"]["errorcode_message"] == "disk exploded"
    server = await api.server("srv-1")
    assert server["image"] == {"id": "the-old-one"}
    assert (server["status"], server["OS-SRV-USG:launched_at"]) == ("SHUTOFF", launched)
    rebuild = (await api.actions("srv-1"))[0]
    assert (rebuild["action"], rebuild["message"]) == ("rebuild", "Error")
    detail = await api.action("srv-1", rebuild["request_id"])
    assert detail["events"][0]["result"] == "Error"
    assert detail["events"][0]["traceback"] == "Ecs.1234: disk exploded"
    assert (await admin.get_server("srv-1"))["last_job_failed"] is True
    [record] = await admin.reinstalls()
    assert (record["outcome"], record["job_status"]) == ("FAIL", "FAIL")


async def test_a_failure_set_in_the_configuration_says_the_change_of_os_failed(
    cloud: tuple[Api, FakeClock],
) -> None:
    api, clock = cloud
    await api.emulator.admin.set_config(outcome="FAIL", fail_status="ERROR")
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    job_id = (await api.change_os("srv-1")).json()["job_id"]
    clock.advance(12)
    job = await api.job(job_id)
    assert job["status"] == "FAIL" and job["error_code"] == "Ecs.0000"
    assert job["fail_reason"].startswith("Changing the OS failed")
    server = await api.server("srv-1")
    assert (server["status"], server["image"]) == ("ERROR", {"id": DEFAULT_IMAGE})


# --- refusals ---------------------------------------------------------------------------------------------


async def assert_refused(api: Api, response: httpx.Response, status: int, code: str, *words: str) -> None:
    got_status, got_code, message = error(response)
    assert (got_status, got_code) == (status, code), message
    for word in words:
        assert word in message, (word, message)
    assert PASSWORD not in message
    assert await api.emulator.admin.reinstalls() == []
    assert (await api.emulator.admin.counters())["accepted_reinstalls"] == {}


@pytest.mark.parametrize(
    ("option", "status", "code", "words"),
    [
        ({"adminpass": PASSWORD}, 400, "Ecs.0005", ("os-change.imageid is required",)),
        ({"adminpass": PASSWORD, "imageid": ""}, 400, "Ecs.0005", ("imageid is required",)),
        ({"adminpass": PASSWORD, "imageid": 7}, 400, "Ecs.0005", ("os-change.imageid must be a string",)),
        (
            {"adminpass": PASSWORD, "imageid": "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"},
            400,
            "Ecs.0031",
            ("Image [5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f] does not exist",),
        ),
        (
            {"adminpass": PASSWORD, "imageid": "not-an-image"},
            400,
            "Ecs.0031",
            ("[not-an-image] does not exist",),
        ),
        ({"adminpass": PASSWORD, "imageid": QUEUED}, 400, "Ecs.0032", (QUEUED, "must be active", "queued")),
        ({"adminpass": PASSWORD, "imageid": WINDOWS}, 400, "Ecs.0007", (WINDOWS, "Windows")),
        ({"adminpass": PASSWORD, "imageid": PLAIN}, 400, "Ecs.0007", (PLAIN, "Cloud-Init", "/v1/")),
        ({"adminpass": "short", "imageid": LINUX}, 400, "Ecs.0011", ("8 to 26 characters",)),
        ({"adminpass": "Root@123456", "imageid": LINUX}, 400, "Ecs.0011", ("'root'",)),
        ({"keyname": "nope", "userid": "u", "imageid": LINUX}, 400, "Ecs.0314", ("'nope'",)),
        ({"adminpass": PASSWORD, "keyname": "k", "imageid": LINUX}, 400, "Ecs.0005", ("together",)),
        ({"imageid": LINUX}, 400, "Ecs.0005", ("adminpass, keyname or metadata.user_data",)),
        ({"adminpass": PASSWORD, "imageid": LINUX, "mode": "now"}, 400, "Ecs.0005", ("os-change.mode",)),
        ({"adminpass": PASSWORD, "imageid": LINUX, "isAutoPay": "yes"}, 400, "Ecs.0005", ("isAutoPay",)),
        (
            {"adminpass": PASSWORD, "imageid": LINUX, "flavor": "x"},
            400,
            "Ecs.0005",
            ("unknown field(s) ['flavor']",),
        ),
        (
            {"adminpass": PASSWORD, "imageid": LINUX, "metadata": {"user_data": "***"}},
            400,
            "Ecs.0005",
            ("base64",),
        ),
        (
            {"adminpass": PASSWORD, "imageid": LINUX, "metadata": {"__system__encrypted": "2"}},
            400,
            "Ecs.0005",
            ("__system__encrypted",),
        ),
    ],
)
async def test_v2_refusals(
    cloud: tuple[Api, FakeClock], option: dict, status: int, code: str, words: tuple[str, ...]
) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    await assert_refused(api, await api.change_os("srv-1", option), status, code, *words)


@pytest.mark.parametrize(
    ("option", "code", "words"),
    [
        (
            {"adminpass": PASSWORD, "imageid": LINUX, "metadata": {"user_data": "IyE="}},
            "Ecs.0005",
            ("user_data", "v2 API"),
        ),
        ({"imageid": LINUX}, "Ecs.0005", ("exactly one of adminpass and keyname",)),
        ({"adminpass": PASSWORD, "imageid": WINDOWS}, "Ecs.0007", ("Windows",)),
        ({"adminpass": PASSWORD, "imageid": QUEUED}, "Ecs.0032", ("must be active",)),
    ],
)
async def test_v1_refusals(
    cloud: tuple[Api, FakeClock], option: dict, code: str, words: tuple[str, ...]
) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    await assert_refused(api, await api.change_os("srv-1", option, api="v1"), 400, code, *words)


async def test_body_shape_refusals(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    wrong_root = await api.change_os(
        "srv-1", body={"os-reinstall": {"adminpass": PASSWORD, "imageid": LINUX}}
    )
    await assert_refused(api, wrong_root, 400, "Ecs.0005", '"os-change" object')
    extra = await api.change_os(
        "srv-1", body={"os-change": {"adminpass": PASSWORD, "imageid": LINUX}, "x": 1}
    )
    await assert_refused(api, extra, 400, "Ecs.0005", "only os-change is allowed")


async def test_a_deleted_image_does_not_exist(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    await api.emulator.admin.patch_image(LINUX, status="deleted")
    await assert_refused(api, await api.change_os("srv-1"), 400, "Ecs.0031", "does not exist")
    await api.emulator.admin.delete_image(LINUX)
    await assert_refused(api, await api.change_os("srv-1"), 400, "Ecs.0031", "does not exist")


@pytest.mark.parametrize(
    ("server", "option", "status", "code", "words"),
    [
        ({"status": "ACTIVE"}, {}, 409, "Ecs.0100", ("running", "withStopServer")),
        ({"status": "ERROR"}, {"mode": "withStopServer"}, 409, "Ecs.0100", ("ERROR", "change of OS")),
        ({"status": "SHUTOFF", "locked": True}, {}, 409, "Ecs.0605", ("locked",)),
        ({"status": "SHUTOFF", "task_state": "resize_prep"}, {}, 501, "Ecs.0603", ("Another operation",)),
        ({"status": "REBUILD"}, {}, 501, "Ecs.0603", ("Another operation",)),
        ({"status": "SHUTOFF", "has_system_disk": False}, {}, 400, "Ecs.0105", ("no system disk",)),
    ],
)
async def test_server_state_refusals_as_for_a_reinstall(
    cloud: tuple[Api, FakeClock], server: dict, option: dict, status: int, code: str, words: tuple[str, ...]
) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", **server)
    response = await api.change_os("srv-1", {"adminpass": PASSWORD, "imageid": LINUX, **option})
    await assert_refused(api, response, status, code, *words)
    assert [a["action"] for a in await api.actions("srv-1")] == ["create"]


async def test_unknown_server_is_404(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    await assert_refused(api, await api.change_os("nope"), 404, "Ecs.0114", "nope")


async def test_a_busy_server_refuses_a_change_of_os_while_its_reinstall_runs(
    cloud: tuple[Api, FakeClock],
) -> None:
    api, clock = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    assert (await api.reinstall("srv-1")).status_code == 200
    status, code, _ = error(await api.change_os("srv-1"))
    assert (status, code) == (501, "Ecs.0603")
    clock.advance(12)  # the reinstalled ECS is started: withStopServer now
    option = {"adminpass": PASSWORD, "imageid": LINUX, "mode": "withStopServer"}
    assert (await api.change_os("srv-1", option)).status_code == 200


# --- the stopped-server switch ----------------------------------------------------------------------------


async def test_the_stopped_rule_is_off_by_default_and_validated(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    admin = api.emulator.admin
    assert (await admin.get_config())["change_os_requires_stopped"] is False
    with pytest.raises(AdminError, match="400"):
        await admin.set_config(change_os_requires_stopped="yes")
    await admin.add_server("srv-1", status="ACTIVE")
    option = {"adminpass": PASSWORD, "imageid": LINUX, "mode": "withStopServer"}
    assert (await api.change_os("srv-1", option)).status_code == 200  # off: withStopServer is enough


async def test_the_stopped_rule_refuses_a_running_server_even_with_stop_server(
    cloud: tuple[Api, FakeClock],
) -> None:
    api, _ = cloud
    admin = api.emulator.admin
    assert (await admin.set_config(change_os_requires_stopped=True))["change_os_requires_stopped"] is True
    await admin.add_server("srv-1", status="ACTIVE")
    await admin.add_server("srv-2", status="ERROR")
    option = {"adminpass": PASSWORD, "imageid": LINUX, "mode": "withStopServer"}
    await assert_refused(
        api, await api.change_os("srv-1", option), 409, "Ecs.0100", "ACTIVE", "only a stopped ECS", "failed"
    )
    await assert_refused(api, await api.change_os("srv-2", option), 409, "Ecs.0100", "ERROR")
    # the reinstall is not affected by the switch
    reinstall = await api.reinstall("srv-1", {"adminpass": PASSWORD, "mode": "withStopServer"})
    assert reinstall.status_code == 200, reinstall.text


async def test_the_stopped_rule_accepts_a_stopped_server(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    await api.emulator.admin.set_config(change_os_requires_stopped=True)
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    assert (await api.change_os("srv-1")).status_code == 200


@pytest.mark.parametrize("fail_status", ["ERROR", "previous"])
async def test_the_stopped_rule_accepts_a_server_whose_last_reinstall_failed(
    cloud: tuple[Api, FakeClock], fail_status: str
) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.set_config(change_os_requires_stopped=True)
    await admin.add_server("srv-1", status="ACTIVE", outcome="FAIL", fail_status=fail_status)
    assert (
        await api.reinstall("srv-1", {"adminpass": PASSWORD, "mode": "withStopServer"})
    ).status_code == 200
    clock.advance(12)
    expected = "ERROR" if fail_status == "ERROR" else "ACTIVE"
    assert (await api.server("srv-1"))["status"] == expected
    assert (await admin.get_server("srv-1"))["last_job_failed"] is True
    await admin.patch_server("srv-1", outcome="SUCCESS")
    response = await api.change_os("srv-1", {"adminpass": PASSWORD, "imageid": LINUX})
    assert response.status_code == 200, response.text
    clock.advance(12)
    server = await api.server("srv-1")
    assert (server["status"], server["image"]) == ("ACTIVE", {"id": LINUX})
    assert (await admin.get_server("srv-1"))["last_job_failed"] is False
    # running again, its last change succeeded: refused
    status, code, _ = error(await api.change_os("srv-1", {"adminpass": PASSWORD, "imageid": PLAIN}, api="v1"))
    assert (status, code) == (409, "Ecs.0100")


# --- X-Client-Token ---------------------------------------------------------------------------------------


async def test_a_token_replay_returns_the_first_job(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    the_token = str(uuid.uuid4())
    first = await api.change_os("srv-1", token=the_token)
    assert first.status_code == 200
    clock.advance(3)  # running now: a new change of OS would be refused as busy, a replay is not
    again = await api.change_os("srv-1", token=the_token)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    assert [a["action"] for a in await api.actions("srv-1")] == ["rebuild", "create"]
    [record] = await admin.reinstalls()
    assert (record["kind"], record["client_token"], record["replays"]) == ("change_os", the_token, 1)
    counters = await admin.counters()
    assert counters["accepted_reinstalls"] == {"srv-1": 1} and counters["replayed_reinstalls"] == {"srv-1": 1}
    assert counters["requests"]["change_os:200"] == 2


async def test_a_token_reused_with_other_parameters_is_ecs_0122(cloud: tuple[Api, FakeClock]) -> None:
    api, clock = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    await api.emulator.admin.add_server("srv-2", status="SHUTOFF")
    the_token = str(uuid.uuid4())
    assert (await api.change_os("srv-1", token=the_token)).status_code == 200
    for response in (
        await api.change_os("srv-1", {"adminpass": PASSWORD, "imageid": PLAIN}, api="v1", token=the_token),
        await api.change_os("srv-1", {"adminpass": PASSWORD, "imageid": PLAIN}, token=the_token),
        await api.change_os("srv-2", token=the_token),
        await api.reinstall("srv-1", token=the_token),
    ):
        status, code, message = error(response)
        assert (status, code) == (400, "Ecs.0122") and "already used" in message
    bad = await api.change_os("srv-2", token="NOT-A-UUID")
    assert error(bad)[:2] == (400, "Ecs.0123")
    clock.advance(8 * 3600 + 1)
    assert error(await api.change_os("srv-1", token=the_token))[:2] == (400, "Ecs.0124")


async def test_a_reinstall_token_is_not_a_change_of_os_token(cloud: tuple[Api, FakeClock]) -> None:
    """Same token, same server and API, even the same option fields: the operation differs, so Ecs.0122."""
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    the_token = str(uuid.uuid4())
    assert (await api.reinstall("srv-1", token=the_token)).status_code == 200
    assert error(await api.change_os("srv-1", token=the_token))[:2] == (400, "Ecs.0122")


async def test_a_refused_change_of_os_leaves_its_token_free(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    the_token = str(uuid.uuid4())
    option = {"adminpass": PASSWORD, "imageid": QUEUED}
    assert error(await api.change_os("srv-1", option, token=the_token))[1] == "Ecs.0032"
    await api.emulator.admin.patch_image(QUEUED, status="active")
    assert (await api.change_os("srv-1", option, token=the_token)).status_code == 200


# --- faults and rate limits -------------------------------------------------------------------------------


async def test_faults_and_rate_limits_name_the_change_os_operations(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    await admin.add_fault("change_os", status=503, count=1)
    await admin.add_fault("change_os_v1", status=429, retry_after=7, count=1)
    status, code, _ = error(await api.change_os("srv-1"))
    assert (status, code) == (503, "Common.1503")
    throttled = await api.change_os("srv-1", {"adminpass": PASSWORD, "imageid": PLAIN}, api="v1")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert await admin.reinstalls() == []

    await admin.set_config(operation_rate_limits={"change_os": {"qps": 0.001, "burst": 1}})
    assert (await api.change_os("srv-1")).status_code == 200
    limited = await api.change_os("srv-1", {"adminpass": PASSWORD, "imageid": PLAIN})
    assert limited.status_code == 429 and limited.json()["error_code"] == "APIGW.0308"
    counters = await admin.counters()
    assert counters["requests"]["change_os:503"] == 1 and counters["requests"]["change_os_v1:429"] == 1
    assert counters["requests"]["change_os:429"] == 1


async def test_a_connection_dropped_after_the_change_of_os_was_accepted(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    await api.emulator.admin.add_fault("change_os", drop_connection="after", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await api.change_os("srv-1")
    [record] = await api.emulator.admin.reinstalls()
    assert record["kind"] == "change_os"
    assert (await api.server("srv-1"))["status"] == "REBUILD"


# --- the image catalogue (admin API) and the server's image -----------------------------------------------


async def test_the_image_catalogue_admin_api(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    admin = api.emulator.admin
    images = {image["id"]: image for image in await admin.images()}
    assert set(images) == {LINUX, PLAIN, WINDOWS, QUEUED}
    assert images[LINUX] == {
        "id": LINUX, "name": "Ubuntu 22.04", "os_type": "Linux", "cloud_init": True, "status": "active",
    }  # fmt: skip
    assert images[PLAIN]["cloud_init"] is False and images[WINDOWS]["os_type"] == "Windows"
    new_id = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
    added = await admin.add_image(new_id)
    assert added["name"] == "image-3c4d5e6f" and added["status"] == "active"
    assert (await admin.patch_image(new_id, status="saving", name="x"))["status"] == "saving"
    assert (await admin.get_image(new_id))["name"] == "x"
    for bad in (
        {"image_id": "Not-A-UUID"},
        {"image_id": new_id},  # exists
        {"image_id": str(uuid.uuid4()), "os_type": "BSD"},
        {"image_id": str(uuid.uuid4()), "status": "ready"},
    ):
        with pytest.raises(AdminError) as refused:
            await admin.add_image(**bad)
        assert refused.value.status == 400
    with pytest.raises(AdminError) as refused:
        await admin.patch_image(new_id, cloud_init="yes")
    assert refused.value.status == 400
    with pytest.raises(AdminError) as refused:
        await admin.patch_image(new_id, id=str(uuid.uuid4()))
    assert refused.value.status == 400
    await admin.delete_image(new_id)
    with pytest.raises(AdminError) as missing:
        await admin.get_image(new_id)
    assert missing.value.status == 404
    await admin.reset()
    assert await admin.images() == []


async def test_the_servers_image_is_an_attribute(cloud: tuple[Api, FakeClock]) -> None:
    api, _ = cloud
    admin = api.emulator.admin
    assert (await admin.add_server("srv-1", image_id=LINUX))["image_id"] == LINUX
    assert (await api.server("srv-1"))["image"] == {"id": LINUX}
    await admin.patch_server("srv-1", image_id=PLAIN)
    assert (await api.server("srv-1"))["image"] == {"id": PLAIN}
    await admin.add_server("srv-2")
    assert (await api.server("srv-2"))["image"] == {"id": DEFAULT_IMAGE}
    listed = await api.call("GET", f"/v1/{api.project_id}/cloudservers/detail")
    assert {s["id"]: s["image"]["id"] for s in listed.json()["servers"]} == {
        "srv-1": PLAIN,
        "srv-2": DEFAULT_IMAGE,
    }
    with pytest.raises(AdminError) as refused:
        await admin.patch_server("srv-1", image_id="")
    assert refused.value.status == 400
