"""An HTTP/2 upstream (a real h2 server started by the test, TLS with ALPN ``h2`` and nothing
else spoken) reached through the ``httpx`` transport: the contract's streaming, and a session
through the gateway end to end, over a direct connection and through a CONNECT proxy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from sluice.config import ProviderConfig
from sluice.errors import UpstreamConnectError, UpstreamStalled, UpstreamStatus
from sluice.transports.httpx_client import HttpxUpstream
from sluice.transports.network import Network, NetworkOptions
from sluice.upstream import UpstreamClient
from tests.conftest import running_gateway
from tests.conftest import test_settings as settings_for
from tests.transport.servers import Certificates, chat_events, forward_proxy, h2_origin

EVENTS = [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]


async def test_the_httpx_transport_streams_from_an_http2_only_server(certs: Certificates) -> None:
    upstream = HttpxUpstream(
        5.0, None, network=Network(NetworkOptions(ca_bundle=str(certs.ca_bundle)))
    )
    async with h2_origin(EVENTS, certs.server_context(alpn=["h2"])) as server:
        stream = await upstream.open(
            server.url + "/v1/chat/completions", {"content-type": "application/json"}, b'{"a":1}'
        )
        pieces: list[bytes] = []
        flushes: list[int] = []
        await stream.start(pieces.append, lambda: flushes.append(len(pieces)))
        stream.release()
        await upstream.close()
    assert (stream.status, stream.headers["x-request-id"]) == (200, "h2")
    assert pieces == EVENTS  # one DATA frame per event, in order
    assert flushes[-1] == len(pieces)
    assert server.protocols == ["h2"]
    headers, body = server.requests[0]
    assert headers[":method"] == "POST" and headers[":path"] == "/v1/chat/completions"
    assert headers["accept-encoding"] == "identity" and body == b'{"a":1}'


async def test_the_fast_transport_cannot_speak_to_an_http2_only_server(
    certs: Certificates,
) -> None:
    """Why the setting exists: the fast client offers only HTTP/1.1, and this server speaks
    nothing else than h2."""
    upstream = UpstreamClient(
        5.0, None, network=Network(NetworkOptions(ca_bundle=str(certs.ca_bundle)))
    )
    async with h2_origin(EVENTS, certs.server_context(alpn=["h2"])) as server:
        with pytest.raises(UpstreamConnectError):
            await upstream.open(server.url + "/v1/chat/completions", {}, b"{}")
    await upstream.close()
    assert server.protocols == [None] and not server.requests


async def test_an_http2_error_status_raises_with_the_providers_message(
    certs: Certificates,
) -> None:
    upstream = HttpxUpstream(
        5.0, None, network=Network(NetworkOptions(ca_bundle=str(certs.ca_bundle)))
    )
    body = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'
    async with h2_origin([], certs.server_context(alpn=["h2"]), status=429, error_body=body) as (
        server
    ):
        with pytest.raises(UpstreamStatus) as caught:
            await upstream.open(server.url + "/v1/chat/completions", {}, b"{}")
        await upstream.close()
    assert (caught.value.status, caught.value.message) == (429, "slow down")
    assert caught.value.retry_after == 7.0 and caught.value.type == "rate_limited"


async def test_a_silent_http2_stream_is_upstream_stalled(certs: Certificates) -> None:
    upstream = HttpxUpstream(
        5.0, 0.3, network=Network(NetworkOptions(ca_bundle=str(certs.ca_bundle)))
    )
    async with h2_origin(EVENTS[:1], certs.server_context(alpn=["h2"]), hold=True) as server:
        stream = await upstream.open(server.url + "/v1/chat/completions", {}, b"{}")
        pieces: list[bytes] = []
        with pytest.raises(UpstreamStalled):
            async with asyncio.timeout(30):
                await stream.start(pieces.append)
        stream.close()
        await upstream.close()
    assert pieces == EVENTS[:1]


async def test_closing_an_http2_stream_resets_it_and_is_idempotent(certs: Certificates) -> None:
    upstream = HttpxUpstream(
        5.0, None, network=Network(NetworkOptions(ca_bundle=str(certs.ca_bundle)))
    )
    async with h2_origin(EVENTS[:1], certs.server_context(alpn=["h2"]), hold=True) as server:
        stream = await upstream.open(server.url + "/v1/chat/completions", {}, b"{}")
        first = asyncio.Event()
        done = stream.start(lambda _piece: first.set())
        async with asyncio.timeout(30):
            await first.wait()
            stream.close()
            stream.close()
            stream.release()
            await server.reset.wait()
        second = await upstream.open(server.url + "/v1/chat/completions", {}, b"{}")
        first.clear()
        second.start(lambda _piece: first.set())
        async with asyncio.timeout(30):
            await first.wait()
        second.close()
        await upstream.close()
    assert done.cancelled()
    assert server.resets[0] == 1  # the stream's RST_STREAM (CANCEL): the provider stops
    assert server.protocols == ["h2"] and len(server.requests) == 2  # on the same connection


async def _chat_through_gateway(settings_path: Path, provider: ProviderConfig) -> tuple[str, str]:
    settings = settings_for(settings_path)
    settings.providers[provider.name] = provider
    async with running_gateway(settings) as gw:
        text = ""
        async with gw.http.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": f"{provider.name}/m",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ) as response:
            assert response.status_code == 200
            session_id = response.headers["x-sluice-session-id"]
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    for choice in orjson.loads(line[6:])["choices"]:
                        text += choice["delta"].get("content") or ""
        record = await gw.final_record(session_id)
    return text, record["state"]


async def test_a_session_streams_end_to_end_from_an_http2_upstream(
    certs: Certificates, tmp_path: Path
) -> None:
    events = chat_events("Hel", "lo", " over", " h2")
    async with h2_origin(events, certs.server_context(alpn=["h2"])) as server:
        provider = ProviderConfig("h2up", "sim", base_url=server.url + "/v1", wire="chat")
        provider.transport = "httpx"
        provider.ca_bundle = str(certs.ca_bundle)
        text, state = await _chat_through_gateway(tmp_path, provider)
    assert (text, state) == ("Hello over h2", "complete")
    assert server.protocols == ["h2"]
    headers, body = server.requests[0]
    assert headers[":path"] == "/v1/chat/completions"
    assert orjson.loads(body)["model"] == "m"


async def test_an_http2_upstream_through_a_connect_proxy(
    certs: Certificates, tmp_path: Path
) -> None:
    async with (
        forward_proxy() as proxy,
        h2_origin(chat_events("via", " proxy"), certs.server_context(alpn=["h2"])) as server,
    ):
        base = server.url.replace("localhost", "origin.sluice.test") + "/v1"
        provider = ProviderConfig("h2corp", "sim", base_url=base, wire="chat")
        provider.transport = "httpx"
        provider.proxy = proxy.url
        provider.ca_bundle = str(certs.ca_bundle)
        text, state = await _chat_through_gateway(tmp_path, provider)
    assert (text, state) == ("via proxy", "complete")
    assert server.protocols == ["h2"]
    assert [seen[0] for seen in proxy.seen] == ["CONNECT"]
