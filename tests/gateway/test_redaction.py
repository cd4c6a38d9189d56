"""Secrets that come back from upstreams: an upstream on loopback echoes the credential it was
sent (and other token-shaped secrets) in an error status before the stream, in an in-stream
error frame, and in a text delta, in each wire format; through each client endpoint, relayed
as it is (passthrough) or translated, the secrets reach none of: the client, the record, the
stored events, the session list, the session's WebSocket, the log, the operations feeds, the
session page and the chat page's stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sluice.config import ProviderConfig
from sluice.gateway.server import RunningServer
from tests import conftest
from tests.conftest import GatewayUnderTest, read_request_body, running_gateway

#: fake keys of each provider's shape (and length), one per provider; the third has no known
#: shape (a proxy's own key)
OPENAI_KEY = "sk-proj-" + "fakeTestKeyNotReal0" * 6
ANTHROPIC_KEY = "sk-ant-api03-" + "fakeTestKeyNotReal1" * 5 + "-QQAA"
PROXY_KEY = "proxy:" + "fakeTestKey0" + ":" + "notReal0"  # plainly fake parts
KEY_ENVS = {
    "SLUICE_TEST_OPENAI_KEY": OPENAI_KEY,
    "SLUICE_TEST_ANTHROPIC_KEY": ANTHROPIC_KEY,
    "SLUICE_TEST_PROXY_KEY": PROXY_KEY,
}

#: token-shaped secrets that are no configured key, echoed beside the credential
AWS_KEY_ID = "AKIA" + "FAKEKEY0EXAMPLE1"  # plainly fake parts, each provider's shape and length
GITHUB_TOKEN = "ghp_" + "FakeTestTokenNotReal" + "0" * 12
GOOGLE_KEY = "AIzaSy" + "FakeTestKeyNotReal-" + "0" * 14
JWT = ".".join(("eyJ" + "FakeTestHeader0", "eyJ" + "FakeTestClaims0", "FakeTestSignatureNotReal0"))
SHAPED = (AWS_KEY_ID, GITHUB_TOKEN, GOOGLE_KEY)

SECRETS = (OPENAI_KEY, ANTHROPIC_KEY, PROXY_KEY, *SHAPED, JWT)


def _fragments(secret: str) -> list[str]:
    """The secret, and a piece of its secret part: a cut-down secret is caught too."""
    body = secret.split(":", 1)[-1] if secret.startswith("proxy:") else secret
    return [secret, body[-14:]]


def assert_clean(blob: str | bytes, where: str) -> None:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    for secret in SECRETS:
        for fragment in _fragments(secret):
            assert fragment not in text, f"{fragment!r} reached {where}: {text[:2000]}"


def echo_text(credential: str) -> str:
    return (
        f"the key you sent, {credential}, is not valid here; we also hold {AWS_KEY_ID}, "
        f"{GITHUB_TOKEN} and {GOOGLE_KEY}; Authorization: Bearer {JWT}"
    )


# -- the upstream ------------------------------------------------------------------------------


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def chat_frames(scenario: str, echo: str) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse(
            {
                "id": "chatcmpl-echo",
                "object": "chat.completion.chunk",
                "created": 1733400000,
                "model": "echo-1",
                "choices": [choice],
            }
        )

    frames = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"})]
    if scenario == "frame":
        error = {"message": echo, "type": "server_error", "param": echo, "code": None}
        return [*frames, _sse({"error": error})]
    return [*frames, chunk({"content": echo}), chunk({}, "stop"), b"data: [DONE]\n\n"]


def messages_frames(scenario: str, echo: str) -> list[bytes]:
    def delta(text: str) -> bytes:
        data = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
        data["delta"]["text"] = text  # type: ignore[index]
        return _sse(data, "content_block_delta")

    message = {
        "id": "msg_echo",
        "type": "message",
        "role": "assistant",
        "model": "echo-1",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    block["content_block"]["text"] = ""  # type: ignore[index]
    frames = [
        _sse({"type": "message_start", "message": message}, "message_start"),
        _sse(block, "content_block_start"),
        delta("Hello"),
    ]
    if scenario == "frame":
        error = {"type": "error", "error": {"type": "overloaded_error", "message": echo}}
        return [*frames, _sse(error, "error")]
    return [
        *frames,
        delta(echo),
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 9},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]


def responses_frames(scenario: str, echo: str) -> list[bytes]:
    def response(status: str, **fields: Any) -> dict[str, Any]:
        return {"id": "resp_echo", "object": "response", "status": status, "model": "echo-1"} | (
            fields
        )

    def delta(text: str) -> bytes:
        kind = "response.output_text.delta"
        return _sse(
            {"type": kind, "output_index": 0, "content_index": 0, "delta": text, "item_id": "m"},
            kind,
        )

    item = {"type": "message", "id": "m", "role": "assistant", "content": []}
    frames = [
        _sse({"type": "response.created", "response": response("in_progress")}, "response.created"),
        _sse(
            {"type": "response.output_item.added", "output_index": 0, "item": item},
            "response.output_item.added",
        ),
        delta("Hello"),
    ]
    if scenario == "frame":
        error = {"type": "error", "code": "server_error", "message": echo, "param": echo}
        return [*frames, _sse(error, "error")]
    usage = {"input_tokens": 5, "output_tokens": 9, "total_tokens": 14}
    done = {"type": "response.completed", "response": response("completed", usage=usage)}
    return [*frames, delta(echo), _sse(done, "response.completed")]


FRAMES: dict[str, Callable[[str, str], list[bytes]]] = {
    "/v1/chat/completions": chat_frames,
    "/v1/messages": messages_frames,
    "/v1/responses": responses_frames,
}


class EchoUpstream:
    """An upstream that tells the credential it received back, as the model names: ``status``
    (503 on a session's first attempt, then 401), ``frame`` (an in-stream error) or ``delta``
    (a text delta), in the wire format of the path it is called on; each frame is its own
    chunk, so a lone delta reaches the relay's shortcut. ``split-frame`` and ``split-delta``
    cut the frame that holds the credential into two chunks, in the middle of it."""

    def __init__(self) -> None:
        self.attempts: dict[bytes, int] = {}
        self.credentials: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = orjson.loads(await read_request_body(receive))
        headers = dict(scope["headers"])
        credential = (headers.get(b"authorization") or headers.get(b"x-api-key") or b"").decode()
        self.credentials.append(credential)
        echo = echo_text(credential)
        scenario = body["model"]
        if scenario == "status-html":
            # A proxy's page, longer than the part of it that becomes the message, the
            # credential across the cut.
            head = (b"<html><body><p>" + b"Unauthorized. " * 40)[:474] + b" Key:"
            page = head + credential.encode() + b" rejected.</p></body></html>"
            start_headers = [(b"content-type", b"text/html")]
            await send({"type": "http.response.start", "status": 401, "headers": start_headers})
            await send({"type": "http.response.body", "body": page})
            return
        if scenario == "status":
            session = headers.get(b"x-sluice-session-id", b"")
            attempt = self.attempts[session] = self.attempts.get(session, 0) + 1
            status = 503 if attempt == 1 else 401
            error = {"type": "authentication_error", "message": echo, "param": credential}
            payload = orjson.dumps({"type": "error", "error": error})
            start_headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": start_headers})
            await send({"type": "http.response.body", "body": payload})
            return
        start_headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": start_headers})
        pieces = []
        path = scope["path"][scope["path"].index("/v1/") :]  # (past a transport's prefix)
        for frame in FRAMES[path](scenario.removeprefix("split-"), echo):
            cut = frame.find(credential.encode()) + len(credential) // 2
            if scenario.startswith("split-") and cut > len(credential) // 2:
                pieces += [frame[:cut], frame[cut:]]  # the secret cut across two chunks
            else:
                pieces.append(frame)
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def echoing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[GatewayUnderTest, EchoUpstream]]:
    for name, value in KEY_ENVS.items():
        monkeypatch.setenv(name, value)
    upstream = EchoUpstream()
    async with RunningServer(upstream) as server:  # type: ignore[arg-type]
        settings = conftest.test_settings(tmp_path)
        settings.streams.retry_base_delay = 0.01
        settings.streams.retry_max_delay = 0.01
        base = f"{server.url}/v1"
        settings.providers.update(
            {
                "echo-chat": ProviderConfig(
                    "echo-chat", "openai", base, "SLUICE_TEST_OPENAI_KEY", wire="chat"
                ),
                "echo-responses": ProviderConfig(
                    "echo-responses", "openai", base, "SLUICE_TEST_PROXY_KEY", wire="responses"
                ),
                "echo-messages": ProviderConfig(
                    "echo-messages", "anthropic", base, "SLUICE_TEST_ANTHROPIC_KEY"
                ),
                **{
                    f"echo-{transport}": ProviderConfig(
                        f"echo-{transport}",
                        "openai",
                        f"{server.url}/{transport}/v1",  # (an origin's providers share one)
                        "SLUICE_TEST_OPENAI_KEY",
                        wire="chat",
                        transport=transport,
                    )
                    for transport in ("httpx", "aiohttp")
                },
            }
        )
        async with running_gateway(settings) as gw:
            yield gw, upstream


# -- the client side ---------------------------------------------------------------------------


async def ask(gw: GatewayUnderTest, endpoint: str, model: str) -> tuple[str, bytes]:
    """One streaming request on the endpoint; the session id and every byte the client got."""
    messages = [{"role": "user", "content": "What is my key?"}]
    if endpoint == "chat":
        path, body = "/v1/chat/completions", {"model": model, "stream": True, "messages": messages}
        headers: dict[str, str] = {}
    elif endpoint == "messages":
        path = "/v1/messages"
        body = {"model": model, "stream": True, "max_tokens": 64, "messages": messages}
        headers = {}
    else:
        path, body = "/api/sessions", {"model": model, "prompt": "What is my key?"}
        headers = {"accept": "text/event-stream"}
    async with gw.http.stream("POST", path, json=body, headers=headers) as response:
        received = await response.aread()
        return response.headers["x-sluice-session-id"], received


class Feed:
    """A WebSocket feed read in the background, every message kept."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.messages: list[str] = []
        self.changed = asyncio.Event()

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.socket:
                self.messages.append(str(message))
                self.changed.set()

    async def until(self, done: Callable[[dict[str, Any]], bool]) -> None:
        """Wait (bounded) for a message that ``done`` accepts."""
        async with asyncio.timeout(30):
            seen = 0
            while True:
                for message in self.messages[seen:]:
                    if done(orjson.loads(message)):
                        return
                seen = len(self.messages)
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def feed(gw: GatewayUnderTest, path: str) -> AsyncIterator[Feed]:
    async with connect(gw.url.replace("http://", "ws://") + path) as socket:
        reader = Feed(socket)
        task = asyncio.ensure_future(reader.read())
        try:
            yield reader
        finally:
            await socket.close()
            await task


def _row_final(session_id: str) -> Callable[[dict[str, Any]], bool]:
    def done(message: dict[str, Any]) -> bool:
        row = (message.get("sessions") or {}).get(session_id) or {}
        return row.get("state") in ("complete", "errored", "cancelled")

    return done


# -- the matrix --------------------------------------------------------------------------------

UPSTREAMS = ("echo-chat", "echo-messages", "echo-responses")
SCENARIOS = ("status", "frame", "delta")
ENDPOINTS = ("chat", "messages", "native")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_an_echoed_secret_reaches_nothing_the_gateway_relays_stores_or_shows(
    echoing: tuple[GatewayUnderTest, EchoUpstream],
    caplog: pytest.LogCaptureFixture,
    upstream: str,
    scenario: str,
    endpoint: str,
) -> None:
    gw, echo = echoing
    caplog.set_level(logging.DEBUG, logger="sluice")
    async with feed(gw, "/ops/feed") as ops:
        session_id, received = await ask(gw, endpoint, f"{upstream}/{scenario}")
        record = await gw.final_record(session_id)
        await ops.until(_row_final(session_id))
    # The upstream did echo the credential, and it reached the client in place, redacted.
    credential = echo.credentials[-1]
    assert OPENAI_KEY in credential or ANTHROPIC_KEY in credential or PROXY_KEY in credential
    passthrough = (upstream, endpoint) in (("echo-chat", "chat"), ("echo-messages", "messages"))
    assert record["passthrough"] is passthrough
    assert b"[redacted]" in received, received
    assert_clean(received, "the client")

    assert record["state"] == ("complete" if scenario == "delta" else "errored")
    if scenario == "status":
        assert [e["type"] for e in record["attempt_errors"]] == ["overloaded"]
        assert "[redacted]" in record["attempt_errors"][0]["message"]
        assert record["error"]["type"] == "upstream_auth"
    if scenario != "delta":
        assert "[redacted]" in record["error"]["message"]
    else:
        assert "[redacted]" in record["text"]
    assert_clean(orjson.dumps(record), "the record")

    events = await gw.http.get(f"/api/sessions/{session_id}/events")
    assert events.status_code == 200
    assert_clean(events.content, "the events")
    stored = await gw.gateway.store.get(session_id)
    assert stored is not None
    assert_clean(orjson.dumps(stored), "the stored record")
    stored_events = await gw.gateway.store.get_events(session_id, 0)
    assert stored_events
    assert_clean(b"".join(data for _seq, _kind, data in stored_events), "the stored events")

    listed = await gw.http.get("/api/sessions")
    assert session_id in listed.text
    assert_clean(listed.content, "the session list")
    ws_url = gw.url.replace("http://", "ws://") + f"/api/sessions/{session_id}/ws"
    async with connect(ws_url) as socket:
        frames = [str(message) async for message in socket]
    assert frames and orjson.loads(frames[-1])["type"] == "end"
    assert_clean("\n".join(frames), "the session's WebSocket")
    chat = await gw.http.get(f"/chat/sessions/{session_id}/stream")
    assert chat.status_code == 200
    assert_clean(chat.content, "the chat page's stream")

    page = await gw.http.get(f"/ops/sessions/{session_id}")
    assert page.status_code == 200
    assert_clean(page.text, "the session page")
    async with feed(gw, f"/ops/sessions/{session_id}/feed") as session_feed:
        await session_feed.until(lambda message: message.get("type") == "final")
    assert_clean("\n".join(session_feed.messages), "the session feed")
    assert_clean("\n".join(ops.messages), "the operations feed")
    assert_clean(caplog.text, "the log")
    if scenario != "delta":
        assert "[redacted]" in caplog.text  # the error was logged, redacted


async def test_a_rotated_key_is_redacted_from_the_next_session_on(
    echoing: tuple[GatewayUnderTest, EchoUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, echo = echoing
    rotated = "proxy:rotated:" + "fakeRotated0"  # no known shape: redacted as a configured key
    monkeypatch.setenv("SLUICE_TEST_PROXY_KEY", rotated)
    session_id, received = await ask(gw, "chat", "echo-responses/frame")
    assert echo.credentials[-1] == f"Bearer {rotated}"
    assert b"[redacted]" in received
    assert rotated.encode() not in received
    record = await gw.final_record(session_id)
    assert "[redacted]" in record["error"]["message"]
    assert rotated not in orjson.dumps(record).decode()


@pytest.mark.parametrize("scenario", ["status", "delta"])
@pytest.mark.parametrize(
    ("path", "model", "extra"),
    [
        ("/v1/chat/completions", "echo-chat", {}),
        ("/v1/messages", "echo-messages", {"max_tokens": 64}),
        ("/v1/chat/completions", "echo-responses", {}),
    ],
)
async def test_an_answer_that_is_not_streamed_is_redacted_too(
    echoing: tuple[GatewayUnderTest, EchoUpstream],
    path: str,
    model: str,
    extra: dict[str, Any],
    scenario: str,
) -> None:
    gw, _ = echoing
    messages = [{"role": "user", "content": "What is my key?"}]
    response = await gw.http.post(
        path, json={"model": f"{model}/{scenario}", "messages": messages, **extra}
    )
    assert response.status_code == (200 if scenario == "delta" else 502), response.text
    assert "[redacted]" in response.text
    assert_clean(response.content, "the client")


@pytest.mark.parametrize("scenario", ["split-frame", "split-delta"])
@pytest.mark.parametrize(
    ("endpoint", "upstream"),
    [("chat", "echo-chat"), ("messages", "echo-messages"), ("native", "echo-responses")],
)
async def test_a_secret_cut_across_two_chunks_of_one_frame_is_redacted(
    echoing: tuple[GatewayUnderTest, EchoUpstream], endpoint: str, upstream: str, scenario: str
) -> None:
    gw, _ = echoing
    session_id, received = await ask(gw, endpoint, f"{upstream}/{scenario}")
    assert b"[redacted]" in received
    assert_clean(received, "the client")
    record = await gw.final_record(session_id)
    assert_clean(orjson.dumps(record), "the record")


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_a_secret_across_the_cut_of_a_long_error_page_is_not_half_shown(
    echoing: tuple[GatewayUnderTest, EchoUpstream], upstream: str
) -> None:
    gw, _ = echoing
    session_id, received = await ask(gw, "native", f"{upstream}/status-html")
    record = await gw.final_record(session_id)
    assert record["error"]["type"] == "upstream_auth"
    assert record["error"]["message"].startswith("<html><body><p>Unauthorized.")
    assert_clean(received, "the client")
    assert_clean(orjson.dumps(record), "the record")
    message = record["error"]["message"]
    assert message.endswith("[redacted]")  # the secret's beginning, before the cut
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, PROXY_KEY):
        assert secret[:10] not in message


@pytest.mark.parametrize("scenario", [*SCENARIOS, "split-delta"])
@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_the_other_transports_are_redacted_alike(
    echoing: tuple[GatewayUnderTest, EchoUpstream], transport: str, scenario: str
) -> None:
    gw, echo = echoing
    session_id, received = await ask(gw, "chat", f"echo-{transport}/{scenario}")
    assert echo.credentials[-1] == f"Bearer {OPENAI_KEY}"
    assert b"[redacted]" in received
    assert_clean(received, "the client")
    assert_clean(orjson.dumps(await gw.final_record(session_id)), "the record")
