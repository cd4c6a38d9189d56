"""Streams that survive: Stop, disconnect policies, heartbeats, progress, resume, retries,
recovery and admission control — each proved with the simulator's own counters."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.sse import SSEDecoder
from tests.conftest import LONG, GatewayUnderTest, running_gateway, start, tokens_when_running
from tests.conftest import test_settings as settings_for

MSG = [{"role": "user", "content": "Tell me about refunds."}]


async def assert_generation_stopped(gw: GatewayUnderTest, session_id: str) -> dict[str, Any]:
    """The simulator's counter no longer climbs: the upstream generation stopped."""
    before = (await gw.sim_request(session_id))["tokens_produced"]
    await asyncio.sleep(0.5)
    after = await gw.sim_request(session_id)
    assert after["tokens_produced"] == before
    assert after["client_disconnected"] is True
    return after


async def read_some(gw: GatewayUnderTest, path: str, events: int, **headers: str) -> list[Any]:
    """Open an SSE stream, read ``events`` events, then drop the connection."""
    decoder, got = SSEDecoder(), []
    async with gw.http.stream("GET", path, headers=headers) as response:
        async for chunk in response.aiter_bytes():
            got.extend(decoder.decode(chunk))
            if len(got) >= events:
                break
    return got


async def read_all(gw: GatewayUnderTest, path: str, **headers: str) -> list[Any]:
    decoder, got = SSEDecoder(), []
    async with gw.http.stream("GET", path, headers=headers) as response:
        async for chunk in response.aiter_bytes():
            got.extend(decoder.decode(chunk))
    return got


# -- Stop ------------------------------------------------------------------------------------


