"""The transport contract (``sluice.upstream.Upstream``), one suite run against every transport:
the gateway's own client (``fast``), ``httpx`` and ``aiohttp``, each against a real HTTP/1.1
server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from sluice.errors import (
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamDropped,
    UpstreamEncoded,
    UpstreamError,
    UpstreamNotEventStream,
    UpstreamRedirect,
    UpstreamStalled,
    UpstreamStatus,
    UpstreamTooLarge,
)
from sluice.transports.network import Network
from sluice.transports.select import make_transport
from sluice.upstream import Upstream, UpstreamStream
from tests.transport.servers import LAST_CHUNK, OK_CHUNKED, chunk, origin, sse_answer

TRANSPORTS = ("fast", "httpx", "aiohttp")

MakeUpstream = Callable[..., Upstream]


@pytest.fixture(params=TRANSPORTS)
async def make(request: pytest.FixtureRequest) -> AsyncIterator[MakeUpstream]:
    """``make(connect_timeout=..., stall_timeout=...)``: a transport of the kind under test,
    direct (no proxy from the environment), closed after the test."""
    made: list[Upstream] = []

    def factory(
        connect_timeout: float = 10.0,
        stall_timeout: float | None = None,
        max_body: int = 1024 * 1024,
    ) -> Upstream:
        network = Network(environ={})
        upstream = make_transport(request.param, network, connect_timeout, stall_timeout, max_body)
        made.append(upstream)
        return upstream

    yield factory
    for upstream in made:
        await upstream.close()


async def read_all(stream: UpstreamStream) -> list[bytes]:
    pieces: list[bytes] = []
    await stream.start(pieces.append)
    return pieces


async def test_the_body_arrives_in_order_with_status_and_kept_headers(make: MakeUpstream) -> None:
    upstream = make()
    async with origin(sse_answer) as server:
        for _ in range(2):  # the second on a pooled connection where the transport pools
            stream = await upstream.open(server.url, {"content-type": "application/json"}, b"{}")
            assert stream.status == 200
            assert stream.headers["content-type"] == "text/event-stream"
            assert stream.headers["x-request-id"] == "req-1"
            assert "x-ratelimit-remaining" not in stream.headers
            assert b"".join(await read_all(stream)) == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
            stream.release()
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions?key=secret HTTP/1.1\r\n")
    assert request.endswith(b"\r\n\r\n{}")
    assert b"accept-encoding: identity\r\n" in request.lower()
    assert len(server.requests) == 2


async def test_pieces_are_pushed_as_they_arrive_not_when_the_body_ends(
    make: MakeUpstream,
) -> None:
    """The server writes its second event only after the sink has the first."""
    first_seen = asyncio.Event()

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED + chunk(b"data: 1\n\n"))
        await w.drain()
        await first_seen.wait()
        w.write(chunk(b"data: 2\n\n") + LAST_CHUNK)

    upstream = make()
    pieces: list[bytes] = []
    flushes: list[int] = []

    def sink(piece: bytes) -> None:
        pieces.append(piece)
        first_seen.set()

    async with origin(answer) as server:
        stream = await upstream.open(server.url, {}, b"{}")
        async with asyncio.timeout(30):
            await stream.start(sink, lambda: flushes.append(len(pieces)))
        stream.release()
    assert b"".join(pieces) == b"data: 1\n\ndata: 2\n\n"
    assert flushes and flushes[-1] == len(pieces)  # a flush follows the last piece


async def test_an_error_status_raises_with_the_providers_message_and_retry_after(
    make: MakeUpstream,
) -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        body = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'
        w.write(
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-type: application/json"
            b"\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )

    upstream = make()
    async with origin(answer) as server:
        with pytest.raises(UpstreamStatus) as caught:
            await upstream.open(server.url, {}, b"{}")
    assert caught.value.status == 429
    assert caught.value.message == "slow down"
    assert caught.value.retry_after == 7.0
    assert caught.value.retryable and caught.value.type == "rate_limited"


async def test_a_refused_connection_is_a_connect_error_naming_the_origin_not_the_query(
    make: MakeUpstream, unused_port: int
) -> None:
    upstream = make(connect_timeout=5)
    with pytest.raises(UpstreamConnectError) as caught:
        await upstream.open(f"http://127.0.0.1:{unused_port}/v1/x?key=secret", {}, b"{}")
    assert f"127.0.0.1:{unused_port}" in caught.value.message
    assert "secret" not in caught.value.message
    assert caught.value.type == "upstream_unreachable"


async def test_a_url_that_is_not_http_is_a_connect_error(make: MakeUpstream) -> None:
    with pytest.raises(UpstreamConnectError):
        await make().open("ftp://127.0.0.1/v1", {}, b"{}")


async def test_a_body_that_breaks_mid_stream_fails_with_upstream_broken(
    make: MakeUpstream,
) -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED + chunk(b"data: 1\n\n"))
        await w.drain()
        w.transport.abort()

    upstream = make()
    pieces: list[bytes] = []
    async with origin(answer) as server:
        stream = await upstream.open(server.url, {}, b"{}")
        with pytest.raises(UpstreamBroken):
            async with asyncio.timeout(30):
                await stream.start(pieces.append)
        stream.close()
    assert b"".join(pieces) == b"data: 1\n\n"


async def test_silence_past_the_stall_deadline_after_the_headers_is_upstream_stalled(
    make: MakeUpstream,
) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED + chunk(b"data: 1\n\n"))
        await w.drain()
        await r.read()  # silent until the client goes

    upstream = make(stall_timeout=0.3)
    async with origin(answer) as server:
        stream = await upstream.open(server.url, {}, b"{}")
        with pytest.raises(UpstreamStalled):
            async with asyncio.timeout(30):
                await stream.start(lambda _piece: None)
        stream.close()


async def test_silence_before_the_headers_is_a_connect_error(make: MakeUpstream) -> None:
    async def answer(r: asyncio.StreamReader, _w: asyncio.StreamWriter, _req: bytes) -> None:
        await r.read()

    upstream = make(connect_timeout=0.3, stall_timeout=0.3)
    async with origin(answer) as server:
        with pytest.raises(UpstreamConnectError):
            async with asyncio.timeout(30):
                await upstream.open(server.url, {}, b"{}")


async def test_close_mid_stream_reaches_the_server_and_is_idempotent(make: MakeUpstream) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED + chunk(b"data: 1\n\n"))
        await w.drain()
        await r.read()  # until the client closes
        raise ConnectionError

    upstream = make()
    async with origin(answer) as server:
        stream = await upstream.open(server.url, {}, b"{}")
        done = stream.start(lambda _piece: None)
        stream.close()
        stream.close()
        stream.release()
        async with asyncio.timeout(30):
            await server.closed_by_client.wait()
    assert done.cancelled()


async def test_finish_ends_the_result_at_once(make: MakeUpstream) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED + chunk(b"data: 1\n\n"))
        await w.drain()
        await r.read()

    upstream = make()
    async with origin(answer) as server:
        stream = await upstream.open(server.url, {}, b"{}")
        pieces: list[bytes] = []

        def sink(piece: bytes) -> None:
            pieces.append(piece)
            stream.finish()

        async with asyncio.timeout(30):
            await stream.start(sink)
        stream.close()
    assert pieces == [b"data: 1\n\n"]


async def test_an_exception_in_the_sink_ends_the_stream_with_it(make: MakeUpstream) -> None:
    class Refused(Exception):
        pass

    def sink(_piece: bytes) -> None:
        raise Refused

    upstream = make()
    async with origin(sse_answer) as server:
        stream = await upstream.open(server.url, {}, b"{}")
        with pytest.raises(Refused):
            async with asyncio.timeout(30):
                await stream.start(sink)
        stream.close()


async def test_pause_holds_the_pieces_until_resume(make: MakeUpstream) -> None:
    paused = asyncio.Event()

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED + chunk(b"data: 1\n\n"))
        await w.drain()
        await paused.wait()
        w.write(chunk(b"data: 2\n\n") + LAST_CHUNK)

    upstream = make()
    async with origin(answer) as server:
        stream = await upstream.open(server.url, {}, b"{}")
        pieces: list[bytes] = []

        def sink(piece: bytes) -> None:
            pieces.append(piece)
            if len(pieces) == 1:
                stream.pause()
                paused.set()

        done = stream.start(sink)
        await paused.wait()
        await asyncio.sleep(0.2)  # the second event is written, and not read
        assert pieces == [b"data: 1\n\n"] and not done.done()
        stream.resume()
        async with asyncio.timeout(30):
            await done
        stream.release()
    assert b"".join(pieces) == b"data: 1\n\ndata: 2\n\n"


async def test_accepted_is_resolved_for_a_good_status_and_not_for_an_error(
    make: MakeUpstream,
) -> None:
    async def refuse(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(b"HTTP/1.1 500 Oops\r\ncontent-length: 2\r\n\r\n{}")

    upstream = make()
    loop = asyncio.get_running_loop()
    async with origin(sse_answer) as server:
        accepted: asyncio.Future[None] = loop.create_future()
        stream = await upstream.open(server.url, {}, b"{}", accepted=accepted)
        assert accepted.done()
        await read_all(stream)
        stream.release()
    async with origin(refuse) as server:
        accepted = loop.create_future()
        with pytest.raises(UpstreamStatus):
            await upstream.open(server.url, {}, b"{}", accepted=accepted)
        assert not accepted.done()


async def test_a_pending_request_that_is_closed_unawaited_is_harmless(make: MakeUpstream) -> None:
    upstream = make()
    async with origin(sse_answer) as server:
        upstream.open(server.url, {}, b"{}").close()
        stream = await upstream.open(server.url, {}, b"{}")
        assert b"".join(await read_all(stream)).endswith(b"[DONE]\n\n")
        stream.release()


async def test_an_ipv6_literal_in_the_url_is_reached(make: MakeUpstream) -> None:
    upstream = make()
    async with origin(sse_answer, host="::1") as server:
        assert server.url.startswith("http://[::1]:")
        stream = await upstream.open(server.url, {}, b"{}")
        assert b"".join(await read_all(stream)).endswith(b"[DONE]\n\n")
        stream.release()
    assert f"host: [::1]:{server.port}\r\n".encode() in server.requests[0].lower()


@pytest.mark.parametrize(
    ("head", "refusal"),
    [
        (
            b"HTTP/1.1 307 Temporary Redirect\r\nlocation: https://elsewhere.test/v1?key=k\r\n",
            UpstreamRedirect,
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n", UpstreamNotEventStream),
        (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n",
            UpstreamEncoded,
        ),
    ],
)
async def test_an_answer_that_is_no_event_stream_is_refused_before_accepted(
    make: MakeUpstream, head: bytes, refusal: type[UpstreamError]
) -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(head + b"content-length: 9\r\n\r\n<html/>\r\n")

    upstream = make()
    accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    async with origin(answer) as server:
        with pytest.raises(refusal) as caught:
            await upstream.open(server.url, {}, b"{}", accepted=accepted)
    assert not accepted.done() and not caught.value.retryable
    assert "key=k" not in caught.value.message
    assert len(server.requests) == 1  # no redirect followed


async def test_comments_alone_do_not_hold_off_the_stall_deadline(make: MakeUpstream) -> None:
    """Given the consumer's progress count, only content resets the deadline: a provider that
    sends nothing but ``: ping`` comments stalls."""

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED + chunk(b"data: 1\n\n"))
        while True:
            await asyncio.sleep(0.05)
            w.write(chunk(b": ping\n\n"))
            await w.drain()

    upstream = make(stall_timeout=0.5)
    content = 0
    pieces: list[bytes] = []

    def sink(piece: bytes) -> None:
        nonlocal content
        pieces.append(piece)
        if not piece.startswith(b":"):
            content += 1

    async with origin(answer) as server:
        stream = await upstream.open(server.url, {}, b"{}")
        with pytest.raises(UpstreamStalled):
            async with asyncio.timeout(30):
                await stream.start(sink, None, lambda: content)
        stream.close()
    assert content == 1 and len(pieces) > 2  # pings came, and did not count


async def test_a_body_over_its_bound_is_upstream_too_large(make: MakeUpstream) -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED)
        for _ in range(400):
            w.write(chunk(b"data: " + b"x" * 1000 + b"\n\n"))
            await w.drain()
        w.write(LAST_CHUNK)

    upstream = make(max_body=16 * 1024)
    received: list[bytes] = []
    async with origin(answer) as server:
        stream = await upstream.open(server.url, {}, b"{}")
        with pytest.raises(UpstreamTooLarge):
            async with asyncio.timeout(30):
                await stream.start(received.append)
        stream.close()
    # what got through: the bound, and at most one read of the socket past it (the fast
    # client checks the bound per read)
    assert sum(map(len, received)) <= 16 * 1024 + 64 * 1024


async def test_a_connection_closed_after_the_request_is_an_attempt_never_resent(
    make: MakeUpstream,
) -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.close()  # read the request, answer nothing

    upstream = make()
    async with origin(answer) as server:
        with pytest.raises(UpstreamDropped) as caught:
            await upstream.open(server.url, {}, b"{}")
    assert caught.value.retryable and "secret" not in caught.value.message
    assert len(server.requests) == 1 and server.connections == 1
