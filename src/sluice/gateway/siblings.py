"""Sibling tasks of one client connection: the first to finish cancels the others.

Each streaming response runs its writer beside a watcher of the client (and sometimes a
watchdog); whichever ends first, because the stream is over, the client left or a deadline
passed, ends the rest. Every task is awaited before this returns: none outlives the response.
The relay of a session's stream, the one kept open by the thousand, watches its client with
no task where the server offers a ``ConnectionHook``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from starlette.types import Receive, Send

from sluice.errors import ClientTooSlow


async def first_to_finish(*tasks: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
    """Wait for the first of ``tasks`` to finish, cancel and await the others; return the set
    of those that had finished (their outcome is for the caller to read)."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return done


#: The scope key under which the gateway's server offers a ``ConnectionHook`` (see
#: ``server._Protocol``); other ASGI servers do not, and their clients are watched by a task.
CONNECTION_HOOK = "sluice.connection"


class ConnectionHook:
    """What the gateway's server offers a streaming response beyond ASGI, for its client's
    connection: ``lost`` and ``callback``, set and called by the server when the client's
    connection is lost, so that the response learns of it at once, with no task waiting on
    ``receive()``; and ``write()``, a body chunk written straight to the socket when that can
    be done at once, with no ASGI message and no coroutine for it.

    Only a hook whose ``direct`` is true writes: the server offers one only to the
    application it calls as it is, with nothing around it that would miss what is written
    past ``send``. Middleware around the application gets this base, which writes nothing:
    there every byte goes through ``send``."""

    __slots__ = ("callback", "lost")

    #: whether ``write()`` and ``hold_head()`` act: the response's ``send`` is the server's own
    direct: ClassVar[bool] = False

    def __init__(self) -> None:
        self.lost = False
        self.callback: Callable[[], object] | None = None

    def connection_lost(self) -> None:
        self.lost = True
        callback, self.callback = self.callback, None
        if callback is not None:
            callback()

    def write(self, body: bytes) -> bool:
        """Write ``body`` (not empty) as the next piece of a started response body, if it can
        be written now; False means nothing was written, and the caller sends it the ASGI
        way (which also waits while the client's socket is full). This base writes nothing."""
        return False

    def hold_head(self) -> None:
        """Keep back what the response writes to the socket from its start (the status line
        and headers) until ``release_head``, so that the first piece of the body goes out
        with the head in one write: one system call and one wake-up of the client fewer
        before its first token. The holder must release in the same step of its task,
        before anything awaits. This base holds nothing."""

    def release_head(self) -> None:
        """Write what ``hold_head`` kept back, all of it in one write. Safe to call more
        than once."""


async def wait_disconnect(receive: Receive) -> None:
    """Return once the HTTP client has gone (ASGI ``http.disconnect``)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def left_before(scope: Any, receive: Receive, done: Awaitable[Any]) -> bool:
    """Wait for ``done`` or for the HTTP client to leave, whichever comes first; True if the
    client left first. For a response that waits before it sends anything (a non-streaming
    turn): the server's ``ConnectionHook`` says when the client leaves where it offers one,
    a watcher of ``receive`` where it does not (the request's body must have been read)."""
    left: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def client_left() -> None:
        if not left.done():
            left.set_result(None)

    hook = scope.get(CONNECTION_HOOK)
    watcher: asyncio.Task[None] | None = None
    if isinstance(hook, ConnectionHook):
        hook.callback = client_left
        if hook.lost:
            client_left()
    else:
        watcher = asyncio.ensure_future(wait_disconnect(receive))
        watcher.add_done_callback(lambda _: client_left())
    waiting = asyncio.ensure_future(done)
    try:
        finished = await first_to_finish(waiting, left)
    finally:
        if isinstance(hook, ConnectionHook):
            hook.callback = None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    return waiting not in finished


async def send_body(send: Send, body: bytes, more: bool, within: float, peer: str) -> None:
    """One piece of a streaming response's body, within ``within`` seconds; a write still
    blocked then ends the response as ``ClientTooSlow`` (``peer`` names who reads it)."""
    try:
        async with asyncio.timeout(within):
            await send({"type": "http.response.body", "body": body, "more_body": more})
    except TimeoutError:
        raise ClientTooSlow(f"a write to the {peer} stayed blocked over {within:g} s") from None
