"""The official google-genai SDK, pointed at the gateway with only its base URL changed: streamed
text, function calls and thinking, whole responses; each accumulated result equal to what the
simulator sent, whether the upstream speaks Gemini (passthrough) or another format (translation).
And the other way round: an OpenAI client through a Gemini upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from openai import AsyncOpenAI

from sluice.config import ProviderConfig
from tests.conftest import GatewayUnderTest, sent_tool_calls

PROMPT = "My invoice shows a double charge. What do I do?"
TOOLS = [
    types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="lookup_order",
                description="Look up an order",
                parameters_json_schema={
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                },
            ),
            types.FunctionDeclaration(name="list_open_tickets", description="Open tickets"),
        ]
    )
]
CALLS = types.GenerateContentConfig(
    tools=TOOLS, automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
)
THINKING = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
#: the simulator reached as Gemini (passthrough), as Chat and as Messages (translation)
UPSTREAMS = ["sim", "simchat", "simmsg"]


def client(gw: GatewayUnderTest, api_version: str | None = "v1beta", **headers: str) -> Any:
    """A google-genai client (its ``aio`` side) with only the base URL changed; with
    ``api_version=None`` the SDK's default (``v1`` when it is given a base URL)."""
    options = types.HttpOptions(
        base_url=gw.url, headers=headers, retry_options=types.HttpRetryOptions(attempts=1)
    )
    if api_version is not None:
        options.api_version = api_version
    return genai.Client(api_key="fake-gemini-key", http_options=options).aio


async def stream(
    gw: GatewayUnderTest,
    model: str,
    config: Any = None,
    api_version: str | None = "v1beta",
    **headers: str,
) -> tuple[str, list[Any]]:
    """The session id and the chunks of one ``generate_content_stream``."""
    chunks: list[Any] = []
    async for chunk in await client(gw, api_version, **headers).models.generate_content_stream(
        model=model, contents=PROMPT, config=config
    ):
        chunks.append(chunk)
    assert chunks and chunks[0].sdk_http_response is not None
    headers = chunks[0].sdk_http_response.headers or {}
    return headers["x-sluice-session-id"], chunks


def parts(chunks: list[Any]) -> list[types.Part]:
    return [
        part
        for chunk in chunks
        if chunk.candidates
        for part in (chunk.candidates[0].content.parts or [])
    ]


