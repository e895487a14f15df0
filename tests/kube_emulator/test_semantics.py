"""API semantics every Kubernetes client relies on, stated as what a cluster does."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from .conftest import GROUP, PLURAL, VERSION, RawApi, wait_until, widget, widgets_path


def _custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def _status_of(error: client.ApiException) -> tuple[int, dict]:
    import json

    return error.status, json.loads(error.body)


# -- generation, resourceVersion, optimistic concurrency ------------------------------------------------------------


def test_generation_tracks_spec_changes_and_resource_version_every_write(
    api: client.ApiClient, namespace: str
) -> None:
    custom = _custom(api)
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    labelled = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"metadata": {"labels": {"tier": "gold"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    resized = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"size": 8}}
    )
    assert resized["metadata"]["generation"] == 2
    same = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"size": 8}}
    )
    assert (
        same["metadata"]["resourceVersion"] == resized["metadata"]["resourceVersion"]
    )  # a no-op is no write


def test_update_with_a_stale_resource_version_conflicts(api: client.ApiClient, namespace: str) -> None:
    custom = _custom(api)
    stale = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"size": 4}})
    stale["spec"]["size"] = 5
    with pytest.raises(client.ApiException) as raised:
        custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w", stale)
    code, status = _status_of(raised.value)
    assert code == 409
    assert status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    # a merge patch that carries the stale resourceVersion is a precondition too
    with pytest.raises(client.ApiException) as raised:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "w",
            {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]}, "spec": {"size": 6}},
        )
    assert raised.value.status == 409


def test_json_patch_test_operation_failure_is_unprocessable(
    raw: RawApi, api: client.ApiClient, namespace: str
) -> None:
    _custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    response = raw.request(
        "PATCH",
        widgets_path(namespace, "w"),
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
            {"op": "replace", "path": "/spec/size", "value": 2},
        ],
        content_type="application/json-patch+json",
    )
    assert response.status == 422
    assert response.body["kind"] == "Status"


def test_custom_resources_do_not_take_strategic_merge_patches(
    raw: RawApi, api: client.ApiClient, namespace: str
) -> None:
    _custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    response = raw.request(
        "PATCH",
        widgets_path(namespace, "w"),
        {"spec": {"size": 2}},
        content_type="application/strategic-merge-patch+json",
    )
    assert response.status == 415
    assert response.body["reason"] == "UnsupportedMediaType"


def test_create_conflicts_with_an_existing_name_and_needs_the_namespace(
    api: client.ApiClient, namespace: str
) -> None:
    custom = _custom(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    with pytest.raises(client.ApiException) as raised:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    assert _status_of(raised.value)[1]["reason"] == "AlreadyExists"
    with pytest.raises(client.ApiException) as raised:
        custom.create_namespaced_custom_object(GROUP, VERSION, "no-such-namespace-x", PLURAL, widget("w"))
    code, status = _status_of(raised.value)
    assert code == 404
    assert status["message"] == 'namespaces "no-such-namespace-x" not found'


def test_generate_name_and_dry_run(api: client.ApiClient, namespace: str) -> None:
    custom = _custom(api)
    body = widget("")
    body["metadata"] = {"generateName": "gen-"}
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert (
        created["metadata"]["name"].startswith("gen-") and len(created["metadata"]["name"]) == len("gen-") + 5
    )
    dry = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, widget("dry"), dry_run="All"
    )
    assert dry["spec"]["size"] == 3
    with pytest.raises(client.ApiException) as raised:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "dry")
    assert raised.value.status == 404


# -- structural schema -------------------------------------------------------------------------------------------


@pytest.mark.since(
    "1.25",
    reason="server-side field validation (its Warning header and fieldValidation=Strict), beta in 1.25",
)
def test_unknown_fields_are_pruned_with_a_warning(raw: RawApi, namespace: str) -> None:
    body = widget("w", bogus=1, extra={"kept": {"deep": True}})
    body["status"] = {"phase": "Ready"}
    response = raw.request("POST", widgets_path(namespace), body)
    assert response.status == 201
    assert "bogus" not in response.body["spec"]
    assert response.body["spec"]["extra"] == {"kept": {"deep": True}}  # x-kubernetes-preserve-unknown-fields
    assert "status" not in response.body  # create ignores status when it is a subresource
    assert response.headers.get("Warning") == '299 - "unknown field \\"spec.bogus\\""'  # RFC 7234 quoting
    strict = raw.request(
        "POST", widgets_path(namespace), widget("w2", bogus=1), query={"fieldValidation": "Strict"}
    )
    assert strict.status == 400
    assert 'unknown field "spec.bogus"' in strict.body["message"]


def test_defaults_are_applied(api: client.ApiClient, namespace: str) -> None:
    created = _custom(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, widget("w", size=7)
    )
    assert created["spec"] == {"serial": "AB-1234", "size": 7, "color": "green"}


def test_schema_errors_name_the_fields(api: client.ApiClient, namespace: str) -> None:
    body = widget("w", size=11, color="purple", labels=["a", "b", "c", "d", "e"])
    body["spec"]["serial"] = "nope"
    with pytest.raises(client.ApiException) as raised:
        _custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    code, status = _status_of(raised.value)
    assert code == 422
    assert status["reason"] == "Invalid"
    assert status["message"].startswith('Widget.conformance.example.com "w" is invalid: ')
    causes = {cause["field"]: cause for cause in status["details"]["causes"]}
    assert set(causes) >= {"spec.size", "spec.color", "spec.labels", "spec.serial"}
    assert causes["spec.color"]["reason"] == "FieldValueNotSupported"
    assert 'supported values: "red", "green", "blue"' in causes["spec.color"]["message"]
    assert "should be less than or equal to 10" in causes["spec.size"]["message"]
    assert "should match '^[A-Z]{2}-[0-9]{4}$'" in causes["spec.serial"]["message"]
    missing = widget("m")
    del missing["spec"]["serial"]
    with pytest.raises(client.ApiException) as raised:
        _custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, missing)
    causes = _status_of(raised.value)[1]["details"]["causes"]
    assert {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.serial"} in causes


@pytest.mark.since("1.25", reason="CRD validation rules (x-kubernetes-validations, CEL), beta in 1.25")
def test_a_cel_transition_rule_keeps_a_field_immutable(api: client.ApiClient, namespace: str) -> None:
    custom = _custom(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    with pytest.raises(client.ApiException) as raised:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"serial": "ZZ-0000"}}
        )
    code, status = _status_of(raised.value)
    assert code == 422
    assert status["details"]["causes"][0]["field"] == "spec.serial"
    assert "serial is immutable" in status["details"]["causes"][0]["message"]
    # other fields can still change
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"size": 2}})


def test_status_is_validated_on_the_status_subresource(api: client.ApiClient, namespace: str) -> None:
    custom = _custom(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    with pytest.raises(client.ApiException) as raised:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "w", {"status": {"phase": "Exploded"}}
        )
    code, status = _status_of(raised.value)
    assert code == 422
    assert status["details"]["causes"][0]["field"] == "status.phase"


# -- watch ---------------------------------------------------------------------------------------------------------


def test_watch_from_a_too_old_resource_version_ends_with_410_and_a_relist_recovers(
    raw: RawApi, api: client.ApiClient, namespace: str
) -> None:
    events = raw.watch(widgets_path(namespace), resourceVersion="1", timeoutSeconds="5")
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] in ("Expired", "Gone")
    listed = _custom(api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    _custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("after"))
    resumed = raw.watch(
        widgets_path(namespace),
        resourceVersion=listed["metadata"]["resourceVersion"],
        timeoutSeconds="5",
        max_events=1,
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in resumed] == [("ADDED", "after")]


def test_watch_without_resource_version_starts_with_the_current_objects(
    raw: RawApi, api: client.ApiClient, namespace: str
) -> None:
    _custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("existing"))
    events = raw.watch(widgets_path(namespace), timeoutSeconds="5", max_events=1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "existing")]


def test_watch_ends_after_timeout_seconds(raw: RawApi, namespace: str) -> None:
    assert raw.watch(widgets_path(namespace), timeoutSeconds="1", timeout=10) == []


# -- finalizers and deletion ----------------------------------------------------------------------------------------


def test_finalizers_hold_deletion_until_removed(raw: RawApi, api: client.ApiClient, namespace: str) -> None:
    custom = _custom(api)
    body = widget("w")
    body["metadata"]["finalizers"] = ["conformance.example.com/hold"]
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    held = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["deletionGracePeriodSeconds"] == 0
    with pytest.raises(client.ApiException) as raised:  # no new finalizers once deletion started
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "w",
            {"metadata": {"finalizers": ["conformance.example.com/hold", "x.io/more"]}},
        )
    assert raised.value.status == 422
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"metadata": {"finalizers": None}}
    )
    with pytest.raises(client.ApiException) as raised:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    assert raised.value.status == 404
    events = raw.watch(
        widgets_path(namespace), resourceVersion=created["metadata"]["resourceVersion"], timeoutSeconds="2"
    )
    # removing the last finalizer deletes the stored object as it is: no MODIFIED for the removal itself
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[-1]["object"]["metadata"]["deletionTimestamp"]
    assert events[-1]["object"]["metadata"]["finalizers"] == ["conformance.example.com/hold"]


def test_deleting_a_namespace_deletes_its_objects(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = f"conf-doomed-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm")))
    _custom(api).create_namespaced_custom_object(GROUP, VERSION, name, PLURAL, widget("w"))
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except client.ApiException as error:
            return error.status == 404
        return False

    wait_until(gone, timeout=60, what="the namespace to go")
    assert _custom(api).list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"] == []


def _owner_and_child(api: client.ApiClient, namespace: str) -> client.CoreV1Api:
    """A Widget "owner" and a ConfigMap "child" that names it in its ownerReferences."""
    owner = _custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("owner"))
    core = client.CoreV1Api(api)
    reference = client.V1OwnerReference(
        api_version=f"{GROUP}/{VERSION}", kind="Widget", name="owner", uid=owner["metadata"]["uid"]
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[reference])),
    )
    return core


def test_dependents_are_garbage_collected_with_their_owner(api: client.ApiClient, namespace: str) -> None:
    core = _owner_and_child(api, namespace)
    _custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owner")

    def child_gone() -> bool:
        return not core.list_namespaced_config_map(namespace, field_selector="metadata.name=child").items

    wait_until(child_gone, timeout=60, what="the dependent ConfigMap to be collected")


@pytest.mark.parametrize("policy", ["Foreground", "Orphan"])
def test_foreground_deletion_waits_for_the_dependents_and_orphan_keeps_them(
    api: client.ApiClient, namespace: str, policy: str
) -> None:
    """Foreground: the owner is held by the `foregroundDeletion` finalizer until its dependents are gone, then
    goes. Orphan: the dependents stay, their reference to the owner removed."""
    custom = _custom(api)
    core = _owner_and_child(api, namespace)
    answer = custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "owner", propagation_policy=policy
    )
    assert answer["metadata"]["deletionTimestamp"]
    assert answer["metadata"]["finalizers"] == ["foregroundDeletion" if policy == "Foreground" else "orphan"]

    def owner_gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owner")
        except client.ApiException as error:
            return error.status == 404
        return False

    wait_until(owner_gone, timeout=60, what="the owner to go")
    children = core.list_namespaced_config_map(namespace, field_selector="metadata.name=child").items
    if policy == "Foreground":
        assert children == []
    else:
        assert len(children) == 1 and not children[0].metadata.owner_references


# -- list: selectors and paging -------------------------------------------------------------------------------------


def test_label_and_field_selectors(api: client.ApiClient, namespace: str) -> None:
    custom = _custom(api)
    for name, tier in (("a", "gold"), ("b", "silver"), ("c", "gold")):
        body = widget(name)
        body["metadata"]["labels"] = {"tier": tier}
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def names(**selectors: str) -> list[str]:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **selectors)
        return [item["metadata"]["name"] for item in listed["items"]]

    assert names(label_selector="tier=gold") == ["a", "c"]
    assert names(label_selector="tier in (silver)") == ["b"]
    assert names(label_selector="tier!=gold") == ["b"]
    assert names(field_selector="metadata.name=c") == ["c"]
    assert names(field_selector="metadata.name!=c", label_selector="tier=gold") == ["a"]
    with pytest.raises(client.ApiException) as raised:
        names(field_selector="spec.size=3")
    code, status = _status_of(raised.value)
    assert code == 400
    assert "field label not supported: spec.size" in status["message"]


def test_limit_and_continue_page_through_a_list(api: client.ApiClient, namespace: str) -> None:
    custom = _custom(api)
    for index in range(5):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget(f"w{index}"))
    first = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, limit=2)
    assert [i["metadata"]["name"] for i in first["items"]] == ["w0", "w1"]
    assert first["metadata"]["remainingItemCount"] == 3
    names = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, limit=2, _continue=token
        )
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert names == ["w0", "w1", "w2", "w3", "w4"]


# -- built-in kinds -------------------------------------------------------------------------------------------------


def test_strategic_merge_patch_merges_containers_by_name(
    raw: RawApi, api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[
                            client.V1Container(name="app", image="app:1"),
                            client.V1Container(name="sidecar", image="sidecar:1"),
                        ]
                    ),
                ),
            ),
        ),
    )
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}
    response = raw.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
        patch,
        content_type="application/strategic-merge-patch+json",
    )
    assert response.status == 200, response.body
    containers = response.body["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("app", "app:2"), ("sidecar", "sidecar:1")]
    assert response.body["metadata"]["generation"] == 2


# -- CRDs and event versions ----------------------------------------------------------------------------------------


def test_a_crd_serves_its_resource_until_it_is_deleted(api: client.ApiClient, namespace: str) -> None:
    extensions = client.ApiextensionsV1Api(api)
    group = "gizmos.conformance.example.com"
    schema = {
        "type": "object",
        "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gizmos.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
            ],
        },
    }
    extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition(f"gizmos.{group}").status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_until(established, timeout=30, what="the CRD to be established")
    custom = _custom(api)
    gizmo = {"apiVersion": f"{group}/v1", "kind": "Gizmo", "metadata": {"name": "g"}, "spec": {"anything": 1}}
    wait_until(
        lambda: _try_create(custom, group, namespace, gizmo), timeout=30, what="the new resource to serve"
    )
    extensions.delete_custom_resource_definition(f"gizmos.{group}")

    def unserved() -> bool:
        try:
            custom.list_namespaced_custom_object(group, "v1", namespace, "gizmos")
        except client.ApiException as error:
            return error.status == 404
        return False

    wait_until(unserved, timeout=60, what="the resource to stop being served")


def _try_create(custom: client.CustomObjectsApi, group: str, namespace: str, body: dict) -> bool:
    try:
        custom.create_namespaced_custom_object(group, "v1", namespace, "gizmos", body)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_core_events_are_served_as_events_k8s_io_too(
    raw: RawApi, api: client.ApiClient, namespace: str
) -> None:
    core_event = {
        "metadata": {"name": "w.1"},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Widget",
            "name": "w",
            "namespace": namespace,
        },
        "reason": "Assembled",
        "message": "the widget is assembled",
        "type": "Normal",
        "source": {"component": "conformance"},
        "firstTimestamp": "2025-01-01T00:00:00Z",
        "lastTimestamp": "2025-01-01T00:00:00Z",
        "count": 1,
    }
    client.CoreV1Api(api).create_namespaced_event(namespace, core_event)
    # read raw: the client's model insists on eventTime, which core events leave null
    newer = raw.request("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events/w.1").body
    assert newer["apiVersion"] == "events.k8s.io/v1"
    assert newer["note"] == "the widget is assembled"
    assert newer["regarding"]["name"] == "w"
    assert newer["reason"] == "Assembled"
    assert newer["deprecatedCount"] == 1
    assert newer["eventTime"] is None
    listed = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector="reason=Assembled")
    assert [e.metadata.name for e in listed.items] == ["w.1"]


def test_every_served_version_reads_the_same_objects(api: client.ApiClient, namespace: str) -> None:
    extensions = client.ApiextensionsV1Api(api)
    group = "versioned.conformance.example.com"
    schema = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"things.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": schema},
                {"name": "v2beta1", "served": True, "storage": False, "schema": schema},
            ],
        },
    }
    extensions.create_custom_resource_definition(crd)
    try:
        custom = _custom(api)
        body = {
            "apiVersion": f"{group}/v2beta1",
            "kind": "Thing",
            "metadata": {"name": "t"},
            "spec": {"a": 1},
        }

        def created() -> bool:
            try:
                custom.create_namespaced_custom_object(group, "v2beta1", namespace, "things", body)
            except client.ApiException as error:
                if error.status == 404:
                    return False
                raise
            return True

        wait_until(created, timeout=30, what="the CRD to serve")
        as_v1 = custom.get_namespaced_custom_object(group, "v1", namespace, "things", "t")
        as_v2 = custom.get_namespaced_custom_object(group, "v2beta1", namespace, "things", "t")
        assert (as_v1["apiVersion"], as_v2["apiVersion"]) == (f"{group}/v1", f"{group}/v2beta1")
        assert as_v1["spec"] == as_v2["spec"] == {"a": 1}
        assert as_v1["metadata"]["uid"] == as_v2["metadata"]["uid"]
        stored = extensions.read_custom_resource_definition(f"things.{group}").status.stored_versions
        assert stored == ["v1"]
    finally:
        extensions.delete_custom_resource_definition(f"things.{group}")


def test_a_list_at_an_exact_resource_version_shows_the_past(api: client.ApiClient, namespace: str) -> None:
    custom = _custom(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("a"))
    then = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["metadata"][
        "resourceVersion"
    ]
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("b"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a", {"spec": {"size": 9}})
    past = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, resource_version=then, resource_version_match="Exact"
    )
    assert past["metadata"]["resourceVersion"] == then
    assert [(i["metadata"]["name"], i["spec"]["size"]) for i in past["items"]] == [("a", 3)]
    now = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert [(i["metadata"]["name"], i["spec"]["size"]) for i in now["items"]] == [("a", 9), ("b", 3)]


@pytest.mark.since("1.31", reason="RetryGenerateName, on by default since 1.31 (beta; GA in 1.32)")
def test_a_generated_name_that_is_taken_is_drawn_again(
    api: client.ApiClient, namespace: str, emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RetryGenerateName (GA in 1.32): a generated name that collides is drawn again, up to 7 more times,
    before the apiserver answers 409. Emulator-only: the collision is forced by fixing the random part."""
    import kube_emulator.cluster as cluster_module

    custom = _custom(api)
    taken = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("gen-aaaaa"))
    draws = iter(["gen-aaaaa", "gen-aaaaa", "gen-bbbbb"])
    monkeypatch.setattr(cluster_module, "generate_name", lambda prefix: next(draws))
    body = widget("")
    body["metadata"] = {"generateName": "gen-"}
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert created["metadata"]["name"] == "gen-bbbbb" and taken["metadata"]["name"] == "gen-aaaaa"
    fetched = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gen-bbbbb")
    assert fetched["metadata"]["uid"] == created["metadata"]["uid"]

    monkeypatch.setattr(cluster_module, "generate_name", lambda prefix: "gen-aaaaa")  # every draw collides
    with pytest.raises(client.ApiException) as raised:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert _status_of(raised.value)[0] == 409 and _status_of(raised.value)[1]["reason"] == "AlreadyExists"


def test_a_put_without_resource_version_is_refused_for_a_custom_resource(raw: RawApi, namespace: str) -> None:
    """Custom resources allow no unconditional update: the message names the field and Go's %#v of 0."""
    assert raw.request("POST", widgets_path(namespace), widget("w")).status == 201
    body = widget("w", size=2)
    response = raw.request("PUT", widgets_path(namespace, "w"), body)
    assert response.status == 422 and response.body["reason"] == "Invalid", response.body
    (cause,) = response.body["details"]["causes"]
    assert cause["field"] == "metadata.resourceVersion"
    assert cause["message"] == "Invalid value: 0x0: must be specified for an update"
