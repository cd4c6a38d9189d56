"""Per-key rate windows: requests and tokens in the last 60 seconds, in one-second buckets.

A window holds at most 61 buckets whatever the load, so a key's limits take a few hundred
bytes. ``retry_after`` says when enough of the window will have passed for the next request:
the ``Retry-After`` of a 429.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW = 60.0


class RateWindow:
    __slots__ = ("_buckets", "_total")

    def __init__(self) -> None:
        #: [second, amount], oldest first
        self._buckets: deque[list[int]] = deque()
        self._total = 0

    def _expire(self, now: float) -> None:
        cutoff = int(now) - int(WINDOW)
        buckets = self._buckets
        while buckets and buckets[0][0] <= cutoff:
            self._total -= buckets.popleft()[1]

    def used(self, now: float) -> int:
        self._expire(now)
        return self._total

    def add(self, now: float, amount: int = 1) -> None:
        if amount <= 0:
            return
        self._expire(now)
        second = int(now)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += amount
        else:
            buckets.append([second, amount])
        self._total += amount

    def retry_after(self, now: float, limit: int) -> float:
        """Seconds until the window holds less than ``limit`` (at least 1)."""
        self._expire(now)
        excess = self._total - limit + 1
        for second, amount in self._buckets:
            excess -= amount
            if excess <= 0:
                return float(max(1, math.ceil(second + WINDOW - now)))
        return 1.0
