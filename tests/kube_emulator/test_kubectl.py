"""What kubectl users see: apply, get (printer columns, YAML), explain, wait, events, delete, create.

Every test runs with each kubectl found: the one on PATH (v1.32) and .tools/bin/kubectl-1.35.
"""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from .conftest import GROUP, PLURAL, VERSION, KubeTarget, kubectl_binaries, wait_until, widget

pytestmark = pytest.mark.parametrize("kubectl", kubectl_binaries() or ["kubectl"], ids=lambda b: Path(b).name)


def _manifest(tmp_path: Path, namespace: str, name: str, **spec: object) -> str:
    body = widget(name, **spec)
    body["metadata"]["namespace"] = namespace
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def test_apply_creates_then_configures_and_leaves_unchanged(
    kube: KubeTarget, kubectl: str, namespace: str, tmp_path: Path, api: client.ApiClient
) -> None:
    first = _manifest(tmp_path, namespace, "w", size=4)
    assert "widget.conformance.example.com/w created" in kube.kubectl(kubectl, "apply", "-f", first).stdout
    assert "unchanged" in kube.kubectl(kubectl, "apply", "-f", first).stdout
    changed = _manifest(tmp_path, namespace, "w", size=7)
    assert (
        "widget.conformance.example.com/w configured" in kube.kubectl(kubectl, "apply", "-f", changed).stdout
    )
    live = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    assert live["spec"]["size"] == 7
    assert live["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in live["metadata"]["annotations"]


def test_get_prints_the_crd_printer_columns(
    kube: KubeTarget, kubectl: str, namespace: str, tmp_path: Path
) -> None:
    kube.kubectl(kubectl, "apply", "-f", _manifest(tmp_path, namespace, "small", size=2, color="red"))
    lines = kube.kubectl(kubectl, "get", "widgets", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "COLOR", "PHASE", "AGE"]
    assert lines[1].split()[:3] == ["small", "2", "red"]
    # the short name and the category resolve to the same resource
    assert "small" in kube.kubectl(kubectl, "get", "wdg", "-n", namespace).stdout
    assert "small" in kube.kubectl(kubectl, "get", "gadgets", "-n", namespace).stdout


def test_get_as_yaml_shows_the_stored_object(
    kube: KubeTarget, kubectl: str, namespace: str, tmp_path: Path
) -> None:
    kube.kubectl(kubectl, "apply", "-f", _manifest(tmp_path, namespace, "w"))
    obj = yaml.safe_load(kube.kubectl(kubectl, "get", "widget", "w", "-n", namespace, "-o", "yaml").stdout)
    assert obj["apiVersion"] == f"{GROUP}/{VERSION}"
    assert obj["kind"] == "Widget"
    assert obj["metadata"]["namespace"] == namespace
    assert obj["metadata"]["uid"] and obj["metadata"]["resourceVersion"]
    assert obj["spec"] == {"serial": "AB-1234", "size": 3, "color": "green"}  # with the schema's defaults


@pytest.mark.since("1.25", reason="CRD validation rules (CEL) and server-side field validation, beta in 1.25")
def test_apply_reports_schema_and_cel_errors(
    kube: KubeTarget, kubectl: str, namespace: str, tmp_path: Path
) -> None:
    kube.kubectl(kubectl, "apply", "-f", _manifest(tmp_path, namespace, "w"))
    changed_serial = kube.kubectl(
        kubectl, "apply", "-f", _manifest(tmp_path, namespace, "w", serial="CD-5678"), check=False
    )
    assert changed_serial.returncode != 0
    assert "spec.serial" in changed_serial.stderr and "serial is immutable" in changed_serial.stderr
    too_big = kube.kubectl(
        kubectl, "apply", "-f", _manifest(tmp_path, namespace, "big", size=11), check=False
    )
    assert too_big.returncode != 0
    assert "spec.size" in too_big.stderr and "less than or equal to 10" in too_big.stderr
    unknown = kube.kubectl(
        kubectl, "apply", "-f", _manifest(tmp_path, namespace, "odd", bogus=1), check=False
    )
    assert unknown.returncode != 0
    assert 'unknown field "spec.bogus"' in unknown.stderr  # kubectl asks for strict field validation


def _watches(kube: KubeTarget) -> int:
    """Watch requests on widgets the emulator served so far (0 on a real cluster)."""
    if kube.emulator is None:
        return 0
    rows = kube.emulator.requests.snapshot()["requests"]
    return sum(r["count"] for r in rows if r["verb"] == "watch" and r["resource"] == PLURAL)


def test_wait_returns_when_the_condition_becomes_true(
    kube: KubeTarget, kubectl: str, namespace: str, tmp_path: Path, api: client.ApiClient
) -> None:
    kube.kubectl(kubectl, "apply", "-f", _manifest(tmp_path, namespace, "w"))
    custom = client.CustomObjectsApi(api)
    watches_before = _watches(kube)

    def become_ready() -> None:
        # let kubectl start waiting first, so that the condition arrives through its watch
        if kube.emulator is not None:
            wait_until(lambda: _watches(kube) > watches_before, timeout=30, what="kubectl to watch")
        else:
            time.sleep(1.0)
        status = {
            "status": {
                "phase": "Ready",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Done"}],
            }
        }
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "w", status)

    thread = threading.Thread(target=become_ready)
    thread.start()
    try:
        result = kube.kubectl(
            kubectl, "wait", "--for=condition=Ready", "widget/w", "-n", namespace, "--timeout=30s"
        )
    finally:
        thread.join()
    assert "condition met" in result.stdout


