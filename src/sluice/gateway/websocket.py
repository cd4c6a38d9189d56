"""The native API over a WebSocket: a session's events under a window the client acknowledges,
resumable from the last acknowledged id.

Protocol
--------

Connect to ``/api/sessions/{id}/ws?after=<seq>&window=<n>``. Both parameters are optional:
``after`` (default 0) is the last event id the client already has; ``window`` (default 64,
1..1024) is how many events may be sent and not yet acknowledged.

The server always accepts the handshake, so that every client, a browser's included, can read
why it is refused. A refusal is one JSON text frame in the native API's error shape,
``{"error": {"type": ..., "message": ...}}``, then a close:

- ``1008`` (policy violation): ``after`` or ``window`` is not a valid number (type
  ``invalid_request``; at most 15 digits), ``after`` is past the session's last event (type
  ``resume_beyond_log``: nothing is replayed), or the client broke the protocol (type
  ``client_protocol_error``: a message that is not ``{"ack": <id>}``, or an ack of an id
  never sent);
- ``4404``: no such session, in memory or in the store (type ``unknown_session``);
- ``1011``: the store could not be read.

The close reason repeats the message (cut to the 123 bytes a close frame allows).

Server → client, text frames of JSON:

- ``{"id": <seq>, "type": "<event type>", "data": {...}}``: every event of the session's log
  after ``after``, in order, ids rising (the same ids, types and data as the SSE stream's
  ``id:``, ``event:`` and ``data:``);
- ``{"type": "ping"}``: nothing was sent for a heartbeat interval (``streams.heartbeat_interval``);
- ``{"type": "end", "data": {...}}``: the record is final (its summary: state, finish reason,
  usage, cost, telemetry, error, tool calls); a normal close (``1000``) follows. ``end`` is sent
  once every event has been sent; it does not wait for the last acks.

Client → server, text (or binary) frames of JSON:

- ``{"ack": <seq>}``: the client has every event up to ``seq`` (cumulative; an ack at or below
  an earlier one changes nothing).

Flow control: the server never has more than ``window`` events sent and not acknowledged; at
that point it stops sending until an ack frees room. Only events count: pings and ``end`` do
not. The connection's place in the session's log (its ``Reader``) moves with the acknowledged
position, never the sent one, so a client that stops acknowledging holds the session's upstream
read once it lags ``streams.buffer_events`` behind: the provider's writes block, exactly as for
an SSE client whose socket is full.

Resume: reconnecting with ``?after=<last acknowledged id>`` continues with exactly the events
after it, no gap and no duplicate, whether the session is still streaming, finished, or known
only to the store (replayed from ``store.get_events``, then ``end`` from the stored record).
Events received but not acknowledged before a disconnect are sent again.

Leaving: a client that reads to ``end`` is detached as done; one that disconnects earlier is
detached ``client_disconnected``, and the session's disconnect policy applies (as for SSE). A
run of up to ``window`` frames written back to back must be taken by the client within
``streams.client_send_timeout``; otherwise it is detached ``client_too_slow`` and the
connection dropped (no close frame can get through a full socket: the client sees 1006).

Two sibling tasks per connection, the first to finish cancels the other: the sender (log →
frames, heartbeat, ``end``) and the receiver (acks, and the client's close).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from sluice import events as ev
from sluice.access.control import ANONYMOUS, Principal
from sluice.errors import (
    BadRequest,
    ClientProtocolError,
    ClientTooSlow,
    ResumeBeyondLog,
    SluiceError,
    UnknownSession,
)
from sluice.gateway.guard import PRINCIPAL
from sluice.gateway.resume import MAX_DIGITS, check_within, resume_id
from sluice.gateway.siblings import first_to_finish
from sluice.gateway.streaming import end_summary, summary_of
from sluice.logs import kv
from sluice.session.session import Reader, Session
from sluice.session.store import StoredEvent

if TYPE_CHECKING:
    from sluice.gateway.app import Gateway

log = logging.getLogger("sluice.gateway")

DEFAULT_WINDOW = 64
MAX_WINDOW = 1024

CLOSE_NORMAL = 1000
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_UNKNOWN_SESSION = 4404
#: RFC 6455 §5.5: a control frame's payload is at most 125 bytes, two of them the code
MAX_CLOSE_REASON = 123

PING = '{"type":"ping"}'

# ---------------------------------------------------------------------------------------------
# The wire format: no I/O


def encode_event(seq: int, event: ev.Event) -> str:
    kind, data = ev.payload(event)
    return orjson.dumps({"id": seq, "type": kind, "data": data}).decode()


def encode_stored(seq: int, kind: str, data: bytes) -> str:
    """A stored event: its data is already JSON, embedded as it is."""
    return orjson.dumps({"id": seq, "type": kind, "data": orjson.Fragment(data)}).decode()


def encode_end(summary: Mapping[str, Any]) -> str:
    return orjson.dumps({"type": "end", "data": summary}).decode()


def encode_error(error: SluiceError) -> str:
    return orjson.dumps({"error": {"type": error.type, "message": error.message}}).decode()


def decode_ack(message: str | bytes) -> int:
    """The id of an ``{"ack": <id>}`` frame; ``ClientProtocolError`` for anything else."""
    try:
        body = orjson.loads(message)
    except orjson.JSONDecodeError:
        body = None
    match body:
        case {"ack": int(seq)} if not isinstance(seq, bool) and seq >= 0:
            return seq
    raise ClientProtocolError('expected {"ack": <event id>}')


def parse_query(query: Mapping[str, str]) -> tuple[int, int]:
    """``(after, window)`` from the connection's query string; ``BadRequest`` if invalid."""
    after = resume_id(query.get("after"), "after")
    window = _natural(query.get("window", str(DEFAULT_WINDOW)))
    if window is None or not 1 <= window <= MAX_WINDOW:
        raise BadRequest(f"window must be an integer in 1..{MAX_WINDOW}")
    return after, window


