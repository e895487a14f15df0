"""The status conditions, kept consistent in one place (kstatus vocabulary: Ready, Reconciling, Stalled).

Helm 4, Flux and Argo CD read these: `Reconciling=True` means work in progress, `Stalled=True` means it will not
progress without a change, `Ready=True` means done and healthy. `Submitted` says whether the cloud accepted the
reinstall. Every condition carries the generation it was computed for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
SUBMITTED = "Submitted"
TYPES = (READY, RECONCILING, STALLED, SUBMITTED)


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None is "Unknown"
    reason: str
    message: str = ""

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


def merge(
    existing: Iterable[Mapping] | None, wanted: Iterable[Condition], *, generation: int, now: str
) -> list[dict]:
    """The full conditions list: `wanted` replaces same-typed entries; lastTransitionTime moves only when the
    status changes, as the Kubernetes API conventions require."""
    old = {c.get("type"): c for c in (existing or ()) if isinstance(c, Mapping)}
    result = []
    for cond in wanted:
        previous = old.pop(cond.type, None)
        changed = previous is None or previous.get("status") != cond.status_text
        result.append(
            {
                "type": cond.type,
                "status": cond.status_text,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": now if changed else previous.get("lastTransitionTime", now),
                "observedGeneration": generation,
            }
        )
    result.extend(dict(c) for t, c in old.items() if t not in TYPES)  # keep conditions others may have set
    return result


def find(conditions: Iterable[Mapping] | None, type_: str) -> Mapping | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)
