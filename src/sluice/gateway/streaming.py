"""The SSE response that relays a session's event log to one client connection.

Two sibling tasks per connection: the relay (log → presenter → ``send``) and the disconnect
watcher (``receive`` until ``http.disconnect``); the first to finish cancels the other. No
body-wrapping middleware: each batch of log entries becomes one ``send``.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.types import Receive, Scope, Send

from sluice.gateway.presenters import NativePresenter, Presenter
from sluice.logs import kv
from sluice.session.session import Session

log = logging.getLogger("sluice.gateway")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class SessionStream:
    """An ASGI response: ``await SessionStream(...)(scope, receive, send)``."""

    def __init__(self, session: Session, presenter: Presenter, after: int = 0) -> None:
        self.session = session
        self.presenter = presenter
        self.after = after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = self.session
        headers = [*SSE_HEADERS, (b"x-sluice-session-id", session.id.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        session.readers += 1
        relay = asyncio.ensure_future(self._relay(send))
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait({relay, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relay, watcher):
                task.cancel()
            await asyncio.gather(relay, watcher, return_exceptions=True)
            session.readers -= 1
        if relay in done:
            relay.result()
            return
        # The client went away before its stream ended.
        log.info(
            "client disconnected %s",
            kv(session_id=session.id, state=session.state, policy=session.spec.disconnect_policy),
        )
        if session.readers == 0 and session.spec.disconnect_policy == "cancel":
            session.cancel("client_disconnected")

    async def _relay(self, send: Send) -> None:
        entries = self.session.log
        presenter = self.presenter
        render = presenter.render
        position = self.after
        while not presenter.finished:
            await entries.wait_beyond(position)
            end = len(entries)
            if end > position:
                parts = []
                items = entries.entries
                for index in range(position, end):
                    event, raw = items[index]
                    frame = render(index + 1, event, raw)
                    if frame:
                        parts.append(frame)
                    if presenter.finished and not presenter.follows_finalization:
                        break
                position = end
                if parts:
                    await send(
                        {"type": "http.response.body", "body": b"".join(parts), "more_body": True}
                    )
                if presenter.finished and not presenter.follows_finalization:
                    break
            elif entries.closed:
                break
        if isinstance(presenter, NativePresenter):
            await self.session.finished.wait()
            presenter.end_payload = orjson.dumps(end_summary(self.session))
        await send({"type": "http.response.body", "body": presenter.close(), "more_body": False})


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def end_summary(session: Session) -> dict[str, object]:
    record = session.record()
    keys = ("id", "state", "finish_reason", "usage", "cost", "telemetry", "error", "tool_calls")
    return {k: record[k] for k in keys}
