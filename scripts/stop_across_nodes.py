"""Stop sent to another node: how long until the owning node closed the upstream and ended the
session (the answer to the Stop waits for the session's end, so it bounds the close).

Three gateway processes on a database of their own and the machine's Redis, as
``tests/distributed/test_nodes.py`` runs them; 20 sessions, each stopped through a node that
does not relay it. Run from the checkout: ``.venv/bin/python scripts/stop_across_nodes.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.distributed.conftest import REDIS_URL, delete_prefix, new_prefix
from tests.distributed.test_nodes import start, streaming, three_nodes
from tests.pgdb import made_database

from sluice import postgres


async def main() -> None:
    async with made_database() as url:
        await postgres.migrate(url)
        prefix = new_prefix()
        try:
            with tempfile.TemporaryDirectory() as workdir:
                await measure(Path(workdir), url, prefix)
        finally:
            await delete_prefix(prefix)


async def measure(workdir: Path, url: str, prefix: str) -> None:
    async with three_nodes(workdir, url, REDIS_URL, prefix) as cluster:
        owner, elsewhere, _ = cluster.nodes
        took: list[float] = []
        for _ in range(20):
            session_id = await start(owner.http)
            await streaming(owner, session_id)
            began = time.perf_counter()
            stopped = await elsewhere.http.post(f"/api/sessions/{session_id}/cancel")
            took.append(time.perf_counter() - began)
            assert stopped.json()["state"] == "cancelled", stopped.text
        took.sort()
        print(
            f"Stop through another node, {len(took)} sessions: "
            f"p50 {statistics.median(took) * 1000:.1f} ms, max {took[-1] * 1000:.1f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
