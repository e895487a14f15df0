"""Regression: a watch event that arrives after its resource's runner has finished must not start a new runner.

Found by the fleet benchmark (bench/run_bench.py, N=1000): kopf delivers events for an object in order but, under
load, seconds late. A runner that had already written Succeeded was followed by the late MODIFIED event of its own
earlier "Reinstalling" write; the supervisor, holding no runner for the resource any more, started one from that
stale body: it polled the job again, rewrote the status, posted a second "Succeeded" Event and counted the
resource twice in ecs_reinstall_finished_total (1005 finished for 1000 resources). A stale "Submitting" body would
even rewrite a Succeeded resource back to Reinstalling with its job ID cleared.

Real Kubernetes and ECS APIs (the two emulators, in this loop, over loopback), the operator's real clients, and
the supervisor driven directly with the stale event.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path

import kubernetes

from ecs_emulator.testing import running_emulator
from ecs_reinstall.cloud.client import ClientConfig, EcsClient
from ecs_reinstall.cloud.models import CloudTarget, Credentials
from ecs_reinstall.kube import Kube, load_config
from ecs_reinstall.metrics import Metrics
from ecs_reinstall.reconcile import Event
from ecs_reinstall.runner import Deps, Supervisor
from ecs_reinstall.settings import Settings
from kube_emulator.testing import running_kube_emulator

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "ecsreinstalls.ecs.reinstall.dev.yaml"
GROUP, VERSION, PLURAL = "ecs.reinstall.dev", "v1alpha1", "ecsreinstalls"
ACCESS_KEY, SECRET_KEY = "STALEEVENTSAK0000001", "stale-events-secret-key-000000000000001"
PROJECT_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SERVER_ID = "6e2f0000-0000-4000-8000-000000000001"
USER_ID = "7e25b1da389f4697a79df3a0e5bd494e"


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout}s"
        await asyncio.sleep(0.02)


async def test_a_late_event_after_the_runner_finished_starts_nothing(tmp_path: Path) -> None:
    async with (
        running_kube_emulator(tmp_path, crds=[CRD]) as kube_handle,
        running_emulator(
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, project_id=PROJECT_ID, init_seconds=0, job_seconds=0
        ) as ecs,
    ):
        api = kubernetes.client.ApiClient(_configuration(kube_handle.kubeconfig))
        core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        await asyncio.to_thread(
            core.create_namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
        )
        secret = {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "projectId": PROJECT_ID}
        await asyncio.to_thread(
            core.create_namespaced_secret,
            "team",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "hwc"},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in secret.items()},
            },
        )
        await ecs.admin.add_server(SERVER_ID, status="SHUTOFF")
        await ecs.admin.add_keypair("k")
        settings = Settings(endpoint=ecs.url, credentials_secret="hwc", operator_namespace="team")
        cloud = EcsClient(ClientConfig(qps=100, burst=10))
        target = CloudTarget(ecs.url, PROJECT_ID, Credentials(ACCESS_KEY, SECRET_KEY))
        job_id = await cloud.reinstall(
            target, SERVER_ID, {"os-reinstall": {"keyname": "k", "userid": USER_ID}}
        )

        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EcsReinstall",
            "metadata": {"name": "web-01", "namespace": "team"},
            "spec": {"serverId": SERVER_ID, "keyName": "k", "userId": USER_ID, "pollIntervalSeconds": 2},
        }
        await asyncio.to_thread(custom.create_namespaced_custom_object, GROUP, VERSION, "team", PLURAL, body)
        reinstalling = await asyncio.to_thread(
            custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            "team",
            PLURAL,
            "web-01",
            {"status": {"phase": "Reinstalling", "jobId": job_id, "submittedAt": "2030-01-01T00:00:00Z"}},
        )

        events: list[Event] = []
        metrics = Metrics()
        kube = Kube(load_config(str(kube_handle.kubeconfig)))
        supervisor = Supervisor(
            Deps(
                settings=settings,
                kube=kube,
                cloud=cloud,
                metrics=metrics,
                post_event=lambda _body, event: events.append(event),
            )
        )
        try:
            supervisor.observe("MODIFIED", reinstalling)
            await wait_for(lambda: supervisor.active == 0, "the runner finished")
            assert [e.reason for e in events] == ["Succeeded"]
            gets_before = (await ecs.admin.counters())["requests"].get("get_job:200")

            supervisor.observe("MODIFIED", reinstalling)  # the late event of the earlier write

            assert supervisor.active == 0, "a stale event started a new runner for a finished resource"
            assert supervisor.deps.locks.holder(SERVER_ID) is None
            current = await asyncio.to_thread(
                custom.get_namespaced_custom_object, GROUP, VERSION, "team", PLURAL, "web-01"
            )
            assert current["status"]["phase"] == "Succeeded"
            assert current["status"]["jobId"] == job_id
            assert (await ecs.admin.counters())["requests"].get("get_job:200") == gets_before
            assert [e.reason for e in events] == ["Succeeded"]
            finished = metrics.registry.get_sample_value(
                "ecs_reinstall_finished_total", {"result": "Succeeded"}
            )
            assert finished == 1
        finally:
            await supervisor.stop()
            await cloud.aclose()
            kube.close()
            await asyncio.to_thread(api.close)


def _configuration(kubeconfig: Path) -> kubernetes.client.Configuration:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return configuration
