"""The spec model: parsing with field paths, every password rule, every combination rule, secrets kept out."""

from __future__ import annotations

import pytest

from ecs_reinstall.spec import (
    FIELD_PATHS,
    PASSWORD_SPECIALS,
    ApiVersion,
    AuthMode,
    ConfigMapKeyRef,
    InvalidSpec,
    ReinstallSpec,
    ResolvedInputs,
    SecretKeyRef,
    UserDataSource,
    api_version,
    check_password,
    check_resolved,
    decode_password,
    describe,
    parse_spec,
)

SERVER = "6e2f41a5-b61e-4d32-9a1c-0f3b6e2c1d7a"
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
USER = "7e25b1da389f4697a79df3a0e5bd494e"
KMS = "83cdb52d-9ebf-4469-9cfa-e7b5b80da846"
GOOD_PASSWORD = "Xk7-mUq2!vLp"
PASSWORD = {"name": "web-01-root"}
USER_DATA = {"value": "#cloud-config\nchpasswd: {expire: false}\n"}


def spec(**fields: object) -> dict[str, object]:
    """A raw spec with a server ID and the given fields (None removes the field)."""
    raw: dict[str, object] = {"serverId": SERVER, **fields}
    return {key: value for key, value in raw.items() if value is not None}


def problems_of(raw: dict[str, object]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(raw)
    return [(problem.field, problem.message) for problem in caught.value.problems]


def fields_of(raw: dict[str, object]) -> list[str]:
    return [field for field, _ in problems_of(raw)]


# --- parsing: defaults and the full model ---


def test_minimal_password_spec_gets_the_documented_defaults():
    parsed = parse_spec(spec(adminPasswordSecretRef=PASSWORD))
    assert parsed == ReinstallSpec(
        server_id=SERVER, admin_password_ref=SecretKeyRef("web-01-root", "password")
    )
    assert (parsed.stop_server, parsed.byol, parsed.cloud_init) == (False, False, True)
    assert (parsed.poll_interval_seconds, parsed.timeout_seconds) == (10, 1800)
    assert parsed.api_version == ApiVersion.V2 == "v2"
    assert parsed.auth_mode is AuthMode.PASSWORD


def test_every_field_reaches_the_model():
    parsed = parse_spec(
        {
            "serverId": SERVER,
            "projectId": PROJECT,
            "region": "ap-southeast-1",
            "endpoint": "https://ecs.ap-southeast-1.example.test/",
            "credentialsSecretRef": {"name": "hwc-credentials"},
            "keyName": "KeyPair-350b",
            "userId": USER,
            "stopServer": True,
            "userData": {"valueFrom": {"configMapKeyRef": {"name": "web-cloud-config", "key": "user-data"}}},
            "byol": True,
            "systemDiskEncryption": {"kmsKeyId": KMS},
            "cloudInit": True,
            "pollIntervalSeconds": 5,
            "timeoutSeconds": 600,
        }
    )
    assert parsed == ReinstallSpec(
        server_id=SERVER,
        project_id=PROJECT,
        region="ap-southeast-1",
        endpoint="https://ecs.ap-southeast-1.example.test",  # the trailing slash is dropped
        credentials_secret="hwc-credentials",
        key_name="KeyPair-350b",
        user_id=USER,
        stop_server=True,
        user_data=UserDataSource(config_map_ref=ConfigMapKeyRef("web-cloud-config", "user-data")),
        byol=True,
        kms_key_id=KMS,
        poll_interval_seconds=5,
        timeout_seconds=600,
    )
    assert parsed.auth_mode is AuthMode.KEYPAIR


def test_field_paths_cover_every_attribute_of_the_model():
    from dataclasses import fields

    assert set(FIELD_PATHS) == {f.name for f in fields(ReinstallSpec)}
    assert all(path.startswith("spec.") for path in FIELD_PATHS.values())


@pytest.mark.parametrize(
    ("user_data", "expected"),
    [
        ({"value": "#cloud-config\n"}, UserDataSource(value="#cloud-config\n")),
        (
            {"valueFrom": {"secretKeyRef": {"name": "ud", "key": "user-data"}}},
            UserDataSource(secret_ref=SecretKeyRef("ud", "user-data")),
        ),
        (
            {"valueFrom": {"configMapKeyRef": {"name": "ud", "key": "cloud.cfg"}}},
            UserDataSource(config_map_ref=ConfigMapKeyRef("ud", "cloud.cfg")),
        ),
    ],
)
def test_user_data_sources(user_data, expected):
    parsed = parse_spec(spec(userData=user_data))
    assert parsed.user_data == expected
    assert parsed.auth_mode is AuthMode.USER_DATA


def test_password_key_can_be_named():
    parsed = parse_spec(spec(adminPasswordSecretRef={"name": "pw", "key": "root.password"}))
    assert parsed.admin_password_ref == SecretKeyRef("pw", "root.password")


def test_cloud_init_false_selects_the_v1_api():
    parsed = parse_spec(spec(adminPasswordSecretRef=PASSWORD, cloudInit=False))
    assert api_version(parsed) == "v1"
    assert api_version(parse_spec(spec(adminPasswordSecretRef=PASSWORD))) == "v2"


# --- parsing: formats, with the field path and a hint ---


@pytest.mark.parametrize(
    "region",
    [
        "cn-north-4",
        "cn-north-9",
        "ap-southeast-1",
        "af-south-1",
        "eu-west-101",
        "la-north-2",
        "ru-moscow-1",
        "cn-southwest-2",
        "me-east-1",
        "tr-west-1",
        "my-kualalumpur-1",
        "sa-brazil-1",
        "eu-west-0",
    ],
)
def test_real_region_names_are_accepted(region):
    assert parse_spec(spec(adminPasswordSecretRef=PASSWORD, region=region)).region == region


@pytest.mark.parametrize(
    "region", ["cn", "CN-North-4", "cn_north_4", "cn-north-4.", "-cn-north", "c-north-4", "x" * 64]
)
def test_malformed_regions_are_refused(region):
    assert fields_of(spec(adminPasswordSecretRef=PASSWORD, region=region)) == ["spec.region"]


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://ecs.eu-west-101.myhuaweicloud.eu",
        "http://127.0.0.1:18443",
        "https://[::1]:9443/ecs-prefix",
        "https://ecs.cn-north-4.myhuaweicloud.com/",
    ],
)
def test_endpoints_accepted(endpoint):
    assert parse_spec(spec(adminPasswordSecretRef=PASSWORD, endpoint=endpoint)).endpoint == endpoint.rstrip(
        "/"
    )


