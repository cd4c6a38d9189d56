"""The upstream client against hostile responses on a real loopback socket: any status line,
headers, framing and encoding end in a stream or a typed ``UpstreamError``, within bounds."""

from __future__ import annotations

import asyncio
import gzip
import zlib

from hypothesis import given
from hypothesis import strategies as st

from sluice.errors import UpstreamError
from sluice.upstream import UpstreamClient
from tests.fuzz.budget import fuzz, note, tally

#: the client's body bound in these tests: small, so that a generated body can pass it
MAX_BODY = 4096

SSE_BODY = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'

#: a good status line half the time, so that half the responses get as far as their body
status_lines = st.one_of(
    st.just(b"HTTP/1.1 200 OK"),
    st.sampled_from(
        [
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 201 Created",
            b"HTTP/1.1 204 No Content",
            b"HTTP/1.1 301 Moved Permanently",
            b"HTTP/1.1 302 Found",
            b"HTTP/1.1 307 Temporary Redirect",
            b"HTTP/1.1 400 Bad Request",
            b"HTTP/1.1 429 Too Many Requests",
            b"HTTP/1.1 503 Service Unavailable",
            b"HTTP/1.0 200 OK",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK",
            b"HTTP/1.1 999 Whatever",
            b"HTTP/1.1 200",
            b"HTTP/2 200",
            b"ICY 200 OK",
            b"",
        ]
    ),
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
content_types = st.one_of(
    st.just(b"text/event-stream"),
    st.sampled_from(
        [
            b"text/event-stream",
            b"text/event-stream; charset=utf-8",
            b"TEXT/EVENT-STREAM",
            b"text/html",
            b"application/json",
            b"",
        ]
    ),
)
encodings = st.one_of(
    st.none(), st.sampled_from([b"identity", b"gzip", b"deflate", b"br", b"x-gzip", b"zstd"])
)
framings = st.sampled_from(["chunked", "length", "close", "bad-length", "bad-chunk", "both"])
extra_headers = st.lists(
    st.tuples(
        st.sampled_from([b"x-a", b"retry-after", b"location", b"content-length", b"\xff\xfe"]),
        st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    ),
    max_size=4,
)
bodies = st.one_of(
    st.just(SSE_BODY),
    st.binary(max_size=600),
    st.integers(1, 3).map(lambda n: SSE_BODY * 40 * n),  # past MAX_BODY from 2 on
)


def encode(body: bytes, encoding: bytes | None) -> bytes:
    if encoding in (b"gzip", b"x-gzip"):
        return gzip.compress(body)
    if encoding == b"deflate":
        return zlib.compress(body)
    return body


def frame(body: bytes, framing: str, cuts: list[int]) -> tuple[list[bytes], bytes]:
    """Headers that say how the body is framed, and the body so framed."""
    if framing in ("chunked", "bad-chunk", "both"):
        pieces, start = [], 0
        for cut in [*sorted({c % (len(body) + 1) for c in cuts}), len(body)]:
            if cut > start:
                pieces.append(b"%x\r\n%s\r\n" % (cut - start, body[start:cut]))
                start = cut
        if framing == "bad-chunk":
            pieces.insert(len(pieces) // 2, b"zz\r\n")
        headers = [b"transfer-encoding: chunked"]
        if framing == "both":
            headers.append(b"content-length: %d" % len(body))
        return headers, b"".join(pieces) + b"0\r\n\r\n"
    if framing == "length":
        return [b"content-length: %d" % len(body)], body
    if framing == "bad-length":
        return [b"content-length: %d" % (len(body) + 10)], body
    return [b"connection: close"], body


async def exchange(response: bytes, split: int) -> tuple[str, int]:
    """One request against a server that answers ``response`` (in two writes) and closes.
    Returns how it ended and how many body bytes the consumer got."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(response[:split])
            await writer.drain()
            writer.write(response[split:])
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = UpstreamClient(connect_timeout=5, stall_timeout=5, max_body=MAX_BODY)
    received = 0

    def sink(piece: bytes) -> None:
        nonlocal received
        received += len(piece)

    try:
        async with server, asyncio.timeout(20):
            try:
                stream = await client.open(f"http://127.0.0.1:{port}/v1", {}, b"{}")
            except UpstreamError as exc:
                return f"refused {exc.type}", 0
            try:
                await stream.start(sink)
            except UpstreamError as exc:
                return f"broken {exc.type}", received
            finally:
                stream.close()
            return "streamed", received
    finally:
        await client.close()


@fuzz(300)
@given(
    status=status_lines,
    content_type=content_types,
    encoding=encodings,
    framing=framings,
    extra=extra_headers,
    body=bodies,
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    split=st.integers(0, 10_000),
)
def test_any_response_ends_in_a_stream_or_a_typed_error_within_bounds(
    status: bytes,
    content_type: bytes,
    encoding: bytes | None,
    framing: str,
    extra: list[tuple[bytes, bytes]],
    body: bytes,
    cuts: list[int],
    split: int,
) -> None:
    tally("upstream: responses")
    headers = [b"content-type: " + content_type] if content_type else []
    if encoding is not None:
        headers.append(b"content-encoding: " + encoding)
    framing_headers, framed = frame(encode(body, encoding), framing, cuts)
    headers += framing_headers
    headers += [name + b": " + value for name, value in extra]
    response = status + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + framed
    outcome, received = asyncio.run(exchange(response, split % (len(response) + 1)))
    note(f"upstream: {outcome.split()[0]}")
    # nothing the client did not ask for is inflated, and no body passes its bound by more
    # than one read
    assert received <= MAX_BODY + 64 * 1024
    if outcome == "streamed":
        # only an uncompressed event stream is ever a stream
        assert content_type.split(b";")[0].strip().lower() == b"text/event-stream"
        assert encoding in (None, b"identity")
        assert received <= len(body)
        if framing in ("chunked", "length") and not extra and status == b"HTTP/1.1 200 OK":
            assert received == len(body)  # a well-framed body arrives whole
