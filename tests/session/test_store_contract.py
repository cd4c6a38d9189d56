"""One contract, every store backend (memory, SQLite, Postgres): records, event logs and
conversations survive a round trip. Then what each backend does on its own."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import orjson
import pytest

from sluice.bench.proc import free_port
from sluice.session.pgstore import PostgresStore
from sluice.session.store import (
    _JOURNAL,
    _SCHEMA,
    MemoryStore,
    SessionStore,
    SQLiteStore,
    StoreError,
    open_store,
)


def _record(sid: str, created: float, state: str = "complete", provider: str = "sim") -> dict:
    return {"id": sid, "created_at": created, "state": state, "provider": provider, "text": "hi"}


async def test_a_stored_record_reads_back_equal(store: SessionStore) -> None:
    record = _record("op-1", 1.0) | {"usage": {"input_tokens": 3}, "tool_calls": []}
    await store.put(record)
    assert await store.get("op-1") == record


async def test_put_replaces_the_record_with_the_same_id(store: SessionStore) -> None:
    await store.put(_record("op-1", 1.0, state="streaming"))
    await store.put(_record("op-1", 1.0, state="errored"))
    got = await store.get("op-1")
    assert got is not None and got["state"] == "errored"


async def test_an_unknown_id_reads_as_none(store: SessionStore) -> None:
    assert await store.get("op-missing") is None


async def test_query_is_newest_first_and_filters(store: SessionStore) -> None:
    await store.put(_record("a", 1.0, "complete", "sim"))
    await store.put(_record("b", 2.0, "errored", "sim"))
    await store.put(_record("c", 3.0, "complete", "openai"))
    assert [r["id"] for r in await store.query()] == ["c", "b", "a"]
    assert [r["id"] for r in await store.query(state="complete")] == ["c", "a"]
    assert [r["id"] for r in await store.query(provider="sim")] == ["b", "a"]
    assert [r["id"] for r in await store.query(limit=1)] == ["c"]


async def test_events_read_back_after_a_sequence_number(store: SessionStore) -> None:
    events = [(1, "start", {}), (2, "text", {"text": "a"}), (4, "finish", {})]
    await store.put(_record("op-1", 1.0), events)
    assert await store.get_events("op-1") == [
        (1, "start", b"{}"),
        (2, "text", b'{"text":"a"}'),
        (4, "finish", b"{}"),
    ]
    assert await store.get_events("op-1", after=2) == [(4, "finish", b"{}")]
    assert await store.get_events("op-2") == []


async def test_storing_the_same_events_twice_keeps_one_copy(store: SessionStore) -> None:
    events = [(1, "start", {}), (2, "text", {"text": "a"})]
    await store.put(_record("op-1", 1.0), events)
    await store.put(_record("op-1", 1.0), events)
    assert await store.get_events("op-1") == [(1, "start", b"{}"), (2, "text", b'{"text":"a"}')]


async def test_a_record_put_without_events_keeps_the_stored_log(store: SessionStore) -> None:
    await store.put(_record("op-1", 1.0, state="complete"), [(1, "start", {})])
    await store.put(_record("op-1", 1.0, state="streaming"))  # a recover begins
    assert await store.get_events("op-1") == [(1, "start", b"{}")]
    assert (await store.get("op-1") or {})["state"] == "streaming"


def test_store_urls_choose_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    sqlite = open_store(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(sqlite, SQLiteStore) and sqlite.path == f"{tmp_path}/x.db"
    postgres = open_store("postgresql://sluice@db.internal:5432/sluice")
    assert isinstance(postgres, PostgresStore) and postgres.url.endswith("/sluice")
    assert isinstance(open_store("postgres://sluice@db/sluice"), PostgresStore)
    with pytest.raises(StoreError, match="unsupported store url"):
        open_store("mysql://nope")


async def test_records_and_events_older_than_the_cutoff_are_deleted(store: SessionStore) -> None:
    await store.put(_record("old", 1.0), [(1, "start", {})])
    await store.put(_record("new", 5.0), [(1, "start", {})])
    assert await store.delete_before(3.0) == 1
    assert await store.get("old") is None and await store.get_events("old") == []
    assert await store.get("new") is not None and await store.get_events("new") != []


async def test_many_concurrent_writes_are_all_kept_in_call_order(store: SessionStore) -> None:
    # Calls made together may share one transaction (SQLite's group commit): none is lost,
    # and a later call for the same id wins, as if they had run one by one.
    writes = [store.put(_record(f"op-{i}", float(i))) for i in range(300)]
    writes.append(store.put(_record("op-7", 7.0, state="errored")))
    writes += [store.put(_record(f"op-{i}", float(i)), [(1, "start", {})]) for i in range(300)]
    writes.append(store.put(_record("op-7", 7.0, state="errored")))
    await asyncio.gather(*writes)
    assert len(await store.query(limit=1000)) == 300
    assert (await store.get("op-7") or {})["state"] == "errored"
    assert await store.get_events("op-299") == [(1, "start", b"{}")]


async def test_a_retried_session_storing_its_whole_log_again_replaces_it(
    store: SessionStore,
) -> None:
    await store.put(_record("op-1", 1.0), [(1, "start", {}), (2, "error", {})])
    log = [(1, "start", {}), (2, "error", {}), (3, "retry", {}), (4, "finish", {})]
    await store.put(_record("op-1", 1.0), log)
    assert [e[:2] for e in await store.get_events("op-1")] == [e[:2] for e in log]


async def test_events_that_do_not_encode_fail_their_write_alone(store: SessionStore) -> None:
    outcomes = await asyncio.gather(
        store.put(_record("op-bad", 1.0), [(1, "x", {"bad": object()})]),
        store.put(_record("op-good", 2.0), [(1, "start", {})]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], StoreError) and outcomes[1] is None
    assert await store.get_events("op-good") == [(1, "start", b"{}")]


async def test_a_record_holding_a_nul_character_reads_back_equal(store: SessionStore) -> None:
    # A prompt may hold U+0000; Postgres's jsonb would refuse it, the stored bytes keep it.
    record = _record("op-nul", 1.0) | {"text": "a\u0000b", "prompt": "\x00"}
    await store.put(record, [(1, "text", {"text": "\u0000"})])
    assert await store.get("op-nul") == record
    assert await store.get_events("op-nul") == [(1, "text", b'{"text":"\\u0000"}')]


async def test_a_put_again_while_queued_settles_both_callers_with_the_later_record(
    store: SessionStore,
) -> None:
    first = store.put(_record("op-1", 1.0, state="streaming"))
    second = store.put(_record("op-1", 1.0, state="complete"), [(1, "finish", {})])
    await asyncio.gather(first, second)
    assert (await store.get("op-1") or {})["state"] == "complete"
    assert await store.get_events("op-1") == [(1, "finish", b"{}")]


async def test_query_filters_by_tenant(store: SessionStore) -> None:
    await store.put(_record("a", 1.0) | {"tenant": "acme"})
    await store.put(_record("b", 2.0) | {"tenant": "other"})
    await store.put(_record("c", 3.0) | {"tenant": "acme"})
    await store.put(_record("d", 4.0))
    assert [r["id"] for r in await store.query(tenant="acme")] == ["c", "a"]
    assert [r["id"] for r in await store.query(tenant="acme", state="errored")] == []


async def test_a_live_sessions_journal_reads_back_in_order(store: SessionStore) -> None:
    await store.put(_record("op-1", 1.0, state="streaming"))
    await store.append_events("op-1", [(1, "status", {"phase": "waiting"}), (2, "start", {})])
    await store.append_events("op-1", [(3, "text", {"text": "a"}), (5, "text", {"text": "b"})])
    assert [(seq, kind) for seq, kind, _ in await store.get_events("op-1")] == [
        (1, "status"),
        (2, "start"),
        (3, "text"),
        (5, "text"),
    ]
    assert await store.get_events("op-1", after=3) == [(5, "text", b'{"text":"b"}')]


async def test_the_whole_log_stored_at_the_end_replaces_the_journal(store: SessionStore) -> None:
    await store.put(_record("op-1", 1.0, state="streaming"))
    await store.append_events("op-1", [(1, "text", {"text": "journaled"})])
    await store.put(_record("op-1", 1.0), [(1, "text", {"text": "final"}), (2, "finish", {})])
    assert await store.get_events("op-1") == [
        (1, "text", b'{"text":"final"}'),
        (2, "finish", b"{}"),
    ]
    # a batch that arrives after the end (written late) is not kept
    await store.append_events("op-1", [(3, "text", {"text": "late"})])
    assert len(await store.get_events("op-1")) == 2


async def test_a_journal_for_an_unknown_or_ended_session_is_ignored(store: SessionStore) -> None:
    await store.append_events("op-none", [(1, "text", {"text": "a"})])
    await store.put(_record("op-2", 1.0, state="errored"))
    await store.append_events("op-2", [(1, "text", {"text": "a"})])
    assert await store.get_events("op-none") == []
    assert await store.get_events("op-2") == []


async def test_a_retried_session_journals_past_its_earlier_log(store: SessionStore) -> None:
    await store.put(_record("op-1", 1.0, state="errored"), [(1, "text", {"text": "a"})])
    await store.put(_record("op-1", 1.0, state="starting"))  # the retry's first record
    await store.append_events("op-1", [(2, "retry", {}), (3, "text", {"text": "b"})])
    assert [seq for seq, _, _ in await store.get_events("op-1")] == [1, 2, 3]


async def test_unfinished_lists_the_records_left_live_oldest_first(store: SessionStore) -> None:
    await store.put(_record("op-3", 3.0, state="finalizing"))
    await store.put(_record("op-1", 1.0, state="streaming"))
    await store.put(_record("op-2", 2.0, state="complete"))
    await store.put(_record("op-4", 4.0, state="starting"))
    assert [r["id"] for r in await store.unfinished()] == ["op-1", "op-3", "op-4"]
    assert [r["id"] for r in await store.unfinished(limit=1)] == ["op-1"]


async def test_deleting_old_sessions_deletes_their_journals(store: SessionStore) -> None:
    await store.put(_record("op-old", 1.0, state="streaming"))
    await store.append_events("op-old", [(1, "text", {"text": "a"})])
    assert await store.delete_before(2.0) == 1
    await store.put(_record("op-old", 3.0, state="streaming"))
    assert await store.get_events("op-old") == []


def _conversation(cid: str, updated: float, messages: int = 1, tenant: str | None = "acme") -> dict:
    turns = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n}"}
        for n in range(messages)
    ]
    return {
        "id": cid,
        "tenant": tenant,
        "agent": "researcher",
        "model": "sim-1",
        "messages": turns,
        "sessions": [f"op-{n}" for n in range(0, messages, 2)],
        "created_at": 1.0,
        "updated_at": updated,
    }


async def test_a_stored_conversation_reads_back_equal(store: SessionStore) -> None:
    conversation = _conversation("cv-1", 2.0, messages=3)
    conversation["messages"][0]["content"] = "a\u0000b \u00e9 \U0001f600"  # any text a prompt holds
    await store.put_conversation(conversation)
    assert await store.get_conversation("cv-1") == conversation


async def test_a_conversation_put_again_is_replaced_whole(store: SessionStore) -> None:
    await store.put_conversation(_conversation("cv-1", 2.0, messages=1))
    later = _conversation("cv-1", 3.0, messages=2, tenant=None)
    await store.put_conversation(later)
    assert await store.get_conversation("cv-1") == later


async def test_conversations_put_together_keep_their_call_order(store: SessionStore) -> None:
    writes = [store.put_conversation(_conversation("cv-1", float(n), n)) for n in range(1, 6)]
    writes.append(store.put_conversation(_conversation("cv-2", 9.0)))
    await asyncio.gather(*writes)
    assert (await store.get_conversation("cv-1") or {})["updated_at"] == 5.0
    assert len((await store.get_conversation("cv-1") or {})["messages"]) == 5
    assert await store.get_conversation("cv-2") == _conversation("cv-2", 9.0)


async def test_an_unknown_conversation_reads_as_none(store: SessionStore) -> None:
    await store.put_conversation(_conversation("cv-1", 2.0))
    assert await store.get_conversation("cv-2") is None
    assert await store.get("cv-1") is None  # a conversation is not a session


async def test_a_conversation_id_is_a_value_never_sql(store: SessionStore) -> None:
    hostile = ["x'; DROP TABLE conversations; --", 'x" OR 1=1 --', "%", "' OR ''='"]
    for cid in hostile:
        await store.put_conversation(_conversation(cid, 2.0))
    await store.put_conversation(_conversation("cv-plain", 2.0))
    for cid in hostile:
        assert (await store.get_conversation(cid) or {})["id"] == cid
    assert await store.get_conversation("x") is None
    assert await store.get_conversation("' OR ''='") is not None
    assert await store.get_conversation("' OR 1=1 --") is None
    assert await store.get_conversation("cv-plain") is not None


async def test_a_conversation_that_does_not_encode_fails_alone(store: SessionStore) -> None:
    bad = _conversation("cv-bad", 2.0) | {"agent": object()}
    outcomes = await asyncio.gather(
        store.put_conversation(bad),
        store.put_conversation({"id": "cv-no-time", "messages": []}),
        store.put_conversation(_conversation("cv-good", 2.0)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], StoreError) and isinstance(outcomes[1], StoreError)
    assert outcomes[2] is None
    assert await store.get_conversation("cv-bad") is None
    assert await store.get_conversation("cv-no-time") is None
    assert await store.get_conversation("cv-good") is not None


async def test_conversations_not_updated_since_the_cutoff_are_deleted(store: SessionStore) -> None:
    await store.put(_record("op-old", 1.0))
    await store.put_conversation(_conversation("cv-old", 2.0))
    await store.put_conversation(_conversation("cv-edge", 3.0))
    await store.put_conversation(_conversation("cv-new", 5.0))
    # the return value counts the session records, not the conversations
    assert await store.delete_before(3.0) == 1
    assert await store.get_conversation("cv-old") is None
    assert await store.get_conversation("cv-edge") is not None
    assert await store.get_conversation("cv-new") is not None
    # a conversation updated since it was created is kept by its last update
    await store.put_conversation(_conversation("cv-new", 9.0))
    assert await store.delete_before(6.0) == 0
    assert (await store.get_conversation("cv-new") or {})["updated_at"] == 9.0


async def test_sqlite_conversations_survive_reopening_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SQLiteStore(path)
    await store.open()
    conversation = _conversation("cv-1", 2.0, messages=4)
    await store.put_conversation(conversation)
    await store.close()
    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        assert await reopened.get_conversation("cv-1") == conversation
    finally:
        await reopened.close()


async def test_sqlite_a_file_from_before_conversations_gains_their_table(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(str(path))
    await store.open()
    await store.put(_record("op-1", 1.0))
    await store.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE conversations")
    db.commit()
    db.close()
    store = SQLiteStore(str(path))
    await store.open()
    try:
        assert await store.get("op-1") == _record("op-1", 1.0)
        assert await store.get_conversation("cv-1") is None
        await store.put_conversation(_conversation("cv-1", 2.0))
        assert await store.get_conversation("cv-1") == _conversation("cv-1", 2.0)
    finally:
        await store.close()


async def test_sqlite_a_conversation_is_committed_in_the_next_turn_not_the_window(
    tmp_path: Path,
) -> None:
    # The next turn of a conversation may be asked for as soon as this one ends.
    store = SQLiteStore(str(tmp_path / "s.db"), commit_interval=10.0)
    await store.open()
    try:
        start = asyncio.ensure_future(store.put(_record("op-1", 1.0, state="streaming")))
        await asyncio.wait_for(store.put_conversation(_conversation("cv-1", 2.0)), 5.0)
        assert await store.get_conversation("cv-1") is not None
        await start
    finally:
        await store.close()


async def test_sqlite_a_conversation_put_before_open_fails(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    with pytest.raises(StoreError, match="not open"):
        await store.put_conversation(_conversation("cv-1", 2.0))


async def test_sqlite_a_file_with_the_old_table_of_logs_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE sessions (id TEXT PRIMARY KEY, created_at REAL NOT NULL,
            state TEXT NOT NULL, provider TEXT NOT NULL, record BLOB NOT NULL);
        CREATE INDEX sessions_created ON sessions (created_at);
        CREATE TABLE session_events (session_id TEXT PRIMARY KEY, events BLOB NOT NULL)
            WITHOUT ROWID;
        """
    )
    record = _record("op-1", 1.0)
    db.execute(
        "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
        ("op-1", 1.0, "complete", "sim", orjson.dumps(record)),
    )
    db.execute("INSERT INTO session_events VALUES (?, ?)", ("op-1", b'[[1,"start",{}]]'))
    db.commit()
    db.close()
    store = SQLiteStore(str(path))
    await store.open()
    try:
        assert await store.get("op-1") == record
        assert await store.get_events("op-1") == [(1, "start", b"{}")]
        tables = {row[0] for row in store.db.execute("SELECT name FROM sqlite_master")}
        assert "session_events" not in tables
    finally:
        await store.close()