@pytest.mark.parametrize(
    "endpoint",
    [
        "ecs.cn-north-4.myhuaweicloud.com",
        "ftp://ecs.example.test",
        "https://ak:hunter2-secret@ecs.example.test",
        "https://ecs.example.test?token=hunter2-secret",
        "https://ecs.example.test#frag",
        "https://",
        "https://ecs example.test",
    ],
)
def test_bad_endpoints_are_refused_without_echoing_them(endpoint):
    problems = problems_of(spec(adminPasswordSecretRef=PASSWORD, endpoint=endpoint))
    assert [field for field, _ in problems] == ["spec.endpoint"]
    assert "hunter2" not in problems[0][1] and "example.test" not in problems[0][1]
    assert "https://" in problems[0][1]  # the hint shows the expected form


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"serverId": "6E2F41A5-B61E-4D32-9A1C-0F3B6E2C1D7A"}, "spec.serverId"),
        ({"serverId": "6e2f41a5b61e4d329a1c0f3b6e2c1d7a"}, "spec.serverId"),
        ({"serverId": ""}, "spec.serverId"),
        ({"projectId": "0a1b2c3d"}, "spec.projectId"),
        ({"userId": "7e25b1da-389f-4697-a79d-f3a0e5bd494e"}, "spec.userId"),
        ({"credentialsSecretRef": {"name": "HWC_Credentials"}}, "spec.credentialsSecretRef.name"),
        ({"credentialsSecretRef": {}}, "spec.credentialsSecretRef.name"),
        ({"adminPasswordSecretRef": {"name": "pw", "key": "a/b"}}, "spec.adminPasswordSecretRef.key"),
        ({"adminPasswordSecretRef": {"key": "password"}}, "spec.adminPasswordSecretRef.name"),
        ({"systemDiskEncryption": {"kmsKeyId": "alias/my-key"}}, "spec.systemDiskEncryption.kmsKeyId"),
        ({"systemDiskEncryption": {}}, "spec.systemDiskEncryption.kmsKeyId"),
        ({"stopServer": "true"}, "spec.stopServer"),
        ({"byol": 1}, "spec.byol"),
        ({"pollIntervalSeconds": 1}, "spec.pollIntervalSeconds"),
        ({"pollIntervalSeconds": 601}, "spec.pollIntervalSeconds"),
        ({"pollIntervalSeconds": 2.5}, "spec.pollIntervalSeconds"),
        ({"timeoutSeconds": 59}, "spec.timeoutSeconds"),
        ({"timeoutSeconds": 86401}, "spec.timeoutSeconds"),
        ({"timeoutSeconds": True}, "spec.timeoutSeconds"),
        ({"pendingTimeoutSeconds": 59}, "spec.pendingTimeoutSeconds"),
        ({"pendingTimeoutSeconds": "1h"}, "spec.pendingTimeoutSeconds"),
        ({"ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished"),
        ({"ttlSecondsAfterFinished": 31536001}, "spec.ttlSecondsAfterFinished"),
        ({"adminpass": "x"}, "spec.adminpass"),
    ],
)
def test_each_malformed_field_is_named(fields, path):
    raw = {"serverId": SERVER, "adminPasswordSecretRef": PASSWORD, **fields}
    assert fields_of(raw) == [path]


