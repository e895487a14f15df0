"""The emulator's notion of time: jobs progress against a clock that tests can replace or move forward.

Progress is computed lazily from the clock when a job or server is read, so no background task is needed and a
`FakeClock` makes lifecycle tests instant. The signature date check never uses this clock: it always compares
``X-Sdk-Date`` with the real time (plus the configured ``clock_offset_seconds``), as the gateway does, so moving
the job clock forward never breaks signing.

The cloud's time (``EmulatorState.now()``) is this clock plus ``clock_offset_seconds``: every time the cloud
stamps (jobs, servers, the action log, the ``Date`` header) is in it.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...


class SystemClock:
    """Real time plus an offset that the admin API can move forward (``POST /_emulator/clock/advance``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class FakeClock:
    """A clock that only moves when told to (for unit tests)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def iso_millis(timestamp: float) -> str:
    """Job times: ISO-8601 UTC with milliseconds, e.g. ``2016-04-25T20:04:47.591Z``."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_seconds(timestamp: float) -> str:
    """Server times (``created``, ``updated``): ISO-8601 UTC to the second, e.g. ``2018-09-15T06:58:06Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """Read an ISO-8601 time (``Z`` or an offset; naive means UTC) into epoch seconds."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso_action(timestamp: float, resolution: str = "second") -> str:
    """Action log times (Nova's ``os-instance-actions``): UTC, no zone, microseconds, e.g.
    ``2014-12-16T10:58:14.000000``. ``resolution="second"`` truncates to the whole second (as every example in
    the docs shows, and as a database column without fractional seconds stores it)."""
    if resolution == "second":
        timestamp = math.floor(timestamp)
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def http_date(timestamp: float) -> str:
    """The ``Date`` header (RFC 7231 IMF-fixdate), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(timestamp, usegmt=True)
