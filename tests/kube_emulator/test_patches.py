"""Strategic merge patch directives and server-side apply on built-in kinds, as kubectl and controllers send them."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import RawApi

SMP = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


def _deployment(name: str, containers: list[dict[str, Any]]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}},
        },
    }


@pytest.fixture
def deployments(raw: RawApi, namespace: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments"


def _containers(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["image"]) for c in body["spec"]["template"]["spec"]["containers"]]


def test_patch_directives(raw: RawApi, deployments: str) -> None:
    containers = [
        {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
        {"name": "b", "image": "b:1"},
        {"name": "c", "image": "c:1"},
    ]
    assert raw.request("POST", deployments, _deployment("web", containers)).status == 201
    url = f"{deployments}/web"

    def patch(body: dict[str, Any]) -> dict[str, Any]:
        response = raw.request("PATCH", url, body, content_type=SMP)
        assert response.status == 200, response.body
        return response.body

    def pod_spec(body: dict[str, Any]) -> dict[str, Any]:
        return {"spec": {"template": {"spec": body}}}

    # delete one item of a keyed list
    after = patch(pod_spec({"containers": [{"name": "b", "$patch": "delete"}]}))
    assert _containers(after) == [("a", "a:1"), ("c", "c:1")]
    # reorder with $setElementOrder while changing one item
    after = patch(
        pod_spec(
            {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                "containers": [{"name": "a", "image": "a:2"}],
            }
        )
    )
    assert _containers(after) == [("c", "c:1"), ("a", "a:2")]
    # nested keyed lists merge too: env of container a
    after = patch(pod_spec({"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}]}]}))
    env = next(c for c in after["spec"]["template"]["spec"]["containers"] if c["name"] == "a")["env"]
    assert env == [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}]
    # replace a whole list
    after = patch(pod_spec({"containers": [{"name": "z", "image": "z:1"}, {"$patch": "replace"}]}))
    assert _containers(after) == [("z", "z:1")]


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list(raw: RawApi, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    body = {"metadata": {"name": "cm", "finalizers": ["example.com/a"]}, "data": {"k": "v"}}
    assert raw.request("POST", path, body).status == 201
    added = raw.request(
        "PATCH", f"{path}/cm", {"metadata": {"finalizers": ["example.com/b"]}}, content_type=SMP
    )
    # the patch's new items first (strategicpatch's normalizeElementOrder), then the server's others
    assert added.body["metadata"]["finalizers"] == ["example.com/b", "example.com/a"]
    removed = raw.request(
        "PATCH",
        f"{path}/cm",
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a", "example.com/b"]}},
        content_type=SMP,
    )
    assert not removed.body["metadata"].get("finalizers")
    # merge semantics for maps: a null removes a key
    cleared = raw.request("PATCH", f"{path}/cm", {"data": {"k": None, "n": "1"}}, content_type=SMP)
    assert cleared.body["data"] == {"n": "1"}


def test_server_side_apply_removes_the_list_items_it_stops_applying(raw: RawApi, deployments: str) -> None:
    url = f"{deployments}/api"
    two = _deployment("api", [{"name": "app", "image": "app:1"}, {"name": "proxy", "image": "proxy:1"}])
    created = raw.request("PATCH", url, two, content_type=APPLY, query={"fieldManager": "deployer"})
    assert created.status == 201, created.body
    one = _deployment("api", [{"name": "app", "image": "app:2"}])
    applied = raw.request("PATCH", url, one, content_type=APPLY, query={"fieldManager": "deployer"})
    assert applied.status == 200, applied.body
    assert _containers(applied.body) == [("app", "app:2")]
    # a second manager applying a different image conflicts, unless it forces
    other = _deployment("api", [{"name": "app", "image": "app:3"}])
    refused = raw.request("PATCH", url, other, content_type=APPLY, query={"fieldManager": "other"})
    assert refused.status == 409
    assert refused.body["reason"] == "Conflict"
    causes = refused.body["details"]["causes"]
    assert causes[0]["reason"] == "FieldManagerConflict"
    assert causes[0]["field"] == '.spec.template.spec.containers[name="app"].image'
    forced = raw.request(
        "PATCH", url, other, content_type=APPLY, query={"fieldManager": "other", "force": "true"}
    )
    assert forced.status == 200
    assert _containers(forced.body) == [("app", "app:3")]
    owners = {e["manager"] for e in forced.body["metadata"]["managedFields"]}
    assert owners == {"deployer", "other"}


def test_apply_needs_a_field_manager(raw: RawApi, deployments: str) -> None:
    response = raw.request(
        "PATCH", f"{deployments}/x", _deployment("x", [{"name": "a", "image": "a"}]), content_type=APPLY
    )
    assert response.status == 422 and response.body["reason"] == "Invalid"
    (cause,) = response.body["details"]["causes"]
    assert cause == {
        "reason": "FieldValueRequired",
        "message": "Required value: is required for apply patch",
        "field": "fieldManager",
    }
