"""Who may reinstall which server, on a cluster that teams share.

Kubernetes RBAC decides who may create an EcsReinstall in a namespace, but servers are not namespaced: RBAC alone
cannot say "this namespace owns these servers". Two checks close that gap, both before a request is sent:

- **Default credentials are opt-in per namespace.** A resource without spec.credentialsSecretRef borrows the
  operator's default credentials only in the operator's own namespace and in the namespaces its administrator
  allows: a list (`*` for every namespace) or a namespace label selector, which the API server evaluates (one
  cached LIST of the matching namespaces serves every resource). Checked before any cloud call.
- **Server ownership, checked at the cloud** (optional): with an owner tag key, a resource in namespace N may
  reinstall only a server tagged KEY=N, or KEY=one of the values listed for N (a tag value holds at most 43
  characters, a namespace name up to 63). The tags come with the server details the operator reads anyway. A
  refusal names the tag expected, never the value the server carries: it may name another tenant.

Both refusals are terminal (`Forbidden`): a tenancy decision is not a glitch to wait out, and a resource that
waited would go on the moment someone relabelled a namespace or retagged a server, long after its author left.
"""

from __future__ import annotations

from collections.abc import Mapping

from .cloud.models import Server
from .kube import Kube
from .settings import Settings
from .spec import ReinstallSpec

# status.failure.code of each refusal, and the `reason` label of ecs_reinstall_refused_total
DEFAULT_CREDENTIALS_NOT_ALLOWED = "DefaultCredentialsNotAllowed"
SERVER_NOT_OWNED = "ServerNotOwned"
CODES = frozenset({DEFAULT_CREDENTIALS_NOT_ALLOWED, SERVER_NOT_OWNED})


class Forbidden(Exception):
    """A tenancy refusal: `code` is one of CODES; the message says what to set, and never shows a secret or
    another tenant's tag value."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def uses_default_credentials(settings: Settings, spec: ReinstallSpec) -> bool:
    return not spec.credentials_secret and bool(settings.credentials_secret)


def default_credentials_listed(settings: Settings, namespace: str) -> bool:
    """Allowed without asking the API server: the operator's namespace, or listed (`*`: all)."""
    allowed = settings.default_credentials_namespaces
    return namespace == settings.operator_namespace or "*" in allowed or namespace in allowed


async def check_default_credentials(
    kube: Kube, settings: Settings, namespace: str, spec: ReinstallSpec
) -> None:
    """Raises Forbidden when the resource would borrow default credentials its namespace is not allowed."""
    if not uses_default_credentials(settings, spec) or default_credentials_listed(settings, namespace):
        return
    selector = settings.default_credentials_namespace_selector
    if selector and namespace in await kube.namespaces_matching(selector):
        return
    ways = ["list it in --default-credentials-namespaces, Helm value credentials.allowedNamespaces"]
    if selector:
        ways.append(f"give it a label matching {selector!r}")
    else:
        ways.append("label it to match a --default-credentials-namespace-selector")
    raise Forbidden(
        DEFAULT_CREDENTIALS_NOT_ALLOWED,
        f'Namespace "{namespace}" may not use the operator\'s default credentials; nothing was sent. Set '
        "spec.credentialsSecretRef to a Secret of this namespace with accessKey and secretKey, or have the "
        f"operator's administrator allow this namespace: {'; or '.join(ways)}",
    )


def owner_values(settings: Settings, namespace: str) -> tuple[str, ...]:
    """The owner tag values that give a server to `namespace`: its name, then the values listed for it."""
    listed = dict(settings.owner_tag_values).get(namespace, ())
    return tuple(dict.fromkeys((namespace, *listed)))


def check_owner(settings: Settings, namespace: str, server: Server) -> None:
    """Raises Forbidden unless the server carries the owner tag for `namespace` (no owner tag key: no check)."""
    key = settings.owner_tag_key
    if not key:
        return
    values = owner_values(settings, namespace)
    if server.tag(key) in values:
        return
    expected = " or ".join(f'"{key}={value}"' for value in values)
    raise Forbidden(
        SERVER_NOT_OWNED,
        f'Server {server.id} is not tagged for namespace "{namespace}" (tag {expected} expected); nothing was '
        "sent. Reinstall it from the namespace it belongs to, or, if it is this namespace's, have its owner tag "
        "it so",
    )


def describe(settings: Settings) -> Mapping[str, str]:
    """The tenancy settings in words, for the start-up log."""
    listed = settings.default_credentials_namespaces
    allowed = "every namespace" if "*" in listed else ", ".join((settings.operator_namespace, *listed))
    if settings.default_credentials_namespace_selector and "*" not in listed:
        allowed += f", and namespaces matching {settings.default_credentials_namespace_selector!r}"
    return {
        "default credentials for": allowed
        if settings.credentials_secret
        else "none (no default credentials)",
        "server owner tag": settings.owner_tag_key or "off",
    }
