"""Session records, their event logs and conversations in Postgres (``[store] url =
"postgresql://…"``).

The same contract as ``SQLiteStore``, on a pool of asyncpg connections: writes are queued
and written together (group commit), reads take a connection of the pool each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from sluice import postgres
from sluice.session.store import (
    LIVE_STATES,
    LIVE_STATES_SQL,
    ConversationRow,
    NewEvent,
    Record,
    StoredEvent,
    StoreError,
    _conversation_row,
    _decode_events,
    _encode_events,
    _with_journal,
)

if TYPE_CHECKING:
    import asyncpg

#: one statement for a whole batch: the rows arrive as one array per column (one round
#: trip, one plan, however many sessions ended together). Each id is in a batch once (a
#: later ``put`` of a queued id replaces its record), as ``ON CONFLICT DO UPDATE`` requires.
#: A write without a log keeps the stored one; ``created_at`` never changes.
_UPSERT = """
INSERT INTO sessions (id, created_at, state, provider, tenant, record, events)
SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[],
                     $6::bytea[], $7::bytea[])
ON CONFLICT (id) DO UPDATE SET
    state = excluded.state, provider = excluded.provider, tenant = excluded.tenant,
    record = excluded.record, events = coalesce(excluded.events, sessions.events)
"""


#: a journal batch is kept only while its session's record is live (see the SQLite store's)
_JOURNAL = f"""
INSERT INTO session_journal (session_id, first_seq, events)
SELECT $1, $2, $3 WHERE EXISTS (
    SELECT 1 FROM sessions WHERE id = $1 AND state IN {LIVE_STATES_SQL})
ON CONFLICT DO NOTHING
"""

#: the sessions whose whole log a batch stored: their journals have served
_DROP_JOURNALS = "DELETE FROM session_journal WHERE session_id = ANY($1::text[])"

#: the conversations queued, in one statement (each id once: a later put replaces a queued one)
_CONVERSATIONS = """
INSERT INTO conversations (id, tenant, updated_at, data)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::bytea[])
ON CONFLICT (id) DO UPDATE SET
    tenant = excluded.tenant, updated_at = excluded.updated_at, data = excluded.data
