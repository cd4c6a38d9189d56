"""The gateway listens on several sockets bound to one port: uvloop (libuv) accepts one
connection per listening socket per turn of the loop, and a busy gateway's turns take
milliseconds, so with one socket a burst of new streams waits in the kernel's queue."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvloop

from sluice.gateway.server import RunningServer
from sluice.listen import LISTENERS, listening_sockets

BURST = 64


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """Only the lifespan: the connections here never send a request."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


def _turns_to_accept(listeners: int) -> int:
    """Turns of a uvloop loop until a burst of ``BURST`` connections, all waiting in the
    kernel's queue, has been accepted by a ``RunningServer`` with ``listeners`` sockets."""

    async def main() -> int:
        async with RunningServer(_app, listeners=listeners) as server:
            # Blocking connects while the loop does not turn: loopback completes each
            # handshake in the kernel, and the connections queue for accept().
            clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(BURST)]
            try:
                connections = server.server.server_state.connections
                turns = 0
                while len(connections) < BURST and turns < 50 * BURST:
                    await asyncio.sleep(0)  # one turn of the loop
                    turns += 1
                assert len(connections) == BURST
                return turns
            finally:
                for client in clients:
                    client.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def test_a_burst_of_connections_is_accepted_in_fewer_turns_with_several_sockets() -> None:
    one = _turns_to_accept(1)
    several = _turns_to_accept(LISTENERS)
    assert one >= BURST  # one connection a turn: what the several sockets are for
    assert several <= BURST // 2  # the kernel spreads the burst over the sockets


def test_the_sockets_share_one_port_and_a_second_server_there_is_refused() -> None:
    sockets = listening_sockets("127.0.0.1", 0)
    try:
        assert len(sockets) == LISTENERS
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1
        for sock in sockets:
            sock.listen()
        with pytest.raises(OSError):
            listening_sockets("127.0.0.1", ports.pop())
    finally:
        for sock in sockets:
            sock.close()