@pytest.mark.parametrize("api_version", ["v1beta", None], ids=["v1beta", "sdk-default-v1"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_streamed_text_equals_what_the_simulator_sent(
    gateway: GatewayUnderTest, upstream: str, api_version: str | None
) -> None:
    session_id, chunks = await stream(gateway, f"{upstream}/support", api_version=api_version)
    sent = await gateway.sim_request(session_id)
    text = "".join(part.text or "" for part in parts(chunks) if not part.thought)
    assert text == sent["text"] != ""
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    usage = chunks[-1].usage_metadata
    assert usage.prompt_token_count == sent["input_tokens"]
    assert usage.candidates_token_count == sent["tokens_produced"]
    record = await gateway.final_record(session_id)
    assert record["state"] == "complete" and record["text"] == sent["text"]
    assert record["passthrough"] is (upstream == "sim")


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_function_calls_and_their_arguments_equal_what_the_simulator_sent(
    gateway: GatewayUnderTest, upstream: str
) -> None:
    session_id, chunks = await stream(gateway, f"{upstream}/parallel-tools", CALLS)
    sent = await gateway.sim_request(session_id)
    calls = [part.function_call for part in parts(chunks) if part.function_call is not None]
    assert [(call.name, call.args) for call in calls] == sent_tool_calls(sent)
    assert len(calls) == 2
    record = await gateway.final_record(session_id)
    assert [(c["name"], c["arguments"]) for c in record["tool_calls"]] == sent_tool_calls(sent)


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_thinking_streams_as_thought_parts_with_its_token_count(
    gateway: GatewayUnderTest, upstream: str
) -> None:
    session_id, chunks = await stream(
        gateway, f"{upstream}/slow-start", THINKING, **{"x-sim-ttft": "0.02"}
    )
    sent = await gateway.sim_request(session_id)
    thoughts = "".join(part.text or "" for part in parts(chunks) if part.thought)
    answer = "".join(part.text or "" for part in parts(chunks) if not part.thought)
    assert thoughts == sent["reasoning"] != ""
    assert answer == sent["text"] != ""
    usage = chunks[-1].usage_metadata
    assert usage.total_token_count == sent["input_tokens"] + sent["tokens_produced"]
    if upstream == "simmsg":
        # Anthropic counts thinking in its output tokens and never apart: nothing to split
        assert usage.candidates_token_count == sent["tokens_produced"]
    else:
        assert usage.thoughts_token_count == sent["reasoning_tokens"]
        assert usage.candidates_token_count == sent["tokens_produced"] - sent["reasoning_tokens"]


async def test_the_signatures_of_a_gemini_upstream_reach_the_client(
    gateway: GatewayUnderTest,
) -> None:
    _, chunks = await stream(gateway, "sim/tools", CALLS)
    [call] = [part for part in parts(chunks) if part.function_call is not None]
    assert call.thought_signature


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_a_whole_response_equals_what_the_simulator_sent(
    gateway: GatewayUnderTest, upstream: str
) -> None:
    response = await client(gateway).models.generate_content(
        model=f"{upstream}/tools", contents=PROMPT, config=CALLS
    )
    session_id = response.sdk_http_response.headers["x-sluice-session-id"]
    sent = await gateway.sim_request(session_id)
    assert response.text == sent["text"]
    assert [(c.name, c.args) for c in response.function_calls or []] == sent_tool_calls(sent)
    assert response.usage_metadata.prompt_token_count == sent["input_tokens"]
    if upstream == "sim":  # a Gemini upstream's signature rides on the call, as Gemini's does
        [call] = [p for p in response.candidates[0].content.parts if p.function_call]
        assert call.thought_signature


async def test_the_model_may_be_escaped_or_prefixed(gateway: GatewayUnderTest) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    for path in (
        "/v1beta/models/sim%2Fsupport:streamGenerateContent?alt=sse",
        "/v1/models/models/sim/support:streamGenerateContent?alt=sse",
        "/v1beta/models/sim%2fsupport:generateContent",
    ):
        response = await gateway.http.post(path, json=body)
        assert response.status_code == 200, (path, response.text)
        session_id = response.headers["x-sluice-session-id"]
        record = await gateway.final_record(session_id)
        assert (record["provider"], record["model"]) == ("sim", "support")


@pytest.mark.parametrize(
    ("path", "body", "status", "word"),
    [
        ("/v1beta/models/nowhere/x:generateContent", None, 404, "NOT_FOUND"),
        ("/v1beta/models/sim/support:generateContent", {"contents": []}, 400, "INVALID_ARGUMENT"),
        ("/v1beta/models/sim/support:countTokens", None, 404, "NOT_FOUND"),
        ("/v1beta/models/sim/rate-limit:generateContent", None, 429, "RESOURCE_EXHAUSTED"),
    ],
)
async def test_errors_are_in_googles_shape(
    gateway: GatewayUnderTest, path: str, body: Any, status: int, word: str
) -> None:
    body = body or {"contents": [{"parts": [{"text": "hi"}]}]}
    response = await gateway.http.post(path, json=body, headers={"x-sim-fail-count": "9"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (status, word) and error["message"]


async def test_the_sdk_raises_its_own_errors(gateway: GatewayUnderTest) -> None:
    with pytest.raises(genai_errors.ClientError) as refused:
        await client(gateway).models.generate_content(model="nowhere/x", contents=PROMPT)
    assert refused.value.code == 404 and refused.value.status == "NOT_FOUND"


# -- the other way round: other clients, a Gemini upstream ----------------------------------


@pytest.fixture
async def gemini_kind(
    gateway: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GatewayUnderTest]:
    """A provider of kind ``gemini`` whose base URL is the embedded simulator's."""
    monkeypatch.setenv("GEMINI_TEST_KEY", "fake-gemini-upstream-key")
    gateway.gateway.settings.providers["gem"] = ProviderConfig(
        "gem", "gemini", base_url=f"{gateway.url}/sim/v1beta", api_key_env="GEMINI_TEST_KEY"
    )
    yield gateway


@pytest.mark.parametrize("model", ["simgem/parallel-tools", "gem/parallel-tools"])
async def test_an_openai_client_through_a_gemini_upstream(
    gemini_kind: GatewayUnderTest, model: str
) -> None:
    openai = AsyncOpenAI(base_url=f"{gemini_kind.url}/v1", api_key="sk-test-unused", max_retries=0)
    raw = await openai.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        tools=[
            {"type": "function", "function": {"name": "lookup_order", "parameters": {}}},
            {"type": "function", "function": {"name": "list_open_tickets"}},
        ],
    )
    completion = raw.parse()
    session_id = raw.headers["x-sluice-session-id"]
    sent = await gemini_kind.sim_request(session_id)
    assert sent["format"] == "gemini"
    calls = completion.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == (  # type: ignore[union-attr]
        sent_tool_calls(sent)
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    assert len({c.id for c in calls}) == 2


async def test_a_gemini_kind_sends_its_key_as_google_asks(gemini_kind: GatewayUnderTest) -> None:
    openai = AsyncOpenAI(base_url=f"{gemini_kind.url}/v1", api_key="sk-test-unused", max_retries=0)
    chunks = []
    raw = await openai.chat.completions.with_raw_response.create(
        model="gem/support", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    async for chunk in raw.parse():
        chunks.append(chunk)
    sent = await gemini_kind.sim_request(raw.headers["x-sluice-session-id"])
    assert sent["auth"] == "x-goog-api-key"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == sent["text"]
