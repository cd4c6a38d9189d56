"""Flow and bookkeeping: disconnects, blocked writes, the record API, mounting, determinism."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from sluice.sim import create_sim_app

from .helpers import FAST, USER, Sim, new_session, payloads, start

CHAT_BODY = {"model": "support", "messages": USER, "stream": True}


async def test_disconnect_stops_the_generation(sim: Sim) -> None:
    headers = {**FAST, "x-sim-token-rate": "400", "x-sim-output-tokens": "100000"}
    async with (
        sim.http() as client,
        client.stream("POST", "/v1/chat/completions", json=CHAT_BODY, headers=headers) as response,
    ):
        request_id = response.headers["x-sim-request-id"]
        lines = 0
        async for line in response.aiter_lines():
            lines += line.startswith("data: ")
            if lines == 10:
                break
    # Leaving the block closed the connection in the middle of the body.

    record = await sim.wait_for(request_id, lambda r: r["state"] != "running")
    assert record["state"] == "client_disconnected"
    assert record["client_disconnected"] is True
    assert record["disconnected_at"] >= record["started_at"]
    assert record["tokens_at_disconnect"] >= 9
    counts = []
    for _ in range(5):
        await asyncio.sleep(0.1)
        counts.append((await sim.record(request_id))["tokens_produced"])
    assert counts == [record["tokens_produced"]] * 5
    assert record["tokens_produced"] < 100000


async def test_a_client_that_stops_reading_blocks_the_writes(sim: Sim) -> None:
    host, port = sim.base_url.removeprefix("http://").split(":")
    body = json.dumps(CHAT_BODY).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\n"
        "content-type: application/json\r\nx-sim-token-rate: 100000\r\nx-sim-ttft: 0\r\n"
        f"x-sim-output-tokens: 200000\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, (host, int(port)))
        await loop.sock_sendall(sock, head + body)
        # Not reading: the simulator's writes fill the socket buffers, then one hangs.
        [running] = [r for r in await sim.records() if r["state"] == "running"]
        before = await sim.wait_for(running["id"], lambda r: r["write_blocked_now"], within=30)
        answered = time.perf_counter()  # the record above was made before this
        await asyncio.sleep(0.3)
        asked = time.perf_counter()  # the record below is made after this
        record = await sim.record(running["id"])
        assert record["write_blocked_now"] is True
        assert record["write_blocked_count"] == before["write_blocked_count"] > 0
        # The same write still hangs, and nothing more was generated meanwhile.
        assert record["tokens_produced"] == before["tokens_produced"] < 200000
        grew = record["max_write_block_seconds"] - before["max_write_block_seconds"]
        assert grew >= asked - answered
    finally:
        sock.close()
    closed = await sim.wait_for(record["id"], lambda r: r["state"] != "running")
    assert closed["state"] == "client_disconnected"
    assert closed["tokens_produced"] < 200000
    longest = closed["max_write_block_seconds"]
    assert closed["write_blocked_seconds"] >= longest >= record["max_write_block_seconds"]


async def test_every_response_names_its_request(sim: Sim) -> None:
    async with sim.http() as client:
        responses = [
            await client.post("/v1/messages", json={**CHAT_BODY, "max_tokens": 5}, headers=FAST),
            await client.post("/v1/chat/completions", json={"model": "nope"}),
            await client.post("/v1/responses", content=b"{not json"),
            await client.get("/healthz"),
            await client.get("/requests"),
            await client.get("/nowhere"),
        ]
    ids = [response.headers["x-sim-request-id"] for response in responses]
    assert len(set(ids)) == len(ids)
    assert [r.status_code for r in responses] == [200, 404, 400, 200, 200, 404]


async def test_requests_list_newest_last_and_filters_by_session(sim: Sim) -> None:
    first, second = new_session(), new_session()
    async with sim.http() as client:
        for session in (first, second, first):
            await client.post(
                "/v1/chat/completions",
                json={"model": "support", "messages": USER},
                headers={**FAST, "x-sim-output-tokens": "3", "x-sluice-session-id": session},
            )
        missing = await client.get("/requests/sim-999999")

    everything = await sim.records()
    mine = await sim.records(first)
    assert [r["session"] for r in everything] == [first, second, first]
    assert [r["id"] for r in mine] == [everything[0]["id"], everything[2]["id"]]
    assert missing.status_code == 404
    assert (await sim.record(mine[0]["id"]))["text"] == mine[0]["text"]
    assert sim.app.recorder.get(mine[0]["id"]) is not None


async def test_record_fields(sim: Sim) -> None:
    session = new_session()
    async with sim.http() as client:
        await client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers={**FAST, "x-sluice-session-id": session}
        )
    record = await sim.only_record(session)

    assert record["format"] == "openai-chat"
    assert (record["scenario"], record["model"], record["stream"]) == ("support", "support", True)
    assert record["started_at"] <= record["first_byte_at"] <= record["first_token_at"]
    assert record["first_token_at"] <= record["finished_at"]
    assert record["writes"] >= record["tokens_produced"] + 1
    assert record["client_disconnected"] is False
    assert record["disconnected_at"] is None and record["tokens_at_disconnect"] is None
    assert record["write_blocked_count"] == 0 and record["write_blocked_seconds"] == 0


async def test_same_model_and_prompt_give_the_same_words(sim: Sim) -> None:
    session = new_session()
    headers = {**FAST, "x-sluice-session-id": session, "x-sim-output-tokens": "60"}
    prompt = "Where is my order?"
    async with sim.http() as client:
        for _ in range(2):
            await client.post(
                "/v1/chat/completions",
                json={"model": "support", "messages": [{"role": "user", "content": prompt}]},
                headers=headers,
            )
        await client.post(
            "/v1/messages",
            json={
                "model": "support",
                "max_tokens": 99,
                "messages": [{"role": "user", "content": prompt}],
            },
            headers=headers,
        )
        await client.post(
            "/v1/responses", json={"model": "support", "input": prompt}, headers=headers
        )
    texts = [record["text"] for record in await sim.records(session)]
    assert len(texts) == 4 and len(set(texts)) == 1


async def test_steady_is_an_alias_and_the_header_overrides_the_model(sim: Sim) -> None:
    session = new_session()
    async with sim.http() as client:
        await client.post(
            "/v1/chat/completions",
            json={"model": "steady", "messages": USER},
            headers={**FAST, "x-sluice-session-id": session},
        )
        override = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": USER},
            headers={**FAST, "x-sluice-session-id": session, "x-sim-scenario": "tools"},
        )
    scenarios = [record["scenario"] for record in await sim.records(session)]
    assert scenarios == ["support", "tools"]
    assert override.json()["model"] == "gpt-4o-mini"


async def test_bursty_sends_several_tokens_per_write(sim: Sim) -> None:
    session = new_session()
    async with sim.http() as client:
        response = await client.post(
            "/v1/messages",
            json={**CHAT_BODY, "model": "bursty", "max_tokens": 1000},
            headers={**FAST, "x-sluice-session-id": session, "x-sim-output-tokens": "80"},
        )
    deltas = [frame for frame in payloads(response.text) if frame["type"] == "content_block_delta"]
    record = await sim.only_record(session)
    assert len(deltas) == record["tokens_produced"] == 80
    assert record["writes"] <= 2 + 80 / 3


async def test_the_first_token_waits_for_ttft(sim: Sim) -> None:
    session = new_session()
    async with sim.http() as client:
        await client.post(
            "/v1/chat/completions",
            json=CHAT_BODY,
            headers={**FAST, "x-sim-ttft": "0.3", "x-sluice-session-id": session},
        )
    record = await sim.only_record(session)
    # Headers go out at once; the first token never comes before the ttft.
    assert record["first_byte_at"] < record["first_token_at"]
    assert record["first_token_at"] - record["started_at"] >= 0.3


async def test_anthropic_requires_max_tokens(sim: Sim) -> None:
    async with sim.http() as client:
        response = await client.post("/v1/messages", json=CHAT_BODY, headers=FAST)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "max_tokens: Field required"


async def test_a_bad_parameter_header_is_a_400_in_the_format(sim: Sim) -> None:
    async with sim.http() as client:
        response = await client.post(
            "/v1/messages",
            json={**CHAT_BODY, "max_tokens": 10},
            headers={"x-sim-jitter": "2"},
        )
    assert response.status_code == 400
    error = response.json()
    assert error["error"]["type"] == "invalid_request_error"
    assert "x-sim-jitter" in error["error"]["message"]


@pytest.fixture
async def mounted() -> AsyncIterator[tuple[str, Any]]:
    """The simulator mounted at /sim inside a Starlette app, as the gateway mounts it."""
    sim_app = create_sim_app()

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("gateway")

    app = Starlette(routes=[Route("/", home), Mount("/sim", app=sim_app)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task, base_url = await start(server)
    yield base_url, sim_app
    server.should_exit = True
    await task


async def test_works_mounted_under_a_prefix(mounted: tuple[str, Any]) -> None:
    base_url, sim_app = mounted
    async with httpx.AsyncClient(base_url=base_url) as client:
        streamed = await client.post("/sim/v1/chat/completions", json=CHAT_BODY, headers=FAST)
        records = await client.get("/sim/requests")
        one = await client.get(f"/sim/requests/{streamed.headers['x-sim-request-id']}")
        health = await client.get("/sim/healthz")
        home = await client.get("/")

    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    assert [record["state"] for record in records.json()] == ["completed"]
    assert one.json()["text"] == sim_app.recorder.records()[0].transcript.text
    assert health.json()["status"] == "ok"
    assert home.text == "gateway"
