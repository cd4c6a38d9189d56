"""A Retry that arrives while the failed attempt's end is still being stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import running_gateway, start
from tests.conftest import test_settings as settings_in


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def test_a_retry_during_the_failed_attempts_store_write_counts_that_attempt_once(
    pg_url: str, tmp_path: Path
) -> None:
    # The failed attempt's final record waits for its write while the Retry arrives (the
    # window a fast client hits by chance, held open here): its row is locked in Postgres by
    # another connection until the Retry is in.
    settings = settings_in(tmp_path)
    settings.store_url = pg_url
    # The first attempt fails after 5 tokens; the second streams for about 1.5 s.
    headers = {"x-sim-fail-after": "5", "x-sim-fail-count": "1", "x-sim-token-rate": "40"}
    async with running_gateway(settings) as gateway:
        session_id = await start(gateway, "sim/error-mid-stream", headers=headers)
        session = gateway.gateway.sessions.require(session_id)
        locker = await asyncpg.connect(pg_url)
        try:
            async with asyncio.timeout(30):
                # the first record is written a moment after the start: then its row is locked
                while not await locker.fetchval(  # noqa: ASYNC110
                    "SELECT count(*) FROM sessions WHERE id = $1", session_id
                ):
                    await asyncio.sleep(0.01)
            lock = locker.transaction()
            await lock.start()
            await locker.execute("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE", session_id)
            async with asyncio.timeout(30):
                # final, its record on its way to the store (a state has no event to wait on)
                while session.state != "errored":  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            retry = asyncio.ensure_future(gateway.http.post(f"/api/sessions/{session_id}/retry"))
            await asyncio.sleep(0.2)  # the Retry waits for the stored end
            assert not retry.done()
            assert not session.settled.is_set() and not session.finished.is_set()
            await lock.rollback()
        finally:
            await locker.close()
        response = await retry
        assert response.status_code == 202, response.text
        assert response.json()["attempt"] == 2
        record = await gateway.final_record(session_id)
        assert record["attempts"] == 2 and record["state"] == "complete"
        assert [e["type"] for e in record["attempt_errors"]] == ["upstream_error"]
        metrics = (await gateway.http.get("/metrics")).text
    sessions = samples(metrics, "sluice_sessions_total")
    assert all(dict(labels)["state"] != "streaming" for labels in sessions), sessions
    states = {dict(k)["state"]: v for k, v in sessions.items()}
    assert states == {"errored": 1.0, "complete": 1.0}, sessions
    errors = samples(metrics, "sluice_session_errors_total")
    assert sum(errors.values()) == 1, errors
