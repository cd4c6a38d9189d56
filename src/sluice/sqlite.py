"""One write transaction on a SQLite connection opened in autocommit mode.

The stores open their connections with ``isolation_level=None`` so that the module starts no
transaction behind their backs. In that mode ``with connection:`` begins nothing: it only
commits a transaction that is already open, so each statement inside it would commit on its
own (a WAL commit per statement: about 70 µs for a one-row insert here, against 10 µs inside
one transaction). ``transaction`` opens one explicitly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (the write lock up front: a deferred transaction that later
    writes can fail to upgrade while another connection writes), then ``COMMIT``, or
    ``ROLLBACK`` if the block raises or the commit fails. A statement that fails inside the
    block and is caught there undoes only itself."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # some errors (a full disk) have rolled it back already
            db.execute("ROLLBACK")
        raise
