"""Choosing a transport: ``make_transport`` builds one by name (``fast``, ``httpx``,
``aiohttp``), and ``TransportRouter`` is an ``Upstream`` made of several, which sends each
request to the transport of the longest URL prefix that starts it, and any other to a default.
(The gateway builds its router from the providers' settings: ``sluice.gateway.upstreams``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from sluice.transports.aiohttp_client import AiohttpUpstream
from sluice.transports.httpx_client import HttpxUpstream
from sluice.transports.network import Network
from sluice.upstream import MAX_BODY_BYTES, Pending, Upstream, UpstreamClient


class TransportRouter:
    """An ``Upstream`` made of several: each URL prefix to its own, the rest to ``default``."""

    def __init__(self, default: Upstream, routes: list[tuple[str, Upstream]]) -> None:
        self.default = default
        #: (prefix, transport), the longest prefix first
        self.routes = sorted(routes, key=lambda route: len(route[0]), reverse=True)

    def transport_for(self, url: str) -> Upstream:
        for prefix, upstream in self.routes:
            if url.startswith(prefix):
                return upstream
        return self.default

    def open(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        accepted: asyncio.Future[None] | None = None,
    ) -> Pending:
        return self.transport_for(url).open(url, headers, body, accepted=accepted)

    async def close(self) -> None:
        seen: set[int] = set()
        for upstream in [self.default, *(upstream for _, upstream in self.routes)]:
            if id(upstream) not in seen:
                seen.add(id(upstream))
                await upstream.close()


def make_transport(
    kind: str,
    network: Network | None,
    connect_timeout: float,
    stall_timeout: float | None,
    max_body: int = MAX_BODY_BYTES,
) -> Upstream:
    """The transport ``kind`` (``fast``, ``httpx``, ``aiohttp``) with these settings."""
    if kind == "httpx":
        return HttpxUpstream(connect_timeout, stall_timeout, max_body=max_body, network=network)
    if kind == "aiohttp":
        return AiohttpUpstream(connect_timeout, stall_timeout, max_body=max_body, network=network)
    return UpstreamClient(connect_timeout, stall_timeout, max_body=max_body, network=network)
