"""Counts of the API requests served, by (verb, group, resource, subresource, namespace, client).

The client is the product name of the User-Agent (`kubectl`, `kopf`, `ecs-reinstall-operator`, ...), so that
the calls of one program can be told from a test driver's.

Read through `GET /_emulator/requests` (or `RequestLog.snapshot()`): it shows every verb and resource a client
used, e.g. to prove that an RBAC role grants what an operator needs and nothing more.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class RequestKey:
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    user_agent: str = ""


def product(user_agent: str | None) -> str:
    """`kopf/1.45.2 (...)` -> `kopf`: the first product token of a User-Agent header."""
    return (user_agent or "").split("/", 1)[0].split(" ", 1)[0]


class RequestLog:
    def __init__(self) -> None:
        self._resources: Counter[RequestKey] = Counter()
        self._non_resource: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def count(self, key: RequestKey) -> None:
        with self._lock:
            self._resources[key] += 1

    def count_non_resource(self, verb: str, path: str) -> None:
        with self._lock:
            self._non_resource[(verb, path)] += 1

    def reset(self) -> None:
        with self._lock:
            self._resources.clear()
            self._non_resource.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            resources = sorted(self._resources.items())
            non_resource = sorted(self._non_resource.items())
        return {
            "requests": [
                {
                    "verb": key.verb,
                    "group": key.group,
                    "resource": key.resource,
                    "subresource": key.subresource,
                    "namespace": key.namespace,
                    "userAgent": key.user_agent,
                    "count": count,
                }
                for key, count in resources
            ],
            "nonResourceRequests": [
                {"verb": verb, "path": path, "count": count} for (verb, path), count in non_resource
            ],
        }
