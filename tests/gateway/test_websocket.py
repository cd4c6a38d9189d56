"""The native API over a WebSocket, against the real gateway and simulator on loopback: every
event in order, flow control that holds the sender (and, through it, the provider), resume from
the last acknowledged id, and the refusals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from sluice.config import Settings
from sluice.gateway.app import create_app
from sluice.gateway.server import RunningServer
from sluice.gateway.websocket import (
    MAX_WINDOW,
    ClientProtocolError,
    FlowWindow,
    decode_ack,
    session_socket_endpoint,
)
from sluice.sse import SSEDecoder
from tests import conftest
from tests.conftest import GatewayUnderTest

WS_PATH = "/api/sessions/{session_id}/ws"
#: a long, fast answer: far more events than the session's buffer (256), and more bytes than
#: the loopback socket buffers between provider and gateway hold
FLOOD = {"x-sim-output-tokens": "100000", "x-sim-token-rate": "5000"}
#: long enough to be still streaming when a client comes back
STEADY = {"x-sim-output-tokens": "400", "x-sim-token-rate": "200"}

#: the client's receive queue holds a whole window (and a few pings and ``end``): with a
#: smaller one (the library's default is 16) it stops reading its socket, and then the closing
#: handshake after ``end`` waits out its close timeout (python-websockets issue #1555)
QUEUE = MAX_WINDOW + 16

Frame = dict[str, Any]


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[GatewayUnderTest]:
    """The real app (the WebSocket route added only if the app does not have it yet)."""
    app = create_app(settings)
    if not any(getattr(route, "path", None) == WS_PATH for route in app.router.routes):
        endpoint = session_socket_endpoint(app.state.gateway)
        app.router.routes.append(WebSocketRoute(WS_PATH, endpoint))
    async with (
        RunningServer(app) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        yield GatewayUnderTest(server.url, app.state.gateway, http)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayUnderTest]:
    async with serving(conftest.test_settings(tmp_path)) as gw:
        yield gw


@pytest.fixture
def gateway_with(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[GatewayUnderTest]]:
    def make(**streams: Any) -> AbstractAsyncContextManager[GatewayUnderTest]:
        settings = conftest.test_settings(tmp_path)
        for key, value in streams.items():
            setattr(settings.streams, key, value)
        return serving(settings)

    return make


# -- a client ---------------------------------------------------------------------------------


async def start(gw: GatewayUnderTest, headers: dict[str, str] | None = None, **body: Any) -> str:
    response = await gw.http.post(
        "/api/sessions",
        json={"model": "sim/support", "prompt": "Where is my order?", **body},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def ws_url(gw: GatewayUnderTest, session_id: str, **query: int) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"ws{gw.url.removeprefix('http')}/api/sessions/{session_id}/ws?{params}"


def open_socket(gw: GatewayUnderTest, session_id: str, **query: int) -> connect:
    return connect(ws_url(gw, session_id, **query), max_queue=QUEUE)


async def receive(ws: ClientConnection, within: float = 10.0) -> Frame:
    """The next frame other than a ping (a bounded wait: a hang fails the test)."""
    while True:
        frame: Frame = orjson.loads(await asyncio.wait_for(ws.recv(), within))
        if frame.get("type") != "ping":
            return frame


async def ack(ws: ClientConnection, seq: int) -> None:
    await ws.send(orjson.dumps({"ack": seq}).decode())


async def read_to_end(ws: ClientConnection) -> tuple[list[Frame], Frame]:
    """Every event, each acknowledged as it arrives, then ``end``; the server then closes."""
    events = []
    while True:
        frame = await receive(ws, within=30)
        if frame["type"] == "end":
            break
        events.append(frame)
        with contextlib.suppress(ConnectionClosedOK):  # the server may be done already:
            await ack(ws, frame["id"])  # it sends ``end`` without waiting for the last acks
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1000
    return events, frame


async def read_all(gw: GatewayUnderTest, session_id: str, **query: int) -> list[Frame]:
    async with open_socket(gw, session_id, **query) as ws:
        events, _ = await read_to_end(ws)
    return events


async def refusal(url: str) -> tuple[Frame, int | None, str | None]:
    """The error frame and the close code and reason of a refused connection."""
    async with connect(url, max_queue=QUEUE) as ws:
        frame = await receive(ws)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    return frame, ws.close_code, ws.close_reason


def text_of(events: list[Frame]) -> str:
    return "".join(e["data"]["text"] for e in events if e["type"] == "text")


# -- every event ------------------------------------------------------------------------------


async def test_every_event_arrives_in_order_and_the_socket_ends_with_the_record_summary(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway)
    async with open_socket(gateway, session_id) as ws:
        events, end = await read_to_end(ws)
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["status", "start"] and kinds[-1] == "finish" and "usage" in kinds
    assert text_of(events) == (await gateway.sim_request(session_id))["text"]
    assert end["data"]["id"] == session_id and end["data"]["state"] == "complete"
    assert end["data"]["usage"]["source"] == "provider"
    record = await gateway.final_record(session_id)
    assert record["disconnects"] == []  # read to the end: detached as done, not as a leaver


async def test_the_socket_carries_the_same_events_as_the_sse_stream(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway, model="sim/tools")
    events = await read_all(gateway, session_id)
    decoder, decoder_events = SSEDecoder(), []
    async with gateway.http.stream("GET", f"/api/sessions/{session_id}/events") as response:
        async for chunk in response.aiter_bytes():
            decoder_events.extend(decoder.decode(chunk))
    sse = [(int(e.id), e.event, orjson.loads(e.data)) for e in decoder_events if e.event != "end"]
    assert [(e["id"], e["type"], e["data"]) for e in events] == sse
    assert any(e["type"] == "tool_call.done" for e in events)


# -- flow control -----------------------------------------------------------------------------


async def test_flow_control_holds_the_sender_and_through_it_the_provider(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway, headers=FLOOD, disconnect_policy="detach")
    session = gateway.gateway.sessions.get(session_id)
    assert session is not None
    async with open_socket(gateway, session_id, window=4) as ws:
        held = [await receive(ws) for _ in range(4)]
        with pytest.raises(TimeoutError):  # nothing more while nothing is acknowledged
            await receive(ws, within=0.5)
        blocked = await provider_blocked(gateway, session_id)
        # the provider's writes block far before the end of its answer: the gateway stopped
        # reading it, holding no more than its buffer of events for this lagging client
        assert blocked["tokens_produced"] < 100000 / 2
        assert session.state == "streaming"
        assert len(session.log) <= 4 * session.settings.buffer_events
        with pytest.raises(TimeoutError):
            await receive(ws, within=0.05)

        # acknowledging lets the flow go on, up to the provider
        events = list(held)
        for event in held:
            await ack(ws, event["id"])
        held_at = blocked["tokens_produced"]
        while (await gateway.sim_request(session_id))["tokens_produced"] <= held_at:
            for _ in range(100):
                events.append(await receive(ws))
                await ack(ws, events[-1]["id"])
            assert len(events) < 100000
        assert (await gateway.http.post(f"/api/sessions/{session_id}/cancel")).status_code == 200
        more, end = await read_to_end(ws)
    ids = [e["id"] for e in events + more]
    assert ids == list(range(1, len(ids) + 1))  # every event, once, in order
    assert end["data"]["state"] == "cancelled"


async def provider_blocked(gw: GatewayUnderTest, session_id: str) -> dict[str, Any]:
    """The simulator's record once a write of this answer is blocked (a bounded wait)."""
    for _ in range(300):
        sent = await gw.sim_request(session_id)
        if sent["write_blocked_now"] and sent["write_blocked_count"] > 0:
            return sent
        assert sent["state"] == "running", "the provider finished: nothing held it"
        await asyncio.sleep(0.1)
    raise AssertionError("the provider was never held")


