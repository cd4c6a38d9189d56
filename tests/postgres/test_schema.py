"""The schema's migrations: a fresh database is brought to the head, once, however many
processes start together; ``sluice db upgrade`` does the same from the command line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from sluice import postgres
from sluice.access.pgkeys import PostgresKeyStore
from sluice.session.pgstore import PostgresStore

SLUICE = [sys.executable, "-m", "sluice.cli"]


async def _names(url: str, sql: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        return {row[0] for row in await connection.fetch(sql)}
    finally:
        await connection.close()


async def test_a_fresh_database_migrates_to_the_head_and_a_second_run_does_nothing(
    fresh_pg_url: str,
) -> None:
    head = postgres.head()
    assert head is not None
    assert await postgres.migrate(fresh_pg_url) == (None, head)
    tables = await _names(
        fresh_pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )
    assert tables == {
        "sessions",
        "session_journal",
        "conversations",
        "api_keys",
        "sluice_meta",
        postgres.VERSION_TABLE,
    }
    indexes = await _names(
        fresh_pg_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'sessions'"
    )
    assert {"sessions_created", "sessions_tenant"} <= indexes
    indexes = await _names(
        fresh_pg_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'conversations'"
    )
    assert "conversations_updated" in indexes
    assert await postgres.migrate(fresh_pg_url) == (head, head)
    assert await _names(fresh_pg_url, f"SELECT version_num FROM {postgres.VERSION_TABLE}") == {head}


async def test_a_database_at_the_previous_revision_gains_conversations_and_keeps_its_rows(
    fresh_pg_url: str,
) -> None:
    assert await postgres.migrate(fresh_pg_url, "0002") == (None, "0002")
    connection = await asyncpg.connect(fresh_pg_url)
    try:
        await connection.execute(
            "INSERT INTO sessions (id, created_at, state, provider, record) "
            "VALUES ('op-1', 1.0, 'complete', 'sim', $1)",
            b'{"id":"op-1","created_at":1.0,"state":"complete","provider":"sim"}',
        )
    finally:
        await connection.close()
    tables = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    assert "conversations" not in await _names(fresh_pg_url, tables)
    head = postgres.head()
    assert head == "0003"
    assert await postgres.migrate(fresh_pg_url) == ("0002", head)
    assert "conversations" in await _names(fresh_pg_url, tables)
    store = PostgresStore(fresh_pg_url)
    await store.open()
    try:
        assert (await store.get("op-1") or {})["state"] == "complete"
        conversation = {"id": "cv-1", "tenant": None, "updated_at": 2.0, "messages": []}
        await store.put_conversation(conversation)
        assert await store.get_conversation("cv-1") == conversation
    finally:
        await store.close()


async def test_processes_that_migrate_together_migrate_once(fresh_pg_url: str) -> None:
    # Without the advisory lock, the second CREATE TABLE of the same name fails.
    head = postgres.head()
    outcomes = await asyncio.gather(*(postgres.migrate(fresh_pg_url) for _ in range(4)))
    assert outcomes.count((None, head)) == 1 and outcomes.count((head, head)) == 3


async def test_both_stores_opening_together_on_a_fresh_database_share_one_schema(
    fresh_pg_url: str,
) -> None:
    store, keys = PostgresStore(fresh_pg_url), PostgresKeyStore(fresh_pg_url)
    await asyncio.gather(store.open(), keys.open())
    try:
        await store.put({"id": "s", "created_at": 1.0, "state": "complete", "provider": "sim"})
        assert await keys.version() == 0 and await store.get("s") is not None
    finally:
        await store.close()
        await keys.close()


def test_sluice_db_upgrade_migrates_the_configured_database_once(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "sluice.toml"
    config.write_text(f'[store]\nurl = "{fresh_pg_url}"\n')
    runs = [
        subprocess.Popen(
            [*SLUICE, "db", "upgrade", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    said = sorted(out for out, _ in outputs)
    head = postgres.head()
    assert sum(f"revision {head} (upgraded from an empty database)" in s for s in said) == 1
    assert sum(f"revision {head} (current)" in s for s in said) == 2


def test_sluice_db_upgrade_says_what_failed_without_the_password(tmp_path: Path) -> None:
    from sluice.bench.proc import free_port

    config = tmp_path / "sluice.toml"
    config.write_text(f'[store]\nurl = "postgresql://u:hunter2@127.0.0.1:{free_port()}/x"\n')
    run = subprocess.run(
        [*SLUICE, "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1 and "not upgraded" in run.stderr
    assert "hunter2" not in run.stderr + run.stdout and "Traceback" not in run.stderr


def test_sluice_db_upgrade_makes_the_tables_of_a_sqlite_store(tmp_path: Path) -> None:
    config = tmp_path / "sluice.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n')
    run = subprocess.run(
        [*SLUICE, "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0 and "schema current" in run.stdout, run.stderr
    import sqlite3

    tables = {
        r[0] for r in sqlite3.connect(tmp_path / "s.db").execute("SELECT name FROM sqlite_master")
    }
    assert {"sessions", "api_keys"} <= tables


async def test_a_database_that_does_not_exist_is_each_store_s_own_error(pg_url: str) -> None:
    from sluice.access.keys import KeyError_
    from sluice.session.store import StoreError

    missing = pg_url.rsplit("/", 1)[0] + "/sluice_no_such_database"
    store = PostgresStore(missing)
    with pytest.raises(StoreError, match="sluice_no_such_database"):
        await store.open()
    keys = PostgresKeyStore(missing)
    with pytest.raises(KeyError_, match="sluice_no_such_database"):
        await keys.open()
    await store.close()
    await keys.close()


async def test_a_schema_newer_than_this_release_is_refused(fresh_pg_url: str) -> None:
    from sluice.session.store import StoreError

    await postgres.migrate(fresh_pg_url)
    connection = await asyncpg.connect(fresh_pg_url)
    try:
        await connection.execute(f"UPDATE {postgres.VERSION_TABLE} SET version_num = '9999'")
    finally:
        await connection.close()
    store = PostgresStore(fresh_pg_url)
    with pytest.raises(StoreError, match="9999"):
        await store.open()
    await store.close()
