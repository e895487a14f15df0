"""EcsClient against the ECS emulator over loopback: results, every error class, retries that are safe and
only those, the shared rate limiter, TLS, and secrets that never show."""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import logging
import shutil
import socket
import ssl
import subprocess
import time
import weakref
from datetime import UTC, datetime

import httpx
import pytest
from aiohttp import web

from ecs_emulator.clock import FakeClock
from ecs_emulator.testing import EmulatorHandle, running_emulator
from ecs_reinstall.cloud.client import ClientConfig, EcsClient, parse_job, parse_server, parse_time
from ecs_reinstall.cloud.errors import (
    AmbiguousError,
    CloudError,
    TerminalError,
    ThrottledError,
    TransientError,
)
from ecs_reinstall.cloud.models import CloudTarget, Credentials, JobStatus
from ecs_reinstall.cloud.ratelimit import RateLimiterRegistry

PASSWORD = "Xy7!kLm2pQ9z"
USER_DATA = "#cloud-config\npassword: ud-Secret-Value-42\n"
USER_DATA_B64 = base64.b64encode(USER_DATA.encode()).decode()
TOKEN = "tok-SecurityToken-0123456789abcdef"

# fast retries: the tests check what is retried and how often, not how long the real defaults wait
FAST = ClientConfig(qps=1000, burst=1000, backoff_base=0.01, backoff_max=2.0, max_get_attempts=3)


def target_of(emulator: EmulatorHandle, credentials: Credentials | None = None) -> CloudTarget:
    return CloudTarget(
        emulator.url,
        emulator.project_id,
        credentials or Credentials(emulator.access_key, emulator.secret_key),
    )


def password_body(**extra) -> dict:
    return {"os-reinstall": {"adminpass": PASSWORD, "userid": "7e25b1da389f4697a79df3a0e5bd494e", **extra}}


