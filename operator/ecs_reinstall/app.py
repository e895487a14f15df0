"""Assembling the operator's parts from the settings: Kubernetes client, cloud client, metrics, supervisor."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import kopf

from . import __version__
from . import settings as settings_module
from .cloud.client import ClientConfig, EcsClient
from .cloud.looks import ServerLooks
from .events import KubeEvents
from .kube import GROUP, PLURAL, VERSION, Kube, NotFound, load_config, until_available
from .leader import LeaderElector, default_identity
from .metrics import Metrics
from .runner import Deps, Supervisor
from .sets import SetSupervisor
from .settings import Settings

log = logging.getLogger("ecs_reinstall.app")


@dataclass
class App:
    settings: Settings
    kube: Kube
    cloud: EcsClient
    metrics: Metrics
    supervisor: Supervisor
    sets: SetSupervisor
    events: KubeEvents
    elector: LeaderElector | None = None  # None: leader election off, this process leads from the start
    _electing: asyncio.Task | None = field(default=None, init=False, repr=False)

    async def lead(self, on_lost: Callable[[str], None]) -> None:
        """Starts the work: at once without leader election; else in the background, once this instance holds
        the Lease. When the Lease is lost, every runner is stopped at once, then `on_lost(why)` is called (the
        operator then exits, to restart as a standby)."""
        if self.elector is None:
            self.metrics.leader.set(1)
            await self._lead()
            return
        self._electing = asyncio.create_task(self._elect(self.elector, on_lost), name="leader election")

    async def _lead(self) -> None:
        await self.supervisor.lead()
        await self.sets.lead()

    async def _elect(self, elector: LeaderElector, on_lost: Callable[[str], None]) -> None:
        lost = f"lost the leader lease {elector.where} (holder identity {elector.identity})"

        def stopped() -> None:
            self.supervisor.step_down()  # first of all: every runner cancelled, synchronously
            self.sets.step_down()
            on_lost(lost)

        try:
            await elector.run(self._lead, stopped)
        except Exception:  # run has stepped down already (`stopped` ran); the operator stops all the same
            log.exception("leader election failed")
            on_lost(lost)

    async def close(self) -> None:
        # The runners stop first, while the Lease is still renewed: a POST on its way may take a while to have its
        # answer written (Supervisor.stop), and no standby may take over meanwhile. Losing the Lease during that
        # time stops them at once, as always.
        await self.sets.stop()  # a set pass writes its decision before it creates: stopping anywhere is safe
        await self.supervisor.stop()
        if self._electing is not None:
            self._electing.cancel()  # no more renewals; the Lease stays ours until released below
            await asyncio.wait({self._electing})
        if self.elector is not None:
            await self.elector.release()  # every runner has stopped: a standby may take over at once
        if self.supervisor.deps.looks is not None:
            await self.supervisor.deps.looks.aclose()
        await self.events.aclose()  # what the runners said as they stopped
        await self.cloud.aclose()
        await self.kube.aclose()
        await asyncio.to_thread(self.metrics.close)  # waits for its serving thread


async def start(settings: Settings, *, kubeconfig: str | None = None, metrics: Metrics | None = None) -> App:
    metrics = metrics or Metrics()
    for warning in settings_module.warnings(settings):
        log.warning("%s", warning)
    kube = Kube(load_config(kubeconfig), cache_seconds=settings.input_cache_seconds)
    cloud = EcsClient(
        ClientConfig(
            qps=settings.qps,
            burst=settings.burst,
            read_timeout=settings.request_timeout,
            ca_bundle=settings.ca_bundle,
            user_agent=f"ecs-reinstall-operator/{__version__}",
        ),
        observer=metrics,
    )
    events = KubeEvents(kube, instance=settings.pod_name or socket.gethostname())
    looks = ServerLooks(cloud, observer=metrics)
    deps = Deps(settings=settings, kube=kube, cloud=cloud, metrics=metrics, post_event=events, looks=looks)
    supervisor = Supervisor(deps, list_all=lambda: kube.list_reinstalls_at(settings.namespaces))
    sets = SetSupervisor(deps, settings.namespaces)
    # What every resource records, before any runner starts (a standby keeps it current from the watch); this
    # LIST also stops the operator at once when the CRD is missing.
    supervisor.prime(await _list_reinstalls(kube, settings))
    elector = None
    if settings.leader_election:
        elector = LeaderElector(
            kube,
            namespace=settings.operator_namespace,
            name=settings.leader_election_lease_name,
            identity=settings.pod_name or default_identity(),
            lease_seconds=settings.leader_election_lease_seconds,
            renew_deadline=settings.leader_election_renew_deadline_seconds,
            retry_period=settings.leader_election_retry_period_seconds,
            metrics=metrics,
        )
    return App(
        settings=settings,
        kube=kube,
        cloud=cloud,
        metrics=metrics,
        supervisor=supervisor,
        sets=sets,
        elector=elector,
        events=events,
    )


class MissingCRD(Exception):
    """The EcsReinstall resource is not served: the CRD was not applied before the operator started."""


async def _list_reinstalls(kube: Kube, settings: Settings) -> list[dict]:
    """The start-up LIST, retried here while the API is unavailable: failing the startup handler instead would
    idle the whole operator for kopf's handler backoff (60 s). A 404 means the CRD is missing: kopf does not
    scan the cluster for it (see handlers.start), so waiting would serve nothing; the operator stops, saying so."""
    try:
        return await until_available(
            lambda: kube.list_reinstalls(settings.namespaces),
            what="listing EcsReinstalls at start-up",
            log=log,
            cap=10.0,
        )
    except NotFound:
        raise MissingCRD(
            f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}: apply the CRD "
            f"(crds/{PLURAL}.{GROUP}.yaml; the Helm chart and the kustomize base apply it first), "
            "then start the operator again"
        ) from None


def connection_info(kubeconfig: str | None = None) -> kopf.ConnectionInfo:
    """kopf's credentials from the same source as the kubernetes client: in-cluster, else the kubeconfig."""
    config = load_config(kubeconfig).configuration
    auth = (config.api_key or {}).get("authorization") or (config.api_key or {}).get("BearerToken")
    prefix = (config.api_key_prefix or {}).get("authorization")
    scheme, token = None, None
    if auth:
        text = f"{prefix} {auth}" if prefix else auth
        scheme, _, token = text.partition(" ") if " " in text else ("Bearer", "", text)
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        expiration=None,
    )
