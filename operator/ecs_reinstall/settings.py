"""Operator-wide settings: one typed object, filled from flags, then environment variables, then defaults.

Every setting has a flag (`--region`) and an environment variable (`ECS_REINSTALL_REGION`); the flag wins.
The Helm chart and the kustomize base set the environment variables.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields

from .cloud import tags

ENV_PREFIX = "ECS_REINSTALL_"


@dataclass(frozen=True)
class Settings:
    region: str | None = None
    project_id: str | None = None
    endpoint: str | None = None
    credentials_secret: str | None = None  # default credentials Secret, in the operator's namespace
    # Who may use it besides the operator's namespace (see tenancy.py): names ("*": all), a namespace selector.
    default_credentials_namespaces: tuple[str, ...] = ()
    default_credentials_namespace_selector: str | None = None
    # Server ownership: a resource in namespace N reinstalls only servers tagged owner_tag_key=N (or a listed value)
    owner_tag_key: str | None = None
    owner_tag_values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    operator_namespace: str = "default"
    ca_bundle: str | None = None
    qps: float = 10.0
    burst: int = 20
    max_concurrency: int = 100
    namespaces: tuple[str, ...] = ()  # empty: every namespace (cluster-wide)
    log_format: str = "json"
    log_level: str = "INFO"
    metrics_port: int = 8080
    health_port: int = 8081
    request_timeout: float = 30.0
    # How long an unknown POST outcome is re-checked on the server before we conclude it was not processed.
    outcome_settle_seconds: float = 60.0
    # Backoff while waiting for a missing Secret, a busy server or after throttling: base and cap, seconds.
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    # How long a Secret or ConfigMap read is reused by other resources (0: every resource reads its own).
    input_cache_seconds: float = 2.0
    input_recheck_seconds: float = 5.0
    # Leader election on a Lease in the operator's namespace: only its holder runs reinstalls.
    leader_election: bool = True
    leader_election_lease_seconds: float = 15.0
    leader_election_renew_deadline_seconds: float = 10.0
    leader_election_retry_period_seconds: float = 2.0
    leader_election_lease_name: str = "ecs-reinstall-operator"
    pod_name: str | None = None  # the holder identity (downward API); unset: {hostname}_{random 8 hex}

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def boolean(text: str) -> bool:
    """true/false, yes/no, 1/0 (any case); anything else is a ValueError (`bool("false")` is True)."""
    value = text.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def names(text: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped, sorted without duplicates."""
    return tuple(sorted({part.strip() for part in text.split(",") if part.strip()}))


