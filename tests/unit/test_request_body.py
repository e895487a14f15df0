"""Every parameter of the reinstall API reaches the request body exactly as the API page and the official SDK
(huaweicloudsdkecs 3.1.219) write it."""

from __future__ import annotations

import base64
import gzip

import pytest
from huaweicloudsdkcore.utils.http_utils import sanitize_for_serialization
from huaweicloudsdkecs.v2 import (
    ReinstallServerWithCloudInitOption,
    ReinstallServerWithCloudInitRequestBody,
    ReinstallServerWithoutCloudInitOption,
    ReinstallServerWithoutCloudInitRequestBody,
    ReinstallSeverMetadata,
    ReinstallSeverMetadataWithoutCloudInitOption,
)

from ecs_reinstall.spec import (
    USER_DATA_MAX_BYTES,
    InvalidSpec,
    ResolvedInputs,
    build_reinstall_body,
    parse_spec,
)

SERVER = "6e2f41a5-b61e-4d32-9a1c-0f3b6e2c1d7a"
USER = "7e25b1da389f4697a79df3a0e5bd494e"  # the user ID of the API page's examples
KMS = "83cdb52d-9ebf-4469-9cfa-e7b5b80da846"  # the CMK ID of the API page's example
PASSWORD = "Xk7-mUq2!vLp"
PASSWORD_REF = {"name": "web-01-root"}
SECRET_USER_DATA = {"valueFrom": {"secretKeyRef": {"name": "ud", "key": "user-data"}}}
CONFIG_MAP_USER_DATA = {"valueFrom": {"configMapKeyRef": {"name": "ud", "key": "user-data"}}}


def body_for(raw_fields: dict, resolved: ResolvedInputs | None = None) -> dict:
    spec = parse_spec({"serverId": SERVER, **raw_fields})
    return build_reinstall_body(spec, resolved or ResolvedInputs())


def sdk_v2(metadata: dict | None = None, **option: str) -> dict:
    """The body the official SDK sends for the v2 API (Cloud-Init)."""
    meta = ReinstallSeverMetadata(**metadata) if metadata else None
    body = ReinstallServerWithCloudInitRequestBody(
        os_reinstall=ReinstallServerWithCloudInitOption(metadata=meta, **option)
    )
    return sanitize_for_serialization(body)


def sdk_v1(metadata: dict | None = None, **option: str) -> dict:
    """The body the official SDK sends for the v1 API (without Cloud-Init)."""
    meta = ReinstallSeverMetadataWithoutCloudInitOption(**metadata) if metadata else None
    body = ReinstallServerWithoutCloudInitRequestBody(
        os_reinstall=ReinstallServerWithoutCloudInitOption(metadata=meta, **option)
    )
    return sanitize_for_serialization(body)


# --- the three examples of the API page, literally ---


def test_page_example_password_with_stop_server():
    body = body_for(
        {"adminPasswordSecretRef": PASSWORD_REF, "userId": USER, "stopServer": True},
        ResolvedInputs(admin_password=PASSWORD),
    )
    assert body == {"os-reinstall": {"adminpass": PASSWORD, "userid": USER, "mode": "withStopServer"}}


def test_page_example_key_pair():
    body = body_for({"keyName": "KeyPair-350b", "userId": USER})
    assert body == {"os-reinstall": {"keyname": "KeyPair-350b", "userid": USER}}


def test_page_example_encrypted_system_disk():
    body = body_for(
        {"adminPasswordSecretRef": PASSWORD_REF, "userId": USER, "systemDiskEncryption": {"kmsKeyId": KMS}},
        ResolvedInputs(admin_password=PASSWORD),
    )
    assert body == {
        "os-reinstall": {
            "adminpass": PASSWORD,
            "userid": USER,
            "metadata": {"__system__encrypted": "1", "__system__cmkid": KMS},
        }
    }


# --- each parameter, checked against the official SDK's serialization ---


def test_every_v2_parameter_at_once_matches_the_sdk():
    content = "#cloud-config\nruncmd: [echo hello]\n"
    body = body_for(
        {
            "adminPasswordSecretRef": PASSWORD_REF,
            "userId": USER,
            "stopServer": True,
            "byol": True,
            "systemDiskEncryption": {"kmsKeyId": KMS},
            "userData": {"value": content},
        },
        ResolvedInputs(admin_password=PASSWORD),
    )
    expected = sdk_v2(
        adminpass=PASSWORD,
        userid=USER,
        mode="withStopServer",
        metadata={
            "user_data": base64.b64encode(content.encode()).decode(),
            "byol": "true",
            "system__encrypted": "1",
            "system__cmkid": KMS,
        },
    )
    assert body == expected


