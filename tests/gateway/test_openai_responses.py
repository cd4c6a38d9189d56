"""The official openai SDK's Responses API through the gateway, with only base_url changed:
``responses.create`` (streamed and not), ``responses.stream``, tools, reasoning summaries,
``responses.retrieve`` (the stored response, and its stream resumed after a sequence number)
and ``responses.cancel`` (Stop), for every kind of upstream: the simulator's Responses wire
relayed unchanged, and its Chat, Messages and Gemini wires translated. Every stream is held to the
strict order checker, and what the SDK accumulates to what the simulator sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI, BadRequestError, NotFoundError

from tests.conftest import GatewayUnderTest, sent_tool_calls
from tests.wire.responses_order import check, frames_of

#: the simulator relayed unchanged, and translated from Chat, Messages and Gemini
MODELS = ["simresp", "simchat", "simmsg", "simgem"]
PROMPT = "My invoice shows a double charge. What do I do?"
TOOLS: Any = [
    {
        "type": "function",
        "name": "lookup_order",
        "description": "Look up an order",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    }
]
SLOW = {"x-sim-token-rate": "40", "x-sim-output-tokens": "400"}
#: slow enough that a client drops out well before the end, short enough to wait for
PACED = {"x-sim-token-rate": "100", "x-sim-output-tokens": "120"}


def client(gw: GatewayUnderTest) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="sk-test-unused", max_retries=0)


async def post_stream(
    gw: GatewayUnderTest, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[str, bytes]:
    """A streamed ``POST /v1/responses`` over plain HTTP: the session id and the bytes."""
    async with gw.http.stream(
        "POST", "/v1/responses", json={"stream": True, **body}, headers=headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.headers["x-sluice-session-id"], await response.aread()


def texts(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
    )


def plain(response: Any) -> dict[str, Any]:
    """An SDK response as the JSON it came from, without the SDK's own parsed fields."""
    data = response.to_dict()
    data.pop("output_parsed", None)
    for item in data["output"]:
        item.pop("parsed_arguments", None)
        for part in item.get("content", []):
            part.pop("parsed", None)
    return dict(data)


# -- streams ---------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", MODELS)
async def test_a_stream_keeps_the_api_event_order_and_carries_what_the_upstream_sent(
    gateway: GatewayUnderTest, provider: str
) -> None:
    session_id, body = await post_stream(gateway, {"model": f"{provider}/support", "input": PROMPT})
    final = check(frames_of(body))
    assert final is not None and final["status"] == "completed"
    sent = await gateway.sim_request(session_id)
    assert texts(final) == sent["text"]
    assert final["usage"]["output_tokens"] == sent["tokens_produced"]
    assert final["usage"]["input_tokens"] == sent["input_tokens"]
    record = await gateway.final_record(session_id)
    assert record["passthrough"] is (provider == "simresp")
    assert record["endpoint"] == "responses" and record["text"] == sent["text"]
    if provider != "simresp":
        assert final["id"] == f"resp_{session_id}"


