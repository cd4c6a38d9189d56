"""Running the simulator under uvicorn, standalone."""

from __future__ import annotations

import socket

import uvicorn

from sluice.sim.app import SimApp
from sluice.sim.settings import SimSettings


def sim_server(
    host: str, port: int, settings: SimSettings | None = None, *, graceful_seconds: int = 5
) -> uvicorn.Server:
    """A uvicorn server for a new simulator (port 0 picks a free port; read it after startup).

    ``graceful_seconds`` bounds the wait for open streams at shutdown; what still runs then is
    cancelled, which the records show as ``failed``.
    """
    config = uvicorn.Config(
        SimApp(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=graceful_seconds,
    )
    return uvicorn.Server(config)


async def serve_sim(
    host: str, port: int, settings: SimSettings, sockets: list[socket.socket] | None = None
) -> None:
    """Serve the simulator until the process is told to stop (SIGINT or SIGTERM), on
    ``sockets`` when given (bound already, to ``host`` and ``port``).

    uvicorn uses the running event loop: to get uvloop, start this under it, for example
    ``uvloop.run(serve_sim(...))``.
    """
    await sim_server(host, port, settings).serve(sockets=sockets)
