"""Middleware around the gateway's app sees every request and every byte of every stream: the
fast write path (``ConnectionHook.write``) is taken only when the server serves the gateway's
app itself; wrapped, every piece of a stream goes through the middleware's ``send``, in the
context of the request it belongs to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sluice.gateway import server as server_module
from sluice.gateway.app import create_app
from sluice.gateway.server import RunningServer
from sluice.gateway.siblings import CONNECTION_HOOK, ConnectionHook
from tests.conftest import GatewayUnderTest, running_gateway
from tests.conftest import test_settings as settings_for

MSG = [{"role": "user", "content": "Tell me about refunds."}]

#: one streaming request of each kind: (method, path, JSON body, headers)
STREAMS: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "native": (
        "/api/sessions",
        {"model": "sim/support", "prompt": "refunds?"},
        {"accept": "text/event-stream"},
    ),
    "chat": ("/v1/chat/completions", {"model": "sim/support", "messages": MSG, "stream": True}, {}),
    "messages": (
        "/v1/messages",
        {"model": "sim/support", "max_tokens": 256, "messages": MSG, "stream": True},
        {},
    ),
}


class CountingMiddleware:
    """An ordinary ASGI middleware: keeps, per request, the body bytes of its response as
    they pass through ``send``, the number of body messages, and the scope's hook."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.responses: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen: dict[str, Any] = {
            "path": scope["path"],
            "body": bytearray(),
            "messages": 0,
            "hook": scope.get(CONNECTION_HOOK),
        }
        self.responses.append(seen)

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.body":
                seen["body"] += message.get("body", b"")
                seen["messages"] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What the fast write path wrote, piece by piece (the hook's writes that were made)."""
    written: list[bytes] = []
    write = server_module._Hook.write

    def spy(hook: server_module._Hook, body: bytes) -> bool:
        made = write(hook, body)
        if made:
            written.append(body)
        return made

    monkeypatch.setattr(server_module._Hook, "write", spy)
    return written


@asynccontextmanager
async def _gateway(
    tmp_path: Path, wrap: Callable[[Any], Any] | None
) -> AsyncIterator[GatewayUnderTest]:
    async with running_gateway(settings_for(tmp_path), wrap=wrap) as gw:
        yield gw


async def _stream(gw: GatewayUnderTest, kind: str) -> bytes:
    """Stream one response of ``kind``; the body's bytes as the client received them."""
    path, body, headers = STREAMS[kind]
    received = bytearray()
    async with gw.http.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code in (200, 201), await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for piece in response.aiter_raw():
            received += piece
    return bytes(received)


@pytest.mark.parametrize("kind", list(STREAMS))
async def test_a_counting_middleware_sees_every_byte_of_a_stream(
    tmp_path: Path, kind: str, direct_writes: list[bytes]
) -> None:
    counting: CountingMiddleware | None = None

    def wrap(app: Any) -> Any:
        nonlocal counting
        counting = CountingMiddleware(app)
        return counting

    async with _gateway(tmp_path, wrap) as gw:
        received = await _stream(gw, kind)
    assert counting is not None
    [seen] = [r for r in counting.responses if r["path"] == STREAMS[kind][0]]
    assert len(received) > 1000 and bytes(seen["body"]) == received
    assert seen["messages"] > 2  # streamed in pieces, each through send
    hook = seen["hook"]
    assert isinstance(hook, ConnectionHook) and not hook.direct  # it still says who left
    assert direct_writes == []


@pytest.mark.parametrize("kind", list(STREAMS))
async def test_without_middleware_a_stream_takes_the_fast_write_path(
    tmp_path: Path, kind: str, direct_writes: list[bytes]
) -> None:
    async with _gateway(tmp_path, None) as gw:
        received = await _stream(gw, kind)
    assert direct_writes  # pieces went straight to the socket, in order, among the rest
    position = 0
    for piece in direct_writes:  # ``index`` fails for a piece missing or out of order
        position = received.index(piece, position) + len(piece)


def _spans(exporter: InMemorySpanExporter, path: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The server span of the one request to ``path``, and the spans of its sends."""
    finished = exporter.get_finished_spans()
    [server] = [
        span
        for span in finished
        if span.kind is SpanKind.SERVER
        and (span.attributes or {}).get("http.target", (span.attributes or {}).get("url.path"))
        == path
    ]
    assert server.context is not None
    sends = [
        span
        for span in finished
        if span.parent is not None
        and span.parent.span_id == server.context.span_id
        and span.name.endswith(" send")
    ]
    return server, sends


def _traced() -> tuple[InMemorySpanExporter, Callable[[Any], Any]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, lambda app: OpenTelemetryMiddleware(app, tracer_provider=provider)


@pytest.mark.parametrize("kind", list(STREAMS))
async def test_opentelemetry_asgi_records_a_streamed_response(
    tmp_path: Path, kind: str, direct_writes: list[bytes]
) -> None:
    exporter, wrap = _traced()
    async with _gateway(tmp_path, wrap) as gw:
        received = await _stream(gw, kind)
    path = STREAMS[kind][0]
    server, sends = _spans(exporter, path)
    attributes = server.attributes or {}
    assert attributes["http.status_code"] == 200 and attributes["http.method"] == "POST"
    assert server.status.status_code is StatusCode.UNSET  # no error
    events = [(span.attributes or {})["asgi.event.type"] for span in sends]
    assert events[0] == "http.response.start" and events.count("http.response.start") == 1
    bodies = [span for span in sends if span.attributes["asgi.event.type"] == "http.response.body"]
    assert len(bodies) > 2 and len(bodies) == len(events) - 1
    [start] = [span for span in sends if span.attributes["asgi.event.type"] != "http.response.body"]
    assert start.attributes["http.status_code"] == 200
    # the server span ends with the last piece of the body, not before
    assert server.end_time is not None
    assert all(span.end_time is not None and span.end_time <= server.end_time for span in sends)
    assert received and direct_writes == []


async def test_opentelemetry_sends_of_a_followed_session_belong_to_its_own_request(
    tmp_path: Path,
) -> None:
    """A stream that follows a session started by another request: the pieces written as the
    upstream's chunks arrive (in its read callback, started by the other request) are traced
    as sends of the following request, not of the one that started the session."""
    exporter, wrap = _traced()
    async with _gateway(tmp_path, wrap) as gw:
        started = await gw.http.post(
            "/api/sessions",
            json={"model": "sim/support", "prompt": "refunds?"},
            headers={"x-sim-token-rate": "200", "x-sim-output-tokens": "60"},
        )
        assert started.status_code == 201
        session_id = started.json()["id"]
        events_path = f"/api/sessions/{session_id}/events"
        async with gw.http.stream("GET", events_path) as response:
            received = b"".join([piece async for piece in response.aiter_raw()])
    assert received.count(b"event: text") > 10
    server, sends = _spans(exporter, events_path)
    bodies = [span for span in sends if span.attributes["asgi.event.type"] == "http.response.body"]
    assert len(bodies) > 10  # the live pieces, one send each (or a few together)
    starter, starter_sends = _spans(exporter, "/api/sessions")
    assert all(span.name.startswith("POST") for span in starter_sends)
    assert server.context is not None and starter.context is not None
    assert server.context.trace_id != starter.context.trace_id


def test_middleware_cannot_be_added_inside_the_app(tmp_path: Path) -> None:
    """The provider endpoints are dispatched ahead of Starlette's middleware stack: a
    middleware added inside would miss them, so it is refused, naming the way that works."""
    app = create_app(settings_for(tmp_path))
    with pytest.raises(TypeError, match=r"wrap it instead: CountingMiddleware\(app"):
        app.add_middleware(CountingMiddleware)


def test_a_wrapped_app_is_served_with_the_gateways_bounds_and_without_the_fast_path(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    settings.client_limits.max_connections = 77
    app = create_app(settings)
    wrapped = RunningServer(OpenTelemetryMiddleware(CountingMiddleware(app)))
    direct = RunningServer(app)
    try:
        assert wrapped.guard.ceiling == direct.guard.ceiling == 77
        assert wrapped.server.config.http.direct_app is None  # type: ignore[union-attr]
        assert direct.server.config.http.direct_app is app  # type: ignore[union-attr]
    finally:
        for server in (wrapped, direct):
            for sock in server._sockets:
                sock.close()
