"""The gateway's HTTP/1.1 protocol (uvicorn's, lighter per connection) still speaks HTTP/1.1
as uvicorn does: pipelined requests, ``Expect: 100-continue``, lowercase header names, header
values as uvicorn's own protocol gives them. (``test_uvicorn_newest.py`` runs this file again
against the newest uvicorn release the project allows.)"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from sluice.gateway import server as server_module
from sluice.gateway.server import RunningServer
from sluice.gateway.siblings import CONNECTION_HOOK
from sluice.session.flag import Flag
from tests.conftest import GatewayUnderTest, read_request_body, start


def _echo_app(scopes: list[dict[str, Any]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        scopes.append(scope)
        body = await read_request_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode() + b":" + body})

    return app


async def _exchange(port: int, data: bytes, until: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.readuntil(until), 10)
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    scopes: list[dict[str, Any]] = []
    async with RunningServer(_echo_app(scopes)) as server:
        raw = b"".join(
            b"POST /%d HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n%d" % (n, n)
            for n in range(3)
        )
        answer = await _exchange(server.port, raw, b"/2:2")
    assert answer.index(b"/0:0") < answer.index(b"/1:1") < answer.index(b"/2:2")
    assert [s["path"] for s in scopes] == ["/0", "/1", "/2"]


async def test_expect_100_continue_is_honoured() -> None:
    async with RunningServer(_echo_app([])) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\ncontent-length: 2\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"ok")
        assert b"/e:ok" in await asyncio.wait_for(reader.readuntil(b"/e:ok"), 10)
        writer.close()


#: a request whose headers a parser may read in more than one way
_ODD_HEADERS = (
    b"GET /odd HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7 \t\r\nX-Lead:   lead\r\n"
    b"X-Inner: a  b\t c\r\nX-Empty:\r\nX-Blank:  \t \r\nX-MiXeD-Case: Value\r\n\r\n"
)


async def test_header_values_are_uvicorns_own() -> None:
    """The same request gives the application the same headers under uvicorn's own protocol
    and under the gateway's: names lowercased, leading and (from uvicorn 0.55) trailing
    whitespace out of the value, the inner kept."""
    seen: dict[str, list[tuple[bytes, bytes]]] = {}
    for http in ("httptools", server_module._Protocol):
        scopes: list[dict[str, Any]] = []
        async with RunningServer(_echo_app(scopes), http=http) as server:
            await _exchange(server.port, _ODD_HEADERS, b"/odd:")
        [scope] = scopes
        seen["uvicorn" if http == "httptools" else "gateway"] = list(scope["headers"])
    assert seen["gateway"] == seen["uvicorn"]
    headers = dict(seen["gateway"])
    assert headers[b"last-event-id"] == b"7" and headers[b"x-lead"] == b"lead"
    assert headers[b"x-inner"] == b"a  b\t c" and headers[b"x-mixed-case"] == b"Value"
    assert headers[b"x-empty"] == headers[b"x-blank"] == b""


def _dechunk(answer: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response."""
    rest = answer.partition(b"\r\n\r\n")[2]
    body = b""
    while True:
        size, _, rest = rest.partition(b"\r\n")
        length = int(size, 16)
        if not length:
            return body
        body, rest = body + rest[:length], rest[length + 2 :]


async def test_a_last_event_id_with_trailing_whitespace_resumes(gateway: GatewayUnderTest) -> None:
    """``Last-Event-ID: 3`` followed by whitespace resumes after event 3, as uvicorn reads the
    header, rather than being refused as an id that is not a number."""
    session_id = await start(gateway)
    await gateway.final_record(session_id)
    after_3 = await gateway.http.get(f"/api/sessions/{session_id}/events?after=3")
    assert after_3.status_code == 200
    host = gateway.url.removeprefix("http://")
    request = (
        b"GET /api/sessions/%b/events HTTP/1.1\r\nHost: %b\r\nConnection: close\r\n"
        b"Last-Event-ID: 3 \t\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", int(host.rsplit(":", 1)[1]))
    try:
        writer.write(request % (session_id.encode(), host.encode()))
        answer = await asyncio.wait_for(reader.read(), 10)  # to the end: the server closes
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    body = _dechunk(answer)
    first_frame = body.split(b"\n\n", 1)[0]
    assert body == after_3.content and b"\nid: 4\n" in first_frame


async def test_header_names_and_the_asgi_entry_are_shared_between_requests() -> None:
    scopes: list[dict[str, Any]] = []
    async with RunningServer(_echo_app(scopes)) as server:
        for n in range(2):
            request = b"GET /%d HTTP/1.1\r\nHost: x\r\nX-Trace-Id: %d\r\n\r\n" % (n, n)
            await _exchange(server.port, request, b"/%d:" % n)
    first, second = (dict(s["headers"]) for s in scopes)
    assert first[b"x-trace-id"] == b"0" and second[b"x-trace-id"] == b"1"
    [name_1] = [k for k, _ in scopes[0]["headers"] if k == b"x-trace-id"]
    [name_2] = [k for k, _ in scopes[1]["headers"] if k == b"x-trace-id"]
    assert name_1 is name_2
    assert scopes[0]["asgi"] is scopes[1]["asgi"] and scopes[0]["asgi"]["version"] == "3.0"


