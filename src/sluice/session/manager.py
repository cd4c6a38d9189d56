"""The session manager: creates sessions, owns their pump tasks, and keeps the live ones.

It is the single owner of every pump task (no fire-and-forget): ``shutdown()`` cancels and
awaits them all, and each cancelled session still ends with a stored record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from sluice import events as ev
from sluice.config import StreamSettings
from sluice.errors import UnknownSession, UpstreamError
from sluice.logs import kv
from sluice.pricing import PriceBook
from sluice.redact import ProviderKeys
from sluice.session.bus import Bus
from sluice.session.opsfeed import OpsFeed
from sluice.session.session import (
    FINALIZING,
    TERMINAL_STATES,
    Session,
    SessionDeps,
    SessionObserver,
    SessionSpec,
)
from sluice.session.store import NewEvent, SessionStore
from sluice.upstream import Upstream

log = logging.getLogger("sluice.session")

SESSIONS_TOPIC = "sessions"


def new_session_id() -> str:
    return "op-" + secrets.token_hex(6)


def new_node_id() -> str:
    """A name for this gateway process, unique across restarts: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class JournalSink(Protocol):
    """Where the journal writes live sessions' new events: the store (durability), and the
    shared live log when sessions span processes."""

    def append_events(self, session_id: str, events: Sequence[NewEvent]) -> Awaitable[None]: ...


#: what one log entry holds besides its upstream bytes: the entry's tuple, the event (a
#: ``TextDelta`` and its string, for most), the list's slot; measured with ``tracemalloc``
#: at about 150 bytes for a short text delta
ENTRY_BYTES = 160
#: what a finished session holds besides its log and its text: the session, its spec and
#: request body, its accumulator, clock and flags
SESSION_BYTES = 4096


def held_bytes(session: Session) -> int:
    """An estimate of what a finished session holds in memory, in bytes: its log (entries and
    upstream bytes), its text and reasoning, its request body."""
    entries = session.log.entries
    raw = sum(len(entry[1]) for entry in entries)
    acc = session.acc
    return (
        SESSION_BYTES
        + ENTRY_BYTES * len(entries)
        + raw
        + len(acc.text)
        + len(acc.reasoning)
        + len(session.spec.body)
    )


