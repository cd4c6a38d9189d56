"""The load generator's decoding: chunked bodies and SSE frames from bytes split anywhere, and
each frame stamped with the read that completed it."""

from __future__ import annotations

import asyncio
import itertools
from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from sluice.bench.client import ChunkedDecoder, Endpoint, FrameSplitter, StreamClient
from sluice.bench.frames import LAST_CHUNK, ChatFrames, http_chunk, response_head
from sluice.bench.stats import StreamRecord, analyse

FRAMES = ChatFrames("paced")
SSE_FRAMES = [FRAMES.opening()] + [FRAMES.delta(i, 1_000_000 + i) for i in range(8)]
SSE_FRAMES.append(FRAMES.closing(8))
BODY = b"".join(SSE_FRAMES)
WIRE = response_head(close=True) + b"".join(http_chunk(f) for f in SSE_FRAMES) + LAST_CHUNK


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=40)


# -- chunked transfer coding ----------------------------------------------------------------------


@given(cuts)
def test_chunked_decoder_gives_the_body_however_the_input_is_split(points: list[int]) -> None:
    wire = b"".join(http_chunk(f) for f in SSE_FRAMES) + LAST_CHUNK
    decoder = ChunkedDecoder()
    body = b"".join(decoder.decode(piece) for piece in split(wire, points))
    assert body == BODY
    assert decoder.done


def test_chunked_decoder_ignores_chunk_extensions_and_what_follows_the_last_chunk() -> None:
    decoder = ChunkedDecoder()
    assert decoder.decode(b"5;name=value\r\nhello\r\n0\r\ntrailer: x\r\n\r\n") == b"hello"
    assert decoder.done


def test_chunked_decoder_is_not_done_before_the_last_chunk() -> None:
    decoder = ChunkedDecoder()
    assert decoder.decode(b"5\r\nhel") == b"hel"
    assert not decoder.done


# -- SSE frames -----------------------------------------------------------------------------------


@given(cuts)
def test_frame_splitter_finds_every_frame_however_the_input_is_split(points: list[int]) -> None:
    splitter = FrameSplitter()
    frames = [f for piece in split(BODY, points) for f in splitter.feed(piece)]
    assert frames == [f.rstrip(b"\n") for f in SSE_FRAMES for f in f.split(b"\n\n") if f]


@given(cuts)
def test_frame_splitter_takes_crlf_and_cr_line_ends(points: list[int]) -> None:
    body = b"data: a\r\n\r\nevent: x\rdata: b\r\r: comment\n\ndata: c\r\n\r\n"
    splitter = FrameSplitter()
    frames = [f for piece in split(body, points) for f in splitter.feed(piece)]
    assert frames == [b"data: a", b"event: x\ndata: b", b": comment", b"data: c"]


# -- the client protocol --------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def feed(pieces: list[bytes]) -> tuple[StreamRecord, FakeTransport]:
    loop = asyncio.new_event_loop()
    try:
        done: asyncio.Future[None] = loop.create_future()
        record = StreamRecord(started=0.0)
        reads = itertools.count(1)
        client = StreamClient(b"REQUEST", record, done, clock=lambda: float(next(reads)))
        transport = FakeTransport()
        client.connection_made(cast(asyncio.Transport, transport))
        for piece in pieces:
            client.data_received(piece)
        client.connection_lost(None)
        return record, transport
    finally:
        loop.close()


@given(cuts)
def test_each_frame_is_stamped_with_the_read_that_brought_its_last_byte(points: list[int]) -> None:
    pieces = split(WIRE, points)
    record, transport = feed(pieces)
    assert transport.written == b"REQUEST"
    assert record.status == 200
    assert record.complete and record.error is None
    # Where each frame's blank line ends in the wire, and which read held that byte.
    ends, offset = [], WIRE.index(b"\r\n\r\n") + 4
    for f in SSE_FRAMES:
        chunk = http_chunk(f)
        payload_at = offset + chunk.index(b"\r\n") + 2
        ends.extend(payload_at + i + 2 for i in range(len(f)) if f[i : i + 2] == b"\n\n")
        offset += len(chunk)
    bounds = list(itertools.accumulate(len(p) for p in pieces))
    expected = [float(next(i for i, b in enumerate(bounds, 1) if b >= end)) for end in ends]
    assert [t for t, _ in record.frames] == expected
    timing = analyse(record, expected=8)
    assert timing.indices == list(range(8))
    assert timing.lost == 0


def test_a_stream_cut_before_its_last_chunk_is_incomplete() -> None:
    record, _ = feed([WIRE[: len(WIRE) - len(LAST_CHUNK) - 20]])
    assert not record.complete
    assert record.error == "connection closed early"
    assert analyse(record, expected=8).lost >= 1


def test_an_error_status_is_recorded_with_its_body() -> None:
    body = b'{"error":{"message":"no such model"}}'
    wire = b"HTTP/1.1 404 Not Found\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    record, _ = feed([wire[:30], wire[30:]])
    assert record.status == 404
    assert record.error is not None and record.error.startswith("HTTP 404")
    assert "no such model" in record.error


def test_a_close_delimited_body_is_complete_at_eof() -> None:
    loop = asyncio.new_event_loop()
    try:
        done: asyncio.Future[None] = loop.create_future()
        record = StreamRecord(started=0.0)
        client = StreamClient(b"", record, done, clock=lambda: 1.0)
        client.connection_made(cast(asyncio.Transport, FakeTransport()))
        client.data_received(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + BODY)
        client.eof_received()
        client.connection_lost(None)
    finally:
        loop.close()
    assert record.complete and record.error is None
    assert len(record.frames) == len([f for f in BODY.split(b"\n\n") if b"data:" in f])


def test_endpoint_builds_the_path_from_an_sdk_base_url() -> None:
    chat = Endpoint.from_base_url("http://127.0.0.1:8080/v1/", "chat")
    assert (chat.host, chat.port, chat.path) == ("127.0.0.1", 8080, "/v1/chat/completions")
    request = chat.request("mock/paced")
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b'"include_usage":true' in request
    messages = Endpoint.from_base_url("http://localhost:9/v1", "messages")
    assert messages.path == "/v1/messages"
    assert b"stream_options" not in messages.request("mock/paced")
