"""Resolving what a spec points to: a password Secret's trailing newline is dropped; non-UTF-8 is refused."""

import pytest

from ecs_reinstall.inputs import MissingInput, resolve_inputs, resolve_target
from ecs_reinstall.settings import Settings
from ecs_reinstall.spec import InvalidSpec, parse_spec

SPEC = parse_spec(
    {"serverId": "6e2f0c1a-0000-4000-8000-000000000001", "adminPasswordSecretRef": {"name": "pw"}}
)


class Secrets:
    def __init__(self, data):
        self.data = data

    async def read_secret(self, namespace, name):
        return self.data

    def forget(self, kind, namespace, name):  # no cache to drop
        pass


async def test_a_trailing_newline_is_not_part_of_the_password():
    inputs = await resolve_inputs(Secrets({"password": b"Reinstall!2026pw\n"}), "ns", SPEC)
    assert inputs.admin_password == "Reinstall!2026pw"


async def test_a_password_that_is_not_text_is_refused_without_showing_it():
    with pytest.raises(InvalidSpec) as exc:
        await resolve_inputs(Secrets({"password": b"\xff\xfesecret"}), "ns", SPEC)
    assert "UTF-8" in str(exc.value) and "secret" not in str(exc.value).replace("Secret", "")


async def test_a_missing_key_is_named():
    with pytest.raises(MissingInput) as exc:
        await resolve_inputs(Secrets({}), "ns", SPEC)
    assert exc.value.what == 'key "password" in Secret "pw" in namespace "ns"'
    assert exc.value.hint == "; the keys it has: none"


async def test_a_missing_key_lists_the_keys_the_object_has_by_name_never_their_values():
    with pytest.raises(MissingInput) as exc:
        await resolve_inputs(Secrets({"passwd": b"Reinstall!2026pw", "user": b"root"}), "ns", SPEC)
    assert exc.value.hint == '; the keys it has: "passwd", "user"'  # a typo shows at once
    assert "Reinstall" not in str(exc.value) + exc.value.hint and "root" not in exc.value.hint


class CachingReader:
    """Records what the resolver asks the (caching) Kubernetes client to forget."""

    def __init__(self, data):
        self.data = data
        self.forgotten = []

    async def read_secret(self, namespace, name):
        return self.data

    async def read_config_map(self, namespace, name):
        return self.data

    def forget(self, kind, namespace, name):
        self.forgotten.append((kind, namespace, name))


async def test_an_object_without_the_key_is_forgotten_so_that_the_retry_reads_it_again():
    kube = CachingReader({})
    with pytest.raises(MissingInput):
        await resolve_inputs(kube, "ns", SPEC)
    assert kube.forgotten == [("Secret", "ns", "pw")]


async def test_an_object_with_the_key_stays_cached():
    kube = CachingReader({"password": b"Reinstall!2026pw"})
    await resolve_inputs(kube, "ns", SPEC)
    assert kube.forgotten == []


def test_forget_drops_every_object_the_spec_refers_to():
    from ecs_reinstall.inputs import forget
    from ecs_reinstall.settings import Settings

    spec = parse_spec(
        {
            "serverId": "6e2f0c1a-0000-4000-8000-000000000001",
            "adminPasswordSecretRef": {"name": "pw"},
            "userData": {"valueFrom": {"configMapKeyRef": {"name": "ud", "key": "cloud-init"}}},
        }
    )
    kube = CachingReader({})
    forget(kube, Settings(credentials_secret="hwc", operator_namespace="ops"), "ns", spec)
    assert kube.forgotten == [("Secret", "ops", "hwc"), ("Secret", "ns", "pw"), ("ConfigMap", "ns", "ud")]
    kube.forgotten.clear()
    with_ref = parse_spec(
        {
            "serverId": "6e2f0c1a-0000-4000-8000-000000000001",
            "credentialsSecretRef": {"name": "mine"},
            "userData": {"valueFrom": {"secretKeyRef": {"name": "uds", "key": "u"}}},
        }
    )
    forget(kube, Settings(), "ns", with_ref)
    assert kube.forgotten == [("Secret", "ns", "mine"), ("Secret", "ns", "uds")]


@pytest.mark.parametrize(
    ("fields", "settings", "endpoint"),
    [
        # what the resource says wins over the operator's defaults
        (
            {"region": "ap-southeast-9x"},
            {"endpoint": "http://127.0.0.1:1"},
            "https://ecs.ap-southeast-9x.myhuaweicloud.com",
        ),
        ({"endpoint": "https://ecs.example.test"}, {"region": "ap-southeast-1"}, "https://ecs.example.test"),
        ({}, {"endpoint": "http://127.0.0.1:1", "region": "ap-southeast-1"}, "http://127.0.0.1:1"),
        ({}, {"region": "ap-southeast-1"}, "https://ecs.ap-southeast-1.myhuaweicloud.com"),
    ],
)
async def test_the_resources_region_or_endpoint_wins_over_the_operators_defaults(fields, settings, endpoint):
    spec = parse_spec(
        {
            "serverId": "6e2f0c1a-0000-4000-8000-000000000001",
            "adminPasswordSecretRef": {"name": "pw"},
            **fields,
        }
    )
    credentials = Secrets({"accessKey": b"AK", "secretKey": b"SK", "projectId": b"0" * 32})
    target = await resolve_target(credentials, Settings(credentials_secret="creds", **settings), "ns", spec)
    assert target.endpoint == endpoint