class RecordingObserver:
    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []
        self.throttled: list[str] = []

    def on_attempt(self, operation: str, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        self.attempts.append((operation, outcome))

    def on_throttled(self, operation: str) -> None:
        self.throttled.append(operation)


@pytest.fixture
async def client():
    async with EcsClient(FAST) as ecs:
        yield ecs


async def reinstall_requests(emulator: EmulatorHandle) -> dict[str, int]:
    counters = await emulator.admin.counters()
    return {key: n for key, n in counters["requests"].items() if key.startswith("reinstall")}


# --- results -----------------------------------------------------------------------------------------------


async def test_reinstall_v2_returns_the_job_and_sends_the_exact_body(ecs_emulator, client):
    await ecs_emulator.admin.add_server("srv-1", status="ACTIVE")
    body = password_body(mode="withStopServer", metadata={"user_data": USER_DATA_B64, "BYOL": "true"})

    job_id = await client.reinstall(target_of(ecs_emulator), "srv-1", body)

    (record,) = await ecs_emulator.admin.reinstalls("srv-1")
    assert record["job_id"] == job_id and record["api"] == "v2"
    assert record["adminpass_sha256"] == hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert record["user_data_sha256"] == hashlib.sha256(USER_DATA.encode()).hexdigest()
    assert (record["mode"], record["metadata"]["BYOL"]) == ("withStopServer", "true")
    assert (await ecs_emulator.admin.counters())["accepted_reinstalls"] == {"srv-1": 1}


async def test_reinstall_v1_for_images_without_cloud_init(ecs_emulator, client):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    job_id = await client.reinstall(target_of(ecs_emulator), "srv-1", password_body(), cloud_init=False)
    (record,) = await ecs_emulator.admin.reinstalls("srv-1")
    assert (record["job_id"], record["api"]) == (job_id, "v1")
    assert await reinstall_requests(ecs_emulator) == {"reinstall_v1:200": 1}


async def test_temporary_credentials_sign_the_security_token(ecs_emulator, client):
    await ecs_emulator.admin.add_credential("TEMPAK00000000000000", "temp-SK-0000000000000000", TOKEN)
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    creds = Credentials("TEMPAK00000000000000", "temp-SK-0000000000000000", TOKEN)
    await client.reinstall(target_of(ecs_emulator, creds), "srv-1", password_body())
    (record,) = await ecs_emulator.admin.reinstalls("srv-1")
    assert record["access_key"] == "TEMPAK00000000000000"


async def test_get_job_follows_init_running_success():
    clock = FakeClock()
    async with (
        running_emulator(clock=clock, init_seconds=10, job_seconds=20) as emulator,
        EcsClient(FAST) as ecs,
    ):
        await emulator.admin.add_server("srv-1", status="SHUTOFF")
        target = target_of(emulator)
        job_id = await ecs.reinstall(target, "srv-1", password_body())

        job = await ecs.get_job(target, job_id)
        assert (job.job_id, job.status, job.server_id, job.end_time) == (
            job_id,
            JobStatus.INIT,
            "srv-1",
            None,
        )
        assert isinstance(job.begin_time, datetime) and job.begin_time.tzinfo is not None
        assert job.begin_time.timestamp() == pytest.approx(clock.now(), abs=0.001)  # milliseconds kept

        clock.advance(15)
        job = await ecs.get_job(target, job_id)
        assert job.status is JobStatus.RUNNING and job.end_time is None
        (sub,) = job.sub_jobs
        assert (sub.status, sub.server_id, sub.job_type) == (
            JobStatus.RUNNING,
            "srv-1",
            "reinstallSingleServer",
        )
        assert sub.begin_time is not None and sub.end_time is None

        clock.advance(20)
        job = await ecs.get_job(target, job_id)
        assert job.status is JobStatus.SUCCESS and job.status.is_terminal
        assert job.end_time is not None and job.end_time > job.begin_time
        assert job.error_code is None and job.fail_reason is None
        assert job.sub_jobs[0].status is JobStatus.SUCCESS


async def test_get_job_fail_carries_code_and_reason_on_job_and_sub_job():
    clock = FakeClock()
    async with running_emulator(clock=clock) as emulator, EcsClient(FAST) as ecs:
        await emulator.admin.add_server(
            "srv-1", status="SHUTOFF", outcome="FAIL", fail_code="Ecs.0999", fail_reason="disk rebuild failed"
        )
        target = target_of(emulator)
        job_id = await ecs.reinstall(target, "srv-1", password_body())
        clock.advance(3600)
        job = await ecs.get_job(target, job_id)
        assert (job.status, job.error_code, job.fail_reason) == (
            JobStatus.FAIL,
            "Ecs.0999",
            "disk rebuild failed",
        )
        (sub,) = job.sub_jobs
        assert (sub.status, sub.error_code, sub.fail_reason) == (
            JobStatus.FAIL,
            "Ecs.0999",
            "disk rebuild failed",
        )
        assert sub.errorcode_message


async def test_get_server_fields(ecs_emulator, client):
    await ecs_emulator.admin.add_server("idle", status="SHUTOFF", locked=True, updated="2024-05-01T10:00:00Z")
    await ecs_emulator.admin.add_server("diskless", status="SHUTOFF", has_system_disk=False)
    await ecs_emulator.admin.add_server("busy", status="ACTIVE", task_state="resize_prep")
    target = target_of(ecs_emulator)

    idle = await client.get_server(target, "idle")
    assert (idle.id, idle.status, idle.task_state, idle.vm_state, idle.locked) == (
        "idle",
        "SHUTOFF",
        None,
        "stopped",
        True,
    )
    assert idle.updated == datetime.fromisoformat("2024-05-01T10:00:00+00:00")
    assert idle.has_system_disk and not idle.busy
    assert not (await client.get_server(target, "diskless")).has_system_disk
    busy = await client.get_server(target, "busy")
    assert busy.task_state == "resize_prep" and busy.busy and not busy.locked

    await ecs_emulator.admin.patch_server("idle", locked=False)
    await client.reinstall(target, "idle", password_body())
    rebuilding = await client.get_server(target, "idle")
    assert rebuilding.status == "REBUILD" and rebuilding.rebuilding and rebuilding.busy


async def test_get_servers_reads_many_in_one_list_call_as_a_get_would(ecs_emulator, client):
    await ecs_emulator.admin.add_server("idle", status="SHUTOFF", updated="2024-05-01T10:00:00Z")
    await ecs_emulator.admin.add_server("busy", status="ACTIVE", task_state="resize_prep")
    target = target_of(ecs_emulator)
    await client.reinstall(target, "idle", password_body())

    found = await client.get_servers(target, ["busy", "missing", "idle"], slot_taken=False)
    assert list(found) == ["busy", "missing", "idle"]
    assert found["missing"] is None
    assert found["idle"] == await client.get_server(target, "idle")  # the same server, field by field
    assert found["idle"].rebuilding and found["busy"].busy
    with pytest.raises(ValueError, match="1 to 100"):
        await client.get_servers(target, [f"s{i}" for i in range(101)])


async def test_a_read_answer_is_freed_as_soon_as_it_is_parsed_without_the_cycle_collector(
    ecs_emulator, client
):
    """httpx binds a response and its stream to each other: left so, every answer (a list call's is 100 servers)
    waited for the cycle collector, which cost CPU and memory at fleet scale."""
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    answers: list[weakref.ref[httpx.Response]] = []

    async def keep(response: httpx.Response) -> None:
        answers.append(weakref.ref(response))

    client._http.event_hooks["response"].append(keep)
    gc.disable()
    try:
        await client.get_servers(target_of(ecs_emulator), ["srv-1"])
        await client.get_server(target_of(ecs_emulator), "srv-1")
        assert len(answers) == 2
        assert [answer() for answer in answers] == [None, None]
    finally:
        gc.enable()


# --- errors --------------------------------------------------------------------------------------------------


async def test_terminal_4xx_carries_code_status_and_request_id_and_is_not_retried(ecs_emulator, client):
    await ecs_emulator.admin.add_server("locked", status="SHUTOFF", locked=True)
    target = target_of(ecs_emulator)

    with pytest.raises(TerminalError) as caught:
        await client.reinstall(target, "locked", password_body())
    error = caught.value
    assert (error.http_status, error.code, error.operation) == (409, "Ecs.0605", "reinstall")
    assert error.request_id and len(error.request_id) == 32
    assert error.request_id in str(error) and "Ecs.0605" in str(error)

    with pytest.raises(TerminalError) as caught:
        await client.get_server(target, "no-such-server")
    assert (caught.value.http_status, caught.value.code) == (404, "Ecs.0114")
    counters = (await ecs_emulator.admin.counters())["requests"]
    assert counters == {"reinstall:409": 1, "get_server:404": 1}


async def test_wrong_secret_key_is_a_terminal_gateway_error(ecs_emulator, client):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    creds = Credentials(ecs_emulator.access_key, "not-the-right-secret-key")
    with pytest.raises(TerminalError) as caught:
        await client.get_server(target_of(ecs_emulator, creds), "srv-1")
    assert (caught.value.http_status, caught.value.code) == (401, "APIGW.0301")
    assert "not-the-right-secret-key" not in str(caught.value)


async def test_get_5xx_is_retried_then_succeeds(ecs_emulator):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    await ecs_emulator.admin.add_fault("get_server", status=500, count=2)
    observer = RecordingObserver()
    async with EcsClient(FAST, observer=observer) as ecs:
        server = await ecs.get_server(target_of(ecs_emulator), "srv-1")
    assert server.id == "srv-1"
    counters = (await ecs_emulator.admin.counters())["requests"]
    assert counters == {"get_server:500": 2, "get_server:200": 1}
    assert observer.attempts == [("get_server", "transient")] * 2 + [("get_server", "success")]


async def test_get_exhausted_raises_the_last_transient_error(ecs_emulator, client):
    await ecs_emulator.admin.add_fault("get_job", status=502)
    with pytest.raises(TransientError) as caught:
        await client.get_job(target_of(ecs_emulator), "ff80808288d41e1b018990260955686a")
    assert (caught.value.http_status, caught.value.code) == (502, "APIGW.0202")
    assert (await ecs_emulator.admin.counters())["requests"] == {"get_job:502": FAST.max_get_attempts}


async def test_get_throttled_with_a_retry_after_longer_than_the_cap_goes_back_to_the_caller(
    ecs_emulator, client
):
    await ecs_emulator.admin.add_fault("get_job", status=429, retry_after=60)
    with pytest.raises(ThrottledError) as caught:
        await client.get_job(target_of(ecs_emulator), "job-1")
    assert caught.value.retry_after == 60 and caught.value.code == "APIGW.0308"
    assert (await ecs_emulator.admin.counters())["requests"] == {"get_job:429": 1}
    # a rate limit holds every caller of the endpoint and project, for at most backoff_max
    assert 1.0 < client.limiter(target_of(ecs_emulator)).paused_for() <= FAST.backoff_max


async def test_post_500_is_ambiguous_and_sent_exactly_once(ecs_emulator, client):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    await ecs_emulator.admin.add_fault("reinstall", status=500)
    with pytest.raises(AmbiguousError) as caught:
        await client.reinstall(target_of(ecs_emulator), "srv-1", password_body())
    assert (caught.value.http_status, caught.value.code) == (500, "Ecs.0000")
    assert "may have been processed" in str(caught.value)
    assert await reinstall_requests(ecs_emulator) == {"reinstall:500": 1}


async def test_post_503_is_ambiguous_too(ecs_emulator, client):
    # A 503 may come from a proxy that gave up on a backend that went on working: it proves nothing.
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    await ecs_emulator.admin.add_fault("reinstall", status=503)
    with pytest.raises(AmbiguousError):
        await client.reinstall(target_of(ecs_emulator), "srv-1", password_body())
    assert await reinstall_requests(ecs_emulator) == {"reinstall:503": 1}


async def test_post_dropped_after_processing_is_ambiguous_and_accepted_once(ecs_emulator, client):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    await ecs_emulator.admin.add_fault("reinstall", drop_connection="after")
    with pytest.raises(AmbiguousError) as caught:
        await client.reinstall(target_of(ecs_emulator), "srv-1", password_body())
    assert caught.value.http_status is None
    counters = await ecs_emulator.admin.counters()
    assert counters["accepted_reinstalls"] == {"srv-1": 1}
    assert await reinstall_requests(ecs_emulator) == {"reinstall:dropped": 1}


async def test_post_dropped_before_processing_is_just_as_ambiguous_to_the_client(ecs_emulator, client):
    # The client sees the same disconnect either way, so it cannot claim that nothing happened.
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    await ecs_emulator.admin.add_fault("reinstall", drop_connection="before")
    with pytest.raises(AmbiguousError):
        await client.reinstall(target_of(ecs_emulator), "srv-1", password_body())
    assert (await ecs_emulator.admin.counters())["accepted_reinstalls"] == {}
    assert await reinstall_requests(ecs_emulator) == {"reinstall:dropped": 1}


async def test_post_read_timeout_is_ambiguous_and_the_cloud_may_still_take_it(ecs_emulator):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    await ecs_emulator.admin.add_fault("reinstall", latency_ms=600, count=1)
    config = ClientConfig(read_timeout=0.2, backoff_base=0.01)
    async with EcsClient(config) as ecs:
        with pytest.raises(AmbiguousError) as caught:
            await ecs.reinstall(target_of(ecs_emulator), "srv-1", password_body())
    assert "read timeout" in str(caught.value)
    deadline = time.monotonic() + 10
    while (await ecs_emulator.admin.counters())["accepted_reinstalls"] != {"srv-1": 1}:
        assert time.monotonic() < deadline, "the emulator never processed the slow request"
        await asyncio.sleep(0.05)
    assert await reinstall_requests(ecs_emulator) == {"reinstall:200": 1}


async def test_post_429_is_retried_after_retry_after_and_accepted_once(ecs_emulator):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    await ecs_emulator.admin.add_fault("reinstall", status=429, retry_after=1, count=1)
    observer = RecordingObserver()
    async with EcsClient(FAST, observer=observer) as ecs:
        started = time.monotonic()
        job_id = await ecs.reinstall(target_of(ecs_emulator), "srv-1", password_body())
        waited = time.monotonic() - started
    assert job_id
    assert waited >= 1.0  # Retry-After is a floor
    assert (await ecs_emulator.admin.counters())["accepted_reinstalls"] == {"srv-1": 1}
    assert await reinstall_requests(ecs_emulator) == {"reinstall:429": 1, "reinstall:200": 1}
    assert observer.attempts == [("reinstall", "throttled"), ("reinstall", "success")]
    assert observer.throttled == ["reinstall"]


async def test_post_busy_server_is_throttled_at_once_without_resending(ecs_emulator, client):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF", task_state="resize_prep")
    with pytest.raises(ThrottledError) as caught:
        await client.reinstall(target_of(ecs_emulator), "srv-1", password_body())
    assert (caught.value.http_status, caught.value.code) == (501, "Ecs.0603")
    assert await reinstall_requests(ecs_emulator) == {"reinstall:501": 1}
    assert client.limiter(target_of(ecs_emulator)).paused_for() == 0  # one busy server slows nobody else


async def test_post_accepted_without_a_job_id_is_ambiguous(ecs_emulator, client):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    await ecs_emulator.admin.add_fault("reinstall", status=200, body={"unexpected": True})
    with pytest.raises(AmbiguousError) as caught:
        await client.reinstall(target_of(ecs_emulator), "srv-1", password_body())
    assert "no job_id" in str(caught.value) and caught.value.http_status == 200
    assert await reinstall_requests(ecs_emulator) == {"reinstall:200": 1}


async def test_get_with_an_unreadable_answer_is_retried_then_transient(ecs_emulator, client):
    await ecs_emulator.admin.add_fault("get_job", status=200, body={"job_id": "j", "status": "EXPLODED"})
    with pytest.raises(TransientError) as caught:
        await client.get_job(target_of(ecs_emulator), "j")
    assert "job status 'EXPLODED' is not one of INIT, RUNNING, SUCCESS, FAIL, PENDING_PAYMENT" in str(
        caught.value
    )
    assert (await ecs_emulator.admin.counters())["requests"] == {"get_job:200": FAST.max_get_attempts}


def test_parse_job_tolerates_empty_and_missing_fields():
    job = parse_job(
        {
            "job_id": "j1",
            "status": "RUNNING",
            "begin_time": "2016-04-25T20:04:47.591Z",
            "end_time": "",
            "error_code": "",
            "fail_reason": None,
            "entities": {"sub_jobs": [{"status": "FAIL", "job_id": "s1", "end_time": "garbage"}]},
        }
    )
    assert job.begin_time == datetime(2016, 4, 25, 20, 4, 47, 591000, tzinfo=UTC)
    assert (job.end_time, job.error_code, job.fail_reason, job.server_id, job.job_type) == (
        None,
        None,
        None,
        None,
        "",
    )
    assert job.sub_jobs[0].status is JobStatus.FAIL and job.sub_jobs[0].end_time is None
    assert parse_time("2018-04-17T07:03:00") == datetime(2018, 4, 17, 7, 3, tzinfo=UTC)  # naive means UTC


def test_parse_server_system_disk_rules():
    base = {"id": "s", "status": "SHUTOFF"}
    volumes = "os-extended-volumes:volumes_attached"
    root = "OS-EXT-SRV-ATTR:root_device_name"
    assert parse_server(
        {"server": {**base, volumes: [{"bootIndex": "1"}, {"bootIndex": "0"}]}}
    ).has_system_disk
    assert parse_server({"server": {**base, volumes: [], root: "/dev/vda"}}).has_system_disk
    assert not parse_server({"server": {**base, volumes: [{"bootIndex": "1"}], root: ""}}).has_system_disk
    assert parse_server({"server": base}).has_system_disk  # neither field: no claim that the disk is missing
    assert parse_server({"server": {**base, "locked": "true", "OS-EXT-STS:task_state": ""}}).locked
    launched = parse_server({"server": {**base, "OS-SRV-USG:launched_at": "2019-05-22T03:23:59.000000"}})
    assert launched.launched_at == datetime(2019, 5, 22, 3, 23, 59, tzinfo=UTC)  # no zone in the API: UTC
    assert parse_server({"server": {**base, "OS-SRV-USG:launched_at": ""}}).launched_at is None
    with pytest.raises(ValueError, match=r"server\.id"):
        parse_server({"servers": []})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connection_refused_is_transient_and_the_post_is_resent_only_then():
    observer = RecordingObserver()
    target = CloudTarget(f"http://127.0.0.1:{closed_port()}", "p", Credentials("AK", "SK-secret-value"))
    async with EcsClient(FAST, observer=observer) as ecs:
        with pytest.raises(TransientError) as caught:
            await ecs.reinstall(target, "srv-1", password_body())
        assert "cannot connect" in str(caught.value)
        assert observer.attempts == [("reinstall", "transient")] * FAST.max_post_attempts
        observer.attempts.clear()
        with pytest.raises(TransientError):
            await ecs.get_job(target, "job-1")
        assert observer.attempts == [("get_job", "transient")] * FAST.max_get_attempts


# --- rate limiting -------------------------------------------------------------------------------------------


async def test_calls_are_paced_by_the_bucket(ecs_emulator):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    qps, burst, calls = 40.0, 5, 25
    async with EcsClient(ClientConfig(qps=qps, burst=burst)) as ecs:
        started = time.monotonic()
        await asyncio.gather(*(ecs.get_server(target_of(ecs_emulator), "srv-1") for _ in range(calls)))
        elapsed = time.monotonic() - started
    # the bucket cannot hand out more than burst + qps * t tokens by time t
    assert elapsed >= (calls - burst) / qps - 1e-3
    assert (await ecs_emulator.admin.counters())["requests"] == {"get_server:200": calls}


async def test_one_bucket_is_shared_by_clients_of_the_same_endpoint_and_project(ecs_emulator):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    registry = RateLimiterRegistry(qps=20, burst=2)
    target = target_of(ecs_emulator)
    async with EcsClient(FAST, limiters=registry) as first, EcsClient(FAST, limiters=registry) as second:
        assert first.limiter(target) is second.limiter(target)
        other_project = CloudTarget(target.endpoint, "another-project", target.credentials)
        assert first.limiter(other_project) is not first.limiter(target)
        started = time.monotonic()
        await asyncio.gather(
            *(first.get_server(target, "srv-1") for _ in range(5)),
            *(second.get_server(target, "srv-1") for _ in range(5)),
        )
        elapsed = time.monotonic() - started
    assert elapsed >= (10 - 2) / 20 - 1e-3  # separate buckets would allow 2 x (5 - 2) / 20


async def test_cloud_rate_limit_pauses_the_shared_bucket_and_every_call_still_succeeds(ecs_emulator):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    await ecs_emulator.admin.set_config(rate_limit={"qps": 4, "burst": 2})
    observer = RecordingObserver()
    config = ClientConfig(qps=1000, burst=1000, backoff_base=0.05, backoff_max=5.0, max_get_attempts=10)
    async with EcsClient(config, observer=observer) as ecs:
        target = target_of(ecs_emulator)
        servers = await asyncio.gather(*(ecs.get_server(target, "srv-1") for _ in range(6)))
    assert [s.id for s in servers] == ["srv-1"] * 6
    counters = await ecs_emulator.admin.counters()
    assert counters["requests"]["get_server:200"] == 6
    assert counters["throttled"] >= 1 and len(observer.throttled) == counters["throttled"]


# --- TLS ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_endpoint(self_signed):
    """A tiny HTTPS server that answers any GET with a job: TLS is what is under test here."""
    cert, key = self_signed

    async def job(request: web.Request) -> web.Response:
        return web.json_response(
            {"job_id": request.match_info["job"], "job_type": "reinstallOS", "status": "INIT"}
        )

    app = web.Application()
    app.router.add_get("/v1/{project}/jobs/{job}", job)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_tls_is_verified_by_default_and_a_ca_bundle_makes_it_trusted(tls_endpoint, self_signed):
    target = CloudTarget(tls_endpoint, "p", Credentials("AK", "SK-secret-value"))
    async with EcsClient(FAST) as ecs:
        with pytest.raises(TerminalError) as caught:
            await ecs.get_job(target, "job-1")
    assert "TLS certificate verification failed" in str(caught.value)
    async with EcsClient(ClientConfig(ca_bundle=str(self_signed[0]))) as ecs:
        assert (await ecs.get_job(target, "job-1")).status is JobStatus.INIT


def test_a_missing_ca_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="CA bundle"):
        EcsClient(ClientConfig(ca_bundle=str(tmp_path / "nope.pem")))


