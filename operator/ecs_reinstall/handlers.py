"""kopf wiring only: thin handlers that hand over to `app` and `runner`.

No handler here needs kopf's finalizer (they are event handlers only); the one finalizer the operator sets, while a
request is on its way to the cloud, is the runner's (see runner.py).
The operator's own settings arrive in `memo.config` (see __main__.py).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from typing import Any

import kopf

from . import app as app_module
from .events import COMPONENT
from .kube import GROUP, PLURAL, SET_PLURAL, VERSION


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a "diff-base" essence of every object on every watch event (a deep copy of the whole body,
    then annotation clean-up) and compares it with the last handled one, for change-detecting handlers
    (on.create/update/resume/field) and daemons only. We have none (see `only_event_handlers`): the essence is
    never compared nor stored, and building it was 5% of the operator's CPU at 1000 reinstalls. This storage
    builds nothing and remembers nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        raise AssertionError("NoDiffBase is for operators without change-detecting handlers")


def only_event_handlers(registry: kopf.OperatorRegistry) -> bool:
    """True if the registry has no handler that needs kopf's diff-base (which NoDiffBase drops)."""
    return not (registry._changing.get_all_handlers() or registry._spawning.get_all_handlers())


@kopf.on.startup(id="start")
async def start(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: object) -> None:
    # Our Events are posted by events.KubeEvents; kopf posts only its own warnings (a handler that failed)
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = COMPONENT
    settings.posting.reporting_instance = memo.config.pod_name or socket.gethostname()
    if only_event_handlers(kopf.get_default_registry()):
        settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = 270  # re-establish long watches now and then, like client-go
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # No cluster scanning: the resource is named in full and the namespaces exactly, so kopf needs neither to
    # list/watch CRDs nor namespaces, and a namespaced install needs Roles only. The CRD must exist at start.
    settings.scanning.disabled = True
    try:
        memo.app = await app_module.start(memo.config, kubeconfig=memo.get("kubeconfig"))
    except app_module.MissingCRD as exc:
        raise kopf.PermanentError(str(exc)) from None  # the operator stops: its Pod restarts until applied
    memo.app.metrics.serve(memo.config.metrics_port)
    # Runners start now (leader election off), or once this instance holds the leader Lease. Losing it stops
    # the operator (see __main__.run_operator); a standby only watches, and its liveness probe stays healthy.
    await memo.app.lead(memo.get("on_leadership_lost") or _not_stopping)


def _not_stopping(why: str) -> None:
    """Outside `run_operator` (kopf run directly) nothing stops kopf: the process idles without work."""
    logging.getLogger("ecs_reinstall.handlers").error("%s; no work runs until the operator restarts", why)


@kopf.on.cleanup(id="stop")
async def stop(memo: kopf.Memo, **_: object) -> None:
    if memo.get("app") is not None:
        await memo.app.close()
    # kopf waits up to 5 s for tasks it did not end itself; the waiter on run_operator's stop flag is one of them
    # when the operator stops on a signal: raise the flag, the stop is under way anyway.
    if memo.get("on_stopped") is not None:
        memo.on_stopped()


@kopf.on.event(GROUP, VERSION, PLURAL, id="track")
async def track(event: kopf.RawEvent, memo: kopf.Memo, **_: object) -> None:
    memo.app.supervisor.observe(event.get("type"), event["object"])
    memo.app.sets.child_changed(event["object"])


@kopf.on.event(GROUP, VERSION, SET_PLURAL, id="track-sets")
async def track_sets(event: kopf.RawEvent, memo: kopf.Memo, **_: object) -> None:
    """EcsReinstallSet events (served only when its CRD is applied at start: kopf does not scan for it later)."""
    memo.app.sets.observe(event.get("type"), event["object"])


@kopf.on.probe(id="runners")
def runners(memo: kopf.Memo, **_: object) -> int:
    return memo.app.supervisor.active if memo.get("app") is not None else 0


@kopf.on.probe(id="leader")
def leader(memo: kopf.Memo, **_: object) -> bool:
    """Shown in /healthz; a standby (False) is as healthy as the leader."""
    app = memo.get("app")
    return app is not None and (app.elector is None or app.elector.is_leader)


@kopf.on.login(id="login")
def login(memo: kopf.Memo, **_: object) -> kopf.ConnectionInfo:
    """kopf talks to the same API server, as the same user, as our own Kubernetes client."""
    return app_module.connection_info(memo.get("kubeconfig"))
