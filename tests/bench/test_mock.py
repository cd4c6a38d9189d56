"""The mock upstream's wire output, read back with the project's own SSE decoder and wire
adapters, in both formats; and its HTTP behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from sluice import events as ev
from sluice.bench.client import ChunkedDecoder, kept_alive_request, stream_kept_alive
from sluice.bench.frames import MARKER, TEXT_BYTES
from sluice.bench.mock import MockServer
from sluice.bench.profiles import PROFILES, UnknownProfile, profile_for
from sluice.sse import ServerSentEvent, SSEDecoder
from sluice.wire.anthropic_messages import MessagesStreamAdapter
from sluice.wire.openai_chat import ChatStreamAdapter

PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages"}


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer() as server:
        yield server


def request(path: str, model: str, *, close: bool = True) -> bytes:
    body = orjson.dumps({"model": model, "stream": True, "messages": []})
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n"
    return (head + ("connection: close\r\n" if close else "") + "\r\n").encode() + body


async def exchange(mock: MockServer, raw: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection(mock.host, mock.port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def decode(body: bytes) -> list[ServerSentEvent]:
    dechunked = ChunkedDecoder()
    payload = dechunked.decode(body)
    assert dechunked.done
    decoder = SSEDecoder()
    return decoder.decode(payload) + decoder.flush()


async def test_chat_stream_is_role_64_deltas_finish_usage_and_done(mock: MockServer) -> None:
    head, body = await exchange(mock, request(PATHS["chat"], "mock/fast"))
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-type: text/event-stream" in head
    assert b"transfer-encoding: chunked" in head
    events = decode(body)
    assert [e.event for e in events] == ["message"] * len(events)
    assert events[-1].data == "[DONE]"
    chunks = [orjson.loads(e.data) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    texts = [c["choices"][0]["delta"]["content"] for c in chunks[1:65]]
    assert len(texts) == 64
    assert all(len(t.encode()) == TEXT_BYTES for t in texts)
    assert [int(MARKER.fullmatch(t.encode())[1]) for t in texts] == list(range(64))  # type: ignore[index]
    assert chunks[65]["choices"][0]["finish_reason"] == "stop"
    assert chunks[66]["choices"] == []
    assert chunks[66]["usage"]["completion_tokens"] == 64
    assert len(chunks) == 67


async def test_messages_stream_has_64_text_deltas_usage_and_message_stop(mock: MockServer) -> None:
    _, body = await exchange(mock, request(PATHS["messages"], "mock/fast"))
    events = decode(body)
    kinds = [e.event for e in events]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[3:67] == ["content_block_delta"] * 64
    assert kinds[67:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [orjson.loads(e.data)["delta"] for e in events[3:67]]
    assert all(d["type"] == "text_delta" and len(d["text"]) == TEXT_BYTES for d in deltas)
    assert orjson.loads(events[68].data)["usage"]["output_tokens"] == 64


@pytest.mark.parametrize(
    ("fmt", "adapter"), [("chat", ChatStreamAdapter), ("messages", MessagesStreamAdapter)]
)
async def test_the_gateways_adapters_read_the_mock_as_a_complete_turn(
    mock: MockServer, fmt: str, adapter: type[ChatStreamAdapter] | type[MessagesStreamAdapter]
) -> None:
    _, body = await exchange(mock, request(PATHS[fmt], "mock/fast"))
    fold = adapter()
    produced = [out for e in decode(body) for out in fold.feed(e.event, e.data)]
    assert fold.done
    texts = [e for e in produced if isinstance(e, ev.TextDelta)]
    assert len(texts) == 64
    assert any(isinstance(e, ev.Usage) and e.output_tokens == 64 for e in produced)
    assert isinstance(produced[-1], ev.Finish)
    assert not any(isinstance(e, ev.Error) for e in produced)


async def test_paced_deltas_are_sent_in_order_no_faster_than_the_pace(mock: MockServer) -> None:
    _, body = await exchange(mock, request(PATHS["chat"], "mock/6x5"))
    sent = [int(m[2]) for e in decode(body) if (m := MARKER.search(e.data.encode())) is not None]
    assert len(sent) == 6
    # The first goes with the role chunk; delta i is due i * 5 ms after it (libuv's timers
    # have a 1 ms clock). The ticks are absolute: after a stall of the loop the late ones catch
    # up, so two deltas may come closer than the pace, but none comes ahead of its time.
    assert sent == sorted(sent)
    assert all(at - sent[0] >= i * 5_000 - 1_000 for i, at in enumerate(sent))
    assert mock.counters.streams_completed == 1


async def test_a_hold_stream_stays_open_after_its_role_chunk(mock: MockServer) -> None:
    reader, writer = await asyncio.open_connection(mock.host, mock.port)
    writer.write(request(PATHS["chat"], "mock/hold"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    first = await asyncio.wait_for(reader.read(65536), 5)
    assert b'"role":"assistant"' in first
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(65536), 0.2)
    assert mock.counters.streams_open == 1
    writer.close()
    await writer.wait_closed()
    for _ in range(100):
        if mock.counters.streams_open == 0:
            break
        await asyncio.sleep(0.01)
    assert mock.counters.streams_open == 0


async def test_keep_alive_serves_a_second_request_on_the_same_connection(mock: MockServer) -> None:
    reader, writer = await asyncio.open_connection(mock.host, mock.port)
    writer.write(request(PATHS["chat"], "mock/2x0", close=False))
    first = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5)
    writer.write(request(PATHS["chat"], "mock/2x0"))
    second = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert first.count(b"[DONE]") == 1
    assert second.startswith(b"HTTP/1.1 200") and second.count(b"[DONE]") == 1
    assert mock.counters.connections == 1
    assert mock.counters.streams_completed == 2


async def test_an_unknown_profile_is_refused_with_404(mock: MockServer) -> None:
    head, body = await exchange(mock, request(PATHS["chat"], "mock/nonsense"))
    assert head.startswith(b"HTTP/1.1 404")
    assert b"names no profile" in body


async def test_stats_answer_the_counters(mock: MockServer) -> None:
    await exchange(mock, request(PATHS["chat"], "mock/fast"))
    _head, body = await exchange(mock, b"GET /stats HTTP/1.1\r\nconnection: close\r\n\r\n")
    stats = orjson.loads(body)
    assert stats["streams_completed"] == 1
    assert stats["bytes_sent"] > 64 * TEXT_BYTES


def test_profiles_are_named_by_the_model_after_its_last_slash() -> None:
    assert profile_for("mock/paced") == PROFILES["paced"]
    assert profile_for("openrouter/mock/fast") == PROFILES["fast"]
    assert PROFILES["paced"].deltas == 64 and PROFILES["paced"].pace == 0.020
    custom = profile_for("8x2.5")
    assert (custom.deltas, custom.pace) == (8, 0.0025)
    with pytest.raises(UnknownProfile):
        profile_for("mock/0x20")


async def test_streams_on_a_kept_alive_connection_read_one_after_another(
    mock: MockServer,
) -> None:
    reader, writer = await asyncio.open_connection(mock.host, mock.port)
    request = kept_alive_request("mock/3x1")
    try:
        counts = [await stream_kept_alive(reader, writer, request) for _ in range(3)]
    finally:
        writer.close()
    # the role chunk, three deltas, the finish, usage and [DONE], each time
    assert counts == [7, 7, 7]


async def test_otlp_exports_are_taken_and_counted_not_decoded(mock: MockServer) -> None:
    for path in ("/v1/traces", "/v1/metrics"):
        body = b"\x0a\x00" * 10  # any bytes: the mock is a sink
        raw = f"POST {path} HTTP/1.1\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        head, reply = await exchange(mock, raw.encode() + body)
        assert head.startswith(b"HTTP/1.1 200") and b"application/x-protobuf" in head
        assert reply == b""  # an empty export response
    assert (mock.counters.otlp_exports, mock.counters.otlp_bytes) == (2, 40)