async def test_stop_on_a_provider_endpoint_reaches_the_provider(
    gateway: GatewayUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice")
    body = {"model": "sim/support", "messages": MSG, "stream": True}
    async with gateway.http.stream(
        "POST", "/v1/chat/completions", json=body, headers=LONG
    ) as response:
        session_id = response.headers["x-sluice-session-id"]
        await tokens_when_running(gateway, session_id)
        stop = await gateway.http.post(f"/api/sessions/{session_id}/cancel")
        assert stop.json()["cancelled"] is True
        tail = (await response.aread()).decode()
    assert '"error"' in tail  # the client's stream ends with an error frame, not silence
    sent = await assert_generation_stopped(gateway, session_id)
    record = await gateway.final_record(session_id)
    assert record["state"] == "cancelled" and record["cancel_reason"] == "client_stop"
    assert record["usage"]["source"] == "estimated" and record["text"]
    assert sent["tokens_produced"] < 5000
    line = next(r.getMessage() for r in caplog.records if "session cancelled" in r.getMessage())
    assert f"session_id={session_id}" in line and "upstream_tokens_at_cancel=" in line


async def test_stop_during_a_tool_call_keeps_the_call_incomplete_with_its_arguments_so_far(
    gateway: GatewayUnderTest,
) -> None:
    slow = {"x-sim-token-rate": "20"}
    session_id = await start(gateway, model="sim/tools", headers=slow)
    decoder, kinds = SSEDecoder(), []
    path = f"/api/sessions/{session_id}/events"
    async with gateway.http.stream("GET", path) as response:
        async for chunk in response.aiter_bytes():
            for event in decoder.decode(chunk):
                kinds.append(event.event)
                if event.event == "tool_call.delta" and "stopped" not in kinds:
                    kinds.append("stopped")
                    stop = await gateway.http.post(f"/api/sessions/{session_id}/cancel")
                    assert stop.json()["cancelled"] is True
    assert "tool_call.start" in kinds and "stopped" in kinds
    record = await gateway.final_record(session_id)
    assert record["state"] == "cancelled"
    [call] = record["tool_calls"]
    assert call["name"] == "lookup_order" and call["status"] == "incomplete"
    assert call["raw_arguments"]  # the fragments that arrived before the Stop


# -- disconnect policies --------------------------------------------------------------------


async def test_policy_cancel_stops_the_provider_when_the_client_goes(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway, headers=LONG)
    await read_some(gateway, f"/api/sessions/{session_id}/events", 10)
    record = await gateway.final_record(session_id)
    assert record["state"] == "cancelled" and record["cancel_reason"] == "client_disconnected"
    assert record["disconnects"][0]["reason"] == "client_disconnected"
    await assert_generation_stopped(gateway, session_id)


async def test_a_server_without_the_disconnect_hook_still_stops_the_provider(
    tmp_path: Path,
) -> None:
    # Under uvicorn's own protocol (or any other ASGI server) no scope carries the hook: a
    # task waiting on ``receive()`` notices the client leaving instead.
    async with running_gateway(settings_for(tmp_path), http="httptools") as gw:
        session_id = await start(gw, headers=LONG)
        await read_some(gw, f"/api/sessions/{session_id}/events", 10)
        record = await gw.final_record(session_id)
        assert record["cancel_reason"] == "client_disconnected"
        await assert_generation_stopped(gw, session_id)


async def test_policy_detach_keeps_generating_until_the_grace_period_ends(
    gateway_with: Any,
) -> None:
    async with gateway_with(detach_grace=0.6) as gw:
        session_id = await start(gw, headers=LONG, disconnect_policy="detach")
        await read_some(gw, f"/api/sessions/{session_id}/events", 10)
        at_disconnect = (await gw.sim_request(session_id))["tokens_produced"]
        await asyncio.sleep(0.3)
        assert (await gw.sim_request(session_id))["tokens_produced"] > at_disconnect
        record = await gw.final_record(session_id)
        assert record["state"] == "cancelled"
        assert record["cancel_reason"] == "detach_grace_expired"
        assert record["disconnect_policy"] == "detach"
        await assert_generation_stopped(gw, session_id)


async def test_policy_detach_lets_a_client_resume_within_the_grace_period(
    gateway_with: Any,
) -> None:
    async with gateway_with(detach_grace=5.0) as gw:
        headers = {"x-sim-token-rate": "400", "x-sim-output-tokens": "400"}
        session_id = await start(gw, headers=headers, disconnect_policy="detach")
        first = await read_some(gw, f"/api/sessions/{session_id}/events", 12)
        rest = await read_all(
            gw, f"/api/sessions/{session_id}/events", **{"last-event-id": first[-1].id}
        )
        record = await gw.final_record(session_id)
        assert record["state"] == "complete"
        text = "".join(orjson.loads(e.data)["text"] for e in first + rest if e.event == "text")
        assert text == (await gw.sim_request(session_id))["text"]


async def test_policy_drain_finishes_the_turn_after_the_client_goes(
    gateway: GatewayUnderTest,
) -> None:
    headers = {"x-sim-token-rate": "300", "x-sim-output-tokens": "300"}
    session_id = await start(gateway, headers=headers, disconnect_policy="drain")
    await read_some(gateway, f"/api/sessions/{session_id}/events", 5)
    record = await gateway.final_record(session_id)
    sent = await gateway.sim_request(session_id)
    assert record["state"] == "complete" and record["disconnect_policy"] == "drain"
    assert sent["state"] == "completed" and sent["tokens_produced"] == 300
    assert record["usage"]["source"] == "provider"


async def leave_a_non_streaming_request(gw: GatewayUnderTest, headers: dict[str, str]) -> str:
    """Send a non-streaming Chat Completions request, wait until the simulator generates for
    it, then close the connection without reading an answer; the session's id."""
    body = orjson.dumps({"model": "sim/support", "messages": MSG})
    host, port = gw.url.removeprefix("http://").split(":")
    lines = [
        "POST /v1/chat/completions HTTP/1.1",
        f"host: {host}:{port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        for _ in range(3000):  # at most 30 s for the session to start
            if gw.gateway.sessions.live or reader.at_eof():
                break
            await asyncio.sleep(0.01)
        assert not reader.at_eof(), await reader.read()  # refused: the answer says why
        [session_id] = gw.gateway.sessions.live
        await tokens_when_running(gw, session_id)
        assert not reader.at_eof()  # no answer yet: the turn is still generating
    finally:
        writer.close()
    return session_id


async def test_policy_cancel_stops_the_provider_when_a_non_streaming_client_goes(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await leave_a_non_streaming_request(gateway, LONG)
    record = await gateway.final_record(session_id)
    assert record["state"] == "cancelled" and record["cancel_reason"] == "client_disconnected"
    assert [d["reason"] for d in record["disconnects"]] == ["client_disconnected"]
    sent = await assert_generation_stopped(gateway, session_id)
    assert sent["tokens_produced"] < 5000


async def test_a_non_streaming_client_going_is_noticed_without_the_disconnect_hook(
    tmp_path: Path,
) -> None:
    async with running_gateway(settings_for(tmp_path), http="httptools") as gw:
        session_id = await leave_a_non_streaming_request(gw, LONG)
        record = await gw.final_record(session_id)
        assert record["cancel_reason"] == "client_disconnected"
        await assert_generation_stopped(gw, session_id)


async def test_policy_drain_finishes_a_non_streaming_turn_after_its_client_goes(
    gateway_with: Any,
) -> None:
    async with gateway_with(disconnect_policy="drain") as gw:
        headers = {"x-sim-token-rate": "300", "x-sim-output-tokens": "300"}
        session_id = await leave_a_non_streaming_request(gw, headers)
        record = await gw.final_record(session_id)
        sent = await gw.sim_request(session_id)
        assert record["state"] == "complete" and record["disconnect_policy"] == "drain"
        assert [d["reason"] for d in record["disconnects"]] == ["client_disconnected"]
        assert sent["state"] == "completed" and sent["tokens_produced"] == 300


async def test_a_bad_policy_is_refused(gateway: GatewayUnderTest) -> None:
    response = await gateway.http.post(
        "/api/sessions", json={"model": "sim/support", "prompt": "x", "disconnect_policy": "hope"}
    )
    assert response.status_code == 400


# -- heartbeats and progress -----------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["native", "chat"])
async def test_heartbeats_flow_while_the_upstream_is_silent(
    gateway_with: Any, endpoint: str
) -> None:
    async with gateway_with(heartbeat_interval=0.1) as gw:
        headers = {"x-sim-ttft": "0.6", "x-sim-stall-after": "3", "x-sim-stall-seconds": "0.6"}
        if endpoint == "native":
            session_id = await start(gw, "sim/stall", headers=headers)
            request = gw.http.stream("GET", f"/api/sessions/{session_id}/events")
        else:
            body = {"model": "sim/stall", "messages": MSG, "stream": True}
            request = gw.http.stream("POST", "/v1/chat/completions", json=body, headers=headers)
        async with request as response:
            raw = await response.aread()
    lines = raw.decode().split("\n")
    pings = [i for i, line in enumerate(lines) if line == ": ping"]
    first_text = next(
        i
        for i, line in enumerate(lines)
        if '"text"' in line or ('"content"' in line and '"content":""' not in line)
    )
    # silent for 0.6 s before the first token and again mid-stream: six intervals each
    assert len([i for i in pings if i < first_text]) >= 3
    assert len([i for i in pings if i > first_text]) >= 3


async def test_progress_status_comes_before_the_first_text(gateway: GatewayUnderTest) -> None:
    session_id = await start(gateway, "sim/slow-start", headers={"x-sim-ttft": "0.3"})
    events = await read_all(gateway, f"/api/sessions/{session_id}/events")
    statuses = [orjson.loads(e.data)["phase"] for e in events if e.event == "status"]
    assert statuses == ["waiting", "thinking"]
    kinds = [e.event for e in events]
    assert kinds.index("status") < kinds.index("reasoning") < kinds.index("text")
    record = await gateway.final_record(session_id)
    telemetry = record["telemetry"]
    assert telemetry["time_to_first_event_ms"] < telemetry["ttft_ms"]


async def test_a_tool_call_before_any_text_is_announced_by_name(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway, "sim/parallel-tools")
    events = await read_all(gateway, f"/api/sessions/{session_id}/events")
    tools = [orjson.loads(e.data) for e in events if e.event == "status"]
    assert {"phase": "tool", "detail": "lookup_order"} in tools


# -- resume -------------------------------------------------------------------------------------


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=3))
async def test_resuming_at_any_point_gives_the_uninterrupted_text(
    gateway: GatewayUnderTest, cuts: list[int]
) -> None:
    headers = {"x-sim-token-rate": "1500", "x-sim-output-tokens": "120"}
    session_id = await start(gateway, headers=headers, disconnect_policy="detach")
    path = f"/api/sessions/{session_id}/events"
    seen: list[Any] = []
    last = "0"
    for cut in cuts:
        part = await read_some(gateway, path, cut, **{"last-event-id": last})
        seen.extend(e for e in part if e.event != "end")
        if part and part[-1].id:
            last = part[-1].id
    seen.extend(
        e for e in await read_all(gateway, path, **{"last-event-id": last}) if e.event != "end"
    )
    ids = [int(e.id) for e in seen]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    text = "".join(orjson.loads(e.data)["text"] for e in seen if e.event == "text")
    assert text == (await gateway.sim_request(session_id))["text"]


# -- retries ------------------------------------------------------------------------------------


async def test_a_refusal_before_the_stream_is_retried_until_it_succeeds(
    gateway_with: Any,
) -> None:
    async with gateway_with(retry_base_delay=0.01) as gw:
        headers = {"x-sim-fail-count": "2", "x-sim-retry-after": "0"}
        for model in ("sim/rate-limit", "sim/overloaded"):
            session_id = await start(gw, model, headers=headers)
            record = await gw.final_record(session_id)
            assert record["state"] == "complete", record["error"]
            assert [e["type"] for e in record["attempt_errors"]] == [
                "rate_limited" if model == "sim/rate-limit" else "overloaded"
            ] * 2
            attempts = await gw.sim_requests(session_id)
            assert [a["state"] for a in attempts] == ["failed", "failed", "completed"]


async def test_retry_after_is_honoured(gateway_with: Any) -> None:
    async with gateway_with(retry_base_delay=0.01) as gw:
        headers = {"x-sim-fail-count": "1", "x-sim-retry-after": "1"}
        session_id = await start(gw, "sim/rate-limit", headers=headers)
        await gw.final_record(session_id)
        first, second = await gw.sim_requests(session_id)
        assert second["started_at"] - first["started_at"] >= 1.0


async def test_retries_stop_at_the_attempt_limit(gateway_with: Any) -> None:
    async with gateway_with(retry_base_delay=0.01, retry_attempts=3) as gw:
        session_id = await start(gw, "sim/rate-limit", headers={"x-sim-retry-after": "0"})
        record = await gw.final_record(session_id)
        assert record["state"] == "errored" and record["error"]["type"] == "rate_limited"
        assert len(await gw.sim_requests(session_id)) == 3


async def test_a_mid_stream_failure_retries_the_whole_turn_when_configured(
    gateway_with: Any,
) -> None:
    async with gateway_with(mid_stream_failure="retry", retry_base_delay=0.01) as gw:
        session_id = await start(gw, "sim/error-mid-stream", headers={"x-sim-fail-count": "1"})
        events = await read_all(gw, f"/api/sessions/{session_id}/events")
        retry = [orjson.loads(e.data) for e in events if e.event == "retry"]
        assert retry and retry[0]["attempt"] == 2 and retry[0]["reason"] == "upstream_error"
        kinds = [e.event for e in events]
        assert "text" in kinds[: kinds.index("retry")]  # text before, then it restarts
        after = kinds.index("retry")
        text = "".join(orjson.loads(e.data)["text"] for e in events[after:] if e.event == "text")
        record = await gw.final_record(session_id)
        second = (await gw.sim_requests(session_id))[-1]
        assert record["state"] == "complete" and record["attempts"] == 2
        assert record["text"] == text == second["text"]
        # Both attempts were billed: the first's deltas (an estimate) and the second's usage.
        usage = [orjson.loads(e.data) for e in events[after:] if e.event == "usage"]
        first_deltas = kinds[:after].count("text")
        assert usage and first_deltas
        assert record["usage"]["output_tokens"] == first_deltas + usage[-1]["output_tokens"]
        assert record["usage"]["source"] == "estimated"
        assert record["cost"]["usage_source"] == "estimated"


async def test_a_stall_longer_than_the_deadline_is_upstream_stalled(gateway_with: Any) -> None:
    async with gateway_with(stall_timeout=0.3) as gw:
        headers = {"x-sim-stall-after": "5", "x-sim-stall-seconds": "3"}
        session_id = await start(gw, "sim/stall", headers=headers)
        record = await gw.final_record(session_id)
        assert record["state"] == "errored" and record["error"]["type"] == "upstream_stalled"
        assert record["text"] and record["error"]["retryable"] is True


async def test_the_recover_endpoint_starts_a_new_attempt_under_the_same_id(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway, "sim/error-mid-stream", headers={"x-sim-fail-count": "1"})
    failed = await gateway.final_record(session_id)
    assert failed["state"] == "errored" and failed["usage"]["source"] == "estimated"
    response = await gateway.http.post(f"/api/sessions/{session_id}/retry")
    assert response.status_code == 202 and response.json()["attempt"] == 2
    record = await gateway.final_record(session_id)
    assert record["id"] == session_id and record["state"] == "complete"
    assert record["attempts"] == 2 and record["attempt_errors"][0]["type"] == "upstream_error"
    assert record["text"] == (await gateway.sim_requests(session_id))[-1]["text"]
    # The failed attempt's tokens were billed too: they stay in the usage and the cost.
    assert record["usage"]["output_tokens"] > failed["usage"]["output_tokens"] > 0
    assert record["usage"]["input_tokens"] > failed["usage"]["input_tokens"]
    assert record["usage"]["source"] == "estimated"
    again = await gateway.http.post(f"/api/sessions/{session_id}/retry")
    assert again.status_code == 409 and again.json()["error"]["type"] == "not_retryable"


# -- admission control ---------------------------------------------------------------------


async def test_past_the_stream_ceiling_requests_get_503_with_retry_after(
    gateway_with: Any,
) -> None:
    async with gateway_with(max_concurrent=2) as gw:
        for _ in range(2):
            await start(gw, headers=LONG, disconnect_policy="drain")
        chat = await gw.http.post(
            "/v1/chat/completions", json={"model": "sim/support", "messages": MSG}
        )
        assert chat.status_code == 503 and chat.headers["retry-after"] == "1"
        assert chat.json()["error"]["code"] == "gateway_overloaded"
        anthropic = await gw.http.post(
            "/v1/messages", json={"model": "sim/support", "max_tokens": 5, "messages": MSG}
        )
        assert anthropic.status_code == 503
        assert anthropic.json()["error"]["type"] == "overloaded_error"


async def test_past_the_per_client_ceiling_requests_get_429_whatever_key_they_invent(
    gateway_with: Any,
) -> None:
    """With auth off, a key the client sends proves nothing: the ceiling is the client
    address's, so inventing a key per request (or sending none) does not get past it. (With
    auth on it is the key's: tests/access/test_limits.py.)"""
    async with gateway_with(max_per_key=1) as gw:
        alice = {"authorization": "Bearer alice-key", **LONG}
        await start(gw, headers=alice, disconnect_policy="drain")
        for headers in (alice, {"authorization": "Bearer bob-key"}, {}):
            refused = await gw.http.post(
                "/api/sessions", json={"model": "sim/support", "prompt": "x"}, headers=headers
            )
            assert refused.status_code == 429 and "retry-after" in refused.headers
            assert "alice-key" not in refused.text


async def test_a_client_stuck_past_the_deadline_is_cut_client_too_slow_and_can_resume(
    gateway_with: Any,
) -> None:
    import socket

    async with gateway_with(client_send_timeout=0.5) as gw:
        headers = {"x-sim-output-tokens": "100000", "x-sim-token-rate": "50000"}
        session_id = await start(gw, headers=headers, disconnect_policy="detach")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        port = int(gw.url.rsplit(":", 1)[1])
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            f"GET /api/sessions/{session_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        try:
            for _ in range(600):  # never read: the gateway's writes block, then it gives up
                record = await gw.record(session_id)
                if record["disconnects"]:
                    break
                await asyncio.sleep(0.05)
        finally:
            sock.close()
        assert record["disconnects"][0]["reason"] == "client_too_slow"
        assert record["state"] == "streaming"  # detach: the generation goes on for a resume
        resumed = await read_some(
            gw, f"/api/sessions/{session_id}/events", 5, **{"last-event-id": "10"}
        )
        assert int(resumed[0].id) > 10 and resumed[0].event != "end"
        await gw.http.post(f"/api/sessions/{session_id}/cancel")


async def test_a_session_stopped_before_its_task_first_runs_still_ends_with_a_record(
    gateway: GatewayUnderTest,
) -> None:
    # Stop in the same turn of the loop as the start (a shutdown can do that): the pump's
    # coroutine never begins, yet the session must still end, cancelled, with its record.
    first = await start(gateway)
    manager = gateway.gateway.sessions
    spec = manager.require(first).spec
    session = manager.start("op-stopped0000", spec)
    assert manager.cancel(session.id, "test_stop")
    async with asyncio.timeout(10):
        await session.finished.wait()
    stored = await manager.store.get(session.id)
    assert stored is not None and stored["state"] == "cancelled"
    assert stored["cancel_reason"] == "test_stop"
    assert session.id not in manager.live
    # The same for a recovered session's new attempt.
    again = await manager.retry(session.id)
    assert manager.cancel(again.id, "test_stop_again")
    async with asyncio.timeout(10):
        await again.finished.wait()
    stored = await manager.store.get(again.id)
    assert stored is not None and stored["state"] == "cancelled"
    assert stored["cancel_reason"] == "test_stop_again" and stored["attempts"] == 2


async def test_a_request_sent_as_the_session_starts_is_withdrawn_if_it_is_stopped_at_once(
    gateway: GatewayUnderTest,
) -> None:
    # A session sends its request as it is created when a pooled connection is idle (before
    # its task runs). Stopped in that same turn, it must still close that request: the
    # provider sees the client go, and no connection waits for an owner.
    manager = gateway.gateway.sessions
    long = await start(gateway, headers=LONG)  # holds a connection of its own
    await tokens_when_running(gateway, long)
    short = await start(gateway)
    await gateway.final_record(short)  # its connection is back in the pool, idle
    session = manager.start("op-withdrawn00", manager.require(long).spec)  # ``long``'s headers
    assert manager.cancel(session.id, "test_stop")
    async with asyncio.timeout(10):
        await session.finished.wait()
    for _ in range(250):  # the simulator records the request, then sees its client go
        requests = await gateway.sim_requests(long)
        if len(requests) == 2 and requests[1]["client_disconnected"]:
            break
        await asyncio.sleep(0.02)
    else:
        seen = [(r["state"], r["client_disconnected"]) for r in requests]
        raise AssertionError(f"the request was not sent, or not withdrawn: {seen}")
    stored = await manager.store.get(session.id)
    assert stored is not None and stored["state"] == "cancelled"
    await gateway.http.post(f"/api/sessions/{long}/cancel")
