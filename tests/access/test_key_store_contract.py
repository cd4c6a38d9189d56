"""One contract, every key store (memory, SQLite, Postgres); then what the stores that several
processes share (SQLite, Postgres) must do when they are used at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from sluice.access.control import KeyRing
from sluice.access.keys import (
    KeyError_,
    KeyNotFound,
    KeyStore,
    MemoryKeyStore,
    SQLiteKeyStore,
    digest,
    make_key,
    open_key_store,
)
from sluice.access.pgkeys import PostgresKeyStore
from sluice.bench.proc import free_port
from sluice.errors import BudgetExceeded


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    made: KeyStore
    if request.param == "memory":
        made = MemoryKeyStore()
    elif request.param == "sqlite":
        made = SQLiteKeyStore(str(tmp_path / "k.db"))
    else:
        made = PostgresKeyStore(request.getfixturevalue("pg_url"))
    await made.open()
    yield made
    await made.close()


#: a store on the same database as the others the test makes (several processes' view)
StoreMaker = Callable[[], KeyStore]


@pytest.fixture(params=["sqlite", "postgres"])
async def shared(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreMaker]:
    """Makes stores on one database, opened by the test and closed after it."""
    made: list[KeyStore] = []
    url = (
        f"sqlite:///{tmp_path}/k.db"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )

    def make() -> KeyStore:
        made.append(open_key_store(url))
        return made[-1]

    yield make
    for one in made:
        await one.close()


async def test_stores_keep_keys_refuse_duplicate_names_and_revoke_by_name_or_prefix(
    store: KeyStore,
) -> None:
    raw_a, a = make_key("alice", models=["sim/*"], budget=1.5, rpm=10)
    _, b = make_key("bob", "viewer", tenant="team")
    before = await store.version()
    await store.add(a)
    await store.add(b)
    assert await store.version() > before
    with pytest.raises(KeyError_):
        await store.add(make_key("alice")[1])
    listed = {k.name: k for k in await store.all()}
    assert listed["alice"].models == ["sim/*"] and listed["alice"].budget == 1.5
    assert listed["alice"].hash == digest(raw_a)
    assert listed["bob"].tenant == "team" and listed["bob"].role == "viewer"
    version = await store.version()
    revoked = await store.revoke(raw_a[:14], time.time())  # a prefix of the prefix
    assert revoked.name == "alice" and revoked.status() == "revoked"
    assert await store.version() > version
    with pytest.raises(KeyNotFound):
        await store.revoke("nobody", time.time())
    await store.add_spend({"bob": (0.25, 1)})
    bob = {k.name: k for k in await store.all()}["bob"]
    assert bob.spend == 0.25 and bob.unpriced_sessions == 1


async def test_every_field_of_a_key_reads_back_equal(store: KeyStore) -> None:
    _, full = make_key(
        "full",
        "operator",
        tenant="acme",
        models=["sim/*", "openai/gpt-4o*"],
        budget=12.5,
        rpm=60,
        tpm=10_000,
        max_streams=3,
        expires_in=3600,
    )
    _, bare = make_key("bare")
    await store.add(full)
    await store.add(bare)
    assert await store.all() == [full, bare]  # in the order they were made
    assert bare.models == [] and bare.budget is None and bare.tenant == "bare"


async def test_revoking_twice_keeps_the_first_time_and_changes_the_version_once(
    store: KeyStore,
) -> None:
    await store.add(make_key("alice")[1])
    first = await store.revoke("alice", 100.0)
    version = await store.version()
    again = await store.revoke("alice", 200.0)
    assert first.revoked_at == again.revoked_at == 100.0
    assert await store.version() == version


async def test_spend_adds_up_and_ignores_unknown_names(store: KeyStore) -> None:
    await store.add(make_key("a")[1])
    await store.add(make_key("b")[1])
    await store.add_spend({"a": (0.5, 0), "b": (0.25, 2), "ghost": (9.0, 9)})
    await store.add_spend({"a": (0.125, 1)})
    await store.add_spend({})
    spend = {k.name: (k.spend, k.unpriced_sessions) for k in await store.all()}
    assert spend == {"a": (0.625, 1), "b": (0.25, 2)}


async def test_spends_read_every_keys_stored_totals(store: KeyStore) -> None:
    await store.add(make_key("a")[1])
    await store.add(make_key("b")[1])
    await store.add_spend({"a": (0.5, 0), "b": (0.25, 2)})
    assert await store.spends() == {"a": (0.5, 0), "b": (0.25, 2)}


async def test_spend_does_not_change_the_version(store: KeyStore) -> None:
    await store.add(make_key("a")[1])
    version = await store.version()
    await store.add_spend({"a": (1.0, 0)})
    assert await store.version() == version


async def test_the_cookie_secret_is_32_bytes_and_stays_the_same(store: KeyStore) -> None:
    secret = await store.secret()
    assert len(secret) == 32 and await store.secret() == secret


def test_store_urls_choose_the_key_store(tmp_path: Path) -> None:
    assert isinstance(open_key_store("memory://"), MemoryKeyStore)
    assert isinstance(open_key_store(f"sqlite:///{tmp_path}/k.db"), SQLiteKeyStore)
    assert isinstance(open_key_store("postgresql://sluice@db:5432/sluice"), PostgresKeyStore)
    with pytest.raises(KeyError_, match="unsupported"):
        open_key_store("redis://127.0.0.1")


# -- stores that several processes share ---------------------------------------------------------


async def test_a_key_added_by_one_store_is_seen_by_another_through_the_version(
    shared: StoreMaker,
) -> None:
    one, two = shared(), shared()
    await one.open()
    await two.open()
    seen = await two.version()
    await one.add(make_key("alice")[1])
    assert await two.version() != seen
    assert [k.name for k in await two.all()] == ["alice"]
    seen = await two.version()
    await one.revoke("alice", time.time())
    assert await two.version() != seen
    assert [k.status() for k in await two.all()] == ["revoked"]


async def test_spend_added_by_two_stores_at_once_sums(shared: StoreMaker) -> None:
    one, two = shared(), shared()
    await one.open()
    await two.open()
    await one.add(make_key("a")[1])
    await one.add(make_key("b")[1])

    async def spend(store: KeyStore) -> None:
        for _ in range(50):
            await store.add_spend({"a": (0.5, 1), "b": (0.25, 0)})

    await asyncio.gather(spend(one), spend(two), spend(one), spend(two))
    totals = {k.name: (k.spend, k.unpriced_sessions) for k in await two.all()}
    assert totals == {"a": (100.0, 200), "b": (50.0, 0)}


async def test_every_store_gets_the_one_cookie_secret_made_first(shared: StoreMaker) -> None:
    stores = [shared() for _ in range(4)]
    for store in stores:
        await store.open()
    secrets = await asyncio.gather(*(store.secret() for store in stores))
    assert len(set(secrets)) == 1 and len(secrets[0]) == 32


async def test_spend_is_written_on_flush_and_kept_across_a_reload(shared: StoreMaker) -> None:
    ring = KeyRing(shared())
    await ring.open()
    await ring.create("a")
    ring.session_ended("a", 0.5, 1)
    await ring.create("b")  # a reload before the flush keeps the unwritten spend
    key = ring.get("a")
    assert key is not None and key.spend == 0.5
    await ring.flush()
    other = KeyRing(shared())
    await other.open()
    stored = other.get("a")
    assert stored is not None and stored.spend == 0.5


async def test_a_budget_counts_what_other_processes_spent_within_a_poll(
    shared: StoreMaker,
) -> None:
    here, there = KeyRing(shared()), KeyRing(shared())
    await here.open()
    await there.open()
    raw, _ = await here.create("a", budget=1.0)
    await there.tick()  # the new key, seen through the version
    there.session_ended("a", 0.75, 10)
    there.session_ended("a", 0.5, 10)
    await there.tick()  # written
    here.session_ended("a", 0.125, 1)  # counted here, not written yet
    await here.tick()
    key = here.get("a")
    assert key is not None and key.spend == 1.375
    principal = here.authenticate(raw)
    with pytest.raises(BudgetExceeded):
        here.admit(principal, live=0)


async def test_postgres_a_server_that_does_not_answer_is_a_key_error_without_the_password() -> None:
    store = PostgresKeyStore(f"postgresql://sluice:hunter2@127.0.0.1:{free_port()}/sluice")
    with pytest.raises(KeyError_) as caught:
        await store.open()
    assert "hunter2" not in caught.value.message and "127.0.0.1" in caught.value.message
    with pytest.raises(KeyError_, match="not open"):
        await store.all()


async def test_postgres_a_key_store_whose_connections_are_killed_reconnects(pg_url: str) -> None:
    store = PostgresKeyStore(pg_url)
    await store.open()
    try:
        await store.add(make_key("alice")[1])
        killer = await asyncpg.connect(pg_url)
        try:
            await killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await killer.close()
        # the first call may meet the dead connection: a KeyError_, never asyncpg's own
        with contextlib.suppress(KeyError_):
            await store.version()
        await store.add_spend({"alice": (1.0, 0)})
        assert [(k.name, k.spend) for k in await store.all()] == [("alice", 1.0)]
    finally:
        await store.close()