"""


class PostgresStore:
    """Records in the ``sessions`` table of a Postgres database, one row per session: its
    record and its event log as orjson bytes (``bytea``) beside the columns that lists
    filter and sort on (``created_at``, ``state``, ``provider``, ``tenant``).

    ``bytea`` rather than ``jsonb``: the bytes are the ones the SQLite store keeps, the
    server parses nothing on the write path, a record reads back with its keys in their
    order, and a string holding ``\\u0000`` (a prompt may) is stored, where ``jsonb`` refuses
    it.

    Writes are queued and written together: the first ``put`` of an idle store starts a
    window of ``commit_interval`` seconds, then one statement writes the queued sessions (as
    many as ``SLICE`` seconds of encoding take, at most ``MAX_BATCH``) and commits. While
    that statement is at the server, new writes queue again, and are written as soon as it
    returns: the number of round trips follows the server's pace, not the number of
    sessions. One writer at a time, so writes keep their
    call order; a ``put`` of a session still queued replaces its record and log there (one
    write for a stream shorter than the window). Encoding a record or a log that cannot be
    encoded fails that write alone, and so does a row the server refuses (the batch is then
    written again one session at a time).

    A conversation is one row of ``conversations``, the whole of it as orjson bytes beside
    its id, tenant and last update. Its write is encoded when ``put_conversation`` is called
    and, as a session's end, sets the writer going at once (the turn that follows reads it);
    the conversations queued meanwhile are one statement.
    """

    #: write at once when this many sessions are waiting, and at most so many per statement
    MAX_BATCH = 512
    #: seconds of encoding one statement's rows may take on the loop (as the SQLite store's
    #: slices: the sessions of a burst end together, and encoding all of them at once would
    #: land in the time to first token of every stream starting meanwhile)
    SLICE = 0.0003
    #: connections: one writes, the others serve reads (the API's lists, a record, a replay)
    POOL_MIN = 2
    POOL_MAX = 8
    #: seconds any one statement, or the wait for a connection, may take
    TIMEOUT = 10.0

    def __init__(self, url: str, commit_interval: float = 0.05) -> None:
        self.url = url
        self.commit_interval = commit_interval
        self._pool: asyncpg.Pool[Any] | None = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._refused: tuple[type[BaseException], ...] = ()
        #: the queued writes by session id, in call order
        self._queue: dict[str, _RecordWrite] = {}
        #: journal batches waiting for the writer: (session id, first seq, events), futures
        self._journal: list[tuple[tuple[str, int, bytes], asyncio.Future[None]]] = []
        #: the queued conversation writes by id, in call order
        self._conversations: dict[str, _ConversationWrite] = {}
        self._timer: asyncio.TimerHandle | None = None
        #: the task writing batches, while there are any to write
        self._writer: asyncio.Task[None] | None = None
        #: held by the writer and by ``delete_before``, so they never overlap
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        self._errors, self._refused = postgres.errors(), postgres.refusals()
        self._pool = await postgres.create_pool(
            self.url,
            min_size=self.POOL_MIN,
            max_size=self.POOL_MAX,
            statement_timeout=self.TIMEOUT,
            fail=lambda exc: StoreError(
                f"session store failed to open {postgres.redact(self.url)}: {exc}"
            ),
        )

    def _fail(self, exc: BaseException) -> StoreError:
        return StoreError(f"session store failed: {type(exc).__name__}: {exc}")

    # -- writes --------------------------------------------------------------------------------

    def put(self, record: Record, events: Sequence[NewEvent] | None = None) -> Awaitable[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._pool is None:
            future.set_exception(StoreError("the session store is not open"))
            return future
        session_id = record["id"]
        queued = self._queue.get(session_id)
        if queued is not None:  # still waiting: that write writes this one
            queued.record = record
            if events is not None:
                queued.events = events
        else:
            queued = self._queue[session_id] = _RecordWrite(record, events)
        queued.futures.append(future)
        if self._writer is None:  # a running writer takes the queue when its batch is done
            if len(self._queue) >= self.MAX_BATCH or events is not None:
                # a final record (with its log) is waited for by its clients: written now,
                # with what else is queued
                self._start_writer()
            elif self._timer is None:
                self._timer = loop.call_later(self.commit_interval, self._start_writer)
        return future

    def append_events(self, session_id: str, events: Sequence[NewEvent]) -> Awaitable[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._pool is None:
            future.set_exception(StoreError("the session store is not open"))
            return future
        if not events:
            future.set_result(None)
            return future
        try:
            row = (session_id, events[0][0], _encode_events(events))
        except StoreError as exc:
            future.set_exception(exc)
            return future
        self._journal.append((row, future))
        if self._writer is None and self._timer is None:
            self._timer = loop.call_later(self.commit_interval, self._start_writer)
        return future

    def put_conversation(self, conversation: Record) -> Awaitable[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._pool is None:
            future.set_exception(StoreError("the session store is not open"))
            return future
        try:
            row = _conversation_row(conversation)
        except StoreError as exc:
            future.set_exception(exc)
            return future
        queued = self._conversations.get(row[0])
        if queued is None:
            queued = self._conversations[row[0]] = _ConversationWrite(row)
        else:  # still waiting: that write writes this one
            queued.row = row
        queued.futures.append(future)
        self._start_writer()  # a running writer takes it when its batch is done
        return future

    def _pending(self) -> bool:
        return bool(self._queue or self._conversations or self._journal)

    def _start_writer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writer is None and self._pending():
            self._writer = asyncio.get_running_loop().create_task(self._write_queue())

    async def _write_queue(self) -> None:
        try:
            while self._pending():
                # Records first: a journal batch needs its session's first record, and one
                # that follows the session's final record is not needed (it is ignored).
                rows = self._take()
                if rows:
                    await self._write_rows(rows, self._upsert)
                if self._conversations:
                    await self._write_rows(self._take_conversations(), self._upsert_conversations)
                if self._journal:
                    await self._write_journal()
        finally:
            self._writer = None
            if self._pending() and self._timer is None:  # the writer failed: the rest goes on
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self.commit_interval, self._start_writer)

    def _take(self) -> list[_RecordWrite]:
        """The oldest queued writes, encoded: at most ``MAX_BATCH``, and no more than
        ``SLICE`` seconds of encoding (the rest waits for the next statement, while the loop
        serves the streams). A write that does not encode fails here, alone."""
        queue = self._queue
        rows: list[_RecordWrite] = []
        clock = time.perf_counter
        stop_at = clock() + self.SLICE
        while queue and len(rows) < self.MAX_BATCH and (not rows or clock() < stop_at):
            write = queue.pop(next(iter(queue)))
            try:
                write.encode()
            except StoreError as exc:
                write.settle(exc)
            except (orjson.JSONEncodeError, KeyError, TypeError) as exc:
                write.settle(StoreError(f"session record not stored: {exc!r}"))
            else:
                rows.append(write)
        return rows

    def _take_conversations(self) -> list[_ConversationWrite]:
        """The oldest queued conversation writes (encoded already), at most ``MAX_BATCH``."""
        queue = self._conversations
        return [queue.pop(next(iter(queue))) for _ in range(min(len(queue), self.MAX_BATCH))]

    async def _write_journal(self) -> None:
        """The queued journal batches, in one round trip; each caller learns the outcome."""
        batch, self._journal = self._journal, []
        pool = self._pool
        outcome: StoreError | None = None
        try:
            if pool is None:
                raise StoreError("the session store is closed")
            async with self._lock, pool.acquire(timeout=self.TIMEOUT) as connection:
                await connection.executemany(
                    _JOURNAL, [row for row, _ in batch], timeout=self.TIMEOUT
                )
        except StoreError as exc:
            outcome = exc
        except self._errors as exc:
            outcome = self._fail(exc)
        except BaseException:
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreError("journal not stored"))
            raise
        for _, future in batch:
            if future.done():
                continue
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)

    async def _write_rows(
        self, rows: list[_W], upsert: Callable[[list[_W]], Awaitable[None]]
    ) -> None:
        """One statement (``upsert``) for ``rows``; each write's future gets the outcome."""
        try:
            async with self._lock:
                await upsert(rows)
        except StoreError as exc:
            for write in rows:
                write.settle(exc)
        except self._errors as exc:
            if len(rows) > 1 and isinstance(exc, self._refused):
                for write in rows:  # one row refused: the others are written, one by one
                    await self._write_rows([write], upsert)
                return
            for write in rows:
                write.settle(self._fail(exc))
        except BaseException:  # cancelled (the loop is ending), or a bug: no caller waits on
            for write in rows:  # forever
                write.settle(StoreError("session record not stored"))
            raise
        else:
            for write in rows:
                write.settle(None)

    async def _upsert(self, rows: list[_RecordWrite]) -> None:
        pool = self._pool
        if pool is None:
            raise StoreError("the session store is closed")
        columns = [list(column) for column in zip(*(write.row for write in rows), strict=True)]
        logged = [write.row[0] for write in rows if write.events is not None]
        async with pool.acquire(timeout=self.TIMEOUT) as connection, connection.transaction():
            await connection.execute(_UPSERT, *columns, timeout=self.TIMEOUT)
            if logged:
                await connection.execute(_DROP_JOURNALS, logged, timeout=self.TIMEOUT)

    async def _upsert_conversations(self, writes: list[_ConversationWrite]) -> None:
        pool = self._pool
        if pool is None:
            raise StoreError("the session store is closed")
        columns = [list(column) for column in zip(*(write.row for write in writes), strict=True)]
        async with pool.acquire(timeout=self.TIMEOUT) as connection:
            await connection.execute(_CONVERSATIONS, *columns, timeout=self.TIMEOUT)

    async def delete_before(self, cutoff: float) -> int:
        pool = self._require()
        try:
            async with (
                self._lock,
                pool.acquire(timeout=self.TIMEOUT) as connection,
                connection.transaction(),
            ):
                await connection.execute(
                    "DELETE FROM session_journal WHERE session_id IN "
                    "(SELECT id FROM sessions WHERE created_at < $1)",
                    cutoff,
                    timeout=self.TIMEOUT,
                )
                status = await connection.execute(
                    "DELETE FROM sessions WHERE created_at < $1", cutoff, timeout=self.TIMEOUT
                )
                await connection.execute(
                    "DELETE FROM conversations WHERE updated_at < $1",
                    cutoff,
                    timeout=self.TIMEOUT,
                )
        except self._errors as exc:
            raise self._fail(exc) from exc
        return int(status.rsplit(" ", 1)[-1])

    # -- reads ---------------------------------------------------------------------------------

    def _require(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise StoreError("the session store is not open")
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        pool = self._require()
        try:
            async with pool.acquire(timeout=self.TIMEOUT) as connection:
                return list(await connection.fetch(sql, *args, timeout=self.TIMEOUT))
        except self._errors as exc:
            raise self._fail(exc) from exc

    async def get(self, session_id: str) -> Record | None:
        rows = await self._fetch("SELECT record FROM sessions WHERE id = $1", session_id)
        return dict(orjson.loads(rows[0][0])) if rows else None

    async def get_conversation(self, conversation_id: str) -> Record | None:
        rows = await self._fetch("SELECT data FROM conversations WHERE id = $1", conversation_id)
        return dict(orjson.loads(rows[0][0])) if rows else None

    async def query(
        self,
        limit: int = 50,
        state: str | None = None,
        provider: str | None = None,
        tenant: str | None = None,
    ) -> list[Record]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("tenant", tenant), ("state", state), ("provider", provider)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        sql = "SELECT record FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        args.append(limit)
        sql += f" ORDER BY created_at DESC LIMIT ${len(args)}"
        return [orjson.loads(row[0]) for row in await self._fetch(sql, *args)]

    async def unfinished(self, limit: int = 1000) -> list[Record]:
        rows = await self._fetch(
            f"SELECT record FROM sessions WHERE state IN {LIVE_STATES_SQL} "
            "ORDER BY created_at LIMIT $1",
            limit,
        )
        return [orjson.loads(row[0]) for row in rows]

    async def get_events(self, session_id: str, after: int = 0) -> list[StoredEvent]:
        rows = await self._fetch("SELECT state, events FROM sessions WHERE id = $1", session_id)
        if not rows:
            return []
        state, blob = rows[0]
        stored = [] if blob is None else _decode_events(blob)
        if state in LIVE_STATES:
            parts = await self._fetch(
                "SELECT events FROM session_journal WHERE session_id = $1 ORDER BY first_seq",
                session_id,
            )
            journal = [e for part in parts for e in _decode_events(part[0])]
            stored = _with_journal(stored, journal)
        return [e for e in stored if e[0] > after]

    async def close(self) -> None:
        """Write what is queued, then close the pool."""
        self._start_writer()
        if self._writer is not None:
            await asyncio.shield(self._writer)
        pool, self._pool = self._pool, None
        if pool is not None:
            await postgres.close_pool(pool, self.TIMEOUT)


class _Write:
    """A queued write of one row, and the futures of the callers it writes for."""

    __slots__ = ("futures",)

    def __init__(self) -> None:
        #: the callers' futures: the first and any whose later write replaced its row
        self.futures: list[asyncio.Future[None]] = []

    def settle(self, error: BaseException | None) -> None:
        for future in self.futures:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


_W = TypeVar("_W", bound=_Write)


class _RecordWrite(_Write):
    """A queued write of one session's record (and, at its end, its event log), encoded
    when its batch is written; until then a later ``put`` of the same id replaces them."""

    __slots__ = ("events", "record", "row")

    def __init__(self, record: Record, events: Sequence[NewEvent] | None) -> None:
        super().__init__()
        self.record = record
        self.events = events
        #: the row's columns, once encoded: id, created_at, state, provider, tenant, record,
        #: events
        self.row: tuple[Any, ...] = ()

    def encode(self) -> None:
        record = self.record
        self.row = (
            record["id"],
            record["created_at"],
            record["state"],
            record["provider"],
            record.get("tenant"),
            orjson.dumps(record),
            None if self.events is None else _encode_events(self.events),
        )


class _ConversationWrite(_Write):
    """A queued write of one conversation, encoded already; until its batch is written, a
    later ``put_conversation`` of the same id replaces its row."""

    __slots__ = ("row",)

    def __init__(self, row: ConversationRow) -> None:
        super().__init__()
        self.row = row