async def test_each_acknowledgement_lets_as_many_events_through(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway, headers=FLOOD)
    async with open_socket(gateway, session_id, window=4) as ws:
        first = [await receive(ws) for _ in range(4)]
        await ack(ws, first[1]["id"])  # two of four acknowledged: room for two more
        second = [await receive(ws) for _ in range(2)]
        with pytest.raises(TimeoutError):
            await receive(ws, within=0.5)
        await ack(ws, first[1]["id"])  # an ack repeated frees nothing
        with pytest.raises(TimeoutError):
            await receive(ws, within=0.3)
        await ack(ws, second[-1]["id"])
        third = [await receive(ws) for _ in range(4)]
        with pytest.raises(TimeoutError):
            await receive(ws, within=0.3)
    ids = [e["id"] for e in first + second + third]
    assert ids == sorted(set(ids))


async def test_an_idle_socket_gets_pings_and_pings_do_not_count_against_the_window(
    gateway_with: Any,
) -> None:
    async with gateway_with(heartbeat_interval=0.2) as gw:
        session_id = await start(gw, headers=FLOOD)
        async with open_socket(gw, session_id, window=1) as ws:
            first = await receive(ws)
            frames = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(3)]
            assert frames == [{"type": "ping"}] * 3  # the window is full: only pings
            await ack(ws, first["id"])
            assert (await receive(ws))["id"] > first["id"]


