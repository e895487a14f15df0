"""The API server's state and verbs, without HTTP: get, list, watch, create, update, patch, delete.

`Cluster` holds the registry of served resources and their stores and applies the apiserver's rules on every
write: metadata and names, resourceVersion preconditions, generation, the status subresource, schema pruning,
defaulting and validation of custom resources, strategic/merge/JSON patch and server-side apply, field
ownership, finalizers and graceful deletion, namespace termination, CRD registration and cleanup, and
background garbage collection through ownerReferences. Every method is synchronous: a call is one atomic step
on the event loop. Errors are raised as `errors.ApiError`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import conversion, fieldsets, kinds
from .crds import CLEANUP_FINALIZER, mark_terminating, resource_types
from .errors import (
    FIELD_VALUE_REQUIRED,
    ApiError,
    Cause,
    GoStruct,
    already_exists,
    bad_request,
    conflict,
    expired,
    field_forbidden,
    field_invalid,
    invalid,
    not_found,
    too_old_resource_version,
    unprocessable_patch,
    unsupported_media_type,
)
from .listtypes import BuiltinListRules, ListRules, SchemaListRules
from .meta import NameRule, generate_name, now_rfc3339, validate_metadata, validate_name
from .patching import json_patch, merge_patch
from .resources import Registry, ResourceType
from .selectors import EVENT_FIELD_LABELS, parse_field_selector, parse_label_selector
from .store import (
    EventType,
    ObjectKey,
    ResourceStore,
    ResourceVersionTooOld,
    Revision,
    StoredObject,
    Watcher,
    dumps,
)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"
CUSTOM_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
BUILTIN_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH]

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
_BUILTIN_LIST_RULES = BuiltinListRules()
_GENERATE_NAME_RETRIES = 7

_NAME_RULES = {
    ("", "namespaces"): NameRule.LABEL,
    ("", "services"): NameRule.LABEL,
    ("rbac.authorization.k8s.io", "roles"): NameRule.PATH_SEGMENT,
    ("rbac.authorization.k8s.io", "rolebindings"): NameRule.PATH_SEGMENT,
    ("rbac.authorization.k8s.io", "clusterroles"): NameRule.PATH_SEGMENT,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): NameRule.PATH_SEGMENT,
}
_SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")


@dataclass
class WriteOptions:
    """Query parameters of a write, and the warnings it collects for the `Warning` response header."""

    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"  # Strict | Warn | Ignore (the server default is Warn)
    force: bool = False
    user_agent: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def manager(self) -> str:
        """The field manager: as given, else the User-Agent's product (`kubectl`, `kopf`), like the apiserver."""
        if self.field_manager:
            return self.field_manager
        return self.user_agent.split("/", 1)[0] or "unknown"


@dataclass
class ListOptions:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class WatchOptions:
    label_selector: str = ""
    field_selector: str = ""
    resource_version: str = ""
    resource_version_match: str = ""
    allow_bookmarks: bool = False
    send_initial_events: bool | None = None


@dataclass
class DeleteOptions:
    propagation_policy: str = ""  # Background (default), Foreground, Orphan
    uid: str | None = None  # preconditions
    resource_version: str | None = None
    dry_run: bool = False


@dataclass
class ListResult:
    items: list[StoredObject]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


@dataclass
class DeleteResult:
    stored: StoredObject  # the last state (removed) or the object marked for deletion (still there)
    removed: bool


ObjectFilter = Callable[[dict[str, Any]], bool]


def _content(obj: dict[str, Any], *, skip_status: bool) -> dict[str, Any]:
    """The parts of an object whose change bumps metadata.generation."""
    excluded = ("metadata", "status") if skip_status else ("metadata",)
    return {k: v for k, v in obj.items() if k not in excluded}


