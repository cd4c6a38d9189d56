"""This gateway process as one node among several: its lease, the commands sent to it, its
sessions' shared live logs, and what it answers for sessions another node relays.

With ``[bus] url`` set, every gateway process is a node on the shared backplane
(``sluice.distributed``):

- the journal writes each live session's new events to the live log beside the store (off the
  hot path: a window's batch, queued); a session's launch ``start``s its log, its end writes the
  rest of its log and ``finish``es it with the end summary;
- the node renews its lease every third of ``[bus] lease_ttl`` and listens on its control
  channel: a Stop or a Retry sent from another node is applied to its local session;
- a node that sees another's lease run out (``Control.expired_nodes``) and wins ``forget``
  closes that node's records ``errored`` with ``node_lost`` and finishes their live logs, so
  that their followers get the end;
- for a session live on another node, ``RemoteFollow`` relays its live log in the native SSE
  frames a local follow sends, and ``cancel``/``retry`` send the command to the owning node.

What the store holds stays the truth for a finished session: every node reads records and
finished logs there (Postgres, shared).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from sluice.config import BusSettings
from sluice.distributed import BusError
from sluice.distributed.backplane import Backplane
from sluice.distributed.control import CANCEL, RETRY, Command
from sluice.distributed.livelog import DONE, LIVE, LoggedEvent, Lookup
from sluice.errors import ClientTooSlow, SluiceError
from sluice.gateway.siblings import first_to_finish, send_body, wait_disconnect
from sluice.gateway.streaming import PING, sse_headers, summary_of
from sluice.logs import kv
from sluice.pricing import PriceBook
from sluice.session.manager import SessionManager
from sluice.session.recovery import NODE_LOST, close_interrupted
from sluice.session.session import ERRORED, Session
from sluice.session.store import LIVE_STATES, NewEvent, Record, SessionStore
from sluice.sse import encode_event

log = logging.getLogger("sluice.gateway")

#: seconds a finished session's live log is kept (its followers read the store after that)
DONE_TTL = 300.0
#: seconds a Stop or Retry sent to another node waits for the session's answer at most
COMMAND_WAIT = 10.0
#: seconds a request for a session just launched elsewhere waits for its first record at most
FIRST_RECORD_WAIT = 2.0
#: seconds between two looks at the shared state while waiting for a command's effect
POLL = 0.02
#: seconds before a failed lease renewal, command subscription or expiry check is tried again
RETRY_DELAY = 1.0


class LiveLogSink:
    """The journal's sink that appends to the shared live log (``JournalSink``)."""

    __slots__ = ("live_log",)

    def __init__(self, backplane: Backplane) -> None:
        self.live_log = backplane.log

    def append_events(self, session_id: str, events: Sequence[NewEvent]) -> Awaitable[None]:
        return self.live_log.append(session_id, events)


def end_summary(record: Record, events: int) -> dict[str, Any]:
    """What a finished live log keeps: the ``end`` event's data and the log's length."""
    return summary_of(record) | {"events": events}


#: runs a lost node's session again here from its handed-over request, its stored record and
#: log; False when it cannot (the request no longer parses, the model is gone)
TakeOver = Callable[[bytes, Record, list[LoggedEvent]], Awaitable[bool]]