@pytest.mark.parametrize(
    ("key_name", "ok"),
    [("KeyPair-350b", True), ("key_pair_01", True), ("k" * 64, True), ("k" * 65, False), ("my key", False)],
)
def test_key_pair_names(key_name, ok):
    raw = spec(keyName=key_name, userId=USER)
    if ok:
        assert parse_spec(raw).key_name == key_name
    else:
        assert fields_of(raw) == ["spec.keyName"]


def test_bounds_are_inclusive():
    parsed = parse_spec(spec(adminPasswordSecretRef=PASSWORD, pollIntervalSeconds=2, timeoutSeconds=86400))
    assert (parsed.poll_interval_seconds, parsed.timeout_seconds) == (2, 86400)
    parsed = parse_spec(spec(adminPasswordSecretRef=PASSWORD, pollIntervalSeconds=600, timeoutSeconds=60))
    assert (parsed.poll_interval_seconds, parsed.timeout_seconds) == (600, 60)


def test_pending_timeout_and_ttl_are_off_unless_set():
    parsed = parse_spec(spec(adminPasswordSecretRef=PASSWORD))
    assert (parsed.pending_timeout_seconds, parsed.ttl_seconds_after_finished) == (None, None)
    parsed = parse_spec(
        spec(adminPasswordSecretRef=PASSWORD, pendingTimeoutSeconds=600, ttlSecondsAfterFinished=0)
    )
    assert (parsed.pending_timeout_seconds, parsed.ttl_seconds_after_finished) == (600, 0)


def test_messages_say_what_is_wrong_and_how_to_fix_it():
    [(_, message)] = problems_of(spec(adminPasswordSecretRef=PASSWORD, serverId="i-123"))
    assert "'i-123'" in message and "lowercase UUID" in message
    [(_, message)] = problems_of(spec(adminPasswordSecretRef=PASSWORD, timeoutSeconds=30))
    assert "30" in message and "between 60 and 86400" in message
    [(_, message)] = problems_of(spec(adminPasswordSecretRef=PASSWORD, keyname="k"))
    assert "did you mean keyName?" in message


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidSpec) as caught:
        parse_spec({"serverId": "x", "region": "X", "timeoutSeconds": 1, "keyName": "k"})
    error = caught.value
    assert [p.field for p in error.problems] == [
        "spec.serverId",
        "spec.region",
        "spec.timeoutSeconds",
        "spec.userId",
    ]
    assert error.field == "spec.serverId"
    assert str(error).startswith("spec.serverId: ") and "; spec.region: " in str(error)


def test_missing_server_id_and_non_object_spec():
    assert fields_of({"adminPasswordSecretRef": PASSWORD}) == ["spec.serverId"]
    assert fields_of([]) == ["spec"]  # type: ignore[arg-type]
    assert fields_of(spec(adminPasswordSecretRef="web-01-root")) == ["spec.adminPasswordSecretRef"]


# --- combination rules (the same as the CRD's CEL rules) ---

