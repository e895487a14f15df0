"""The ECS emulator over real HTTP: the gateway's signature check, the reinstall rules, job and server lifecycle,
fault injection, the rate limit, counters, the admin API and the CLI.

Requests are signed with the operator's signer (`ecs_reinstall.cloud.signing`) and sent with httpx.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ecs_emulator.clock import FakeClock, iso_millis, iso_seconds
from ecs_emulator.testing import AdminError, EmulatorHandle, running_emulator
from ecs_reinstall.cloud.signing import sign_request

GOOD_PASSWORD = "Test@12345pass"
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Api:
    """Signed calls to one emulator, the way a client would make them."""

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
        access_key: str | None = None,
        secret_key: str | None = None,
        security_token: str | None = None,
        project_header: str | None = None,
        sdk_date: str | None = None,
        query: list[tuple[str, object]] | None = None,
        headers: dict[str, str] | None = None,
        tamper: dict[str, str] | None = None,
    ) -> httpx.Response:
        content = (
            raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        )
        signed = sign_request(
            method,
            self.emulator.url + path,
            headers={"Content-Type": "application/json;charset=UTF-8", **(headers or {})},
            body=content,
            access_key=access_key or self.emulator.access_key,
            secret_key=secret_key or self.emulator.secret_key,
            security_token=security_token,
            project_id=project_header or self.project_id,
            sdk_date=sdk_date,
            query=query,
        )
        wire_headers = {**signed.wire_headers(), **{k: v.encode() for k, v in (tamper or {}).items()}}
        return await self.http.request(method, signed.url, headers=wire_headers, content=content)

    async def reinstall(self, server_id: str, option: dict, *, api: str = "v2", **kwargs) -> httpx.Response:
        path = f"/{api}/{self.project_id}/cloudservers/{server_id}/reinstallos"
        return await self.call("POST", path, {"os-reinstall": option}, **kwargs)

    async def job(self, job_id: str) -> httpx.Response:
        return await self.call("GET", f"/v1/{self.project_id}/jobs/{job_id}")

    async def server(self, server_id: str) -> httpx.Response:
        return await self.call("GET", f"/v1/{self.project_id}/cloudservers/{server_id}")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # plain HTTP on loopback: a bare TLS context avoids loading the CA bundle for every test
    async with httpx.AsyncClient(timeout=10.0, verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)) as client:
        yield client


@pytest.fixture
def api(ecs_emulator: EmulatorHandle, http: httpx.AsyncClient) -> Api:
    return Api(ecs_emulator, http)


def gateway_error(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error_code", "error_msg", "request_id"}
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body["error_code"]


def ecs_error(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert response.headers["X-Request-Id"]
    return body["error"]["code"]


async def wait_for_job(api: Api, job_id: str, statuses: set[str], timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = (await api.job(job_id)).json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        await asyncio.sleep(0.02)


# --- the gateway: signature, date, credentials, project ---------------------------------------------------


async def test_signed_request_succeeds_and_carries_a_request_id(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    response = await api.server("srv-1")
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])
    assert response.json()["server"]["id"] == "srv-1"


async def test_missing_authorization_is_401(api: Api, http: httpx.AsyncClient) -> None:
    response = await http.get(f"{api.emulator.url}/v1/{api.project_id}/jobs/x")
    assert response.status_code == 401
    assert gateway_error(response) == "APIGW.0301"
    assert "Authorization" in response.json()["error_msg"]


async def test_malformed_authorization_is_401(api: Api) -> None:
    response = await api.call("GET", f"/v1/{api.project_id}/jobs/x", tamper={"Authorization": "Basic abc"})
    assert response.status_code == 401
    assert gateway_error(response) == "APIGW.0301"


async def test_unknown_access_key_is_401(api: Api) -> None:
    response = await api.call("GET", f"/v1/{api.project_id}/jobs/x", access_key="NOSUCHAK")
    assert response.status_code == 401
    assert gateway_error(response) == "APIGW.0301"
    assert "NOSUCHAK not exist" in response.json()["error_msg"]


async def test_wrong_secret_key_is_401_and_the_secret_is_not_echoed(api: Api) -> None:
    response = await api.call("GET", f"/v1/{api.project_id}/jobs/x", secret_key="wrong-secret-value")
    assert response.status_code == 401
    assert gateway_error(response) == "APIGW.0301"
    assert "signature" in response.json()["error_msg"]
    assert "wrong-secret-value" not in response.text and api.emulator.secret_key not in response.text


async def test_body_changed_after_signing_is_401(api: Api, http: httpx.AsyncClient) -> None:
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    url = f"{api.emulator.url}/v2/{api.project_id}/cloudservers/srv-1/reinstallos"
    body = json.dumps({"os-reinstall": {"adminpass": GOOD_PASSWORD}}).encode()
    signed = sign_request(
        "POST", url, headers={"Content-Type": "application/json"}, body=body,
        access_key=api.emulator.access_key, secret_key=api.emulator.secret_key, project_id=api.project_id,
    )  # fmt: skip
    response = await http.post(signed.url, headers=signed.headers, content=body.replace(b"Test", b"Best"))
    assert response.status_code == 401
    assert gateway_error(response) == "APIGW.0301"
    assert (await api.emulator.admin.counters())["accepted_reinstalls"] == {}


@pytest.mark.parametrize(("minutes", "status"), [(-20, 401), (20, 401), (-10, 200), (10, 200)])
async def test_signature_date_skew(api: Api, minutes: int, status: int) -> None:
    await api.emulator.admin.add_server("srv-1")
    sdk_date = (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y%m%dT%H%M%SZ")
    response = await api.call("GET", f"/v1/{api.project_id}/cloudservers/srv-1", sdk_date=sdk_date)
    assert response.status_code == status
    if status == 401:
        assert gateway_error(response) == "APIGW.0303"
        assert "older than 15 minutes" in response.json()["error_msg"]


async def test_odd_paths_queries_and_headers_verify(api: Api) -> None:
    """The wire-side canonical form: encoded path segments, repeated and unicode query keys, UTF-8 headers."""
    await api.emulator.admin.add_server("srv-é 1")
    response = await api.call(
        "GET",
        f"/v1/{api.project_id}/cloudservers/srv-%C3%A9%201",
        query=[("b", "x y"), ("a", "2"), ("a", "1"), ("é", "~*+/"), ("flag", True)],
        headers={"X-Label": "café  ", "X_Trace_Id": "not-signed"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["server"]["id"] == "srv-é 1"


async def test_project_header_mismatch_is_403(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    response = await api.call(
        "GET", f"/v1/{api.project_id}/cloudservers/srv-1", project_header="ffffffffffffffffffffffffffffffff"
    )
    assert response.status_code == 403
    assert gateway_error(response) == "APIGW.0302"
    assert "X-Project-Id" in response.json()["error_msg"]


async def test_unknown_project_and_project_bound_credentials(api: Api) -> None:
    other = "11112222333344445555666677778888"
    response = await api.call("GET", f"/v1/{other}/jobs/x", project_header=other)
    assert response.status_code == 403 and gateway_error(response) == "APIGW.0302"
    assert "unknown project" in response.json()["error_msg"]

    await api.emulator.admin.add_credential("BOUNDAK", "bound-secret", project_id=other)
    await api.emulator.admin.add_server("srv-2", project_id=other)
    bound = {"access_key": "BOUNDAK", "secret_key": "bound-secret"}
    path = f"/v1/{other}/cloudservers/srv-2"
    assert (await api.call("GET", path, project_header=other, **bound)).status_code == 200
    # an unbound AK reaches every known project (like an account's AK); a bound one only its own
    assert (await api.call("GET", path, project_header=other)).status_code == 200
    wrong = await api.call("GET", f"/v1/{api.project_id}/jobs/x", **bound)
    assert wrong.status_code == 403 and "belong to project" in wrong.json()["error_msg"]
    # servers live in one project
    missing = await api.call("GET", f"/v1/{api.project_id}/cloudservers/srv-2")
    assert missing.status_code == 404 and ecs_error(missing) == "Ecs.0114"


async def test_temporary_credentials_need_their_token(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("srv-1")
    await admin.add_credential("TEMPAK", "temp-secret", security_token="the-token")
    path = f"/v1/{api.project_id}/cloudservers/srv-1"
    temp = {"access_key": "TEMPAK", "secret_key": "temp-secret"}
    assert (await api.call("GET", path, security_token="the-token", **temp)).status_code == 200
    for token in (None, "another-token"):
        response = await api.call("GET", path, security_token=token, **temp)
        assert response.status_code == 401 and gateway_error(response) == "APIGW.0301"
        assert "the-token" not in response.text
    permanent_with_token = await api.call("GET", path, security_token="any")
    assert permanent_with_token.status_code == 401
    await admin.set_config(accept_any_security_token=True)
    assert (await api.call("GET", path, security_token="any")).status_code == 200


async def test_unsigned_security_token_is_refused(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    response = await api.call(
        "GET", f"/v1/{api.project_id}/cloudservers/srv-1", tamper={"X-Security-Token": "unsigned"}
    )
    assert response.status_code == 401 and "must be signed" in response.json()["error_msg"]


async def test_unknown_api_is_404(api: Api) -> None:
    response = await api.call("GET", f"/v2.1/{api.project_id}/servers")
    assert response.status_code == 404
    assert gateway_error(response) == "APIGW.0101"
    response = await api.call("DELETE", f"/v1/{api.project_id}/cloudservers/x")
    assert response.status_code == 404


# --- reinstall validation -------------------------------------------------------------------------------

USER_DATA = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
CMK = "83cdb52d-9ebf-4469-9cfa-e7b5b80da846"


@pytest.mark.parametrize(
    ("api_version", "option", "code"),
    [
        ("v2", {"adminpass": GOOD_PASSWORD, "keyname": "kp"}, "Ecs.0005"),
        ("v2", {"userid": "u"}, "Ecs.0005"),
        ("v2", {"adminpass": GOOD_PASSWORD, "colour": "red"}, "Ecs.0005"),
        ("v2", {"adminpass": 12345678}, "Ecs.0005"),
        ("v2", {"adminpass": GOOD_PASSWORD, "mode": "stop"}, "Ecs.0005"),
        ("v2", {"metadata": {"user_data": "not base64!"}}, "Ecs.0005"),
        ("v2", {"metadata": {"user_data": ""}}, "Ecs.0005"),
        ("v2", {"metadata": {"user_data": base64.b64encode(b"x" * 32769).decode()}}, "Ecs.0005"),
        ("v2", {"adminpass": GOOD_PASSWORD, "metadata": {"__system__cmkid": CMK}}, "Ecs.0005"),
        ("v2", {"adminpass": GOOD_PASSWORD, "metadata": {"__system__encrypted": "1", "__system__cmkid": "k"}}, "Ecs.0005"),
        ("v2", {"adminpass": GOOD_PASSWORD, "metadata": {"__system__encrypted": "yes"}}, "Ecs.0005"),
        ("v2", {"adminpass": GOOD_PASSWORD, "metadata": {"color": "red"}}, "Ecs.0005"),
        ("v1", {"userid": "u"}, "Ecs.0005"),
        ("v1", {"adminpass": GOOD_PASSWORD, "keyname": "kp"}, "Ecs.0005"),
        ("v1", {"adminpass": GOOD_PASSWORD, "metadata": {"user_data": USER_DATA}}, "Ecs.0005"),
        ("v2", {"adminpass": "Sh0rt!"}, "Ecs.0011"),
        ("v2", {"adminpass": "Aa1!" * 7}, "Ecs.0011"),
        ("v2", {"adminpass": "Test 12345pass"}, "Ecs.0011"),
        ("v2", {"adminpass": "Test#12345pass"}, "Ecs.0011"),
        ("v2", {"adminpass": "testpassword1"}, "Ecs.0011"),
        ("v2", {"adminpass": "myRoot@12345"}, "Ecs.0011"),
        ("v2", {"adminpass": "xTOOR@12345a"}, "Ecs.0011"),
        ("v2", {"adminpass": GOOD_PASSWORD, "keyname": None, "metadata": {"BYOL": "true"}}, None),
        ("v2", {"metadata": {"user_data": base64.b64encode(b"x" * 32768).decode()}}, None),
        ("v2", {"adminpass": GOOD_PASSWORD, "metadata": {"__system__encrypted": "1", "__system__cmkid": CMK}}, None),
        ("v1", {"adminpass": GOOD_PASSWORD, "metadata": {"BYOL": "true"}}, None),
    ],
)  # fmt: skip
async def test_reinstall_body_rules(api: Api, api_version: str, option: dict, code: str | None) -> None:
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    response = await api.reinstall("srv-1", option, api=api_version)
    if code is None:
        assert response.status_code == 200, response.text
        assert re.fullmatch(r"[0-9a-f]{32}", response.json()["job_id"])
        return
    assert response.status_code == 400, response.text
    assert ecs_error(response) == code
    if isinstance(option.get("adminpass"), str):
        assert option["adminpass"] not in response.text
    assert (await api.emulator.admin.counters())["accepted_reinstalls"] == {}


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"os-reinstall": "x"}', b'{"reinstall": {}}', b'{"os-reinstall": {}, "x": 1}'],
)
async def test_reinstall_body_shape(api: Api, raw: bytes) -> None:
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    response = await api.call("POST", f"/v2/{api.project_id}/cloudservers/srv-1/reinstallos", raw_body=raw)
    assert response.status_code == 400
    assert ecs_error(response) == "Ecs.0005"


async def test_windows_password_rules(api: Api) -> None:
    await api.emulator.admin.add_server("win-1", status="SHUTOFF", os_type="Windows")
    refused = await api.reinstall(
        "win-1", {"adminpass": "Nist@12345pass"}
    )  # "nis" is a run of "Administrator"
    assert refused.status_code == 400 and ecs_error(refused) == "Ecs.0011"
    assert (await api.reinstall("win-1", {"adminpass": "Test@12345root"})).status_code == 200


@pytest.mark.parametrize(
    ("server", "option", "status", "code"),
    [
        (None, {"adminpass": GOOD_PASSWORD}, 404, "Ecs.0114"),
        ({"has_system_disk": False}, {"adminpass": GOOD_PASSWORD}, 400, "Ecs.0105"),
        ({"status": "ACTIVE"}, {"adminpass": GOOD_PASSWORD}, 409, "Ecs.0100"),
        ({"task_state": "image_snapshot"}, {"adminpass": GOOD_PASSWORD}, 501, "Ecs.0603"),
        ({"locked": True}, {"adminpass": GOOD_PASSWORD}, 409, "Ecs.0605"),
        ({}, {"keyname": "missing-kp", "userid": "u"}, 400, "Ecs.0314"),
        ({"status": "ACTIVE"}, {"adminpass": GOOD_PASSWORD, "mode": "withStopServer"}, 200, None),
        ({}, {"keyname": "kp-1", "userid": "u"}, 200, None),
    ],
)
async def test_reinstall_server_state_rules(
    api: Api, server: dict | None, option: dict, status: int, code: str | None
) -> None:
    admin = api.emulator.admin
    await admin.add_keypair("kp-1")
    if server is not None:
        await admin.add_server("srv-1", **{"status": "SHUTOFF", **server})
    response = await api.reinstall("srv-1", option)
    assert response.status_code == status, response.text
    if code is not None:
        assert ecs_error(response) == code
        assert (await admin.counters())["accepted_reinstalls"] == {}
    else:
        assert (await admin.counters())["accepted_reinstalls"] == {"srv-1": 1}


async def test_byol_unsupported_is_ecs_0090(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    await api.emulator.admin.set_config(byol_supported=False)
    response = await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD, "metadata": {"BYOL": "true"}})
    assert response.status_code == 400 and ecs_error(response) == "Ecs.0090"


async def test_a_second_reinstall_while_the_first_runs_is_busy(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    first = await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})
    assert first.status_code == 200
    second = await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})
    assert second.status_code == 501 and ecs_error(second) == "Ecs.0603"
    await wait_for_job(api, first.json()["job_id"], {"SUCCESS"})
    third = await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD, "mode": "withStopServer"})
    assert third.status_code == 200
    assert (await api.emulator.admin.counters())["accepted_reinstalls"] == {"srv-1": 2}


async def test_auto_created_servers(api: Api) -> None:
    assert (await api.server("new-1")).status_code == 404
    await api.emulator.admin.set_config(auto_create_servers=True)
    server = (await api.server("new-1")).json()["server"]
    assert server["status"] == "ACTIVE"
    response = await api.reinstall("new-2", {"adminpass": GOOD_PASSWORD, "mode": "withStopServer"})
    assert response.status_code == 200


async def test_accepted_reinstalls_are_recorded_without_secrets(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    await admin.add_server("srv-2", status="SHUTOFF")
    await admin.add_keypair("kp-1")
    user_data = b"#cloud-config\npassword: s3cret\n"
    option = {
        "adminpass": GOOD_PASSWORD,
        "userid": "7e25b1da389f4697a79df3a0e5bd494e",
        "mode": "withStopServer",
        "metadata": {
            "user_data": base64.b64encode(user_data).decode(),
            "BYOL": "true",
            "__system__encrypted": "1",
            "__system__cmkid": CMK,
        },
    }
    v2 = await api.reinstall("srv-1", option)
    v1 = await api.reinstall("srv-2", {"keyname": "kp-1", "userid": "u-1"}, api="v1")
    records = await admin.reinstalls()
    assert [r["server_id"] for r in records] == ["srv-1", "srv-2"]
    first, second = records
    assert first["api"] == "v2" and second["api"] == "v1"
    assert first["job_id"] == v2.json()["job_id"] and second["job_id"] == v1.json()["job_id"]
    assert first["request_id"] == v2.headers["X-Request-Id"]
    assert first["fields"] == [
        "adminpass", "mode", "userid",
        "metadata.BYOL", "metadata.__system__cmkid", "metadata.__system__encrypted", "metadata.user_data",
    ]  # fmt: skip
    assert first["adminpass_sha256"] == hashlib.sha256(GOOD_PASSWORD.encode()).hexdigest()
    assert first["user_data_sha256"] == hashlib.sha256(user_data).hexdigest()
    assert first["user_data_size"] == len(user_data)
    assert first["metadata"] == {"BYOL": "true", "__system__encrypted": "1", "__system__cmkid": CMK}
    assert (first["mode"], first["userid"], first["keyname"]) == ("withStopServer", option["userid"], None)
    assert (second["keyname"], second["userid"], second["adminpass_sha256"]) == ("kp-1", "u-1", None)
    assert ISO_MILLIS.match(first["at"]) and first["access_key"] == api.emulator.access_key
    dumped = json.dumps(records)
    assert (
        GOOD_PASSWORD not in dumped
        and "s3cret" not in dumped
        and option["metadata"]["user_data"] not in dumped
    )
    assert await admin.reinstalls(server_id="srv-2") == [second]


# --- job and server lifecycle ------------------------------------------------------------------------------


@pytest.fixture
async def fake_clock_api(http: httpx.AsyncClient) -> AsyncIterator[tuple[Api, FakeClock]]:
    clock = FakeClock(start=float(math.floor(time.time())))
    async with running_emulator(clock=clock, init_seconds=2, job_seconds=10) as emulator:
        yield Api(emulator, http), clock


async def test_lifecycle_success_step_by_step(fake_clock_api: tuple[Api, FakeClock]) -> None:
    api, clock = fake_clock_api
    t0 = clock.now()
    await api.emulator.admin.add_server(
        "srv-1", status="SHUTOFF", updated="2024-01-01T00:00:00Z", launched_at="2023-12-31T10:00:00.250Z"
    )
    before = (await api.server("srv-1")).json()["server"]
    assert before["status"] == "SHUTOFF" and before["updated"] == "2024-01-01T00:00:00Z"
    assert before["OS-SRV-USG:launched_at"] == "2023-12-31T10:00:00.250000"  # the real API's format
    assert before["OS-EXT-STS:task_state"] is None and before["OS-EXT-STS:vm_state"] == "stopped"

    job_id = (await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})).json()["job_id"]

    def expect(job: dict, status: str, end: str) -> None:
        assert job["status"] == status and job["job_id"] == job_id and job["job_type"] == "reinstallOS"
        assert job["begin_time"] == iso_millis(t0) and job["end_time"] == end
        assert job["error_code"] is None and job["fail_reason"] is None
        assert job["entities"]["server_id"] == "srv-1" and job["entities"]["sub_jobs_total"] == 1
        assert job["entities"]["sub_jobs"][0]["status"] == status

    expect((await api.job(job_id)).json(), "INIT", "")
    server = (await api.server("srv-1")).json()["server"]
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("REBUILD", "rebuilding")
    assert server["updated"] == iso_seconds(t0)

    clock.advance(3)
    job = (await api.job(job_id)).json()
    expect(job, "RUNNING", "")
    assert job["entities"]["sub_jobs"][0]["begin_time"] == iso_millis(t0 + 2)
    assert (await api.server("srv-1")).json()["server"]["OS-EXT-STS:task_state"] == "rebuilding"

    clock.advance(5)  # t0 + 8: past half of RUNNING (t0 + 7)
    server = (await api.server("srv-1")).json()["server"]
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("REBUILD", "rebuild_spawning")
    assert server["updated"] == iso_seconds(t0 + 7)

    clock.advance(4)  # t0 + 12: the end
    job = (await api.job(job_id)).json()
    expect(job, "SUCCESS", iso_millis(t0 + 12))
    assert job["entities"]["sub_jobs"][0]["end_time"] == iso_millis(t0 + 12)
    server = (await api.server("srv-1")).json()["server"]
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
    assert server["OS-EXT-STS:vm_state"] == "active" and server["updated"] == iso_seconds(t0 + 12)
    # the new system booted
    assert server["OS-SRV-USG:launched_at"] == iso_millis(t0 + 12).replace("Z", "000")


@pytest.mark.parametrize(("fail_status", "final"), [(None, "SHUTOFF"), ("ERROR", "ERROR")])
async def test_lifecycle_failure(
    fake_clock_api: tuple[Api, FakeClock], fail_status: str | None, final: str
) -> None:
    api, clock = fake_clock_api
    extra = {"fail_status": fail_status} if fail_status else {}
    await api.emulator.admin.add_server(
        "srv-1", status="SHUTOFF", outcome="FAIL", fail_code="Ecs.1234", fail_reason="disk exploded", **extra
    )
    server_created = clock.now()
    job_id = (await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})).json()["job_id"]
    clock.advance(5)
    assert (await api.job(job_id)).json()["error_code"] is None
    clock.advance(10)
    job = (await api.job(job_id)).json()
    assert (job["status"], job["error_code"], job["fail_reason"]) == ("FAIL", "Ecs.1234", "disk exploded")
    sub_job = job["entities"]["sub_jobs"][0]
    assert (sub_job["status"], sub_job["error_code"]) == ("FAIL", "Ecs.1234")
    assert sub_job["entities"]["errorcode_message"] == "disk exploded"
    server = (await api.server("srv-1")).json()["server"]
    assert (server["status"], server["OS-EXT-STS:task_state"]) == (final, None)
    # a failed reinstall keeps the launch time: the one witness of failure once the server is back to SHUTOFF
    assert server["OS-SRV-USG:launched_at"] == iso_millis(server_created).replace("Z", "000")


async def test_configured_default_failure(fake_clock_api: tuple[Api, FakeClock]) -> None:
    api, clock = fake_clock_api
    await api.emulator.admin.set_config(outcome="FAIL", fail_code="Ecs.9999", job_seconds=1, init_seconds=0)
    await api.emulator.admin.add_server("srv-1", status="ACTIVE")
    job_id = (await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD, "mode": "withStopServer"})).json()[
        "job_id"
    ]
    clock.advance(1)
    job = (await api.job(job_id)).json()
    assert (job["status"], job["error_code"]) == ("FAIL", "Ecs.9999")
    assert (await api.server("srv-1")).json()["server"]["status"] == "ACTIVE"


async def test_lifecycle_in_real_time(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    response = await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})
    job_id = response.json()["job_id"]
    running = await wait_for_job(api, job_id, {"RUNNING", "SUCCESS"})
    assert running["end_time"] == "" or running["status"] == "SUCCESS"
    done = await wait_for_job(api, job_id, {"SUCCESS"})
    assert ISO_MILLIS.match(done["begin_time"]) and ISO_MILLIS.match(done["end_time"])
    assert (await api.server("srv-1")).json()["server"]["status"] == "ACTIVE"


async def test_unknown_job_is_404(api: Api) -> None:
    response = await api.job("ff80808288d41e1b018990260955686a")
    assert response.status_code == 404 and ecs_error(response) == "Common.0011"


async def test_server_json_shape(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1", name="web-01", status="SHUTOFF", locked=True)
    server = (await api.server("srv-1")).json()["server"]
    assert server["name"] == "web-01" and server["locked"] is True
    assert server["OS-EXT-SRV-ATTR:root_device_name"] == "/dev/vda"
    [volume] = server["os-extended-volumes:volumes_attached"]
    assert volume["bootIndex"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", server["updated"])
    await api.emulator.admin.add_server("srv-2", has_system_disk=False)
    assert (await api.server("srv-2")).json()["server"]["os-extended-volumes:volumes_attached"] == []


async def test_admin_patch_makes_a_server_busy_and_touches_updated(
    fake_clock_api: tuple[Api, FakeClock],
) -> None:
    api, clock = fake_clock_api
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF", updated="2024-01-01T00:00:00Z")
    clock.advance(1)
    patched = await api.emulator.admin.patch_server("srv-1", task_state="resize_prep")
    assert patched["task_state"] == "resize_prep" and patched["updated"] == iso_seconds(clock.now())
    server = (await api.server("srv-1")).json()["server"]
    assert server["OS-EXT-STS:task_state"] == "resize_prep"
    assert (await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})).status_code == 501
    await api.emulator.admin.patch_server("srv-1", task_state=None)
    assert (await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})).status_code == 200


# --- faults ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "shape", "code"),
    [(500, "ecs", "Ecs.0000"), (503, "ecs", "Common.1503"), (429, "gateway", "APIGW.0308"), (502, "gateway", "APIGW.0202")],
)  # fmt: skip
async def test_status_fault_with_realistic_body(api: Api, status: int, shape: str, code: str) -> None:
    await api.emulator.admin.add_server("srv-1", status="SHUTOFF")
    await api.emulator.admin.add_fault("reinstall", status=status, retry_after=3, count=1)
    response = await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})
    assert response.status_code == status
    assert (gateway_error(response) if shape == "gateway" else ecs_error(response)) == code
    assert response.headers["Retry-After"] == "3"
    counters = await api.emulator.admin.counters()
    assert counters["accepted_reinstalls"] == {} and counters["requests"] == {f"reinstall:{status}": 1}
    # count=1: the fault is used up, the next call goes through
    assert (await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})).status_code == 200
    assert await api.emulator.admin.faults() == []


async def test_fault_with_custom_body_and_operation_filter(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("srv-1")
    fault_id = await admin.add_fault(
        "get_job", status=418, body={"error": {"code": "X.1", "message": "teapot"}}
    )
    assert (await api.server("srv-1")).status_code == 200
    for _ in range(2):
        response = await api.job("any")
        assert response.status_code == 418 and response.json() == {
            "error": {"code": "X.1", "message": "teapot"}
        }
    [fault] = await admin.faults()
    assert fault["id"] == fault_id and fault["hits"] == 2
    await admin.delete_fault(fault_id)
    assert (await api.job("any")).status_code == 404


async def test_probability_zero_never_hits_and_clear_removes_all(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("srv-1")
    await admin.add_fault("*", status=500, probability=0.0)
    assert all([(await api.server("srv-1")).status_code == 200 for _ in range(5)])
    await admin.add_fault("*", status=500)
    assert (await api.server("srv-1")).status_code == 500
    await admin.clear_faults()
    assert (await api.server("srv-1")).status_code == 200


async def test_latency_fault_delays_the_answer(api: Api) -> None:
    await api.emulator.admin.add_server("srv-1")
    await api.emulator.admin.add_fault("get_server", latency_ms=300, count=1)
    started = time.monotonic()
    response = await api.server("srv-1")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


async def test_drop_before_processing(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    await admin.add_fault("reinstall", drop_connection="before", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})
    counters = await admin.counters()
    assert counters["accepted_reinstalls"] == {} and counters["requests"] == {"reinstall:dropped": 1}
    assert (await api.server("srv-1")).json()["server"]["status"] == "SHUTOFF"


async def test_drop_after_processing(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    await admin.add_fault("reinstall", drop_connection="after", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})
    counters = await admin.counters()
    assert counters["accepted_reinstalls"] == {"srv-1": 1} and counters["requests"] == {
        "reinstall:dropped": 1
    }
    server = (await api.server("srv-1")).json()["server"]
    assert server["status"] == "REBUILD"  # the client never saw the job ID, but the cloud took the request
    [record] = await admin.reinstalls()
    assert (await wait_for_job(api, record["job_id"], {"SUCCESS"}))["status"] == "SUCCESS"


@pytest.mark.parametrize(
    "fault",
    [
        {"operation": "nope", "status": 500},
        {"status": 700},
        {"drop_connection": "sideways"},
        {"drop_connection": "after", "status": 500},
        {"count": 0, "status": 500},
        {"probability": 2, "status": 500},
        {"operation": "*"},
        {"status": 500, "colour": "red"},
    ],
)
async def test_bad_faults_are_refused(api: Api, fault: dict) -> None:
    with pytest.raises(AdminError, match="400"):
        await api.emulator.admin.add_fault(**fault)


# --- rate limit, counters, reset, admin validation --------------------------------------------------------


async def test_rate_limit_throttles_with_retry_after(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("srv-1")
    await admin.set_config(rate_limit={"qps": 0.5, "burst": 2})
    statuses = [(await api.server("srv-1")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    throttled = await api.server("srv-1")
    assert gateway_error(throttled) == "APIGW.0308"
    assert int(throttled.headers["Retry-After"]) >= 1
    counters = await admin.counters()
    assert counters["throttled"] == 2 and counters["requests"] == {"get_server:200": 2, "get_server:429": 2}
    await admin.set_config(rate_limit=None)
    assert (await api.server("srv-1")).status_code == 200


async def test_per_operation_rate_limit(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    await admin.set_config(operation_rate_limits={"reinstall": {"qps": 0.1, "burst": 1}})
    assert (await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})).status_code == 200
    assert (await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})).status_code == 429
    assert (await api.server("srv-1")).status_code == 200


async def test_counters_and_reset(api: Api) -> None:
    admin = api.emulator.admin
    await admin.add_server("srv-1", status="SHUTOFF")
    await admin.add_keypair("kp")
    await admin.set_config(job_seconds=99)
    await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})
    await api.job("nope")
    await api.call("GET", f"/v1/{api.project_id}/jobs/x", secret_key="bad")
    counters = await admin.counters()
    assert counters["requests"] == {"reinstall:200": 1, "get_job:404": 1, "get_job:401": 1}
    assert counters["total_requests"] == 3
    await admin.add_fault("*", status=500)
    await admin.reset()
    assert await admin.counters() == {
        "requests": {}, "accepted_reinstalls": {}, "replayed_reinstalls": {}, "operations": {},
        "expired_job_lookups": 0, "throttled": 0, "faults_hit": 0, "total_requests": 0,
    }  # fmt: skip
    assert await admin.faults() == [] and await admin.reinstalls() == []
    assert (await admin.get_config())["job_seconds"] == 0.3  # the startup configuration
    with pytest.raises(AdminError, match="404"):
        await admin.get_server("srv-1")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"status": "RUNNING"}, "status must be one of"),
        ({"locked": "yes"}, "locked must be true or false"),
        ({"outcome": "MAYBE"}, "outcome must be"),
        ({"job_seconds": -1}, "job_seconds"),
        ({"updated": "yesterday"}, "ISO-8601"),
        ({"colour": "red"}, "unknown server field"),
    ],
)
async def test_admin_refuses_bad_servers(api: Api, call: dict, message: str) -> None:
    with pytest.raises(AdminError, match=message):
        await api.emulator.admin.add_server("srv-1", **call)


async def test_admin_config_validation_and_duplicates(api: Api) -> None:
    admin = api.emulator.admin
    with pytest.raises(AdminError, match="unknown configuration field"):
        await admin.set_config(jobseconds=1)
    with pytest.raises(AdminError, match=r"rate_limit\.qps"):
        await admin.set_config(rate_limit={"qps": 0, "burst": 1})
    await admin.add_server("srv-1")
    with pytest.raises(AdminError, match="already exists"):
        await admin.add_server("srv-1")
    with pytest.raises(AdminError, match="404"):
        await admin.patch_server("nope", locked=True)


async def test_admin_clock_advance_moves_jobs_on(http: httpx.AsyncClient) -> None:
    async with running_emulator(init_seconds=60, job_seconds=600) as emulator:
        api = Api(emulator, http)
        await emulator.admin.add_server("srv-1", status="SHUTOFF")
        job_id = (await api.reinstall("srv-1", {"adminpass": GOOD_PASSWORD})).json()["job_id"]
        assert (await api.job(job_id)).json()["status"] == "INIT"
        await emulator.admin.advance_clock(61)
        assert (await api.job(job_id)).json()["status"] == "RUNNING"
        await emulator.admin.advance_clock(600)
        assert (await api.job(job_id)).json()["status"] == "SUCCESS"


# --- the CLI --------------------------------------------------------------------------------------------


async def test_cli_prints_its_url_first_and_stops_on_sigterm(http: httpx.AsyncClient) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ecs_emulator", "--port", "0", "--access-key", "CLIAK", "--secret-key", "cli-sk",
        "--credential", "SECONDAK:second-sk", "--project-id", "cliproject", "--auto-create-servers",
        "--job-seconds", "0.2", "--init-seconds", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first_line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", first_line)
        handle = EmulatorHandle(first_line, "SECONDAK", "second-sk", "cliproject", None, None)  # type: ignore[arg-type]
        api = Api(handle, http)
        response = await api.reinstall("any-1", {"adminpass": GOOD_PASSWORD, "mode": "withStopServer"})
        assert response.status_code == 200, response.text
        assert (await wait_for_job(api, response.json()["job_id"], {"SUCCESS"}))["status"] == "SUCCESS"
        config = (await http.get(f"{first_line}/_emulator/config")).json()
        assert config["job_seconds"] == 0.2 and config["auto_create_servers"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        return_code = await asyncio.wait_for(process.wait(), timeout=30)
    assert return_code == 0


async def test_cli_refuses_missing_credentials() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ecs_emulator", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode != 0
    assert b"--access-key" in stderr
