"""Stream timing measured at the gateway: first token, per-token time, gaps, finalisation."""

from __future__ import annotations

from array import array
from typing import Any

from sluice.session.smoothness import smoothness
from sluice.stats import percentiles


class StreamClock:
    """Timestamps and counters for one stream; the hot path calls ``delta(now)`` only.

    All times are ``time.monotonic()`` seconds. Gaps are kept as doubles in an array (8 bytes
    each) for exact percentiles at the end.
    """

    __slots__ = (
        "blocked",
        "ended",
        "finalized",
        "first_event",
        "first_token",
        "gaps",
        "last_delta",
        "started",
        "upstream_open",
    )

    def __init__(self, started: float) -> None:
        self.started = started
        self.upstream_open: float | None = None
        self.first_event: float | None = None
        self.first_token: float | None = None
        self.last_delta: float | None = None
        self.ended: float | None = None
        self.finalized: float | None = None
        #: seconds the relay spent waiting for a slow reader
        self.blocked = 0.0
        self.gaps = array("d")

    def delta(self, now: float, answer: bool) -> None:
        """A content delta arrived; ``answer`` is false for reasoning."""
        last = self.last_delta
        if last is None:
            self.first_event = now
        else:
            self.gaps.append(now - last)
        if answer and self.first_token is None:
            self.first_token = now
        self.last_delta = now

    def mark(self) -> tuple[int, float | None]:
        """A point in the stream (before an upstream attempt), for ``since``: nothing on the
        hot path keeps per-attempt figures."""
        return len(self.gaps), self.last_delta

    def since(self, mark: tuple[int, float | None]) -> tuple[int, float | None, float | None]:
        """The content deltas after ``mark``: how many, when the first and the last came.
        The first is the delta before the mark plus the gap recorded next, which is its own
        ``now`` (or, with none before the mark, the stream's first event)."""
        start, before = mark
        gaps, last = self.gaps, self.last_delta
        if before is None:
            if last is None:
                return 0, None, None
            return 1 + len(gaps) - start, self.first_event, last
        count = len(gaps) - start
        if count <= 0:
            return 0, None, None
        return count, before + gaps[start], last

    def backpressure(self) -> str:
        if self.ended is None or self.upstream_open is None:
            span = 0.0 if self.last_delta is None else self.last_delta - self.started
        else:
            span = self.ended - self.upstream_open
        share = self.blocked / span if span > 0 else 0.0
        return "low" if share < 0.1 else "medium" if share < 0.5 else "high"

    def pace(self, output_tokens: int) -> tuple[float | None, float | None]:
        """Time per output token (ms) after the first, and tokens per second; cheap enough for
        a live view. Output tokens count reasoning too (providers bill them as output), so the
        generation they spread over starts at the first delta of any kind."""
        first, last = self.first_event, self.last_delta
        if first is None or last is None or self.first_token is None or output_tokens < 2:
            return None, None
        generation = last - first
        if generation <= 0:
            return None, None
        return generation / (output_tokens - 1) * 1000, (output_tokens - 1) / generation

    def summary(self, output_tokens: int) -> dict[str, Any]:
        def since(t: float | None, origin: float | None) -> float | None:
            return None if t is None or origin is None else round((t - origin) * 1000, 3)

        tpot, rate = self.pace(output_tokens)
        ordered = sorted(self.gaps)
        p50, p99 = percentiles(ordered, 50, 99, ordered=True)
        return {
            "ttft_ms": since(self.first_token, self.started),
            "time_to_first_event_ms": since(self.first_event, self.started),
            "upstream_connect_ms": since(self.upstream_open, self.started),
            "tpot_ms": None if tpot is None else round(tpot, 3),
            "gap_p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "gap_p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "token_rate": None if rate is None else round(rate, 2),
            "duration_ms": since(self.ended, self.started),
            "finalization_ms": since(self.finalized, self.ended),
            "backpressure": self.backpressure(),
            "blocked_ms": round(self.blocked * 1000, 3),
        } | smoothness(ordered)
