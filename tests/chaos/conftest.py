"""Fixtures for the regression tests of what the chaos run and the benchmark found (see operator_parts.py)."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import kubernetes
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from operator_parts import ACCESS_KEY, CRD, NAMESPACE, PROJECT_ID, SECRET_KEY, SERVER_ID, Parts

from ecs_emulator.testing import running_emulator
from ecs_reinstall.cloud.client import ClientConfig, EcsClient
from ecs_reinstall.kube import Kube, load_config
from ecs_reinstall.settings import Settings
from kube_emulator.testing import running_kube_emulator


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    async with (
        running_kube_emulator(tmp_path, crds=[CRD]) as kube_handle,
        running_emulator(
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, project_id=PROJECT_ID, init_seconds=0, job_seconds=0
        ) as ecs,
    ):
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(kube_handle.kubeconfig), client_configuration=configuration
        )
        api = kubernetes.client.ApiClient(configuration)
        core = kubernetes.client.CoreV1Api(api)
        await asyncio.to_thread(
            core.create_namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        )
        secret = {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "projectId": PROJECT_ID}
        await asyncio.to_thread(
            core.create_namespaced_secret,
            NAMESPACE,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "hwc"},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in secret.items()},
            },
        )
        await ecs.admin.add_server(SERVER_ID, status="SHUTOFF")
        await ecs.admin.add_keypair("k")
        cloud = EcsClient(ClientConfig(qps=100, burst=10))
        kube = Kube(load_config(str(kube_handle.kubeconfig)))
        parts = Parts(
            kube_handle=kube_handle,
            ecs=ecs,
            custom=kubernetes.client.CustomObjectsApi(api),
            cloud=cloud,
            kube=kube,
            settings=Settings(endpoint=ecs.url, credentials_secret="hwc", operator_namespace=NAMESPACE),
        )
        try:
            yield parts
        finally:
            await cloud.aclose()
            await kube.aclose()
            await asyncio.to_thread(api.close)
