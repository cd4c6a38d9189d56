"""The benchmark's Python floor (``python -m sluice.bench.pipe``): a byte pipe to the mock that
relays what the mock says, unchanged, on kept-alive connections, and lets go of the mock's
connection when its client goes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from sluice.bench.mock import MockServer
from tests.bench.test_mock import PATHS, decode, exchange, request
from tests.distributed.conftest import eventually


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer() as server:
        yield server


@pytest.fixture
async def pipe(mock: MockServer) -> AsyncIterator[MockServer]:
    """The pipe in its own process, in front of the mock; answers its address as a
    ``MockServer``-shaped (host, port) pair for ``exchange``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sluice.bench.pipe",
        "--port",
        "0",
        "--upstream-port",
        str(mock.port),
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"listening "), line
        host, _, port = line.split()[1].decode().rpartition(":")
        front = MockServer.__new__(MockServer)
        front.host, front.port = host, int(port)
        yield front
    finally:
        process.kill()
        await process.wait()


async def test_a_stream_through_the_pipe_is_the_mocks_own(
    mock: MockServer, pipe: MockServer
) -> None:
    direct_head, direct_body = await exchange(mock, request(PATHS["chat"], "mock/fast"))
    head, body = await exchange(pipe, request(PATHS["chat"], "mock/fast"))
    assert head.split(b"\r\n")[0] == direct_head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    relayed, expected = decode(body), decode(direct_body)
    assert len(relayed) == len(expected) > 60
    assert [e.data for e in relayed][-2:] == [e.data for e in expected][-2:]
    assert relayed[-1].data == "[DONE]"


async def test_two_requests_on_one_kept_alive_connection(
    mock: MockServer, pipe: MockServer
) -> None:
    reader, writer = await asyncio.open_connection(pipe.host, pipe.port)
    for _ in range(2):
        writer.write(request(PATHS["chat"], "mock/fast", close=False))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 OK")
        body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10)
        assert decode(body)[-1].data == "[DONE]"
    assert mock.counters.connections == 1  # one connection to the mock for both
    writer.close()
    await writer.wait_closed()


async def test_a_client_gone_mid_stream_closes_the_mocks_connection(
    mock: MockServer, pipe: MockServer
) -> None:
    reader, writer = await asyncio.open_connection(pipe.host, pipe.port)
    writer.write(request(PATHS["chat"], "mock/64x50"))  # 3.2 s of deltas
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert mock.counters.streams_open == 1
    writer.close()
    await writer.wait_closed()

    async def mock_let_go() -> bool:
        return mock.counters.streams_open == 0

    await eventually(mock_let_go)
    assert mock.counters.streams_completed == 0  # cut off, not played to its end