class NodeLink:
    """One gateway process on the backplane. Owns the backplane, its background tasks and its
    writes in flight; ``start`` before serving, ``close`` after the sessions ended."""

    def __init__(
        self,
        backplane: Backplane,
        sessions: SessionManager,
        settings: BusSettings,
        on_lost: Callable[[list[Record]], None] | None = None,
        take_over: TakeOver | None = None,
    ) -> None:
        self.backplane = backplane
        self.sessions = sessions
        self.node = sessions.node
        self.lease_ttl = settings.lease_ttl
        self.handover_ttl = settings.live_ttl
        self._on_lost = on_lost
        self._take_over = take_over
        #: this node's sessions whose request is handed over, to withdraw at their end
        self._handed: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        #: ends and retries under way (one task each, awaited by ``close``)
        self._writes: set[asyncio.Task[None]] = set()
        self._listening = asyncio.Event()
        self._closed = False

    @property
    def store(self) -> SessionStore:
        return self.sessions.store

    @property
    def prices(self) -> PriceBook:
        return self.sessions.prices

    # -- lifetime -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Reach the backplane, take the lease, listen for commands; raises ``BusError`` when
        Redis does not answer."""
        await self.backplane.open()
        await self.backplane.control.heartbeat(self.node, self.lease_ttl)
        self.sessions.journal_sinks.append(LiveLogSink(self.backplane))
        loop = asyncio.get_running_loop()
        for work, name in (
            (self._renew_forever, "lease"),
            (self._listen_forever, "commands"),
            (self._watch_forever, "expiry"),
        ):
            self._tasks.append(loop.create_task(work(), name=f"node {name}"))
        async with asyncio.timeout(10):
            await self._listening.wait()

    async def close(self) -> None:
        """Stop the background tasks, write the ends still queued, give up the lease (this
        node left on purpose: nobody need close its sessions), close the backplane."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        with contextlib.suppress(BusError):
            await self.backplane.control.forget(self.node)
        await self.backplane.close()

    async def _renew_forever(self) -> None:
        control = self.backplane.control
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                await control.heartbeat(self.node, self.lease_ttl)
            except BusError as exc:
                log.error("node lease not renewed %s", kv(node=self.node, error=exc.message))

    async def _listen_forever(self) -> None:
        while True:
            try:
                async with self.backplane.control.listen(self.node) as commands:
                    self._listening.set()
                    async for command in commands:
                        self._apply(command)
            except BusError as exc:
                log.error("node commands not received %s", kv(node=self.node, error=exc.message))
            self._listening.clear()
            await asyncio.sleep(RETRY_DELAY)

    def _apply(self, command: Command) -> None:
        """A Stop or a Retry another node sent for one of this node's sessions."""
        session = self.sessions.get(command.session_id)
        if session is None:
            log.warning(
                "command for an unknown session %s",
                kv(kind=command.kind, session_id=command.session_id),
            )
            return
        if command.kind == CANCEL:
            session.cancel(command.reason or "client_stop")
        elif command.kind == RETRY:
            self._track(self._retry(session.id))

    async def _retry(self, session_id: str) -> None:
        try:
            await self.sessions.retry(session_id)
        except SluiceError as exc:
            log.warning("retry refused %s", kv(session_id=session_id, type=exc.type))

    async def _watch_forever(self) -> None:
        """Every lease period: nodes whose lease ran out are closed by the one node that wins
        their ``forget``."""
        while True:
            await asyncio.sleep(self.lease_ttl)
            try:
                await self.close_lost_nodes()
            except SluiceError as exc:
                log.error("lost nodes not closed %s", kv(error=exc.message))

    async def close_lost_nodes(self) -> list[Record]:
        control = self.backplane.control
        closed: list[Record] = []
        for node in await control.expired_nodes():
            if node == self.node or not await control.forget(node):
                continue

            taken: set[str] = set()
            for session_id in await self.backplane.log.owned_by(node):
                await self._catch_up(session_id)
                if await self._run_again(session_id):
                    taken.add(session_id)

            async def gone(owner: str | None, lost: str = node) -> bool:
                return owner == lost

            records = await close_interrupted(
                self.store,
                self.prices,
                gone,
                NODE_LOST,
                ERRORED,
                keep=taken,
                keep_content=self.sessions.keep_content,
            )
            for record in records:
                events = await self.store.get_events(record["id"], max(0, record["events"] - 1))
                tail = [(seq, kind, orjson.loads(raw)) for seq, kind, raw in events]
                self.backplane.log.append(record["id"], tail)
                summary = end_summary(record, record["events"])
                await self.backplane.log.finish(record["id"], summary, DONE_TTL)
            log.warning("node lost %s", kv(node=node, sessions=len(records), retried=len(taken)))
            closed += records
        if closed and self._on_lost is not None:
            self._on_lost(closed)
        return closed

    async def _run_again(self, session_id: str) -> bool:
        """A whole-turn retry here of a lost node's session that handed its request over (a
        native session under ``mid_stream_failure = "retry"`` with attempts left)."""
        if self._take_over is None:
            return False
        request = await self.backplane.control.take(session_id)
        if request is None:
            return False
        record = await self.store.get(session_id)
        if record is None or record.get("state") not in LIVE_STATES:
            return False
        stored = [
            (seq, kind, orjson.loads(raw))
            for seq, kind, raw in await self.store.get_events(session_id)
        ]
        # the live log gets what the store has beyond it (an append at or below its last
        # number is ignored), so its followers miss nothing before the retry
        await self.backplane.log.append(session_id, stored)
        try:
            return await self._take_over(request, record, stored)
        except SluiceError as exc:
            log.warning("lost session not run again %s", kv(session_id=session_id, type=exc.type))
            return False

    def hand_over(self, session: Session, request: bytes) -> None:
        """Leave what it takes to run ``session``'s turn again on another node, should this
        one die before it ends."""
        self._handed.add(session.id)
        self._track(self.backplane.control.hand_over(session.id, request, self.handover_ttl))

    async def _catch_up(self, session_id: str) -> None:
        """Journal to the store what a lost node's live log holds beyond it (the two are
        written in the same window, and a ``kill -9`` may land between them): the record
        closed from the store then holds every event a follower may have been sent."""
        stored = await self.store.get_events(session_id)
        last = stored[-1][0] if stored else 0
        while True:
            missing = await self.backplane.log.read(session_id, last)
            if not missing:
                return
            await self.store.append_events(session_id, missing)
            last = missing[-1][0]

    # -- this node's sessions -------------------------------------------------------------------

    def _track(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("live log not written %s", kv(error=str(error)))

    def session_started(self, session: Session) -> None:
        """The session is launched (or retried) here: its live log names this node, and its
        request is handed over if it has one to hand."""
        self._track(self.backplane.log.start(session.id, self.node))
        if session.spec.handover is not None:
            self.hand_over(session, session.spec.handover)

    def session_ended(self, session: Session) -> None:
        """The session's record is stored: the rest of its log, then its end, to the live log
        (in this order: a follower's last event comes before its end)."""
        live_log = self.backplane.log
        rest = session.stored_events(session.journaled)
        # (both queued now, in this order: a retry's start, queued later, comes after them)
        appended = live_log.append(session.id, rest) if rest else None
        summary = end_summary(session.record(), len(session.log))
        self._track(_in_order(appended, live_log.finish(session.id, summary, DONE_TTL)))
        if session.id in self._handed:
            self._handed.discard(session.id)
            self._track(self.backplane.control.withdraw(session.id))

    # -- sessions other nodes relay -------------------------------------------------------------

    async def record(self, session_id: str) -> Record | None:
        """The stored record of a session, also one just launched on another node: while
        the live log knows the session, its first record is waited for (it is committed a
        few milliseconds after the launch); an id nobody knows answers at once."""
        record = await self.store.get(session_id)
        if record is not None or (await self.lookup(session_id)).state not in (LIVE, DONE):
            return record
        deadline = time.monotonic() + FIRST_RECORD_WAIT
        while record is None and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
            record = await self.store.get(session_id)
        return record

    async def alive(self, node: str) -> bool:
        """Whether ``node`` holds its lease."""
        return await self.backplane.control.alive(node)

    async def lookup(self, session_id: str) -> Lookup:
        return await self.backplane.log.lookup(session_id)

    async def owner(self, record: Record) -> str | None:
        """The other node that relays the live session ``record`` describes, or None (it is
        this node's, or not live anywhere)."""
        # The live log says it first: the store's record of a session just retried, or just
        # launched, may still be the one before.
        found = await self.lookup(record["id"])
        if found.state == LIVE and found.node and found.node != self.node:
            return found.node
        return None

    async def cancel(self, owner: str, session_id: str, reason: str) -> tuple[bool, str | None]:
        """Stop a session ``owner`` relays: (whether it ended cancelled, its final state;
        None when the owner did not answer in time)."""
        sent = await self.backplane.control.send(owner, Command(CANCEL, session_id, reason))
        if not sent:
            return False, None
        summary = await self._until_done(session_id)
        state = None if summary is None else summary.get("state")
        return state == "cancelled", state

    async def retry(self, owner: str, session_id: str, attempts: int) -> bool:
        """Ask ``owner`` for a new attempt of a session it kept, ended after ``attempts``
        attempts; True once the new attempt is live (or already done).

        The ended attempt's log is seen done first: its record is stored before its log is
        finished, and until then the log's ``live`` is that attempt's, not the new one's."""
        deadline = time.monotonic() + COMMAND_WAIT
        while (await self.lookup(session_id)).state == LIVE:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL)
        sent = await self.backplane.control.send(owner, Command(RETRY, session_id))
        if not sent:
            return False
        while time.monotonic() < deadline:
            found = await self.lookup(session_id)
            if found.state == LIVE:
                return True
            if found.state == DONE and (found.summary or {}).get("attempts", 0) > attempts:
                return True
            await asyncio.sleep(POLL)
        return False

    async def _until_done(self, session_id: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + COMMAND_WAIT
        while time.monotonic() < deadline:
            found = await self.lookup(session_id)
            if found.state == DONE:
                return found.summary
            await asyncio.sleep(POLL)
        return None


async def _in_order(first: Awaitable[None] | None, second: Awaitable[None]) -> None:
    if first is not None:
        await first
    await second


def native_frames(events: Sequence[tuple[int, str, Any]]) -> bytes:
    """Native SSE frames of logged events, as a local follow renders them (``NativePresenter``)
    and a stored replay does: ``id`` the sequence number, ``event`` the type, the JSON data."""
    return b"".join(
        encode_event(data if type(data) is bytes else orjson.dumps(data), event=kind, id=str(seq))
        for seq, kind, data in events
    )


class RemoteFollow:
    """An ASGI response: a session another node relays, followed through its live log, in the
    native SSE frames; once its log is done, what the store holds beyond the last event sent
    (a lost node's error) and the ``end`` frame from the stored record, as a stored replay
    ends. Two sibling tasks: the writer and the disconnect watcher."""

    def __init__(
        self,
        link: NodeLink,
        session_id: str,
        after: int,
        *,
        heartbeat: float,
        send_timeout: float,
        buffering_header: bool,
    ) -> None:
        self.link = link
        self.session_id = session_id
        self.after = after
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.buffering_header = buffering_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = sse_headers(
            self.buffering_header, (b"x-sluice-session-id", self.session_id.encode())
        )
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        writer = asyncio.ensure_future(self._write(send))
        watcher = asyncio.ensure_future(wait_disconnect(receive))
        done = await first_to_finish(writer, watcher)
        if writer in done:
            error = writer.exception()
            if error is not None and not isinstance(error, (ClientTooSlow, BusError)):
                raise error
            if isinstance(error, BusError):
                log.error(
                    "remote follow ended %s", kv(session_id=self.session_id, error=error.message)
                )

    async def _send(self, send: Send, body: bytes, more: bool = True) -> None:
        await send_body(send, body, more, self.send_timeout, "client")

    async def _write(self, send: Send) -> None:
        link, session_id = self.link, self.session_id
        last = self.after
        pages = aiter(link.backplane.log.follow(session_id, last))
        try:
            while True:
                page_task: asyncio.Future[list[LoggedEvent]] = asyncio.ensure_future(anext(pages))
                try:
                    while True:
                        done, _ = await asyncio.wait({page_task}, timeout=self.heartbeat or None)
                        if done:
                            break
                        await self._send(send, PING)
                except BaseException:
                    page_task.cancel()
                    with contextlib.suppress(BaseException):
                        await page_task
                    raise
                try:
                    page = page_task.result()
                except StopAsyncIteration:
                    break
                await self._send(send, native_frames(page))
                last = page[-1][0]
        finally:
            with contextlib.suppress(BaseException):
                await pages.aclose()  # type: ignore[attr-defined]
        store = link.store
        record = await store.get(session_id)
        body = b""
        if record is not None and record.get("state") not in LIVE_STATES:
            stored = await store.get_events(session_id, last)
            body = native_frames(stored)
            if stored:
                last = stored[-1][0]
            count = record.get("events")
            # (a node killed between its two journal writes may have left the live log one
            # batch ahead of the store: the end still comes after every id this stream sent)
            end_id = max(count if isinstance(count, int) else 0, last) + 1
            if self.after < end_id:
                summary = orjson.dumps(summary_of(record))
                body += encode_event(summary, event="end", id=str(end_id))
        await self._send(send, body, more=False)
