"""Listening sockets: several bound to one port, so that a busy event loop still accepts a
burst of new connections at once.

uvloop (libuv) accepts one connection per listening socket per turn of the loop, and a turn
of a process relaying hundreds of streams takes milliseconds. With one socket, 240 new
streams a second (300 streams of 1.3 s at once) waited up to 400 ms in the kernel's accept
queue of the gateway, while every open stream flowed on time. With ``SO_REUSEPORT`` the
kernel spreads new connections over several sockets' queues, and each turn accepts one from
each.
"""

from __future__ import annotations

import errno
import socket
import sys

#: Listening sockets on one port.
LISTENERS = 8
#: the accept queue of each listening socket (uvicorn's default)
BACKLOG = 2048

#: load-balancing SO_REUSEPORT (Linux); elsewhere the option means something else, or nothing
_REUSEPORT = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


class ListenError(OSError):
    """The port cannot be listened on. The message names the address, the reason and what to
    do about it, in one line: ``sluice serve`` prints it as it is."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(_explain(host, port, cause))
        self.errno = cause.errno


def _explain(host: str, port: int, cause: OSError) -> str:
    match cause.errno:
        case errno.EADDRINUSE:
            return (
                f"port {port} on {host} is already in use: stop the process listening there "
                f"(`ss -ltnp 'sport = :{port}'` names it) or choose another port "
                "(--port, or [server] port in the config file)"
            )
        case errno.EACCES:
            return (
                f"no permission to listen on port {port} on {host}: ports below 1024 need "
                "root; choose a port of 1024 or more (--port)"
            )
        case errno.EADDRNOTAVAIL:
            return f"{host} is not an address of this machine: choose another --host"
    return f"cannot listen on {host} port {port}: {cause.strerror or cause}"


def listening_sockets(host: str, port: int, count: int = LISTENERS) -> list[socket.socket]:
    """``count`` sockets bound to one port with ``SO_REUSEPORT``, or one socket where the
    platform has no such option; the caller listens on them. A port another process listens
    on is refused, with or without ``SO_REUSEPORT`` on its side: a probe binds it alone
    first, so a second gateway started on the same port fails instead of silently taking
    half of the connections. A port that cannot be bound raises ``ListenError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError as exc:
        probe.close()
        raise ListenError(host, port, exc) from exc
    if count <= 1 or not _REUSEPORT:
        return [probe]
    port = probe.getsockname()[1]
    probe.close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(host, port, exc) from exc
    return sockets
