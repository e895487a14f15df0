"""The official SDK (huaweicloudsdkecs 3.1.219), unchanged, against the emulator: the emulator accepts its
signatures and its requests, and the SDK parses the emulator's answers and errors.

The SDK is synchronous, so each SDK call runs in a worker thread while the emulator serves in the test's loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, ServerResponseException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkecs.v2 import (
    BatchAddServerTag,
    BatchCreateServerTagsRequest,
    BatchCreateServerTagsRequestBody,
    BatchDeleteServerTagsRequest,
    BatchDeleteServerTagsRequestBody,
    EcsClient,
    ListServersDetailsRequest,
    ReinstallServerWithCloudInitOption,
    ReinstallServerWithCloudInitRequest,
    ReinstallServerWithCloudInitRequestBody,
    ReinstallServerWithoutCloudInitOption,
    ReinstallServerWithoutCloudInitRequest,
    ReinstallServerWithoutCloudInitRequestBody,
    ReinstallSeverMetadata,
    ServerTag,
    ShowJobRequest,
    ShowServerRequest,
    ShowServerTagsRequest,
)

from ecs_emulator.testing import EmulatorHandle

PASSWORD = "Sdk@Test-2024pass"
USER_DATA = b"#cloud-config\nruncmd:\n  - echo from-the-sdk\n"
T = TypeVar("T")


def sdk_client(
    emulator: EmulatorHandle, *, secret_key: str | None = None, token: str | None = None
) -> EcsClient:
    credentials = BasicCredentials(
        emulator.access_key, secret_key or emulator.secret_key, emulator.project_id
    )
    if token is not None:
        credentials = credentials.with_security_token(token)
    config = HttpConfig.get_default_config()
    config.timeout = (5, 10)
    return (
        EcsClient.new_builder()
        .with_http_config(config)
        .with_credentials(credentials)
        .with_endpoints([emulator.url])
        .build()
    )


async def in_thread(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(call)


def reinstall_v2(client: EcsClient, server_id: str) -> str:
    option = ReinstallServerWithCloudInitOption(
        adminpass=PASSWORD,
        userid="7e25b1da389f4697a79df3a0e5bd494e",
        mode="withStopServer",
        metadata=ReinstallSeverMetadata(user_data=base64.b64encode(USER_DATA).decode()),
    )
    request = ReinstallServerWithCloudInitRequest(
        server_id=server_id, body=ReinstallServerWithCloudInitRequestBody(os_reinstall=option)
    )
    return client.reinstall_server_with_cloud_init(request).job_id


async def test_sdk_reinstall_v2_then_show_job_and_server(ecs_emulator: EmulatorHandle) -> None:
    await ecs_emulator.admin.add_server("srv-sdk", name="web-01", status="ACTIVE")
    client = sdk_client(ecs_emulator)

    job_id = await in_thread(lambda: reinstall_v2(client, "srv-sdk"))
    [record] = await ecs_emulator.admin.reinstalls()
    assert record["job_id"] == job_id and record["api"] == "v2"
    assert record["fields"] == ["adminpass", "mode", "userid", "metadata.user_data"]
    assert record["adminpass_sha256"] == hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert record["user_data_sha256"] == hashlib.sha256(USER_DATA).hexdigest()

    server = (await in_thread(lambda: client.show_server(ShowServerRequest(server_id="srv-sdk")))).server
    assert (server.id, server.name, server.status) == ("srv-sdk", "web-01", "REBUILD")
    assert server.os_ext_st_stask_state == "rebuilding"
    assert server.locked is False
    [volume] = server.os_extended_volumesvolumes_attached
    assert volume.boot_index == "0"

    deadline = time.monotonic() + 5
    while True:
        job = await in_thread(lambda: client.show_job(ShowJobRequest(job_id=job_id)))
        if job.status == "SUCCESS":
            break
        assert job.status in ("INIT", "RUNNING") and job.end_time == ""
        assert time.monotonic() < deadline, "the job did not finish"
        await asyncio.sleep(0.05)
    assert job.job_id == job_id and job.job_type == "reinstallOS" and job.end_time
    assert job.entities.server_id == "srv-sdk" and job.entities.sub_jobs_total == 1
    assert job.entities.sub_jobs[0].status == "SUCCESS"

    server = (await in_thread(lambda: client.show_server(ShowServerRequest(server_id="srv-sdk")))).server
    assert (server.status, server.os_ext_st_stask_state) == ("ACTIVE", None)


async def test_sdk_reinstall_v1_with_a_key_pair(ecs_emulator: EmulatorHandle) -> None:
    await ecs_emulator.admin.add_server("srv-v1", status="SHUTOFF")
    await ecs_emulator.admin.add_keypair("KeyPair-350b")
    client = sdk_client(ecs_emulator)
    option = ReinstallServerWithoutCloudInitOption(keyname="KeyPair-350b", userid="u-1")
    request = ReinstallServerWithoutCloudInitRequest(
        server_id="srv-v1", body=ReinstallServerWithoutCloudInitRequestBody(os_reinstall=option)
    )
    response = await in_thread(lambda: client.reinstall_server_without_cloud_init(request))
    [record] = await ecs_emulator.admin.reinstalls()
    assert record["job_id"] == response.job_id and record["api"] == "v1"
    assert (record["keyname"], record["userid"], record["adminpass_sha256"]) == ("KeyPair-350b", "u-1", None)


async def test_sdk_with_temporary_credentials(ecs_emulator: EmulatorHandle) -> None:
    await ecs_emulator.admin.add_server("srv-1")
    await ecs_emulator.admin.add_credential("STSAK", "sts-secret", security_token="sts-token")
    handle = EmulatorHandle(
        ecs_emulator.url,
        "STSAK",
        "sts-secret",
        ecs_emulator.project_id,
        ecs_emulator.state,
        ecs_emulator.admin,
    )
    client = sdk_client(handle, token="sts-token")
    server = (await in_thread(lambda: client.show_server(ShowServerRequest(server_id="srv-1")))).server
    assert server.id == "srv-1"


async def test_sdk_sees_gateway_401_for_a_wrong_secret_key(ecs_emulator: EmulatorHandle) -> None:
    client = sdk_client(ecs_emulator, secret_key="not-the-secret")
    with pytest.raises(ClientRequestException) as caught:
        await in_thread(lambda: client.show_job(ShowJobRequest(job_id="ff80808288d41e1b018990260955686a")))
    assert caught.value.status_code == 401
    assert caught.value.error_code == "APIGW.0301"
    assert caught.value.request_id


async def test_sdk_parses_ecs_errors(ecs_emulator: EmulatorHandle) -> None:
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF", task_state="resize_prep")
    client = sdk_client(ecs_emulator)
    with pytest.raises(ClientRequestException) as missing:
        await in_thread(lambda: client.show_server(ShowServerRequest(server_id="nope")))
    assert (missing.value.status_code, missing.value.error_code) == (404, "Ecs.0114")
    with pytest.raises(ServerResponseException) as busy:
        await in_thread(lambda: reinstall_v2(client, "srv-1"))
    assert (busy.value.status_code, busy.value.error_code) == (501, "Ecs.0603")
    assert (await ecs_emulator.admin.counters())["accepted_reinstalls"] == {}


# --- server tags and the server list (BatchCreateServerTags, ShowServerTags, BatchDeleteServerTags,
# ListServersDetails), unchanged --------------------------------------------------------------------------


def create_tags(client: EcsClient, server_id: str, tags: dict[str, str]) -> None:
    body = BatchCreateServerTagsRequestBody(
        action="create", tags=[BatchAddServerTag(key=key, value=value) for key, value in tags.items()]
    )
    client.batch_create_server_tags(BatchCreateServerTagsRequest(server_id=server_id, body=body))


def show_tags(client: EcsClient, server_id: str) -> dict[str, str]:
    response = client.show_server_tags(ShowServerTagsRequest(server_id=server_id))
    return {tag.key: tag.value for tag in response.tags}


async def test_sdk_server_tags_create_show_delete(ecs_emulator: EmulatorHandle) -> None:
    await ecs_emulator.admin.add_server("srv-tags")
    client = sdk_client(ecs_emulator)

    await in_thread(lambda: create_tags(client, "srv-tags", {"owner": "team-a", "env": "prod"}))
    assert await in_thread(lambda: show_tags(client, "srv-tags")) == {"env": "prod", "owner": "team-a"}
    await in_thread(lambda: create_tags(client, "srv-tags", {"env": "staging"}))
    assert await in_thread(lambda: show_tags(client, "srv-tags")) == {"env": "staging", "owner": "team-a"}

    body = BatchDeleteServerTagsRequestBody(action="delete", tags=[ServerTag(key="env", value="staging")])
    request = BatchDeleteServerTagsRequest(server_id="srv-tags", body=body)
    await in_thread(lambda: client.batch_delete_server_tags(request))
    assert await in_thread(lambda: show_tags(client, "srv-tags")) == {"owner": "team-a"}
    server = (await in_thread(lambda: client.show_server(ShowServerRequest(server_id="srv-tags")))).server
    assert server.tags == ["owner=team-a"]

    counters = await ecs_emulator.admin.counters()
    assert counters["requests"]["tag_server:204"] == 3


async def test_sdk_sees_the_tag_limits(ecs_emulator: EmulatorHandle) -> None:
    await ecs_emulator.admin.add_server("srv-tags")
    client = sdk_client(ecs_emulator)
    await in_thread(lambda: create_tags(client, "srv-tags", {f"k{i}": str(i) for i in range(10)}))
    with pytest.raises(ClientRequestException) as full:
        await in_thread(lambda: create_tags(client, "srv-tags", {"k10": "x"}))
    assert (full.value.status_code, full.value.error_code) == (400, "Ecs.0005")
    assert "at most 10 tags" in full.value.error_msg
    with pytest.raises(ClientRequestException) as bad:
        await in_thread(lambda: create_tags(client, "srv-tags", {"a/b": "x"}))
    assert 'tags[0].key "a/b" contains "/"' in bad.value.error_msg
    with pytest.raises(ClientRequestException) as missing:
        await in_thread(lambda: show_tags(client, "nope"))
    assert (missing.value.status_code, missing.value.error_code) == (404, "Ecs.0114")


async def test_sdk_lists_servers_with_a_tag_filter_and_pages(ecs_emulator: EmulatorHandle) -> None:
    for i in range(12):
        await ecs_emulator.admin.add_server(f"srv-{i:02d}", created=f"2024-05-01T12:00:{i:02d}Z")
    client = sdk_client(ecs_emulator)
    for i in range(0, 12, 3):
        await in_thread(lambda i=i: create_tags(client, f"srv-{i:02d}", {"fleet": "blue"}))

    response = await in_thread(
        lambda: client.list_servers_details(ListServersDetailsRequest(tags="fleet=blue", limit=10))
    )
    assert response.count == 4
    assert [server.id for server in response.servers] == ["srv-09", "srv-06", "srv-03", "srv-00"]
    assert all(server.tags == ["fleet=blue"] for server in response.servers)
    assert response.servers[0].os_extended_volumesvolumes_attached[0].boot_index == "0"

    second = await in_thread(
        lambda: client.list_servers_details(
            ListServersDetailsRequest(not_tags="fleet=blue", limit=5, offset=2, status="ACTIVE")
        )
    )
    assert second.count == 8
    assert [server.id for server in second.servers] == [
        "srv-04",
        "srv-02",
        "srv-01",
    ]  # page 2 of 11,10,8,7,5|4,2,1

    with pytest.raises(ClientRequestException) as too_many:
        await in_thread(lambda: client.list_servers_details(ListServersDetailsRequest(limit=1001)))
    assert (too_many.value.status_code, too_many.value.error_code) == (400, "Ecs.0005")


async def test_sdk_lists_servers_by_id(ecs_emulator: EmulatorHandle) -> None:
    await ecs_emulator.admin.add_server("srv-a", name="web-a", created="2024-05-01T12:00:00Z")
    await ecs_emulator.admin.add_server("srv-b", name="web-b", created="2024-05-01T12:00:01Z")
    await ecs_emulator.admin.add_server("srv-c", created="2024-05-01T12:00:02Z")
    client = sdk_client(ecs_emulator)

    response = await in_thread(
        lambda: client.list_servers_details(ListServersDetailsRequest(server_id="srv-a,srv-b"))
    )
    assert response.count == 2
    assert [server.id for server in response.servers] == ["srv-a", "srv-b"]  # as requested, srv-c left out
    assert [server.name for server in response.servers] == ["web-a", "web-b"]
    assert response.servers[0].fault is None

    # server_id wins over the other filters; an unknown ID is an entry with only id and fault
    response = await in_thread(
        lambda: client.list_servers_details(
            ListServersDetailsRequest(server_id="nope,srv-c", name="web", status="SHUTOFF", limit=1)
        )
    )
    assert response.count == 2
    missing, found = response.servers
    assert (missing.id, missing.name, missing.status, missing.flavor) == ("nope", None, None, None)
    assert missing.fault["code"] == 404
    assert (found.id, found.status, found.fault) == ("srv-c", "ACTIVE", None)


# --- changing the OS (ChangeServerOsWithCloudInit, ChangeServerOsWithoutCloudInit), unchanged --------------

from huaweicloudsdkecs.v2 import (  # noqa: E402  (appended section: its own imports)
    ChangeServerOsWithCloudInitOption,
    ChangeServerOsWithCloudInitRequest,
    ChangeServerOsWithCloudInitRequestBody,
    ChangeServerOsWithoutCloudInitOption,
    ChangeServerOsWithoutCloudInitRequest,
    ChangeServerOsWithoutCloudInitRequestBody,
    ChangeSeversOsMetadata,
    ChangeSeversOsMetadataWithoutCloudInitOption,
)

NEW_IMAGE = "67f433d8-ed0e-4321-a8a2-a71838539e09"
PLAIN_IMAGE = "2f1a3b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"


async def wait_for_sdk_job(client: EcsClient, job_id: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        job = await in_thread(lambda: client.show_job(ShowJobRequest(job_id=job_id)))
        if job.status in ("SUCCESS", "FAIL"):
            return job
        assert job.status in ("INIT", "RUNNING") and job.end_time == ""
        assert time.monotonic() < deadline, "the job did not finish"
        await asyncio.sleep(0.05)


async def test_sdk_change_os_with_cloud_init_then_show_job_and_server(ecs_emulator: EmulatorHandle) -> None:
    await ecs_emulator.admin.add_image(NEW_IMAGE, name="Ubuntu 22.04")
    await ecs_emulator.admin.add_server("srv-sdk", status="ACTIVE")
    client = sdk_client(ecs_emulator)
    option = ChangeServerOsWithCloudInitOption(
        adminpass=PASSWORD,
        userid="7e25b1da389f4697a79df3a0e5bd494e",
        imageid=NEW_IMAGE,
        mode="withStopServer",
        metadata=ChangeSeversOsMetadata(
            user_data=base64.b64encode(USER_DATA).decode(), system__encrypted="0", byol="true"
        ),
    )
    request = ChangeServerOsWithCloudInitRequest(
        server_id="srv-sdk", body=ChangeServerOsWithCloudInitRequestBody(os_change=option)
    )
    response = await in_thread(lambda: client.change_server_os_with_cloud_init(request))
    job_id = response.job_id
    assert job_id and len(job_id) == 32

    [record] = await ecs_emulator.admin.reinstalls()
    assert (record["kind"], record["imageid"], record["api"], record["job_id"]) == (
        "change_os",
        NEW_IMAGE,
        "v2",
        job_id,
    )
    assert record["fields"] == [
        "adminpass", "imageid", "mode", "userid",
        "metadata.BYOL", "metadata.__system__encrypted", "metadata.user_data",
    ]  # fmt: skip
    assert record["adminpass_sha256"] == hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert record["user_data_sha256"] == hashlib.sha256(USER_DATA).hexdigest()

    job = await wait_for_sdk_job(client, job_id)
    assert (job.status, job.job_id, job.job_type) == ("SUCCESS", job_id, "changeOS")
    assert job.entities.server_id == "srv-sdk" and job.entities.sub_jobs[0].status == "SUCCESS"
    server = (await in_thread(lambda: client.show_server(ShowServerRequest(server_id="srv-sdk")))).server
    assert (server.status, server.image.id) == ("ACTIVE", NEW_IMAGE)


async def test_sdk_change_os_without_cloud_init(ecs_emulator: EmulatorHandle) -> None:
    await ecs_emulator.admin.add_image(PLAIN_IMAGE, name="Debian 12 plain", cloud_init=False)
    await ecs_emulator.admin.add_server("srv-v1", status="SHUTOFF")
    await ecs_emulator.admin.add_keypair("KeyPair-350b")
    client = sdk_client(ecs_emulator)
    option = ChangeServerOsWithoutCloudInitOption(
        keyname="KeyPair-350b",
        userid="u-1",
        imageid=PLAIN_IMAGE,
        metadata=ChangeSeversOsMetadataWithoutCloudInitOption(system__encrypted="0"),
    )
    request = ChangeServerOsWithoutCloudInitRequest(
        server_id="srv-v1", body=ChangeServerOsWithoutCloudInitRequestBody(os_change=option)
    )
    response = await in_thread(lambda: client.change_server_os_without_cloud_init(request))
    [record] = await ecs_emulator.admin.reinstalls()
    assert (record["job_id"], record["kind"], record["api"]) == (response.job_id, "change_os", "v1")
    assert (record["keyname"], record["userid"], record["imageid"]) == ("KeyPair-350b", "u-1", PLAIN_IMAGE)

    job = await wait_for_sdk_job(client, response.job_id)
    assert (job.status, job.job_type) == ("SUCCESS", "changeOS")
    server = (await in_thread(lambda: client.show_server(ShowServerRequest(server_id="srv-v1")))).server
    assert (server.image.id, server.key_name) == (PLAIN_IMAGE, "KeyPair-350b")
    counters = await ecs_emulator.admin.counters()
    assert counters["requests"]["change_os_v1:200"] == 1


async def test_sdk_parses_change_os_refusals(ecs_emulator: EmulatorHandle) -> None:
    await ecs_emulator.admin.add_image(PLAIN_IMAGE, cloud_init=False)
    await ecs_emulator.admin.add_server("srv-1", status="SHUTOFF")
    client = sdk_client(ecs_emulator)

    def change(image_id: str) -> str:
        option = ChangeServerOsWithCloudInitOption(adminpass=PASSWORD, imageid=image_id)
        request = ChangeServerOsWithCloudInitRequest(
            server_id="srv-1", body=ChangeServerOsWithCloudInitRequestBody(os_change=option)
        )
        return client.change_server_os_with_cloud_init(request).job_id

    with pytest.raises(ClientRequestException) as unknown:
        await in_thread(lambda: change("00000000-0000-4000-8000-000000000000"))
    assert (unknown.value.status_code, unknown.value.error_code) == (400, "Ecs.0031")
    with pytest.raises(ClientRequestException) as no_cloud_init:
        await in_thread(lambda: change(PLAIN_IMAGE))
    assert (no_cloud_init.value.status_code, no_cloud_init.value.error_code) == (400, "Ecs.0007")
    assert "Cloud-Init" in no_cloud_init.value.error_msg
    assert await ecs_emulator.admin.reinstalls() == []
