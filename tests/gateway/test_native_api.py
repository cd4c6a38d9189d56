"""The native API: sessions in the normalised event format, records, resume by event id, Stop."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from sluice.sse import SSEDecoder
from tests.conftest import GatewayUnderTest


async def read_events(gw: GatewayUnderTest, path: str, **headers: str) -> list[Any]:
    decoder = SSEDecoder()
    events = []
    async with gw.http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_bytes():
            events.extend(decoder.decode(chunk))
    return events


async def start(gw: GatewayUnderTest, model: str = "sim/support", **extra: Any) -> str:
    response = await gw.http.post(
        "/api/sessions", json={"model": model, "prompt": "Where is my order?", **extra}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["events_url"] == f"/api/sessions/{body['id']}/events"
    assert response.headers["x-sluice-session-id"] == body["id"]
    return str(body["id"])


async def test_every_event_has_a_rising_id_and_the_stream_ends_with_the_record_summary(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway)
    events = await read_events(gateway, f"/api/sessions/{session_id}/events")
    ids = [int(e.id) for e in events if e.event != "end"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    kinds = [e.event for e in events]
    assert kinds[:2] == ["status", "start"] and kinds[-2:] == ["finish", "end"]
    assert "usage" in kinds
    end = orjson.loads(events[-1].data)
    assert end["state"] == "complete" and end["usage"]["source"] == "provider"
    text = "".join(orjson.loads(e.data)["text"] for e in events if e.event == "text")
    assert text == (await gateway.sim_request(session_id))["text"]


async def test_resuming_after_an_id_gives_exactly_the_later_events(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway)
    full = await read_events(gateway, f"/api/sessions/{session_id}/events")
    cut = full[len(full) // 2]
    by_header = await read_events(
        gateway, f"/api/sessions/{session_id}/events", **{"last-event-id": cut.id}
    )
    by_query = await read_events(gateway, f"/api/sessions/{session_id}/events?after={cut.id}")
    expected = [(e.id, e.data) for e in full if e.event != "end" and int(e.id) > int(cut.id)]
    assert [(e.id, e.data) for e in by_header if e.event != "end"] == expected
    assert [(e.id, e.data) for e in by_query if e.event != "end"] == expected


async def test_the_end_has_the_next_id_and_resuming_after_it_gives_nothing_more(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway)
    path = f"/api/sessions/{session_id}/events"
    full = await read_events(gateway, path)
    *events, end = full
    assert end.event == "end" and int(end.id) == int(events[-1].id) + 1
    assert [e.event for e in await read_events(gateway, path, **{"last-event-id": end.id})] == []
    after_last = await read_events(gateway, path, **{"last-event-id": events[-1].id})
    assert [(e.id, e.event, e.data) for e in after_last] == [(end.id, end.event, end.data)]
    gateway.gateway.sessions.recent.clear()  # the same from the store alone
    assert [e.event for e in await read_events(gateway, f"{path}?after={end.id}")] == []
    stored = await read_events(gateway, f"{path}?after={events[-1].id}")
    assert [(e.id, e.event) for e in stored] == [(end.id, "end")]
    assert [e.id for e in await read_events(gateway, path)] == [e.id for e in full]


async def test_an_id_past_the_ends_is_beyond_the_log(gateway: GatewayUnderTest) -> None:
    session_id = await start(gateway)
    path = f"/api/sessions/{session_id}/events"
    end_id = int((await read_events(gateway, path))[-1].id)
    assert gateway.gateway.sessions.get(session_id) is not None  # still in memory
    response = await gateway.http.get(path, headers={"last-event-id": str(end_id + 1)})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "resume_beyond_log"


async def test_a_finished_session_replays_from_the_store(gateway: GatewayUnderTest) -> None:
    session_id = await start(gateway)
    live = await read_events(gateway, f"/api/sessions/{session_id}/events")
    gateway.gateway.sessions.recent.clear()  # forget it in memory: only the store has it now
    stored = await read_events(gateway, f"/api/sessions/{session_id}/events")
    assert [(e.id, e.event, e.data) for e in stored[:-1]] == [
        (e.id, e.event, e.data) for e in live[:-1]
    ]
    record = await gateway.record(session_id)
    assert record["state"] == "complete" and record["text"]


async def test_streaming_at_creation_with_accept_event_stream(gateway: GatewayUnderTest) -> None:
    decoder = SSEDecoder()
    events = []
    async with gateway.http.stream(
        "POST",
        "/api/sessions",
        json={"model": "sim/tools", "prompt": "order A-1042"},
        headers={"accept": "text/event-stream"},
    ) as response:
        async for chunk in response.aiter_bytes():
            events.extend(decoder.decode(chunk))
    done = [orjson.loads(e.data) for e in events if e.event == "tool_call.done"]
    assert done and done[0]["status"] == "ok" and done[0]["arguments"]


async def test_the_record_holds_text_usage_cost_and_telemetry(gateway: GatewayUnderTest) -> None:
    session_id = await start(gateway, max_tokens=500)
    record = await gateway.final_record(session_id)
    assert record["state"] == "complete" and record["finish_reason"] == "stop"
    assert record["provider"] == "sim" and record["model"] == "support"
    assert record["usage"]["output_tokens"] > 0 and record["usage"]["source"] == "provider"
    cost = record["cost"]
    assert cost["known"] is True and cost["source"] == "config" and cost["total"] > 0
    telemetry = record["telemetry"]
    for key in (
        "ttft_ms",
        "tpot_ms",
        "gap_p50_ms",
        "gap_p99_ms",
        "token_rate",
        "duration_ms",
        "finalization_ms",
    ):
        assert telemetry[key] is not None and telemetry[key] >= 0, key
    assert telemetry["backpressure"] == "low"
    assert record["disconnect_policy"] == "cancel" and record["max_tokens"] == 500


async def test_a_model_without_a_price_has_unknown_cost(gateway: GatewayUnderTest) -> None:
    session_id = await start(gateway, model="simchat/support")  # "sim/*" does not match it
    record = await gateway.final_record(session_id)
    assert record["cost"]["total"] is None and record["cost"]["known"] is False


async def test_sessions_are_listed_newest_first_and_filtered(gateway: GatewayUnderTest) -> None:
    first = await start(gateway)
    second = await start(gateway, model="sim/rate-limit")
    await gateway.final_record(first)
    await gateway.final_record(second)
    listing = (await gateway.http.get("/api/sessions")).json()["sessions"]
    assert [r["id"] for r in listing] == [second, first]
    errored = (await gateway.http.get("/api/sessions?state=errored")).json()["sessions"]
    assert [r["id"] for r in errored] == [second]


async def test_cancel_stops_the_upstream_generation(gateway: GatewayUnderTest) -> None:
    session_id = await start_slow(gateway)
    for _ in range(500):
        requests = await gateway.sim_requests(session_id)
        if requests and requests[0]["tokens_produced"] > 3:
            break
        await asyncio.sleep(0.02)
    response = await gateway.http.post(f"/api/sessions/{session_id}/cancel")
    assert response.status_code == 200 and response.json()["cancelled"] is True
    record = await gateway.final_record(session_id)
    assert record["state"] == "cancelled" and record["usage"]["source"] == "estimated"
    assert record["text"]
    produced = (await gateway.sim_request(session_id))["tokens_produced"]
    await asyncio.sleep(0.5)
    sent = await gateway.sim_request(session_id)
    assert sent["client_disconnected"] is True
    assert sent["tokens_produced"] == produced  # the upstream generation stopped


async def start_slow(gw: GatewayUnderTest) -> str:
    response = await gw.http.post(
        "/api/sessions",
        json={"model": "sim/support", "prompt": "long answer please"},
        headers={"x-sim-token-rate": "50", "x-sim-output-tokens": "5000"},
    )
    return str(response.json()["id"])


async def test_health_and_metrics(gateway: GatewayUnderTest) -> None:
    assert (await gateway.http.get("/healthz")).json()["status"] == "ok"
    session_id = await start(gateway)
    await gateway.final_record(session_id)
    metrics = (await gateway.http.get("/metrics")).text
    assert 'sluice_sessions_total{provider="sim",state="complete"} 1.0' in metrics
    assert "sluice_time_to_first_token_seconds_bucket" in metrics


async def test_a_completed_tool_call_is_logged_with_one_parse_attempt_and_its_keys(
    gateway: GatewayUnderTest, caplog: Any
) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="sluice")
    session_id = await start(gateway, model="sim/tools")
    await gateway.final_record(session_id)
    lines = [r.getMessage() for r in caplog.records if "tool call completed" in r.getMessage()]
    assert len(lines) == 1
    assert f"session_id={session_id}" in lines[0]
    assert "parse_attempts=1" in lines[0] and "status=ok" in lines[0]
    assert "argument_keys=include_history,order_id" in lines[0]
