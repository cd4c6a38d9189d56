"""API keys: how they are made, how they are kept (a hash beside a short visible prefix), and
the stores that keep them (in memory, and a table in the SQLite file of the session store;
the Postgres one is ``sluice.access.pgkeys``).

A key is ``sk-sluice-`` followed by 32 URL-safe characters from ``secrets.token_urlsafe(24)``:
192 random bits. Only its SHA-256 is kept, with its first 18 characters (``sk-sluice-`` and
8 of the random part) as the prefix that lists show and ``keys revoke`` accepts. A fast hash
is the right one here: a key is a random secret of 192 bits, not a password a person chose,
so there is nothing for a slow hash to protect against, and the check runs on every request.

Keys are never written anywhere in clear: the CLI and the admin API print a new key once.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sluice.errors import SluiceError
from sluice.sqlite import transaction

_T = TypeVar("_T")

KEY_PREFIX = "sk-sluice-"
#: characters of a key shown in lists: the fixed prefix and 8 of the random part
VISIBLE = len(KEY_PREFIX) + 8
#: roles: a client key starts and follows its own sessions; a viewer reads everything an
#: operator sees; an operator may also Stop and Retry any session and manage keys
ROLES = ("client", "viewer", "operator")


class KeyError_(SluiceError):
    """A key operation that cannot be done (a duplicate name, no such key)."""

    type = "invalid_request"
    status = 400


class KeyNotFound(KeyError_):
    type = "not_found"
    status = 404


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_key(raw: str) -> bool:
    """Shaped like a Sluice key (so a malformed one is told apart from an unknown one)."""
    return (
        raw.startswith(KEY_PREFIX)
        and len(raw) == len(KEY_PREFIX) + 32
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in raw[len(KEY_PREFIX) :])
    )


@dataclass(slots=True)
class ApiKey:
    """One key's record: never the key itself."""

    name: str
    prefix: str
    hash: str
    role: str = "client"
    #: whose sessions the key's sessions are; keys of one tenant see each other's sessions
    #: (rotation: a new key of the same tenant, then revoke the old one)
    tenant: str = ""
    #: model globs (``sim/*``, ``openai/gpt-4o*``) the key may use; empty: every model
    models: list[str] = field(default_factory=list)
    #: US dollars; new requests are refused once the key's spend reaches it
    budget: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_streams: int | None = None
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    #: the sum of the final costs of the key's sessions whose price was known
    spend: float = 0.0
    #: sessions of the key that ended at an unknown price (their cost is not in ``spend``)
    unpriced_sessions: int = 0

    def __post_init__(self) -> None:
        if not self.tenant:
            self.tenant = self.name

    def status(self, now: float | None = None) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and (now or time.time()) >= self.expires_at:
            return "expired"
        return "active"

    def public(self) -> dict[str, Any]:
        """What lists and the admin API show: everything but the hash."""
        out = asdict(self)
        del out["hash"]
        out["status"] = self.status()
        out["spend_complete"] = self.unpriced_sessions == 0
        return out


def make_key(
    name: str,
    role: str = "client",
    *,
    tenant: str = "",
    models: list[str] | None = None,
    budget: float | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    max_streams: int | None = None,
    expires_in: float | None = None,
) -> tuple[str, ApiKey]:
    """A new key and its record (the key is returned once, and kept nowhere)."""
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise KeyError_("a key's name is 1 to 64 letters, digits, '-', '_' or '.'")
    if role not in ROLES:
        raise KeyError_(f"role must be one of {', '.join(ROLES)}")
    for label, value in (("budget", budget), ("expires", expires_in)):
        if value is not None and not value > 0:
            raise KeyError_(f"{label} must be a positive number")
    for label, count in (("rpm", rpm), ("tpm", tpm), ("max-streams", max_streams)):
        if count is not None and count < 1:
            raise KeyError_(f"{label} must be a positive integer")
    raw = new_key()
    now = time.time()
    record = ApiKey(
        name=name,
        prefix=raw[:VISIBLE],
        hash=digest(raw),
        role=role,
        tenant=tenant,
        models=[m for m in (models or []) if m],
        budget=budget,
        rpm=rpm,
        tpm=tpm,
        max_streams=max_streams,
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
    )
    return raw, record


