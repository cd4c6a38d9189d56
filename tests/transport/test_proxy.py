"""The upstream through a real forward proxy started by the test: https origins through a CONNECT
tunnel with TLS inside, http origins by the absolute form, proxy credentials as
``Proxy-Authorization: Basic`` (never in a message or a log), the environment's proxies and
``NO_PROXY``; every transport, and a session through the gateway.

The origin behind the proxy is addressed as ``origin.sluice.test``: a name only the proxy
resolves, as a corporate proxy resolves names its clients cannot."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.config import ProviderConfig
from sluice.errors import UpstreamBroken, UpstreamConnectError
from sluice.gateway.upstreams import build_upstream
from sluice.transports.network import Network, NetworkOptions
from sluice.transports.select import make_transport
from sluice.upstream import Upstream
from tests.conftest import running_gateway, start
from tests.conftest import test_settings as settings_for
from tests.transport.servers import (
    OK_CHUNKED,
    Certificates,
    chat_answer,
    chunk,
    forward_proxy,
    origin,
    sse_answer,
)

TRANSPORTS = ("fast", "httpx", "aiohttp")

BODY = b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
PASSWORD = "s3cr:et@pw"


@pytest.fixture
async def made() -> AsyncIterator[list[Upstream]]:
    upstreams: list[Upstream] = []
    yield upstreams
    for upstream in upstreams:
        await upstream.close()


def transport(
    made: list[Upstream], kind: str, environ: dict[str, str] | None = None, **options: str
) -> Upstream:
    network = Network(NetworkOptions(**options), environ=environ or {})
    upstream = make_transport(kind, network, 5.0, None)
    made.append(upstream)
    return upstream


def behind_proxy(url: str) -> str:
    return url.replace("127.0.0.1", "origin.sluice.test")


async def body_of(upstream: Upstream, url: str) -> bytes:
    stream = await upstream.open(url, {}, b"{}")
    pieces: list[bytes] = []
    await stream.start(pieces.append)
    stream.release()
    return b"".join(pieces)


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_https_origin_is_reached_through_a_connect_tunnel(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    async with (
        forward_proxy() as proxy,
        origin(sse_answer, tls=certs.server_context()) as server,
    ):
        upstream = transport(made, kind, proxy=proxy.url, ca_bundle=str(certs.ca_bundle))
        assert await body_of(upstream, behind_proxy(server.url)) == BODY
    assert proxy.seen == [("CONNECT", f"origin.sluice.test:{server.port}", None)]
    assert server.requests[0].startswith(b"POST /v1/chat/completions?key=secret HTTP/1.1\r\n")


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_http_origin_is_reached_by_the_absolute_form(
    kind: str, made: list[Upstream]
) -> None:
    async with forward_proxy() as proxy, origin(sse_answer) as server:
        upstream = transport(made, kind, proxy=proxy.url)
        assert await body_of(upstream, behind_proxy(server.url)) == BODY
    target = f"http://origin.sluice.test:{server.port}/v1/chat/completions?key=secret"
    assert proxy.seen == [("POST", target, None)]
    assert server.requests[0].startswith(b"POST /v1/chat/completions?key=secret HTTP/1.1\r\n")


@pytest.mark.parametrize("scheme", ["https", "http"])
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_proxy_credentials_go_as_basic_and_never_into_logs(
    kind: str,
    scheme: str,
    certs: Certificates,
    made: list[Upstream],
    caplog: pytest.LogCaptureFixture,
) -> None:
    expected = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    tls = certs.server_context() if scheme == "https" else None
    caplog.set_level(logging.DEBUG)
    async with forward_proxy(credentials=expected) as proxy, origin(sse_answer, tls=tls) as server:
        proxy_url = proxy.url.replace("://", "://user:s3cr%3Aet%40pw@")
        upstream = transport(made, kind, proxy=proxy_url, ca_bundle=str(certs.ca_bundle))
        assert await body_of(upstream, behind_proxy(server.url)) == BODY
    assert [seen[2] for seen in proxy.seen] == [expected]
    assert b"proxy-authorization" not in server.requests[0].lower()
    assert PASSWORD not in caplog.text and "s3cr%3Aet" not in caplog.text


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_proxy_that_refuses_the_credentials_is_a_connect_error_without_them(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    async with (
        forward_proxy(credentials="Basic something-else") as proxy,
        origin(sse_answer, tls=certs.server_context()) as server,
    ):
        proxy_url = proxy.url.replace("://", "://user:s3cr%3Aet%40pw@")
        upstream = transport(made, kind, proxy=proxy_url, ca_bundle=str(certs.ca_bundle))
        with pytest.raises(UpstreamConnectError) as caught:
            await upstream.open(behind_proxy(server.url), {}, b"{}")
    assert "407" in caught.value.message
    assert "s3cr" not in caught.value.message and "user" not in caught.value.message
    assert not server.requests


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_the_environments_https_proxy_is_used_and_no_proxy_bypasses_it(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    async with (
        forward_proxy() as proxy,
        origin(sse_answer, tls=certs.server_context()) as server,
    ):
        url = behind_proxy(server.url)
        proxied = transport(
            made,
            kind,
            environ={"HTTPS_PROXY": proxy.url, "NO_PROXY": "other.test,10.0.0.0/8"},
            ca_bundle=str(certs.ca_bundle),
        )
        assert await body_of(proxied, url) == BODY
        assert len(proxy.seen) == 1
        bypassed = transport(
            made,
            kind,
            environ={"https_proxy": proxy.url, "no_proxy": ".sluice.test"},
            ca_bundle=str(certs.ca_bundle),
        )
        with pytest.raises(UpstreamConnectError):  # direct: only the proxy knows the name
            await bypassed.open(url, {}, b"{}")
        local = transport(
            made, kind, environ={"HTTPS_PROXY": proxy.url}, ca_bundle=str(certs.ca_bundle)
        )
        assert await body_of(local, server.url.replace("127.0.0.1", "localhost")) == BODY
    assert len(proxy.seen) == 1  # neither the bypass nor the loopback origin went through it
    assert len(server.requests) == 2


async def test_a_session_streams_through_the_providers_proxy(
    certs: Certificates, tmp_path: Path
) -> None:
    async with (
        forward_proxy() as proxy,
        origin(chat_answer("Hel", "lo"), tls=certs.server_context()) as server,
    ):
        settings = settings_for(tmp_path)
        provider = ProviderConfig(
            "corp", "sim", base_url=f"https://origin.sluice.test:{server.port}/v1", wire="chat"
        )
        provider.proxy = proxy.url
        provider.ca_bundle = str(certs.ca_bundle)
        settings.providers["corp"] = provider
        async with running_gateway(settings) as gw:
            record = await gw.final_record(await start(gw, model="corp/m"))
            embedded = await gw.final_record(await start(gw, model="sim/support"))
    assert record["state"] == "complete" and record["text"] == "Hello"
    assert embedded["state"] == "complete"  # the embedded simulator stays direct
    assert proxy.seen == [("CONNECT", f"origin.sluice.test:{server.port}", None)]


async def test_the_gateway_takes_its_proxies_from_the_environment(
    certs: Certificates, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    async with (
        forward_proxy() as proxy,
        origin(chat_answer("Hi"), tls=certs.server_context()) as server,
    ):
        environ = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "localhost"}
        upstream = build_upstream(settings, environ)
        url = f"https://origin.sluice.test:{server.port}/v1/chat/completions"
        with pytest.raises(UpstreamConnectError) as caught:  # the system's CAs
            await upstream.open(url, {}, b"{}")
        await upstream.close()
    assert "certificate verify failed" in caught.value.message
    assert proxy.seen == [("CONNECT", f"origin.sluice.test:{server.port}", None)]


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_tunnelled_body_that_breaks_mid_stream_is_upstream_broken(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _req: bytes) -> None:
        w.write(OK_CHUNKED + chunk(b"data: 1\n\n"))
        await w.drain()
        w.transport.abort()

    async with (
        forward_proxy() as proxy,
        origin(answer, tls=certs.server_context()) as server,
    ):
        upstream = transport(made, kind, proxy=proxy.url, ca_bundle=str(certs.ca_bundle))
        stream = await upstream.open(behind_proxy(server.url), {}, b"{}")
        pieces: list[bytes] = []
        with pytest.raises(UpstreamBroken):
            async with asyncio.timeout(30):
                await stream.start(pieces.append)
        stream.close()
    assert pieces == [b"data: 1\n\n"]


async def test_the_fast_client_pools_its_tunnelled_connections(
    certs: Certificates, made: list[Upstream]
) -> None:
    async with (
        forward_proxy() as proxy,
        origin(sse_answer, tls=certs.server_context()) as server,
    ):
        upstream = transport(made, "fast", proxy=proxy.url, ca_bundle=str(certs.ca_bundle))
        for _ in range(3):
            assert await body_of(upstream, behind_proxy(server.url)) == BODY
    assert [seen[0] for seen in proxy.seen] == ["CONNECT"]
    assert server.connections == 1 and len(server.requests) == 3
