"""Every transport through Debian's tinyproxy (``make system-deps`` installs it), a forward
proxy the gateway's code did not write: CONNECT with Basic credentials for an https origin,
the absolute form for an http one, and a CONNECT the proxy's policy refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.errors import UpstreamConnectError
from sluice.transports.network import Network, NetworkOptions
from sluice.transports.select import make_transport
from sluice.upstream import Upstream
from tests.transport.servers import Certificates, origin, sse_answer, tinyproxy

TRANSPORTS = ("fast", "httpx", "aiohttp")

BODY = b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"


@pytest.fixture
async def made() -> AsyncIterator[list[Upstream]]:
    upstreams: list[Upstream] = []
    yield upstreams
    for upstream in upstreams:
        await upstream.close()


def transport(made: list[Upstream], kind: str, **options: str) -> Upstream:
    upstream = make_transport(kind, Network(NetworkOptions(**options), environ={}), 10.0, None)
    made.append(upstream)
    return upstream


async def body_of(upstream: Upstream, url: str) -> bytes:
    stream = await upstream.open(url, {}, b"{}")
    pieces: list[bytes] = []
    await stream.start(pieces.append)
    stream.release()
    return b"".join(pieces)


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_https_origin_through_tinyproxy_with_credentials(
    kind: str, certs: Certificates, made: list[Upstream], tmp_path: Path
) -> None:
    async with (
        origin(sse_answer, tls=certs.server_context()) as server,
        tinyproxy(tmp_path, connect_ports=[server.port], basic_auth=("gw", "pa55")) as proxy,
    ):
        upstream = transport(
            made,
            kind,
            proxy=proxy.url.replace("://", "://gw:pa55@"),
            ca_bundle=str(certs.ca_bundle),
        )
        assert await body_of(upstream, server.url) == BODY
        requests = proxy.requests()
    assert requests == [f"CONNECT 127.0.0.1:{server.port} HTTP/1.1"]
    assert server.requests[0].startswith(b"POST /v1/chat/completions?key=secret HTTP/1.1\r\n")
    assert "pa55" not in (tmp_path / "tinyproxy.log").read_text()


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_http_origin_through_tinyproxy_by_the_absolute_form(
    kind: str, made: list[Upstream], tmp_path: Path
) -> None:
    async with origin(sse_answer) as server, tinyproxy(tmp_path, connect_ports=[443]) as proxy:
        upstream = transport(made, kind, proxy=proxy.url)
        assert await body_of(upstream, server.url) == BODY
        requests = proxy.requests()
    assert requests == [f"POST {server.url} HTTP/1.1"]
    assert server.requests[0].startswith(b"POST /v1/chat/completions?key=secret HTTP/1.")


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_connect_tinyproxy_refuses_is_a_connect_error_naming_the_proxy(
    kind: str, certs: Certificates, made: list[Upstream], tmp_path: Path
) -> None:
    async with (
        origin(sse_answer, tls=certs.server_context()) as server,
        tinyproxy(tmp_path, connect_ports=[443]) as proxy,  # not the origin's port
    ):
        upstream = transport(made, kind, proxy=proxy.url, ca_bundle=str(certs.ca_bundle))
        with pytest.raises(UpstreamConnectError) as caught:
            await upstream.open(server.url, {}, b"{}")
    assert "403" in caught.value.message
    assert not server.requests
