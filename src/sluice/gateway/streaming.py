"""The SSE response that relays a session's event log to one client connection.

Three sibling tasks per connection, and the first to finish cancels the others:

- the relay: log → presenter → ``send``, one ``send`` per batch of new entries;
- the watchdog: a ``: ping`` comment whenever nothing was sent for a heartbeat interval, and
  ``ClientTooSlow`` when one write has been blocked (the client's socket full) for longer than
  the send deadline;
- the disconnect watcher: ``receive`` until ``http.disconnect``.

No body-wrapping middleware, and no timer per chunk: the watchdog reads two timestamps the
relay keeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from sluice.errors import ClientTooSlow
from sluice.gateway.presenters import NativePresenter, Presenter
from sluice.gateway.siblings import first_to_finish, wait_disconnect
from sluice.session.session import Reader, Session
from sluice.sse import encode_comment

log = logging.getLogger("sluice.gateway")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
PING = encode_comment("ping")


def sse_headers(buffering_header: bool, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """The headers of every SSE response the gateway sends; ``X-Accel-Buffering: no`` is left
    out only when ``streams.accel_buffering_header`` is off (to reproduce a buffering proxy)."""
    if buffering_header:
        return [*SSE_HEADERS, *extra]
    return [*(h for h in SSE_HEADERS if h[0] != b"x-accel-buffering"), *extra]


class SessionStream:
    """An ASGI response: ``await SessionStream(...)(scope, receive, send)``."""

    def __init__(
        self,
        session: Session,
        presenter: Presenter,
        after: int = 0,
        *,
        heartbeat: float | None = None,
        send_timeout: float | None = None,
    ) -> None:
        self.session = session
        self.presenter = presenter
        self.after = after
        settings = session.settings
        self.heartbeat = settings.heartbeat_interval if heartbeat is None else heartbeat
        self.send_timeout = settings.client_send_timeout if send_timeout is None else send_timeout
        self._last_send = 0.0
        self._sending_since: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = self.session
        headers = sse_headers(
            session.settings.accel_buffering_header, (b"x-sluice-session-id", session.id.encode())
        )
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self._last_send = asyncio.get_running_loop().time()
        reader = session.attach(self.after)
        relay = asyncio.ensure_future(self._relay(send, reader))
        watchdog = asyncio.ensure_future(self._watchdog(send))
        watcher = asyncio.ensure_future(wait_disconnect(receive))
        done = await first_to_finish(relay, watchdog, watcher)
        if relay in done:
            session.detach(reader, None)
            error = relay.exception()
            if error is not None:
                raise error
        elif watchdog in done and isinstance(watchdog.exception(), ClientTooSlow):
            session.detach(reader, ClientTooSlow.type)
        else:
            session.detach(reader, "client_disconnected")

    async def _relay(self, send: Send, reader: Reader) -> None:
        entries = self.session.log
        presenter = self.presenter
        render = presenter.render
        loop = asyncio.get_running_loop()
        position = reader.position
        stop_at_terminal = not presenter.follows_finalization
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
                    if stop_at_terminal and presenter.finished:
                        break
                position = end
                if parts:
                    self._sending_since = loop.time()
                    await send(
                        {"type": "http.response.body", "body": b"".join(parts), "more_body": True}
                    )
                    self._last_send = loop.time()
                    self._sending_since = None
                reader.advance(position)
                if stop_at_terminal and presenter.finished:
                    break
            elif entries.closed:
                break
        if isinstance(presenter, NativePresenter):
            await self.session.settled.wait()
            presenter.end_payload = orjson.dumps(end_summary(self.session))
        self._sending_since = loop.time()
        await send({"type": "http.response.body", "body": presenter.close(), "more_body": False})
        self._sending_since = None

    async def _watchdog(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        heartbeat, deadline = self.heartbeat, self.send_timeout
        tick = max(0.01, min(heartbeat or deadline, deadline) / 4)
        while True:
            now = loop.time()
            blocked_since = self._sending_since
            if blocked_since is not None:
                if now - blocked_since > deadline:
                    raise ClientTooSlow(f"a write to the client stayed blocked over {deadline:g} s")
                await asyncio.sleep(tick)
                continue
            idle = now - self._last_send
            if heartbeat and idle >= heartbeat:
                try:
                    await asyncio.wait_for(
                        send({"type": "http.response.body", "body": PING, "more_body": True}),
                        deadline,
                    )
                except TimeoutError:
                    raise ClientTooSlow(
                        f"a heartbeat to the client stayed blocked over {deadline:g} s"
                    ) from None
                self._last_send = loop.time()
                continue
            await asyncio.sleep(min(tick, heartbeat - idle) if heartbeat else tick)


#: The record fields an ``end`` event carries, on every transport.
END_KEYS = (
    "id",
    "state",
    "finish_reason",
    "usage",
    "cost",
    "telemetry",
    "error",
    "tool_calls",
    "attempts",
)


def summary_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``end`` event's data: the final record's summary (a stored record may lack keys)."""
    return {key: record.get(key) for key in END_KEYS}


def end_summary(session: Session) -> dict[str, Any]:
    return summary_of(session.record())
