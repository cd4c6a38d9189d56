"""HTTP/2 through nginx terminating TLS (the deploy snippet, a certificate made by the test):
a page in Chromium holds eight streams to one host at once; over HTTP/1.1 the browser's six
connections per host are all taken and the seventh stream waits until one of them ends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext

from tests.proxies import servers
from tests.proxies.concurrency import open_streams, write_page
from tests.proxies.conftest import port_of


async def eight_streams(
    gateway_with: Any, context: BrowserContext, workdir: Path, http2: bool
) -> Any:
    cert, key = servers.self_signed_certificate(workdir)
    write_page(workdir / "page")
    async with gateway_with() as gw:
        port = servers.free_port(servers.HOST)
        site = servers.nginx_deploy_site(
            port, port_of(gw.url), cert, key, http2=http2, static_root=workdir / "page"
        )
        async with servers.nginx(workdir / "nginx", site, port, "https") as nginx:
            async with asyncio.timeout(60):
                return await open_streams(context, nginx.url, count=8)


async def test_http2_streams_eight_at_once_to_one_host(
    gateway_with: Any, tls_context: BrowserContext, workdir: Path
) -> None:
    result = await eight_streams(gateway_with, tls_context, workdir, http2=True)
    assert result.protocol == "h2"
    assert result.started_before_any_ended == 8, result.figures()


async def test_over_http1_the_seventh_stream_waits_for_one_to_end(
    gateway_with: Any, tls_context: BrowserContext, workdir: Path
) -> None:
    result = await eight_streams(gateway_with, tls_context, workdir, http2=False)
    assert result.protocol == "http/1.1"
    assert result.started_before_any_ended == 6, result.figures()
    # the two late ones began only once an early one had ended
    first_end = min(end for _, end in result.streams)
    late = sorted(first for first, _ in result.streams)[6:]
    assert all(first >= first_end for first in late), result.figures()
