"""kopf 1.45 running in-process: handlers, retries, deletion with its finalizer, and resuming after a restart.

kopf keeps its progress in the objects (annotations), so what it does across restarts depends on the API server
storing and serving them faithfully. The operator runs in a thread with its own event loop, namespaced to the
test's namespace, standalone (no peering), logging in through the kubeconfig.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import pytest
from kubernetes import client

from .conftest import GROUP, PLURAL, VERSION, KubeTarget, wait_until, widget

PROGRESS_ANNOTATION = "kopf.zalando.org/assemble"


@dataclass
class Journal:
    """What the handlers saw, shared by the operator's thread and the test."""

    attempts: dict[str, list[int]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attempt(self, name: str, retry: int) -> None:
        with self.lock:
            self.attempts.setdefault(name, []).append(retry)

    def retries(self, name: str) -> list[int]:
        with self.lock:
            return list(self.attempts.get(name, []))


def connection_info(kubeconfig: Path) -> kopf.ConnectionInfo:
    """What kopf.login_via_client extracts, from an explicit kubeconfig file (not the process-wide default)."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or ("Bearer" if token else None),
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def make_registry(journal: Journal, kubeconfig: Path) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.watching.server_timeout = 30
        settings.networking.request_timeout = 30
        settings.posting.level = 0

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(kubeconfig)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="assemble")
    def assemble(
        spec: kopf.Spec, patch: kopf.Patch, retry: int, name: str, body: kopf.Body, **_: Any
    ) -> None:
        journal.attempt(name, retry)
        fail_times = int((spec.get("extra") or {}).get("failTimes", 0))
        if retry < fail_times:
            delays = (spec.get("extra") or {}).get("retryDelays") or [0.2]
            delay = float(delays[min(retry, len(delays) - 1)])
            raise kopf.TemporaryError(f"attempt {retry + 1} is too early", delay=delay)
        patch.status["phase"] = "Ready"
        patch.status["message"] = f"assembled after {retry + 1} attempt(s)"
        kopf.info(body, reason="Assembled", message=f"{name} is assembled")

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="disassemble")
    def disassemble(name: str, **_: Any) -> None:
        with journal.lock:
            journal.deleted.append(name)

    return registry


class RunningOperator:
    """kopf.operator() in a thread with its own loop; `stop()` ends it like SIGTERM would."""

    def __init__(self, registry: kopf.OperatorRegistry, namespace: str) -> None:
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                asyncio.run(
                    kopf.operator(
                        registry=registry,
                        standalone=True,
                        namespaces=[namespace],
                        stop_flag=self.stop_flag,
                        ready_flag=self.ready_flag,
                    )
                )
            except BaseException as error:
                self.error = error

        self.thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
        self.thread.start()
        wait_until(lambda: self.ready_flag.is_set() or self.error, timeout=30, what="kopf to start")
        if self.error:
            raise self.error

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "kopf did not stop"


@pytest.fixture
def operator(kube: KubeTarget, namespace: str) -> Iterator[tuple[RunningOperator, Journal]]:
    journal = Journal()
    running = RunningOperator(make_registry(journal, kube.kubeconfig), namespace)
    yield running, journal
    running.stop()


def _get(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def _ready(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    obj = _get(api, namespace, name)
    return obj if obj and (obj.get("status") or {}).get("phase") == "Ready" else None


def test_create_handler_patches_status(
    operator: tuple[RunningOperator, Journal], api: client.ApiClient, namespace: str
) -> None:
    _running, journal = operator
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, widget("w")
    )
    obj = wait_until(lambda: _ready(api, namespace, "w"), timeout=30, what="status.phase=Ready")
    assert obj["status"]["message"] == "assembled after 1 attempt(s)"
    assert journal.retries("w") == [0]
    assert (
        "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"]["finalizers"]
    )  # for the on.delete handler
    assert obj["metadata"]["generation"] == 1  # status and annotations are not spec

    def posted_events() -> list[client.CoreV1Event]:
        events = (
            client.CoreV1Api(api)
            .list_namespaced_event(
                namespace, field_selector=f"involvedObject.name=w,involvedObject.uid={obj['metadata']['uid']}"
            )
            .items
        )
        return [e for e in events if e.reason == "Assembled"]

    event = wait_until(posted_events, timeout=30, what="the handler's event")[0]
    assert event.message == "w is assembled"
    assert event.involved_object.kind == "Widget"
    assert event.type == "Normal"


def test_temporary_error_is_retried(
    operator: tuple[RunningOperator, Journal], api: client.ApiClient, namespace: str
) -> None:
    _running, journal = operator
    body = widget("flaky", extra={"failTimes": 2, "retryDelays": [0.2]})
    client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    obj = wait_until(
        lambda: _ready(api, namespace, "flaky"), timeout=30, what="the retried handler to succeed"
    )
    assert obj["status"]["message"] == "assembled after 3 attempt(s)"
    assert journal.retries("flaky") == [0, 1, 2]


def test_delete_handler_runs_then_the_finalizer_lets_the_object_go(
    operator: tuple[RunningOperator, Journal], api: client.ApiClient, namespace: str
) -> None:
    _running, journal = operator
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("doomed"))
    wait_until(lambda: _ready(api, namespace, "doomed"), timeout=30, what="the widget to be ready")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "doomed")
    wait_until(lambda: _get(api, namespace, "doomed") is None, timeout=30, what="the widget to be gone")
    assert journal.deleted == ["doomed"]


def test_progress_survives_an_operator_restart(
    kube: KubeTarget, api: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api)
    journal = Journal()
    first = RunningOperator(make_registry(journal, kube.kubeconfig), namespace)
    try:
        # the first retry is due long after this operator is stopped; the second one soon after
        body = widget("slow", extra={"failTimes": 2, "retryDelays": [3.0, 0.2]})
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

        def progress_stored() -> dict[str, Any] | None:
            obj = _get(api, namespace, "slow") or {}
            raw = (obj.get("metadata", {}).get("annotations") or {}).get(PROGRESS_ANNOTATION)
            return json.loads(raw) if raw else None

        progress = wait_until(progress_stored, timeout=30, what="kopf to store its progress")
        assert progress["retries"] == 1
    finally:
        first.stop()
    assert journal.retries("slow") == [0]
    # created while no operator runs: picked up by the next one
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("while-down"))
    second = RunningOperator(make_registry(journal, kube.kubeconfig), namespace)
    try:
        obj = wait_until(
            lambda: _ready(api, namespace, "slow"), timeout=30, what="the resumed handler to succeed"
        )
        wait_until(
            lambda: _ready(api, namespace, "while-down"), timeout=30, what="the new widget to be handled"
        )
    finally:
        second.stop()
    assert journal.retries("slow") == [0, 1, 2]  # the second operator continued from the stored retry count
    assert obj["status"]["message"] == "assembled after 3 attempt(s)"
    assert PROGRESS_ANNOTATION not in (obj["metadata"].get("annotations") or {})  # cleaned up when done
