"""How smooth a stream was: its gaps between tokens, folded into a few figures. No I/O.

A reader of a stream feels three things, and each has its figure:

- **evenness** — ``smoothness``, ``1 / (1 + cv)`` where ``cv`` is the gaps' coefficient of
  variation (their standard deviation over their mean): 1 for tokens at a perfectly even pace,
  about 0.5 for gaps as irregular as a Poisson process's, towards 0 for bursts and stalls;
- **bursts** — ``burst_share``, the share of tokens that came within ``BURST_GAP`` of the one
  before (in the same write, or nearly: they reach the screen at once);
- **stalls** — ``stalls``, the gaps longer than ``STALL_FACTOR`` times the stream's mean gap
  and at least ``STALL_FLOOR`` (a pause a reader notices);

and ``gap_ratio``, the gaps' p99 over their p50 (None while the p50 is within ``BURST_GAP``,
as in a bursty stream, where the ratio says nothing). Computed once per view of a session
from the gaps its ``StreamClock`` keeps, never per chunk.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections import deque
from collections.abc import Sequence
from typing import Any

#: tokens closer than this to the one before arrived together (seconds)
BURST_GAP = 0.002
#: a gap this many times the mean gap, and at least ``STALL_FLOOR`` seconds, is a stall
STALL_FACTOR = 5.0
STALL_FLOOR = 0.1


def smoothness(ordered: Sequence[float]) -> dict[str, Any]:
    """The figures of a stream's gaps (seconds), given in ascending order; ``None`` for each
    where there are fewer than two gaps. (Sums and binary searches: about 35 µs for a
    thousand gaps.)"""
    n = len(ordered)
    if n < 2:
        return {"smoothness": None, "gap_ratio": None, "burst_share": None, "stalls": None}
    mean = sum(ordered) / n
    if mean <= 0:
        return {"smoothness": 0.0, "gap_ratio": None, "burst_share": 1.0, "stalls": 0}
    variance = max(0.0, sum(map(operator.mul, ordered, ordered)) / n - mean * mean)
    cv = math.sqrt(variance) / mean
    threshold = max(STALL_FACTOR * mean, STALL_FLOOR)
    stalls = n - bisect.bisect_right(ordered, threshold)
    bursts = bisect.bisect_left(ordered, BURST_GAP)
    p50, p99 = (ordered[max(1, math.ceil(q / 100 * n)) - 1] for q in (50, 99))
    return {
        "smoothness": round(1 / (1 + cv), 4),
        "gap_ratio": round(p99 / p50, 3) if p50 >= BURST_GAP else None,
        "burst_share": round(bursts / n, 4),
        "stalls": stalls,
    }


class SmoothnessBook:
    """Recent streams' figures by provider and model, for the operations center: the last
    ``KEEP`` of each of at most ``GROUPS`` routes (the oldest route is forgotten first).
    ``summary()`` is computed again only after a stream was added."""

    GROUPS = 64
    KEEP = 200

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], deque[tuple[float, float, int]]] = {}
        self._summary: list[dict[str, Any]] | None = []

    def add(self, provider: str, model: str, telemetry: dict[str, Any]) -> None:
        score = telemetry.get("smoothness")
        if score is None:
            return
        key = (provider, model)
        kept = self._groups.pop(key, None)  # (re-inserted: the newest route is last)
        if kept is None:
            kept = deque(maxlen=self.KEEP)
            if len(self._groups) >= self.GROUPS:
                del self._groups[next(iter(self._groups))]
        kept.append((score, telemetry.get("burst_share") or 0.0, telemetry.get("stalls") or 0))
        self._groups[key] = kept
        self._summary = None

    def summary(self) -> list[dict[str, Any]]:
        """Each route's sessions, median smoothness and burst share, and stalls, smoothest
        first."""
        if self._summary is None:
            rows: list[dict[str, Any]] = []
            for (provider, model), kept in self._groups.items():
                n = len(kept)
                rows.append(
                    {
                        "provider": provider,
                        "model": model,
                        "sessions": n,
                        "smoothness": sorted(s for s, _, _ in kept)[(n - 1) // 2],
                        "burst_share": sorted(b for _, b, _ in kept)[(n - 1) // 2],
                        "stalls": sum(st for _, _, st in kept),
                    }
                )
            rows.sort(key=lambda r: (-r["smoothness"], r["provider"], r["model"]))
            self._summary = rows
        return self._summary


def merge_summaries(summaries: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Several nodes' ``SmoothnessBook.summary()`` as one: per route, the sessions and stalls
    summed, the medians averaged weighted by sessions."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for summary in summaries:
        for row in summary:
            key = (row["provider"], row["model"])
            into = merged.get(key)
            if into is None:
                merged[key] = dict(row)
                continue
            n, m = into["sessions"], row["sessions"]
            for name in ("smoothness", "burst_share"):
                into[name] = round((into[name] * n + row[name] * m) / (n + m), 4)
            into["sessions"] = n + m
            into["stalls"] += row["stalls"]
    return sorted(merged.values(), key=lambda r: (-r["smoothness"], r["provider"], r["model"]))
