"""Where session records, their event logs and conversations are kept: a protocol and two
embedded backends (the Postgres one is ``sluice.session.pgstore``).

``MemoryStore`` keeps everything in dictionaries (tests, ``store.url = "memory://"``).
``SQLiteStore`` keeps records in one SQLite file (WAL): writes are committed together on the
event loop (group commit in short slices, no wait for the disk), reads and checkpoints run on a
thread of low priority.

A write is queued when ``put`` is called and its awaitable says when it is stored: writes
made together keep their call order, and awaiting several of them (``gather``) makes no task.

A conversation ties several sessions (the turns of an agent or a chat) together: its
messages so far and its sessions' ids, kept so that a client sends only its next prompt. The
store keeps it whole, as one JSON document, found by its id and removed by retention once it
has not been updated for as long as a session is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import orjson

from sluice.errors import SluiceError
from sluice.logs import kv
from sluice.sqlite import transaction

log = logging.getLogger("sluice.store")

Record = dict[str, Any]
#: a write, run on the writer's connection inside a transaction
_Op = Callable[[sqlite3.Connection], Any]
#: an event as read back: (sequence number, event type, its data as JSON)
StoredEvent = tuple[int, str, bytes]
#: an event as given to ``put``: (sequence number, event type, its JSON-ready data). A
#: session's events are encoded together, in one call, when its log is stored.
NewEvent = tuple[int, str, Mapping[str, Any]]


#: the states of a session that has not ended: a record left in one of them by a process that
#: died is closed ``interrupted`` when the gateway starts (``sluice.session.recovery``)
LIVE_STATES = ("starting", "streaming", "finalizing")
#: the same, as SQL: ``state IN`` this list (both stores' statements read it)
LIVE_STATES_SQL = "(" + ", ".join(f"'{state}'" for state in LIVE_STATES) + ")"


class StoreError(SluiceError):
    type = "store_error"


class SessionStore(Protocol):
    async def open(self) -> None: ...

    def put(self, record: Record, events: Sequence[NewEvent] | None = None) -> Awaitable[None]:
        """Insert or replace the record with ``record["id"]``; with ``events``, also that
        session's event log, replacing any stored before (a session stores its whole log
        when it ends, again after a retry). The write is queued now; the awaitable ends once
        it is stored, or raises ``StoreError``."""

    def append_events(self, session_id: str, events: Sequence[NewEvent]) -> Awaitable[None]:
        """Journal a live session's newest events (numbered above those journaled before), so
        that a crash of the process loses only what was not yet written. Ignored unless the
        session's record is stored in a live state; the ``put`` that stores its whole log
        replaces what was journaled."""

    async def unfinished(self, limit: int = 1000) -> list[Record]:
        """Records still in a live state (``LIVE_STATES``), oldest first."""

    async def get(self, session_id: str) -> Record | None: ...

    async def query(
        self,
        limit: int = 50,
        state: str | None = None,
        provider: str | None = None,
        tenant: str | None = None,
    ) -> list[Record]:
        """Newest first; with ``tenant``, only that tenant's sessions."""

    async def get_events(self, session_id: str, after: int = 0) -> list[StoredEvent]:
        """The session's stored log after sequence number ``after``; for a session still
        live in the store, what its journal holds so far."""

    def put_conversation(self, conversation: Record) -> Awaitable[None]:
        """Insert or replace the conversation with ``conversation["id"]`` (JSON-ready: ``id``,
        ``tenant`` (or None), ``agent``, ``model``, ``messages``, ``sessions``, ``created_at``,
        ``updated_at``). Queued as ``put`` is, and committed as soon as a session's end is
        (the next turn reads it); the awaitable ends once it is stored, or raises
        ``StoreError``."""

    async def get_conversation(self, conversation_id: str) -> Record | None: ...

    async def delete_before(self, cutoff: float) -> int:
        """Remove records (and their events) created before ``cutoff``, and conversations
        last updated before it; return how many records."""

    async def close(self) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._events: dict[str, list[StoredEvent]] = {}
        self._journal: dict[str, list[StoredEvent]] = {}
        #: conversations by id: (``updated_at``, the conversation as JSON)
        self._conversations: dict[str, tuple[float, bytes]] = {}

    async def open(self) -> None:
        return None

    def put(self, record: Record, events: Sequence[NewEvent] | None = None) -> Awaitable[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            copy = orjson.loads(orjson.dumps(record))
            log = None if events is None else _decode_events(_encode_events(events))
        except (orjson.JSONEncodeError, StoreError) as exc:
            done.set_exception(StoreError(f"session store failed: {exc}"))
            return done
        self._records[record["id"]] = copy
        if log is not None:
            self._events[record["id"]] = log
            self._journal.pop(record["id"], None)
        done.set_result(None)
        return done

    def append_events(self, session_id: str, events: Sequence[NewEvent]) -> Awaitable[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        record = self._records.get(session_id)
        if record is not None and record["state"] in LIVE_STATES:
            try:
                batch = _decode_events(_encode_events(events))
            except StoreError as exc:
                done.set_exception(exc)
                return done
            self._journal.setdefault(session_id, []).extend(batch)
        done.set_result(None)
        return done

    async def unfinished(self, limit: int = 1000) -> list[Record]:
        rows = [r for r in self._records.values() if r["state"] in LIVE_STATES]
        rows.sort(key=lambda r: r["created_at"])
        return rows[:limit]

    async def get(self, session_id: str) -> Record | None:
        return self._records.get(session_id)

    async def query(
        self,
        limit: int = 50,
        state: str | None = None,
        provider: str | None = None,
        tenant: str | None = None,
    ) -> list[Record]:
        rows = [
            r
            for r in self._records.values()
            if (state is None or r["state"] == state)
            and (provider is None or r["provider"] == provider)
            and (tenant is None or r.get("tenant") == tenant)
        ]
        rows.sort(key=lambda r: r["created_at"], reverse=True)
        return rows[:limit]

    async def get_events(self, session_id: str, after: int = 0) -> list[StoredEvent]:
        stored = self._events.get(session_id, [])
        record = self._records.get(session_id)
        if record is not None and record["state"] in LIVE_STATES:
            stored = _with_journal(stored, self._journal.get(session_id, []))
        return [e for e in stored if e[0] > after]

    def put_conversation(self, conversation: Record) -> Awaitable[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            conversation_id, _, updated_at, data = _conversation_row(conversation)
        except StoreError as exc:
            done.set_exception(exc)
            return done
        self._conversations[conversation_id] = (updated_at, data)
        done.set_result(None)
        return done

    async def get_conversation(self, conversation_id: str) -> Record | None:
        stored = self._conversations.get(conversation_id)
        return None if stored is None else dict(orjson.loads(stored[1]))

    async def delete_before(self, cutoff: float) -> int:
        old = [k for k, r in self._records.items() if r["created_at"] < cutoff]
        for session_id in old:
            del self._records[session_id]
            self._events.pop(session_id, None)
            self._journal.pop(session_id, None)
        for conversation_id in [k for k, c in self._conversations.items() if c[0] < cutoff]:
            del self._conversations[conversation_id]
        return len(old)

    async def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    provider TEXT NOT NULL,
    record BLOB NOT NULL,
    events BLOB,
    tenant TEXT
);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_at);
-- Rows appended in rowid order, found by the small index: half the pages written per batch
-- of a table keyed by (session, batch) with the events inside its b-tree (WITHOUT ROWID),
-- where each of a window's batches lands on a page of its own.
CREATE TABLE IF NOT EXISTS journal_batches (
    session_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    events BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS journal_batches_session
    ON journal_batches (session_id, first_seq);
-- A conversation is one row: the whole of it as JSON, beside what finds it (its id), whose it
-- is (tenant) and what retention looks at (its last update). A file from before conversations
-- gains the table here.
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    tenant TEXT,
    updated_at REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations (updated_at);
"""

#: a conversation's write: a new one, or the whole of it replaced
_CONVERSATION = (
    "INSERT INTO conversations (id, tenant, updated_at, data) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, "
    "updated_at = excluded.updated_at, data = excluded.data"
)

#: a journal batch is kept only for a session whose record is live (the final ``put``, which
#: deletes the journal, may have been merged into a write queued before the batch). The live
#: states are compared one by one: SQLite answers ``state IN (...)`` with a temporary b-tree
#: built for each row the statement writes, about a third of the row's cost.
_JOURNAL = (
    "INSERT OR IGNORE INTO journal_batches (session_id, first_seq, events) "
    "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ? AND ("
    + " OR ".join(f"state = '{state}'" for state in LIVE_STATES)
    + "))"
)

#: made after the migration, which may have had to add the column first
_TENANT_INDEX = "CREATE INDEX IF NOT EXISTS sessions_tenant ON sessions (tenant, created_at)"


def _migrate(db: sqlite3.Connection) -> None:
    """A file written before the event log moved into the session's row (it had a table
    ``session_events`` of its own): the logs are moved over, in one transaction. A file
    whose journal was a table keyed by session (``session_journal``): its batches move to
    ``journal_batches``."""
    journal = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'session_journal'"
    ).fetchone()
    if journal is not None:
        with transaction(db):
            db.execute(
                "INSERT OR IGNORE INTO journal_batches (session_id, first_seq, events) "
                "SELECT session_id, first_seq, events FROM session_journal ORDER BY session_id"
            )
            db.execute("DROP TABLE session_journal")
    columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
    if "tenant" not in columns:  # a file from before client keys: no session had a tenant
        db.execute("ALTER TABLE sessions ADD COLUMN tenant TEXT")
    db.execute(_TENANT_INDEX)
    old = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'session_events'"
    ).fetchone()
    if "events" in columns and old is None:
        return
    with transaction(db):
        if "events" not in columns:
            db.execute("ALTER TABLE sessions ADD COLUMN events BLOB")
        if old is not None:
            db.execute(
                "UPDATE sessions SET events = (SELECT events FROM session_events "
                "WHERE session_id = sessions.id) WHERE events IS NULL"
            )
            db.execute("DROP TABLE session_events")


class SQLiteStore:
    """Records in one SQLite file in WAL mode: writes on the event loop, reads on a thread.

    Writes are queued and committed together every ``commit_interval`` seconds (or sooner,
    once ``MAX_BATCH`` are waiting), so the number of commits does not grow with the load
    (group commit). In WAL mode with ``synchronous=NORMAL`` a commit appends to the log in the
    page cache and does not wait for the disk. Handing the writes to a thread instead did not
    free the loop on the one core the benchmark gives the gateway: the thread took that core,
    and the interpreter lock, while it wrote, and the time to first token's p99 stayed where
    it was.

    Written on the loop, a batch still must not stop the streams for long: the sessions of
    a burst of short streams end together, and committing them in one go (about 3 ms for
    twenty-five) would land in the time to first token of every stream starting meanwhile. So
    one transaction takes at most ``SLICE`` seconds of writes, and the rest waits
    ``SLICE_PAUSE``: a stream that is starting gets the turns of the loop it needs between
    two slices. What does wait for the disk, the checkpoint that folds the log back into the
    database (and its ``fsync``), runs on the store's thread, at the lowest scheduling
    priority, as do the reads, on a connection of their own.

    A session's end (its final record, with its log) is what its clients wait for: they are
    told of the end only once it is committed. Ends are queued ahead of every other write
    and a slice takes all that wait, whatever ``SLICE`` says, in the loop's next turn. The
    journal (each live session's new events, every ``journal_window``) is one queued write
    for all sessions, one statement of one row each; batches that come while it waits join
    it, so a backlog holds one journal write, not one per window.

    A session is one row: its record, and its event log as one JSON array of ``[seq, type,
    data]`` (written once, with the final record: one statement per session's end, where a
    table of events took a row of its own and cost as much again). The record is written when
    the session starts and again when it ends; when the second ``put`` finds the first still
    queued (a stream shorter than the commit interval), the queued write takes the newer
    record and the log, and no second write is queued: one write, encoded once, for both
    callers.

    A conversation is one row of ``conversations``, the whole of it as JSON, written whole
    each time (once per turn) and queued as an end: the turn that follows reads it.
    """

    #: run a checkpoint on the thread after this many writes
    CHECKPOINT_EVERY = 1024
    #: commit at once when this many writes are waiting
    MAX_BATCH = 512
    #: seconds of writes one transaction takes on the loop before it commits and lets the
    #: sockets be served (the commit itself adds to it)
    SLICE = 0.0003
    #: seconds between two such transactions, in which a stream that is starting can take
    #: the few turns of the loop it needs to reach its first token (unless ``MAX_BATCH``
    #: writes are waiting: then the next follows at once)
    SLICE_PAUSE = 0.002

    def __init__(self, path: str, commit_interval: float = 0.05) -> None:
        self.path = path
        self.commit_interval = commit_interval
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sluice-sqlite", initializer=_lower_priority
        )
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        #: writes waiting for their transaction, each with the futures of its callers
        self._queue: list[tuple[_Op, list[asyncio.Future[Any]]]] = []
        #: the queued record writes by session id, until their transaction takes them
        self._queued_records: dict[str, _RecordWrite] = {}
        #: how many of the queue's first writes are sessions' ends (they go first)
        self._ends = 0
        #: the journal's write waiting in the queue, if any: every session's batch joins it
        #: (one statement for all, and a backlog holds one write, not one per window)
        self._journal: _JournalWrite | None = None
        self._flush_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        #: the next flush is in the loop's next turn (``call_soon``), not on a timer (the
        #: handle's type does not say: uvloop's timer handles are not ``asyncio.TimerHandle``)
        self._flush_next_turn = False
        #: writes committed since the last checkpoint began
        self._written = 0
        self._checkpoint: asyncio.Future[Any] | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        db.executescript(_SCHEMA)
        _migrate(db)
        # Checkpoints are the store thread's job (see the class docstring), never a commit's.
        db.execute("PRAGMA wal_autocheckpoint=0")
        # ":memory:" is one database per connection: reads must share the writer's.
        self._reader = db if self.path == ":memory:" else self._connect()
        self._db = db

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._open)
        except sqlite3.Error as exc:
            raise StoreError(f"session store failed to open {self.path!r}: {exc}") from exc

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the session store is not open")
        return self._db

    # -- writes: group commit on the loop ------------------------------------------------------

    def _write(
        self,
        op: _Op,
        futures: list[asyncio.Future[Any]] | None = None,
        end: bool = False,
    ) -> asyncio.Future[Any]:
        """Queue ``op``; the future it returns (and any added to ``futures``) has its
        outcome once its transaction ends. An ``end`` (a session's final record, which its
        clients wait for) goes before every write that is not one."""
        self.db  # noqa: B018 - raises StoreError when the store is not open
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if futures is None:
            futures = []
        futures.append(future)
        queue = self._queue
        if end:
            queue.insert(self._ends, (op, futures))
            self._ends += 1
        else:
            queue.append((op, futures))
        if len(queue) >= self.MAX_BATCH:
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            self._flush_handle = loop.call_soon(self._flush)
            self._flush_next_turn = True
        elif self._flush_handle is None:
            self._flush_handle = loop.call_later(self.commit_interval, self._flush)
            self._flush_next_turn = False
        return future

    def _flush_soon(self) -> None:
        """A session's final record (the one with its log) is committed in the loop's next
        turn, with whatever else is queued then: its clients are told of its end only once
        it is durable, so it does not wait out the commit interval. The ends of one turn
        share a transaction. (A timer of a few milliseconds instead cost the next stream's
        time to first token half a millisecond at one stream back to back: the loop's timers
        run a poll later than its ready callbacks.)"""
        if self._flush_next_turn and self._flush_handle is not None:
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        self._flush_next_turn = True

    def _flush(self) -> None:
        """Commit what is queued, oldest first, in one transaction of at most ``SLICE``
        seconds of writes; what is left follows ``SLICE_PAUSE`` later. Each write gets its own
        outcome when its transaction ends."""
        self._flush_handle = None
        db = self._db
        if db is None:
            batch, self._queue = self._queue, []
            self._ends = 0
            self._queued_records.clear()
            self._journal = None
            for _, futures in batch:
                for future in futures:
                    if not future.done():
                        future.set_exception(StoreError("the session store is closed"))
            return
        queue = self._queue
        clock = time.perf_counter
        stop_at = clock() + self.SLICE
        taken = 0
        outcomes: list[Any] = []
        queued_records = self._queued_records
        try:
            with transaction(db):
                # every end waiting (its clients wait for it), then writes for ``SLICE``
                ends = self._ends
                while taken < len(queue) and (taken <= ends or clock() < stop_at):
                    op = queue[taken][0]
                    taken += 1
                    # from now on, a later write of the session queues anew
                    if type(op) is _RecordWrite:
                        if queued_records.get(op.session_id) is op:
                            del queued_records[op.session_id]
                    elif op is self._journal:
                        self._journal = None
                    try:
                        outcomes.append(op(db))
                    except StoreError as exc:  # the events did not encode
                        outcomes.append(exc)
                    except (sqlite3.Error, orjson.JSONEncodeError) as exc:
                        outcomes.append(StoreError(f"session store failed: {exc}"))
        except sqlite3.Error as exc:  # the commit itself failed (disk full, ...)
            outcomes = [StoreError(f"session store failed: {exc}")] * taken
        batch = queue[:taken]
        del queue[:taken]
        self._ends = max(0, self._ends - taken)
        for (_, futures), outcome in zip(batch, outcomes, strict=True):
            for future in futures:
                if future.done():
                    continue
                if isinstance(outcome, StoreError):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        loop = asyncio.get_running_loop()
        if len(queue) >= self.MAX_BATCH:
            self._flush_handle = loop.call_soon(self._flush)
            self._flush_next_turn = True
        elif queue:
            self._flush_handle = loop.call_later(self.SLICE_PAUSE, self._flush)
            self._flush_next_turn = False
        self._written += taken
        if self._written >= self.CHECKPOINT_EVERY and self._checkpoint is None:
            self._written = 0
            self._checkpoint = loop.run_in_executor(self._executor, self._run_checkpoint)
            self._checkpoint.add_done_callback(self._checkpoint_done)

    def _run_checkpoint(self) -> None:
        if self._reader is not None:
            self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _checkpoint_done(self, future: asyncio.Future[Any]) -> None:
        self._checkpoint = None
        if not future.cancelled() and future.exception() is not None:
            log.warning("session store checkpoint failed %s", kv(error=str(future.exception())))

    def put(self, record: Record, events: Sequence[NewEvent] | None = None) -> Awaitable[None]:
        session_id = record["id"]
        loop = asyncio.get_running_loop()
        queued = self._queued_records.get(session_id)
        if events is not None and self._journal is not None:
            # the whole log: a journal batch still waiting has nothing left to keep
            self._journal.batches.pop(session_id, None)
        if queued is not None and events is None:  # the waiting write writes this one
            queued.record = record
            future: asyncio.Future[None] = loop.create_future()
            queued.futures.append(future)
            return future
        write = _RecordWrite(session_id, record, events)
        if queued is not None:  # an end: its write goes first and takes the waiting one's
            write.futures.extend(queued.futures)
            queued.futures.clear()
            queued.superseded = True
        try:
            written = self._write(write, write.futures, end=events is not None)
        except StoreError as exc:  # not open: the caller's await says so
            failed: asyncio.Future[None] = loop.create_future()
            failed.set_exception(exc)
            return failed
        self._queued_records[session_id] = write
        if events is not None:
            self._flush_soon()
        return written

    def append_events(self, session_id: str, events: Sequence[NewEvent]) -> Awaitable[None]:
        if not events:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        queued = self._journal
        if queued is not None:  # the journal's write still waits: this batch joins it
            queued.add(session_id, events)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queued.futures.append(future)
            return future
        write = _JournalWrite()
        write.add(session_id, events)
        try:
            written = self._write(write, write.futures)
            self._journal = write
            return written
        except StoreError as exc:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    def put_conversation(self, conversation: Record) -> Awaitable[None]:
        """Encoded now, and queued as a session's end is (ahead of the other writes,
        committed in the loop's next turn): a conversation is stored when a turn ends, and
        the next turn, which a client may ask for at once, reads it."""
        try:
            row = _conversation_row(conversation)

            def write(db: sqlite3.Connection) -> None:
                db.execute(_CONVERSATION, row)

            written = self._write(write, end=True)
        except StoreError as exc:  # it does not encode, or the store is not open
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        self._flush_soon()
        return written

    async def delete_before(self, cutoff: float) -> int:
        def delete(db: sqlite3.Connection) -> int:
            db.execute(
                "DELETE FROM journal_batches WHERE session_id IN "
                "(SELECT id FROM sessions WHERE created_at < ?)",
                (cutoff,),
            )
            removed: int = db.execute(
                "DELETE FROM sessions WHERE created_at < ?", (cutoff,)
            ).rowcount
            db.execute("DELETE FROM conversations WHERE updated_at < ?", (cutoff,))
            return removed

        removed: int = await self._write(delete)
        return removed

    # -- reads: on the thread -----------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        reader = self._reader
        if reader is None:
            raise StoreError("the session store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, reader)
        except sqlite3.Error as exc:
            raise StoreError(f"session store failed: {exc}") from exc

    async def get(self, session_id: str) -> Record | None:
        def get(db: sqlite3.Connection) -> bytes | None:
            row = db.execute("SELECT record FROM sessions WHERE id = ?", (session_id,)).fetchone()
            return None if row is None else bytes(row[0])

        blob = await self._read(get)
        return None if blob is None else dict(orjson.loads(blob))

    async def get_conversation(self, conversation_id: str) -> Record | None:
        def get_conversation(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                "SELECT data FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        blob = await self._read(get_conversation)
        return None if blob is None else dict(orjson.loads(blob))

    async def query(
        self,
        limit: int = 50,
        state: str | None = None,
        provider: str | None = None,
        tenant: str | None = None,
    ) -> list[Record]:
        sql = "SELECT record FROM sessions"
        where, args = [], []
        if tenant is not None:
            where.append("tenant = ?")
            args.append(tenant)
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if provider is not None:
            where.append("provider = ?")
            args.append(provider)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"

        def query(db: sqlite3.Connection) -> list[bytes]:
            return [bytes(r[0]) for r in db.execute(sql, (*args, limit))]

        return [orjson.loads(blob) for blob in await self._read(query)]

    async def unfinished(self, limit: int = 1000) -> list[Record]:
        def unfinished(db: sqlite3.Connection) -> list[bytes]:
            rows = db.execute(
                f"SELECT record FROM sessions WHERE state IN {LIVE_STATES_SQL} "
                "ORDER BY created_at LIMIT ?",
                (limit,),
            )
            return [bytes(r[0]) for r in rows]

        return [orjson.loads(blob) for blob in await self._read(unfinished)]

    async def get_events(self, session_id: str, after: int = 0) -> list[StoredEvent]:
        def get_events(db: sqlite3.Connection) -> tuple[str, bytes | None, list[bytes]] | None:
            row = db.execute(
                "SELECT state, events FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return None
            journal: list[bytes] = []
            if row[0] in LIVE_STATES:
                journal = [
                    bytes(r[0])
                    for r in db.execute(
                        "SELECT events FROM journal_batches WHERE session_id = ? "
                        "ORDER BY first_seq",
                        (session_id,),
                    )
                ]
            return row[0], None if row[1] is None else bytes(row[1]), journal

        found = await self._read(get_events)
        if found is None:
            return []
        _, blob, journal = found
        stored = [] if blob is None else _decode_events(blob)
        if journal:
            stored = _with_journal(stored, [e for part in journal for e in _decode_events(part)])
        return [e for e in stored if e[0] > after]

    async def close(self) -> None:
        while self._queue:  # every slice now, with no pause between them
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            self._flush()
        if self._checkpoint is not None:
            await asyncio.shield(self._checkpoint)
        db, reader = self._db, self._reader
        self._db = self._reader = None
        loop = asyncio.get_running_loop()
        if reader is not None and reader is not db:
            await loop.run_in_executor(self._executor, reader.close)
        if db is not None:
            # A last checkpoint folds the log into the database file before it closes.
            await loop.run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=True)


class _RecordWrite:
    """A queued write of one session's record (and, at its end, its event log), encoded
    when its transaction runs; until then a later ``put`` of the same id replaces them."""

    __slots__ = ("events", "futures", "record", "session_id", "superseded")

    def __init__(self, session_id: str, record: Record, events: Sequence[NewEvent] | None) -> None:
        self.session_id = session_id
        self.record = record
        self.events = events
        #: the callers' futures: the first ``put`` and any that replaced its record
        self.futures: list[asyncio.Future[Any]] = []
        #: an end, queued ahead of it, writes the record instead
        self.superseded = False

    def __call__(self, db: sqlite3.Connection) -> None:
        if self.superseded:
            return
        record = self.record
        events = None if self.events is None else _encode_events(self.events)
        # An update in place, not INSERT OR REPLACE (a delete and an insert, of the row and
        # of its index entry): a session's record is written when it starts and again when it
        # ends, and ``created_at``, the indexed column, never changes. A write without a log
        # keeps the one stored.
        db.execute(
            "INSERT INTO sessions (id, created_at, state, provider, record, events, tenant) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "state = excluded.state, provider = excluded.provider, record = excluded.record, "
            "events = coalesce(excluded.events, sessions.events)",
            (
                self.session_id,
                record["created_at"],
                record["state"],
                record["provider"],
                orjson.dumps(record),
                events,
                record.get("tenant"),
            ),
        )
        if events is not None:  # the whole log is stored: its journal has served
            db.execute("DELETE FROM journal_batches WHERE session_id = ?", (self.session_id,))


class _JournalWrite:
    """The journal's queued write: each live session's events since its last batch, one row
    per session, in one statement. Until its transaction takes it, later batches join it
    (a session's new events after its waiting ones); a session whose final record is queued
    leaves it (that record holds the whole log)."""

    __slots__ = ("batches", "futures")

    def __init__(self) -> None:
        self.batches: dict[str, list[NewEvent]] = {}
        self.futures: list[asyncio.Future[Any]] = []

    def add(self, session_id: str, events: Sequence[NewEvent]) -> None:
        waiting = self.batches.get(session_id)
        if waiting is None:
            self.batches[session_id] = list(events)
        else:
            waiting.extend(events)

    def __call__(self, db: sqlite3.Connection) -> None:
        db.executemany(
            _JOURNAL,
            [
                (sid, events[0][0], _encode_events(events), sid)
                for sid, events in self.batches.items()
            ],
        )


def _with_journal(stored: list[StoredEvent], journal: list[StoredEvent]) -> list[StoredEvent]:
    """A live session's stored log (an earlier attempt's, if any) followed by the journaled
    events numbered past it."""
    last = stored[-1][0] if stored else 0
    return stored + [e for e in journal if e[0] > last]


def _lower_priority() -> None:
    """Run the calling thread at the lowest scheduling priority (Linux: ``nice`` is per
    thread), so that a checkpoint or a read never takes the CPU from the event loop's thread
    on a machine with one core for the gateway; on more cores it runs beside it."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _encode_events(events: Sequence[NewEvent]) -> bytes:
    """One JSON array of ``[seq, type, data]`` for all of them: one encoder call per log."""
    try:
        return orjson.dumps(events if isinstance(events, list | tuple) else list(events))
    except orjson.JSONEncodeError as exc:
        raise StoreError(f"events not stored: {exc}") from exc


def _decode_events(blob: bytes) -> list[StoredEvent]:
    return [(seq, kind, orjson.dumps(data)) for seq, kind, data in orjson.loads(blob)]


#: a conversation's columns: id, tenant, updated_at, the whole of it as JSON
ConversationRow = tuple[str, str | None, float, bytes]


def _conversation_row(conversation: Record) -> ConversationRow:
    """The columns every backend stores a conversation in; ``StoreError`` when it lacks its
    id or its time of update, or does not encode (the same refusal from every backend)."""
    try:
        conversation_id = conversation["id"]
        tenant = conversation.get("tenant")
        updated_at = conversation["updated_at"]
        data = orjson.dumps(conversation)
    except (KeyError, TypeError, orjson.JSONEncodeError) as exc:
        raise StoreError(f"conversation not stored: {exc!r}") from exc
    if (
        not isinstance(conversation_id, str)
        or not (tenant is None or isinstance(tenant, str))
        or isinstance(updated_at, bool)
        or not isinstance(updated_at, int | float)
    ):
        raise StoreError("conversation not stored: its id, tenant or updated_at is not valid")
    return conversation_id, tenant, float(updated_at), data


def open_store(url: str) -> SessionStore:
    """``memory://``, ``sqlite:///relative/path.db`` / ``sqlite:////absolute/path.db``, or
    ``postgresql://user@host:port/database`` (asyncpg is loaded only then)."""
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SQLiteStore(url[len("sqlite:///") :] or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        from sluice.session.pgstore import PostgresStore

        return PostgresStore(url)
    raise StoreError(
        f"unsupported store url {url!r} (use memory://, sqlite:///PATH or postgresql://…)"
    )
