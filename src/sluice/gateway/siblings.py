"""Sibling tasks of one client connection: the first to finish cancels the others.

Each streaming response runs its writer beside a watcher of the client (and sometimes a
watchdog); whichever ends first, because the stream is over, the client left or a deadline
passed, ends the rest. Every task is awaited before this returns: none outlives the response.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive


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


async def wait_disconnect(receive: Receive) -> None:
    """Return once the HTTP client has gone (ASGI ``http.disconnect``)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
