"""Tenancy decisions (tenancy.py), table-tested: who may use the default credentials, which servers a namespace
owns, and the settings that say so."""

from __future__ import annotations

import pytest

from ecs_reinstall import settings as settings_module
from ecs_reinstall import tenancy
from ecs_reinstall.cloud.client import parse_server
from ecs_reinstall.cloud.models import Server
from ecs_reinstall.settings import Settings
from ecs_reinstall.spec import parse_spec

SERVER = "6e2f0c1a-0000-4000-8000-000000000001"


def spec(**fields):
    return parse_spec({"serverId": SERVER, "adminPasswordSecretRef": {"name": "pw"}, **fields})


class FakeKube:
    def __init__(self, matching=frozenset()):
        self.matching = matching
        self.asked: list[str] = []

    async def namespaces_matching(self, selector):
        self.asked.append(selector)
        return self.matching


@pytest.mark.parametrize(
    ("listed", "namespace", "allowed"),
    [
        ((), "ops", True),  # the operator's own namespace, always
        ((), "team-a", False),  # the default: nobody else
        (("team-a",), "team-a", True),
        (("team-a",), "team-b", False),
        (("*",), "team-b", True),
    ],
)
async def test_who_may_use_the_default_credentials_by_list(listed, namespace, allowed):
    settings = Settings(
        credentials_secret="hwc", operator_namespace="ops", default_credentials_namespaces=listed
    )
    kube = FakeKube()
    if allowed:
        await tenancy.check_default_credentials(kube, settings, namespace, spec())
    else:
        with pytest.raises(tenancy.Forbidden) as refused:
            await tenancy.check_default_credentials(kube, settings, namespace, spec())
        assert refused.value.code == tenancy.DEFAULT_CREDENTIALS_NOT_ALLOWED
        assert f'Namespace "{namespace}"' in str(refused.value) and "spec.credentialsSecretRef" in str(
            refused.value
        )
    assert kube.asked == []  # no selector: the API server is never asked


async def test_the_selector_is_asked_only_when_the_list_does_not_allow():
    settings = Settings(
        credentials_secret="hwc",
        operator_namespace="ops",
        default_credentials_namespace_selector="tier=shared",
    )
    kube = FakeKube(frozenset({"team-c"}))
    await tenancy.check_default_credentials(kube, settings, "team-c", spec())
    await tenancy.check_default_credentials(kube, settings, "ops", spec())
    with pytest.raises(tenancy.Forbidden, match="a label matching 'tier=shared'"):
        await tenancy.check_default_credentials(kube, settings, "team-a", spec())
    assert kube.asked == ["tier=shared", "tier=shared"]


async def test_own_credentials_or_no_default_never_need_the_policy():
    kube = FakeKube()
    strict = Settings(credentials_secret="hwc", operator_namespace="ops")
    await tenancy.check_default_credentials(
        kube, strict, "team-a", spec(credentialsSecretRef={"name": "mine"})
    )
    await tenancy.check_default_credentials(kube, Settings(), "team-a", spec())  # no default: resolve says so
    assert kube.asked == []


def server(*tags: str) -> Server:
    return parse_server({"server": {"id": SERVER, "status": "ACTIVE", "tags": list(tags)}})


@pytest.mark.parametrize(
    ("tags", "namespace", "owned"),
    [
        (("owner=team-a",), "team-a", True),
        (("owner=team-b",), "team-a", False),
        ((), "team-a", False),
        (("role=web",), "team-a", False),
        (("owner=web-a",), "team-a", True),  # a value listed for team-a
        (("owner=web-a",), "team-b", False),  # listed for another namespace
        (("owner=",), "team-a", False),
        (("Owner=team-a",), "team-a", False),  # keys are case-sensitive
    ],
)
def test_server_ownership_by_tag(tags, namespace, owned):
    settings = Settings(owner_tag_key="owner", owner_tag_values=(("team-a", ("web-a",)),))
    if owned:
        tenancy.check_owner(settings, namespace, server(*tags))
        return
    with pytest.raises(tenancy.Forbidden) as refused:
        tenancy.check_owner(settings, namespace, server(*tags))
    assert refused.value.code == tenancy.SERVER_NOT_OWNED
    message = str(refused.value)
    assert SERVER in message and f'"owner={namespace}"' in message
    for tag in tags:  # what the server carries is never shown, unless it is one of the values expected
        value = tag.partition("=")[2]
        assert value in tenancy.owner_values(settings, namespace) or f'={value}"' not in message


