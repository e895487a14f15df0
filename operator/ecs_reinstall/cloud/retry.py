"""How long to wait before repeating a cloud call: exponential backoff with full jitter, never shorter than
the cloud's `Retry-After`.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads the retries of many callers that
failed together, so they do not come back together. A `Retry-After` the cloud sends is a floor; one longer
than `cap` is not waited out inside a call: the error goes back to the caller, who can reschedule itself.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5  # ceiling of the first retry's delay, seconds
    cap: float = 30.0  # largest delay waited inside one call, seconds
    draw: Callable[[], float] = field(default=random.random, repr=False, compare=False)  # uniform in [0, 1)

    def __post_init__(self) -> None:
        if not self.base > 0:
            raise ValueError(f"backoff base must be > 0 seconds, got {self.base!r}")
        if not self.cap >= self.base:
            raise ValueError(f"backoff cap ({self.cap!r} s) must be >= backoff base ({self.base!r} s)")

    def ceiling(self, retry: int) -> float:
        """The largest delay before retry number `retry` (0 for the first retry)."""
        return min(self.cap, self.base * 2 ** min(retry, 62))

    def delay(self, retry: int, *, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number `retry`, or None when the cloud asks for more than `cap`."""
        if retry_after is not None and retry_after > self.cap:
            return None
        jittered = self.draw() * self.ceiling(retry)
        return max(jittered, retry_after or 0.0)
