"""The Postgres database that the session store and the key store share: its connection
pools, its schema (versioned Alembic migrations, applied under an advisory lock when a store
opens) and the one list of asyncpg's errors that the stores map to their own.

Nothing here knows of sessions or keys: ``sluice.session.pgstore`` and
``sluice.access.pgkeys`` build on it, each beside its protocol and its embedded backends.
asyncpg, SQLAlchemy and Alembic are imported only when a Postgres url is used (SQLAlchemy
and Alembic only while migrating), so the embedded default loads none of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

#: the url schemes that name a Postgres database (libpq's two spellings)
SCHEMES = ("postgresql://", "postgres://")
#: the folder of the versioned migrations (``versions/NNNN_what.py``) and their env.py
MIGRATIONS = Path(__file__).parent / "migrations"
#: Alembic's record of the schema's revision; named for Sluice, so that a database shared
#: with another application that uses Alembic keeps both histories apart
VERSION_TABLE = "sluice_schema_version"
#: the advisory lock held while migrating (a transaction's lock, released at its commit):
#: processes that start together migrate one after the other, and the later ones find the
#: schema at its head and do nothing. The number is Sluice's own (``b"sluice"`` as an int).
MIGRATION_LOCK = 0x736C75696365
#: seconds to open a connection, and to wait for the migration lock
CONNECT_TIMEOUT = 10.0
MIGRATE_TIMEOUT = 60.0


class MigrationError(Exception):
    """The schema could not be brought to its head (SQLAlchemy's and Alembic's errors, mapped
    here so that no caller sees them)."""


def is_postgres_url(url: str) -> bool:
    return url.startswith(SCHEMES)


def redact(url: str) -> str:
    """The url without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


def errors() -> tuple[type[BaseException], ...]:
    """What a call into asyncpg may raise, short of cancellation: the server's errors
    (``PostgresError``), the client's (``InterfaceError``, a closed pool among them;
    ``InternalClientError``, which a call on a connection the server has just closed can
    meet), the socket's (``OSError``), a deadline (``TimeoutError``) and a failed migration.
    The stores catch exactly these and raise their own."""
    import asyncpg

    return (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
        MigrationError,
    )


def refusals() -> tuple[type[BaseException], ...]:
    """The server's refusals of a value (bad data, a broken constraint), as opposed to a
    failure of the connection or the server: a batch that met one is worth retrying row by
    row, so the refused row fails alone."""
    import asyncpg

    return (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


async def migrate(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to its head (or up to ``revision``: a database as an earlier release
    left it); return its revision before and after (equal when there was nothing to do).
    Several processes may call it at once: one migrates, the others wait on the advisory lock
    and then find nothing to do.

    Alembic runs on SQLAlchemy's asyncpg dialect with one connection that asyncpg opens from
    ``url`` as given (so the url means the same to the migration as to the pools)."""
    import asyncpg
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=connect, poolclass=NullPool)
    try:
        async with asyncio.timeout(MIGRATE_TIMEOUT), engine.connect() as connection:
            revisions: tuple[str | None, str | None] = await connection.run_sync(_upgrade, revision)
            return revisions
    except SQLAlchemyError as exc:  # the driver's error, without SQLAlchemy's wrapping
        orig = getattr(exc, "orig", None)  # SQLAlchemy's adapter, then asyncpg's own
        cause = getattr(orig, "__cause__", None) or orig or exc
        raise MigrationError(f"{type(cause).__name__}: {cause}") from exc
    except CommandError as exc:  # a revision the files do not know, and the like
        raise MigrationError(str(exc)) from exc
    finally:
        await engine.dispose()


def _upgrade(connection: Any, revision: str) -> tuple[str | None, str | None]:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import text

    with connection.begin():  # one transaction: the lock, the migrations, their record
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        current = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        after = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()
    return current, after


def head() -> str | None:
    """The newest revision among the migration files."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


async def create_pool(
    url: str,
    *,
    min_size: int,
    max_size: int,
    statement_timeout: float,
    fail: Callable[[BaseException], Exception],
) -> asyncpg.Pool[asyncpg.Record]:
    """The schema migrated, then a pool of ``min_size`` to ``max_size`` connections whose
    statements each end within ``statement_timeout`` seconds. An idle connection is closed
    after five minutes, so a quiet process holds ``min_size`` and no more. A server that does
    not answer, refuses, or a url that does not parse raises what ``fail`` makes of it (the
    caller's own error, its message without the password: ``redact``)."""
    import asyncpg

    # and ValueError: a url that does not parse
    failures: tuple[type[BaseException], ...] = (*errors(), ValueError)
    try:
        await migrate(url)
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT,
            command_timeout=statement_timeout,
            max_inactive_connection_lifetime=300.0,
        )
    except failures as exc:
        raise fail(exc) from exc
    return pool


async def close_pool(pool: asyncpg.Pool[Any], grace: float) -> None:
    """Close gracefully (each connection once released), or at once past ``grace`` seconds."""
    try:
        async with asyncio.timeout(grace):
            await pool.close()
    except TimeoutError:
        pool.terminate()
