"""Fault injection: make chosen API requests fail, slow down, or have their watch streams cut short.

A rule matches requests by Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection)
and by URL path (prefix and/or regular expression), for the next `times` matches (or forever) and with a
probability. Its effects: an error `kind: Status` answer (409, 410, 429 with Retry-After, 500, 503, ...),
latency before the request is served, and for watches an early end after some events or seconds (cleanly, or
by dropping the connection). Rules are managed over HTTP (`/_emulator/faults`) or from Python
(`FaultInjector.add`). Thread-safe: tests may add rules from another thread.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError

VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"})

_DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "injected fault: bad request"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "injected fault: forbidden"),
    404: ("NotFound", "the server could not find the requested resource"),
    409: (
        "Conflict",
        "Operation cannot be fulfilled: the object has been modified; please apply your changes "
        "to the latest version and try again",
    ),
    410: ("Expired", "too old resource version"),
    422: ("Invalid", "injected fault: invalid"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected fault"),
    503: ("ServiceUnavailable", "The server is currently unable to handle the request"),
    504: ("Timeout", "Timeout: request did not complete within the allowed duration"),
}


class FaultRuleError(ValueError):
    """A fault rule that cannot be used, with what is wrong in it."""


@dataclass
class FaultRule:
    verbs: frozenset[str] = frozenset()  # empty: any verb
    path_prefix: str = ""
    path_regex: str = ""
    times: int | None = None  # None: every match
    probability: float = 1.0
    error_code: int | None = None
    error_reason: str = ""
    error_message: str = ""
    retry_after_seconds: int | None = None
    latency_seconds: float = 0.0
    watch_close_after_events: int | None = None
    watch_close_after_seconds: float | None = None
    watch_abort: bool = False  # drop the connection instead of ending the stream cleanly
    id: int = 0
    hits: int = 0
    _pattern: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.verbs = frozenset(v.lower() for v in self.verbs)
        unknown = self.verbs - VERBS
        if unknown:
            raise FaultRuleError(f"unknown verbs {sorted(unknown)}; use some of {sorted(VERBS)}")
        if not 0.0 <= self.probability <= 1.0:
            raise FaultRuleError(f"probability must be within 0..1, not {self.probability}")
        if self.times is not None and self.times < 1:
            raise FaultRuleError(f"times must be at least 1 (or absent for every match), not {self.times}")
        if self.error_code is not None and not 400 <= self.error_code <= 599:
            raise FaultRuleError(f"error code must be an HTTP error status (400..599), not {self.error_code}")
        if self.latency_seconds < 0:
            raise FaultRuleError("latencySeconds must not be negative")
        has_effect = (
            self.error_code is not None
            or self.latency_seconds > 0
            or self.watch_close_after_events is not None
            or self.watch_close_after_seconds is not None
        )
        if not has_effect:
            raise FaultRuleError("a fault rule needs an effect: error, latencySeconds or watch")
        if self.path_regex:
            try:
                self._pattern = re.compile(self.path_regex)
            except re.error as error:
                raise FaultRuleError(
                    f"pathRegex {self.path_regex!r} is not a valid regular expression: {error}"
                ) from error

    def matches(self, verb: str, path: str) -> bool:
        if self.error_code is None and not self.latency_seconds and verb != "watch":
            return False  # a rule that only cuts watch streams short never spends itself on other requests
        if self.verbs and verb not in self.verbs:
            return False
        if self.path_prefix and not path.startswith(self.path_prefix):
            return False
        return self._pattern is None or self._pattern.search(path) is not None

    def error(self) -> tuple[ApiError, dict[str, str]] | None:
        """The error answer and its extra headers, if this rule fails requests."""
        if self.error_code is None:
            return None
        reason, message = _DEFAULT_ERRORS.get(self.error_code, ("InternalError", "injected fault"))
        details: dict[str, Any] | None = None
        headers: dict[str, str] = {}
        retry_after = self.retry_after_seconds
        if retry_after is None and self.error_code == 429:
            retry_after = 1
        if retry_after is not None:
            details = {"retryAfterSeconds": retry_after}
            headers["Retry-After"] = str(retry_after)
        error = ApiError(
            self.error_code, self.error_reason or reason, self.error_message or message, details=details
        )
        return error, headers

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        if not isinstance(data, dict):
            raise FaultRuleError("a fault rule must be a JSON object")
        known = {
            "verbs",
            "pathPrefix",
            "pathRegex",
            "times",
            "probability",
            "error",
            "latencySeconds",
            "watch",
        }
        unknown = set(data) - known
        if unknown:
            raise FaultRuleError(f"unknown fields {sorted(unknown)}; known: {sorted(known)}")
        error = data.get("error") or {}
        watch = data.get("watch") or {}
        if not isinstance(error, dict) or not isinstance(watch, dict):
            raise FaultRuleError("error and watch must be JSON objects")
        try:
            return cls(
                verbs=frozenset(data.get("verbs") or ()),
                path_prefix=str(data.get("pathPrefix") or ""),
                path_regex=str(data.get("pathRegex") or ""),
                times=int(data["times"]) if data.get("times") is not None else None,
                probability=float(data.get("probability", 1.0)),
                error_code=int(error["code"]) if "code" in error else None,
                error_reason=str(error.get("reason") or ""),
                error_message=str(error.get("message") or ""),
                retry_after_seconds=int(error["retryAfterSeconds"]) if "retryAfterSeconds" in error else None,
                latency_seconds=float(data.get("latencySeconds") or 0.0),
                watch_close_after_events=int(watch["closeAfterEvents"])
                if "closeAfterEvents" in watch
                else None,
                watch_close_after_seconds=float(watch["closeAfterSeconds"])
                if "closeAfterSeconds" in watch
                else None,
                watch_abort=bool(watch.get("abort", False)),
            )
        except (TypeError, ValueError) as error_:
            if isinstance(error_, FaultRuleError):
                raise
            raise FaultRuleError(f"bad value in fault rule: {error_}") from error_

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "hits": self.hits, "probability": self.probability}
        if self.verbs:
            data["verbs"] = sorted(self.verbs)
        if self.path_prefix:
            data["pathPrefix"] = self.path_prefix
        if self.path_regex:
            data["pathRegex"] = self.path_regex
        if self.times is not None:
            data["times"] = self.times
        if self.error_code is not None:
            error: dict[str, Any] = {"code": self.error_code}
            if self.error_reason:
                error["reason"] = self.error_reason
            if self.error_message:
                error["message"] = self.error_message
            if self.retry_after_seconds is not None:
                error["retryAfterSeconds"] = self.retry_after_seconds
            data["error"] = error
        if self.latency_seconds:
            data["latencySeconds"] = self.latency_seconds
        watch: dict[str, Any] = {}
        if self.watch_close_after_events is not None:
            watch["closeAfterEvents"] = self.watch_close_after_events
        if self.watch_close_after_seconds is not None:
            watch["closeAfterSeconds"] = self.watch_close_after_seconds
        if self.watch_abort:
            watch["abort"] = True
        if watch:
            data["watch"] = watch
        return data


@dataclass
class FaultEffect:
    """What the matching rules do to one request, combined."""

    latency_seconds: float = 0.0
    error: tuple[ApiError, dict[str, str]] | None = None
    watch_close_after_events: int | None = None
    watch_close_after_seconds: float | None = None
    watch_abort: bool = False


class FaultInjector:
    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def effect(self, verb: str, path: str) -> FaultEffect | None:
        """Consume the rules that fire for this request and combine their effects (None: no fault)."""
        effect = FaultEffect()
        fired = False
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(verb, path):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                fired = True
                rule.hits += 1
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                effect.latency_seconds += rule.latency_seconds
                if effect.error is None:
                    effect.error = rule.error()
                if rule.watch_close_after_events is not None:
                    effect.watch_close_after_events = min(
                        rule.watch_close_after_events,
                        effect.watch_close_after_events or rule.watch_close_after_events,
                    )
                if rule.watch_close_after_seconds is not None:
                    effect.watch_close_after_seconds = min(
                        rule.watch_close_after_seconds,
                        effect.watch_close_after_seconds or rule.watch_close_after_seconds,
                    )
                effect.watch_abort = effect.watch_abort or rule.watch_abort
        return effect if fired else None