COMBINATIONS = [
    # (fields, the fields of the problems; [] = valid)
    ({"adminPasswordSecretRef": PASSWORD}, []),
    ({"keyName": "kp", "userId": USER}, []),
    ({"userData": USER_DATA}, []),
    ({"adminPasswordSecretRef": PASSWORD, "userData": USER_DATA, "userId": USER}, []),
    ({"keyName": "kp", "userId": USER, "userData": USER_DATA}, []),
    ({"adminPasswordSecretRef": PASSWORD, "keyName": "kp", "userId": USER}, ["spec.keyName"]),
    ({"keyName": "kp"}, ["spec.userId"]),
    ({}, ["spec"]),
    ({"userId": USER}, ["spec"]),
    ({"cloudInit": False, "adminPasswordSecretRef": PASSWORD}, []),
    ({"cloudInit": False, "keyName": "kp", "userId": USER}, []),
    ({"cloudInit": False, "userData": USER_DATA}, ["spec.userData", "spec.cloudInit"]),
    ({"cloudInit": False, "adminPasswordSecretRef": PASSWORD, "userData": USER_DATA}, ["spec.userData"]),
    ({"cloudInit": False}, ["spec.cloudInit", "spec"]),
    (
        {"cloudInit": False, "adminPasswordSecretRef": PASSWORD, "keyName": "kp", "userId": USER},
        ["spec.keyName", "spec.cloudInit"],
    ),
    (
        {"userData": {"value": "x", "valueFrom": {"secretKeyRef": {"name": "a", "key": "b"}}}},
        ["spec.userData"],
    ),
    ({"userData": {}}, ["spec.userData"]),
    ({"userData": {"valueFrom": {}}}, ["spec.userData.valueFrom"]),
    (
        {
            "userData": {
                "valueFrom": {
                    "secretKeyRef": {"name": "a", "key": "b"},
                    "configMapKeyRef": {"name": "a", "key": "b"},
                }
            }
        },
        ["spec.userData.valueFrom"],
    ),
    (
        {"userData": {"valueFrom": {"secretKeyRef": {"name": "a"}}}},
        ["spec.userData.valueFrom.secretKeyRef.key"],
    ),
]


@pytest.mark.parametrize(("fields", "problem_fields"), COMBINATIONS)
def test_combination_rules(fields, problem_fields):
    if problem_fields:
        assert fields_of(spec(**fields)) == problem_fields
    else:
        parse_spec(spec(**fields))


def test_combination_messages_explain_the_fix():
    [(_, both)] = problems_of(spec(adminPasswordSecretRef=PASSWORD, keyName="kp", userId=USER))
    assert "cannot both be set" in both and "remove one" in both
    [(_, none)] = problems_of(spec())
    assert "adminPasswordSecretRef, keyName or userData" in none
    messages = dict(problems_of(spec(cloudInit=False, userData=USER_DATA)))
    assert "set cloudInit to true" in messages["spec.userData"]
    assert "exactly one of adminPasswordSecretRef or keyName" in messages["spec.cloudInit"]


# --- password rules ---

PASSWORDS = [
    # (password, a fragment of each expected message; [] = valid)
    ("Xk7-mUq2!vLp", []),
    ("Abcdef1!", []),  # 8 characters: the shortest allowed
    ("Abcdefghijklmnopqrstuvwx1!", []),  # 26 characters: the longest allowed
    ("Abcdefgh12", []),  # 3 classes without special characters
    ("abcdefg1!", []),  # 3 classes without upper case
    ("ABCDEFG1!", []),  # 3 classes without lower case
    ("Abcdefgh!", []),  # 3 classes without digits
    ("Abcde1!", ["is 7 characters long; it needs 8 to 26"]),
    ("Abcdefghijklmnopqrstuvwxy1!", ["is 27 characters long; it needs 8 to 26"]),
    ("", ["is 0 characters long", "uses 0 of the 4 character classes"]),
    ("abcdefgh12", ["uses 2 of the 4 character classes"]),
    ("ABCDEFGH!!", ["uses 2 of the 4 character classes"]),
    ("abcdefghij", ["uses 1 of the 4 character classes"]),
    ("Abcdefg1#", ["1 character(s) that are not allowed"]),
    ("Abcdefg1*&", ["2 character(s) that are not allowed"]),
    ("Abcdefg1(~)", ["3 character(s) that are not allowed"]),
    (
        "Abc defg1!",
        ["1 character(s) that are not allowed; use only A-Z, a-z, 0-9 and !@$%^-_=+[{}]:,./? (it"],
    ),
    (
        "Xk7-mUq2!vLp\n",
        ["not allowed; use only A-Z, a-z, 0-9 and !@$%^-_=+[{}]:,./? (it contains white space"],
    ),
    ("Ábcdefg1!", ["1 character(s) that are not allowed"]),
    ("Myroot-Pass1", ["'root' or its reverse 'toor'"]),
    ("Toor-Pass1x", ["'root' or its reverse 'toor'"]),
    ("xROOTx-Pass1", ["'root' or its reverse 'toor'"]),
    ("Administrator-1", ["'Administrator' or its reverse 'rotartsinimdA'"]),
    ("x-ADMINISTRATOR-1", ["'Administrator'"]),
    ("1-rotartsinimda-X", ["'Administrator'"]),
    ("root", ["is 4 characters long", "uses 1 of the 4", "'root'"]),
    ("Admin-1234", []),  # the Windows rule on runs of 3 characters of Administrator is left to the cloud
]