class KeyStore(Protocol):
    """Where key records live. Keys change rarely and every call is one short statement: the
    gateway reads them all into memory and polls ``version`` once a second."""

    async def open(self) -> None: ...

    async def add(self, key: ApiKey) -> None:
        """Insert a new key; a name already used (by any key, revoked ones included) is
        refused with ``KeyError_``."""

    async def all(self) -> list[ApiKey]: ...

    async def revoke(self, name_or_prefix: str, at: float) -> ApiKey:
        """Revoke the key of that name, or the one key whose prefix starts so."""

    async def add_spend(self, amounts: dict[str, tuple[float, int]]) -> None:
        """Add (cost, unpriced sessions) to each named key's totals, in one transaction."""

    async def spends(self) -> dict[str, tuple[float, int]]:
        """Every key's stored (spend, unpriced sessions): what every process has added."""

    async def version(self) -> int:
        """A number that changes whenever a key is added or revoked."""

    async def secret(self) -> bytes:
        """The installation's secret for signing login cookies, made on first use."""

    async def close(self) -> None: ...


def _find(keys: list[ApiKey], name_or_prefix: str) -> ApiKey:
    by_name = [k for k in keys if k.name == name_or_prefix]
    if by_name:
        return by_name[0]
    if len(name_or_prefix) >= len(KEY_PREFIX) + 4:
        matches = [k for k in keys if k.prefix.startswith(name_or_prefix[:VISIBLE])]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise KeyError_(f"{len(matches)} keys start with {name_or_prefix!r}; give the name")
    raise KeyNotFound(f"no key named {name_or_prefix!r} or with that prefix")


class MemoryKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}
        self._version = 0
        self._secret = secrets.token_bytes(32)

    async def open(self) -> None:
        return None

    async def add(self, key: ApiKey) -> None:
        if key.name in self._keys:
            raise KeyError_(f"a key named {key.name!r} exists already")
        self._keys[key.name] = key
        self._version += 1

    async def all(self) -> list[ApiKey]:
        return [ApiKey(**asdict(k)) for k in self._keys.values()]

    async def revoke(self, name_or_prefix: str, at: float) -> ApiKey:
        key = _find(list(self._keys.values()), name_or_prefix)
        if key.revoked_at is None:
            key.revoked_at = at
            self._version += 1
        return ApiKey(**asdict(key))

    async def add_spend(self, amounts: dict[str, tuple[float, int]]) -> None:
        for name, (cost, unpriced) in amounts.items():
            key = self._keys.get(name)
            if key is not None:
                key.spend += cost
                key.unpriced_sessions += unpriced

    async def spends(self) -> dict[str, tuple[float, int]]:
        return {k.name: (k.spend, k.unpriced_sessions) for k in self._keys.values()}

    async def version(self) -> int:
        return self._version

    async def secret(self) -> bytes:
        return self._secret

    async def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    tenant TEXT NOT NULL,
    models TEXT NOT NULL,
    budget REAL,
    rpm INTEGER,
    tpm INTEGER,
    max_streams INTEGER,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    spend REAL NOT NULL DEFAULT 0,
    unpriced_sessions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sluice_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