def test_no_owner_tag_key_means_no_check():
    tenancy.check_owner(Settings(), "team-a", server("owner=team-b"))


def test_details_tags_are_parsed_with_empty_values_and_equals_in_values():
    parsed = server("a=1", "b=", "c=x=y", "d")
    assert parsed.tags == (("a", "1"), ("b", ""), ("c", "x=y"), ("d", ""))
    assert parsed.tag("b") == "" and parsed.tag("missing") is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEFAULT_CREDENTIALS_NAMESPACES": "team-a,Team_B"}, "'Team_B' is not a namespace name"),
        (
            {"DEFAULT_CREDENTIALS_NAMESPACE_SELECTOR": "tier=shared", "WATCH_NAMESPACES": "team-a"},
            "a namespaced operator (--namespace) does without",
        ),
        ({"OWNER_TAG_KEY": "ecs.reinstall.dev/namespace"}, "contains '/'"),
        ({"OWNER_TAG_KEY": "k" * 37}, "longer than 36 characters"),
        ({"OWNER_TAG_VALUES": "team-a=web-a"}, "no --owner-tag-key is set"),
        ({"OWNER_TAG_KEY": "owner", "OWNER_TAG_VALUES": "team-a"}, "'team-a' is not namespace=value1|value2"),
        (
            {"OWNER_TAG_KEY": "owner", "OWNER_TAG_VALUES": "team-a=a*b"},
            "'a*b' listed for 'team-a' contains '*'",
        ),
        ({"OWNER_TAG_KEY": "owner", "OWNER_TAG_VALUES": "team-a=a||b"}, "'' listed for 'team-a' is empty"),
    ],
)
def test_tenancy_settings_that_cannot_work_say_why(env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        settings_module.load(environ={settings_module.ENV_PREFIX + k: v for k, v in env.items()})


def test_tenancy_settings_from_the_environment():
    loaded = settings_module.load(
        environ={
            "ECS_REINSTALL_DEFAULT_CREDENTIALS_NAMESPACES": " team-b, team-a ,,team-a",
            "ECS_REINSTALL_DEFAULT_CREDENTIALS_NAMESPACE_SELECTOR": "tier in (shared)",
            "ECS_REINSTALL_OWNER_TAG_KEY": "ecs-reinstall-namespace",
            "ECS_REINSTALL_OWNER_TAG_VALUES": "team-b=b1,team-a=web-a|shared-a,team-b=b2",
        }
    )
    assert loaded.default_credentials_namespaces == ("team-a", "team-b")
    assert loaded.default_credentials_namespace_selector == "tier in (shared)"
    assert loaded.owner_tag_values == (("team-a", ("web-a", "shared-a")), ("team-b", ("b1", "b2")))
    assert tenancy.owner_values(loaded, "team-a") == ("team-a", "web-a", "shared-a")
    assert tenancy.owner_values(loaded, "team-c") == ("team-c",)


def test_the_secure_default_and_its_description():
    assert Settings().default_credentials_namespaces == () and Settings().owner_tag_key is None
    words = tenancy.describe(Settings(credentials_secret="hwc", operator_namespace="ops"))
    assert words == {"default credentials for": "ops", "server owner tag": "off"}
    words = tenancy.describe(
        Settings(
            credentials_secret="hwc",
            operator_namespace="ops",
            default_credentials_namespaces=("team-a",),
            default_credentials_namespace_selector="tier=shared",
            owner_tag_key="owner",
        )
    )
    assert words["default credentials for"] == "ops, team-a, and namespaces matching 'tier=shared'"
    assert words["server owner tag"] == "owner"
