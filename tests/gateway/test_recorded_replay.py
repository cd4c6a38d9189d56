"""Real provider streams (recorded by the official SDKs' test suites) replayed through the
gateway: a tiny upstream serves each file, and the gateway's relay and record are checked."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from google import genai
from google.genai import types
from openai import AsyncOpenAI
from openai.lib.streaming.chat import ChatCompletionStreamState

from sluice.config import ProviderConfig
from sluice.gateway.server import RunningServer
from tests.conftest import GatewayUnderTest, read_request_body

RECORDED = Path(__file__).parent.parent / "fixtures" / "recorded"


def transcript(name: str) -> bytes:
    data = (RECORDED / name).read_bytes()
    # The Anthropic files end without the blank line that ends every event on the wire.
    return data if data.endswith((b"\n\n", b"\r\n\r\n")) else data.rstrip(b"\n") + b"\n\n"


class RecordedUpstream:
    """An ASGI upstream that answers every POST with the file named in the request's model
    (in the body, or in the path as Gemini's URLs name it); it keeps the last request's
    headers."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = await read_request_body(receive)
        self.headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        model = orjson.loads(body).get("model")
        if model is None:  # Gemini: /v1beta/models/{model}:streamGenerateContent
            model = scope["path"].rpartition("/models/")[2].rpartition(":")[0]
        payload = transcript(model)
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture
async def recorded(
    gateway: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GatewayUnderTest]:
    monkeypatch.setenv("RECORDED_TEST_KEY", "test-key-not-secret")
    served = RecordedUpstream()
    async with RunningServer(served) as upstream:  # type: ignore[arg-type]
        gateway.recorded_upstream = served  # type: ignore[attr-defined]
        providers = gateway.gateway.settings.providers
        providers["rec-openai"] = ProviderConfig(
            "rec-openai", "openai", base_url=f"{upstream.url}/v1", api_key_env="RECORDED_TEST_KEY"
        )
        providers["rec-anthropic"] = ProviderConfig(
            "rec-anthropic",
            "anthropic",
            base_url=f"{upstream.url}/v1",
            api_key_env="RECORDED_TEST_KEY",
        )
        providers["rec-gemini"] = ProviderConfig(
            "rec-gemini",
            "gemini",
            base_url=f"{upstream.url}/v1beta",
            api_key_env="RECORDED_TEST_KEY",
        )
        yield gateway


async def post_stream(gw: GatewayUnderTest, path: str, body: dict[str, Any]) -> tuple[str, bytes]:
    async with gw.http.stream("POST", path, json=body) as response:
        assert response.status_code == 200, await response.aread()
        return response.headers["x-sluice-session-id"], await response.aread()


MSG = [{"role": "user", "content": "weather?"}]


async def test_openai_passthrough_is_byte_identical_but_for_the_unrequested_usage_chunk(
    recorded: GatewayUnderTest,
) -> None:
    name = "openai-chat-parallel-tools.sse"
    original = transcript(name)
    _, asked = await post_stream(
        recorded,
        "/v1/chat/completions",
        {
            "model": f"rec-openai/{name}",
            "messages": MSG,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert asked == original
    session_id, plain = await post_stream(
        recorded,
        "/v1/chat/completions",
        {
            "model": f"rec-openai/{name}",
            "messages": MSG,
            "stream": True,
        },
    )
    frames = original.split(b"\n\n")
    usage_frames = [f for f in frames if b'"choices":[]' in f]
    assert len(usage_frames) == 1
    assert plain == original.replace(usage_frames[0] + b"\n\n", b"")
    record = await recorded.final_record(session_id)
    assert [(c["name"], c["arguments"]) for c in record["tool_calls"]] == [
        ("GetWeatherArgs", {"city": "Edinburgh", "country": "UK", "units": "c"}),
        ("get_stock_price", {"ticker": "AAPL", "exchange": "NASDAQ"}),
    ]
    assert record["finish_reason"] == "tool_calls" and record["usage"]["source"] == "provider"


async def test_anthropic_passthrough_is_byte_identical(recorded: GatewayUnderTest) -> None:
    name = "anthropic-tool-use.sse"
    session_id, body = await post_stream(
        recorded,
        "/v1/messages",
        {
            "model": f"rec-anthropic/{name}",
            "max_tokens": 100,
            "messages": MSG,
            "stream": True,
        },
    )
    assert body == transcript(name)
    record = await recorded.final_record(session_id)
    assert record["text"] == "I'll check the current weather in Paris for you."
    call = record["tool_calls"][0]
    assert (call["name"], call["arguments"], call["status"]) == (
        "get_weather",
        {"location": "Paris"},
        "ok",
    )
    assert record["usage"]["output_tokens"] == 65 and record["usage"]["input_tokens"] == 377


async def test_a_tool_call_cut_by_max_tokens_is_incomplete_with_its_raw_text(
    recorded: GatewayUnderTest,
) -> None:
    name = "anthropic-tool-args-cut-by-max-tokens.sse"
    session_id, _ = await post_stream(
        recorded,
        "/v1/messages",
        {
            "model": f"rec-anthropic/{name}",
            "max_tokens": 100,
            "messages": MSG,
            "stream": True,
        },
    )
    record = await recorded.final_record(session_id)
    call = record["tool_calls"][0]
    assert call["status"] == "incomplete" and call["arguments"] is None
    assert call["raw_arguments"].endswith('\n"Filing taxes')
    assert record["finish_reason"] == "length" and record["state"] == "complete"


async def test_invalid_tool_arguments_are_an_explicit_error_on_that_call(
    recorded: GatewayUnderTest,
) -> None:
    name = "anthropic-tool-args-invalid-json.sse"
    session_id, _ = await post_stream(
        recorded,
        "/v1/messages",
        {
            "model": f"rec-anthropic/{name}",
            "max_tokens": 100,
            "messages": MSG,
            "stream": True,
        },
    )
    record = await recorded.final_record(session_id)
    call = record["tool_calls"][0]
    assert call["status"] == "invalid_json" and call["arguments"] is None
    assert call["raw_arguments"].endswith("celsius}") and call["error"]


async def test_an_anthropic_stream_translated_for_the_openai_sdk(
    recorded: GatewayUnderTest,
) -> None:
    client = AsyncOpenAI(base_url=f"{recorded.url}/v1", api_key="x", max_retries=0)
    state = ChatCompletionStreamState()
    stream = await client.chat.completions.create(
        model="rec-anthropic/anthropic-tool-use.sse",
        messages=MSG,
        stream=True,  # type: ignore[arg-type]
    )
    async for chunk in stream:
        state.handle_chunk(chunk)
    final = state.get_final_completion()
    message = final.choices[0].message
    assert message.content == "I'll check the current weather in Paris for you."
    assert message.tool_calls is not None
    assert orjson.loads(message.tool_calls[0].function.arguments) == {"location": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"


async def test_the_plain_anthropic_recording_streams_its_text(recorded: GatewayUnderTest) -> None:
    session_id, _ = await post_stream(
        recorded,
        "/v1/messages",
        {
            "model": "rec-anthropic/anthropic-basic.sse",
            "max_tokens": 100,
            "messages": MSG,
            "stream": True,
        },
    )
    record = await recorded.final_record(session_id)
    assert record["state"] == "complete" and record["text"]
    assert record["finish_reason"] == "stop"


# -- OpenAI Responses ----------------------------------------------------------------------

RESPONSES_RECORDINGS = sorted(p.name for p in RECORDED.glob("openai-responses-*.sse"))


@pytest.mark.parametrize("name", RESPONSES_RECORDINGS)
async def test_a_recorded_responses_stream_is_relayed_byte_for_byte(
    recorded: GatewayUnderTest, name: str
) -> None:
    session_id, body = await post_stream(
        recorded, "/v1/responses", {"model": f"rec-openai/{name}", "input": "hi", "stream": True}
    )
    assert body == transcript(name)
    record = await recorded.final_record(session_id)
    assert record["passthrough"] is True and record["upstream_wire"] == "responses"
    if name == "openai-responses-failed.sse":
        assert record["state"] == "errored" and record["usage"]["source"] == "estimated"
        assert record["error"]["message"].startswith("You exceeded your current quota")
    else:
        assert record["state"] == "complete" and record["usage"]["source"] == "provider"


@pytest.mark.parametrize(
    "name", [n for n in RESPONSES_RECORDINGS if n != "openai-responses-failed.sse"]
)
async def test_a_recorded_response_retrieved_is_the_providers_own_final_response(
    recorded: GatewayUnderTest, name: str
) -> None:
    client = AsyncOpenAI(base_url=f"{recorded.url}/v1", api_key="x", max_retries=0)
    response = await client.responses.create(model=f"rec-openai/{name}", input="hi")
    *_, last = transcript(name).rstrip(b"\n").split(b"\n\n")
    final = orjson.loads(last.split(b"data: ", 1)[1])["response"]
    assert response.id == final["id"] and response.status == final["status"]
    retrieved = await client.responses.with_raw_response.retrieve(response.id)
    assert retrieved.http_response.json() == final


async def test_recorded_anthropic_and_chat_streams_translated_for_the_responses_sdk(
    recorded: GatewayUnderTest,
) -> None:
    upstream = recorded.gateway.settings.providers["rec-openai"]
    recorded.gateway.settings.providers["rec-chat"] = ProviderConfig(
        "rec-chat",
        "openai",
        base_url=upstream.base_url,
        api_key_env="RECORDED_TEST_KEY",
        wire="chat",
    )
    client = AsyncOpenAI(base_url=f"{recorded.url}/v1", api_key="x", max_retries=0)
    async with client.responses.stream(
        model="rec-anthropic/anthropic-tool-use.sse", input="weather?"
    ) as stream:
        final = await stream.get_final_response()
    assert final.output_text == "I'll check the current weather in Paris for you."
    [call] = [item for item in final.output if item.type == "function_call"]
    assert (call.call_id, call.name) == ("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather")
    assert orjson.loads(call.arguments) == {"location": "Paris"}
    assert final.usage is not None and final.usage.output_tokens == 65
    async with client.responses.stream(
        model="rec-chat/openai-chat-parallel-tools.sse", input="weather?"
    ) as stream:
        final = await stream.get_final_response()
    calls = [(i.name, orjson.loads(i.arguments)) for i in final.output if i.type == "function_call"]
    assert calls == [
        ("GetWeatherArgs", {"city": "Edinburgh", "country": "UK", "units": "c"}),
        ("get_stock_price", {"ticker": "AAPL", "exchange": "NASDAQ"}),
    ]


# -- Gemini --------------------------------------------------------------------------------

GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "weather?"}]}]}
#: per recording: (text, calls, (prompt, candidates, thoughts) tokens), as the README says
GEMINI_OUTCOMES: dict[str, tuple[str | int, list[tuple[str, Any]], tuple[int, int, int]]] = {
    "gemini-text.sse": ("The capital of France is Paris.\n", [], (13, 8, 0)),
    "gemini-function-call.sse": ("", [("get_capital", {"country": "France"})], (52, 5, 0)),
    "gemini-function-call-thought-signature.sse": ("", [("get_country", {})], (29, 10, 202)),
    "gemini-thinking.sse": (1938, [], (34, 469, 787)),
    "gemini-usage-mid-stream.sse": (
        "\n".join(str(n) for n in range(1, 31)),
        [],
        (18, 80, 35),
    ),
}


