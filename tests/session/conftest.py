"""The session store under test: every backend (memory, SQLite, Postgres), one at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.session.pgstore import PostgresStore
from sluice.session.store import MemoryStore, SessionStore, SQLiteStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    backend: SessionStore
    if request.param == "memory":
        backend = MemoryStore()
    elif request.param == "sqlite":
        backend = SQLiteStore(str(tmp_path / "s.db"))
    else:  # the run's database, emptied for this test
        backend = PostgresStore(request.getfixturevalue("pg_url"))
    await backend.open()
    yield backend
    await backend.close()