@pytest.mark.parametrize(
    ("fields", "resolved", "sdk_option", "sdk_metadata"),
    [
        (
            {"adminPasswordSecretRef": PASSWORD_REF},
            ResolvedInputs(admin_password=PASSWORD),
            {"adminpass": PASSWORD},
            None,
        ),
        ({"keyName": "kp-01", "userId": USER}, ResolvedInputs(), {"keyname": "kp-01", "userid": USER}, None),
        (
            {"adminPasswordSecretRef": PASSWORD_REF, "stopServer": True},
            ResolvedInputs(admin_password=PASSWORD),
            {"adminpass": PASSWORD, "mode": "withStopServer"},
            None,
        ),
        (
            {"keyName": "kp-01", "userId": USER, "byol": True},
            ResolvedInputs(),
            {"keyname": "kp-01", "userid": USER},
            {"byol": "true"},
        ),
        (
            {"keyName": "kp-01", "userId": USER, "systemDiskEncryption": {"kmsKeyId": KMS}},
            ResolvedInputs(),
            {"keyname": "kp-01", "userid": USER},
            {"system__encrypted": "1", "system__cmkid": KMS},
        ),
        (
            {"userData": SECRET_USER_DATA},
            ResolvedInputs(user_data=b"#cloud-config\n"),
            {},
            {"user_data": "I2Nsb3VkLWNvbmZpZwo="},
        ),
    ],
)
def test_v2_parameters_match_the_sdk(fields, resolved, sdk_option, sdk_metadata):
    assert body_for(fields, resolved) == sdk_v2(metadata=sdk_metadata, **sdk_option)


@pytest.mark.parametrize(
    ("fields", "resolved", "sdk_option", "sdk_metadata"),
    [
        (
            {"adminPasswordSecretRef": PASSWORD_REF, "stopServer": True},
            ResolvedInputs(admin_password=PASSWORD),
            {"adminpass": PASSWORD, "mode": "withStopServer"},
            None,
        ),
        ({"keyName": "kp-01", "userId": USER}, ResolvedInputs(), {"keyname": "kp-01", "userid": USER}, None),
        (
            {"adminPasswordSecretRef": PASSWORD_REF, "byol": True, "systemDiskEncryption": {"kmsKeyId": KMS}},
            ResolvedInputs(admin_password=PASSWORD),
            {"adminpass": PASSWORD},
            {"byol": "true", "system__encrypted": "1", "system__cmkid": KMS},
        ),
    ],
)
def test_v1_parameters_match_the_sdk(fields, resolved, sdk_option, sdk_metadata):
    spec = parse_spec({"serverId": SERVER, "cloudInit": False, **fields})
    assert spec.api_version == "v1"
    assert build_reinstall_body(spec, resolved) == sdk_v1(metadata=sdk_metadata, **sdk_option)


# --- empty fields are left out ---


def test_false_and_absent_options_are_left_out():
    body = body_for(
        {"adminPasswordSecretRef": PASSWORD_REF, "stopServer": False, "byol": False},
        ResolvedInputs(admin_password=PASSWORD),
    )
    assert body == {"os-reinstall": {"adminpass": PASSWORD}}


def test_empty_user_data_beside_a_password_is_left_out():
    body = body_for(
        {"adminPasswordSecretRef": PASSWORD_REF, "userData": CONFIG_MAP_USER_DATA},
        ResolvedInputs(admin_password=PASSWORD, user_data=b""),
    )
    assert body == {"os-reinstall": {"adminpass": PASSWORD}}


# --- user data: base64 of the exact bytes, 32 KiB before encoding ---


@pytest.mark.parametrize(
    "content",
    [
        b"#cloud-config\nchpasswd:\n  expire: false\n",
        "#cloud-config\n# Grüße, 你好\n".encode(),
        gzip.compress(b"#cloud-config\npackages: [nginx]\n" * 50),  # binary: the API accepts gzip
        b"#!/bin/sh\r\necho crlf\r\n",
    ],
)
@pytest.mark.parametrize("source", [SECRET_USER_DATA, CONFIG_MAP_USER_DATA])
def test_user_data_round_trips_through_base64(content, source):
    body = body_for({"userData": source}, ResolvedInputs(user_data=content))
    encoded = body["os-reinstall"]["metadata"]["user_data"]
    assert base64.b64decode(encoded, validate=True) == content
    assert set(body["os-reinstall"]) == {"metadata"}


