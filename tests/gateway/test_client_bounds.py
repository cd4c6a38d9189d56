"""The server's client bounds: connections that never finish their headers, or their body, or
sit idle, are closed; heads over ``server.max_header_bytes`` are answered 431; past the
connection ceiling the oldest waiting connection makes room for a new one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluice.config import ClientLimits
from sluice.gateway.server import ClientGuard, connection_ceiling
from tests.conftest import LONG, GatewayUnderTest, running_gateway, start, tokens_when_running
from tests.conftest import test_settings as settings_for
from tests.gateway.test_websocket import open_socket, receive

#: a generous bound on any wait for the server: a hang fails the test, a busy machine does not
WAIT = 30.0


@asynccontextmanager
async def gateway_limited(tmp_path: Path, **limits: Any) -> AsyncIterator[GatewayUnderTest]:
    settings = settings_for(tmp_path)
    for key, value in limits.items():
        setattr(settings.client_limits, key, value)
    async with running_gateway(settings) as gw:
        yield gw


def _port(gw: GatewayUnderTest) -> int:
    return int(gw.url.rsplit(":", 1)[1])


async def _connect(gw: GatewayUnderTest) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", _port(gw))


async def _read_to_close(reader: asyncio.StreamReader) -> bytes:
    """All the server writes until it closes the connection (a bounded wait)."""
    data = b""
    async with asyncio.timeout(WAIT):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _body(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


async def _metric(gw: GatewayUnderTest, needle: str) -> float:
    text = (await gw.http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(needle + " "):
            return float(line[len(needle) + 1 :])
    return 0.0


async def _closed_count(gw: GatewayUnderTest, reason: str) -> float:
    return await _metric(gw, f'sluice_client_connections_closed_total{{reason="{reason}"}}')


# -- heads ------------------------------------------------------------------------------------


async def test_a_connection_that_sends_nothing_is_closed(tmp_path: Path) -> None:
    async with gateway_limited(tmp_path, header_timeout=0.5) as gw:
        reader, writer = await _connect(gw)
        assert await _read_to_close(reader) == b""  # closed, with nothing to say
        writer.close()
        assert await _closed_count(gw, "header_timeout") >= 1
        assert (await gw.http.get("/healthz")).status_code == 200


async def test_a_slowloris_head_is_answered_408_and_closed(tmp_path: Path) -> None:
    async with gateway_limited(tmp_path, header_timeout=0.5) as gw:
        reader, writer = await _connect(gw)
        writer.write(b"GET /api/sessions HTTP/1.1\r\nhost: 127.0.0.1\r\n")

        async def drip() -> None:  # one header byte at a time, the head never finished
            with contextlib.suppress(ConnectionError):
                for _ in range(int(WAIT / 0.05)):
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.05)

        dripping = asyncio.ensure_future(drip())
        try:
            answer = await _read_to_close(reader)
        finally:
            dripping.cancel()
            writer.close()
        assert _status(answer) == 408
        body = orjson.loads(_body(answer))  # /api/...: the native API's error format
        assert body["error"]["type"] == "request_timeout"


async def test_an_idle_kept_alive_connection_is_closed_after_its_answers(tmp_path: Path) -> None:
    async with gateway_limited(tmp_path, idle_timeout=0.5) as gw:
        reader, writer = await _connect(gw)
        request = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
        writer.write(request + request)  # two requests, both answered on the one connection
        answer = await _read_to_close(reader)
        writer.close()
        assert answer.count(b"HTTP/1.1 200 OK") == 2
        assert await _closed_count(gw, "idle_timeout") >= 1


# -- head size --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("/v1/chat/completions", lambda b: orjson.loads(b)["error"]["type"]),
        ("/v1/messages", lambda b: orjson.loads(b)["type"]),
        ("/api/sessions", lambda b: orjson.loads(b)["error"]["type"]),
        ("/chat", lambda b: b.decode()),
    ],
)
async def test_a_head_over_the_limit_is_answered_431_in_the_endpoints_format(
    tmp_path: Path, path: str, check: Any
) -> None:
    async with gateway_limited(tmp_path, max_header_bytes=4096) as gw:
        reader, writer = await _connect(gw)
        headers = b"".join(b"x-pad-%d: %s\r\n" % (n, b"p" * 200) for n in range(40))
        writer.write(b"GET %s HTTP/1.1\r\nhost: 127.0.0.1\r\n%b\r\n" % (path.encode(), headers))
        answer = await _read_to_close(reader)
        writer.close()
        assert _status(answer) == 431
        assert b"connection: close" in answer
        described = check(_body(answer))
        if path == "/chat":
            assert "4096 bytes" in described  # a page's refusal is plain text
        elif path == "/v1/messages":
            assert described == "error"  # Anthropic's shape: {"type": "error", "error": ...}
        else:
            assert described in ("invalid_request_error", "request_header_fields_too_large")


@pytest.mark.parametrize("size", [1 << 20, 8 << 20])
async def test_a_huge_unfinished_header_is_refused_before_it_is_read(
    tmp_path: Path, size: int
) -> None:
    """A header of 1 MB or 8 MB is cut off at the limit, not buffered whole: the server
    answers 431 and closes while the client is still writing it."""
    async with gateway_limited(tmp_path) as gw:
        reader, writer = await _connect(gw)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ")
        sent = 0

        async def send() -> None:
            nonlocal sent
            with contextlib.suppress(ConnectionError):
                while sent < size:
                    writer.write(b"a" * 65536)
                    sent += 65536
                    await writer.drain()

        sending = asyncio.ensure_future(send())
        try:
            answer = await _read_to_close(reader)
        finally:
            sending.cancel()
            writer.close()
        assert _status(answer) == 431
        assert await _closed_count(gw, "header_too_large") >= 1
        assert (await gw.http.get("/healthz")).status_code == 200


async def test_a_head_under_the_limit_is_served(tmp_path: Path) -> None:
    async with gateway_limited(tmp_path, max_header_bytes=4096) as gw:
        response = await gw.http.get("/healthz", headers={"x-pad": "p" * 3000})
        assert response.status_code == 200


# -- bodies -----------------------------------------------------------------------------------


async def test_a_slow_body_is_answered_408_in_the_endpoints_format(tmp_path: Path) -> None:
    async with gateway_limited(tmp_path, body_timeout=0.5) as gw:
        reader, writer = await _connect(gw)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            b'content-type: application/json\r\ncontent-length: 1000\r\n\r\n{"model": '
        )
        answer = await _read_to_close(reader)  # the rest of the body never comes
        writer.close()
        assert _status(answer) == 408
        error = orjson.loads(_body(answer))["error"]
        assert error["message"] == "the request's body did not arrive in time"
        assert await _closed_count(gw, "body_timeout") >= 1
        # the endpoint saw its client gone, started nothing, and counted a refusal
        rejected = 'sluice_rejected_requests_total{endpoint="chat",type="request_timeout"}'
        for _ in range(int(WAIT / 0.05)):  # a bounded wait for the endpoint's own step
            if await _metric(gw, rejected) >= 1:
                break
            await asyncio.sleep(0.05)
        assert await _metric(gw, rejected) == 1
        assert gw.gateway.sessions.live == {}


async def test_a_body_in_time_is_served_under_a_short_body_timeout(tmp_path: Path) -> None:
    async with gateway_limited(tmp_path, body_timeout=5.0) as gw:
        response = await gw.http.post(
            "/v1/chat/completions",
            json={"model": "sim/support", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"]


# -- the ceiling ------------------------------------------------------------------------------


async def test_at_the_ceiling_the_oldest_waiting_connection_makes_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway_limited(tmp_path, max_connections=8, header_timeout=60.0) as gw:
        await gw.http.get("/healthz")  # the test's own client: one kept-alive connection
        with caplog.at_level(logging.WARNING, logger="sluice.server"):
            idle = [await _connect(gw) for _ in range(20)]
            response = await gw.http.get("/healthz")  # still served
            assert response.status_code == 200
            # the first of the idle connections were closed by the server to make room
            assert await _read_to_close(idle[0][0]) == b""
        assert await _metric(gw, "sluice_client_connections") <= 8
        assert await _metric(gw, "sluice_client_connection_ceiling") == 8
        assert await _closed_count(gw, "shed") >= 12
        messages = [r.getMessage() for r in caplog.records]
        near = next(i for i, m in enumerate(messages) if "connections near the ceiling" in m)
        at = next(i for i, m in enumerate(messages) if "connections at the ceiling" in m)
        assert near < at  # said as the ceiling neared, then as it was reached
        assert "ceiling=8" in caplog.text
        for _reader, writer in idle:
            writer.close()


def test_the_ceiling_is_half_the_descriptors_left_after_a_reserve() -> None:
    assert connection_ceiling(ClientLimits(), 1024) == 480
    assert connection_ceiling(ClientLimits(max_connections=100), 1024) == 100
    assert connection_ceiling(ClientLimits(), 20) == 16  # never less than a few


def test_a_guard_without_metrics_counts_nothing_and_keeps_its_queues_empty() -> None:
    guard = ClientGuard(ClientLimits())
    guard.closed("shed")  # no metrics: nothing to count, no error
    assert (guard.heads, guard.bodies, guard.idle) == ({}, {}, {})


# -- what the bounds leave alone --------------------------------------------------------------


async def test_streams_outlive_every_client_deadline(tmp_path: Path) -> None:
    """A response under way, SSE or WebSocket, is in none of the guard's queues: streams
    open for longer than every timeout keep flowing."""
    short = {"header_timeout": 0.2, "idle_timeout": 0.2, "body_timeout": 0.2}
    async with gateway_limited(tmp_path, **short) as gw:
        session_id = await start(gw, headers=LONG)
        await tokens_when_running(gw, session_id)
        async with (
            gw.http.stream("GET", f"/api/sessions/{session_id}/events") as sse,
            open_socket(gw, session_id) as ws,
        ):
            first = await receive(ws)
            await asyncio.sleep(1.0)  # five times every timeout
            assert gw.gateway.sessions.live[session_id].state == "streaming"
            assert (await receive(ws))["id"] > first["id"]  # the socket still delivers
            got = b""
            async with asyncio.timeout(WAIT):
                async for chunk in sse.aiter_bytes():
                    got += chunk
                    if got.count(b"\nid: ") >= 3:
                        break
        assert await _closed_count(gw, "header_timeout") == 0
        gw.gateway.sessions.require(session_id).cancel("test_done")  # (if not over already)
        await gw.final_record(session_id)
