"""A request body over the simulator's ``max_body_bytes`` is refused 413 in the format's error
shape: on its ``content-length`` before any of it is read, else once the cap is passed; the
connection is closed so the rest is never read."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest

from .helpers import Sim

#: a generous bound on any wait for the simulator: a hang fails the test
WAIT = 30.0
BIG = 50 * 1024 * 1024


async def _raw(sim: Sim, head: bytes, body_size: int, chunked: bool) -> tuple[bytes, int]:
    """Send ``head`` then up to ``body_size`` bytes of body while reading the answer; returns
    the answer (up to the server's close) and how many body bytes were written by then."""
    host, port = sim.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    sent = 0

    async def send() -> None:
        nonlocal sent
        piece = b"x" * 65536
        with contextlib.suppress(ConnectionError):
            while sent < body_size:
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
                await writer.drain()

    sending = asyncio.ensure_future(send())
    answer = b""
    try:
        async with asyncio.timeout(WAIT):
            while chunk := await reader.read(65536):
                answer += chunk
    except ConnectionResetError:
        pass
    finally:
        sending.cancel()
        writer.close()
    return answer, sent


@pytest.mark.parametrize(
    ("path", "error_type"),
    [("/v1/chat/completions", "invalid_request_error"), ("/v1/messages", "request_too_large")],
)
async def test_a_declared_body_over_the_cap_is_refused_before_it_is_read(
    sim: Sim, path: str, error_type: str
) -> None:
    head = b"POST %b HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % (path.encode(), BIG)
    answer, sent = await _raw(sim, head, BIG, chunked=False)
    status = int(answer.split(b" ", 2)[1])
    assert status == 413
    assert b"connection: close" in answer.lower()
    assert sent < BIG  # the connection was closed under the writer
    body = orjson.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["error"]["type"] == error_type


async def test_an_undeclared_body_is_refused_once_past_the_cap(sim: Sim) -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    answer, sent = await _raw(sim, head, BIG, chunked=True)
    assert int(answer.split(b" ", 2)[1]) == 413
    assert sent < BIG
    # the response is chunked: its JSON is inside one chunk
    assert b'"code":"request_too_large"' in answer
    records = await sim.records()
    assert records[-1]["status"] == 413


async def test_a_body_under_the_cap_is_served(sim: Sim) -> None:
    async with sim.http() as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "support", "messages": [{"role": "user", "content": "x" * 100_000}]},
        )
    assert response.status_code == 200
