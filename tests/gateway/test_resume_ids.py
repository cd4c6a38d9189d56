"""Resume ids (``Last-Event-ID``, ``?after=``) on the SSE stream, the WebSocket and the chat
page's stream: anything but a small non-negative integer is refused 400 (1008 on a
WebSocket) in the endpoint's format; an id past the session's log is refused the same way,
live or finished, and nothing is replayed."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from sluice.gateway.resume import MAX_DIGITS, check_within, resume_id
from sluice.sse import SSEDecoder
from tests.conftest import LONG, GatewayUnderTest, start, tokens_when_running
from tests.gateway.test_websocket import open_socket, read_to_end, receive, refusal, ws_url

#: ids no session can have: Python's int-string limit, a negative, a fraction, other digits
MALFORMED = ["9" * 4301, "-1", "1.5", "abc", "0x10", " 3", "\u0663", "1" * (MAX_DIGITS + 1)]


async def _finished(gw: GatewayUnderTest) -> tuple[str, int]:
    """A finished session and the id of its last event."""
    session_id = await start(gw)
    record = await gw.final_record(session_id)
    assert record["state"] == "complete"
    events = record["events"]
    assert isinstance(events, int) and events > 0
    return session_id, events


async def _live(gw: GatewayUnderTest) -> str:
    session_id = await start(gw, headers=LONG)
    await tokens_when_running(gw, session_id)
    return session_id


def _ids(body: bytes) -> list[int]:
    decoder = SSEDecoder()
    events = [*decoder.decode(body), *decoder.flush()]
    return [int(e.id) for e in events if e.id]


# -- the parser -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", MALFORMED)
def test_a_malformed_id_is_a_bad_request(raw: str) -> None:
    with pytest.raises(Exception) as caught:
        resume_id(raw, "after")
    assert getattr(caught.value, "type", None) == "invalid_request"
    assert getattr(caught.value, "status", None) == 400


def test_ids_that_fit_are_taken_and_none_is_zero() -> None:
    assert [resume_id(raw) for raw in (None, "", "0", "007", "9" * MAX_DIGITS)] == [
        0,
        0,
        0,
        7,
        int("9" * MAX_DIGITS),
    ]
    check_within(5, 5, "s")  # the last event itself: nothing to replay, and no error
    check_within(5, None, "s")  # a record without a count is not checked
    with pytest.raises(Exception, match="beyond the last event"):
        check_within(6, 5, "s")


# -- SSE --------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", MALFORMED)
async def test_sse_refuses_a_malformed_last_event_id_with_400(
    gateway: GatewayUnderTest, raw: str
) -> None:
    session_id, _ = await _finished(gateway)
    responses = [
        await gateway.http.get(f"/api/sessions/{session_id}/events", params={"after": raw})
    ]
    if raw.isascii() and raw == raw.strip():  # what a header can carry as it is
        responses.append(
            await gateway.http.get(
                f"/api/sessions/{session_id}/events", headers={"last-event-id": raw}
            )
        )
    for response in responses:
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request"
        assert "Traceback" not in response.text


async def test_sse_refuses_an_id_beyond_a_finished_sessions_log(
    gateway: GatewayUnderTest,
) -> None:
    session_id, last = await _finished(gateway)
    # The end event's id is one past the last event's: beyond that is beyond the log.
    beyond = await gateway.http.get(
        f"/api/sessions/{session_id}/events", headers={"last-event-id": str(last + 2)}
    )
    assert beyond.status_code == 400
    assert beyond.json()["error"]["type"] == "resume_beyond_log"
    at_the_end = await gateway.http.get(
        f"/api/sessions/{session_id}/events", headers={"last-event-id": str(last)}
    )
    assert at_the_end.status_code == 200
    assert _ids(at_the_end.content) == [last + 1]  # nothing it has, only the end
    assert b"event: end" in at_the_end.content
    after_the_end = await gateway.http.get(
        f"/api/sessions/{session_id}/events", headers={"last-event-id": str(last + 1)}
    )
    assert after_the_end.status_code == 200 and after_the_end.content == b""


async def test_sse_refuses_an_id_beyond_a_live_sessions_log_and_replays_nothing(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await _live(gateway)
    session = gateway.gateway.sessions.live[session_id]
    beyond = len(session.log) + 1000
    response = await gateway.http.get(
        f"/api/sessions/{session_id}/events", headers={"last-event-id": str(beyond)}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "resume_beyond_log"
    assert str(beyond) in response.json()["error"]["message"]
    # within the log, the stream resumes after the id given, never at or before it
    after = len(session.log)
    async with gateway.http.stream(
        "GET", f"/api/sessions/{session_id}/events", params={"after": str(after)}
    ) as stream:
        assert stream.status_code == 200
        body = b""
        async for chunk in stream.aiter_bytes():
            body += chunk
            if _ids(body):
                break
    assert min(_ids(body)) == after + 1
    session.cancel("test_done")
    await gateway.final_record(session_id)


# -- WebSocket --------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["9" * 4301, "-1", "abc", "\u0663"])
async def test_the_websocket_refuses_a_malformed_after_with_1008(
    gateway: GatewayUnderTest, raw: str
) -> None:
    session_id, _ = await _finished(gateway)
    url = ws_url(gateway, session_id) + "after=" + raw
    frame, code, reason = await refusal(url)
    assert code == 1008 and reason
    assert frame["error"]["type"] == "invalid_request"


async def test_the_websocket_refuses_an_after_beyond_a_finished_sessions_log(
    gateway: GatewayUnderTest,
) -> None:
    session_id, last = await _finished(gateway)
    frame, code, _ = await refusal(ws_url(gateway, session_id, after=last + 1))
    assert code == 1008
    assert frame["error"]["type"] == "resume_beyond_log"
    async with open_socket(gateway, session_id, after=last) as ws:
        events, end = await read_to_end(ws)
    assert events == [] and end["data"]["state"] == "complete"


async def test_the_websocket_refuses_an_after_beyond_a_live_sessions_log(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await _live(gateway)
    session = gateway.gateway.sessions.live[session_id]
    frame, code, _ = await refusal(ws_url(gateway, session_id, after=len(session.log) + 1000))
    assert code == 1008
    assert frame["error"]["type"] == "resume_beyond_log"
    after = len(session.log)
    async with open_socket(gateway, session_id, after=after) as ws:
        first = await receive(ws)
    assert first["id"] == after + 1
    session.cancel("test_done")
    await gateway.final_record(session_id)


# -- the chat page's stream -------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["9" * 4301, "-1", "abc"])
async def test_the_chat_stream_refuses_a_malformed_id_with_400(
    gateway: GatewayUnderTest, raw: str
) -> None:
    session_id = await _live(gateway)
    response = await gateway.http.get(
        f"/chat/sessions/{session_id}/stream", headers={"last-event-id": raw}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request"
    gateway.gateway.sessions.live[session_id].cancel("test_done")
    await gateway.final_record(session_id)


async def test_the_chat_stream_refuses_an_id_beyond_the_log_live_or_finished(
    gateway: GatewayUnderTest,
) -> None:
    live = await _live(gateway)
    beyond = len(gateway.gateway.sessions.live[live].log) + 1000
    response = await gateway.http.get(
        f"/chat/sessions/{live}/stream", headers={"last-event-id": str(beyond)}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "resume_beyond_log"
    gateway.gateway.sessions.live[live].cancel("test_done")
    await gateway.final_record(live)

    finished, last = await _finished(gateway)
    response = await gateway.http.get(f"/chat/sessions/{finished}/stream?after={last + 1}")
    assert response.status_code == 400
    assert orjson.loads(response.content)["error"]["type"] == "resume_beyond_log"
    replay = await asyncio.wait_for(
        gateway.http.get(f"/chat/sessions/{finished}/stream?after={last}"), 30
    )
    assert replay.status_code == 200 and b"event: end" in replay.content