def test_get_events_lists_events_about_an_object(
    kube: KubeTarget, kubectl: str, namespace: str, api: client.ApiClient
) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {
        "metadata": {"generateName": "w."},
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
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    client.CoreV1Api(api).create_namespaced_event(namespace, event)
    out = kube.kubectl(kubectl, "get", "events", "-n", namespace).stdout
    assert "Assembled" in out and "the widget is assembled" in out


def test_explain_describes_fields_from_the_crd_schema(kube: KubeTarget, kubectl: str) -> None:
    out = kube.kubectl(kubectl, "explain", "widgets.spec.serial").stdout
    assert "Serial number; immutable once set." in out


def test_delete_removes_the_object(kube: KubeTarget, kubectl: str, namespace: str, tmp_path: Path) -> None:
    kube.kubectl(kubectl, "apply", "-f", _manifest(tmp_path, namespace, "w"))
    assert "deleted" in kube.kubectl(kubectl, "delete", "widget", "w", "-n", namespace).stdout
    missing = kube.kubectl(kubectl, "get", "widget", "w", "-n", namespace, check=False)
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr


def test_create_secret_is_readable_by_clients(
    kube: KubeTarget, kubectl: str, namespace: str, api: client.ApiClient
) -> None:
    kube.kubectl(
        kubectl, "create", "secret", "generic", "creds", "-n", namespace, "--from-literal=password=s3cret"
    )
    secret = client.CoreV1Api(api).read_namespaced_secret("creds", namespace)
    assert secret.type == "Opaque"
    assert base64.b64decode(secret.data["password"]) == b"s3cret"


def test_server_side_apply_owns_the_fields_it_applies(
    kube: KubeTarget, kubectl: str, namespace: str, tmp_path: Path, api: client.ApiClient
) -> None:
    with_color = _manifest(tmp_path, namespace, "w", color="red", size=5)
    out = kube.kubectl(
        kubectl, "apply", "--server-side", "--field-manager=conformance", "-f", with_color
    ).stdout
    assert "serverside-applied" in out
    custom = client.CustomObjectsApi(api)
    assert (
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")["spec"]["color"] == "red"
    )
    # applying again without `color` gives the field up: it is removed, then defaulted by the schema
    without_color = _manifest(tmp_path, namespace, "w", size=5)
    kube.kubectl(kubectl, "apply", "--server-side", "--field-manager=conformance", "-f", without_color)
    live = wait_until(lambda: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w"))
    assert live["spec"]["color"] == "green"
    managers = {entry["manager"]: entry for entry in live["metadata"]["managedFields"]}
    assert managers["conformance"]["operation"] == "Apply"
    # another manager changing an applied field conflicts
    other = _manifest(tmp_path, namespace, "w", size=9)
    conflict = kube.kubectl(
        kubectl, "apply", "--server-side", "--field-manager=intruder", "-f", other, check=False
    )
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower() and ".spec.size" in conflict.stderr


def test_apply_of_a_whole_install_manifest(
    kube: KubeTarget, kubectl: str, namespace: str, tmp_path: Path, api: client.ApiClient
) -> None:
    template = (Path(__file__).parent / "data" / "install.yaml").read_text()

    def manifest(tag: str) -> str:
        path = tmp_path / f"install-{tag}.yaml"
        text = template.replace("NAMESPACE", namespace).replace("SUFFIX", namespace).replace("IMAGE_TAG", tag)
        path.write_text(text)
        return str(path)

    try:
        created = kube.kubectl(kubectl, "apply", "-n", namespace, "-f", manifest("1")).stdout
        assert created.count(" created") == 7
        again = kube.kubectl(kubectl, "apply", "-n", namespace, "-f", manifest("1")).stdout
        assert again.count(" unchanged") == 7
        upgraded = kube.kubectl(kubectl, "apply", "-n", namespace, "-f", manifest("2")).stdout
        assert "deployment.apps/app configured" in upgraded
        assert upgraded.count(" unchanged") == 6
        deployment = client.AppsV1Api(api).read_namespaced_deployment("app", namespace)
        containers = [(c.name, c.image) for c in deployment.spec.template.spec.containers]
        assert containers == [("app", "example.com/app:2"), ("sidecar", "example.com/sidecar:1")]
        assert deployment.metadata.generation == 2
    finally:
        kube.kubectl(
            kubectl, "delete", "--wait=false", "--ignore-not-found", "-n", namespace, "-f", manifest("1")
        )
