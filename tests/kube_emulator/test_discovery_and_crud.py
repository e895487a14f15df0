"""Discovery and the basic verbs, through the kubernetes client."""

from __future__ import annotations

from kubernetes import client

from .conftest import GROUP, PLURAL, VERSION, widget


def test_discovery_serves_the_crd_with_its_status_subresource(api: client.ApiClient) -> None:
    groups = client.ApisApi(api).get_api_versions()
    ours = next(g for g in groups.groups if g.name == GROUP)
    assert ours.preferred_version.version == VERSION
    resources = client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION).resources
    by_name = {r.name: r for r in resources}
    assert by_name[PLURAL].kind == "Widget"
    assert by_name[PLURAL].namespaced is True
    assert "wdg" in by_name[PLURAL].short_names
    assert "gadgets" in by_name[PLURAL].categories
    assert set(by_name[f"{PLURAL}/status"].verbs) >= {"get", "patch", "update"}


def test_core_discovery_lists_builtin_kinds(api: client.ApiClient) -> None:
    names = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    for plural in ("namespaces", "secrets", "configmaps", "events", "serviceaccounts"):
        assert plural in names
    assert names["namespaces"].namespaced is False
    assert names["secrets"].namespaced is True


def test_create_read_update_delete_a_configmap(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "1"})
    )
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    read = core.read_namespaced_config_map("cm", namespace)
    assert read.data == {"a": "1"}
    read.data["b"] = "2"
    updated = core.replace_namespaced_config_map("cm", namespace, read)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    core.delete_namespaced_config_map("cm", namespace)
    try:
        core.read_namespaced_config_map("cm", namespace)
    except client.ApiException as error:
        assert error.status == 404
    else:
        raise AssertionError("the deleted ConfigMap is still there")


def test_create_and_read_a_custom_resource(api: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["size"] == 3  # defaulted
    read = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    assert read["metadata"]["uid"] == created["metadata"]["uid"]
