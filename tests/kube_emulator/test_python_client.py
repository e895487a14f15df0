"""The `kubernetes` Python client: Secrets, the status subresource, list and watch."""

from __future__ import annotations

import base64
import threading

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from .conftest import GROUP, PLURAL, VERSION, wait_until, widget


def test_read_a_secret_written_with_string_data(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="hwc"), string_data={"accessKey": "AK", "secretKey": "SK"}
        ),
    )
    secret = core.read_namespaced_secret("hwc", namespace)
    assert secret.type == "Opaque"
    assert secret.string_data is None  # write-only: folded into data
    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == {
        "accessKey": "AK",
        "secretKey": "SK",
    }


def test_patch_status_changes_status_only(api: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    patched = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "w", {"status": {"phase": "Ready"}, "spec": {"size": 9}}
    )
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["size"] == 3  # the status subresource ignores the rest of the object
    assert patched["metadata"]["generation"] == 1  # status is not part of the desired state
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    # and writes to the main resource ignore status
    replaced = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"status": {"phase": "Failed"}, "spec": {"size": 4}}
    )
    assert replaced["status"] == {"phase": "Ready"}
    assert replaced["spec"]["size"] == 4
    assert replaced["metadata"]["generation"] == 2


def test_a_conditional_status_patch_checks_the_resource_version_and_keeps_the_uid(
    api: client.ApiClient, namespace: str
) -> None:
    """The operator's only write: a merge patch of /status with metadata.resourceVersion and metadata.uid. A stale
    version is 409 Conflict. The uid is not checked on a status patch (kube-apiserver 1.20.2 and upstream: the
    status strategy keeps the stored object's uid, 200): the resourceVersion is what protects, and an object
    re-created under the same name always has another one."""
    custom = client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("cas"))
    meta = created["metadata"]
    ok = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "cas",
        {
            "metadata": {"resourceVersion": meta["resourceVersion"], "uid": meta["uid"]},
            "status": {"phase": "Ready"},
        },
    )
    assert ok["status"] == {"phase": "Ready"}
    stale = {
        "metadata": {"resourceVersion": meta["resourceVersion"], "uid": meta["uid"]},
        "status": {"phase": "Failed"},
    }
    with pytest.raises(ApiException) as conflict:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "cas", stale)
    assert conflict.value.status == 409
    other_uid = {
        "metadata": {"resourceVersion": ok["metadata"]["resourceVersion"], "uid": "not-" + meta["uid"]},
        "status": {"phase": "Pending"},
    }
    kept = custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "cas", other_uid)
    assert kept["metadata"]["uid"] == meta["uid"] and kept["status"] == {"phase": "Pending"}


def test_list_then_watch_from_the_list_resource_version(api: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api)
    for name in ("a", "b"):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget(name))
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert listed["kind"] == "WidgetList"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a", "b"]
    since = listed["metadata"]["resourceVersion"]
    # changes after the list, made before the watch starts, are still delivered, in order
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("c"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a", {"spec": {"size": 5}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "b")
    seen = []
    stream = watch.Watch()
    for event in stream.stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        resource_version=since,
        timeout_seconds=5,
    ):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if len(seen) == 3:
            stream.stop()
    assert seen == [("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b")]


def test_watch_delivers_live_changes(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    seen: list[tuple[str, str]] = []
    started = threading.Event()

    def follow() -> None:
        stream = watch.Watch()
        for event in stream.stream(core.list_namespaced_config_map, namespace, timeout_seconds=10):
            started.set()
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                stream.stop()

    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="first"))
    )
    thread = threading.Thread(target=follow)
    thread.start()
    wait_until(started.is_set, what="the watch to start")  # it begins with the existing object
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="second"))
    )
    core.delete_namespaced_config_map("second", namespace)
    thread.join(timeout=15)
    assert seen == [("ADDED", "first"), ("ADDED", "second"), ("DELETED", "second")]