def owner_values(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`team-a=web-a|shared,team-b=b` -> (("team-a", ("web-a", "shared")), ("team-b", ("b",))). Tag values
    contain none of "," "=" "|", namespace names neither: the separators are unambiguous."""
    pairs: dict[str, tuple[str, ...]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        namespace, sep, listed = (part.strip() for part in item.partition("="))
        if not sep or not namespace:
            raise ValueError(f"{item!r} is not namespace=value1|value2")
        values = tuple(value.strip() for value in listed.split("|"))
        for value in values:
            problem = tags.problem(value, key=False) or ("is empty" if not value else None)
            if problem:
                raise ValueError(f"the owner tag value {value!r} listed for {namespace!r} {problem}")
        pairs[namespace] = pairs.get(namespace, ()) + values
    return tuple(sorted(pairs.items()))


# name -> (flag help, converter). The order is the order of `run --help`.
_OPTIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "region": ("default region, e.g. ap-southeast-1, for resources without spec.region", str),
    "project_id": ("default project ID, for resources and credentials without one", str),
    "endpoint": ("default ECS endpoint URL (default: https://ecs.{region}.myhuaweicloud.com)", str),
    "credentials_secret": ("name of the default credentials Secret in the operator's namespace", str),
    "default_credentials_namespaces": (
        "namespaces (comma-separated; * for all) whose resources may use the default credentials, besides the "
        "operator's own",
        names,
    ),
    "default_credentials_namespace_selector": (
        "label selector of more namespaces whose resources may use the default credentials (cluster-wide mode "
        "only: needs list on namespaces)",
        str,
    ),
    "owner_tag_key": (
        "server tag key naming the namespace that owns a server: a resource in namespace N reinstalls only "
        "servers tagged KEY=N (unset: no check)",
        str,
    ),
    "owner_tag_values": (
        "more owner tag values per namespace: ns=value1|value2,ns2=value3",
        owner_values,
    ),
    "operator_namespace": ("the operator's own namespace (downward API)", str),
    "ca_bundle": ("CA bundle file to verify the ECS endpoint's TLS certificate", str),
    "qps": ("cloud API calls per second, per endpoint and project", float),
    "burst": ("cloud API burst size, per endpoint and project", int),
    "max_concurrency": (
        "most reconcile steps in flight at once (submissions; as many following sent requests)",
        int,
    ),
    "log_format": ("log format: json or text", str),
    "log_level": ("log level: DEBUG, INFO, WARNING, ERROR", str),
    "metrics_port": ("Prometheus metrics port (path /metrics); 0 disables", int),
    "health_port": ("liveness probe port (path /healthz); 0 disables", int),
    "request_timeout": ("cloud API read timeout, seconds", float),
    "outcome_settle_seconds": (
        "how long an unknown reinstall outcome is re-checked before re-sending",
        float,
    ),
    "retry_base_seconds": ("first retry delay while waiting (Secrets, busy server), seconds", float),
    "retry_max_seconds": ("longest retry delay while waiting, seconds", float),
    "input_recheck_seconds": (
        "how often a resource waiting for a Secret or ConfigMap (missing, or holding a value that cannot work) or "
        "for refused credentials to be fixed looks again, seconds",
        float,
    ),
    "input_cache_seconds": (
        "how long a Secret or ConfigMap read is shared by resources referring to it, seconds (0: never)",
        float,
    ),
    "leader_election": (
        "run reinstalls only while holding the leader Lease, so that replicas can stand by: true or false",
        boolean,
    ),
    "leader_election_lease_seconds": ("how long a leader's lease lasts without renewal, seconds", float),
    "leader_election_renew_deadline_seconds": (
        "how long the leader keeps trying to renew before it stops all work, seconds",
        float,
    ),
    "leader_election_retry_period_seconds": ("how often the lease is renewed or tried, seconds", float),
    "leader_election_lease_name": ("name of the Lease, in the operator's namespace", str),
    "pod_name": (
        "the Pod's name (downward API): this instance's identity in the Lease (default: host name + random)",
        str,
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, (help_text, _) in _OPTIONS.items():
        env = ENV_PREFIX + name.upper()
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None, help=f"{help_text} [{env}]"
        )
    parser.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        default=None,
        help=f"namespace to watch; repeat for several; none means all [{ENV_PREFIX}WATCH_NAMESPACES, comma-separated]",
    )


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Builds the settings: flag, else environment variable, else the default. Raises ValueError on bad values."""
    env = os.environ if environ is None else environ
    given = vars(args) if args is not None else {}
    defaults = {f.name: f.default for f in fields(Settings)}
    values: dict[str, object] = {}
    for name, (_, convert) in _OPTIONS.items():
        raw = given.get(name)
        source = "--" + name.replace("_", "-")
        if raw is None:
            raw = env.get(ENV_PREFIX + name.upper()) or None
            source = ENV_PREFIX + name.upper()
        if raw is None:
            values[name] = defaults[name]
            continue
        try:
            values[name] = convert(raw)
        except ValueError as exc:
            if convert is owner_values:  # its message says what is wrong
                raise ValueError(f"{source}={raw!r}: {exc}") from None
            expected = "boolean (true or false)" if convert is boolean else convert.__name__
            raise ValueError(f"{source}={raw!r} is not a valid {expected}") from None
    namespaces: Sequence[str] | None = given.get("namespaces")
    if not namespaces:
        namespaces = [n for n in env.get(ENV_PREFIX + "WATCH_NAMESPACES", "").split(",")]
    values["namespaces"] = tuple(sorted({n.strip() for n in namespaces if n.strip()}))
    settings = Settings(**values)  # type: ignore[arg-type]
    _check(settings)
    return settings


_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LEASE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def warnings(s: Settings) -> list[str]:
    """Settings that work but weaken a guarantee: logged at start-up, not refused (the chaos run uses them on
    purpose)."""
    found = []
    if s.outcome_settle_seconds < 2 * s.request_timeout:
        found.append(
            f"outcome settle time ({s.outcome_settle_seconds:g}s) is under twice the request timeout "
            f"({s.request_timeout:g}s): a reinstall request the cloud processes late may be judged not taken "
            "and sent again (the operator still compares the server before sending); raise "
            "--outcome-settle-seconds"
        )
    return found


def _check(s: Settings) -> None:
    if s.log_format not in ("json", "text"):
        raise ValueError(f"log format {s.log_format!r} is not supported: use json or text")
    if s.qps <= 0 or s.burst < 1:
        raise ValueError("qps must be > 0 and burst >= 1")
    if s.input_cache_seconds < 0:
        raise ValueError("input cache seconds must be >= 0")
    if s.input_recheck_seconds <= 0:
        raise ValueError("input recheck seconds must be > 0")
    for namespace in s.namespaces:
        if len(namespace) > 63 or not _NAMESPACE_NAME.fullmatch(namespace):
            raise ValueError(
                f"watched namespace {namespace!r} is not a namespace name: list the namespaces exactly "
                "(lowercase letters, digits and '-', no patterns)"
            )
    _check_tenancy(s)
    if s.max_concurrency < 1:
        raise ValueError("max concurrency must be >= 1")
    _check_leader_election(s)
    if s.endpoint and not s.endpoint.startswith(("https://", "http://")):
        raise ValueError(
            f"endpoint {s.endpoint!r} must start with https:// (or http:// for a local emulator)"
        )


def _check_tenancy(s: Settings) -> None:
    for namespace in s.default_credentials_namespaces:
        if namespace != "*" and (len(namespace) > 63 or not _NAMESPACE_NAME.fullmatch(namespace)):
            raise ValueError(
                f"default credentials namespace {namespace!r} is not a namespace name: list names exactly, or * "
                "for every namespace (a label selector goes in --default-credentials-namespace-selector)"
            )
    if s.default_credentials_namespace_selector and not s.clusterwide:
        raise ValueError(
            "--default-credentials-namespace-selector needs list on namespaces, a cluster-scoped grant that a "
            "namespaced operator (--namespace) does without: list the namespaces in "
            "--default-credentials-namespaces instead"
        )
    if s.owner_tag_key is not None:
        problem = tags.problem(s.owner_tag_key, key=True)
        if problem:
            raise ValueError(
                f"owner tag key {s.owner_tag_key!r} {problem}: Huawei tag keys hold 1-36 characters, for example "
                "ecs-reinstall-namespace"
            )
    if s.owner_tag_values and not s.owner_tag_key:
        raise ValueError("owner tag values are listed but no --owner-tag-key is set: set both, or neither")


def _check_leader_election(s: Settings) -> None:
    lease = s.leader_election_lease_seconds
    renew = s.leader_election_renew_deadline_seconds
    retry = s.leader_election_retry_period_seconds
    if not (lease > 0 and renew > 0 and retry > 0):
        raise ValueError("leader election lease, renew deadline and retry period seconds must be > 0")
    if not renew < lease:
        raise ValueError(
            f"--leader-election-renew-deadline-seconds ({renew:g}) must be less than "
            f"--leader-election-lease-seconds ({lease:g}): a leader that cannot renew must stop before "
            "another instance may take over"
        )
    if not retry < renew:
        raise ValueError(
            f"--leader-election-retry-period-seconds ({retry:g}) must be less than "
            f"--leader-election-renew-deadline-seconds ({renew:g}): the leader must be able to retry a "
            "failed renewal before it gives up"
        )
    if not _LEASE_NAME.fullmatch(s.leader_election_lease_name) or len(s.leader_election_lease_name) > 253:
        raise ValueError(
            f"leader election lease name {s.leader_election_lease_name!r} is not an object name "
            "(lowercase letters, digits, '-' and '.')"
        )
