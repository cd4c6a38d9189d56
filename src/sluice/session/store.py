"""Where session records and their event logs are kept: a protocol and two backends.

``MemoryStore`` keeps everything in dictionaries (tests, ``store.url = "memory://"``).
``SQLiteStore`` keeps records in one SQLite file; every call runs on one dedicated thread,
so the event loop never blocks on disk and writes keep their order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import orjson

from sluice.errors import SluiceError

Record = dict[str, Any]
#: (sequence number, event type, JSON data)
StoredEvent = tuple[int, str, bytes]


class StoreError(SluiceError):
    type = "store_error"


class SessionStore(Protocol):
    async def open(self) -> None: ...

    async def put(self, record: Record) -> None:
        """Insert or replace the record with ``record["id"]``."""

    async def get(self, session_id: str) -> Record | None: ...

    async def query(
        self, limit: int = 50, state: str | None = None, provider: str | None = None
    ) -> list[Record]:
        """Newest first."""

    async def put_events(self, session_id: str, events: list[StoredEvent]) -> None: ...

    async def get_events(self, session_id: str, after: int = 0) -> list[StoredEvent]: ...

    async def delete_before(self, cutoff: float) -> int:
        """Remove records (and their events) created before ``cutoff``; return how many."""

    async def close(self) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._events: dict[str, list[StoredEvent]] = {}

    async def open(self) -> None:
        return None

    async def put(self, record: Record) -> None:
        self._records[record["id"]] = orjson.loads(orjson.dumps(record))

    async def get(self, session_id: str) -> Record | None:
        return self._records.get(session_id)

    async def query(
        self, limit: int = 50, state: str | None = None, provider: str | None = None
    ) -> list[Record]:
        rows = [
            r
            for r in self._records.values()
            if (state is None or r["state"] == state)
            and (provider is None or r["provider"] == provider)
        ]
        rows.sort(key=lambda r: r["created_at"], reverse=True)
        return rows[:limit]

    async def put_events(self, session_id: str, events: list[StoredEvent]) -> None:
        stored = self._events.setdefault(session_id, [])
        known = {seq for seq, _, _ in stored}
        stored.extend(e for e in events if e[0] not in known)
        stored.sort()

    async def get_events(self, session_id: str, after: int = 0) -> list[StoredEvent]:
        return [e for e in self._events.get(session_id, []) if e[0] > after]

    async def delete_before(self, cutoff: float) -> int:
        old = [k for k, r in self._records.items() if r["created_at"] < cutoff]
        for session_id in old:
            del self._records[session_id]
            self._events.pop(session_id, None)
        return len(old)

    async def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    provider TEXT NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_at);
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"""


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"session store failed: {exc}") from exc

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the session store is not open")
        return self._db

    async def open(self) -> None:
        await self._run(self._connect)

    async def put(self, record: Record) -> None:
        blob = orjson.dumps(record)
        await self._run(
            self.db.execute,
            "INSERT OR REPLACE INTO sessions (id, created_at, state, provider, record) "
            "VALUES (?, ?, ?, ?, ?)",
            (record["id"], record["created_at"], record["state"], record["provider"], blob),
        )

    async def get(self, session_id: str) -> Record | None:
        def query() -> Record | None:
            row = self.db.execute(
                "SELECT record FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            return None if row is None else orjson.loads(row[0])

        result: Record | None = await self._run(query)
        return result

    async def query(
        self, limit: int = 50, state: str | None = None, provider: str | None = None
    ) -> list[Record]:
        sql = "SELECT record FROM sessions"
        where, args = [], []
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if provider is not None:
            where.append("provider = ?")
            args.append(provider)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"

        def query() -> list[Record]:
            return [orjson.loads(r[0]) for r in self.db.execute(sql, (*args, limit))]

        rows: list[Record] = await self._run(query)
        return rows

    async def put_events(self, session_id: str, events: list[StoredEvent]) -> None:
        def write() -> None:
            with self.db:
                self.db.executemany(
                    "INSERT OR IGNORE INTO events (session_id, seq, type, data) "
                    "VALUES (?, ?, ?, ?)",
                    [(session_id, seq, kind, data) for seq, kind, data in events],
                )

        await self._run(write)

    async def get_events(self, session_id: str, after: int = 0) -> list[StoredEvent]:
        def query() -> list[StoredEvent]:
            return [
                (int(seq), str(kind), bytes(data))
                for seq, kind, data in self.db.execute(
                    "SELECT seq, type, data FROM events WHERE session_id = ? AND seq > ? "
                    "ORDER BY seq",
                    (session_id, after),
                )
            ]

        rows: list[StoredEvent] = await self._run(query)
        return rows

    async def delete_before(self, cutoff: float) -> int:
        def delete() -> int:
            with self.db:
                self.db.execute(
                    "DELETE FROM events WHERE session_id IN "
                    "(SELECT id FROM sessions WHERE created_at < ?)",
                    (cutoff,),
                )
                return self.db.execute(
                    "DELETE FROM sessions WHERE created_at < ?", (cutoff,)
                ).rowcount

        removed: int = await self._run(delete)
        return removed

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=True)


def open_store(url: str) -> SessionStore:
    """``memory://`` or ``sqlite:///relative/path.db`` / ``sqlite:////absolute/path.db``."""
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SQLiteStore(url[len("sqlite:///") :] or ":memory:")
    raise StoreError(f"unsupported store url {url!r} (use memory:// or sqlite:///PATH)")