@pytest.mark.parametrize(("password", "fragments"), PASSWORDS)
def test_password_rules(password, fragments):
    if not fragments:
        check_password(password)
        return
    with pytest.raises(InvalidSpec) as caught:
        check_password(password, "the password from Secret ns/web-01-root key password")
    error = caught.value
    messages = [problem.message for problem in error.problems]
    assert len(messages) == len(fragments), messages  # one message per broken rule
    for fragment, message in zip(fragments, messages, strict=True):
        assert fragment in message
        assert message.startswith("the password from Secret ns/web-01-root key password ")
    assert {problem.field for problem in error.problems} == {"spec.adminPasswordSecretRef"}


@pytest.mark.parametrize("special", PASSWORD_SPECIALS)
def test_each_documented_special_character_is_allowed(special):
    check_password(f"Abcdefg1{special}")
    check_password(f"abcdefgh{special}{special}1")  # the special character counts as a class


@pytest.mark.parametrize("password", [p for p, fragments in PASSWORDS if fragments and len(p) >= 6])
def test_a_password_never_appears_in_errors(password):
    with pytest.raises(InvalidSpec) as caught:
        check_password(password, "the password from Secret ns/pw key password")
    error = caught.value
    for text in (str(error), repr(error), *map(str, error.args), *(p.message for p in error.problems)):
        assert password not in text
        assert password.strip() not in text


def test_check_resolved_names_the_secret_with_its_namespace():
    parsed = parse_spec(spec(adminPasswordSecretRef={"name": "web-01-root", "key": "pw"}))
    with pytest.raises(InvalidSpec) as caught:
        check_resolved(parsed, ResolvedInputs(admin_password="Sh0rt!"), namespace="team-a")
    assert str(caught.value) == (
        "spec.adminPasswordSecretRef: the password from Secret team-a/web-01-root key pw is 6 characters long; "
        "it needs 8 to 26"
    )
    check_resolved(parsed, ResolvedInputs(admin_password=GOOD_PASSWORD), namespace="team-a")


def test_check_resolved_refuses_a_password_key_pair_and_user_data_all_missing():
    parsed = parse_spec(spec(userData={"valueFrom": {"configMapKeyRef": {"name": "ud", "key": "user-data"}}}))
    with pytest.raises(InvalidSpec) as caught:
        check_resolved(parsed, ResolvedInputs(user_data=b""), namespace="ns")
    assert caught.value.field == "spec.userData"
    assert "the user data from ConfigMap ns/ud key user-data is empty" in caught.value.message
    # Empty user data beside a password is simply left out of the request.
    with_password = parse_spec(
        spec(
            adminPasswordSecretRef=PASSWORD,
            userData={"valueFrom": {"secretKeyRef": {"name": "ud", "key": "user-data"}}},
        )
    )
    check_resolved(with_password, ResolvedInputs(admin_password=GOOD_PASSWORD, user_data=b""))


def test_check_resolved_reports_password_and_user_data_problems_together():
    parsed = parse_spec(
        spec(
            adminPasswordSecretRef=PASSWORD,
            userData={"valueFrom": {"secretKeyRef": {"name": "ud", "key": "user-data"}}},
        )
    )
    with pytest.raises(InvalidSpec) as caught:
        check_resolved(parsed, ResolvedInputs(admin_password="short", user_data=b"x" * 40000))
    fields = [problem.field for problem in caught.value.problems]
    assert fields == ["spec.adminPasswordSecretRef"] * 2 + ["spec.userData"]