def test_inline_user_data_is_encoded_as_utf8():
    content = "#cloud-config\n# Grüße\n"
    body = body_for({"userData": {"value": content}})
    assert base64.b64decode(body["os-reinstall"]["metadata"]["user_data"]).decode("utf-8") == content


def test_user_data_limit_is_32768_bytes_before_encoding():
    assert USER_DATA_MAX_BYTES == 32768
    at_limit = b"#" * 32768
    body = body_for({"userData": SECRET_USER_DATA}, ResolvedInputs(user_data=at_limit))
    assert base64.b64decode(body["os-reinstall"]["metadata"]["user_data"]) == at_limit

    with pytest.raises(InvalidSpec) as caught:
        body_for({"userData": SECRET_USER_DATA}, ResolvedInputs(user_data=b"#" * 32769))
    assert caught.value.field == "spec.userData"
    assert "is 32769 bytes" in caught.value.message and "at most 32768 bytes" in caught.value.message
    assert "Secret ud key user-data" in caught.value.message


def test_inline_user_data_limit_counts_bytes_not_characters():
    body_for({"userData": {"value": "x" * 32768}})
    with pytest.raises(InvalidSpec) as caught:
        body_for({"userData": {"value": "x" * 32769}})
    assert caught.value.field == "spec.userData.value"
    # 16385 two-byte characters: within the CRD's maxLength (characters) but 32770 bytes.
    with pytest.raises(InvalidSpec) as caught:
        body_for({"userData": {"value": "ü" * 16385}})
    assert "is 32770 bytes" in caught.value.message


# --- the body is never built from invalid inputs ---


def test_an_invalid_password_stops_the_body():
    with pytest.raises(InvalidSpec) as caught:
        body_for({"adminPasswordSecretRef": PASSWORD_REF}, ResolvedInputs(admin_password="root-Pass1"))
    assert "root-Pass1" not in str(caught.value)


def test_user_data_only_needs_content():
    with pytest.raises(InvalidSpec):
        body_for({"userData": SECRET_USER_DATA}, ResolvedInputs(user_data=b""))


IMAGE = "67f433d8-ed0e-4321-a8a2-a71838539e09"


def test_a_change_of_os_is_the_same_body_under_os_change_with_the_image_as_the_sdk_sends_it():
    from huaweicloudsdkecs.v2 import (
        ChangeServerOsWithCloudInitOption,
        ChangeServerOsWithCloudInitRequestBody,
        ChangeServerOsWithoutCloudInitOption,
        ChangeServerOsWithoutCloudInitRequestBody,
        ChangeSeversOsMetadata,
    )

    ours = body_for(
        {
            "imageId": IMAGE,
            "adminPasswordSecretRef": PASSWORD_REF,
            "userId": USER,
            "stopServer": True,
            "byol": True,
            "systemDiskEncryption": {"kmsKeyId": KMS},
            "userData": {"value": "#cloud-config\n"},
        },
        ResolvedInputs(admin_password=PASSWORD),
    )
    metadata = ChangeSeversOsMetadata(
        system__encrypted="1",
        system__cmkid=KMS,
        user_data=base64.b64encode(b"#cloud-config\n").decode(),
        byol="true",
    )
    option = ChangeServerOsWithCloudInitOption(
        adminpass=PASSWORD, userid=USER, imageid=IMAGE, mode="withStopServer", metadata=metadata
    )
    assert ours == sanitize_for_serialization(ChangeServerOsWithCloudInitRequestBody(os_change=option))

    v1 = body_for(
        {"imageId": IMAGE, "cloudInit": False, "keyName": "kp-1", "userId": USER},
    )
    option_v1 = ChangeServerOsWithoutCloudInitOption(keyname="kp-1", userid=USER, imageid=IMAGE)
    assert v1 == sanitize_for_serialization(ChangeServerOsWithoutCloudInitRequestBody(os_change=option_v1))


@pytest.mark.parametrize("image", ["ubuntu-22.04", IMAGE.upper(), IMAGE[:-1], ""])
def test_an_image_id_that_is_not_an_id_says_what_to_write(image):
    with pytest.raises(InvalidSpec, match=r"spec\.imageId: .*(is not valid; expected|is empty;) an image ID"):
        parse_spec({"serverId": SERVER, "keyName": "kp", "userId": USER, "imageId": image})