async def test_a_connection_holds_no_asyncio_event() -> None:
    """The two per-connection events are ``Flag``s: an ``asyncio.Event`` allocates a deque
    of waiters up front, some 700 bytes for every open stream."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"held", "more_body": True})
        await asyncio.sleep(30)

    async with RunningServer(app) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"held"), 10)
        [protocol] = list(server.server.server_state.connections)
        assert type(protocol.flow._is_writable_event) is Flag
        assert type(protocol.cycle.message_event) is Flag
        assert not isinstance(protocol.pipeline, deque)
        writer.close()


async def test_the_hook_writes_a_chunk_directly_only_into_a_started_chunked_body() -> None:
    answers: list[tuple[str, bool]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        hook = scope[CONNECTION_HOOK]
        answers.append(("before the start", hook.write(b"early")))
        if scope["path"] == "/length":
            headers = [(b"content-length", b"4")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            answers.append(("framed by length", hook.write(b"late")))
            await send({"type": "http.response.body", "body": b"body"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        answers.append(("chunked", hook.write(b"direct")))
        await send({"type": "http.response.body", "body": b"+asgi", "more_body": False})
        answers.append(("after the end", hook.write(b"late")))

    async with RunningServer(app, direct_writes=True) as server:
        chunked = await _exchange(server.port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", b"0\r\n\r\n")
        by_length = await _exchange(
            server.port, b"GET /length HTTP/1.1\r\nhost: x\r\n\r\n", b"\r\n\r\nbody"
        )
    assert chunked.endswith(b"\r\n\r\n6\r\ndirect\r\n5\r\n+asgi\r\n0\r\n\r\n")
    assert by_length.endswith(b"content-length: 4\r\n\r\nbody")
    assert answers == [
        ("before the start", False),
        ("chunked", True),
        ("after the end", False),
        ("before the start", False),
        ("framed by length", False),
    ]


async def test_the_hook_writes_nothing_while_the_clients_socket_is_full() -> None:
    written: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        [protocol] = list(server.server.server_state.connections)
        protocol.pause_writing()  # as the transport does past its high-water mark
        written.append(scope[CONNECTION_HOOK].write(b"held back"))
        protocol.resume_writing()
        written.append(scope[CONNECTION_HOOK].write(b"sent"))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with RunningServer(app, direct_writes=True) as server:
        answer = await _exchange(server.port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", b"0\r\n\r\n")
    assert written == [False, True]
    assert b"held back" not in answer and b"4\r\nsent\r\n" in answer


class _Recorder:
    """A cycle's transport, with what is written to it recorded, write by write."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def test_a_held_head_goes_out_in_one_write_with_the_first_piece_of_the_body() -> None:
    """``hold_head``: the status line and headers wait for the first piece of the body, be it
    written by the hook or sent the ASGI way, and go out with it; released with no piece,
    the head goes out alone. Either way nothing is lost or reordered."""
    writes: dict[str, list[bytes]] = {}
    before_the_body: dict[str, list[bytes]] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, hook = scope["path"], scope[CONNECTION_HOOK]
        cycle = hook.cycle()
        cycle.transport = recorder = _Recorder(cycle.transport)
        writes[path] = recorder.writes
        hook.hold_head()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        before_the_body[path] = list(recorder.writes)
        if path == "/hook":
            assert hook.write(b"first")
        elif path == "/asgi":
            await send({"type": "http.response.body", "body": b"asgi", "more_body": True})
        hook.release_head()
        hook.release_head()
        assert hook.write(b"next")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with RunningServer(app, direct_writes=True) as server:
        answers = {
            path: await _exchange(
                server.port, b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n" % path.encode(), b"0\r\n\r\n"
            )
            for path in ("/hook", "/asgi", "/alone")
        }
    assert before_the_body == {"/hook": [], "/asgi": [], "/alone": []}
    for path, first in (("/hook", b"5\r\nfirst\r\n"), ("/asgi", b"4\r\nasgi\r\n")):
        head, piece, end = writes[path]
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n" + first)
        assert (piece, end) == (b"4\r\nnext\r\n", b"0\r\n\r\n")
        assert answers[path].endswith(b"\r\n\r\n" + first + b"4\r\nnext\r\n0\r\n\r\n")
    head, piece, end = writes["/alone"]
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"chunked\r\n\r\n")
    assert (piece, end) == (b"4\r\nnext\r\n", b"0\r\n\r\n")


async def test_a_head_held_for_a_client_that_left_is_dropped() -> None:
    released = asyncio.get_running_loop().create_future()
    left = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        hook = scope[CONNECTION_HOOK]
        hook.callback = left.set
        hook.hold_head()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await left.wait()
        assert not hook.write(b"late")  # the client left: the caller's send drops it
        hook.release_head()
        released.set_result(type(hook.cycle().transport).__name__)

    async with RunningServer(app, direct_writes=True) as server:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        writer.close()
        assert await asyncio.wait_for(released, 10) != "_Held"


async def test_a_stream_of_a_logged_session_starts_with_head_and_backlog_in_one_write(
    gateway: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay holds its response's head for what the session's log already holds: a client
    that follows a session gets the head and the backlog in one write."""
    first_writes: list[bytes] = []
    release = server_module._Held.release

    def spy(held: server_module._Held) -> Any:
        first_writes.append(b"".join(held._data))
        return release(held)

    monkeypatch.setattr(server_module._Held, "release", spy)
    session_id = await start(gateway)
    await gateway.final_record(session_id)
    response = await gateway.http.get(f"/api/sessions/{session_id}/events")
    assert response.status_code == 200
    [first] = first_writes
    head, _, body = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"text/event-stream" in head
    assert b"event: text" in body and body.count(b"event: text") == response.text.count(
        "event: text"
    )
