"""The upstream client against a real HTTP server on loopback, written byte by byte so that each
test controls framing, timing and the connection's end."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from sluice.errors import (
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamDropped,
    UpstreamEncoded,
    UpstreamHeaderInvalid,
    UpstreamNotEventStream,
    UpstreamRedirect,
    UpstreamStalled,
    UpstreamStatus,
    UpstreamTooLarge,
)
from sluice.upstream import Sink, UpstreamClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


class Origin:
    """A loopback HTTP/1.1 server: reads each request whole, then lets the test's handler write
    the answer; records the requests and counts the connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed_by_client = asyncio.Event()
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                await self.handler(reader, writer, request)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client.set()
        finally:
            writer.close()


@asynccontextmanager
async def origin(handler: Handler) -> AsyncIterator[Origin]:
    server_side = Origin(handler)
    server = await asyncio.start_server(server_side.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server_side.url = f"http://127.0.0.1:{port}/v1/chat/completions?key=secret"
    async with server:
        yield server_side


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


OK_CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
#: a good status line and the content type, the rest of the head to follow
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"


def collecting(pieces: list[bytes], count: int, then: Callable[[], None]) -> Sink:
    """A sink that keeps the pieces and calls ``then`` once it has ``count`` of them."""

    def sink(piece: bytes) -> None:
        pieces.append(piece)
        if len(pieces) == count:
            then()

    return sink


async def collect(client: UpstreamClient, url: str) -> tuple[list[bytes], int]:
    stream = await client.open(url, {"content-type": "application/json"}, b'{"a": 1}')
    pieces: list[bytes] = []
    await stream.start(pieces.append)
    stream.release()
    return pieces, stream.status


async def test_a_chunked_body_is_pushed_as_it_arrives_and_the_connection_is_reused() -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED + b"6\r\ndata: \r\n")
        await w.drain()
        await asyncio.sleep(0.05)
        w.write(b"3\r\n1\n\n\r\n0\r\n\r\n")

    client = UpstreamClient()
    async with origin(answer) as server:
        first, status = await collect(client, server.url)
        second, _ = await collect(client, server.url)
    await client.close()
    assert status == 200
    assert b"".join(first) == b"data: 1\n\n" and len(first) == 2  # two reads, two pieces
    assert b"".join(second) == b"data: 1\n\n"
    assert server.connections == 1
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions?key=secret HTTP/1.1\r\n")
    assert b"content-length: 8\r\n" in request and request.endswith(b'\r\n\r\n{"a": 1}')
    assert b"content-type: application/json\r\n" in request


async def test_the_pieces_of_one_read_are_flushed_together() -> None:
    """``flush`` follows the last piece of each read: once for the pieces that came before
    ``start()``, once for three HTTP chunks written at once, once for a piece of its own."""
    later = asyncio.Event()

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED + b"3\r\nab\n\r\n")
        await later.wait()
        w.write(b"2\r\nc\n\r\n2\r\nd\n\r\n2\r\ne\n\r\n")
        await w.drain()
        await asyncio.sleep(0.05)
        w.write(b"2\r\nf\n\r\n0\r\n\r\n")

    calls: list[bytes | None] = []  # a piece, or None for a flush
    client = UpstreamClient()
    async with origin(answer) as server:
        stream = await client.open(server.url, {}, b"{}")  # "ab" came with the headers
        done = stream.start(calls.append, lambda: calls.append(None))
        later.set()
        await done
        stream.release()
    await client.close()
    pieces = [call for call in calls if call is not None]
    assert b"".join(pieces) == b"ab\nc\nd\ne\nf\n"
    assert calls[:6] == [b"ab\n", None, b"c\n", b"d\n", b"e\n", None]
    assert calls[6:8] == [b"f\n", None]


async def test_a_response_keeps_only_the_headers_it_reads() -> None:
    """A provider's twenty-odd other headers (rate limits, cookies, CDN) are not held by every
    open stream; the request id and the framing headers are."""

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Request-Id: req_1\r\n"
            b"x-ratelimit-remaining-tokens: 999\r\nset-cookie: a=b\r\ncf-ray: 1\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + chunked(b"data: 1\n\n")
        )

    client = UpstreamClient()
    async with origin(answer) as server:
        stream = await client.open(server.url, {}, b"{}")
        pieces: list[bytes] = []
        await stream.start(pieces.append)
        stream.release()
    await client.close()
    assert b"".join(pieces) == b"data: 1\n\n"
    assert dict(stream.headers) == {
        "content-type": "text/event-stream",
        "x-request-id": "req_1",
        "transfer-encoding": "chunked",
    }


