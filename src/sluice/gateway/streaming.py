"""The SSE response that relays a session's event log to one client connection.

The relay belongs to the response's own task: log → presenter → ``send``, one write per
batch of new entries. While the client keeps up, the task sleeps and the log's listener
(``_push``) does the relay's work in the upstream's read callback: a chunk reaches the client's
socket with no task switch, and, under the gateway's own server serving the gateway's app
itself, with no ASGI message either (``ConnectionHook.write``, the fast write path). With
middleware around the app, every piece goes through ``send`` (the middleware's), started in
the response's context (``_context``) so that what the middleware keeps in context variables
(a trace's current span) is the request's. The task takes over when a write blocks (the
socket is full) and at the end. Beside it, per connection:

- the server's ``ConnectionHook`` says when the client leaves; under another ASGI server, a
  watcher task does (``receive`` until ``http.disconnect``);
- a watchdog (a deadline on the loop's wheel, no task): it starts a ``: ping`` comment
  whenever nothing was sent for a heartbeat interval, and ends the stream with
  ``ClientTooSlow`` when one write has been blocked (the client's socket full) for longer
  than the send deadline.

Either of them ends the stream by cancelling the relay with its reason. No body-wrapping
middleware, and no timer per chunk: the watchdog reads two timestamps the relay keeps.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Coroutine, Generator, Mapping
from types import CoroutineType
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from sluice.errors import ClientTooSlow
from sluice.gateway.presenters import NativePresenter, Presenter
from sluice.gateway.siblings import CONNECTION_HOOK, ConnectionHook, wait_disconnect
from sluice.session.session import Reader, Session
from sluice.sse import encode_comment
from sluice.wheel import wheel

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


_NO_HOOK = ConnectionHook()


class SessionStream:
    """An ASGI response: ``await SessionStream(...)(scope, receive, send)``. (Slotted: there
    is one per open stream, and an instance dictionary of its twenty-two fields would be
    about 150 bytes more.)"""

    __slots__ = (
        "_blocked",
        "_consumed",
        "_context",
        "_ended_by",
        "_hook",
        "_last_send",
        "_loop",
        "_ping",
        "_position",
        "_reader",
        "_relay_task",
        "_send",
        "_sending_since",
        "_slot",
        "_stopped",
        "_tick",
        "_wake",
        "after",
        "extra_headers",
        "heartbeat",
        "presenter",
        "send_timeout",
        "session",
    )

    def __init__(
        self,
        session: Session,
        presenter: Presenter,
        after: int = 0,
        *,
        heartbeat: float | None = None,
        send_timeout: float | None = None,
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.session = session
        #: headers of the response besides the SSE ones and the session's id
        self.extra_headers = extra_headers
        self.presenter = presenter
        self.after = after
        settings = session.settings
        self.heartbeat = settings.heartbeat_interval if heartbeat is None else heartbeat
        self.send_timeout = settings.client_send_timeout if send_timeout is None else send_timeout
        self._last_send = 0.0
        self._sending_since: float | None = None
        self._relay_task: asyncio.Task[Any]
        #: the watchdog's slot on the loop's deadline wheel
        self._slot = 0
        #: how often the watchdog looks: a quarter of the shorter of its two intervals
        self._tick = max(0.01, min(self.heartbeat or self.send_timeout, self.send_timeout) / 4)
        self._ping: asyncio.Task[None] | None = None
        #: why the watcher or the watchdog ended the stream
        self._ended_by: str | None = None
        self._consumed = False
        self._stopped = False
        #: the relay's state, shared by its task and the log's listener
        self._send: Send
        self._reader: Reader
        self._position = 0
        self._wake: asyncio.Future[None] | None = None
        self._blocked: Awaitable[None] | None = None
        #: the server's hook for this connection; the base one writes nothing directly
        self._hook = _NO_HOOK
        #: where ``send`` is not the server's own: the context the response was called in,
        #: in which the listener starts ``send`` (None on the fast write path)
        self._context: contextvars.Context | None = None
        self._loop: asyncio.AbstractEventLoop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = self.session
        hook = scope.get(CONNECTION_HOOK)
        if isinstance(hook, ConnectionHook) and hook.direct:
            hook.hold_head()  # released in ``_relay``'s first step, unawaited
        else:  # ``send`` may be a middleware's, which may read context variables
            self._context = contextvars.copy_context()
        # (the headers are not a local: this frame lasts as long as the stream)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": sse_headers(
                    session.settings.accel_buffering_header,
                    (b"x-sluice-session-id", session.id.encode()),
                    *self.extra_headers,
                ),
            }
        )
        self._loop = loop = asyncio.get_running_loop()
        self._last_send = loop.time()
        relay = asyncio.current_task()
        assert relay is not None
        reader = session.attach(self.after)
        self._relay_task = relay
        watcher: asyncio.Task[None] | None = None
        if isinstance(hook, ConnectionHook):  # the server says when the client leaves
            self._hook = hook
            hook.callback = self._client_left
            if hook.lost:
                self._client_left()
        else:
            watcher = asyncio.ensure_future(wait_disconnect(receive))
            watcher.add_done_callback(lambda _: self._client_left())
        self._slot = wheel().call_later(self._tick, self, SessionStream._watch)
        try:
            await self._relay(send, reader)
        except asyncio.CancelledError:
            if not self._cancelled_by_us(relay):
                session.detach(reader, "client_disconnected")
                raise  # not ours: the server is shutting down
            session.detach(reader, self._ended_by)
        except BaseException:
            session.detach(reader, None)
            raise
        else:
            session.detach(reader, None)
        finally:
            self._stopped = True
            wheel().cancel(self._slot, self)
            if isinstance(hook, ConnectionHook):
                hook.callback = None
            siblings = [t for t in (watcher, self._ping) if t is not None]
            for task in siblings:
                task.cancel()
            try:
                await asyncio.gather(*siblings, return_exceptions=True)
            except asyncio.CancelledError:
                # our cancel, landing after the relay had finished on its own
                if not self._cancelled_by_us(relay):
                    raise

    def _cancelled_by_us(self, relay: asyncio.Task[Any]) -> bool:
        """Whether the cancellation that just arrived is the one ``_end`` requested (and no
        other is pending); it is then consumed."""
        if self._ended_by is None or self._consumed:
            return False
        self._consumed = True
        return relay.uncancel() == 0

    def _client_left(self) -> None:
        self._end("client_disconnected")

    def _end(self, reason: str) -> None:
        """The watcher or the watchdog ends the stream: the relay is cancelled with ``reason``
        (the first reason wins; none once the relay itself is done)."""
        if self._stopped or self._ended_by is not None:
            return
        self._ended_by = reason
        self._relay_task.cancel()

    def _watch(self) -> None:
        """The watchdog, every tick: a heartbeat when the stream is idle, the send deadline
        when a write is blocked."""
        if self._stopped:
            return
        now = self._loop.time()
        heartbeat, deadline = self.heartbeat, self.send_timeout
        tick = self._tick
        blocked_since = self._sending_since
        if blocked_since is not None:
            if now - blocked_since > deadline:
                self._end(ClientTooSlow.type)
                return
        elif self._ping is None and heartbeat:
            idle = now - self._last_send
            if idle >= heartbeat:
                self._ping = self._loop.create_task(
                    self._send_ping(self._send), context=self._context
                )
            else:
                tick = min(tick, heartbeat - idle)
        self._slot = wheel().call_at(now + tick, self, SessionStream._watch)

    async def _send_ping(self, send: Send) -> None:
        loop = self._loop
        self._sending_since = loop.time()
        try:
            await send({"type": "http.response.body", "body": PING, "more_body": True})
        finally:
            self._sending_since = None
            self._ping = None
        self._last_send = loop.time()

    async def _relay(self, send: Send, reader: Reader) -> None:
        """Send what the log holds, then follow it: while caught up, the log calls ``_push``
        as each upstream chunk lands, and the write happens right there, in the upstream's
        read callback; this task wakes only when a write blocks or the stream ends."""
        entries = self.session.log
        presenter = self.presenter
        loop = self._loop
        self._send = send
        self._reader = reader
        self._position = reader.position
        try:  # the response's head and what the log holds already go out in one write
            self._blocked = self._drain()
        finally:
            self._hook.release_head()
        while True:
            blocked, self._blocked = self._blocked or self._drain(), None
            if blocked is not None:
                await blocked
                self._sending_since = None
                self._last_send = loop.time()
                reader.advance(self._position)
                continue
            if presenter.finished or (entries.closed and self._position >= len(entries)):
                break
            self._wake = wake = loop.create_future()
            entries.listen(self._push)
            try:
                await wake
            finally:
                self._wake = None
                entries.unlisten(self._push)
        if presenter.follows_finalization:  # its last frames tell of the final record
            await self.session.settled.wait()
            end_id = len(entries) + 1
            if isinstance(presenter, NativePresenter) and self.after < end_id:
                # (else the client resumed after the end itself)
                presenter.end(orjson.dumps(end_summary(self.session)), end_id)
        self._sending_since = loop.time()
        await send({"type": "http.response.body", "body": presenter.close(), "more_body": False})
        self._sending_since = None

    def _drain(self) -> Awaitable[None] | None:
        """Render every entry past the position and write them as one piece of the body,
        without waiting. Returns the send still to finish when the socket was full."""
        items = self.session.log.entries
        end = len(items)
        position = self._position
        if end <= position:
            return None
        presenter = self.presenter
        if end == position + 1:  # the usual case: one new entry
            event, raw = items[position]
            body = presenter.render(end, event, raw)
        else:
            render = presenter.render
            stop_at_terminal = not presenter.follows_finalization
            parts = []
            for index in range(position, end):
                event, raw = items[index]
                frame = render(index + 1, event, raw)
                if frame:
                    parts.append(frame)
                if stop_at_terminal and presenter.finished:
                    break
            body = b"".join(parts)
        self._position = end
        if not body:
            self._reader.advance(end)
            return None
        now = self._loop.time()
        # Through the server's hook when it can (no ASGI message), else by starting ``send``.
        sending = None if self._hook.write(body) else self._start_send(body)
        if sending is None:  # written at once: the usual case
            self._last_send = now
            self._reader.advance(end)
        else:
            self._sending_since = now
        return sending

    def _start_send(self, body: bytes) -> Awaitable[None] | None:
        """Write ``body`` by starting ``send``, without waiting. Returns the rest of a ``send``
        that has to wait."""
        sending: Awaitable[None] = self._send(
            {"type": "http.response.body", "body": body, "more_body": True}
        )
        if type(sending) is not CoroutineType:  # a server whose send is another awaitable
            return sending
        context = self._context
        try:  # in the response's context, if any, not the upstream's read callback's
            waiting = sending.send(None) if context is None else context.run(sending.send, None)
        except StopIteration:  # finished without suspending
            return None
        return _Resumed(sending, waiting, context)

    def _push(self) -> bool:
        """The log's listener: new entries, in the writer's call. Returns whether it wants the
        next notification; wakes the relay task when it must take over."""
        wake = self._wake
        if wake is None or wake.done() or self._stopped or self._ended_by is not None:
            return False
        try:
            blocked = self._drain()
        except BaseException as exc:  # noqa: BLE001 - for the relay task to raise
            wake.set_exception(exc)
            return False
        if blocked is not None:
            self._blocked = blocked
        elif not self.presenter.finished and not self.session.log.closed:
            return True
        wake.set_result(None)
        return False


class _Resumed:
    """Awaitable: the rest of a coroutine that was started outside any task (by ``send()`` on
    it) and is suspended on ``waiting``. Awaiting it does what ``await coroutine`` would have
    done from there on: the task waits for the same future, then resumes the coroutine, and
    forwards a cancellation into it; each step in ``context`` when the coroutine was started
    in one (a middleware's ``send`` may hold a context variable's token across its await)."""

    __slots__ = ("_context", "_coroutine", "_waiting")

    def __init__(
        self,
        coroutine: Coroutine[Any, Any, Any],
        waiting: Any,
        context: contextvars.Context | None = None,
    ) -> None:
        self._coroutine = coroutine
        self._waiting = waiting
        self._context = context

    def __await__(self) -> Generator[Any, None, None]:
        coroutine, waiting, context = self._coroutine, self._waiting, self._context
        while True:
            try:
                yield waiting
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - forwarded, as ``await`` would
                try:
                    if context is None:
                        waiting = coroutine.throw(exc)
                    else:
                        waiting = context.run(coroutine.throw, exc)
                except StopIteration:
                    return
            else:
                try:
                    if context is None:
                        waiting = coroutine.send(None)
                    else:
                        waiting = context.run(coroutine.send, None)
                except StopIteration:
                    return


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
