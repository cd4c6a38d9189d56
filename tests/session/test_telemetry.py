"""Stream timing: first token, per-token time, gaps and rate from known timestamps."""

from __future__ import annotations

import pytest

from sluice.session.telemetry import StreamClock
from sluice.stats import percentile


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summary_from_a_known_timeline() -> None:
    clock = StreamClock(started=100.0)
    clock.upstream_open = 100.05
    clock.delta(100.2, answer=False)  # reasoning first: visible, but not the first token
    for i in range(5):
        clock.delta(100.5 + i * 0.1, answer=True)
    clock.ended = 101.0
    clock.finalized = 101.002
    # Six output tokens: one of reasoning, five of answer. TTFT waits for the answer; TPOT and
    # the rate spread all six over the generation, which began with the reasoning.
    s = clock.summary(output_tokens=6)
    assert s["time_to_first_event_ms"] == pytest.approx(200)
    assert s["ttft_ms"] == pytest.approx(500)
    assert s["tpot_ms"] == pytest.approx(140)
    assert s["token_rate"] == pytest.approx(5 / 0.7, abs=0.01)
    assert s["gap_p50_ms"] == pytest.approx(100)
    assert s["gap_p99_ms"] == pytest.approx(300)
    assert s["duration_ms"] == pytest.approx(1000)
    assert s["finalization_ms"] == pytest.approx(2)
    assert s["backpressure"] == "low"


def test_a_stream_without_tokens_has_no_rates() -> None:
    clock = StreamClock(started=0.0)
    s = clock.summary(output_tokens=0)
    assert s["ttft_ms"] is None and s["tpot_ms"] is None and s["token_rate"] is None
    assert s["gap_p99_ms"] is None


def test_backpressure_level_follows_the_share_of_time_blocked() -> None:
    clock = StreamClock(started=0.0)
    clock.upstream_open, clock.ended = 0.0, 10.0
    assert clock.backpressure() == "low"
    clock.blocked = 2.0
    assert clock.backpressure() == "medium"
    clock.blocked = 6.0
    assert clock.backpressure() == "high"


def test_the_deltas_since_a_mark_are_one_attempts_without_counting_per_chunk() -> None:
    clock = StreamClock(started=10.0)
    first = clock.mark()
    assert clock.since(first) == (0, None, None)  # nothing yet
    for at in (10.5, 10.6, 10.8):
        clock.delta(at, answer=True)
    assert clock.since(first) == (3, 10.5, 10.8)
    second = clock.mark()  # a second attempt (an agent's next step, a whole-turn retry)
    assert clock.since(second) == (0, None, None)
    clock.delta(12.0, answer=False)
    clock.delta(12.25, answer=True)
    count, began, last = clock.since(second)
    assert (count, last) == (2, 12.25) and began == pytest.approx(12.0)
    assert clock.since(first)[0] == 5  # the first mark spans both