class Cluster:
    """All objects of the emulated cluster and the API verbs on them."""

    def __init__(self, *, history_limit: int = 10_000) -> None:
        self.revision = Revision()
        self.registry = Registry()
        self.history_limit = history_limit
        self._stores: dict[tuple[str, str], ResourceStore] = {}
        self._uids: dict[str, tuple[tuple[str, str], ObjectKey]] = {}
        self._dependents: dict[str, set[tuple[tuple[str, str], ObjectKey]]] = {}
        self.on_change: list[Callable[[], None]] = []  # called when served resources change (discovery)
        for name in _SYSTEM_NAMESPACES:
            self.create(
                self.resource("", "v1", "namespaces"), None, {"metadata": {"name": name}}, WriteOptions()
            )

    # -- lookups --------------------------------------------------------------------------------------------

    def resource(self, group: str, version: str, plural: str) -> ResourceType:
        rtype = self.registry.lookup(group, version, plural)
        if rtype is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", details={})
        return rtype

    def store(self, rtype: ResourceType) -> ResourceStore:
        key = rtype.storage_key
        store = self._stores.get(key)
        if store is None:
            store = self._stores[key] = ResourceStore(self.revision, self.history_limit)
        return store

    def _storage_api_version(self, rtype: ResourceType) -> str:
        if rtype.custom:
            return f"{rtype.group}/{rtype.extra['storage_version']}"
        if rtype.storage_group is not None:
            return "v1"
        return rtype.api_version

    def _list_rules(self, rtype: ResourceType) -> ListRules:
        return SchemaListRules(rtype.openapi_schema) if rtype.custom else _BUILTIN_LIST_RULES

    def _storage_type(self, storage_key: tuple[str, str]) -> ResourceType | None:
        """A resource type that serves a storage (for internal writes such as garbage collection)."""
        candidates = [t for t in self.registry if t.storage_key == storage_key and t.storage_group is None]
        if not candidates:
            return None
        return next(
            (t for t in candidates if t.custom and t.version == t.extra["storage_version"]), candidates[0]
        )

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> StoredObject:
        stored = self.store(rtype).get((namespace or "") if rtype.namespaced else "", name)
        if stored is None:
            raise not_found(rtype.group_resource, name)
        return stored

    def namespace_exists(self, name: str) -> bool:
        return self.store(self.resource("", "v1", "namespaces")).get("", name) is not None

    # -- selectors ------------------------------------------------------------------------------------------

    def object_filter(
        self, rtype: ResourceType, label_selector: str, field_selector: str
    ) -> ObjectFilter | None:
        """A predicate for the selectors of a list or watch (400 for a bad or unsupported selector)."""
        checks: list[ObjectFilter] = []
        if label_selector:
            labels = parse_label_selector(label_selector)
            if not labels.empty:
                checks.append(lambda obj: labels.matches((obj.get("metadata") or {}).get("labels")))
        if field_selector:
            aliases = EVENT_FIELD_LABELS if rtype.storage_key == ("", "events") else None
            fields = parse_field_selector(field_selector, aliases=aliases)
            fields.check_supported(rtype.field_labels)
            if not fields.empty:
                checks.append(fields.matches)
        if not checks:
            return None
        if len(checks) == 1:
            return checks[0]
        return lambda obj: all(check(obj) for check in checks)

    # -- list -----------------------------------------------------------------------------------------------

    def list(self, rtype: ResourceType, namespace: str | None, options: ListOptions) -> ListResult:
        store = self.store(rtype)
        matches = self.object_filter(rtype, options.label_selector, options.field_selector)
        scope = namespace if rtype.namespaced else None
        current = self.revision.current
        after: ObjectKey | None = None
        list_rv = current
        if options.continue_token:
            list_rv, after = self._decode_continue(options.continue_token)
            if list_rv < store.compacted_rv:
                raise expired(
                    "The provided continue parameter is too old to display a consistent list result. You can "
                    "start a new list without the continue parameter, or use the continue token in this response "
                    "to retrieve the remainder of the results. Continuing with the provided token results in an "
                    "inconsistent list - objects that were created, modified, or deleted between the time the "
                    "first chunk was returned and now may show up in the list."
                )
            objects = self._snapshot(store, list_rv) if list_rv < current else None
        else:
            objects = self._objects_at(store, options)
            if objects is not None:
                list_rv = int(options.resource_version)
        if objects is None:
            source = store.scan(scope, after)
        else:
            source = (
                s
                for k, s in sorted(objects.items())
                if (scope is None or k[0] == scope) and (after is None or k > after)
            )
        items: list[StoredObject] = []
        limit = options.limit if options.limit > 0 else None
        token = ""
        remaining: int | None = None
        iterator = iter(source)
        for stored in iterator:
            if matches is not None and not matches(stored.obj):
                continue
            items.append(stored)
            if limit is not None and len(items) >= limit:
                rest = [s for s in iterator if matches is None or matches(s.obj)]
                if rest:
                    token = self._encode_continue(list_rv, items[-1].key)
                    remaining = len(rest)
                break
        return ListResult(items, str(list_rv), token, remaining)

    def _objects_at(self, store: ResourceStore, options: ListOptions) -> dict[ObjectKey, StoredObject] | None:
        """The objects as of an exact older resourceVersion (resourceVersionMatch=Exact), else None (now)."""
        rv_text = options.resource_version
        if not rv_text or rv_text == "0":
            if options.resource_version_match == "Exact":
                raise bad_request('resourceVersionMatch "Exact" is forbidden for resourceVersion "0"')
            return None
        rv = _parse_rv(rv_text)
        if rv > self.revision.current:
            raise ApiError(
                504,
                "Timeout",
                f"Timeout: Too large resource version: {rv}, current: {self.revision.current}",
                details={
                    "causes": [
                        {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                    ],
                    "retryAfterSeconds": 1,
                },
            )
        if options.resource_version_match != "Exact" or rv == self.revision.current:
            return None
        return self._snapshot(store, rv)

    def _snapshot(self, store: ResourceStore, rv: int) -> dict[ObjectKey, StoredObject]:
        try:
            changes = store.changes_since(rv)
        except ResourceVersionTooOld as error:
            raise too_old_resource_version(error.requested, error.oldest) from error
        objects = dict(store.objects)
        for change in reversed(changes):
            key = change.new.key
            if change.type is EventType.ADDED:
                objects.pop(key, None)
            elif change.old is not None:
                objects[key] = change.old
        return objects

    @staticmethod
    def _encode_continue(rv: int, key: ObjectKey) -> str:
        start = f"{key[0]}/{key[1]}" if key[0] else key[1]
        token = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"}, separators=(",", ":"))
        return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")

    @staticmethod
    def _decode_continue(token: str) -> tuple[int, ObjectKey]:
        try:
            raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            rv = int(raw["rv"])
            start = str(raw["start"]).rstrip("\x00")
        except (ValueError, KeyError, TypeError) as error:
            raise bad_request(f"continue key is not valid: {error}") from error
        namespace, _, name = start.rpartition("/")
        return rv, (namespace, name)

    # -- watch ----------------------------------------------------------------------------------------------

    def watch(self, rtype: ResourceType, namespace: str | None, options: WatchOptions) -> Watcher:
        """A subscribed watcher, already holding the initial or replayed events the options ask for."""
        store = self.store(rtype)
        matches = self.object_filter(rtype, options.label_selector, options.field_selector)
        watcher = Watcher(namespace if rtype.namespaced else None, matches)
        rv_text = options.resource_version
        initial = options.send_initial_events
        if initial:
            if options.resource_version_match != "NotOlderThan":
                raise ApiError(
                    422,
                    "Invalid",
                    "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
                    details={"causes": []},
                )
        if initial is None:
            initial = rv_text in ("", "0")
        if initial:
            for stored in store.scan(watcher.namespace):
                if matches is None or matches(stored.obj):
                    watcher.push(EventType.ADDED, stored)
            if options.send_initial_events and options.allow_bookmarks:
                watcher.push(EventType.BOOKMARK, self.bookmark(rtype, initial_events_end=True))
        elif rv_text not in ("", "0"):
            rv = _parse_rv(rv_text)
            try:
                changes = store.changes_since(rv)
            except ResourceVersionTooOld as error:
                watcher.push(
                    EventType.ERROR, _status_object(too_old_resource_version(error.requested, error.oldest))
                )
                watcher.close()
                return watcher
            for change in changes:
                watcher.offer(change)
        store.subscribe(watcher)
        return watcher

    def unwatch(self, rtype: ResourceType, watcher: Watcher) -> None:
        self.store(rtype).unsubscribe(watcher)

    def bookmark(self, rtype: ResourceType, *, initial_events_end: bool = False) -> StoredObject:
        metadata: dict[str, Any] = {"resourceVersion": str(self.revision.current)}
        if initial_events_end:
            metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": metadata}
        return StoredObject(obj, dumps(obj), self.revision.current)

    # -- create ---------------------------------------------------------------------------------------------

    def create(
        self, rtype: ResourceType, namespace: str | None, body: dict[str, Any], options: WriteOptions
    ) -> StoredObject:
        if "create" not in rtype.verbs:
            raise ApiError(
                405, "MethodNotAllowed", f"create is not supported on resources of kind {rtype.plural!r}"
            )
        body = self._check_body(rtype, body)
        if rtype.virtual:
            answer = kinds.review_response(rtype.kind, body)
            answer["apiVersion"], answer["kind"] = rtype.api_version, rtype.kind
            return StoredObject(answer, dumps(answer), self.revision.current)
        metadata = body["metadata"]
        if _stored_rv(metadata.get("resourceVersion")):
            # the apiserver's storage refuses it, as an internal error: the client sent a fetched object back
            raise ApiError(500, "", "resourceVersion should not be set on objects to be created")
        generated = not metadata.get("name") and bool(metadata.get("generateName"))
        if generated:
            metadata["name"] = generate_name(str(metadata["generateName"]))
        name = metadata.get("name") or ""
        namespace = self._check_namespace(rtype, namespace, metadata, creating=True)
        causes = validate_name(name, _NAME_RULES.get((rtype.group, rtype.plural), NameRule.SUBDOMAIN))
        if rtype.has_status:
            body.pop("status", None)
        causes += self._admit_content(rtype, body, None, options, subresource="")
        obj = conversion.to_storage(rtype, body, self._storage_api_version(rtype))
        hook = kinds.HOOKS.get(rtype.storage_key)
        if hook is not None and not causes:
            causes += hook(obj, None)
        if causes:
            raise invalid(rtype.kind, rtype.group, name, causes)
        store = self.store(rtype)
        # Five random characters collide often at scale (about 8 in 15,000 Events under one prefix): since 1.32
        # (RetryGenerateName, GA) the apiserver draws a new name up to 7 more times before answering 409.
        for _ in range(_GENERATE_NAME_RETRIES if generated else 0):
            if store.get(namespace, name) is None:
                break
            name = metadata["name"] = obj["metadata"]["name"] = generate_name(str(metadata["generateName"]))
        if store.get(namespace, name) is not None:
            raise already_exists(rtype.group_resource, name)
        for key in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "selfLink",
            "managedFields",
        ):
            metadata.pop(key, None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now_rfc3339()
        if rtype.tracks_generation:
            metadata["generation"] = 1
        else:
            metadata.pop("generation", None)
        self._ordered_metadata(obj)
        now = now_rfc3339()
        entries = fieldsets.record_update(
            [],
            manager=options.manager,
            subresource="",
            api_version=rtype.api_version,
            now=now,
            before={},
            after=fieldsets.leaves(obj, self._list_rules(rtype), include_status=not rtype.has_status),
        )
        if entries:
            metadata["managedFields"] = fieldsets.render_entries(entries)
        return self._commit(rtype, store, obj, None, options.dry_run)

    # -- update ---------------------------------------------------------------------------------------------

    def update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        options: WriteOptions,
        subresource: str = "",
    ) -> StoredObject:
        old = self.get(rtype, namespace, name)
        body = self._check_body(rtype, body)
        metadata = body["metadata"]
        if metadata.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({metadata.get('name')}) does not match the name on the URL ({name})"
            )
        metadata["name"] = name
        body_rv = metadata.get("resourceVersion")
        if body_rv:
            if str(body_rv) != old.obj["metadata"]["resourceVersion"]:
                raise conflict(rtype.group_resource, name)
        elif rtype.custom:
            raise invalid(
                rtype.kind,
                rtype.group,
                name,
                # the value is a uint64, which Go's %#v prints in hex
                [
                    field_invalid(
                        "metadata.resourceVersion", GoStruct("0x0"), "must be specified for an update"
                    )
                ],
            )
        self._check_namespace(rtype, namespace, metadata, creating=False)
        return self._update_from(rtype, old, body, options, subresource)

    def _update_from(
        self,
        rtype: ResourceType,
        old: StoredObject,
        body: dict[str, Any],
        options: WriteOptions,
        subresource: str,
        *,
        entries: list[fieldsets.ManagerEntry] | None = None,
    ) -> StoredObject:
        """The shared tail of update, patch and apply: `body` is the whole new object in the served shape."""
        served_old = conversion.from_storage(rtype, old.obj)
        if subresource == "status":
            status = body.get("status")
            body = json.loads(dumps(served_old))
            if status is None:
                body.pop("status", None)
            else:
                body["status"] = status
        elif subresource:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", details={})
        elif rtype.has_status:
            if "status" in served_old:
                body["status"] = json.loads(dumps(served_old["status"]))
            else:
                body.pop("status", None)
        name = old.obj["metadata"]["name"]
        causes = self._admit_content(rtype, body, served_old, options, subresource)
        obj = conversion.to_storage(rtype, body, self._storage_api_version(rtype))
        hook = kinds.HOOKS.get(rtype.storage_key)
        if hook is not None and not causes and subresource != "status":
            causes += hook(obj, old.obj)
        metadata = obj["metadata"]
        old_meta = old.obj["metadata"]
        for key in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if key in old_meta:
                metadata[key] = old_meta[key]
            else:
                metadata.pop(key, None)
        metadata["namespace"] = old_meta.get("namespace")
        if metadata["namespace"] is None:
            del metadata["namespace"]
        metadata.pop("selfLink", None)
        if old_meta.get("deletionTimestamp"):
            added = set(metadata.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
            if added:
                causes.append(
                    field_forbidden(
                        "metadata.finalizers", "no new finalizers can be added if the object is being deleted"
                    )
                )
        if causes:
            raise invalid(rtype.kind, rtype.group, name, causes)
        if rtype.tracks_generation and _content(obj, skip_status=rtype.has_status) != _content(
            old.obj, skip_status=rtype.has_status
        ):
            metadata["generation"] = int(old_meta.get("generation", 1)) + 1
        metadata["resourceVersion"] = old_meta["resourceVersion"]
        metadata["managedFields"] = old_meta.get("managedFields")
        if metadata["managedFields"] is None:
            del metadata["managedFields"]
        self._ordered_metadata(obj)
        if obj == old.obj:
            return old  # a no-op write changes nothing, not even the resourceVersion
        if entries is None:
            rules = self._list_rules(rtype)
            include_status = subresource == "status" or not rtype.has_status
            entries = fieldsets.record_update(
                fieldsets.parse_entries(old_meta),
                manager=options.manager,
                subresource=subresource,
                api_version=rtype.api_version,
                now=now_rfc3339(),
                before=fieldsets.leaves(old.obj, rules, include_status=include_status),
                after=fieldsets.leaves(obj, rules, include_status=include_status),
            )
        rendered = fieldsets.render_entries(entries)
        if rendered:
            metadata["managedFields"] = rendered
        else:
            metadata.pop("managedFields", None)
        store = self.store(rtype)
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            if options.dry_run:
                return StoredObject(obj, dumps(obj), old.rv)
            # As the apiserver's store does (deleteWithoutFinalizers): the stored object is deleted as it is, still
            # listing its finalizers; watchers see only DELETED, and that object is the answer.
            return self._remove(rtype, store, old)
        return self._commit(rtype, store, obj, old, options.dry_run)

    # -- patch ----------------------------------------------------------------------------------------------

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: str,
        patch: Any,
        options: WriteOptions,
        subresource: str = "",
    ) -> tuple[StoredObject, bool]:
        """Apply a patch; returns the object and whether it was created (server-side apply of a new object)."""
        accepted = CUSTOM_PATCH_TYPES if rtype.custom else BUILTIN_PATCH_TYPES
        if patch_type not in accepted:
            raise unsupported_media_type(accepted)
        if patch_type == APPLY_PATCH:
            return self._apply(rtype, namespace, name, patch, options, subresource)
        old = self.get(rtype, namespace, name)
        served_old = conversion.from_storage(rtype, old.obj)
        if patch_type == JSON_PATCH:
            if not isinstance(patch, list):
                raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
            patched = json_patch(served_old, patch)
        elif patch_type == MERGE_PATCH:
            if not isinstance(patch, dict):
                raise bad_request(
                    "json: cannot unmarshal array into Go value of type map[string]interface {}"
                )
            patched = merge_patch(served_old, patch)
        else:
            from .strategic import StrategicPatchError, strategic_merge_patch

            try:
                patched = strategic_merge_patch(served_old, patch, self._list_rules(rtype))
            except StrategicPatchError as error:
                raise ApiError(422, "Invalid", str(error), details={}) from error
        if patched is served_old:
            patched = json.loads(dumps(served_old))
        if not isinstance(patched, dict):
            raise unprocessable_patch()
        patched_meta = patched.get("metadata")
        if not isinstance(patched_meta, dict):
            raise unprocessable_patch()
        patched_rv = patched_meta.get("resourceVersion")
        if patched_rv and str(patched_rv) != old.obj["metadata"]["resourceVersion"]:
            raise conflict(rtype.group_resource, name)
        if patched_meta.get("name") != name:
            raise bad_request(
                f"the name of the object ({patched_meta.get('name')}) does not match the name on the URL ({name})"
            )
        return self._update_from(rtype, old, patched, options, subresource), False

    def _apply(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        config: Any,
        options: WriteOptions,
        subresource: str,
    ) -> tuple[StoredObject, bool]:
        """Server-side apply: own exactly the applied fields, drop the ones no longer applied, report conflicts."""
        if not options.field_manager:
            # the apiserver validates the PatchOptions: `PatchOptions.meta.k8s.io "" is invalid: fieldManager: ...`
            raise invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                [Cause(FIELD_VALUE_REQUIRED, "Required value: is required for apply patch", "fieldManager")],
            )
        if not isinstance(config, dict):
            raise bad_request(
                "couldn't get version/kind; json parse error: the applied configuration must be an object"
            )
        if config.get("apiVersion") != rtype.api_version or config.get("kind") != rtype.kind:
            raise bad_request(
                f"the API version in the data ({config.get('apiVersion')}) does not match the expected API version "
                f"({rtype.api_version}) or the kind ({config.get('kind')}) does not match ({rtype.kind})"
            )
        config_meta = config.setdefault("metadata", {})
        if config_meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({config_meta.get('name')}) does not match the name on the URL ({name})"
            )
        config_meta["name"] = name
        store = self.store(rtype)
        key_namespace = (namespace or "") if rtype.namespaced else ""
        old = store.get(key_namespace, name)
        rules = self._list_rules(rtype)
        now = now_rfc3339()
        if old is None:
            if subresource:
                raise not_found(rtype.group_resource, name)
            if rtype.namespaced and namespace:
                config_meta.setdefault("namespace", namespace)
            created = self.create(
                rtype,
                namespace,
                json.loads(dumps(config)),
                WriteOptions(
                    dry_run=True,
                    field_manager=options.field_manager,
                    field_validation=options.field_validation,
                    warnings=options.warnings,
                ),
            )
            obj = created.copy()
            applied = fieldsets.leaves(config, rules, include_status=not rtype.has_status)
            entries = [
                fieldsets.ManagerEntry(
                    options.field_manager, "Apply", rtype.api_version, now, "", set(applied)
                )
            ]
            obj["metadata"]["managedFields"] = fieldsets.render_entries(entries)
            return self._commit(rtype, store, obj, None, options.dry_run), True
        config_rv = config_meta.get("resourceVersion")
        if config_rv and str(config_rv) != old.obj["metadata"]["resourceVersion"]:
            raise conflict(rtype.group_resource, name)
        include_status = subresource == "status" or not rtype.has_status
        served_old = conversion.from_storage(rtype, old.obj)
        entries = fieldsets.parse_entries(old.obj["metadata"])
        live = fieldsets.leaves(served_old, rules, include_status=include_status)
        applied = fieldsets.leaves(config, rules, include_status=include_status)
        conflicts = fieldsets.apply_conflicts(
            entries, manager=options.field_manager, subresource=subresource, live=live, applied=applied
        )
        if conflicts and not options.force:
            raise _apply_conflict_error(rtype, name, conflicts)
        config_for_merge = {k: v for k, v in config.items() if k not in ("apiVersion", "kind")}
        config_for_merge["metadata"] = {
            k: v
            for k, v in config_meta.items()
            if k in ("labels", "annotations", "finalizers", "ownerReferences")
        }
        merged, entries = fieldsets.apply_configuration(
            served_old,
            config_for_merge,
            entries,
            manager=options.field_manager,
            subresource=subresource,
            api_version=rtype.api_version,
            now=now,
            applied=applied,
            force=options.force,
            conflicts=conflicts,
            rules=rules,
        )
        return self._update_from(rtype, old, merged, options, subresource, entries=entries), False

    # -- delete ---------------------------------------------------------------------------------------------

    def delete(
        self, rtype: ResourceType, namespace: str | None, name: str, options: DeleteOptions
    ) -> DeleteResult:
        old = self.get(rtype, namespace, name)
        meta = old.obj["metadata"]
        if options.uid is not None and options.uid != meta.get("uid"):
            raise conflict(
                rtype.group_resource,
                name,
                f"Precondition failed: UID in precondition: {options.uid}, UID in object meta: {meta.get('uid')}",
            )
        if options.resource_version is not None and options.resource_version != meta.get("resourceVersion"):
            raise conflict(
                rtype.group_resource,
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{options.resource_version}, ResourceVersion in meta: {meta.get('resourceVersion')}",
            )
        store = self.store(rtype)
        storage = rtype.storage_key
        if storage == ("", "namespaces"):
            return self._delete_namespace(rtype, store, old, options)
        if storage == ("apiextensions.k8s.io", "customresourcedefinitions") and not options.dry_run:
            self._start_crd_cleanup(old)
            current = store.get("", name)
            if current is None:
                return DeleteResult(old, removed=True)
            old, meta = current, current.obj["metadata"]
        policy = options.propagation_policy
        if policy in ("Foreground", "Orphan") and not options.dry_run and not meta.get("deletionTimestamp"):
            return self._delete_with_gc_finalizer(rtype, store, old, policy)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return DeleteResult(old, removed=False)
            obj = old.copy()
            obj_meta = obj["metadata"]
            obj_meta["deletionTimestamp"] = now_rfc3339()
            obj_meta["deletionGracePeriodSeconds"] = 0
            if "generation" in obj_meta:
                obj_meta["generation"] = int(obj_meta["generation"]) + 1
            if options.dry_run:
                return DeleteResult(StoredObject(obj, dumps(obj), old.rv), removed=False)
            return DeleteResult(store.put(obj, old), removed=False)
        if options.dry_run:
            return DeleteResult(old, removed=True)
        return DeleteResult(
            self._remove(rtype, store, old, orphan=options.propagation_policy == "Orphan"), True
        )

    def _delete_with_gc_finalizer(
        self, rtype: ResourceType, store: ResourceStore, old: StoredObject, policy: str
    ) -> DeleteResult:
        """Foreground and Orphan deletion as the apiserver starts them: the object is marked deleting and held by
        the `foregroundDeletion` or `orphan` finalizer, which is the answer; then the garbage collector's part,
        done at once here: the dependents are deleted (Foreground) or lose their reference to the owner (Orphan),
        and the finalizer is removed, which deletes the object unless other finalizers hold it."""
        finalizer = "foregroundDeletion" if policy == "Foreground" else "orphan"
        obj = old.copy()
        obj_meta = obj["metadata"]
        obj_meta["finalizers"] = [*(f for f in obj_meta.get("finalizers") or () if f != finalizer), finalizer]
        obj_meta["deletionTimestamp"] = now_rfc3339()
        obj_meta["deletionGracePeriodSeconds"] = 0
        if "generation" in obj_meta:
            obj_meta["generation"] = int(obj_meta["generation"]) + 1
        held = store.put(obj, old)
        uid = obj_meta.get("uid", "")
        for storage, key in sorted(self._dependents.get(uid, set())):
            dependent_type, dependent_store = self._storage_type(storage), self._stores.get(storage)
            stored = dependent_store.get(*key) if dependent_store else None
            if dependent_type is None or stored is None:
                continue
            if policy == "Foreground":
                with contextlib.suppress(ApiError):
                    self.delete(
                        dependent_type, key[0] or None, key[1], DeleteOptions(propagation_policy=policy)
                    )
                continue
            freed = stored.copy()
            refs = [r for r in freed["metadata"].get("ownerReferences") or () if r.get("uid") != uid]
            if refs:
                freed["metadata"]["ownerReferences"] = refs
            else:
                freed["metadata"].pop("ownerReferences", None)
            self._commit(dependent_type, dependent_store, freed, stored, False)
        current = store.get(*held.key)
        if current is None:
            return DeleteResult(held, removed=False)
        rest = [f for f in current.obj["metadata"].get("finalizers") or () if f != finalizer]
        if not rest:  # deleted as stored, like the removal of any last finalizer (see _update_from)
            self._remove(rtype, store, current, orphan=policy == "Orphan")
        else:
            released = current.copy()
            released["metadata"]["finalizers"] = rest
            store.put(released, current)
        return DeleteResult(held, removed=False)

    def delete_collection(
        self, rtype: ResourceType, namespace: str | None, list_options: ListOptions, options: DeleteOptions
    ) -> list[StoredObject]:
        listed = self.list(
            rtype, namespace, ListOptions(list_options.label_selector, list_options.field_selector)
        )
        results = []
        for stored in listed.items:
            try:
                results.append(self.delete(rtype, stored.key[0] or None, stored.key[1], options).stored)
            except ApiError as error:
                if error.code != 404:
                    raise
        return results

    # -- commit, removal and their consequences -------------------------------------------------------------

    def _commit(
        self,
        rtype: ResourceType,
        store: ResourceStore,
        obj: dict[str, Any],
        old: StoredObject | None,
        dry_run: bool,
    ) -> StoredObject:
        if dry_run:
            if old is not None:
                obj["metadata"]["resourceVersion"] = old.obj["metadata"]["resourceVersion"]
            return StoredObject(obj, dumps(obj), old.rv if old else self.revision.current)
        stored = store.put(obj, old)
        self._index(rtype.storage_key, stored, old)
        if rtype.storage_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._serve_crd(stored)
        return stored

    def _index(self, storage: tuple[str, str], stored: StoredObject | None, old: StoredObject | None) -> None:
        """Keep the uid and owner indexes that garbage collection uses."""
        before = old.obj["metadata"] if old else {}
        after = stored.obj["metadata"] if stored else {}
        key = (stored or old).key  # type: ignore[union-attr]
        if stored is not None:
            self._uids[after["uid"]] = (storage, key)
        elif before.get("uid"):
            self._uids.pop(before["uid"], None)
        old_owners = {ref.get("uid") for ref in before.get("ownerReferences") or () if isinstance(ref, dict)}
        new_owners = {ref.get("uid") for ref in after.get("ownerReferences") or () if isinstance(ref, dict)}
        for uid in old_owners - new_owners:
            dependents = self._dependents.get(uid)
            if dependents is not None:
                dependents.discard((storage, key))
                if not dependents:
                    del self._dependents[uid]
        for uid in new_owners - old_owners:
            if uid:
                self._dependents.setdefault(uid, set()).add((storage, key))

    def _remove(
        self, rtype: ResourceType, store: ResourceStore, old: StoredObject, *, orphan: bool = False
    ) -> StoredObject:
        final = store.remove(old)
        self._index(rtype.storage_key, None, old)
        meta = old.obj["metadata"]
        uid = meta.get("uid", "")
        dependents = self._dependents.pop(uid, set())
        if not orphan:
            self._collect_garbage(dependents)
        if rtype.storage_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._unserve_crd(old)
        namespace = meta.get("namespace")
        if namespace:
            self._maybe_finish_namespace(namespace)
        crd_name = rtype.extra.get("crd")
        if crd_name:
            self._maybe_finish_crd(crd_name, rtype)
        return final

    def _collect_garbage(self, dependents: set[tuple[tuple[str, str], ObjectKey]]) -> None:
        """Background cascading deletion: a dependent goes once none of its owners exists."""
        for storage, key in sorted(dependents):
            rtype = self._storage_type(storage)
            store = self._stores.get(storage)
            stored = store.get(*key) if store else None
            if rtype is None or stored is None:
                continue
            owners = [ref.get("uid") for ref in stored.obj["metadata"].get("ownerReferences") or ()]
            if any(uid in self._uids for uid in owners):
                continue
            try:
                self.delete(rtype, key[0] or None, key[1], DeleteOptions())
            except ApiError:
                continue

    # -- namespaces -----------------------------------------------------------------------------------------

    def _check_namespace(
        self, rtype: ResourceType, namespace: str | None, metadata: dict[str, Any], *, creating: bool
    ) -> str:
        if not rtype.namespaced:
            metadata.pop("namespace", None)
            return ""
        body_namespace = metadata.get("namespace")
        if namespace is None:
            if not body_namespace:
                raise bad_request("the server could not find the requested resource")
            namespace = body_namespace
        if body_namespace and body_namespace != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        metadata["namespace"] = namespace
        if creating:
            ns = self.store(self.resource("", "v1", "namespaces")).get("", namespace)
            if ns is None:
                raise not_found("namespaces", namespace)
            if ns.obj["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f"{rtype.group_resource} {json.dumps(metadata.get('name', ''))} is forbidden: unable to create "
                    f"new content in namespace {namespace} because it is being terminated",
                    details={
                        "name": metadata.get("name", ""),
                        "group": rtype.group,
                        "kind": rtype.plural,
                        "causes": [
                            {
                                "reason": "NamespaceTerminating",
                                "message": f"namespace {namespace} is being terminated",
                                "field": "metadata.namespace",
                            }
                        ],
                    },
                )
        return namespace

    def _delete_namespace(
        self, rtype: ResourceType, store: ResourceStore, old: StoredObject, options: DeleteOptions
    ) -> DeleteResult:
        """Namespaces terminate: their content is deleted, then they go (the namespace controller's work)."""
        name = old.obj["metadata"]["name"]
        if name in _UNDELETABLE_NAMESPACES:
            raise ApiError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                details={"name": name, "kind": "namespaces"},
            )
        if options.dry_run:
            return DeleteResult(old, removed=False)
        current = old
        if not old.obj["metadata"].get("deletionTimestamp"):
            obj = old.copy()
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            obj["status"] = {"phase": "Terminating"}
            current = store.put(obj, old)
        for storage, contents in list(self._stores.items()):
            content_type = self._storage_type(storage)
            if content_type is None or not content_type.namespaced:
                continue
            for stored in list(contents.scan(name)):
                try:
                    self.delete(content_type, name, stored.key[1], DeleteOptions())
                except ApiError:
                    continue
        finished = self._maybe_finish_namespace(name)
        return DeleteResult(finished or current, removed=finished is not None)

    def _maybe_finish_namespace(self, name: str) -> StoredObject | None:
        ns_store = self._stores.get(("", "namespaces"))
        ns = ns_store.get("", name) if ns_store else None
        if (
            ns is None
            or not ns.obj["metadata"].get("deletionTimestamp")
            or ns.obj["metadata"].get("finalizers")
        ):
            return None
        for storage, contents in self._stores.items():
            if storage != ("", "namespaces") and next(iter(contents.scan(name)), None) is not None:
                return None
        final = ns_store.remove(ns)  # type: ignore[union-attr]
        self._index(("", "namespaces"), None, ns)
        return final

    # -- CRDs -----------------------------------------------------------------------------------------------

    def _serve_crd(self, stored: StoredObject) -> None:
        crd = stored.obj
        types, preferred = resource_types(crd)
        self.registry.install_crd(crd["metadata"]["name"], types, preferred)
        self._changed()

    def _unserve_crd(self, old: StoredObject) -> None:
        crd_name = old.obj["metadata"]["name"]
        types = self.registry.crd_types(crd_name)
        self.registry.remove_crd(crd_name)
        for rtype in types[:1]:
            store = self._stores.pop(rtype.storage_key, None)
            if store is not None:
                store.close_watchers()
        self._changed()

    def _start_crd_cleanup(self, crd: StoredObject) -> None:
        """Deleting a CRD deletes its custom resources first (the cleanup finalizer holds the CRD until then)."""
        types = self.registry.crd_types(crd.obj["metadata"]["name"])
        store = self._stores.get(("apiextensions.k8s.io", "customresourcedefinitions"))
        if store is None:
            return
        if not crd.obj["metadata"].get("deletionTimestamp"):
            obj = crd.copy()
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            obj["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1
            mark_terminating(obj)
            crd = store.put(obj, crd)
        if types:
            rtype = types[0]
            for stored in list(self.store(rtype).scan(None)):
                try:
                    self.delete(rtype, stored.key[0] or None, stored.key[1], DeleteOptions())
                except ApiError:
                    continue
        self._maybe_finish_crd(crd.obj["metadata"]["name"], types[0] if types else None)

    def _maybe_finish_crd(self, crd_name: str, rtype: ResourceType | None) -> None:
        crd_store = self._stores.get(("apiextensions.k8s.io", "customresourcedefinitions"))
        crd = crd_store.get("", crd_name) if crd_store else None
        if crd is None or not crd.obj["metadata"].get("deletionTimestamp"):
            return
        if rtype is not None and self.store(rtype).objects:
            return
        finalizers = [f for f in crd.obj["metadata"].get("finalizers") or () if f != CLEANUP_FINALIZER]
        obj = crd.copy()
        crd_type = self.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        if finalizers:
            obj["metadata"]["finalizers"] = finalizers
            crd_store.put(obj, crd)  # type: ignore[union-attr]
            return
        obj["metadata"].pop("finalizers", None)
        updated = crd_store.put(obj, crd)  # type: ignore[union-attr]
        self._remove(crd_type, crd_store, updated)  # type: ignore[arg-type]

    def _changed(self) -> None:
        for callback in list(self.on_change):
            callback()

    # -- admission helpers ----------------------------------------------------------------------------------

    def _check_body(self, rtype: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the object provided is not a JSON object")
        api_version = body.get("apiVersion")
        kind = body.get("kind")
        if api_version and api_version != rtype.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rtype.api_version})"
            )
        if kind and kind != rtype.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
            )
        body["apiVersion"], body["kind"] = rtype.api_version, rtype.kind
        metadata = body.get("metadata")
        if metadata is None:
            body["metadata"] = {}
        elif not isinstance(metadata, dict):
            raise bad_request("metadata must be an object")
        return body

    def _admit_content(
        self,
        rtype: ResourceType,
        body: dict[str, Any],
        served_old: dict[str, Any] | None,
        options: WriteOptions,
        subresource: str,
    ) -> list[Cause]:
        """Metadata checks, and for custom resources: prune, default and validate against the schema."""
        causes = validate_metadata(body["metadata"])
        if not rtype.custom or rtype.schema is None:
            return causes
        unknown = rtype.schema.normalize(body)
        if unknown and options.field_validation != "Ignore":
            if options.field_validation == "Strict":
                listed = ", ".join(f'unknown field "{path}"' for path in unknown)
                raise bad_request(
                    f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                    f"strict decoding error: {listed}"
                )
            options.warnings.extend(f'unknown field "{path}"' for path in unknown)
        if subresource == "status" and served_old is not None:
            return list(rtype.schema.validate_status(body, served_old, extra_causes=causes))
        return list(rtype.schema.validate(body, served_old, extra_causes=causes))

    @staticmethod
    def _ordered_metadata(obj: dict[str, Any]) -> None:
        """apiVersion, kind and metadata first, in the apiserver's field order, for readable output."""
        head = {k: obj.pop(k) for k in ("apiVersion", "kind", "metadata") if k in obj}
        rest = dict(obj)
        obj.clear()
        obj.update(head)
        obj.update(rest)


