"""The cloud's clock, estimated from the `Date` header of its answers, so that our attempt times can be compared
with the times the cloud writes (the action log's `start_time`) without trusting that both clocks agree.

A `Date` header says the cloud's time to the second, at some moment between sending the request and reading the
answer. Each answer therefore bounds the offset (cloud - local): at least `date - received`, at most
`date + 1 - sent`. The bounds of every answer are intersected, so the estimate tightens with each call; when they
stop overlapping (a clock was stepped), the newest answer starts afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime


@dataclass
class _Bounds:
    low: float
    high: float


class CloudClock:
    def __init__(self) -> None:
        self._bounds: dict[str, _Bounds] = {}  # per endpoint

    def observe(self, endpoint: str, date_header: str | None, sent: float, received: float) -> None:
        """`sent` and `received`: local wall-clock times (epoch seconds) around the exchange."""
        if not date_header:
            return
        try:
            date = parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        low, high = date - received, date + 1.0 - sent
        bounds = self._bounds.get(endpoint)
        if bounds is None or max(bounds.low, low) > min(bounds.high, high):
            self._bounds[endpoint] = _Bounds(low, high)
        else:
            bounds.low, bounds.high = max(bounds.low, low), min(bounds.high, high)

    def offset(self, endpoint: str) -> tuple[float, float] | None:
        """(estimate, uncertainty) of cloud minus local time in seconds, or None before any answer."""
        bounds = self._bounds.get(endpoint)
        if bounds is None:
            return None
        return (bounds.low + bounds.high) / 2, (bounds.high - bounds.low) / 2

    def to_cloud(self, endpoint: str, moment: datetime) -> tuple[datetime, float] | None:
        """A local moment in the cloud's clock, with its uncertainty in seconds (None before any answer)."""
        estimate = self.offset(endpoint)
        if estimate is None:
            return None
        return moment + timedelta(seconds=estimate[0]), estimate[1]
