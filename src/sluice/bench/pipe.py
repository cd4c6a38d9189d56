"""The floor of any relay written in Python here: a byte pipe on uvloop, the benchmark's
``python-pipe`` target.

Each client connection gets a connection of its own to the mock, opened when the client
connects, and every byte read on one side is written to the other, unread: no HTTP parsing, no
SSE framing, no session, no record. It is what the gateway's runtime (CPython, uvloop, one
process) costs per relayed chunk before the gateway does anything of its own — one read
callback and one write per chunk — so that the benchmark can set the gateway's CPU per chunk
beside both nginx's and this floor's. Flow control as a proxy needs it: a side whose peer's
write buffer is full stops reading until it drains.

Run alone with ``python -m sluice.bench.pipe --port P --upstream-port M``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import cast

from sluice.bench.proc import run_fast


class _Side(asyncio.Protocol):
    """One end of the pipe: what it reads goes to its peer's transport."""

    __slots__ = ("peer", "pending", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        #: bytes read before the peer was connected
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's are not subclasses)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)
        else:
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()

    # the peer's write buffer is full: stop reading this side until it drains
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Client(_Side):
    """The client's end: on connect, the mock's end is opened."""

    __slots__ = ("host", "port")

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.host, self.port = host, port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(_Side, self.host, self.port)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        upstream.peer, self.peer = self, upstream
        assert upstream.transport is not None
        for data in self.pending:
            upstream.transport.write(data)
        self.pending.clear()
        if self.transport is None or self.transport.is_closing():
            upstream.transport.close()


async def _serve(host: str, port: int, upstream_host: str, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Client(upstream_host, upstream_port), host, port, backlog=4096
    )
    print(f"listening {host}:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sluice.bench.pipe", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream-host", default="127.0.0.1")
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        run_fast(_serve(args.host, args.port, args.upstream_host, args.upstream_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
