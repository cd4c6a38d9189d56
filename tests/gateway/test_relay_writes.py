"""How the relay writes to its client: the frames one read of the upstream brings go out in
one write, however many HTTP chunks they came in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from sluice.config import ProviderConfig
from sluice.gateway import server as server_module
from sluice.sse import SSEDecoder
from tests.conftest import GatewayUnderTest

OK_CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(frame: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(frame), frame)


def _frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


@asynccontextmanager
async def _burst_origin(go: asyncio.Event, words: list[str]) -> AsyncIterator[str]:
    """An OpenAI-compatible origin: the role chunk at once; then, once ``go`` is set, every
    text delta, the finish and ``[DONE]``, each its own HTTP chunk, in one write."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(OK_CHUNKED + _chunk(_frame({"role": "assistant", "content": ""})))
        await go.wait()
        frames = [_frame({"content": word}) for word in words]
        frames += [_frame({}, "stop"), b"data: [DONE]\n\n"]
        writer.write(b"".join(_chunk(frame) for frame in frames) + b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1"


async def test_the_frames_of_one_upstream_read_reach_the_client_in_one_write(
    gateway: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    write = server_module._Hook.write

    def spy(hook: server_module._Hook, body: bytes) -> bool:
        writes.append(body)
        return write(hook, body)

    monkeypatch.setattr(server_module._Hook, "write", spy)
    monkeypatch.setenv("BURST_TEST_KEY", "test-key-not-secret")
    words = [f"w{n} " for n in range(12)]
    go = asyncio.Event()
    async with _burst_origin(go, words) as url:
        gateway.gateway.settings.providers["burst"] = ProviderConfig(
            "burst", "openai", base_url=url, api_key_env="BURST_TEST_KEY"
        )
        body = {"model": "burst/m", "messages": [{"role": "user", "content": "hi"}]}
        decoder, texts = SSEDecoder(), []
        async with gateway.http.stream(
            "POST", "/v1/chat/completions", json={**body, "stream": True}
        ) as response:
            assert response.status_code == 200
            async for piece in response.aiter_bytes():
                for event in decoder.decode(piece):
                    if event.data != "[DONE]":
                        texts.append(orjson.loads(event.data)["choices"][0]["delta"])
                go.set()  # the role chunk is here: the relay follows the log
    assert "".join(delta.get("content", "") for delta in texts) == "".join(words)
    [burst] = [w for w in writes if b"w0 " in w]
    assert all(b'"content":"%s"' % word.encode() in burst for word in words)
    assert burst.endswith(b"data: [DONE]\n\n")
