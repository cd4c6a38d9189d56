"""What an open stream keeps: its first record write is let go once stored."""

from __future__ import annotations

from sluice.gateway.streaming import SessionStream
from sluice.upstream import UpstreamResponse, _Connection
from sluice.wheel import wheel
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


async def test_an_open_stream_holds_no_empty_list_and_no_bound_method_for_its_deadlines(
    gateway: GatewayUnderTest,
) -> None:
    """Tens of thousands of streams may be open: what most of them never use is a shared
    ``()``, not a list each, and their deadlines on the wheel are functions of their class
    called with their owner, not a bound method each (made anew at every deadline)."""
    session_id = await start(gateway, headers=LONG)
    await tokens_when_running(gateway, session_id)
    session = gateway.gateway.sessions.live[session_id]
    async with gateway.http.stream("GET", f"/api/sessions/{session_id}/events") as response:
        async for _ in response.aiter_bytes():
            break  # the relay is following the log
        upstream = session._upstream
        assert isinstance(upstream, UpstreamResponse) and upstream._conn is not None
        assert (session.disconnects, session.attempt_errors, session.log._waiters) == ((), (), ())
        assert (upstream._buffered, upstream._conn._header_list) == ((), ())
        owners = {
            type(owner): callback
            for entries in wheel()._slots.values()
            for owner, callback in entries.items()
        }
        assert owners[SessionStream] is SessionStream._watch
        assert owners[_Connection] is _Connection._check_stall
    session.cancel("test_done")
    record = await gateway.final_record(session_id)
    assert [d["reason"] for d in record["disconnects"]] == ["client_disconnected"]
