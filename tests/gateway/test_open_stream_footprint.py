"""What an open stream keeps: its first record write is let go once stored."""

from __future__ import annotations

from tests.conftest import LONG, GatewayUnderTest, start, tokens_when_running


async def test_a_streaming_session_lets_go_of_its_stored_first_record(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway, headers=LONG)
    await tokens_when_running(gateway, session_id)
    session = gateway.gateway.sessions.live[session_id]
    assert session._stored_initial is None  # the finished task is not held for the stream
    stored = await gateway.gateway.store.get(session_id)
    assert stored is not None and stored["id"] == session_id
    session.cancel("test_done")
    final = await gateway.final_record(session_id)
    assert final["state"] == "cancelled"
