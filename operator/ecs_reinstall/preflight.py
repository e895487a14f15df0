"""What `run` checks before it starts anything: a setting that cannot work stops the operator at once, with one
line that names the setting, instead of kopf retrying its start-up every minute with a traceback.

Also the one log line that states the effective settings (names and numbers only: the settings hold no secret).
"""

from __future__ import annotations

import errno
import json
import socket

import kubernetes
import urllib3

from .kube import load_config
from .settings import Settings
from .tenancy import describe as describe_tenancy


class StartupError(Exception):
    """A setting that cannot work; the message names it and says what to do."""


def check(settings: Settings, kubeconfig: str | None) -> None:
    try:
        client = load_config(kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as exc:
        where = kubeconfig or "KUBECONFIG / ~/.kube/config"
        raise StartupError(
            f"no Kubernetes configuration: not in a Pod, and {where} gives none ({_first_line(exc)}); "
            "set --kubeconfig or KUBECONFIG"
        ) from None
    with client:
        if settings.default_credentials_namespace_selector:
            _check_selector(client, settings.default_credentials_namespace_selector)
    for flag, port in (("--metrics-port", settings.metrics_port), ("--health-port", settings.health_port)):
        if port:
            _check_port(flag, port)


def _check_selector(client: kubernetes.client.ApiClient, selector: str) -> None:
    """The API server parses the namespace selector and grants its list: refuse what it refuses, now, rather than
    every resource that would use the default credentials later. An API server out of reach is no verdict."""
    flag = "--default-credentials-namespace-selector"
    try:
        kubernetes.client.CoreV1Api(client).list_namespace(
            label_selector=selector, limit=1, _request_timeout=10
        )
    except kubernetes.client.ApiException as exc:
        if exc.status == 400:
            raise StartupError(
                f"{flag} {selector!r} is not a label selector ({_api_message(exc)}): write it as for kubectl -l, "
                "e.g. ecs.reinstall.dev/default-credentials=allowed"
            ) from None
        if exc.status == 403:
            raise StartupError(
                f"{flag} needs list on namespaces, which the operator's service account lacks: grant it (the "
                "chart does when credentials.allowedNamespaceSelector is set), or list the namespaces in "
                "--default-credentials-namespaces instead"
            ) from None
    except (OSError, ValueError, urllib3.exceptions.HTTPError):
        pass  # out of reach now: the operator waits for the API server like for anything else


def _api_message(exc: kubernetes.client.ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def _check_port(flag: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            why = "it is taken" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise StartupError(
                f"{flag} {port}: cannot listen there ({why}); choose another port, or 0 for none"
            ) from None


def describe(settings: Settings) -> str:
    """The effective settings in one line, for the start-up log."""
    namespaces = ",".join(settings.namespaces) or "all (cluster-wide)"
    endpoint = settings.endpoint or (
        f"https://ecs.{settings.region}.myhuaweicloud.com" if settings.region else "per resource"
    )
    election = (
        f"on (lease {settings.operator_namespace}/{settings.leader_election_lease_name}, "
        f"{settings.leader_election_lease_seconds:g}s/{settings.leader_election_renew_deadline_seconds:g}s/"
        f"{settings.leader_election_retry_period_seconds:g}s)"
        if settings.leader_election
        else "off"
    )
    return (
        f"endpoint {endpoint}; region {settings.region or 'per resource'}; project {settings.project_id or 'per resource'}; "
        f"default credentials {settings.credentials_secret or 'none'} in {settings.operator_namespace}; "
        f"watching {namespaces}; leader election {election}; "
        f"qps {settings.qps:g}, burst {settings.burst}, concurrency {settings.max_concurrency}; "
        f"request timeout {settings.request_timeout:g}s, outcome settle {settings.outcome_settle_seconds:g}s; "
        f"metrics port {settings.metrics_port or 'off'}, health port {settings.health_port or 'off'}; "
        + "; ".join(f"{what} {value}" for what, value in describe_tenancy(settings).items())
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
