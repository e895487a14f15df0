"""Small statistics helpers for the reports (no numpy needed)."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least `fraction` of the values at or below it)."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary(values: Iterable[float], digits: int = 3) -> dict:
    """n, min, p50, p95, p99, max and mean of `values`, rounded."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def r(value: float | None) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "n": len(ordered),
        "min": r(ordered[0]),
        "p50": r(percentile(ordered, 0.50)),
        "p95": r(percentile(ordered, 0.95)),
        "p99": r(percentile(ordered, 0.99)),
        "max": r(ordered[-1]),
        "mean": r(sum(ordered) / len(ordered)),
    }


def ratio(ours: float | None, theirs: float | None, digits: int = 2) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, digits)