INSERT OR IGNORE INTO sluice_meta (name, value) VALUES ('keys_version', 0);
"""

_COLUMNS = (
    "name, prefix, hash, role, tenant, models, budget, rpm, tpm, max_streams, created_at, "
    "expires_at, revoked_at, spend, unpriced_sessions"
)


class SQLiteKeyStore:
    """Keys in the session store's SQLite file (table ``api_keys``), shared by the gateway and
    ``sluice keys``. Each call is one short statement, run on the store's own thread, so a
    writer elsewhere holding the file's lock never stops the event loop."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-keys")

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.IntegrityError as exc:
            raise KeyError_(f"a key of that name exists already ({exc})") from exc
        except (sqlite3.Error, OSError) as exc:
            raise KeyError_(f"the key store at {self.path!r} failed: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def open(self) -> None:
        await self._run(self._connect)

    async def add(self, key: ApiKey) -> None:
        def add() -> None:
            db = self._connect()
            row = asdict(key)
            row["models"] = ",".join(key.models)
            with transaction(db):
                db.execute(
                    f"INSERT INTO api_keys ({_COLUMNS}) VALUES ("
                    + ", ".join(f":{c.strip()}" for c in _COLUMNS.split(","))
                    + ")",
                    row,
                )
                _bump(db)

        try:
            await self._run(add)
        except KeyError_ as exc:
            if "exists already" in exc.message:
                raise KeyError_(f"a key named {key.name!r} exists already") from exc
            raise

    def _all(self) -> list[ApiKey]:
        rows = self._connect().execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at")
        return [key_of(row) for row in rows]

    async def all(self) -> list[ApiKey]:
        return await self._run(self._all)

    async def revoke(self, name_or_prefix: str, at: float) -> ApiKey:
        def revoke() -> ApiKey:
            key = _find(self._all(), name_or_prefix)
            if key.revoked_at is None:
                key.revoked_at = at
                db = self._connect()
                with transaction(db):
                    db.execute("UPDATE api_keys SET revoked_at = ? WHERE name = ?", (at, key.name))
                    _bump(db)
            return key

        return await self._run(revoke)

    async def add_spend(self, amounts: dict[str, tuple[float, int]]) -> None:
        def add_spend() -> None:
            db = self._connect()
            with transaction(db):
                db.executemany(
                    "UPDATE api_keys SET spend = spend + ?, "
                    "unpriced_sessions = unpriced_sessions + ? WHERE name = ?",
                    [(cost, unpriced, name) for name, (cost, unpriced) in amounts.items()],
                )

        await self._run(add_spend)

    async def spends(self) -> dict[str, tuple[float, int]]:
        def spends() -> dict[str, tuple[float, int]]:
            rows = self._connect().execute("SELECT name, spend, unpriced_sessions FROM api_keys")
            return {name: (float(spend), int(unpriced)) for name, spend, unpriced in rows}

        return await self._run(spends)

    async def version(self) -> int:
        def version() -> int:
            row = (
                self._connect()
                .execute("SELECT value FROM sluice_meta WHERE name = 'keys_version'")
                .fetchone()
            )
            return int(row[0]) if row else 0

        return await self._run(version)

    async def secret(self) -> bytes:
        """Made once per installation (so login cookies survive a restart, and every process
        of an installation accepts them), and kept in the database beside the keys."""

        def secret() -> bytes:
            db = self._connect()
            with transaction(db):
                db.execute(
                    "INSERT OR IGNORE INTO sluice_meta (name, value) VALUES ('cookie_secret', ?)",
                    (secrets.token_bytes(32),),
                )
                row = db.execute(
                    "SELECT value FROM sluice_meta WHERE name = 'cookie_secret'"
                ).fetchone()
            return bytes(row[0])

        return await self._run(secret)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close)
        self._executor.shutdown(wait=True)


def _bump(db: sqlite3.Connection) -> None:
    db.execute("UPDATE sluice_meta SET value = value + 1 WHERE name = 'keys_version'")


def key_of(row: Sequence[Any]) -> ApiKey:
    """A key from a row of the ``api_keys`` columns in their order (its models a list, or
    the comma-joined text SQLite keeps)."""
    (
        name,
        prefix,
        hash_,
        role,
        tenant,
        models,
        budget,
        rpm,
        tpm,
        max_streams,
        created_at,
        expires_at,
        revoked_at,
        spend,
        unpriced,
    ) = row
    return ApiKey(
        name=name,
        prefix=prefix,
        hash=hash_,
        role=role,
        tenant=tenant,
        models=list(models) if isinstance(models, list) else [m for m in models.split(",") if m],
        budget=budget,
        rpm=rpm,
        tpm=tpm,
        max_streams=max_streams,
        created_at=created_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
        spend=spend,
        unpriced_sessions=unpriced,
    )


def open_key_store(store_url: str) -> KeyStore:
    """The key store beside the session store: the same SQLite file or Postgres database,
    or memory."""
    if store_url == "memory://":
        return MemoryKeyStore()
    if store_url.startswith("sqlite:///"):
        return SQLiteKeyStore(store_url[len("sqlite:///") :] or ":memory:")
    if store_url.startswith(("postgresql://", "postgres://")):
        from sluice.access.pgkeys import PostgresKeyStore

        return PostgresKeyStore(store_url)
    raise KeyError_(f"unsupported store url {store_url!r} for keys")