class SessionManager:
    def __init__(
        self,
        store: SessionStore,
        bus: Bus,
        upstream: Upstream,
        prices: PriceBook,
        settings: StreamSettings | None = None,
        keep_finished: int = 1000,
        on_start: Callable[[Session], None] | None = None,
        on_end: Callable[[Session], None] | None = None,
        feed: OpsFeed | None = None,
        redaction: ProviderKeys | None = None,
        node: str | None = None,
        journal_window: float = 0.1,
        keep_content: bool = True,
    ) -> None:
        self.store = store
        self.bus = bus
        self.upstream = upstream
        self.prices = prices
        self.settings = settings or StreamSettings()
        self.live: dict[str, Session] = {}
        #: when a session last started or ended (``time.monotonic()``)
        self._last_activity = time.monotonic()
        #: recently finished sessions kept in memory for fast replay, oldest first, with
        #: what each holds in bytes (``held_bytes``); their sum stays within
        #: ``settings.keep_finished_bytes`` (the store has every one of them)
        self.recent: dict[str, Session] = {}
        self._recent_sizes: dict[str, int] = {}
        self.recent_bytes = 0
        self._keep_finished = keep_finished
        self._tasks: set[asyncio.Task[None]] = set()
        #: live sessions by ``spec.admission_key``, for the per-key ceilings
        self._live_by_key: dict[str, int] = {}
        self._on_start = on_start
        self._on_end = on_end
        #: called with each session whose first answer token is being relayed, in the
        #: pump's callback (before the token is written: defer anything slow)
        self.first_token_hooks: list[Callable[[Session], None]] = []
        #: told everything a session tells, after the feed and the books: tracing, when on
        #: (empty otherwise, and then nothing more is done per session)
        self.observers: list[SessionObserver] = []
        #: the operations feed: told of state changes, first tokens and ends; it publishes
        #: coalesced derived state on the bus
        self.feed = feed if feed is not None else OpsFeed(bus)
        #: the secrets each new session redacts: the configured provider keys as they are
        #: when it starts (keys rotate without a restart), and token shapes
        self.redaction = redaction if redaction is not None else ProviderKeys()
        #: this process's name in records, leases and the operations view
        self.node = node or new_node_id()
        #: seconds between two journal writes: what a ``kill -9`` may lose of a live
        #: session's events is at most this and the store's commit (docs/deployment.md)
        self.journal_window = journal_window
        #: whether final records and logs keep what was said (``[store] keep_content``)
        self.keep_content = keep_content
        #: where each window's new events go: the store, and the shared live log if any
        self.journal_sinks: list[JournalSink] = [store]
        #: set when a session is launched: the journal's task sleeps while none is live
        self._journal_idle = asyncio.Event()
        self._journal_failures = 0

    def start(self, session_id: str, spec: SessionSpec) -> Session:
        """Create the session and start its pump; the record is written as it starts."""
        session = Session(session_id, spec, self.deps())
        self.launch(session)
        return session

    def deps(self) -> SessionDeps:
        """What a new session works with: this manager's upstream, store, prices, settings
        and redaction as they are now, and the manager as its observer."""
        return SessionDeps(
            self.upstream,
            self.store,
            self.prices,
            self.settings,
            self.redaction,
            self,
            self.node,
            self.keep_content,
        )

    def take_over(
        self,
        session_id: str,
        spec: SessionSpec,
        record: dict[str, Any],
        stored: list[tuple[int, str, dict[str, Any]]],
        reason: str,
    ) -> Session:
        """Run again, here, the turn of a session whose process died: same id, its stored
        log continued by a ``retry`` event and the new attempt."""
        session = Session(session_id, spec, self.deps())
        session.take_over(record, stored, reason)
        self.launch(session)
        return session

    async def retry(self, session_id: str) -> Session:
        """The recover button: a new attempt of an errored or cancelled session, same id.

        A session whose end is still being stored (its state is final, its record on its way
        to the store) finishes first: otherwise its end would be told to the metrics, the
        ops feed and the store with the new attempt's state."""
        session = self.require(session_id)
        if session.state in (FINALIZING, *TERMINAL_STATES) and not session.finished.is_set():
            await session.finished.wait()
        session.prepare_retry()
        self._forget_finished(session.id)
        self.launch(session)
        return session

    def quiet_for(self) -> float:
        """Seconds since the last session started or ended, while none is live; 0 while one
        is. Back-to-back sessions are never quiet, even between two of them."""
        if self.live:
            return 0.0
        return time.monotonic() - self._last_activity

    def launch(self, session: Session) -> Session:
        """Start the pump of a session made with ``deps()`` (an agent's run, say)."""
        self._last_activity = time.monotonic()
        self.live[session.id] = session
        self._journal_idle.set()
        key = session.spec.admission_key
        if key is not None:
            self._live_by_key[key] = self._live_by_key.get(key, 0) + 1
        task = asyncio.get_running_loop().create_task(session.run(), name=f"session {session.id}")
        session.task = task
        session.begin()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._on_start is not None:
            self._on_start(session)
        self.on_state(session)
        return session

    def get(self, session_id: str) -> Session | None:
        return self.live.get(session_id) or self.recent.get(session_id)

    def require(self, session_id: str) -> Session:
        session = self.get(session_id)
        if session is None:
            raise UnknownSession(f"no live session {session_id!r}")
        return session

    def cancel(self, session_id: str, reason: str) -> bool:
        return self.require(session_id).cancel(reason)

    # -- notifications from sessions ----------------------------------------------------------

    def on_state(self, session: Session) -> None:
        """A state change: the operations feed publishes it (coalesced, in its next window)."""
        self.feed.state_changed(session)
        for observer in self.observers:
            observer.on_state(session)

    def on_attempt(self, session: Session) -> None:
        for observer in self.observers:
            observer.on_attempt(session)

    def on_attempt_end(self, session: Session, error: UpstreamError | ev.Error | None) -> None:
        for observer in self.observers:
            observer.on_attempt_end(session, error)

    def on_tool_end(self, session: Session, call: dict[str, Any], started: float) -> None:
        for observer in self.observers:
            observer.on_tool_end(session, call, started)

    def on_first_token(self, session: Session) -> None:
        """The first answer token (text or tool-call arguments) of an attempt arrived."""
        self.feed.first_token(session)
        for hook in self.first_token_hooks:
            hook(session)
        for observer in self.observers:
            observer.on_first_token(session)

    async def on_finished(self, session: Session) -> None:
        if self.live.pop(session.id, None) is not None:
            key = session.spec.admission_key
            if key is not None:
                left = self._live_by_key.get(key, 0) - 1
                if left > 0:
                    self._live_by_key[key] = left
                else:
                    self._live_by_key.pop(key, None)
        self._last_activity = time.monotonic()
        self._keep(session)
        if self._on_end is not None:
            self._on_end(session)
        self.feed.finished(session)
        for observer in self.observers:
            await observer.on_finished(session)
        # One summary per finished session, for integrations that want only the endings.
        await self.bus.publish(SESSIONS_TOPIC, self._summary(session))
        telemetry = session.telemetry()
        log.info(
            "session finished %s",
            kv(
                session_id=session.id,
                state=session.state,
                provider=session.route.label,
                finish_reason=session.acc.finish_reason,
                error=(session.error or {}).get("type"),
                output_tokens=session.output_tokens(),
                ttft_ms=telemetry["ttft_ms"],
                duration_ms=telemetry["duration_ms"],
                cost=(session.cost or {}).get("total"),
            ),
        )

    def _keep(self, session: Session) -> None:
        """Keep a finished session for replay, within the count and the byte budget: the
        oldest go first, and one larger than the whole budget is not kept (its replay and its
        record come from the store)."""
        size = held_bytes(session)
        budget = self.settings.keep_finished_bytes
        if size <= budget:
            self.recent[session.id] = session
            self._recent_sizes[session.id] = size
            self.recent_bytes += size
        recent = self.recent
        while recent and (len(recent) > self._keep_finished or self.recent_bytes > budget):
            self._forget_finished(next(iter(recent)))

    def _forget_finished(self, session_id: str) -> None:
        if self.recent.pop(session_id, None) is not None:
            self.recent_bytes -= self._recent_sizes.pop(session_id)

    def _summary(self, session: Session) -> dict[str, Any]:
        return {
            "id": session.id,
            "state": session.state,
            "provider": session.route.provider.name,
            "model": session.route.model,
            "output_tokens": session.output_tokens(),
            "terminal": session.state in TERMINAL_STATES,
            "error": session.error,
            "cost": session.cost,
        }

    def live_for_key(self, key: str) -> int:
        """Live sessions counted against ``key`` (a client key's name, or an address)."""
        return self._live_by_key.get(key, 0)

    async def prune(self, retention: float) -> int:
        """Forget finished sessions older than ``retention`` seconds, in memory and in the
        store. Returns how many records the store removed."""
        cutoff = time.time() - retention
        for session_id in [k for k, s in self.recent.items() if s.created_at < cutoff]:
            self._forget_finished(session_id)
        return await self.store.delete_before(cutoff)

    # -- the journal ------------------------------------------------------------------------

    async def journal_forever(self) -> None:
        """Every ``journal_window``, write what live sessions relayed since the last time.
        Run by the gateway's lifespan as one task; cancelled, it writes once more."""
        try:
            while True:
                if not self.live:  # no wake-ups while nothing is live
                    self._journal_idle.clear()
                    await self._journal_idle.wait()
                await asyncio.sleep(self.journal_window)
                self.journal()
        finally:
            self.journal()

    def journal(self) -> int:
        """Queue each live session's events not yet journaled, one batch per session and
        sink (off the hot path: the relay never waits on it). Returns how many events. A
        session whose end is being stored is left alone: its final write has its whole log."""
        queued = 0
        for session in self.live.values():
            end = len(session.log.entries)
            start = session.journaled
            if end <= start or session.state == FINALIZING or session.state in TERMINAL_STATES:
                continue
            session.journaled = end
            batch = session.stored_events(start, end)
            if not batch:
                continue
            queued += len(batch)
            for sink in self.journal_sinks:
                written = sink.append_events(session.id, batch)
                if isinstance(written, asyncio.Future):
                    written.add_done_callback(self._journal_written)
                else:
                    asyncio.ensure_future(written).add_done_callback(self._journal_written)
        return queued

    def _journal_written(self, written: asyncio.Future[None]) -> None:
        if written.cancelled() or written.exception() is None:
            return
        self._journal_failures += 1
        if self._journal_failures == 1 or self._journal_failures % 1000 == 0:
            log.error(
                "session journal not stored %s",
                kv(error=str(written.exception()), failures=self._journal_failures),
            )

    async def shutdown(self) -> None:
        for session in list(self.live.values()):
            session.cancel("gateway_shutdown")
        tasks = list(self._tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
