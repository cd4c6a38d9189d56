"""Real provider streams (recorded by the official SDKs' test suites) replayed through the
gateway: a tiny upstream serves each file, and the gateway's relay and record are checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI
from openai.lib.streaming.chat import ChatCompletionStreamState

from sluice.config import ProviderConfig
from sluice.gateway.server import RunningServer
from tests.conftest import GatewayUnderTest, read_request_body

RECORDED = Path(__file__).parent.parent / "fixtures" / "recorded"


def transcript(name: str) -> bytes:
    data = (RECORDED / name).read_bytes()
    # The Anthropic files end without the blank line that ends every event on the wire.
    return data if data.endswith(b"\n\n") else data.rstrip(b"\n") + b"\n\n"


class RecordedUpstream:
    """An ASGI upstream that answers every POST with the file named in the request's model."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = await read_request_body(receive)
        payload = transcript(orjson.loads(body)["model"])
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture
async def recorded(
    gateway: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GatewayUnderTest]:
    monkeypatch.setenv("RECORDED_TEST_KEY", "test-key-not-secret")
    async with RunningServer(RecordedUpstream()) as upstream:  # type: ignore[arg-type]
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
