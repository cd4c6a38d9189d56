"""Failure scenarios: what a client sees on the wire, and what the record says."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from .helpers import FAST, USER, Sim, new_session, payloads, split_sse

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
RESPONSES = "/v1/responses"
ALL_FORMATS = [CHAT, MESSAGES, RESPONSES]


def request(path: str, model: str, *, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "stream": stream}
    if path == RESPONSES:
        body["input"] = USER[0]["content"]
    else:
        body["messages"] = USER
    if path == MESSAGES:
        body["max_tokens"] = 1024
    return body


def token_frames(path: str, body: str) -> list[Any]:
    """The frames that carry one text token each."""
    return select_tokens(path, payloads(body))


def select_tokens(path: str, frames: list[Any]) -> list[Any]:
    if path == CHAT:
        return [f for f in frames if f.get("choices") and f["choices"][0]["delta"].get("content")]
    if path == MESSAGES:
        return [f for f in frames if f["type"] == "content_block_delta"]
    return [f for f in frames if f["type"] == "response.output_text.delta"]


async def post(sim: Sim, path: str, model: str, **headers: str) -> tuple[int, Any, str]:
    async with sim.http() as client:
        response = await client.post(path, json=request(path, model), headers={**FAST, **headers})
    return response.status_code, response.headers, response.text


@pytest.mark.parametrize("path", ALL_FORMATS)
async def test_rate_limit_is_a_429_with_retry_after(sim: Sim, path: str) -> None:
    session = new_session()
    status, headers, body = await post(
        sim, path, "rate-limit", **{"x-sim-retry-after": "3", "x-sluice-session-id": session}
    )

    assert status == 429
    assert headers["retry-after"] == "3"
    error = json.loads(body)
    if path == MESSAGES:
        assert error["type"] == "error"
        assert error["error"]["type"] == "rate_limit_error"
    else:
        assert error["error"]["code"] == "rate_limit_exceeded"
    record = await sim.only_record(session)
    assert (record["state"], record["status"], record["fault"]) == ("failed", 429, "rate-limit")
    assert record["tokens_produced"] == 0


@pytest.mark.parametrize(
    ("path", "status", "error_type"),
    [
        (CHAT, 503, "server_error"),
        (MESSAGES, 529, "overloaded_error"),
        (RESPONSES, 503, "server_error"),
    ],
)
async def test_overloaded_fails_before_the_first_byte(
    sim: Sim, path: str, status: int, error_type: str
) -> None:
    code, _, body = await post(sim, path, "overloaded")

    assert code == status
    error = json.loads(body)["error"]
    assert error["type"] == error_type


@pytest.mark.parametrize(("path", "code"), [(CHAT, "model_not_found"), (RESPONSES, None)])
async def test_unknown_model_is_a_404_openai(sim: Sim, path: str, code: str | None) -> None:
    status, headers, body = await post(sim, path, "gpt-nonexistent")

    assert status == 404
    assert json.loads(body)["error"]["code"] == "model_not_found"
    assert headers["x-sim-request-id"]


async def test_unknown_model_is_a_404_anthropic(sim: Sim) -> None:
    status, _, body = await post(sim, MESSAGES, "claude-nonexistent")

    assert status == 404
    assert json.loads(body)["error"]["type"] == "not_found_error"


async def test_sdk_maps_the_statuses_to_its_errors(sim: Sim) -> None:
    client = sim.anthropic(new_session())
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(model="rate-limit", max_tokens=10, messages=USER)
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="nope", max_tokens=10, messages=USER)
    openai_client = sim.openai(new_session())
    with pytest.raises(openai.InternalServerError):
        await openai_client.chat.completions.create(model="overloaded", messages=USER)


async def test_error_mid_stream_chat(sim: Sim) -> None:
    status, _, body = await post(sim, CHAT, "error-mid-stream", **{"x-sim-fail-after": "4"})

    assert status == 200
    assert len(token_frames(CHAT, body)) == 4
    last = payloads(body)[-1]
    assert last["error"]["type"] == "server_error"
    assert set(last["error"]) == {"message", "type", "param", "code"}
    assert "[DONE]" not in body


async def test_error_mid_stream_anthropic(sim: Sim) -> None:
    status, _, body = await post(sim, MESSAGES, "error-mid-stream", **{"x-sim-fail-after": "4"})

    assert status == 200
    assert len(token_frames(MESSAGES, body)) == 4
    assert split_sse(body)[-1] == (
        "error",
        '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    )


async def test_error_mid_stream_responses(sim: Sim) -> None:
    session = new_session()
    status, _, body = await post(
        sim,
        RESPONSES,
        "error-mid-stream",
        **{"x-sim-fail-after": "4", "x-sluice-session-id": session},
    )

    assert status == 200
    assert len(token_frames(RESPONSES, body)) == 4
    event, data = split_sse(body)[-1]
    assert event == "error"
    assert json.loads(data)["code"] == "server_error"
    record = await sim.only_record(session)
    assert (record["state"], record["tokens_produced"]) == ("failed", 4)


async def test_sdks_raise_on_an_in_stream_error(sim: Sim) -> None:
    client = sim.anthropic(new_session())
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        async with client.messages.stream(
            model="error-mid-stream", max_tokens=100, messages=USER
        ) as stream:
            await stream.get_final_message()
    openai_client = sim.openai(new_session())
    with pytest.raises(openai.APIError, match="server had an error"):
        async with openai_client.chat.completions.stream(
            model="error-mid-stream", messages=USER
        ) as chat_stream:
            await chat_stream.get_final_completion()


async def test_reset_breaks_the_connection_mid_body(sim: Sim) -> None:
    session = new_session()
    received = b""
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{sim.base_url}{CHAT}",
            json=request(CHAT, "reset"),
            headers={**FAST, "x-sim-fail-after": "6", "x-sluice-session-id": session},
        ) as response,
    ):
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in response.content.iter_any():
                received += chunk

    # Every byte sent before the break arrives; the chunked terminator never does.
    assert len(token_frames(CHAT, received.decode())) == 6
    record = await sim.only_record(session)
    assert (record["state"], record["fault"], record["tokens_produced"]) == ("failed", "reset", 6)


async def test_reset_reaches_the_openai_sdk_as_a_connection_error(sim: Sim) -> None:
    client = sim.openai(new_session())
    stream = await client.chat.completions.create(model="reset", messages=USER, stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass


async def test_stall_goes_silent_then_finishes(sim: Sim) -> None:
    session = new_session()
    arrivals: list[tuple[float, str]] = []
    async with (
        sim.http() as client,
        client.stream(
            "POST",
            MESSAGES,
            json=request(MESSAGES, "stall"),
            headers={
                **FAST,
                "x-sim-output-tokens": "8",
                "x-sim-stall-after": "3",
                "x-sim-stall-seconds": "0.4",
                "x-sluice-session-id": session,
            },
        ) as response,
    ):
        async for line in response.aiter_lines():
            if '"text_delta"' in line:
                arrivals.append((time.monotonic(), line))

    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) == 8
    assert gaps[2] >= 0.35  # between token 3 and token 4: never shorter than the stall
    assert gaps[2] == max(gaps)
    record = await sim.only_record(session)
    assert (record["state"], record["fault"]) == ("completed", "stall")


@pytest.mark.parametrize("path", ALL_FORMATS)
async def test_malformed_sends_one_bad_frame_then_goes_on(sim: Sim, path: str) -> None:
    session = new_session()
    _, _, body = await post(
        sim,
        path,
        "malformed",
        **{"x-sim-output-tokens": "10", "x-sim-fail-after": "5", "x-sluice-session-id": session},
    )

    good: list[Any] = []
    bad: list[str] = []
    for _, data in split_sse(body):
        if data == "[DONE]":
            continue
        try:
            good.append(json.loads(data))
        except json.JSONDecodeError:
            bad.append(data)
    assert len(bad) == 1
    assert len(select_tokens(path, good)) == 10
    last = {CHAT: "data: [DONE]", MESSAGES: "message_stop", RESPONSES: "response.completed"}
    assert last[path] in body.split("\n\n")[-2]
    record = await sim.only_record(session)
    assert (record["malformed_frames"], record["state"]) == (1, "completed")


@pytest.mark.parametrize(
    ("path", "terminator"),
    [(CHAT, "[DONE]"), (MESSAGES, "message_stop"), (RESPONSES, "response.completed")],
)
async def test_truncated_ends_cleanly_without_the_terminator(
    sim: Sim, path: str, terminator: str
) -> None:
    session = new_session()
    status, _, body = await post(
        sim, path, "truncated", **{"x-sim-fail-after": "7", "x-sluice-session-id": session}
    )

    assert status == 200  # the body was read to its proper end: no transport error
    assert len(token_frames(path, body)) == 7
    assert terminator not in body
    assert "message_delta" not in body
    assert '"finish_reason":"stop"' not in body
    record = await sim.only_record(session)
    assert (record["state"], record["fault"]) == ("failed", "truncated")


async def test_fail_count_fails_only_the_first_attempts_of_a_session(sim: Sim) -> None:
    session = new_session()
    headers = {"x-sim-fail-count": "2", "x-sluice-session-id": session}
    statuses = [(await post(sim, CHAT, "rate-limit", **headers))[0] for _ in range(3)]
    other = await post(sim, CHAT, "rate-limit", **{**headers, "x-sluice-session-id": "other"})

    assert statuses == [429, 429, 200]
    assert other[0] == 429
    records = await sim.records(session)
    assert [record["attempt"] for record in records] == [1, 2, 3]
    assert [record["fault"] for record in records] == ["rate-limit", "rate-limit", None]
    assert records[-1]["state"] == "completed"
    assert records[-1]["text"]


async def test_fail_count_lets_a_retrying_sdk_through(sim: Sim) -> None:
    session = new_session()
    client = sim.openai(
        session, max_retries=2, **{"x-sim-fail-count": "1", "x-sim-retry-after": "0"}
    )
    async with client.chat.completions.stream(model="error-mid-stream", messages=USER) as s1:
        with pytest.raises(openai.APIError):
            await s1.get_final_completion()
    async with client.chat.completions.stream(model="error-mid-stream", messages=USER) as s2:
        final = await s2.get_final_completion()

    assert final.choices[0].finish_reason == "stop"
    states = [record["state"] for record in await sim.records(session)]
    assert states == ["failed", "completed"]


@pytest.mark.parametrize(("path", "status"), [(CHAT, 500), (MESSAGES, 529), (RESPONSES, 500)])
async def test_non_streaming_error_mid_stream_is_an_error_status(
    sim: Sim, path: str, status: int
) -> None:
    async with sim.http() as client:
        response = await client.post(
            path, json=request(path, "error-mid-stream", stream=False), headers=FAST
        )
    assert response.status_code == status


async def test_non_streaming_truncated_is_a_cleanly_ended_half_body(sim: Sim) -> None:
    async with sim.http() as client:
        response = await client.post(
            CHAT, json=request(CHAT, "truncated", stream=False), headers=FAST
        )
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_non_streaming_reset_drops_the_connection_inside_the_body(sim: Sim) -> None:
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{sim.base_url}{MESSAGES}", json=request(MESSAGES, "reset", stream=False), headers=FAST
        ) as response,
    ):
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