async def test_sqlite_commits_a_long_queue_in_slices_with_the_loop_free_between(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"), commit_interval=0.0)
    store.SLICE = 0.0  # one write per transaction
    store.SLICE_PAUSE = 0.05
    await store.open()
    try:
        writes = [asyncio.ensure_future(store.put(_record(f"op-{i}", float(i)))) for i in range(4)]
        await asyncio.sleep(0.02)  # the first slice has run, the second waits for its pause
        assert [w.done() for w in writes] == [True, False, False, False]
        assert await store.get("op-0") is not None and await store.get("op-1") is None
        await asyncio.gather(*writes)
        assert len(await store.query()) == 4
    finally:
        await store.close()


async def test_sqlite_a_file_with_the_journal_keyed_by_session_is_migrated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(str(path))
    await store.open()
    await store.put(_record("op-1", 1.0, state="streaming"))
    await store.close()
    db = sqlite3.connect(path)
    db.executescript(
        """
        DROP TABLE journal_batches;
        CREATE TABLE session_journal (session_id TEXT NOT NULL, first_seq INTEGER NOT NULL,
            events BLOB NOT NULL, PRIMARY KEY (session_id, first_seq)) WITHOUT ROWID;
        """
    )
    db.execute(
        "INSERT INTO session_journal VALUES (?, ?, ?)", ("op-1", 1, b'[[1,"text",{"text":"a"}]]')
    )
    db.commit()
    db.close()
    store = SQLiteStore(str(path))
    await store.open()
    try:
        assert await store.get_events("op-1") == [(1, "text", b'{"text":"a"}')]
        tables = {row[0] for row in store.db.execute("SELECT name FROM sqlite_master")}
        assert "session_journal" not in tables
    finally:
        await store.close()


def _wal_frames(path: Path) -> int:
    """The frames the file's write-ahead log holds (none is checkpointed: the store turns
    automatic checkpoints off and runs its own only after many writes)."""
    with sqlite3.connect(path) as reader:
        return int(reader.execute("PRAGMA wal_checkpoint(NOOP)").fetchone()[1])


async def test_sqlite_the_writes_of_one_slice_are_one_transaction(tmp_path: Path) -> None:
    # Forty records that fit on a few pages: one commit writes each page once; forty
    # commits (each statement a transaction of its own) would write forty frames or more.
    path = tmp_path / "s.db"
    store = SQLiteStore(str(path), commit_interval=0.01)
    store.SLICE = 10.0  # every queued write in one slice
    await store.open()
    try:
        before = _wal_frames(path)
        await asyncio.gather(*(store.put(_record(f"op-{i}", float(i))) for i in range(40)))
        assert len(await store.query()) == 40
        assert _wal_frames(path) - before < 12
    finally:
        await store.close()


async def test_sqlite_an_end_is_committed_before_the_writes_queued_ahead_of_it(
    tmp_path: Path,
) -> None:
    # A session's end (its final record, with its log) is what its clients wait for.
    store = SQLiteStore(str(tmp_path / "s.db"), commit_interval=10.0)
    store.SLICE = 0.0  # one write per transaction past the ends
    store.SLICE_PAUSE = 0.05
    await store.open()
    try:
        starts = [
            asyncio.ensure_future(store.put(_record(f"op-{i}", float(i), state="streaming")))
            for i in range(30)
        ]
        await store.put(_record("op-end", 99.0), [(1, "text", {"text": "hi"})])
        assert sum(not w.done() for w in starts) >= 25
        assert await store.get_events("op-end") == [(1, "text", b'{"text":"hi"}')]
        await asyncio.gather(*starts)
    finally:
        await store.close()


def test_sqlite_a_journal_row_is_written_without_a_temporary_btree(tmp_path: Path) -> None:
    """The guard that a session is live compares its state directly: ``state IN (...)`` made
    SQLite build a temporary b-tree for every row the journal wrote."""
    db = sqlite3.connect(tmp_path / "s.db")
    db.executescript(_SCHEMA)
    program = [row[1] for row in db.execute("EXPLAIN " + _JOURNAL, ("op-1", 1, b"[]", "op-1"))]
    assert "OpenEphemeral" not in program
    assert program.count("OpenRead") >= 1 and "Insert" in program  # the guard and the row
    db.close()


async def test_sqlite_journal_batches_waiting_together_are_one_row_per_session(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"), commit_interval=10.0)
    await store.open()
    try:
        await store.put(_record("op-1", 1.0, state="streaming"))
        first = store.append_events("op-1", [(1, "text", {"text": "a"})])
        second = store.append_events("op-1", [(2, "text", {"text": "b"})])
        other = store.append_events("op-2", [(1, "text", {"text": "c"})])  # no record: ignored
        await store.put(_record("op-3", 3.0), [(1, "text", {"text": "end"})])  # flushes now
        await asyncio.gather(first, second, other)
        rows = store.db.execute("SELECT session_id, first_seq FROM journal_batches").fetchall()
        assert rows == [("op-1", 1)]
        assert [e[0] for e in await store.get_events("op-1")] == [1, 2]
        # A batch still waiting when the session's end is queued is not written.
        late = store.append_events("op-1", [(3, "text", {"text": "d"})])
        await store.put(
            _record("op-1", 1.0), [(n, "text", {"text": t}) for n, t in enumerate("abd", 1)]
        )
        await late
        assert store.db.execute("SELECT count(*) FROM journal_batches").fetchone()[0] == 0
        assert [e[0] for e in await store.get_events("op-1")] == [1, 2, 3]
    finally:
        await store.close()


async def test_sqlite_close_commits_every_slice_still_queued(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"), commit_interval=10.0)
    store.SLICE = 0.0
    await store.open()
    writes = [asyncio.ensure_future(store.put(_record(f"op-{i}", float(i)))) for i in range(5)]
    await asyncio.sleep(0)  # queued, none committed: the commit interval is ten seconds away
    await store.close()
    assert all(w.done() and w.exception() is None for w in writes)
    reopened = SQLiteStore(str(tmp_path / "s.db"))
    await reopened.open()
    try:
        assert len(await reopened.query()) == 5
    finally:
        await reopened.close()


async def test_sqlite_a_record_put_again_before_its_commit_is_written_once(
    tmp_path: Path,
) -> None:
    # A stream shorter than the commit interval: its first and final records, one write.
    store = SQLiteStore(str(tmp_path / "s.db"), commit_interval=0.05)
    await store.open()
    try:
        first = asyncio.ensure_future(store.put(_record("op-1", 1.0, state="streaming")))
        await asyncio.sleep(0)  # queued, not yet committed
        before = store.db.total_changes
        await asyncio.gather(first, store.put(_record("op-1", 1.0, state="complete")))
        assert store.db.total_changes - before == 1
        assert (await store.get("op-1") or {})["state"] == "complete"
        # Once committed, a later put is a write of its own.
        await store.put(_record("op-1", 1.0, state="errored"))
        assert store.db.total_changes - before == 2
        assert (await store.get("op-1") or {})["state"] == "errored"
    finally:
        await store.close()


async def test_sqlite_a_record_that_does_not_encode_fails_alone(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    await store.open()
    try:
        bad = _record("op-bad", 1.0) | {"detail": object()}
        outcomes = await asyncio.gather(
            store.put(bad), store.put(_record("op-good", 2.0)), return_exceptions=True
        )
        assert isinstance(outcomes[0], StoreError) and outcomes[1] is None
        assert await store.get("op-bad") is None
        assert await store.get("op-good") is not None
    finally:
        await store.close()


async def test_sqlite_a_put_before_open_fails_and_leaves_nothing_queued(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    with pytest.raises(StoreError):
        await store.put(_record("op-1", 1.0))
    await store.open()
    try:
        await store.put(_record("op-1", 1.0))  # a write of its own, not one never queued
        assert await store.get("op-1") is not None
    finally:
        await store.close()


async def test_postgres_writes_made_together_are_one_statement(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.SLICE = 10.0  # however long their encoding takes on this machine
    await store.open()
    try:
        await asyncio.gather(*(store.put(_record(f"op-{i}", float(i))) for i in range(300)))
        # rows written by one statement share its transaction id
        transactions = await _scalar(pg_url, "SELECT count(DISTINCT xmin::text) FROM sessions")
        assert transactions == 1
        assert len(await store.query(limit=1000)) == 300
    finally:
        await store.close()


async def test_postgres_a_long_queue_is_written_in_slices_of_encoding(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.SLICE = 0.0  # one session per statement
    await store.open()
    try:
        await asyncio.gather(*(store.put(_record(f"op-{i}", float(i))) for i in range(5)))
        assert await _scalar(pg_url, "SELECT count(DISTINCT xmin::text) FROM sessions") == 5
        assert [r["id"] for r in await store.query()] == [f"op-{i}" for i in range(4, -1, -1)]
    finally:
        await store.close()


async def test_postgres_a_row_the_server_refuses_fails_alone(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    try:
        # a text column cannot hold U+0000 in Postgres: the batch is refused, then written
        # one session at a time
        outcomes = await asyncio.gather(
            store.put(_record("op-good", 1.0)),
            store.put(_record("op-bad", 2.0, provider="si\x00m")),
            store.put(_record("op-fine", 3.0), [(1, "start", {})]),
            return_exceptions=True,
        )
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], StoreError)
        assert [r["id"] for r in await store.query()] == ["op-fine", "op-good"]
        assert await store.get_events("op-fine") == [(1, "start", b"{}")]
    finally:
        await store.close()


async def test_postgres_a_conversation_the_server_refuses_fails_alone(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    try:
        # a text column cannot hold U+0000: the batch is refused, then written one by one
        outcomes = await asyncio.gather(
            store.put_conversation(_conversation("cv-good", 2.0)),
            store.put_conversation(_conversation("cv-\x00bad", 2.0)),
            store.put_conversation(_conversation("cv-fine", 2.0, tenant="acme\x00")),
            store.put_conversation(_conversation("cv-too", 2.0)),
            return_exceptions=True,
        )
        assert outcomes[0] is None and outcomes[3] is None
        assert isinstance(outcomes[1], StoreError) and isinstance(outcomes[2], StoreError)
        assert await _scalar(pg_url, "SELECT count(*) FROM conversations") == 2
    finally:
        await store.close()


async def test_postgres_conversations_queued_together_are_one_statement(pg_url: str) -> None:
    store = PostgresStore(pg_url, commit_interval=10.0)
    await store.open()
    try:
        writes = [store.put_conversation(_conversation(f"cv-{n}", 2.0)) for n in range(20)]
        writes.append(store.put_conversation(_conversation("cv-3", 4.0)))
        await asyncio.gather(*writes)
        # rows written by one statement share its transaction id
        assert await _scalar(pg_url, "SELECT count(DISTINCT xmin::text) FROM conversations") == 1
        assert (await store.get_conversation("cv-3") or {})["updated_at"] == 4.0
    finally:
        await store.close()


async def test_postgres_close_writes_what_is_still_queued(pg_url: str) -> None:
    store = PostgresStore(pg_url, commit_interval=10.0)
    await store.open()
    writes = [asyncio.ensure_future(store.put(_record(f"op-{i}", float(i)))) for i in range(5)]
    await asyncio.sleep(0)  # queued; the window is ten seconds long
    await store.close()
    assert all(w.done() and w.exception() is None for w in writes)
    assert await _scalar(pg_url, "SELECT count(*) FROM sessions") == 5


async def test_postgres_a_put_before_open_or_after_close_fails(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    with pytest.raises(StoreError, match="not open"):
        await store.put(_record("op-1", 1.0))
    await store.open()
    await store.put(_record("op-1", 1.0))
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.put(_record("op-2", 1.0))
    with pytest.raises(StoreError, match="not open"):
        await store.get("op-1")
    with pytest.raises(StoreError, match="not open"):
        await store.put_conversation(_conversation("cv-1", 2.0))
    with pytest.raises(StoreError, match="not open"):
        await store.get_conversation("cv-1")


async def test_postgres_a_server_that_does_not_answer_is_a_store_error_without_the_password() -> (
    None
):
    store = PostgresStore(f"postgresql://sluice:hunter2@127.0.0.1:{free_port()}/sluice")
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "hunter2" not in str(caught.value) and "127.0.0.1" in str(caught.value)


async def _scalar(url: str, sql: str) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def test_postgres_a_store_whose_connections_are_killed_reconnects(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    try:
        await store.put(_record("op-1", 1.0))
        killed = await _scalar(
            pg_url,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        assert isinstance(killed, int) and killed >= 1
        outcomes = await asyncio.gather(
            store.put(_record("op-2", 2.0)), store.get("op-1"), return_exceptions=True
        )
        # a call on a dead connection fails as a StoreError, never as asyncpg's own
        assert all(o is None or isinstance(o, StoreError | dict) for o in outcomes), outcomes
        await store.put(_record("op-3", 3.0))
        assert "op-3" in [r["id"] for r in await store.query()]
        assert await store.get("op-1") is not None
    finally:
        await store.close()
