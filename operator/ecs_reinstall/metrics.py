"""Prometheus metrics of the operator, on their own registry (one per operator instance; tests get fresh ones).

Names and labels never carry secrets: the only labels are namespaces, phases, results, failure codes (by their shape
only: `Service.NNNN` or a word, else "other"), operations and outcomes. The alerts and the dashboard built on these
are in deploy/monitoring.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .reconcile import parse_timestamp
from .tenancy import CODES as REFUSALS

PHASES = ("Pending", "Submitting", "Reinstalling", "Succeeded", "Failed")
UNFINISHED = ("Pending", "Submitting", "Reinstalling")
# A failure code as a label: the cloud's (`Ecs.0100`, `APIGW.0301`) or the operator's (`Timeout`); free text never.
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,30}(\.[0-9]{1,5})?$")
DURATION_BUCKETS = (30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600, 7200)


def code_label(status: Mapping) -> str:
    """The bounded `code` label of a finished resource: "none" when it succeeded."""
    if status.get("phase") == "Succeeded":
        return "none"
    code = str((status.get("failure") or {}).get("code") or "")
    return code if _CODE.match(code) else "other"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self._server: WSGIServer | None = None
        r = self.registry
        self.resources = Gauge(
            "ecs_reinstall_resources",
            "EcsReinstall resources by namespace and phase (every replica exports it from its watch)",
            ["namespace", "phase"],
            registry=r,
        )
        self.oldest = Gauge(
            "ecs_reinstall_phase_oldest_seconds",
            "How long the resource longest in this unfinished phase has been in it, as seen by this process",
            ["phase"],
            registry=r,
        )
        self.finished = Counter(
            "ecs_reinstall_finished_total",
            "Reinstalls that reached a terminal phase, by result and failure code",
            ["result", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "ecs_reinstall_duration_seconds",
            "From the submission of a reinstall to its terminal phase",
            ["result"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.refused = Counter(
            "ecs_reinstall_refused_total",
            "Resources refused by the tenancy rules before anything was sent, by rule",
            ["reason"],
            registry=r,
        )
        for reason in sorted(REFUSALS):
            self.refused.labels(reason)
        self.submissions = Counter(
            "ecs_reinstall_submissions_total", "Reinstall requests accepted by the cloud", registry=r
        )
        self.cloud_requests = Counter(
            "ecs_reinstall_cloud_requests_total",
            "ECS API calls by operation and outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self.cloud_latency = Histogram(
            "ecs_reinstall_cloud_request_duration_seconds",
            "ECS API call latency",
            ["operation"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.throttled = Counter(
            "ecs_reinstall_cloud_throttled_total",
            "ECS API calls refused by throttling",
            ["operation"],
            registry=r,
        )
        self.look_rounds = Counter(
            "ecs_reinstall_server_look_calls_total",
            "Batched server reads (one list call for up to 100 servers) by kind: due (a look could wait no longer), "
            "eager (a round while budget was spare), skipped (an eager round held back, counted once while held: "
            "calls were queued for the rate limit, so looks waited until due)",
            ["kind"],
            registry=r,
        )
        self.servers_looked = Counter(
            "ecs_reinstall_servers_looked_total",
            "Servers read through batched list calls",
            registry=r,
        )
        for kind in ("due", "eager", "skipped"):
            self.look_rounds.labels(kind)
        self.in_flight = Gauge(
            "ecs_reinstall_steps_in_flight",
            "Reconcile steps (Kubernetes and cloud I/O) in progress",
            registry=r,
        )
        self.leader = Gauge(
            "ecs_reinstall_leader",
            "1 while this instance holds the leader lease (runs reinstalls), else 0",
            registry=r,
        )
        self.leader_transitions = Counter(
            "ecs_reinstall_leader_transitions_total",
            "Times this instance acquired or lost the leader lease",
            ["event"],
            registry=r,
        )
        for event in ("acquired", "lost"):
            self.leader_transitions.labels(event)
        # uid -> (namespace, phase, monotonic time it was first seen in that phase)
        self._phases: dict[str, tuple[str, str, float]] = {}
        self._clock: Callable[[], float] = time.monotonic
        # Only the process that runs reinstalls re-lists the resources (Supervisor.resync), so only its ages are
        # sure to forget a resource deleted unseen (a watch gap): a standby reports 0 (alerts take the max).
        self.working = False
        for phase in UNFINISHED:
            self.oldest.labels(phase).set_function(lambda phase=phase: self._oldest(phase))
        for result in ("Succeeded", "Failed"):
            self.duration.labels(result)
        # present from the start, so that increase() counts their first one (a new series' first sample is not)
        self.finished.labels("Succeeded", "none")
        self.finished.labels("Failed", "other")

    # --- resources -----------------------------------------------------------------------------------------
    def observe_phase(self, uid: str, namespace: str, phase: str | None) -> None:
        """The phase a resource is in now (None: gone). Keeps the per-phase gauge exact, in O(1)."""
        if phase is not None and phase not in PHASES:
            phase = "Pending"
        previous = self._phases.pop(uid, None) if phase is None else self._phases.get(uid)
        if previous is not None and previous[1] == phase:
            return
        if previous is not None:
            self.resources.labels(previous[0], previous[1]).dec()
        if phase is not None:
            self._phases[uid] = (namespace, phase, self._clock())
            self.resources.labels(namespace, phase).inc()

    def _oldest(self, phase: str) -> float:
        if not self.working:
            return 0.0
        now = self._clock()
        # scraped from the metrics server's thread while the event loop changes the dict: iterate a snapshot
        seen = list(self._phases.values())
        return max((now - since for _, p, since in seen if p == phase), default=0.0)

    def finished_now(self, old_phase: object, status: Mapping, now: datetime) -> None:
        """A status was written; counts it if it just became terminal (with how long since its submission)."""
        phase = str(status.get("phase") or "")
        if phase not in ("Succeeded", "Failed") or old_phase == phase:
            return
        self.finished.labels(phase, code_label(status)).inc()
        code = str((status.get("failure") or {}).get("code") or "")
        if phase == "Failed" and code in REFUSALS:
            self.refused.labels(code).inc()
        submitted = parse_timestamp(status.get("submittedAt"))
        if submitted is not None:
            self.duration.labels(phase).observe(max(0.0, (now - submitted).total_seconds()))

    def submitted(self) -> None:
        self.submissions.inc()

    # --- leader election (leader.LeaderElector) -------------------------------------------------------------
    def leader_acquired(self) -> None:
        self.leader.set(1)
        self.leader_transitions.labels("acquired").inc()

    def leader_lost(self) -> None:
        self.leader.set(0)
        self.leader_transitions.labels("lost").inc()

    def leader_released(self) -> None:
        """Given up on a graceful stop: no longer leading, and not a loss."""
        self.leader.set(0)

    # --- the cloud client's observer (cloud.client.CloudObserver) ----------------------------------------
    def on_attempt(self, operation: str, outcome: str, seconds: float) -> None:
        self.cloud_requests.labels(operation, outcome).inc()
        self.cloud_latency.labels(operation).observe(seconds)

    def on_throttled(self, operation: str) -> None:
        self.throttled.labels(operation).inc()

    # --- batched server reads (cloud.looks.LookObserver) -------------------------------------------------
    def on_look_round(self, kind: str, servers: int) -> None:
        self.look_rounds.labels(kind).inc()
        self.servers_looked.inc(servers)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serves /metrics on `port` (0: not at all) until `close`."""
        if port:
            self._server, _ = start_http_server(port, addr=addr, registry=self.registry)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
