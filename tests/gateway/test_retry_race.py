"""A Retry that arrives while the failed attempt's end is still being stored."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GatewayUnderTest, start


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def test_a_retry_during_the_failed_attempts_store_write_counts_that_attempt_once(
    gateway: GatewayUnderTest,
) -> None:
    # A long group-commit window: the failed attempt's record waits for its commit while the
    # Retry arrives (the window a fast client hits by chance, held open here).
    gateway.gateway.store.commit_interval = 1.0  # type: ignore[attr-defined]
    gateway.gateway.store.FINAL_WAIT = 1.0  # type: ignore[attr-defined]
    # The first attempt fails after 5 tokens; the second streams for about 1.5 s.
    headers = {"x-sim-fail-after": "5", "x-sim-fail-count": "1", "x-sim-token-rate": "40"}
    session_id = await start(gateway, "sim/error-mid-stream", headers=headers)
    session = gateway.gateway.sessions.require(session_id)
    async with asyncio.timeout(30):
        # final, its record on its way to the store (a state has no event to wait on)
        while session.state != "errored":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert not session.settled.is_set() and not session.finished.is_set()
    retry = await gateway.http.post(f"/api/sessions/{session_id}/retry")
    assert retry.status_code == 202, retry.text
    assert retry.json()["attempt"] == 2
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
