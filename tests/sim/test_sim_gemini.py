"""The official google-genai SDK, and raw HTTP, against the simulator's Gemini endpoints."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.genai import errors as genai_errors
from google.genai import types

from .helpers import FAST, LOOKUP_ORDER_ARGS, Sim, check_gemini_stream, new_session
from .helpers import gemini_chunks as chunks

PROMPT = "My API key stopped working, what should I do?"
TOOLS = [
    types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="lookup_order",
                description="Look up an order by id.",
                parameters_json_schema={"type": "object"},
            ),
            types.FunctionDeclaration(name="list_open_tickets", description="Open tickets."),
        ]
    )
]
NO_AUTOMATIC_CALLS = types.AutomaticFunctionCallingConfig(disable=True)
STREAM = "/v1beta/models/{model}:streamGenerateContent?alt=sse"
BODY = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}


async def post(sim: Sim, path: str, body: Any = BODY, **headers: str) -> tuple[int, Any, bytes]:
    async with sim.http() as client:
        response = await client.post(path, json=body, headers={**FAST, **headers})
    return response.status_code, response.headers, response.content


@pytest.mark.parametrize("api_version", ["v1beta", None], ids=["v1beta", "sdk-default-v1"])
async def test_streamed_text_and_usage_equal_the_record(sim: Sim, api_version: str | None) -> None:
    session = new_session()
    client = sim.gemini(session, api_version)
    pieces: list[str] = []
    last: Any = None
    async for chunk in await client.models.generate_content_stream(
        model="support", contents=PROMPT
    ):
        pieces.append(chunk.text or "")
        last = chunk

    record = await sim.only_record(session)
    assert record["format"] == "gemini" and record["stream"] is True
    assert record["model"] == "support"
    assert "".join(pieces) == record["text"] != ""
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    usage = last.usage_metadata
    assert usage.prompt_token_count == record["input_tokens"]
    assert usage.candidates_token_count == record["tokens_produced"]
    assert usage.total_token_count == record["input_tokens"] + record["tokens_produced"]
    assert record["auth"] == "x-goog-api-key"


async def test_function_calls_arrive_whole_with_a_signature_on_the_first(sim: Sim) -> None:
    session = new_session()
    client = sim.gemini(session)
    calls: list[types.Part] = []
    config = types.GenerateContentConfig(tools=TOOLS, automatic_function_calling=NO_AUTOMATIC_CALLS)
    async for chunk in await client.models.generate_content_stream(
        model="parallel-tools", contents=PROMPT, config=config
    ):
        parts = chunk.candidates[0].content.parts or [] if chunk.candidates else []
        calls += [part for part in parts if part.function_call is not None]

    record = await sim.only_record(session)
    assert [(p.function_call.name, p.function_call.args) for p in calls] == [  # type: ignore[union-attr]
        ("lookup_order", LOOKUP_ORDER_ARGS),
        ("list_open_tickets", {}),
    ]
    assert [json.loads(c["arguments"] or "{}") for c in record["tool_calls"]] == [
        LOOKUP_ORDER_ARGS,
        {},
    ]
    assert calls[0].thought_signature and not calls[1].thought_signature
    assert record["finish_reason"] == "tool_calls"


async def test_thoughts_stream_only_when_asked_for_and_are_counted_either_way(sim: Sim) -> None:
    for include in (True, False):
        session = new_session()
        client = sim.gemini(session, **{"x-sim-ttft": "0.01"})
        config = types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(include_thoughts=include)
        )
        thoughts: list[str] = []
        answer: list[types.Part] = []
        last: Any = None
        async for chunk in await client.models.generate_content_stream(
            model="slow-start", contents=PROMPT, config=config
        ):
            for part in chunk.candidates[0].content.parts or []:
                (thoughts if part.thought else answer).append(part)  # type: ignore[arg-type]
            last = chunk

        record = await sim.only_record(session)
        assert record["reasoning_tokens"] > 0
        assert last.usage_metadata.thoughts_token_count == record["reasoning_tokens"]
        assert last.usage_metadata.candidates_token_count == (
            record["tokens_produced"] - record["reasoning_tokens"]
        )
        text = "".join(part.text or "" for part in thoughts)  # type: ignore[attr-defined]
        assert text == (record["reasoning"] if include else "")
        assert answer[0].thought_signature  # the answer's first part closes the thinking
        assert "".join(p.text or "" for p in answer) == record["text"]


async def test_non_streaming_generate_content(sim: Sim) -> None:
    session = new_session()
    client = sim.gemini(session)
    config = types.GenerateContentConfig(tools=TOOLS, automatic_function_calling=NO_AUTOMATIC_CALLS)
    response = await client.models.generate_content(model="tools", contents=PROMPT, config=config)

    record = await sim.only_record(session)
    assert record["stream"] is False
    assert response.text == record["text"] == "Let me look up order A-1042 for you.\n\n"
    [call] = response.function_calls or []
    assert (call.name, call.args) == ("lookup_order", LOOKUP_ORDER_ARGS)
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == record["tokens_produced"]


async def test_the_stream_has_the_recorded_streams_shape(sim: Sim) -> None:
    status, headers, body = await post(sim, STREAM.format(model="tools"))
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert b"event:" not in body and b"[DONE]" not in body
    check_gemini_stream(chunks(body))


async def test_either_version_and_a_models_prefixed_model_are_served(sim: Sim) -> None:
    for path in (
        "/v1beta/models/models/support:generateContent",
        "/v1/models/support:generateContent",
    ):
        status, _, body = await post(sim, path)
        assert status == 200, body
        assert json.loads(body)["modelVersion"] == "support"


async def test_a_key_in_the_query_string_is_recorded_as_such(sim: Sim) -> None:
    session = new_session()
    status, _, _ = await post(
        sim,
        "/v1beta/models/support:generateContent?key=fake-key",
        **{"x-sluice-session-id": session},
    )
    assert status == 200
    assert (await sim.only_record(session))["auth"] == "?key="


async def test_an_api_key_sent_as_a_bearer_token_is_refused_as_google_does(sim: Sim) -> None:
    status, _, body = await post(
        sim, STREAM.format(model="support"), authorization="Bearer fake-gemini-key"
    )
    assert status == 401
    assert json.loads(body)["error"]["status"] == "UNAUTHENTICATED"


async def test_a_stream_without_alt_sse_is_refused(sim: Sim) -> None:
    status, _, body = await post(sim, "/v1beta/models/support:streamGenerateContent")
    assert status == 400
    assert "alt=sse" in json.loads(body)["error"]["message"]


@pytest.mark.parametrize(
    ("model", "status", "word"),
    [
        ("rate-limit", 429, "RESOURCE_EXHAUSTED"),
        ("overloaded", 503, "UNAVAILABLE"),
        ("gemini-nonexistent", 404, "NOT_FOUND"),
    ],
)
async def test_errors_before_the_stream_are_google_error_bodies(
    sim: Sim, model: str, status: int, word: str
) -> None:
    code, headers, body = await post(sim, STREAM.format(model=model), **{"x-sim-retry-after": "2"})
    assert code == status
    error = json.loads(body)["error"]
    assert (error["code"], error["status"]) == (status, word) and error["message"]
    if status == 429:
        assert headers["retry-after"] == "2"


async def test_the_sdk_raises_its_errors(sim: Sim) -> None:
    client = sim.gemini(new_session())
    with pytest.raises(genai_errors.ClientError) as refused:
        await client.models.generate_content(model="rate-limit", contents=PROMPT)
    assert refused.value.code == 429
    with pytest.raises(genai_errors.ServerError):
        await client.models.generate_content(model="overloaded", contents=PROMPT)


async def test_an_error_mid_stream_is_an_error_frame_the_sdk_raises(sim: Sim) -> None:
    _, _, body = await post(
        sim, STREAM.format(model="error-mid-stream"), **{"x-sim-fail-after": "3"}
    )
    frames = chunks(body)
    assert len(frames) == 4
    assert frames[-1]["error"]["code"] == 500 and frames[-1]["error"]["status"] == "INTERNAL"

    client = sim.gemini(new_session(), **{"x-sim-fail-after": "3"})
    seen = 0
    with pytest.raises(genai_errors.ServerError):
        async for _ in await client.models.generate_content_stream(
            model="error-mid-stream", contents=PROMPT
        ):
            seen += 1
    assert seen == 3


async def test_truncated_ends_without_a_finish_reason(sim: Sim) -> None:
    session = new_session()
    _, _, body = await post(
        sim,
        STREAM.format(model="truncated"),
        **{"x-sim-fail-after": "4", "x-sluice-session-id": session},
    )
    frames = chunks(body)
    assert len(frames) == 4
    assert not any("finishReason" in f["candidates"][0] for f in frames)
    assert (await sim.only_record(session))["state"] == "failed"


async def test_malformed_sends_one_frame_that_is_not_json_then_goes_on(sim: Sim) -> None:
    _, _, body = await post(sim, STREAM.format(model="malformed"), **{"x-sim-fail-after": "2"})
    events = body.split(b"\r\n\r\n")[:-1]
    broken = []
    for event in events:
        try:
            json.loads(event.removeprefix(b"data: "))
        except json.JSONDecodeError:
            broken.append(event)
    assert len(broken) == 1 and events.index(broken[0]) == 2
    assert json.loads(events[-1].removeprefix(b"data: "))["candidates"][0]["finishReason"] == "STOP"


async def test_max_output_tokens_ends_with_max_tokens_and_no_half_call(sim: Sim) -> None:
    session = new_session()
    body = {**BODY, "generationConfig": {"maxOutputTokens": 14}}
    _, _, raw = await post(
        sim, STREAM.format(model="tools"), body, **{"x-sluice-session-id": session}
    )
    frames = chunks(raw)
    assert frames[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert frames[-1]["usageMetadata"]["candidatesTokenCount"] == 14
    parts = [part for f in frames for part in f["candidates"][0]["content"]["parts"]]
    assert not any("functionCall" in part for part in parts)
    assert (await sim.only_record(session))["finish_reason"] == "length"


async def test_a_bad_max_output_tokens_is_a_400_in_googles_shape(sim: Sim) -> None:
    body = {**BODY, "generationConfig": {"maxOutputTokens": 0}}
    status, _, raw = await post(sim, STREAM.format(model="support"), body)
    assert status == 400
    assert json.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"
