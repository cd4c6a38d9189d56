"""A ``CONNECT`` tunnel through an HTTP proxy (RFC 9110 §9.3.6): the transport the gateway's own
client upgrades to TLS for an https origin behind a proxy.

The proxy's answer is read up to the end of its head (at most ``MAX_PROXY_HEAD`` bytes): a 2xx
opens the tunnel, anything else (``407`` when the proxy wants credentials, ``403``, ``502``...)
is an ``UpstreamConnectError`` that names the proxy (without credentials) and its status.
"""

from __future__ import annotations

import asyncio

from sluice.errors import UpstreamConnectError
from sluice.transports.network import Proxy

#: a proxy's answer to CONNECT is a status line and a few headers
MAX_PROXY_HEAD = 16 * 1024


class _ProxyAnswer(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT; nothing else is read on this protocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        #: the head of the answer, and whether more bytes came after it
        self.answered: asyncio.Future[tuple[bytes, bool]] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end >= 0:
            self.answered.set_result((bytes(self.head[:end]), end + 4 < len(self.head)))
        elif len(self.head) > MAX_PROXY_HEAD:
            self.answered.set_exception(ConnectionError("the proxy's answer has no end"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(ConnectionError("the proxy closed the connection"))


def connect_request(proxy: Proxy, host: str, port: int) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"host: {authority}"]
    authorization = proxy.authorization
    if authorization is not None:
        lines.append(f"proxy-authorization: {authorization}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


async def open_tunnel(proxy: Proxy, host: str, port: int) -> asyncio.Transport:
    """A transport whose bytes reach ``host:port`` through ``proxy``. Raises OSError for a
    proxy that cannot be reached, ``UpstreamConnectError`` for one that refuses."""
    loop = asyncio.get_running_loop()
    transport, answer = await loop.create_connection(
        lambda: _ProxyAnswer(loop), proxy.host, proxy.port
    )
    try:
        transport.write(connect_request(proxy, host, port))
        head, more = await answer.answered
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise UpstreamConnectError(f"proxy {proxy.url} answered CONNECT with no HTTP status")
        status = int(parts[1])
        if not 200 <= status < 300:
            why = " (the proxy wants credentials)" if status == 407 else ""
            raise UpstreamConnectError(
                f"proxy {proxy.url} refused CONNECT to {host}:{port}: "
                f"{status_line[len(parts[0]) + 1 :][:200]}{why}"
            )
        if more:  # (a refusal may have a body; a tunnel's origin cannot speak first)
            raise ConnectionError("bytes after the proxy's answer to CONNECT")
    except BaseException:
        transport.close()
        raise
    return transport