# -- resume -----------------------------------------------------------------------------------


async def read_and_leave(
    gw: GatewayUnderTest, session_id: str, acked: int, unacked: int
) -> tuple[list[Frame], list[Frame]]:
    """Read and acknowledge ``acked`` events, read ``unacked`` more without acknowledging
    them, then disconnect."""
    async with open_socket(gw, session_id, window=16) as ws:
        done = []
        for _ in range(acked):
            done.append(await receive(ws))
            await ack(ws, done[-1]["id"])
        pending = [await receive(ws) for _ in range(unacked)]
    assert all(e["type"] != "end" for e in done + pending)
    return done, pending


async def test_resuming_a_streaming_session_after_the_last_ack_has_no_gap_and_no_duplicate(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway, headers=STEADY, disconnect_policy="detach")
    acked, pending = await read_and_leave(gateway, session_id, acked=10, unacked=4)
    last = acked[-1]["id"]
    session = gateway.gateway.sessions.get(session_id)
    assert session is not None and session.state == "streaming"
    rest = await read_all(gateway, session_id, after=last)
    assert rest[: len(pending)] == pending  # sent but never acknowledged: sent again
    whole = await read_all(gateway, session_id)  # one uninterrupted run, now it is over
    assert acked + rest == whole
    assert text_of(whole) == (await gateway.sim_request(session_id))["text"]
    record = await gateway.final_record(session_id)
    assert record["state"] == "complete"
    # the reader followed the acknowledged position, not the sent one
    assert [(d["reason"], d["position"]) for d in record["disconnects"]] == [
        ("client_disconnected", last)
    ]


