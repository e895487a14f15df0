"""Injected faults and the cloud-side rate limit.

A fault applies to one operation (``reinstall``, ``reinstall_v1``, ``change_os``, ``change_os_v1``,
``get_job``, ``get_server``, ``list_actions``, ``get_action``, ``list_servers``, ``get_server_tags``,
``tag_server``) or to all (``*``).
When a request matches, in order: ``latency_ms`` delays it; ``drop_connection: "before"`` closes the connection
without processing; ``status`` answers with that status (``body`` if given, else a realistic error body for the
status, see `errors.default_fault_error`); ``drop_connection: "after"`` processes the request normally (a
reinstall is accepted and counted) and then closes the connection without answering. ``count`` limits how many
requests the fault hits (then it is removed); ``probability`` makes it hit at random.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum

OPERATIONS = (
    "reinstall", "reinstall_v1", "change_os", "change_os_v1", "get_job", "get_server", "list_actions",
    "get_action", "list_servers", "get_server_tags", "tag_server",
)  # fmt: skip


class Drop(StrEnum):
    BEFORE = "before"
    AFTER = "after"


@dataclass
class Fault:
    id: str
    operation: str = "*"
    status: int | None = None
    body: dict | None = None
    retry_after: int | None = None
    latency_ms: float = 0.0
    drop_connection: Drop | None = None
    count: int | None = None  # remaining hits; None = unlimited
    probability: float | None = None
    hits: int = 0

    def to_json(self) -> dict:
        data = asdict(self)
        data["drop_connection"] = self.drop_connection.value if self.drop_connection else None
        return data


_FAULT_FIELDS = {
    "operation",
    "status",
    "body",
    "retry_after",
    "latency_ms",
    "drop_connection",
    "count",
    "probability",
}


def parse_fault(data: object, fault_id: str) -> Fault:
    """Build a fault from admin JSON; `ValueError` with a precise message when something is wrong."""
    if not isinstance(data, dict):
        raise ValueError("a fault must be a JSON object")
    unknown = sorted(set(data) - _FAULT_FIELDS)
    if unknown:
        raise ValueError(f"unknown fault field(s) {unknown}; allowed: {sorted(_FAULT_FIELDS)}")
    operation = data.get("operation", "*")
    if operation != "*" and operation not in OPERATIONS:
        raise ValueError(f"operation must be '*' or one of {list(OPERATIONS)}, not {operation!r}")
    status = data.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ValueError(f"status must be an HTTP status code (100-599), not {status!r}")
    body = data.get("body")
    if body is not None and not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    drop = data.get("drop_connection")
    if drop is not None and drop not in ("before", "after"):
        raise ValueError(f"drop_connection must be 'before', 'after' or null, not {drop!r}")
    if drop == "after" and status is not None:
        raise ValueError(
            "drop_connection 'after' processes the request normally: do not give a status with it"
        )
    retry_after = data.get("retry_after")
    if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
        raise ValueError("retry_after must be a non-negative integer (seconds)")
    latency = data.get("latency_ms", 0)
    if not isinstance(latency, int | float) or latency < 0:
        raise ValueError("latency_ms must be a non-negative number")
    count = data.get("count")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer or null (unlimited)")
    probability = data.get("probability")
    if probability is not None and (not isinstance(probability, int | float) or not 0 <= probability <= 1):
        raise ValueError("probability must be a number between 0 and 1")
    if status is None and drop is None and not latency:
        raise ValueError("a fault needs at least one of status, drop_connection, latency_ms")
    return Fault(
        id=fault_id,
        operation=operation,
        status=status,
        body=body,
        retry_after=retry_after,
        latency_ms=float(latency),
        drop_connection=Drop(drop) if drop else None,
        count=count,
        probability=float(probability) if probability is not None else None,
    )


@dataclass
class FaultRegistry:
    faults: list[Fault] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def add(self, data: object) -> Fault:
        fault = parse_fault(data, f"fault-{next(self._ids)}")
        self.faults.append(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        before = len(self.faults)
        self.faults = [fault for fault in self.faults if fault.id != fault_id]
        return len(self.faults) != before

    def clear(self) -> None:
        self.faults.clear()

    def pick(self, operation: str) -> Fault | None:
        """The first fault that hits this request (consuming one of its ``count``), or None."""
        if not self.faults:
            return None
        for fault in self.faults:
            if fault.operation not in ("*", operation):
                continue
            if fault.probability is not None and self.rng.random() >= fault.probability:
                continue
            fault.hits += 1
            if fault.count is not None:
                fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
            return fault
        return None


@dataclass(frozen=True)
class RateLimit:
    qps: float
    burst: int

    @classmethod
    def from_json(cls, data: object) -> RateLimit | None:
        if data is None:
            return None
        if not isinstance(data, dict) or set(data) - {"qps", "burst"}:
            raise ValueError('rate_limit must be null or {"qps": <number > 0>, "burst": <integer >= 1>}')
        qps, burst = data.get("qps"), data.get("burst", 1)
        if not isinstance(qps, int | float) or qps <= 0:
            raise ValueError("rate_limit.qps must be a number greater than 0")
        if not isinstance(burst, int) or burst < 1:
            raise ValueError("rate_limit.burst must be an integer of at least 1")
        return cls(float(qps), burst)


class TokenBucket:
    """``burst`` tokens, refilled at ``qps`` per second (monotonic time)."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.stamp = time.monotonic()

    def try_take(self) -> float:
        """Take a token: 0.0 if allowed, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.limit.burst, self.tokens + (now - self.stamp) * self.limit.qps)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.limit.qps


class RateLimiter:
    """A global bucket over all API calls and optional per-operation buckets."""

    def __init__(self, overall: RateLimit | None = None, per_operation: dict[str, RateLimit] | None = None):
        self.overall = TokenBucket(overall) if overall else None
        self.per_operation = {op: TokenBucket(limit) for op, limit in (per_operation or {}).items()}

    def check(self, operation: str) -> int | None:
        """None if the call may go on, else the Retry-After seconds (at least 1)."""
        for bucket in (self.per_operation.get(operation), self.overall):
            if bucket is None:
                continue
            wait = bucket.try_take()
            if wait > 0:
                return max(1, math.ceil(wait))
        return None
