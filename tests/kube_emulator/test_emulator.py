"""What only the emulator has: its entry points, fault injection, request counters, a tunable watch history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import urllib3
import yaml
from kubernetes import client

from kube_emulator.app import ServerOptions
from kube_emulator.faults import FaultRule
from kube_emulator.testing import KubeEmulatorHandle, kube_emulator_in_thread, running_kube_emulator

from .conftest import GROUP, PLURAL, VERSION, WIDGETS_CRD, KubeTarget, RawApi, widget, widgets_path


def _admin(handle: KubeEmulatorHandle, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    import json

    response = urllib3.request(
        method, handle.url + path, body=json.dumps(body).encode() if body is not None else None, timeout=10
    )
    return response.status, json.loads(response.data)


# -- entry points ---------------------------------------------------------------------------------------------------


def test_cli_prints_the_url_first_and_stops_on_sigterm(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "kube-emulator"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kube_emulator"]
    kubeconfig = tmp_path / "config"
    process = subprocess.Popen(
        [*command, "--port", "0", "--kubeconfig", str(kubeconfig), "--crds", str(WIDGETS_CRD.parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:")
        config_doc = yaml.safe_load(kubeconfig.read_text())
        assert config_doc["clusters"][0]["cluster"]["server"] == url
        assert kubeconfig.stat().st_mode & 0o077 == 0  # it holds a token
        api = client.ApiClient(_configuration(kubeconfig))
        resources = client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION).resources
        assert PLURAL in {r.name for r in resources}  # --crds were installed
        api.close()
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
    assert returncode == 0, process.stderr.read()  # type: ignore[union-attr]


def _configuration(kubeconfig: Path) -> client.Configuration:
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return configuration


async def test_running_kube_emulator_serves_in_the_current_loop(tmp_path: Path) -> None:
    async with running_kube_emulator(tmp_path, crds=[WIDGETS_CRD]) as kube:
        assert kube.kubeconfig == tmp_path / "kubeconfig"
        headers = {"Authorization": f"Bearer {kube.token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(f"{kube.url}/apis/{GROUP}/{VERSION}") as response:
                assert response.status == 200
                assert PLURAL in {r["name"] for r in (await response.json())["resources"]}
            async with session.get(
                f"{kube.url}/api/v1/namespaces", headers={"Authorization": "Bearer wrong"}
            ) as bad:
                assert bad.status == 401
                assert (await bad.json())["reason"] == "Unauthorized"


# -- fault injection ------------------------------------------------------------------------------------------------


def test_an_injected_429_carries_retry_after_and_is_spent(
    emulator: KubeEmulatorHandle, raw: RawApi, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    code, rule = _admin(
        emulator,
        "POST",
        "/_emulator/faults",
        {"verbs": ["create"], "pathPrefix": path, "times": 1, "error": {"code": 429, "retryAfterSeconds": 2}},
    )
    assert code == 201 and rule["times"] == 1
    refused = raw.request("POST", path, {"metadata": {"name": "a"}})
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "2"
    assert refused.body["reason"] == "TooManyRequests"
    assert refused.body["details"]["retryAfterSeconds"] == 2
    assert raw.request("POST", path, {"metadata": {"name": "a"}}).status == 201
    assert _admin(emulator, "GET", "/_emulator/faults")[1]["faults"] == []


def test_python_fault_rules_match_verbs_and_paths(
    emulator: KubeEmulatorHandle, raw: RawApi, namespace: str
) -> None:
    widgets = widgets_path(namespace)
    raw.request("POST", widgets, widget("w"))
    unavailable = emulator.faults.add(
        FaultRule(verbs=frozenset({"patch"}), path_regex=r"/widgets/w/status$", times=2, error_code=503)
    )
    never = emulator.faults.add(FaultRule(verbs=frozenset({"get"}), probability=0.0, error_code=500))
    try:
        status_patch = {"status": {"phase": "Ready"}}
        for _ in range(2):
            response = raw.request(
                "PATCH",
                widgets_path(namespace, "w", "status"),
                status_patch,
                content_type="application/merge-patch+json",
            )
            assert response.status == 503
            assert response.body["reason"] == "ServiceUnavailable"
        assert (
            raw.request(
                "PATCH",
                widgets_path(namespace, "w"),
                {"spec": {"size": 4}},
                content_type="application/merge-patch+json",
            ).status
            == 200
        )  # other path: untouched
        assert (
            raw.request(
                "PATCH",
                widgets_path(namespace, "w", "status"),
                status_patch,
                content_type="application/merge-patch+json",
            ).status
            == 200
        )  # spent after 2
        assert raw.request("GET", widgets_path(namespace, "w")).status == 200
        assert never.hits == 0 and unavailable.hits == 2
    finally:
        emulator.faults.clear()


def test_latency_is_added_before_serving(emulator: KubeEmulatorHandle, raw: RawApi, namespace: str) -> None:
    emulator.faults.add(
        FaultRule(
            verbs=frozenset({"list"}),
            path_prefix=f"/api/v1/namespaces/{namespace}/",
            latency_seconds=0.3,
            times=1,
        )
    )
    started = time.monotonic()
    assert raw.request("GET", f"/api/v1/namespaces/{namespace}/configmaps").status == 200
    assert time.monotonic() - started >= 0.3


def test_a_watch_can_be_cut_short(emulator: KubeEmulatorHandle, raw: RawApi, namespace: str) -> None:
    for name in ("a", "b", "c"):
        raw.request("POST", widgets_path(namespace), widget(name))
    emulator.faults.add(FaultRule(verbs=frozenset({"watch"}), watch_close_after_events=2, times=1))
    events = raw.watch(widgets_path(namespace), timeoutSeconds="30")
    assert [e["object"]["metadata"]["name"] for e in events] == ["a", "b"]  # ended cleanly after two
    emulator.faults.add(FaultRule(verbs=frozenset({"watch"}), watch_close_after_seconds=0.2, times=1))
    # ends long before its own timeout: the read would time out after 10 s otherwise
    assert len(raw.watch(widgets_path(namespace), timeoutSeconds="300", timeout=10)) == 3
    emulator.faults.add(
        FaultRule(verbs=frozenset({"watch"}), watch_close_after_events=1, watch_abort=True, times=1)
    )
    with pytest.raises(urllib3.exceptions.HTTPError):  # the connection drops mid-stream
        raw.watch(widgets_path(namespace), timeoutSeconds="30")


def test_bad_fault_rules_are_refused_with_the_reason(emulator: KubeEmulatorHandle) -> None:
    code, status = _admin(
        emulator, "POST", "/_emulator/faults", {"verbs": ["explode"], "error": {"code": 500}}
    )
    assert code == 400
    assert "unknown verbs ['explode']" in status["message"]
    code, status = _admin(emulator, "POST", "/_emulator/faults", {"verbs": ["get"]})
    assert code == 400
    assert "needs an effect" in status["message"]


# -- request counters -----------------------------------------------------------------------------------------------


def test_requests_are_counted_by_verb_resource_and_namespace(
    emulator: KubeEmulatorHandle, raw: RawApi, namespace: str
) -> None:
    assert _admin(emulator, "POST", "/_emulator/reset-counters")[0] == 200
    raw.request("POST", widgets_path(namespace), widget("w"))
    raw.request(
        "PATCH",
        widgets_path(namespace, "w", "status"),
        {"status": {"phase": "Ready"}},
        content_type="application/merge-patch+json",
    )
    raw.request("GET", widgets_path(namespace))
    raw.request("GET", "/apis")
    counted = {
        (r["verb"], r["group"], r["resource"], r["subresource"], r["namespace"]): r["count"]
        for r in _admin(emulator, "GET", "/_emulator/requests")[1]["requests"]
    }
    assert counted == {
        ("create", GROUP, PLURAL, "", namespace): 1,
        ("patch", GROUP, PLURAL, "status", namespace): 1,
        ("list", GROUP, PLURAL, "", namespace): 1,
    }
    non_resource = _admin(emulator, "GET", "/_emulator/requests")[1]["nonResourceRequests"]
    assert {"verb": "get", "path": "/apis", "count": 1} in non_resource


# -- watch history and bookmarks ------------------------------------------------------------------------------------


def test_a_short_history_makes_resumed_watches_fail_with_410(tmp_path: Path) -> None:
    with kube_emulator_in_thread(
        tmp_path, crds=[WIDGETS_CRD], options=ServerOptions(history_limit=3)
    ) as handle:
        api = client.ApiClient(_configuration(handle.kubeconfig))
        raw = RawApi(api)
        since = raw.request("GET", widgets_path("default")).body["metadata"]["resourceVersion"]
        for index in range(4):
            raw.request("POST", widgets_path("default"), widget(f"w{index}"))
        events = raw.watch(widgets_path("default"), resourceVersion=since, timeoutSeconds="5")
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        assert events[0]["object"]["code"] == 410
        assert events[0]["object"]["message"].startswith("too old resource version")
        api.close()


def test_bookmarks_are_sent_when_allowed(emulator: KubeEmulatorHandle, raw: RawApi, namespace: str) -> None:
    # the module's emulator sends bookmarks every second
    events = raw.watch(
        widgets_path(namespace), allowWatchBookmarks="true", resourceVersion="0", timeoutSeconds="3"
    )
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks
    assert bookmarks[0]["object"]["kind"] == "Widget"
    assert int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) > 0


def test_initial_events_end_with_a_bookmark(
    emulator: KubeEmulatorHandle, raw: RawApi, namespace: str
) -> None:
    raw.request("POST", widgets_path(namespace), widget("w"))
    events = raw.watch(
        widgets_path(namespace),
        sendInitialEvents="true",
        resourceVersionMatch="NotOlderThan",
        allowWatchBookmarks="true",
        timeoutSeconds="5",
        max_events=2,
    )
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_the_kubeconfig_works_for_kubectl_as_is(kube: KubeTarget) -> None:
    from .conftest import kubectl_binaries

    binaries = kubectl_binaries()
    if not binaries or kube.emulator is None:
        pytest.skip("needs kubectl and the emulator")
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "HOME": str(kube.cache_dir)}
    result = subprocess.run(
        [binaries[0], "get", "namespaces", "-o", "name"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert {"namespace/default", "namespace/kube-system"} <= set(result.stdout.split())