def _stored_rv(value: Any) -> bool:
    """Whether a resourceVersion names a stored version (the apiserver ignores "", "0" and unparsable ones)."""
    return isinstance(value, str | int) and str(value).isdigit() and int(value) != 0


def _parse_rv(text: str) -> int:
    try:
        rv = int(text)
    except ValueError as error:
        raise bad_request(f"invalid resource version: {text!r}") from error
    if rv < 0:
        raise bad_request(f"invalid resource version: {text!r}")
    return rv


def _status_object(error: ApiError) -> StoredObject:
    status = error.to_status()
    return StoredObject(status, dumps(status), 0)


def _apply_conflict_error(rtype: ResourceType, name: str, conflicts: list[fieldsets.Conflict]) -> ApiError:
    count = len(conflicts)
    lines = [
        f'conflict with "{c.manager}" using {c.api_version}: {fieldsets.describe(c.path)}' for c in conflicts
    ]
    message = f"Apply failed with {count} conflict{'s' if count != 1 else ''}: " + (
        lines[0] if count == 1 else "\n" + "\n".join(f"- {line}" for line in lines)
    )
    return ApiError(
        409,
        "Conflict",
        message,
        details={
            "name": name,
            "group": rtype.group,
            "kind": rtype.plural,
            "causes": [
                {
                    "reason": "FieldManagerConflict",
                    "message": f'conflict with "{c.manager}" using {c.api_version}',
                    "field": fieldsets.describe(c.path),
                }
                for c in conflicts
            ],
        },
    )