@pytest.mark.parametrize("provider", MODELS)
async def test_responses_stream_gets_the_final_response_the_upstream_sent(
    gateway: GatewayUnderTest, provider: str
) -> None:
    async with client(gateway).responses.stream(
        model=f"{provider}/support", input=PROMPT
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    retrieved = await client(gateway).responses.with_raw_response.retrieve(final.id)
    sent = await gateway.sim_request(retrieved.headers["x-sluice-session-id"])
    assert final.output_text == "".join(deltas) == sent["text"]
    assert final.status == "completed" and final.usage is not None
    assert final.usage.output_tokens == sent["tokens_produced"]


@pytest.mark.parametrize("provider", MODELS)
async def test_create_with_stream_true_yields_every_event_numbered(
    gateway: GatewayUnderTest, provider: str
) -> None:
    stream = await client(gateway).responses.create(
        model=f"{provider}/support", input=PROMPT, stream=True
    )
    events = [event async for event in stream]
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text  # type: ignore[union-attr]


@pytest.mark.parametrize("provider", MODELS)
async def test_a_response_without_stream_is_the_whole_response(
    gateway: GatewayUnderTest, provider: str
) -> None:
    raw = await client(gateway).responses.with_raw_response.create(
        model=f"{provider}/support", input=PROMPT, instructions="Be brief."
    )
    response = raw.parse()
    sent = await gateway.sim_request(raw.headers["x-sluice-session-id"])
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == sent["text"]
    assert [item.type for item in response.output] == ["message"]
    assert response.usage is not None and response.usage.output_tokens == sent["tokens_produced"]


@pytest.mark.parametrize("provider", MODELS)
async def test_function_call_arguments_are_what_the_upstream_sent(
    gateway: GatewayUnderTest, provider: str
) -> None:
    async with client(gateway).responses.stream(
        model=f"{provider}/tools", input="Where is order A-1042?", tools=TOOLS
    ) as stream:
        fragments = [
            e.delta async for e in stream if e.type == "response.function_call_arguments.delta"
        ]
        final = await stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    retrieved = await client(gateway).responses.with_raw_response.retrieve(final.id)
    sent = await gateway.sim_request(retrieved.headers["x-sluice-session-id"])
    assert [(c.name, orjson.loads(c.arguments)) for c in calls] == sent_tool_calls(sent)
    assert "".join(fragments) == "".join(c.arguments for c in calls)
    assert all(c.call_id for c in calls)
    assert final.output_text == sent["text"]


@pytest.mark.parametrize("provider", MODELS)
async def test_reasoning_reaches_the_client_as_a_reasoning_summary(
    gateway: GatewayUnderTest, provider: str
) -> None:
    async with client(gateway).responses.stream(
        model=f"{provider}/slow-start",
        input=PROMPT,
        reasoning={"effort": "low", "summary": "auto"},
        extra_headers={"x-sim-ttft": "0.1"},
    ) as stream:
        kinds = [e.type async for e in stream]
        final = await stream.get_final_response()
    retrieved = await client(gateway).responses.with_raw_response.retrieve(final.id)
    sent = await gateway.sim_request(retrieved.headers["x-sluice-session-id"])
    reasoning = [item for item in final.output if item.type == "reasoning"]
    assert "".join(s.text for r in reasoning for s in r.summary) == sent["reasoning"] != ""
    assert "response.reasoning_summary_text.delta" in kinds
    assert kinds.index("response.reasoning_summary_part.added") < kinds.index(
        "response.reasoning_summary_text.delta"
    )
    assert final.output_text == sent["text"]


# -- retrieve, resume, cancel ----------------------------------------------------------------


@pytest.mark.parametrize("provider", MODELS)
async def test_retrieve_returns_the_response_the_stream_ended_with(
    gateway: GatewayUnderTest, provider: str
) -> None:
    session_id, body = await post_stream(gateway, {"model": f"{provider}/tools", "input": "A-1?"})
    streamed = check(frames_of(body))
    assert streamed is not None
    await gateway.final_record(session_id)
    retrieved = await client(gateway).responses.retrieve(streamed["id"])
    assert plain(retrieved) == streamed
    by_session = await client(gateway).responses.retrieve(f"resp_{session_id}")
    assert plain(by_session) == streamed
    gateway.gateway.sessions.recent.clear()  # from the store alone
    stored = plain(await client(gateway).responses.retrieve(f"resp_{session_id}"))
    if provider == "simresp":  # the store keeps the events, not the provider's own frames
        assert (stored["id"], texts(stored), stored["status"]) == (
            streamed["id"],
            texts(streamed),
            "completed",
        )
        assert [i["arguments"] for i in stored["output"] if i["type"] == "function_call"] == [
            i["arguments"] for i in streamed["output"] if i["type"] == "function_call"
        ]
    else:
        assert stored == streamed


async def read_until(body: Any, frames: int) -> tuple[bytes, int]:
    """Read a stream's bytes until ``frames`` whole frames came; (the bytes, the last number)."""
    data = b""
    async for chunk in body:
        data += chunk
        if data.count(b"\n\n") >= frames:
            break
    whole = data[: data.rindex(b"\n\n") + 2]
    return whole, frames_of(whole)[-1][1]["sequence_number"]


@pytest.mark.parametrize("provider", MODELS)
async def test_a_dropped_stream_resumes_after_its_last_sequence_number(
    gateway: GatewayUnderTest, provider: str
) -> None:
    request = {"model": f"{provider}/support", "input": PROMPT, "stream": True, "background": True}
    async with gateway.http.stream(
        "POST", "/v1/responses", json=request, headers=PACED
    ) as response:
        session_id = response.headers["x-sluice-session-id"]
        first, last = await read_until(response.aiter_bytes(), 12)
    # the client went away; the response goes on (background), and the client comes back
    raw = await client(gateway).responses.with_raw_response.retrieve(
        f"resp_{session_id}", stream=True, starting_after=last
    )
    rest = await raw.http_response.aread()
    assert raw.headers["x-sluice-session-id"] == session_id
    final = check(frames_of(first + rest))  # one stream: no gap, no repeat
    assert final is not None and final["status"] == "completed"
    sent = await gateway.sim_request(session_id)
    assert texts(final) == sent["text"] and not sent["client_disconnected"]
    # the SDK's own resume reads the stream again from its start and skips to the number
    async with client(gateway).responses.stream(
        response_id=final["id"], starting_after=last
    ) as resumed:
        numbers = [event.sequence_number async for event in resumed]
        again = await resumed.get_final_response()
    assert numbers[0] == last + 1 and again.output_text == sent["text"]


async def test_a_translated_stream_resumes_from_the_store_with_the_same_frames(
    gateway: GatewayUnderTest,
) -> None:
    session_id, body = await post_stream(gateway, {"model": "simmsg/tools", "input": "A-1?"})
    await gateway.final_record(session_id)
    gateway.gateway.sessions.recent.clear()
    frames = body.split(b"\n\n")[:-1]
    for after in (0, 5, len(frames) - 2):
        response = await gateway.http.get(
            f"/v1/responses/resp_{session_id}", params={"stream": "true", "starting_after": after}
        )
        assert response.status_code == 200
        assert response.content == b"".join(f + b"\n\n" for f in frames[after + 1 :])


async def test_a_relayed_stream_no_longer_in_memory_streams_only_from_its_start(
    gateway: GatewayUnderTest,
) -> None:
    session_id, _ = await post_stream(gateway, {"model": "simresp/support", "input": PROMPT})
    await gateway.final_record(session_id)
    gateway.gateway.sessions.recent.clear()
    path = f"/v1/responses/resp_{session_id}"
    refused = await gateway.http.get(path, params={"stream": "true", "starting_after": 3})
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid_request_error"
    whole = await gateway.http.get(path, params={"stream": "true"})
    final = check(frames_of(whole.content))
    sent = await gateway.sim_request(session_id)
    assert final is not None and texts(final) == sent["text"]


@pytest.mark.parametrize("after", ["100000", "-1", "1.5", "x"])
async def test_a_resume_past_the_end_or_not_a_number_is_refused(
    gateway: GatewayUnderTest, after: str
) -> None:
    session_id, _ = await post_stream(gateway, {"model": "simchat/support", "input": PROMPT})
    response = await gateway.http.get(
        f"/v1/responses/resp_{session_id}", params={"stream": "true", "starting_after": after}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == ("resume_beyond_log" if after == "100000" else "invalid_request")
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("provider", MODELS)
async def test_cancel_closes_the_upstream_and_the_response_ends_cancelled(
    gateway: GatewayUnderTest, provider: str
) -> None:
    request = {"model": f"{provider}/support", "input": PROMPT, "stream": True}
    async with gateway.http.stream("POST", "/v1/responses", json=request, headers=SLOW) as response:
        session_id = response.headers["x-sluice-session-id"]
        body = response.aiter_bytes()
        first, _ = await read_until(body, 8)
        cancelled = await client(gateway).responses.cancel(f"resp_{session_id}")
        rest = b"".join([chunk async for chunk in body])
    assert cancelled.status == "cancelled"
    final = check(frames_of(first + rest))
    assert final is not None
    assert (final["status"], final["id"]) == ("cancelled", cancelled.id)
    record = await gateway.final_record(session_id)
    assert record["state"] == "cancelled" and record["cancel_reason"] == "client_stop"
    await asyncio.sleep(0.2)
    sent = await gateway.sim_request(session_id)
    assert sent["client_disconnected"] is True  # the provider saw its client go
    assert sent["tokens_produced"] < 400
    again = await client(gateway).responses.cancel(cancelled.id)  # over: answered as it is
    assert again.status == "cancelled"


@pytest.mark.parametrize("provider", MODELS)
async def test_a_background_response_answers_at_once_and_is_polled_to_its_end(
    gateway: GatewayUnderTest, provider: str
) -> None:
    openai = client(gateway)
    raw = await openai.responses.with_raw_response.create(
        model=f"{provider}/support",
        input=PROMPT,
        background=True,
        extra_headers={"x-sim-token-rate": "400"},
    )
    started = raw.parse()
    assert started.status == "in_progress"
    for _ in range(200):
        polled = await openai.responses.retrieve(started.id)
        if polled.status != "in_progress":
            break
        await asyncio.sleep(0.05)
    assert polled.status == "completed" and polled.id == started.id
    sent = await gateway.sim_request(raw.headers["x-sluice-session-id"])
    assert polled.output_text == sent["text"]


# -- endings and refusals --------------------------------------------------------------------


@pytest.mark.parametrize("provider", MODELS)
async def test_an_upstream_error_mid_stream_ends_failed_once(
    gateway: GatewayUnderTest, provider: str
) -> None:
    _, body = await post_stream(
        gateway,
        {"model": f"{provider}/error-mid-stream", "input": PROMPT},
        {"x-sim-fail-after": "5"},
    )
    frames = frames_of(body)
    final = check(frames)
    assert final is not None and final["status"] == "failed" and final["error"]
    assert [name for name, _ in frames].count("error") == 1


@pytest.mark.parametrize("scenario", ["truncated", "reset"])
async def test_a_relayed_stream_that_breaks_ends_in_the_providers_numbering(
    gateway: GatewayUnderTest, scenario: str
) -> None:
    _, body = await post_stream(
        gateway, {"model": f"simresp/{scenario}", "input": PROMPT}, {"x-sim-fail-after": "5"}
    )
    frames = frames_of(body)
    final = check(frames)  # numbering continues, the response id is the provider's
    assert final is not None and final["status"] == "failed"
    assert final["id"] == frames[0][1]["response"]["id"]
    assert frames[-2][0] == "error"


async def test_what_a_chat_provider_cannot_do_is_refused_in_openais_shape(
    gateway: GatewayUnderTest,
) -> None:
    openai = client(gateway)
    with pytest.raises(BadRequestError) as refused:
        await openai.responses.create(
            model="simchat/support", input=PROMPT, tools=[{"type": "web_search"}]
        )
    assert "tools[0]: tools of type 'web_search'" in refused.value.message
    with pytest.raises(BadRequestError, match="previous_response_id"):
        await openai.responses.create(
            model="simmsg/support", input=PROMPT, previous_response_id="resp_x"
        )
    with pytest.raises(NotFoundError):
        await openai.responses.create(model="nope/x", input=PROMPT)


async def test_an_unknown_response_is_not_found_in_openais_shape(
    gateway: GatewayUnderTest,
) -> None:
    for method, path in (
        ("GET", "/v1/responses/resp_op-000000000000"),
        ("GET", "/v1/responses/resp_abc?stream=true"),
        ("POST", "/v1/responses/resp_op-000000000000/cancel"),
    ):
        response = await gateway.http.request(method, path)
        assert response.status_code == 404, path
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert response.json()["error"]["code"] == "unknown_session"


async def test_a_chat_session_is_no_response(gateway: GatewayUnderTest) -> None:
    chat = await gateway.http.post(
        "/v1/chat/completions",
        json={"model": "sim/support", "messages": [{"role": "user", "content": "hi"}]},
    )
    session_id = chat.headers["x-sluice-session-id"]
    response = await gateway.http.get(f"/v1/responses/resp_{session_id}")
    assert response.status_code == 404
