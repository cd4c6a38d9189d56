"""What the recorded streams say: token arrivals, time to first token, inter-chunk gaps, the
time each delta spent in flight, percentiles, and the stall rule. No I/O.

A token is a text delta the mock sent, found by its marker (``frames.MARKER``): its index and
the mock's send time. Definitions used throughout (times from one clock, ``CLOCK_MONOTONIC``,
shared by the mock and the load generator):

- time to first token: first token's arrival minus the moment the client began to connect;
- gap: arrival of a token minus arrival of the one before it, in the same stream;
- jitter: a gap minus the gap between the same two tokens' send times, i.e. what the path
  added to (or took from) the spacing the upstream produced;
- in flight: a token's arrival minus its send time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sluice.bench.frames import MARKER, MARKER_PERIOD_US
from sluice.stats import percentiles


@dataclass(slots=True)
class StreamRecord:
    """What the client saw of one stream; filled by ``client.StreamClient``."""

    #: ``perf_counter()`` just before connecting
    started: float
    status: int = 0
    #: every SSE frame with a ``data`` field, with the time its last byte arrived
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    #: the body ended as HTTP says it should (the last chunk, or the end of a close-delimited body)
    complete: bool = False
    error: str | None = None
    body_bytes: int = 0
    ended: float = 0.0


@dataclass(slots=True)
class StreamTiming:
    """One stream's tokens: index, arrival, and time in flight, in order of arrival."""

    expected: int
    indices: list[int]
    arrivals: list[float]
    in_flight: list[float]
    ttft: float | None
    data_frames: int
    complete: bool
    error: str | None

    @property
    def missing(self) -> int:
        """Expected tokens that never arrived (all of them for a failed stream)."""
        if self.error is not None:
            return self.expected
        return self.expected - len(set(self.indices) & set(range(self.expected)))

    @property
    def in_order(self) -> bool:
        return all(a < b for a, b in zip(self.indices, self.indices[1:], strict=False))

    @property
    def lost(self) -> int:
        """Chunks lost: missing tokens, plus one when the stream did not end properly (its
        closing frames are chunks too) or its tokens came out of order."""
        return (
            self.missing
            + (0 if self.complete and self.error is None else 1)
            + (0 if self.in_order else 1)
        )

    @property
    def gaps(self) -> list[float]:
        a = self.arrivals
        return [a[i] - a[i - 1] for i in range(1, len(a))]

    @property
    def jitter(self) -> list[float]:
        f = self.in_flight
        return [f[i] - f[i - 1] for i in range(1, len(f))]


def analyse(record: StreamRecord, expected: int) -> StreamTiming:
    """Read the markers out of one stream's frames."""
    indices: list[int] = []
    arrivals: list[float] = []
    in_flight: list[float] = []
    period = MARKER_PERIOD_US
    for arrived, frame in record.frames:
        now_us = int(arrived * 1_000_000)
        for match in MARKER.finditer(frame):
            sent_us = now_us - ((now_us - int(match[2])) % period)
            indices.append(int(match[1]))
            arrivals.append(arrived)
            in_flight.append(arrived - sent_us / 1_000_000)
    ok = record.error is None and record.status == 200
    return StreamTiming(
        expected=expected,
        indices=indices,
        arrivals=arrivals,
        in_flight=in_flight,
        ttft=arrivals[0] - record.started if arrivals else None,
        data_frames=len(record.frames),
        complete=record.complete,
        error=None if ok else (record.error or f"HTTP {record.status}"),
    )


@dataclass(frozen=True, slots=True)
class Distribution:
    """A sample's size and its nearest-rank p50, p99 and maximum (``None`` when empty)."""

    n: int
    p50: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(0, None, None, None)
        p50, p99 = percentiles(values, 50, 99)
        return cls(len(values), p50, p99, max(values))

    def minus(self, floor: Distribution) -> Added:
        """This distribution's percentiles less the floor's: what this path adds."""
        return Added(_less(self.p50, floor.p50), _less(self.p99, floor.p99))


@dataclass(frozen=True, slots=True)
class Added:
    p50: float | None
    p99: float | None


def _less(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


@dataclass(slots=True)
class StreamSetSummary:
    """All streams of one measurement (a probe, or one level of the sweep) together."""

    streams: int
    failed: int
    lost: int
    data_frames: int
    tokens: int
    ttft: Distribution
    gap: Distribution
    jitter: Distribution
    in_flight: Distribution
    errors: dict[str, int]


def summarize(timings: Iterable[StreamTiming]) -> StreamSetSummary:
    streams = failed = lost = frames = tokens = 0
    ttfts: list[float] = []
    gaps: list[float] = []
    jitter: list[float] = []
    in_flight: list[float] = []
    errors: Counter[str] = Counter()
    for t in timings:
        streams += 1
        lost += t.lost
        frames += t.data_frames
        tokens += len(t.indices)
        if t.error is not None:
            failed += 1
            errors[_error_kind(t.error)] += 1
        elif not t.complete:
            errors["incomplete"] += 1
        if t.ttft is not None:
            ttfts.append(t.ttft)
        gaps.extend(t.gaps)
        jitter.extend(t.jitter)
        in_flight.extend(t.in_flight)
    return StreamSetSummary(
        streams=streams,
        failed=failed,
        lost=lost,
        data_frames=frames,
        tokens=tokens,
        ttft=Distribution.of(ttfts),
        gap=Distribution.of(gaps),
        jitter=Distribution.of(jitter),
        in_flight=Distribution.of(in_flight),
        errors=dict(errors.most_common(5)),
    )


def _error_kind(error: str) -> str:
    # "HTTP 502: {...}" -> "HTTP 502"; "connect: [Errno 24] ..." -> "connect: [Errno 24]"
    head = error.split(":", 1)[0]
    if head == "connect" and "]" in error:
        return error[: error.index("]") + 1]
    return head[:60]


@dataclass(frozen=True, slots=True)
class StallRule:
    """A stream set is sustained when no chunk was lost, no gap exceeded ``factor`` times the
    pace (at 20 ms: a gap of exactly 40 ms passes, 40.1 ms fails), and no stream waited
    longer than that for its first chunk. The wait for the first chunk counts as a gap: a
    target that carries its open streams on time by leaving new ones waiting (in its accept
    queue, say) does not carry that many streams."""

    pace: float
    factor: float = 2.0

    @property
    def max_gap(self) -> float:
        return self.factor * self.pace

    def holds(self, summary: StreamSetSummary) -> bool:
        if summary.streams == 0 or summary.lost or summary.failed:
            return False
        # 1 ns of slack absorbs the float rounding of "exactly twice the pace".
        limit = self.max_gap + 1e-9
        return all(worst is None or worst <= limit for worst in (summary.gap.max, summary.ttft.max))


def sustained(levels: Sequence[tuple[int, bool]]) -> int:
    """The highest level that held, with every lower level holding too (0 if the first failed).

    ``levels`` are (concurrency, held) pairs in any order.
    """
    best = 0
    for level, held in sorted(levels):
        if not held:
            break
        best = level
    return best
