"""API keys and their spend in Postgres (``[store] url = "postgresql://…"``), shared by every
gateway process on every node and by ``sluice keys``.

Each call is one short transaction on a small pool. What several processes do at once stays
right: spend is added by the server (``spend = spend + $n``), so increments from every
process sum; the keys' version is changed in the transaction that changes a key, so a
process that sees the new number reads the new key; the login cookies' secret is made by
whichever process comes first, and every other reads that one.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from sluice import postgres
from sluice.access.keys import ApiKey, KeyError_, _find, key_of

if TYPE_CHECKING:
    import asyncpg

_COLUMNS = (
    "name, prefix, hash, role, tenant, models, budget, rpm, tpm, max_streams, created_at, "
    "expires_at, revoked_at, spend, unpriced_sessions"
)
_BUMP = "UPDATE sluice_meta SET counter = counter + 1 WHERE name = 'keys_version'"


class PostgresKeyStore:
    """Keys in the ``api_keys`` table; the version and the cookie secret in ``sluice_meta``."""

    #: a gateway polls the version once a second and writes spend on the same tick: one
    #: connection does it, a second serves ``sluice keys`` or the admin API meanwhile
    POOL_MIN = 1
    POOL_MAX = 2
    #: seconds any one call (the wait for a connection, then its statements) may take
    TIMEOUT = 10.0

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool[Any] | None = None
        self._errors: tuple[type[BaseException], ...] = ()

    def _fail(self, exc: BaseException) -> KeyError_:
        return KeyError_(
            f"the key store at {postgres.redact(self.url)} failed: {type(exc).__name__}: {exc}"
        )

    def _require(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise KeyError_("the key store is not open")
        return self._pool

    async def open(self) -> None:
        self._errors = postgres.errors()
        self._pool = await postgres.create_pool(
            self.url,
            min_size=self.POOL_MIN,
            max_size=self.POOL_MAX,
            statement_timeout=self.TIMEOUT,
            fail=self._fail,
        )

    async def add(self, key: ApiKey) -> None:
        import asyncpg

        pool = self._require()
        try:
            async with pool.acquire(timeout=self.TIMEOUT) as db, db.transaction():
                await db.execute(
                    f"INSERT INTO api_keys ({_COLUMNS}) VALUES "
                    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                    *_row_of(key),
                    timeout=self.TIMEOUT,
                )
                await db.execute(_BUMP, timeout=self.TIMEOUT)
        except asyncpg.UniqueViolationError as exc:
            raise KeyError_(f"a key named {key.name!r} exists already") from exc
        except self._errors as exc:
            raise self._fail(exc) from exc

    async def all(self) -> list[ApiKey]:
        pool = self._require()
        try:
            async with pool.acquire(timeout=self.TIMEOUT) as db:
                rows = await db.fetch(
                    f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at", timeout=self.TIMEOUT
                )
        except self._errors as exc:
            raise self._fail(exc) from exc
        return [key_of(row) for row in rows]

    async def revoke(self, name_or_prefix: str, at: float) -> ApiKey:
        key = _find(await self.all(), name_or_prefix)
        if key.revoked_at is not None:
            return key
        pool = self._require()
        try:
            async with pool.acquire(timeout=self.TIMEOUT) as db, db.transaction():
                # Another process may have revoked it meanwhile: its time stands, and the
                # version changes once.
                revoked = await db.fetchval(
                    "UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL "
                    "RETURNING revoked_at",
                    at,
                    key.name,
                    timeout=self.TIMEOUT,
                )
                if revoked is None:
                    revoked = await db.fetchval(
                        "SELECT revoked_at FROM api_keys WHERE name = $1",
                        key.name,
                        timeout=self.TIMEOUT,
                    )
                else:
                    await db.execute(_BUMP, timeout=self.TIMEOUT)
        except self._errors as exc:
            raise self._fail(exc) from exc
        key.revoked_at = revoked
        return key

    async def add_spend(self, amounts: dict[str, tuple[float, int]]) -> None:
        """One statement for every key: the server adds to the stored totals, so the
        increments of every process sum (each row is locked while it is updated)."""
        if not amounts:
            return
        pool = self._require()
        names = list(amounts)
        try:
            async with pool.acquire(timeout=self.TIMEOUT) as db, db.transaction():
                # The rows are locked in the order of their names first: two processes adding
                # to the same keys at once would otherwise lock them in the orders their
                # updates met them, and could deadlock.
                await db.execute(
                    "SELECT 1 FROM api_keys WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE",
                    names,
                    timeout=self.TIMEOUT,
                )
                await db.execute(
                    "UPDATE api_keys AS k SET spend = k.spend + a.cost, "
                    "unpriced_sessions = k.unpriced_sessions + a.unpriced "
                    "FROM unnest($1::text[], $2::float8[], $3::bigint[]) "
                    "AS a(name, cost, unpriced) WHERE k.name = a.name",
                    names,
                    [float(amounts[n][0]) for n in names],
                    [int(amounts[n][1]) for n in names],
                    timeout=self.TIMEOUT,
                )
        except self._errors as exc:
            raise self._fail(exc) from exc

    async def spends(self) -> dict[str, tuple[float, int]]:
        pool = self._require()
        try:
            async with pool.acquire(timeout=self.TIMEOUT) as db:
                rows = await db.fetch(
                    "SELECT name, spend, unpriced_sessions FROM api_keys", timeout=self.TIMEOUT
                )
        except self._errors as exc:
            raise self._fail(exc) from exc
        return {row[0]: (float(row[1]), int(row[2])) for row in rows}

    async def version(self) -> int:
        pool = self._require()
        try:
            async with pool.acquire(timeout=self.TIMEOUT) as db:
                value = await db.fetchval(
                    "SELECT counter FROM sluice_meta WHERE name = 'keys_version'",
                    timeout=self.TIMEOUT,
                )
        except self._errors as exc:
            raise self._fail(exc) from exc
        return int(value or 0)

    async def secret(self) -> bytes:
        """Made once per installation: the first process to ask inserts one, every other
        (``ON CONFLICT DO NOTHING``) reads the one that won."""
        pool = self._require()
        try:
            async with pool.acquire(timeout=self.TIMEOUT) as db:
                await db.execute(
                    "INSERT INTO sluice_meta (name, value) VALUES ('cookie_secret', $1) "
                    "ON CONFLICT (name) DO NOTHING",
                    secrets.token_bytes(32),
                    timeout=self.TIMEOUT,
                )
                value = await db.fetchval(
                    "SELECT value FROM sluice_meta WHERE name = 'cookie_secret'",
                    timeout=self.TIMEOUT,
                )
        except self._errors as exc:
            raise self._fail(exc) from exc
        return bytes(value)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await postgres.close_pool(pool, self.TIMEOUT)


def _row_of(key: ApiKey) -> tuple[Any, ...]:
    return (
        key.name,
        key.prefix,
        key.hash,
        key.role,
        key.tenant,
        list(key.models),
        key.budget,
        key.rpm,
        key.tpm,
        key.max_streams,
        key.created_at,
        key.expires_at,
        key.revoked_at,
        key.spend,
        key.unpriced_sessions,
    )
