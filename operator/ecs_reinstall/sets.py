"""EcsReinstallSet: one reconcile loop per set, on the leader only (the I/O around rollout.py's decisions).

Each pass re-reads the set, freezes the selection of a new revision (one server list call per thousand servers),
reads the children, lets `rollout.decide` say what the status becomes and whom to admit, writes that status
conditionally on the version it read (a conflict means someone else moved the set: read again), and only then
creates the admitted servers' children. A pass runs when the set or one of its children changes, and at the
latest every `RECHECK_SECONDS` (soaks end, and a missed watch event must not stall a rollout).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from . import reconcile as rc
from . import rollout, tenancy
from . import spec as spec_model
from .cloud.errors import CloudError, TerminalError
from .cloud.models import CloudTarget, Server
from .inputs import MissingInput, resolve_target
from .kube import GROUP, SET_KIND, VERSION, Conflict, KubeError, NotFound

log = logging.getLogger("ecs_reinstall.sets")

RECHECK_SECONDS = 30.0
# Children's watch events come by the thousand in a large rollout; each pass re-lists every child (measured: 42 ms
# of CPU per pass at 1000 children, 82% of the operator's CPU when every event started a pass). Events within this
# time share one pass; a slot waits at most this long longer to be reused.
MIN_PASS_INTERVAL = 0.5
CREATE_CONCURRENCY = 16
# The selection and the per-server lists live in the set's status (etcd keeps objects under 1.5 MB): about 140
# bytes per server, so 5000 servers stay near 700 KB. Larger fleets are split into several sets (by tags).
MAX_SELECTION = 5000  # children created at once (a first wave of 100 took 4.4 s one by one)
PLACEHOLDER_SERVER = "00000000-0000-4000-8000-000000000000"  # to check a template as an EcsReinstall spec


class SetRunner:
    def __init__(self, deps, namespace: str, name: str, uid: str):
        self.deps = deps
        self.namespace, self.name, self.uid = namespace, name, uid
        self._wake = asyncio.Event()
        self.log = logging.LoggerAdapter(log, {"object": {"namespace": namespace, "name": name, "uid": uid}})

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._wake.clear()
            try:
                wait = await self._pass()
            except NotFound:
                return  # the set is gone; its children go with it (ownerReferences)
            except (KubeError, CloudError, MissingInput, spec_model.InvalidSpec, tenancy.Forbidden) as exc:
                self.log.warning("set pass failed (%s); trying again", exc)
                wait = 5.0
            except Exception:  # a bug must not stop the rollout for good: say so, and try again
                self.log.exception("set pass failed; trying again")
                wait = 5.0
            if wait is None:
                return
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                except TimeoutError:
                    pass
            await asyncio.sleep(max(0.0, started + MIN_PASS_INTERVAL - loop.time()))

    # --- one pass ---------------------------------------------------------------------------------------------

    async def _pass(self) -> float | None:
        """One decision and its writes; the seconds until the next pass (0: at once; None: the set is gone)."""
        kube = self.deps.kube
        body = await kube.get_set(self.namespace, self.name)
        meta = body.get("metadata") or {}
        if meta.get("uid") != self.uid or meta.get("deletionTimestamp"):
            return None
        status = body.get("status") or {}
        try:
            spec = rollout.parse_set_spec(body.get("spec") or {})
            template = spec_model.parse_spec({**spec.template, "serverId": PLACEHOLDER_SERVER})
        except (rollout.InvalidSet, spec_model.InvalidSpec) as exc:
            return await self._halt(body, "InvalidSpec", f"{exc}: fix the set's spec", RECHECK_SECONDS)

        if status.get("revision") != spec.revision or "selection" not in status:
            return await self._start_revision(body, spec, template)
        if spec.dry_run:
            return await self._plan(body, spec, template)

        round_ = str(int(status.get("round") or 0))
        children: dict[str, rollout.Child] = {}
        for item in await kube.list_children(self.namespace, self.uid):
            child = rollout.parse_child(item)
            if child is not None and child.round == round_:
                children[child.server_id] = child
        acknowledged = rollout.acknowledged(
            (meta.get("annotations") or {}).get(rollout.ACKNOWLEDGED_ANNOTATION),
            int(status.get("round") or 0),
        )
        now = self.deps.now()
        decision = rollout.decide(spec, status, children, now=now, acknowledged=acknowledged)
        if decision.soak_checks:
            results = await self._soak_results(template, decision.soak_checks)
            decision = rollout.decide(
                spec, status, children, now=now, acknowledged=acknowledged, soak_results=results
            )
        if decision.patch or status.get("observedGeneration") != meta.get("generation"):
            patch = {**decision.patch, "observedGeneration": meta.get("generation")}
            try:
                body = await kube.patch_set_status(
                    self.namespace, self.name, patch, resource_version=meta["resourceVersion"], uid=self.uid
                )
            except Conflict:
                return 0  # someone else moved it: decide again from what is there now
            for kind, reason, message in decision.events:
                self.deps.post_event(body, rc.Event(kind, reason, message))
        # Admitted (written above, or by an earlier pass that stopped before creating): create what is missing.
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(server: str) -> None:
            async with gate:
                await self._create_child(body, spec, server)

        await asyncio.gather(*(create(server) for server in (*decision.admit, *decision.create)))
        return decision.wake_in if decision.wake_in is not None else RECHECK_SECONDS

    async def _start_revision(
        self, body: Mapping, spec: rollout.SetSpec, template: spec_model.ReinstallSpec
    ) -> float:
        """Freezes the selection of spec.revision as a new round, once every child that may have sent a request has
        finished (so that none counts in no cap, and a server is never reinstalled by two rounds at once). Children
        that never sent anything are deleted: they would otherwise send the old round's request later."""
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        unfinished = []
        for item in await self.deps.kube.list_children(self.namespace, self.uid):
            child = rollout.parse_child(item)
            if child is None or child.phase in ("Succeeded", "Failed"):
                continue
            if child.holds_request:
                unfinished.append(child)
                continue
            child_meta = item.get("metadata") or {}
            try:
                await self.deps.kube.delete_reinstall(
                    self.namespace,
                    child_meta["name"],
                    uid=child_meta["uid"],
                    resource_version=child_meta["resourceVersion"],
                )
            except (NotFound, Conflict):
                return 0  # it moved (sent its request?) or went: look again
        if unfinished:
            message = (
                f"Revision {spec.revision} starts once the {len(unfinished)} reinstalls of the previous revision "
                "in flight have finished"
            )
            return await self._note(body, rollout.Phase.PROGRESSING, "Progressing", message, RECHECK_SECONDS)
        owner_key = self.deps.settings.owner_tag_key
        if owner_key and owner_key in (spec.tags or {}):
            message = (
                f"spec.selector.tags may not use the owner tag key {owner_key!r}: a set selects only servers "
                "tagged for its own namespace anyway"
            )
            return await self._halt(body, "Forbidden", message, RECHECK_SECONDS)
        try:
            target = await self._target(template)
            found = await self.deps.cloud.list_servers(target, tags=spec.tags)
        except tenancy.Forbidden as exc:
            return await self._halt(body, "Forbidden", _for_a_set(str(exc)), RECHECK_SECONDS)
        except (MissingInput, spec_model.InvalidSpec) as exc:
            return await self._halt(body, "WaitingForInput", f"Waiting: {_for_a_set(str(exc))}", 5.0)
        # Only this namespace's servers (owner tag): the others are never shown, not even their IDs or zones.
        owned = {server.id: server for server in found if _owned(self.deps.settings, self.namespace, server)}
        not_owned = len(found) - len(owned)
        if spec.server_ids is not None:
            servers = [(s, owned[s].zone or "") for s in spec.server_ids if s in owned]
            missing = [s for s in spec.server_ids if s not in owned]  # not found, or not this namespace's
            not_owned = 0
        else:
            servers = [(s.id, s.zone or "") for s in sorted(owned.values(), key=lambda s: s.id)]
            missing = []
        if len(servers) > MAX_SELECTION:
            message = (
                f"The selection has {len(servers)} servers; a set takes at most {MAX_SELECTION} (its status lists "
                "them): split the fleet into several sets, for example by one more tag"
            )
            return await self._halt(body, "InvalidSpec", message, RECHECK_SECONDS)
        patch = rollout.new_revision(
            spec,
            self.namespace,
            self.name,
            servers,
            missing,
            self.deps.now(),
            previous_round=int(status.get("round") or 0),
            not_owned=not_owned,
        )
        patch["observedGeneration"] = meta.get("generation")
        patch["conditions"] = rollout.merge_conditions(
            (body.get("status") or {}).get("conditions"),
            [
                {"type": "Ready", "status": "False", "reason": "Progressing", "message": ""},
                {
                    "type": "Reconciling",
                    "status": "True",
                    "reason": "Progressing",
                    "message": patch["message"],
                },
                {"type": "Stalled", "status": "False", "reason": "Progressing", "message": ""},
            ],
            self.deps.now(),
        )
        try:
            updated = await self.deps.kube.patch_set_status(
                self.namespace, self.name, patch, resource_version=meta["resourceVersion"], uid=self.uid
            )
        except Conflict:
            return 0
        note = f"; not found, or not tagged for this namespace: {', '.join(missing[:10])}" if missing else ""
        self.deps.post_event(
            updated, rc.Event("Warning" if missing else "Normal", "RevisionStarted", patch["message"] + note)
        )
        return 0

    async def _plan(self, body: Mapping, spec: rollout.SetSpec, template: spec_model.ReinstallSpec) -> float:
        """spec.dryRun: every selected server checked from one list call; no child, no request."""
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        try:
            target = await self._target(template)
            found = {s.id: s for s in await self.deps.cloud.list_servers(target, tags=spec.tags)}
        except tenancy.Forbidden as exc:
            return await self._halt(body, "Forbidden", str(exc), RECHECK_SECONDS)
        except (MissingInput, spec_model.InvalidSpec) as exc:
            return await self._halt(body, "WaitingForInput", f"Waiting: {exc}", 5.0)
        tag = status.get("revisionTag") or rollout.revision_tag(self.namespace, self.name, spec.revision)
        blockers, already = [], 0
        selection = status.get("selection") or []
        for entry in selection:
            server = found.get(entry["id"])
            reason = _blocker(server, template, self.deps.settings, self.namespace)
            if reason is None and server is not None and server.tag(tag["key"]) == tag["value"]:
                already += 1
            elif reason is not None:
                blockers.append((entry["id"], reason))
        plan = rollout.plan(spec, selection, blockers, already)
        message = (
            f"Dry run of revision {spec.revision}: {plan['ready']} of {plan['servers']} servers would be "
            f"reinstalled in {plan['waves']} waves, {len(blockers)} blocked, {already} already at the revision; "
            "nothing was sent"
        )
        patch = {"plan": plan, "phase": rollout.Phase.PLANNED, "message": message}
        if all(status.get(k) == v for k, v in patch.items()):
            return RECHECK_SECONDS
        patch["observedGeneration"] = meta.get("generation")
        try:
            updated = await self.deps.kube.patch_set_status(
                self.namespace, self.name, patch, resource_version=meta["resourceVersion"], uid=self.uid
            )
        except Conflict:
            return 0
        self.deps.post_event(updated, rc.Event("Normal", "Planned", message))
        return RECHECK_SECONDS

    # --- helpers ------------------------------------------------------------------------------------------

    async def _target(self, template: spec_model.ReinstallSpec) -> CloudTarget:
        await tenancy.check_default_credentials(self.deps.kube, self.deps.settings, self.namespace, template)
        return await resolve_target(self.deps.kube, self.deps.settings, self.namespace, template)

    async def _soak_results(
        self, template: spec_model.ReinstallSpec, servers: tuple[str, ...]
    ) -> dict[str, bool]:
        """After its soak, is each server ACTIVE? One read each (a server that cannot be read is asked again)."""
        target = await self._target(template)
        results = {}
        for server in servers:
            try:
                results[server] = (await self.deps.cloud.get_server(target, server)).status == "ACTIVE"
            except TerminalError as exc:
                if exc.http_status == 404:
                    results[server] = False  # gone during its soak
            except CloudError:
                pass  # asked again at the next pass; the others go on
        return results

    async def _create_child(self, body: Mapping, spec: rollout.SetSpec, server: str) -> None:
        status = body.get("status") or {}
        tag = status.get("revisionTag") or rollout.revision_tag(self.namespace, self.name, spec.revision)
        child = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EcsReinstall",
            "metadata": {
                "name": rollout.child_name(self.name, self.uid, int(status.get("round") or 0), server),
                "labels": {
                    rollout.GROUP_LABEL: self.uid,
                    rollout.ROUND_LABEL: str(status.get("round") or 0),
                    rollout.REVISION_LABEL: rollout.revision_hash(spec.revision),
                },
                "annotations": {rollout.SERVER_ANNOTATION: server},
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": SET_KIND,
                        "name": self.name,
                        "uid": self.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": {**spec.template, "serverId": server, "revisionTag": dict(tag)},
        }
        try:
            await self.deps.kube.create_reinstall(self.namespace, child)
        except Conflict:
            pass  # it exists (an earlier pass, or a deleted set's child still finishing): the slot stays taken

    async def _note(self, body: Mapping, phase: str, reason: str, message: str, wait: float) -> float:
        status = body.get("status") or {}
        if status.get("phase") == phase and status.get("message") == message:
            return wait
        meta = body.get("metadata") or {}
        patch = {"phase": phase, "message": message, "observedGeneration": meta.get("generation")}
        try:
            await self.deps.kube.patch_set_status(
                self.namespace, self.name, patch, resource_version=meta["resourceVersion"], uid=self.uid
            )
        except Conflict:
            return 0
        return wait

    async def _halt(self, body: Mapping, reason: str, message: str, wait: float) -> float:
        """The set cannot go on as it is (its spec, a refused tenancy rule, a missing Secret): Stalled, saying why."""
        status = body.get("status") or {}
        if status.get("message") == message:
            return wait
        meta = body.get("metadata") or {}
        stalled = reason != "WaitingForInput"
        conditions = rollout.merge_conditions(
            status.get("conditions"),
            [
                {"type": "Ready", "status": "False", "reason": reason, "message": ""},
                {
                    "type": "Reconciling",
                    "status": "False" if stalled else "True",
                    "reason": reason,
                    "message": message,
                },
                {
                    "type": "Stalled",
                    "status": "True" if stalled else "False",
                    "reason": reason,
                    "message": message,
                },
            ],
            self.deps.now(),
        )
        patch = {
            "phase": rollout.Phase.STALLED if stalled else rollout.Phase.RESOLVING,
            "message": message,
            "conditions": conditions,
            "observedGeneration": meta.get("generation"),
        }
        try:
            updated = await self.deps.kube.patch_set_status(
                self.namespace, self.name, patch, resource_version=meta["resourceVersion"], uid=self.uid
            )
        except Conflict:
            return 0
        self.deps.post_event(updated, rc.Event("Warning", reason, message))
        return wait


