"""``transaction``: one write transaction on a connection in autocommit mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sluice.sqlite import transaction


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)")
    return db


def test_the_statements_of_a_block_commit_together(tmp_path: Path) -> None:
    db = _connect(tmp_path / "t.db")
    other = _connect(tmp_path / "t.db")
    with transaction(db):
        db.execute("INSERT INTO t VALUES (1, 'a')")
        db.execute("INSERT INTO t VALUES (2, 'b')")
        # not yet visible to another connection: nothing has committed
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    assert not db.in_transaction


def test_a_block_that_raises_leaves_nothing_written(tmp_path: Path) -> None:
    db = _connect(tmp_path / "t.db")
    with pytest.raises(RuntimeError), transaction(db):
        db.execute("INSERT INTO t VALUES (1, 'a')")
        raise RuntimeError("stop")
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    assert not db.in_transaction


def test_a_statement_that_fails_inside_undoes_only_itself(tmp_path: Path) -> None:
    db = _connect(tmp_path / "t.db")
    with transaction(db):
        db.execute("INSERT INTO t VALUES (1, 'a')")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO t VALUES (1, 'again')")
        db.execute("INSERT INTO t VALUES (2, 'b')")
    assert db.execute("SELECT v FROM t ORDER BY k").fetchall() == [("a",), ("b",)]
