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

import math
from collections.abc import Sequence
from typing import Any

#: tokens closer than this to the one before arrived together (seconds)
BURST_GAP = 0.002
#: a gap this many times the mean gap, and at least ``STALL_FLOOR`` seconds, is a stall
STALL_FACTOR = 5.0
STALL_FLOOR = 0.1


def smoothness(gaps: Sequence[float], p50: float | None, p99: float | None) -> dict[str, Any]:
    """The figures of a stream's ``gaps`` (seconds), given their p50 and p99; ``None`` for
    each where there are fewer than two gaps."""
    n = len(gaps)
    if n < 2:
        return {"smoothness": None, "gap_ratio": None, "burst_share": None, "stalls": None}
    mean = math.fsum(gaps) / n
    if mean <= 0:
        return {"smoothness": 0.0, "gap_ratio": None, "burst_share": 1.0, "stalls": 0}
    variance = math.fsum((g - mean) ** 2 for g in gaps) / n
    cv = math.sqrt(variance) / mean
    threshold = max(STALL_FACTOR * mean, STALL_FLOOR)
    stalls = sum(1 for g in gaps if g > threshold)
    bursts = sum(1 for g in gaps if g < BURST_GAP)
    ratio = None
    if p50 is not None and p99 is not None and p50 >= BURST_GAP:
        ratio = round(p99 / p50, 3)
    return {
        "smoothness": round(1 / (1 + cv), 4),
        "gap_ratio": ratio,
        "burst_share": round(bursts / n, 4),
        "stalls": stalls,
    }