def _for_a_set(message: str) -> str:
    """An EcsReinstall's message, with its fields named as a set's template holds them."""
    return message.replace("spec.", "spec.template.")


def _owned(settings, namespace: str, server: Server) -> bool:
    try:
        tenancy.check_owner(settings, namespace, server)
    except tenancy.Forbidden:
        return False
    return True


def _blocker(
    server: Server | None, template: spec_model.ReinstallSpec, settings, namespace: str
) -> str | None:
    """Why a dry run says this server would not go through (None: it would)."""
    if server is None:
        return "not found in the cloud"
    try:
        tenancy.check_owner(settings, namespace, server)
    except tenancy.Forbidden:
        return f"not tagged for namespace {namespace} (owner tag)"
    if server.busy:
        return f"busy ({server.status}{', ' + server.task_state if server.task_state else ''})"
    blocker = rc.server_blocker(server, stop_server=template.stop_server)
    return blocker[1] if blocker else None


class SetSupervisor:
    """One SetRunner per set while this process leads; fed by the sets' and the children's watch events."""

    def __init__(self, deps, namespaces: tuple[str, ...] = ()):
        self.deps = deps
        self.namespaces = namespaces
        self.leading = False
        self.served = True  # False once the API says the set CRD is not applied
        self._runners: dict[str, tuple[SetRunner, asyncio.Task]] = {}

    async def lead(self) -> None:
        self.leading = True
        try:
            bodies = await self.deps.kube.list_sets(self.namespaces)
        except NotFound:
            self.served = False
            log.info("EcsReinstallSet is not served (its CRD is not applied): sets are off")
            return
        except KubeError as exc:
            log.warning("could not list EcsReinstallSets (%s): they start with their next event", exc)
            return
        for body in bodies:
            self.observe("ADDED", body)

    def observe(self, event_type: str | None, body: Mapping) -> None:
        meta = body.get("metadata") or {}
        uid = meta.get("uid")
        if not uid:
            return
        if event_type == "DELETED":
            entry = self._runners.pop(uid, None)
            if entry is not None:
                entry[1].cancel()
            return
        if not self.leading:
            return
        entry = self._runners.get(uid)
        if entry is not None and not entry[1].done():
            entry[0].poke()
            return
        runner = SetRunner(self.deps, meta["namespace"], meta["name"], uid)
        task = asyncio.create_task(runner.run(), name=f"set {meta['namespace']}/{meta['name']}")
        self._runners[uid] = (runner, task)

    def child_changed(self, body: Mapping) -> None:
        """A child moved: its set decides again (finished children free their slots)."""
        labels = (body.get("metadata") or {}).get("labels") or {}
        uid = labels.get(rollout.GROUP_LABEL)
        entry = self._runners.get(uid) if uid else None
        if entry is not None:
            entry[0].poke()

    def step_down(self) -> None:
        self.leading = False
        for _, task in self._runners.values():
            task.cancel()
        self._runners.clear()

    async def stop(self) -> None:
        tasks = [task for _, task in self._runners.values()]
        self.step_down()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
