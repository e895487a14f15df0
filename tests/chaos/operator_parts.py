"""The operator's real parts (Kubernetes client, ECS client, supervisor and runners) on both emulators, served in
the test's loop over loopback, for regression tests of what the chaos run and the benchmark found.

`parts` gives a namespace with a credentials Secret, a server with a finished reinstall job, and helpers to
create an EcsReinstall already in phase Reinstalling on that job and to drive a `Supervisor` directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes

from ecs_emulator.testing import EmulatorHandle
from ecs_reinstall.cloud.client import EcsClient
from ecs_reinstall.cloud.models import CloudTarget, Credentials
from ecs_reinstall.kube import Kube
from ecs_reinstall.metrics import Metrics
from ecs_reinstall.reconcile import Event
from ecs_reinstall.runner import Deps, Supervisor
from ecs_reinstall.settings import Settings
from kube_emulator.testing import KubeEmulatorHandle

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "ecsreinstalls.ecs.reinstall.dev.yaml"
GROUP, VERSION, PLURAL = "ecs.reinstall.dev", "v1alpha1", "ecsreinstalls"
ACCESS_KEY, SECRET_KEY = "CHAOSPARTSAK00000001", "chaos-parts-secret-key-0000000000000001"
PROJECT_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SERVER_ID = "6e2f0000-0000-4000-8000-000000000001"
USER_ID = "7e25b1da389f4697a79df3a0e5bd494e"
NAMESPACE = "team"


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout}s"
        await asyncio.sleep(0.02)


@dataclass
class Parts:
    kube_handle: KubeEmulatorHandle
    ecs: EmulatorHandle
    custom: kubernetes.client.CustomObjectsApi
    cloud: EcsClient
    kube: Kube
    settings: Settings
    events: list[Event] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)

    def supervisor(self) -> Supervisor:
        """A supervisor that leads (as after `lead()`, without its LIST)."""
        supervisor = Supervisor(
            Deps(
                settings=self.settings,
                kube=self.kube,
                cloud=self.cloud,
                metrics=self.metrics,
                post_event=lambda _body, event: self.events.append(event),
            )
        )
        supervisor.leading = True
        return supervisor

    async def finished_job(self) -> str:
        """A reinstall the cloud accepted and has already finished (SUCCESS)."""
        target = CloudTarget(self.ecs.url, PROJECT_ID, Credentials(ACCESS_KEY, SECRET_KEY))
        return await self.cloud.reinstall(
            target, SERVER_ID, {"os-reinstall": {"keyname": "k", "userid": USER_ID}}
        )

    async def reinstalling(self, job_id: str, name: str = "web-01") -> dict:
        """An EcsReinstall in phase Reinstalling on `job_id`, as the API returns it."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EcsReinstall",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"serverId": SERVER_ID, "keyName": "k", "userId": USER_ID, "pollIntervalSeconds": 2},
        }
        await asyncio.to_thread(
            self.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, body
        )
        status = {"phase": "Reinstalling", "jobId": job_id, "submittedAt": "2030-01-01T00:00:00Z"}
        return await asyncio.to_thread(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            name,
            {"status": status},
        )

    async def get(self, name: str = "web-01") -> dict:
        return await asyncio.to_thread(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, name
        )
