"""The gateway's server tells a response the moment its client leaves (``ConnectionHook``)."""

from __future__ import annotations

import asyncio
from typing import Any

from sluice.gateway.server import RunningServer
from sluice.gateway.siblings import CONNECTION_HOOK, ConnectionHook


async def test_the_hook_is_called_when_the_client_leaves_mid_response() -> None:
    seen: list[Any] = []
    left = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        hook = scope.get(CONNECTION_HOOK)
        seen.append(hook)
        hook.callback = left.set
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.wait_for(left.wait(), 10)  # never ends on its own

    async with RunningServer(app) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert b"first" in await reader.readuntil(b"first")
        writer.close()
        await asyncio.wait_for(left.wait(), 10)
    [hook] = seen
    assert isinstance(hook, ConnectionHook) and hook.lost and hook.callback is None


def test_a_hook_set_after_the_client_left_says_so() -> None:
    hook = ConnectionHook()
    hook.connection_lost()
    assert hook.lost and hook.callback is None
