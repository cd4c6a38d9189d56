"""``sluice db upgrade``: bring the schema of the store that ``--config`` names to its head.

Every store also does it when it opens (under an advisory lock on Postgres), so this command
is for a deployment that migrates before it starts the gateways, or checks the revision.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from sluice import postgres
from sluice.access.keys import KeyError_, open_key_store
from sluice.config import Settings
from sluice.session.store import StoreError, open_store


def run_db(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.store_url
    if url == "memory://":
        print("sluice: the memory store has no schema; set [store] url", file=sys.stderr)
        return 2
    return asyncio.run(_upgrade(url))


async def _upgrade(url: str) -> int:
    if postgres.is_postgres_url(url):
        failures: tuple[type[BaseException], ...] = (*postgres.errors(), ValueError)
        try:
            before, after = await postgres.migrate(url)
        except failures as exc:
            print(
                f"sluice: the schema of {postgres.redact(url)} was not upgraded: {exc}",
                file=sys.stderr,
            )
            return 1
        change = f"upgraded from {before or 'an empty database'}" if before != after else "current"
        print(f"schema at revision {after} ({change}) in {postgres.redact(url)}")
        return 0
    try:  # SQLite: each store makes or migrates its tables when it opens
        store, keys = open_store(url), open_key_store(url)
        await store.open()
        await store.close()
        await keys.open()
        await keys.close()
    except (StoreError, KeyError_) as exc:
        print(f"sluice: {exc.message}", file=sys.stderr)
        return 1
    print(f"schema current in {url}")
    return 0