def _natural(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS else None


def close_reason(message: str) -> str:
    return message.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")


class FlowWindow:
    """The events sent and not yet acknowledged: at most ``size`` of them. No I/O."""

    __slots__ = ("_unacked", "acked", "last_sent", "size")

    def __init__(self, size: int, after: int) -> None:
        self.size = size
        self._unacked: deque[int] = deque()
        #: the highest id acknowledged (or the client's ``after``)
        self.acked = after
        #: the highest id sent (or the client's ``after``)
        self.last_sent = after

    @property
    def room(self) -> int:
        return self.size - len(self._unacked)

    def sent(self, seq: int) -> None:
        self._unacked.append(seq)
        self.last_sent = seq

    def ack(self, seq: int) -> None:
        if seq > self.last_sent:
            raise ClientProtocolError(f"ack {seq} is beyond the last id sent ({self.last_sent})")
        if seq <= self.acked:
            return
        self.acked = seq
        unacked = self._unacked
        while unacked and unacked[0] <= seq:
            unacked.popleft()

    def settled(self, scanned: int) -> int:
        """The log position up to which the client has everything: just before the first
        unacknowledged event, or all that was scanned when every event sent is acknowledged
        (entries without an event are never sent, so they never wait for an ack)."""
        return self._unacked[0] - 1 if self._unacked else scanned


# ---------------------------------------------------------------------------------------------
# One connection


class SessionSocket:
    """One WebSocket client following one session's log, or replaying its stored events."""

    def __init__(
        self,
        websocket: WebSocket,
        after: int,
        window: int,
        *,
        heartbeat: float,
        send_timeout: float,
    ) -> None:
        self.websocket = websocket
        self.after = after
        self.flow = FlowWindow(window, after)
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self._room = asyncio.Event()
        self._reader: Reader | None = None
        #: log entries looked at so far (sent, or without an event, or at or before ``after``)
        self._scanned = 0
        self._last_send = asyncio.get_running_loop().time()

    async def follow(self, session: Session) -> None:
        """Relay a session in memory (live or recently finished) until ``end`` or the client
        leaves; the reader is detached in every case, with the reason it left."""
        reader = session.attach(self.after)
        self._reader = reader
        self._scanned = reader.position
        reason: str | None = "client_disconnected"
        try:
            reason = await self._run(self._relay_log(session))
        except Exception:
            reason = "internal_error"
            raise
        finally:
            session.detach(reader, reason)

    async def replay(self, events: list[StoredEvent], summary: Mapping[str, Any]) -> None:
        """Send a stored session's events (those after ``after``) and its ``end``."""
        await self._run(self._relay_stored(events, summary))

    async def _run(self, relay: Coroutine[Any, Any, None]) -> str | None:
        """Sender and receiver as sibling tasks; returns why the client left (None: it read to
        the end)."""
        sender = asyncio.ensure_future(relay)
        receiver = asyncio.ensure_future(self._receive_acks())
        done = await first_to_finish(sender, receiver)
        if sender in done:
            error = sender.exception()
            if error is None:
                return None
            if isinstance(error, WebSocketDisconnect):
                return "client_disconnected"
            if isinstance(error, ClientTooSlow):
                return ClientTooSlow.type
            raise error
        error = receiver.exception()
        if isinstance(error, ClientProtocolError):
            await refuse(self.websocket, CLOSE_POLICY_VIOLATION, error)
            return ClientProtocolError.type
        if error is not None:
            raise error
        return "client_disconnected"

    # -- the sender ---------------------------------------------------------------------------

    async def _relay_log(self, session: Session) -> None:
        log_, flow, after = session.log, self.flow, self.after
        position = self._scanned
        while True:
            entries = log_.entries
            end = len(entries)
            if position >= end:
                if log_.closed:
                    break
                await self._idle(functools.partial(log_.wait_beyond, position))
                continue
            room = flow.room
            run: list[str] = []
            while position < end:
                event = entries[position][0]
                if event is not None and position >= after:  # its id, position + 1, is new
                    if len(run) == room:
                        break
                    run.append(encode_event(position + 1, event))
                    flow.sent(position + 1)
                position += 1
            self._scanned = position
            if run:
                await self._send_run(run)
            self._settle()
            if position < end:  # the window is full and events wait
                await self._wait_for_room()
        await self._idle(session.finished.wait)
        await self._end(end_summary(session))

    async def _relay_stored(self, events: list[StoredEvent], summary: Mapping[str, Any]) -> None:
        flow = self.flow
        start = 0
        while start < len(events):
            await self._wait_for_room()
            run = events[start : start + flow.room]
            start += len(run)
            frames = []
            for seq, kind, data in run:
                frames.append(encode_stored(seq, kind, data))
                flow.sent(seq)
            await self._send_run(frames)
        await self._end(summary)

    async def _end(self, summary: Mapping[str, Any]) -> None:
        await self._send_run([encode_end(summary)])
        with contextlib.suppress(WebSocketDisconnect):  # the client had it all and left
            await self.websocket.close(CLOSE_NORMAL)

    async def _send_run(self, frames: list[str]) -> None:
        """Write frames back to back under one deadline (one timer per run, not per frame)."""
        send = self.websocket.send_text
        try:
            async with asyncio.timeout(self.send_timeout):
                for frame in frames:
                    await send(frame)
        except TimeoutError:
            raise ClientTooSlow(
                f"the client took over {self.send_timeout:g} s to take {len(frames)} frames"
            ) from None
        self._last_send = asyncio.get_running_loop().time()

    async def _wait_for_room(self) -> None:
        while self.flow.room <= 0:
            self._room.clear()
            await self._idle(self._room.wait)

    async def _idle(self, until: Callable[[], Awaitable[object]]) -> None:
        """Await ``until()``, sending a ping whenever nothing was sent for a heartbeat."""
        heartbeat = self.heartbeat
        if not heartbeat:
            await until()
            return
        loop = asyncio.get_running_loop()
        while True:
            quiet_left = self._last_send + heartbeat - loop.time()
            if quiet_left <= 0:
                await self._send_run([PING])
                continue
            try:
                async with asyncio.timeout(quiet_left) as scope:
                    await until()
            except TimeoutError:
                if not scope.expired():
                    raise
                continue
            return

    # -- the receiver -------------------------------------------------------------------------

    async def _receive_acks(self) -> None:
        receive, flow = self.websocket.receive, self.flow
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            flow.ack(decode_ack(data))
            if flow.room > 0:
                self._room.set()
            self._settle()

    def _settle(self) -> None:
        """Move the reader to what the client acknowledged: this is what lets a paused upstream
        read go on."""
        reader = self._reader
        if reader is not None:
            position = self.flow.settled(self._scanned)
            if position > reader.position:
                reader.advance(position)


# ---------------------------------------------------------------------------------------------
# The endpoint


async def refuse(websocket: WebSocket, code: int, error: SluiceError) -> None:
    """Tell the client why, in the native API's error shape, then close with ``code``."""
    with contextlib.suppress(WebSocketDisconnect):
        await websocket.send_text(encode_error(error))
        await websocket.close(code, close_reason(error.message))


def session_socket_endpoint(gateway: Gateway) -> Callable[[WebSocket], Awaitable[None]]:
    """The ``WebSocketRoute`` endpoint of ``/api/sessions/{session_id}/ws`` for ``gateway``."""

    async def reject(websocket: WebSocket, code: int, error: SluiceError) -> None:
        gateway.metrics.rejected.labels("ws", error.type).inc()
        log.warning("websocket refused %s", kv(code=code, type=error.type, message=error.message))
        await refuse(websocket, code, error)

    async def session_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        session_id = websocket.path_params["session_id"]
        try:
            after, window = parse_query(websocket.query_params)
        except BadRequest as exc:
            await reject(websocket, CLOSE_POLICY_VIOLATION, exc)
            return
        principal: Principal = websocket.scope.get(PRINCIPAL, ANONYMOUS)
        session = gateway.sessions.get(session_id)
        hidden = session is not None and not principal.may_see(session.spec.tenant)
        if hidden:
            session = None
        if session is not None:
            try:
                check_within(after, len(session.log), session_id)
            except ResumeBeyondLog as exc:
                await reject(websocket, CLOSE_POLICY_VIOLATION, exc)
                return
        streams = gateway.settings.streams if session is None else session.settings
        socket = SessionSocket(
            websocket,
            after,
            window,
            heartbeat=streams.heartbeat_interval,
            send_timeout=streams.client_send_timeout,
        )
        if session is not None:
            await socket.follow(session)
            return
        try:
            record = None if hidden else await gateway.store.get(session_id)
            if record is None or not principal.may_see(record.get("tenant")):
                raise UnknownSession(f"no session {session_id!r}")
            check_within(after, record.get("events"), session_id)
            events = await gateway.store.get_events(session_id, after)
        except UnknownSession as exc:
            await reject(websocket, CLOSE_UNKNOWN_SESSION, exc)
            return
        except ResumeBeyondLog as exc:
            await reject(websocket, CLOSE_POLICY_VIOLATION, exc)
            return
        except SluiceError as exc:
            log.exception("session not readable from the store %s", kv(session_id=session_id))
            await refuse(websocket, CLOSE_INTERNAL_ERROR, exc)
            return
        await socket.replay(events, summary_of(record))

    return session_ws
