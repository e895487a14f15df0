"""Prometheus metrics of the operator, on their own registry (one per operator instance; tests get fresh ones).

Names and labels never carry secrets: the only labels are phases, results, operations and outcomes.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PHASES = ("Pending", "Submitting", "Reinstalling", "Succeeded", "Failed")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self._server: WSGIServer | None = None
        r = self.registry
        self.resources = Gauge(
            "ecs_reinstall_resources", "EcsReinstall resources by phase", ["phase"], registry=r
        )
        self.finished = Counter(
            "ecs_reinstall_finished_total", "Reinstalls that reached a terminal phase", ["result"], registry=r
        )
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
        self._phases: dict[str, str] = {}
        for phase in PHASES:
            self.resources.labels(phase).set(0)

    # --- resources -----------------------------------------------------------------------------------------
    def observe_phase(self, uid: str, phase: str | None) -> None:
        """The phase a resource is in now (None: gone). Keeps the per-phase gauge exact, in O(1)."""
        if phase is not None and phase not in PHASES:
            phase = "Pending"
        previous = self._phases.pop(uid, None) if phase is None else self._phases.get(uid)
        if previous == phase:
            return
        if previous is not None:
            self.resources.labels(previous).dec()
        if phase is not None:
            self._phases[uid] = phase
            self.resources.labels(phase).inc()

    def transition(self, old: object, new: object) -> None:
        if new is not None and str(new) in ("Succeeded", "Failed") and old != new:
            self.finished.labels(str(new)).inc()

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

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serves /metrics on `port` (0: not at all) until `close`."""
        if port:
            self._server, _ = start_http_server(port, addr=addr, registry=self.registry)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