async def test_resuming_a_finished_session_gives_exactly_the_later_events(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway)
    whole = await read_all(gateway, session_id)
    cut = whole[len(whole) // 2]["id"]
    assert await read_all(gateway, session_id, after=cut) == [e for e in whole if e["id"] > cut]
    assert await read_all(gateway, session_id, after=whole[-1]["id"]) == []


async def test_a_session_only_in_the_store_replays_under_the_same_window(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway)
    whole = await read_all(gateway, session_id)
    gateway.gateway.sessions.recent.clear()  # forget it in memory: only the store has it now
    assert await read_all(gateway, session_id, window=3) == whole
    cut = whole[len(whole) // 2]["id"]
    assert await read_all(gateway, session_id, after=cut) == [e for e in whole if e["id"] > cut]
    async with open_socket(gateway, session_id, window=2) as ws:
        held = [await receive(ws) for _ in range(2)]
        with pytest.raises(TimeoutError):
            await receive(ws, within=0.3)
        await ack(ws, held[-1]["id"])
        more, end = await read_to_end(ws)
    assert held + more == whole
    assert end["data"]["id"] == session_id and end["data"]["state"] == "complete"


# -- leaving ----------------------------------------------------------------------------------


async def test_a_client_that_disconnects_cancels_its_session_under_the_cancel_policy(
    gateway: GatewayUnderTest,
) -> None:
    session_id = await start(gateway, headers=STEADY)
    await read_and_leave(gateway, session_id, acked=3, unacked=0)
    record = await gateway.final_record(session_id)
    assert record["state"] == "cancelled" and record["cancel_reason"] == "client_disconnected"
    assert record["disconnects"][0]["reason"] == "client_disconnected"


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["window=0", "window=1025", "window=many", "after=-1"])
async def test_a_bad_window_or_after_is_refused_with_1008(
    gateway: GatewayUnderTest, query: str
) -> None:
    session_id = await start(gateway)
    url = ws_url(gateway, session_id).removesuffix("?") + "?" + query
    frame, code, reason = await refusal(url)
    assert code == 1008 and reason
    assert frame["error"]["type"] == "invalid_request" and frame["error"]["message"] == reason


async def test_an_unknown_session_is_refused_with_4404(gateway: GatewayUnderTest) -> None:
    frame, code, _ = await refusal(ws_url(gateway, "op-000000000000"))
    assert code == 4404
    assert frame["error"]["type"] == "unknown_session"
    assert "op-000000000000" in frame["error"]["message"]


@pytest.mark.parametrize("message", ['{"ack": "3"}', "ack 3", '{"ack": 1000000}', '{"ok": 1}'])
async def test_a_message_that_is_not_a_valid_ack_closes_with_1008(
    gateway: GatewayUnderTest, message: str
) -> None:
    session_id = await start(gateway, headers=STEADY, disconnect_policy="detach")
    async with open_socket(gateway, session_id, window=2) as ws:
        await receive(ws)
        await ws.send(message)
        frames = []
        with pytest.raises(ConnectionClosed):
            while True:
                frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))
    assert ws.close_code == 1008
    assert frames[-1]["error"]["type"] == "client_protocol_error"
    for _ in range(500):
        if disconnects := (await gateway.record(session_id))["disconnects"]:
            break
        await asyncio.sleep(0.02)
    assert [d["reason"] for d in disconnects] == ["client_protocol_error"]
    await gateway.http.post(f"/api/sessions/{session_id}/cancel")


# -- the parts without I/O --------------------------------------------------------------------


def test_the_window_counts_events_sent_and_not_acknowledged() -> None:
    flow = FlowWindow(3, after=10)
    for seq in (12, 13, 15):  # 11 and 14 are log entries without an event: never sent
        flow.sent(seq)
    assert flow.room == 0 and flow.settled(scanned=15) == 11
    flow.ack(13)
    assert flow.room == 2 and flow.settled(scanned=15) == 14
    flow.ack(12)  # behind an earlier ack: changes nothing
    assert flow.room == 2
    flow.ack(15)
    assert flow.room == 3 and flow.settled(scanned=17) == 17
    with pytest.raises(ClientProtocolError):
        flow.ack(16)


@pytest.mark.parametrize(("message", "seq"), [('{"ack":0}', 0), (b'{"ack": 42, "note": "x"}', 42)])
def test_an_ack_names_an_event_id(message: str | bytes, seq: int) -> None:
    assert decode_ack(message) == seq


@pytest.mark.parametrize("message", ['{"ack": true}', '{"ack": -1}', '{"ack": 1.0}', "[1]", ""])
def test_anything_else_is_not_an_ack(message: str) -> None:
    with pytest.raises(ClientProtocolError):
        decode_ack(message)