async def test_a_body_with_a_length_or_up_to_the_connections_end() -> None:
    async def with_length(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(SSE_HEAD + b"content-length: 5\r\n\r\nhello")

    async def until_close(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(SSE_HEAD + b"connection: close\r\n\r\nhello ")
        await w.drain()
        w.write(b"world")
        await w.drain()
        w.close()

    client = UpstreamClient()
    async with origin(with_length) as server:
        assert b"".join((await collect(client, server.url))[0]) == b"hello"
    async with origin(until_close) as server:
        assert b"".join((await collect(client, server.url))[0]) == b"hello world"
        assert b"".join((await collect(client, server.url))[0]) == b"hello world"
        assert server.connections == 2  # "connection: close" is not pooled
    await client.close()


async def test_a_compressed_stream_is_refused_and_nothing_is_decompressed() -> None:
    """The request asks for ``identity``: a gzip (or deflate, or br) stream sent anyway is a
    refusal, before ``accepted``; its bytes are never inflated."""
    body = gzip.compress(b"data: {}\n\n" * 100)
    head = SSE_HEAD + b"content-encoding: %s\r\ntransfer-encoding: chunked\r\n\r\n"
    encodings = [b"gzip", b"deflate", b"br"]

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(head % encodings.pop(0) + chunked(body[:20], body[20:]))

    client = UpstreamClient()
    loop = asyncio.get_running_loop()
    async with origin(answer) as server:
        for name in ("gzip", "deflate", "br"):
            accepted: asyncio.Future[None] = loop.create_future()
            with pytest.raises(UpstreamEncoded, match=name) as caught:
                await client.open(server.url, {}, b"{}", accepted=accepted)
            assert caught.value.type == "upstream_encoded" and not caught.value.retryable
            assert not accepted.done()
        assert b"accept-encoding: identity\r\n" in server.requests[0]
    await client.close()


async def test_a_compressed_error_body_is_read_within_its_bound() -> None:
    """An error status's body is read for its message: inflated if compressed, but never
    past 64 KB, whatever it would expand to (a 10 MB bomb here)."""
    message = b'{"error": {"message": "slow down"}}'
    bomb = gzip.compress(message + b"x" * 10_000_000)

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(b"HTTP/1.1 429 Too Many Requests\r\ncontent-encoding: gzip\r\n")
        w.write(b"content-length: %d\r\n\r\n%s" % (len(bomb), bomb))

    client = UpstreamClient()
    async with origin(answer) as server:
        with pytest.raises(UpstreamStatus) as caught:
            await client.open(server.url, {}, b"{}")
    await client.close()
    assert caught.value.type == "rate_limited"
    # the body was cut at 64 KB: not valid JSON, so the message is its start
    assert caught.value.message.startswith('{"error": {"message": "slow down"}}')
    assert len(caught.value.message) <= 500


@pytest.mark.parametrize("status", [b"301 Moved Permanently", b"302 Found", b"307 Temporary"])
async def test_a_redirect_is_a_refusal_naming_the_origin_only(status: bytes) -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(b"HTTP/1.1 %s\r\nlocation: https://elsewhere.example/v1?key=secret\r\n" % status)
        w.write(b"content-length: 0\r\n\r\n")

    client = UpstreamClient()
    async with origin(answer) as server:
        with pytest.raises(UpstreamRedirect) as caught:
            await client.open(server.url, {}, b"{}")
        assert len(server.requests) == 1  # not followed
    await client.close()
    assert caught.value.type == "upstream_redirect" and not caught.value.retryable
    assert "https://elsewhere.example" in caught.value.message
    assert "secret" not in caught.value.message


async def test_an_answer_that_is_not_an_event_stream_is_a_refusal_naming_its_type() -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n")
        w.write(b"content-length: 15\r\n\r\n<html>hi</html>")

    client = UpstreamClient()
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[None] = loop.create_future()
    async with origin(answer) as server:
        with pytest.raises(UpstreamNotEventStream) as caught:
            await client.open(server.url, {}, b"{}", accepted=accepted)
    await client.close()
    assert caught.value.type == "upstream_not_event_stream"
    assert "text/html; charset=utf-8" in caught.value.message
    assert not accepted.done()


async def test_headers_and_a_body_over_their_bounds_are_too_large() -> None:
    async def endless_headers(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(SSE_HEAD)
        for _ in range(2000):
            w.write(b"x-padding: " + b"p" * 100 + b"\r\n")
            await w.drain()

    async def long_body(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(OK_CHUNKED)
        for _ in range(100):
            w.write(b"%x\r\n%s\r\n" % (1024, b": " + b"x" * 1021 + b"\n"))
            await w.drain()

    client = UpstreamClient(max_body=16 * 1024)
    async with origin(endless_headers) as server:
        with pytest.raises(UpstreamTooLarge, match="headers"):
            await client.open(server.url, {}, b"{}")
    async with origin(long_body) as server:
        stream = await client.open(server.url, {}, b"{}")
        received: list[bytes] = []
        with pytest.raises(UpstreamTooLarge, match="body"):
            await stream.start(received.append)
        stream.close()
    await client.close()
    # the bound holds to within one read (the read that ends the headers counts as head)
    assert 8 * 1024 < sum(map(len, received)) <= 16 * 1024 + 64 * 1024


async def test_a_header_value_outside_latin1_is_refused_without_showing_it() -> None:
    client = UpstreamClient()
    with pytest.raises(UpstreamHeaderInvalid) as caught:
        await client.open("http://127.0.0.1:9/v1", {"authorization": "Bearer sk-\u201ckey"}, b"")
    await client.close()
    error = caught.value
    assert error.type == "upstream_header_invalid" and not error.retryable
    assert "authorization" in error.message and "latin-1" in error.message
    assert "sk-" not in error.message and "key\u201d" not in error.message


async def test_a_connection_that_closes_after_the_request_is_an_attempt_not_a_resend() -> None:
    """A pooled connection that the server closes after reading the request: the request is
    not sent again on another connection (the provider may be generating); the attempt fails
    ``upstream_dropped``, retryable, for the caller's retry policy."""

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, q: bytes) -> None:
        if q.endswith(b"first"):
            w.write(OK_CHUNKED + chunked(b"data: 1\n\n"))
        else:
            w.transport.abort()  # read the request, then go without a word

    client = UpstreamClient()
    async with origin(answer) as server:
        stream = await client.open(server.url, {}, b"first")
        await stream.start(lambda _: None)
        stream.release()
        with pytest.raises(UpstreamDropped) as caught:
            await client.open(server.url, {}, b"second")
        assert [q.endswith(b"second") for q in server.requests] == [False, True]
        assert server.connections == 1
    await client.close()
    assert caught.value.type == "upstream_dropped" and caught.value.retryable


async def test_the_stall_deadline_counts_content_not_comments() -> None:
    """Given a progress count, bytes that add nothing to it (comments, pings) do not reset
    the deadline: a stream of comments only stalls."""

    async def comments(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(OK_CHUNKED)
        for _ in range(400):
            w.write(chunked(b": keep-alive\n\n")[:-5])
            await w.drain()
            await asyncio.sleep(0.01)

    client = UpstreamClient(stall_timeout=0.3)
    async with origin(comments) as server:
        stream = await client.open(server.url, {}, b"")
        received: list[bytes] = []
        with pytest.raises(UpstreamStalled, match="content"):
            await stream.start(received.append, None, lambda: 0)
        stream.close()
    await client.close()
    assert len(received) > 2  # the comments kept coming: only content counts


async def test_an_error_status_raises_with_the_providers_message_and_retry_after() -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        body = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'
        w.write(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\n")
        w.write(b"content-length: %d\r\n\r\n%s" % (len(body), body))

    client = UpstreamClient()
    async with origin(answer) as server:
        with pytest.raises(UpstreamStatus) as caught:
            await client.open(server.url, {}, b"{}")
    await client.close()
    error = caught.value
    assert (error.status, error.type, error.retryable) == (429, "rate_limited", True)
    assert error.message == "slow down" and error.retry_after == 2.0


async def test_no_server_is_a_connect_error_naming_the_origin_but_not_the_query() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = UpstreamClient(connect_timeout=5)
    with pytest.raises(UpstreamConnectError) as caught:
        await client.open(f"http://127.0.0.1:{port}/v1/x?key=secret", {}, b"")
    await client.close()
    assert f"127.0.0.1:{port}" in caught.value.message
    assert "secret" not in caught.value.message
    assert caught.value.retryable


async def test_a_body_that_breaks_mid_stream_fails_with_upstream_broken() -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(OK_CHUNKED + b"6\r\ndata: \r\n")
        await w.drain()
        w.close()

    client = UpstreamClient()
    async with origin(answer) as server:
        stream = await client.open(server.url, {}, b"")
        pieces: list[bytes] = []
        with pytest.raises(UpstreamBroken):
            await stream.start(pieces.append)
        stream.close()
    await client.close()
    assert pieces == [b"data: "]  # what came before the break was delivered


async def test_silence_past_the_stall_deadline_fails_before_and_after_the_headers() -> None:
    release = asyncio.Event()
    closed = asyncio.Event()

    async def headers_then_silence(
        r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes
    ) -> None:
        w.write(OK_CHUNKED + b"6\r\ndata: \r\n")
        if not await r.read():  # the client's end of the connection
            closed.set()

    async def silence(_r: asyncio.StreamReader, _w: asyncio.StreamWriter, _q: bytes) -> None:
        await release.wait()

    client = UpstreamClient(stall_timeout=0.2)
    async with origin(headers_then_silence) as server:
        stream = await client.open(server.url, {}, b"")
        with pytest.raises(UpstreamStalled, match=r"0\.2 s"):
            await stream.start(lambda piece: None)
        await asyncio.wait_for(closed.wait(), 10)
    async with origin(silence) as server:
        with pytest.raises(UpstreamConnectError, match="no answer"):
            await client.open(server.url, {}, b"")
    release.set()
    await client.close()


async def test_a_pooled_connection_the_server_closed_is_replaced_transparently() -> None:
    async def answer_and_close(
        _r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes
    ) -> None:
        # a keep-alive answer, then the server drops the idle connection without a word
        w.write(SSE_HEAD + b"content-length: 2\r\n\r\nok")
        await w.drain()
        await asyncio.sleep(0.05)
        w.transport.abort()

    client = UpstreamClient()
    async with origin(answer_and_close) as server:
        assert b"".join((await collect(client, server.url))[0]) == b"ok"
        await asyncio.sleep(0.2)  # the server closes the pooled connection meanwhile
        assert b"".join((await collect(client, server.url))[0]) == b"ok"
        assert server.connections == 2
    await client.close()


async def test_pause_stops_reading_and_resume_reads_on() -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(OK_CHUNKED)
        for n in range(20):
            w.write(chunked(b"piece %d;" % n)[:-5])  # one chunk each, the end comes last
            await w.drain()
            await asyncio.sleep(0.01)
        w.write(b"0\r\n\r\n")

    client = UpstreamClient()
    async with origin(answer) as server:
        stream = await client.open(server.url, {}, b"")
        pieces: list[bytes] = []
        done = asyncio.ensure_future(stream.start(collecting(pieces, 1, stream.pause)))
        await asyncio.sleep(0.5)  # long enough for every piece to have been sent
        assert pieces == [b"piece 0;"] and not done.done()
        stream.resume()
        await done
        stream.release()
    await client.close()
    assert b"".join(pieces) == b"".join(b"piece %d;" % n for n in range(20))


async def test_close_mid_stream_closes_the_connection_and_finish_then_release_pools_it() -> None:
    async def endless(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(OK_CHUNKED)
        while True:
            w.write(chunked(b"data: x\n\n")[:-5])
            await w.drain()
            await asyncio.sleep(0.01)

    async def done_then_end(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(OK_CHUNKED + chunked(b"data: [DONE]\n\n")[:-5])
        await w.drain()
        await asyncio.sleep(0.05)
        w.write(b"0\r\n\r\n")

    client = UpstreamClient()
    async with origin(endless) as server:
        stream = await client.open(server.url, {}, b"")
        pieces: list[bytes] = []
        await stream.start(collecting(pieces, 3, stream.finish))
        stream.close()
        await asyncio.wait_for(server.closed_by_client.wait(), 10)
        assert len(pieces) == 3
    async with origin(done_then_end) as server:
        for _ in range(2):
            stream = await client.open(server.url, {}, b"")
            await stream.start(lambda piece, stream=stream: stream.finish())  # type: ignore[misc]
            stream.release()  # before the body's end: the end is awaited, then it is pooled
            await asyncio.sleep(0.2)
        assert server.connections == 1
    await client.close()


async def test_an_exception_in_the_sink_ends_the_stream_with_it() -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(OK_CHUNKED + chunked(b"one", b"two"))

    def sink(piece: bytes) -> None:
        raise ValueError(piece.decode())

    client = UpstreamClient()
    async with origin(answer) as server:
        stream = await client.open(server.url, {}, b"")
        with pytest.raises(ValueError, match="one"):
            await stream.start(sink)
        stream.close()
    await client.close()


async def test_bad_urls_headers_and_answers_are_connect_errors() -> None:
    async def garbage(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        w.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    client = UpstreamClient()
    with pytest.raises(UpstreamConnectError, match="http"):
        await client.open("ftp://example.com/v1", {}, b"")
    with pytest.raises(UpstreamConnectError, match="line break"):
        await client.open("http://127.0.0.1:9/v1", {"x-evil": "a\r\nhost: b"}, b"")
    async with origin(garbage) as server:
        with pytest.raises(UpstreamConnectError, match="invalid HTTP"):
            await client.open(server.url, {}, b"")
    await client.close()


async def test_open_sends_on_an_idle_pooled_connection_before_it_is_awaited() -> None:
    """A caller may open in one step of the loop and await in a later one: with a pooled
    connection idle, the provider has the request in between. Without one, nothing is sent
    until the result is awaited (connecting needs the loop)."""
    arrived = asyncio.Event()

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        arrived.set()
        w.write(OK_CHUNKED + chunked(b"data: 1\n\n"))

    client = UpstreamClient()
    async with origin(answer) as server:
        cold = client.open(server.url, {}, b"{}")
        await asyncio.sleep(0.05)
        assert server.requests == []  # no connection yet: sent when awaited
        stream = await cold
        await stream.start(lambda _: None)
        stream.release()
        arrived.clear()
        pending = client.open(server.url, {}, b'{"second": true}')
        await asyncio.wait_for(arrived.wait(), 5)  # the origin has it; nobody awaits yet
        assert server.requests[-1].endswith(b'{"second": true}')
        stream = await pending
        pieces: list[bytes] = []
        await stream.start(pieces.append)
        stream.release()
    await client.close()
    assert b"".join(pieces) == b"data: 1\n\n"
    assert server.connections == 1


async def test_accepted_is_resolved_with_good_headers_before_open_returns() -> None:
    """``accepted`` is resolved in the read callback: it is done by the time the awaiter of
    ``open()`` resumes, not after. An error status leaves it alone."""
    statuses = [b"200 OK", b"503 Service Unavailable"]

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: bytes) -> None:
        status = statuses.pop(0)
        if status.startswith(b"200"):
            w.write(OK_CHUNKED.replace(b"200 OK", status) + chunked(b"data: 1\n\n"))
        else:
            w.write(b"HTTP/1.1 %s\r\ncontent-length: 2\r\n\r\n{}" % status)

    loop = asyncio.get_running_loop()
    client = UpstreamClient()
    async with origin(answer) as server:
        accepted: asyncio.Future[None] = loop.create_future()
        stream = await client.open(server.url, {}, b"{}", accepted=accepted)
        assert accepted.done() and accepted.result() is None
        await stream.start(lambda _: None)
        stream.release()
        refused: asyncio.Future[None] = loop.create_future()
        with pytest.raises(UpstreamStatus):
            await client.open(server.url, {}, b"{}", accepted=refused)
        assert not refused.done()
    await client.close()


async def test_closing_an_opening_that_was_sent_closes_its_connection() -> None:
    """A request sent on a pooled connection and then abandoned (its session was stopped
    before it awaited) does not leave the connection waiting for an owner."""
    arrived = asyncio.Event()

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, q: bytes) -> None:
        if q.endswith(b"abandoned"):
            arrived.set()
            await r.read(1)  # the client's close
            return
        w.write(OK_CHUNKED + chunked(b"data: 1\n\n"))

    client = UpstreamClient()
    async with origin(answer) as server:
        pieces, _ = await collect(client, server.url)
        pending = client.open(server.url, {}, b"abandoned")
        await asyncio.wait_for(arrived.wait(), 5)
        pending.close()
        await asyncio.wait_for(server.closed_by_client.wait(), 5)
        pending.close()  # twice is harmless
        again, _ = await collect(client, server.url)  # on a new connection
    await client.close()
    assert b"".join(pieces) == b"data: 1\n\n" == b"".join(again)
    assert server.connections == 2
