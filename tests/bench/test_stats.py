"""The harness's statistics: percentiles, markers, gaps, loss and the stall rule."""

from __future__ import annotations

import pytest

from sluice.bench.frames import MARKER_PERIOD_US, marker
from sluice.bench.stats import (
    Distribution,
    StallRule,
    StreamRecord,
    StreamSetSummary,
    StreamTiming,
    analyse,
    summarize,
    sustained,
)

RULE = StallRule(pace=0.020)


def timing(arrivals: list[float], *, expected: int | None = None, **kw: object) -> StreamTiming:
    n = len(arrivals)
    fields: dict[str, object] = {
        "expected": n if expected is None else expected,
        "indices": list(range(n)),
        "arrivals": arrivals,
        "in_flight": [0.0] * n,
        "ttft": arrivals[0] if arrivals else None,
        "data_frames": n + 3,
        "complete": True,
        "error": None,
    }
    fields.update(kw)
    return StreamTiming(**fields)  # type: ignore[arg-type]


def one(t: StreamTiming) -> StreamSetSummary:
    return summarize([t])


# -- percentiles --------------------------------------------------------------------------------


def test_distribution_uses_nearest_rank() -> None:
    d = Distribution.of([float(v) for v in range(1, 101)])
    assert (d.n, d.p50, d.p99, d.max) == (100, 50.0, 99.0, 100.0)


def test_distribution_p99_of_few_values_is_the_maximum() -> None:
    d = Distribution.of([3.0, 1.0, 2.0])
    assert (d.p50, d.p99, d.max) == (2.0, 3.0, 3.0)


def test_distribution_of_nothing_is_empty() -> None:
    assert Distribution.of([]) == Distribution(0, None, None, None)


def test_added_is_target_minus_floor_per_percentile() -> None:
    target = Distribution.of([0.002] * 50 + [0.010] * 50)
    floor = Distribution.of([0.001] * 100)
    added = target.minus(floor)
    assert added.p50 == pytest.approx(0.001)
    assert added.p99 == pytest.approx(0.009)
    assert target.minus(Distribution.of([])).p99 is None


# -- reading markers ----------------------------------------------------------------------------


def frame(index: int, sent_us: int) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"' + marker(index, sent_us) + b'"}}]}'


def test_analyse_reads_index_send_time_and_arrival() -> None:
    record = StreamRecord(started=9.990, status=200, complete=True)
    record.frames = [
        (10.000, b'data: {"choices":[{"delta":{"role":"assistant"}}]}'),
        (10.001, frame(0, 10_000_500)),
        (10.021, frame(1, 10_020_000)),
    ]
    t = analyse(record, expected=2)
    assert t.indices == [0, 1]
    assert t.ttft == pytest.approx(0.011)
    assert t.in_flight == pytest.approx([0.0005, 0.001])
    assert t.gaps == pytest.approx([0.020])
    assert t.jitter == pytest.approx([0.0005])
    assert t.data_frames == 3
    assert t.lost == 0


def test_analyse_unwraps_a_send_time_past_the_marker_period() -> None:
    # The mock sent just before its microsecond counter wrapped; the client reads just after.
    sent_us = 5 * MARKER_PERIOD_US - 100
    arrived = (5 * MARKER_PERIOD_US + 200) / 1e6
    record = StreamRecord(started=arrived - 0.01, status=200, complete=True)
    record.frames = [(arrived, frame(0, sent_us))]
    t = analyse(record, expected=1)
    assert t.in_flight == pytest.approx([300e-6], abs=2e-6)


def test_a_token_coalesced_with_another_arrives_with_its_frame() -> None:
    record = StreamRecord(started=0.0, status=200, complete=True)
    record.frames = [(1.0, frame(0, 999_000) + b"\n" + frame(1, 999_500))]
    t = analyse(record, expected=2)
    assert t.indices == [0, 1]
    assert t.arrivals == [1.0, 1.0]
    assert t.gaps == [0.0]


def test_a_failed_stream_loses_every_token() -> None:
    record = StreamRecord(started=0.0, status=502, error="HTTP 502: bad gateway")
    t = analyse(record, expected=64)
    assert t.error == "HTTP 502: bad gateway"
    assert t.missing == 64
    assert t.lost == 65


# -- loss -----------------------------------------------------------------------------------------


def test_a_missing_token_is_lost() -> None:
    t = timing([0.0, 0.02, 0.04], expected=4)
    assert t.missing == 1
    assert t.lost == 1


def test_a_stream_without_its_end_loses_a_chunk() -> None:
    assert timing([0.0, 0.02], complete=False).lost == 1


def test_tokens_out_of_order_count_as_lost() -> None:
    t = timing([0.0, 0.02, 0.04], indices=[0, 2, 1])
    assert t.missing == 0
    assert not t.in_order
    assert t.lost == 1


def test_summary_counts_streams_failures_and_errors() -> None:
    ok = timing([0.0, 0.02])
    failed = timing([], expected=2, error="connect: [Errno 111] Connection refused", ttft=None)
    s = summarize([ok, failed])
    assert (s.streams, s.failed, s.lost) == (2, 1, 3)
    assert s.errors == {"connect: [Errno 111]": 1}
    assert s.gap.n == 1


# -- the stall rule -------------------------------------------------------------------------------


def test_a_gap_of_exactly_twice_the_pace_holds() -> None:
    assert RULE.max_gap == 0.040
    assert RULE.holds(one(timing([1.0, 1.0 + 0.040], ttft=0.001)))


def test_a_gap_past_twice_the_pace_fails() -> None:
    assert not RULE.holds(one(timing([1.0, 1.0 + 0.0401])))


def test_a_lost_chunk_fails_even_when_every_gap_is_on_time() -> None:
    assert not RULE.holds(one(timing([0.0, 0.02, 0.04], expected=4)))


def test_a_failed_stream_fails_the_set() -> None:
    ok = timing([0.0, 0.02])
    failed = timing([], expected=2, error="timeout", ttft=None)
    assert not RULE.holds(summarize([ok, failed]))


def test_no_streams_is_not_sustained() -> None:
    assert not RULE.holds(summarize([]))


def test_the_rule_takes_the_worst_gap_of_all_streams() -> None:
    steady = timing([0.0, 0.02, 0.04, 0.06])
    hiccup = timing([0.0, 0.02, 0.07, 0.09])
    assert RULE.holds(summarize([steady]))
    assert not RULE.holds(summarize([steady, hiccup]))


def test_a_first_chunk_later_than_twice_the_pace_fails_the_set() -> None:
    """Open streams on time while a new one waits (in an accept queue, say) is not held."""
    on_time = timing([0.0, 0.02, 0.04], ttft=0.040)
    assert RULE.holds(summarize([on_time]))
    late_start = timing([0.0, 0.02, 0.04], ttft=0.0401)
    assert not RULE.holds(summarize([on_time, late_start]))


def test_sustained_is_the_highest_level_with_every_lower_level_held() -> None:
    assert sustained([(50, True), (100, True), (200, False), (300, True)]) == 100
    assert sustained([(200, True), (50, True), (100, True)]) == 200
    assert sustained([(50, False), (100, True)]) == 0
    assert sustained([]) == 0
