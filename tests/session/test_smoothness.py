"""The smoothness figures of a stream's gaps, and what the gateway makes of real streams: the
simulator's steady and bursty scenarios, in records, ``/metrics`` and ``sluice bench
smoothness``."""

from __future__ import annotations

import json
import random
from pathlib import Path

from sluice.bench.smoothness import compare
from sluice.bench.smoothness import main as smoothness_main
from sluice.session.smoothness import SmoothnessBook, merge_summaries, smoothness
from tests.conftest import running_gateway
from tests.conftest import test_settings as gateway_settings


def figures(gaps: list[float]) -> dict[str, object]:
    return smoothness(sorted(gaps))


def test_an_even_pace_is_perfectly_smooth() -> None:
    f = figures([0.02] * 100)
    assert f == {"smoothness": 1.0, "gap_ratio": 1.0, "burst_share": 0.0, "stalls": 0}


def test_bursts_score_low_and_count_as_bursts() -> None:
    # five tokens in one write, then a pause: as the simulator's bursty scenario sends them
    gaps = ([0.0] * 4 + [0.1]) * 40
    f = figures(gaps)
    assert f["burst_share"] == 0.8 and f["gap_ratio"] is None
    assert isinstance(f["smoothness"], float) and f["smoothness"] < 0.4
    assert f["stalls"] == 0  # a regular pause is no stall: 5 times the mean gap is 0.1 s


def test_a_long_pause_is_a_stall() -> None:
    gaps = [0.02] * 200
    gaps[100] = 3.0
    f = figures(gaps)
    assert f["stalls"] == 1
    assert isinstance(f["smoothness"], float) and f["smoothness"] < 0.3
    assert f["gap_ratio"] == 1.0  # the p99 does not see one gap in 200


def test_jitter_lowers_smoothness_in_order() -> None:
    rng = random.Random(7)
    scores = []
    for spread in (0.0, 0.2, 0.6):
        gaps = [0.02 * (1 + rng.uniform(-spread, spread)) for _ in range(500)]
        score = figures(gaps)["smoothness"]
        assert isinstance(score, float)
        scores.append(score)
    assert scores[0] == 1.0 and scores[0] > scores[1] > scores[2]


def test_too_few_gaps_give_no_figure() -> None:
    assert figures([0.1]) == {
        "smoothness": None,
        "gap_ratio": None,
        "burst_share": None,
        "stalls": None,
    }


async def test_steady_and_bursty_streams_differ_in_records_and_metrics(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, token_rate=100.0, jitter=0.1, output_tokens=60)
    async with running_gateway(settings) as gw:
        telemetry = {}
        for scenario in ("support", "bursty"):
            response = await gw.http.post(
                "/v1/chat/completions",
                json={"model": f"sim/{scenario}", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.status_code == 200, response.text
            record = await gw.final_record(response.headers["x-sluice-session-id"])
            telemetry[scenario] = record["telemetry"]
        metrics = (await gw.http.get("/metrics")).text
    steady, bursty = telemetry["support"], telemetry["bursty"]
    # bounds that hold on a busy machine, where a late write may join two steady tokens
    assert steady["smoothness"] > bursty["smoothness"]
    assert steady["burst_share"] < 0.5 < bursty["burst_share"]
    assert 'sluice_stream_smoothness_count{model="support",provider="sim"} 1.0' in metrics
    assert 'sluice_stream_smoothness_count{model="bursty",provider="sim"} 1.0' in metrics
    assert 'sluice_stream_burst_tokens_total{model="bursty",provider="sim"}' in metrics


def test_compare_groups_by_provider_and_model_smoothest_first() -> None:
    records = [
        {"provider": "a", "model": "m", "telemetry": {"smoothness": 0.3, "stalls": 2}},
        {"provider": "b", "model": "m", "telemetry": {"smoothness": 0.9, "burst_share": 0.0}},
        {"provider": "b", "model": "m", "telemetry": {"smoothness": 0.7, "gap_ratio": 1.5}},
        {"provider": "c", "model": "m", "telemetry": {}},  # no timing: left out
    ]
    rows = compare(records)
    assert [(r["provider"], r["sessions"]) for r in rows] == [("b", 2), ("a", 1)]
    assert rows[0]["smoothness_p50"] == 0.7 and rows[0]["smoothness_p90"] == 0.9
    assert rows[1]["stalls_per_session"] == 2.0


def test_bench_smoothness_records_a_sample_and_writes_its_table_and_chart(
    tmp_path: Path, capsys: object
) -> None:
    assert smoothness_main(["--sessions", "2", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "smoothness.json").read_text())
    kinds = {(r["provider"], r["model"]) for r in rows}
    assert ("sim-chat", "support") in kinds and ("sim-messages", "bursty") in kinds
    by_model: dict[str, list[float]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r["smoothness_p50"])
    assert min(by_model["support"]) > max(by_model["bursty"])
    svg = (tmp_path / "smoothness.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<rect") == len(rows)
    assert "sim-responses / bursty" in svg


def test_the_book_keeps_medians_by_route_and_forgets_the_oldest_route() -> None:
    book = SmoothnessBook()
    for score in (0.9, 0.7, 0.8):
        book.add("p", "steady", {"smoothness": score, "burst_share": 0.0, "stalls": 0})
    book.add("p", "bursty", {"smoothness": 0.3, "burst_share": 0.8, "stalls": 2})
    book.add("p", "none", {"smoothness": None})  # no figure: not counted
    summary = book.summary()
    assert summary is book.summary()  # unchanged until a stream is added
    assert [(r["model"], r["sessions"], r["smoothness"], r["stalls"]) for r in summary] == [
        ("steady", 3, 0.8, 0),
        ("bursty", 1, 0.3, 2),
    ]
    for n in range(SmoothnessBook.GROUPS):
        book.add("q", f"m{n}", {"smoothness": 0.5})
    models = {r["model"] for r in book.summary()}
    assert len(models) == SmoothnessBook.GROUPS and "steady" not in models


def test_nodes_summaries_merge_weighted_by_sessions() -> None:
    a = [
        {
            "provider": "p",
            "model": "m",
            "sessions": 3,
            "smoothness": 0.9,
            "burst_share": 0.0,
            "stalls": 1,
        }
    ]
    b = [
        {
            "provider": "p",
            "model": "m",
            "sessions": 1,
            "smoothness": 0.5,
            "burst_share": 0.4,
            "stalls": 2,
        },
        {
            "provider": "p",
            "model": "x",
            "sessions": 2,
            "smoothness": 0.95,
            "burst_share": 0.0,
            "stalls": 0,
        },
    ]
    merged = merge_summaries([a, b])
    assert [
        (r["model"], r["sessions"], r["smoothness"], r["burst_share"], r["stalls"]) for r in merged
    ] == [("x", 2, 0.95, 0.0, 0), ("m", 4, 0.8, 0.1, 3)]