@pytest.mark.parametrize("name", sorted(GEMINI_OUTCOMES))
async def test_gemini_passthrough_is_byte_identical(recorded: GatewayUnderTest, name: str) -> None:
    session_id, body = await post_stream(
        recorded,
        f"/v1beta/models/rec-gemini/{name}:streamGenerateContent?alt=sse",
        GEMINI_BODY,
    )
    assert body == transcript(name)
    assert recorded.recorded_upstream.headers["x-goog-api-key"] == "test-key-not-secret"  # type: ignore[attr-defined]
    text, calls, (prompt, candidates, thoughts) = GEMINI_OUTCOMES[name]
    record = await recorded.final_record(session_id)
    assert record["state"] == "complete" and record["passthrough"] is True
    assert record["text"] == text if isinstance(text, str) else len(record["text"]) == text
    assert [(c["name"], c["arguments"]) for c in record["tool_calls"]] == calls
    usage = record["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (prompt, candidates + thoughts)
    assert usage["reasoning_tokens"] == thoughts
    assert record["finish_reason"] == ("tool_calls" if calls else "stop")


async def test_a_gemini_signature_reaches_the_google_sdk_unchanged(
    recorded: GatewayUnderTest,
) -> None:
    name = "gemini-function-call-thought-signature.sse"
    first = transcript(name).split(b"\r\n")[0].removeprefix(b"data: ")
    signature = orjson.loads(first)["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    options = types.HttpOptions(base_url=recorded.url, api_version="v1beta")
    client = genai.Client(api_key="fake-gemini-key", http_options=options).aio
    stream = await client.models.generate_content_stream(
        model=f"rec-gemini/{name}", contents="weather?"
    )
    parts = [p async for chunk in stream for p in (chunk.candidates[0].content.parts or [])]
    [call] = [p for p in parts if p.function_call is not None]
    assert call.function_call.name == "get_country"  # type: ignore[union-attr]
    assert call.thought_signature == base64.b64decode(signature)


@pytest.mark.parametrize(
    "name", ["gemini-thinking.sse", "gemini-function-call.sse", "gemini-text.sse"]
)
async def test_a_gemini_stream_translated_for_the_openai_sdk(
    recorded: GatewayUnderTest, name: str
) -> None:
    client = AsyncOpenAI(base_url=f"{recorded.url}/v1", api_key="x", max_retries=0)
    state = ChatCompletionStreamState()
    stream = await client.chat.completions.create(
        model=f"rec-gemini/{name}",
        messages=MSG,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        state.handle_chunk(chunk)
    final = state.get_final_completion()
    text, calls, (prompt, candidates, thoughts) = GEMINI_OUTCOMES[name]
    message = final.choices[0].message
    content = message.content or ""
    assert content == text if isinstance(text, str) else len(content) == text
    got = [(c.function.name, orjson.loads(c.function.arguments)) for c in message.tool_calls or []]
    assert got == calls
    assert final.choices[0].finish_reason == ("tool_calls" if calls else "stop")
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (
        prompt,
        candidates + thoughts,
    )
