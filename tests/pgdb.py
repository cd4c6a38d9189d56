"""A Postgres database of the test run's own, on the server at 127.0.0.1:5432.

The run creates ``sluice_test_<pid>_<random>`` at its start (migrated once), and drops it at
its end; it touches no other database. Tests that need a fresh, unmigrated one take
``fresh_pg_url`` (made and dropped around the test). No mock: when the server does not
answer, the tests that need it fail and say how to start it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import pytest

from sluice import postgres

#: the server, as a database to connect to while creating and dropping the test databases
SERVER = os.environ.get("SLUICE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
_T = TypeVar("_T")

START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def url_of(database: str) -> str:
    return SERVER.rsplit("/", 1)[0] + "/" + database


async def _admin(statement: str) -> None:
    try:
        connection = await asyncpg.connect(SERVER, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(f"Postgres does not answer at {SERVER} ({exc}); start it: {START}")
    try:
        await connection.execute(statement, timeout=60)
    finally:
        await connection.close()


@asynccontextmanager
async def made_database() -> AsyncIterator[str]:
    name = f"sluice_test_{os.getpid()}_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield url_of(name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run on a loop of its own, on a thread: the first test to ask may be async already."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The run's database, migrated to the head of the schema."""
    name = f"sluice_test_{os.getpid()}_{secrets.token_hex(4)}"
    _run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        _run(postgres.migrate(url_of(name)))
        yield url_of(name)
    finally:
        _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _empty(url: str) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute("TRUNCATE sessions, api_keys, conversations", timeout=60)
    finally:
        await connection.close()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The run's database with its sessions, keys and conversations removed: each test starts
    empty.
    (A plain fixture, so that an async fixture may ask for it by name.)"""
    _run(_empty(pg_database))
    return pg_database


@pytest.fixture
async def fresh_pg_url() -> AsyncIterator[str]:
    """A database of the test's own, empty (no schema), dropped after the test."""
    async with made_database() as url:
        yield url
