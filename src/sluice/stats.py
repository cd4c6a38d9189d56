"""Small order statistics shared by the telemetry and the benchmark."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (``q`` in 0..100) of ``values``; ``None`` when empty.

    Nearest rank never invents a value that was not observed, which is what a p99 of
    inter-token gaps should report.
    """
    return percentiles(values, q)[0]


def percentiles(values: Sequence[float], *qs: float, ordered: bool = False) -> list[float | None]:
    """Several nearest-rank percentiles of ``values``, sorting them once (not at all when
    they are ``ordered`` already)."""
    if any(not 0 <= q <= 100 for q in qs):
        raise ValueError("q must be within 0..100")
    if not values:
        return [None] * len(qs)
    ordered_values = values if ordered else sorted(values)
    n = len(ordered_values)
    return [ordered_values[max(1, math.ceil(q / 100 * n)) - 1] for q in qs]
