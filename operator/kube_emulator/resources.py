"""The kinds the emulator serves: a catalog of built-in resources and the ones CRDs add at run time.

A `ResourceType` is one resource in one served version (`widgets` in `example.com/v1`); all versions of a
resource share one storage, keyed by `storage_key`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)
SUBRESOURCE_VERBS = ("get", "patch", "update")

# Field selectors every resource supports; resources add their own (see `field_labels`).
COMMON_FIELD_LABELS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(eq=False)
class ResourceType:
    """One served (group, version, resource) with what the API server needs to know to serve it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: frozenset[str] = frozenset()
    # metadata.generation is kept (and bumped when anything but metadata/status changes).
    tracks_generation: bool = False
    # Served from a CRD: no strategic merge patch, PUT needs a resourceVersion, schema applies.
    custom: bool = False
    # Only `create` is meaningful and nothing is stored (reviews such as SelfSubjectAccessReview).
    virtual: bool = False
    schema: Any = None  # schema.StructuralSchema of the whole object, for custom resources
    status_schema_present: bool = False
    openapi_schema: dict[str, Any] | None = None  # the version's openAPIV3Schema (CRDs) for /openapi/v3
    printer_columns: tuple[dict[str, Any], ...] | None = None  # CRD additionalPrinterColumns
    field_labels: frozenset[str] = COMMON_FIELD_LABELS
    # Another group stores this resource (events.k8s.io/v1 events live with core v1 events).
    storage_group: str | None = None
    deprecated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def group_resource(self) -> str:
        """`widgets.example.com`, `secrets`: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage_key(self) -> tuple[str, str]:
        return (self.group if self.storage_group is None else self.storage_group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def __repr__(self) -> str:
        return f"<ResourceType {self.plural}.{self.api_version}>"


def _core(plural: str, kind: str, namespaced: bool = True, **extra: Any) -> ResourceType:
    return ResourceType(group="", version="v1", plural=plural, kind=kind, namespaced=namespaced, **extra)


def _in(
    group: str, version: str, plural: str, kind: str, namespaced: bool = True, **extra: Any
) -> ResourceType:
    return ResourceType(
        group=group, version=version, plural=plural, kind=kind, namespaced=namespaced, **extra
    )


_STATUS = frozenset({"status"})
_WORKLOAD = {"categories": ("all",), "tracks_generation": True}

EVENT_FIELD_LABELS = COMMON_FIELD_LABELS | {
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
}


def builtin_resources() -> list[ResourceType]:
    """The built-in catalog: what kopf, the operator and a typical install manifest (Helm chart) touch."""
    return [
        # core/v1
        _core(
            "namespaces",
            "Namespace",
            namespaced=False,
            short_names=("ns",),
            subresources=_STATUS,
            field_labels=COMMON_FIELD_LABELS | {"status.phase"},
        ),
        _core(
            "secrets",
            "Secret",
            field_labels=COMMON_FIELD_LABELS | {"type"},
        ),
        _core("configmaps", "ConfigMap", short_names=("cm",)),
        _core(
            "events",
            "Event",
            short_names=("ev",),
            field_labels=EVENT_FIELD_LABELS,
        ),
        _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
        _core("services", "Service", short_names=("svc",), categories=("all",), subresources=_STATUS),
        _core("endpoints", "Endpoints", short_names=("ep",)),
        _core(
            "pods",
            "Pod",
            short_names=("po",),
            categories=("all",),
            subresources=_STATUS,
            field_labels=COMMON_FIELD_LABELS | {"spec.nodeName", "status.phase", "spec.serviceAccountName"},
        ),
        _core("persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",), subresources=_STATUS),
        _core(
            "persistentvolumes",
            "PersistentVolume",
            namespaced=False,
            short_names=("pv",),
            subresources=_STATUS,
        ),
        _core("resourcequotas", "ResourceQuota", short_names=("quota",), subresources=_STATUS),
        _core("limitranges", "LimitRange", short_names=("limits",)),
        _core("nodes", "Node", namespaced=False, short_names=("no",), subresources=_STATUS),
        # apps/v1
        _in(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            short_names=("deploy",),
            subresources=_STATUS,
            **_WORKLOAD,
        ),
        _in(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            short_names=("sts",),
            subresources=_STATUS,
            **_WORKLOAD,
        ),
        _in("apps", "v1", "daemonsets", "DaemonSet", short_names=("ds",), subresources=_STATUS, **_WORKLOAD),
        _in(
            "apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), subresources=_STATUS, **_WORKLOAD
        ),
        # batch/v1
        _in("batch", "v1", "jobs", "Job", subresources=_STATUS, **_WORKLOAD),
        _in("batch", "v1", "cronjobs", "CronJob", short_names=("cj",), subresources=_STATUS, **_WORKLOAD),
        # coordination.k8s.io/v1 (kopf peering and leader election use leases)
        _in("coordination.k8s.io", "v1", "leases", "Lease"),
        # events.k8s.io/v1: the same events as core/v1, in the newer shape
        _in(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            short_names=("ev",),
            storage_group="",
            field_labels=EVENT_FIELD_LABELS,
        ),
        # rbac.authorization.k8s.io/v1
        _in("rbac.authorization.k8s.io", "v1", "roles", "Role"),
        _in("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
        _in("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
        _in("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
        # policy/v1, networking.k8s.io/v1, autoscaling/v2, scheduling.k8s.io/v1
        _in(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            short_names=("pdb",),
            subresources=_STATUS,
            tracks_generation=True,
        ),
        _in(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            short_names=("netpol",),
            tracks_generation=True,
        ),
        _in(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            short_names=("ing",),
            subresources=_STATUS,
            tracks_generation=True,
        ),
        _in(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            short_names=("hpa",),
            categories=("all",),
            subresources=_STATUS,
        ),
        _in(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            namespaced=False,
            short_names=("pc",),
        ),
        # admissionregistration.k8s.io/v1 (stored only: no admission happens)
        _in(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            namespaced=False,
            tracks_generation=True,
        ),
        _in(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            namespaced=False,
            tracks_generation=True,
        ),
        # apiextensions.k8s.io/v1
        _in(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            short_names=("crd", "crds"),
            categories=("api-extensions",),
            subresources=_STATUS,
            tracks_generation=True,
        ),
        # authorization.k8s.io/v1: `kubectl auth can-i` (everything is allowed here)
        _in(
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            namespaced=False,
            verbs=CREATE_ONLY,
            virtual=True,
        ),
        _in(
            "authorization.k8s.io",
            "v1",
            "selfsubjectrulesreviews",
            "SelfSubjectRulesReview",
            namespaced=False,
            verbs=CREATE_ONLY,
            virtual=True,
        ),
    ]


# Group preference order in discovery, like the apiserver's (core first, then built-in groups, then CRDs).
BUILTIN_GROUP_ORDER = (
    "",
    "apps",
    "events.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "scheduling.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "coordination.k8s.io",
)


class Registry:
    """Served resources by (group, version, plural); built-ins first, CRD-served ones added and removed."""

    def __init__(self, builtins: Iterable[ResourceType] | None = None) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}  # CRD name -> its served versions
        self._crd_preferred: dict[str, str] = {}  # group -> preferred version, for CRD groups
        for rtype in builtin_resources() if builtins is None else builtins:
            self._types[(rtype.group, rtype.version, rtype.plural)] = rtype
        self.generation = 0  # bumped on every change, for discovery/openapi caches

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def find_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        for rtype in self._types.values():
            if rtype.group == group and rtype.version == version and rtype.kind == kind:
                return rtype
        return None

    def versions_of(self, group: str, plural: str) -> list[ResourceType]:
        return [t for t in self._types.values() if t.group == group and t.plural == plural]

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._types.values())

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self._types.values() if t.group == group and t.version == version]

    def groups(self) -> list[tuple[str, list[str], str]]:
        """(group, versions in preference order, preferred version) for every group except core."""
        versions: dict[str, list[str]] = {}
        for group, version, _plural in self._types:
            bucket = versions.setdefault(group, [])
            if version not in bucket:
                bucket.append(version)
        order = {group: index for index, group in enumerate(BUILTIN_GROUP_ORDER)}
        result = []
        for group in sorted(versions, key=lambda g: (order.get(g, len(order)), g)):
            if group == "":
                continue
            ordered = sorted(versions[group], key=version_priority)
            preferred = self._crd_preferred.get(group, ordered[0])
            if preferred in ordered:
                ordered.remove(preferred)
                ordered.insert(0, preferred)
            result.append((group, ordered, ordered[0]))
        return result

    def install_crd(self, crd_name: str, types: list[ResourceType], preferred_version: str) -> None:
        self.remove_crd(crd_name)
        for rtype in types:
            self._types[(rtype.group, rtype.version, rtype.plural)] = rtype
        self._crd_types[crd_name] = types
        if types:
            self._crd_preferred[types[0].group] = preferred_version
        self.generation += 1

    def remove_crd(self, crd_name: str) -> None:
        for rtype in self._crd_types.pop(crd_name, []):
            self._types.pop((rtype.group, rtype.version, rtype.plural), None)
        self.generation += 1

    def crd_types(self, crd_name: str) -> list[ResourceType]:
        return list(self._crd_types.get(crd_name, []))


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA before beta before alpha, higher numbers first (v2 > v1 > v1beta2)."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0, version)
    major = int(match.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[match.group(2) or ""]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor, version)