def test_unresolved_references_are_the_callers_bug():
    password_spec = parse_spec(spec(adminPasswordSecretRef=PASSWORD))
    with pytest.raises(ValueError, match="not resolved"):
        check_resolved(password_spec, ResolvedInputs())
    with pytest.raises(ValueError, match="no userData"):
        check_resolved(password_spec, ResolvedInputs(admin_password=GOOD_PASSWORD, user_data=b"x"))
    key_spec = parse_spec(spec(keyName="kp", userId=USER))
    with pytest.raises(ValueError, match="no adminPasswordSecretRef"):
        check_resolved(key_spec, ResolvedInputs(admin_password=GOOD_PASSWORD))
    inline_spec = parse_spec(spec(userData=USER_DATA))
    with pytest.raises(ValueError, match="inline"):
        check_resolved(inline_spec, ResolvedInputs(user_data=b"x"))
    # The inline value itself, passed through as resolved bytes, is fine.
    check_resolved(inline_spec, ResolvedInputs(user_data=USER_DATA["value"].encode()))
    secret_spec = parse_spec(spec(userData={"valueFrom": {"secretKeyRef": {"name": "ud", "key": "k"}}}))
    with pytest.raises(ValueError, match="not resolved"):
        check_resolved(secret_spec, ResolvedInputs())


def test_decode_password():
    assert (
        decode_password(GOOD_PASSWORD.encode(), "the password from Secret ns/pw key password")
        == GOOD_PASSWORD
    )
    raw = b"Pa\xffss-w0rdX"
    with pytest.raises(InvalidSpec) as caught:
        decode_password(raw, "the password from Secret ns/pw key password")
    assert caught.value.field == "spec.adminPasswordSecretRef"
    assert "not UTF-8" in str(caught.value)
    assert "ss-w0rdX" not in str(caught.value) and "xff" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --- secrets never in reprs or logs ---


def test_reprs_hide_secret_values():
    resolved = ResolvedInputs(admin_password=GOOD_PASSWORD, user_data=b"#cloud-config secret-hash")
    assert GOOD_PASSWORD not in repr(resolved) and "secret-hash" not in repr(resolved)
    assert GOOD_PASSWORD not in str(resolved)
    assert repr(ResolvedInputs()) == "ResolvedInputs(admin_password=None, user_data=None)"
    parsed = parse_spec(spec(userData={"value": "#cloud-config\npassword: inline-secret-9\n"}))
    assert "inline-secret-9" not in repr(parsed) and "inline-secret-9" not in repr(parsed.user_data)


def test_inline_user_data_is_never_echoed_in_errors():
    value = "#cloud-config inline-secret-9 " + "x" * 40000
    problems = problems_of(spec(userData={"value": value}))
    assert [field for field, _ in problems] == ["spec.userData.value"]
    assert "inline-secret-9" not in problems[0][1]
    assert "40030 bytes" in problems[0][1] and "32768" in problems[0][1]


def test_describe_gives_non_secret_facts_only():
    parsed = parse_spec(
        spec(
            projectId=PROJECT,
            region="cn-north-4",
            credentialsSecretRef={"name": "hwc"},
            userData={"value": "#cloud-config inline-secret-9"},
            stopServer=True,
        )
    )
    facts = describe(parsed)
    assert facts == {
        "server": SERVER,
        "project": PROJECT,
        "region": "cn-north-4",
        "credentialsSecret": "hwc",
        "api": "v2",
        "auth": "user-data",
        "stopServer": True,
        "userData": "inline",
        "byol": False,
        "systemDiskEncrypted": False,
    }
    assert "inline-secret-9" not in repr(facts)
    legacy = describe(
        parse_spec(spec(cloudInit=False, keyName="kp", userId=USER, endpoint="http://127.0.0.1:1"))
    )
    assert (legacy["api"], legacy["auth"], legacy["keyName"], legacy["endpoint"]) == (
        "v1",
        "keypair",
        "kp",
        "http://127.0.0.1:1",
    )
    secret_source = describe(
        parse_spec(spec(userData={"valueFrom": {"secretKeyRef": {"name": "u", "key": "k"}}}))
    )
    assert secret_source["userData"] == "Secret u key k"


def test_user_data_source_needs_exactly_one_source():
    with pytest.raises(ValueError):
        UserDataSource()
    with pytest.raises(ValueError):
        UserDataSource(value="x", secret_ref=SecretKeyRef("a", "b"))


def test_a_trailing_newline_gets_a_hint_on_how_to_store_the_secret():
    with pytest.raises(InvalidSpec) as caught:
        check_password(GOOD_PASSWORD + "\n")
    assert "a trailing newline often comes from `echo`" in caught.value.message
    assert "--from-literal" in caught.value.message