# --- secrets ------------------------------------------------------------------------------------------------

SECRETS = (PASSWORD, USER_DATA_B64, "ud-Secret-Value-42", TOKEN, "temp-SK-0000000000000000")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into: {text[:200]!r}"


async def test_no_secret_in_errors_or_logs_on_any_path(ecs_emulator, caplog):
    caplog.set_level(logging.DEBUG)
    await ecs_emulator.admin.add_credential("TEMPAK00000000000000", "temp-SK-0000000000000000", TOKEN)
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    await ecs_emulator.admin.add_server("locked", status="SHUTOFF", locked=True)
    target = target_of(ecs_emulator, Credentials("TEMPAK00000000000000", "temp-SK-0000000000000000", TOKEN))
    body = {"os-reinstall": {"adminpass": PASSWORD, "metadata": {"user_data": USER_DATA_B64}}}
    echo = f"rejected adminpass {PASSWORD} with user_data {USER_DATA_B64} token {TOKEN}"
    errors: list[CloudError] = []

    async with EcsClient(FAST) as ecs:
        await ecs.reinstall(target, "srv-1", body)  # success path logs too
        await ecs_emulator.admin.add_fault(
            "reinstall", status=400, count=1, body={"error": {"code": "Ecs.0005", "message": echo}}
        )
        await ecs_emulator.admin.add_fault(
            "reinstall",
            status=400,
            count=1,
            body={"error_code": "X.1", "error_msg": echo, "request_id": echo},
        )
        await ecs_emulator.admin.add_fault("reinstall", status=500, count=1)
        await ecs_emulator.admin.add_fault("reinstall", drop_connection="after", count=1)
        for server in ("srv-1", "srv-1", "srv-1", "srv-1", "locked"):
            with pytest.raises(CloudError) as caught:
                await ecs.reinstall(target, server, body)
            errors.append(caught.value)
        bad_password = {"os-reinstall": {"adminpass": "root-" + PASSWORD}}
        with pytest.raises(TerminalError) as caught:
            await ecs.reinstall(target, "srv-1", bad_password)
        errors.append(caught.value)
        with pytest.raises(ValueError) as bad_shape:
            await ecs.reinstall(target, "srv-1", {"adminpass": PASSWORD})

    assert [type(e) for e in errors] == [TerminalError, TerminalError, AmbiguousError, AmbiguousError] + [
        TerminalError
    ] * 2
    assert "***" in str(errors[0]) and "***" in str(errors[1])  # the echo was there, and masked
    assert_no_secret(str(bad_shape.value), repr(bad_shape.value))
    for error in errors:
        assert_no_secret(str(error), repr(error), repr(error.args), str(error.__dict__))
    assert "ecs_reinstall.cloud" in {record.name for record in caplog.records}
    assert_no_secret(caplog.text, *(str(record.__dict__) for record in caplog.records))


async def test_a_borrowed_http_client_is_left_open(ecs_emulator):
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    async with httpx.AsyncClient() as http:
        async with EcsClient(FAST, http=http) as ecs:
            await ecs.get_server(target_of(ecs_emulator), "srv-1")
        assert not http.is_closed


@pytest.mark.parametrize(
    ("server_id", "problem"), [("", "non-empty"), ("a/b", "not a valid ID"), ("..", "not a valid ID")]
)
async def test_ids_that_would_change_the_path_are_refused(client, server_id, problem):
    target = CloudTarget("http://127.0.0.1:1", "p", Credentials("AK", "SK-secret-value"))
    with pytest.raises(ValueError, match=problem):
        await client.get_server(target, server_id)


async def test_a_bad_endpoint_is_refused_with_an_example(client):
    target = CloudTarget("ecs.example.com", "p", Credentials("AK", "SK-secret-value"))
    with pytest.raises(ValueError, match="https://ecs"):
        await client.get_server(target, "srv-1")
