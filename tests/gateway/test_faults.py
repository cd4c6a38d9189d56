"""Each simulator fault, through the gateway, ends in the right state with the error's type and
reason in the record and the partial text kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import GatewayUnderTest


async def run_native(gw: GatewayUnderTest, model: str, **headers: str) -> dict[str, Any]:
    response = await gw.http.post(
        "/api/sessions",
        json={"model": model, "prompt": "Why was I charged twice?"},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return await gw.final_record(response.json()["id"])


@pytest.mark.parametrize(
    ("model", "error_type", "retryable"),
    [
        ("sim/error-mid-stream", "upstream_error", True),  # OpenAI's server_error
        ("simmsg/error-mid-stream", "overloaded", True),  # Anthropic's overloaded_error
        ("simresp/error-mid-stream", "upstream_error", True),
        ("sim/reset", "upstream_disconnected", True),
        ("simmsg/reset", "upstream_disconnected", True),
        ("sim/truncated", "upstream_truncated", True),
        ("simmsg/truncated", "upstream_truncated", True),
        ("simresp/truncated", "upstream_truncated", True),
        ("sim/malformed", "upstream_protocol", True),
        ("simmsg/malformed", "upstream_protocol", True),
    ],
)
async def test_a_mid_stream_fault_errors_and_keeps_the_partial_text(
    gateway: GatewayUnderTest, model: str, error_type: str, retryable: bool
) -> None:
    record = await run_native(gateway, model)
    sent = await gateway.sim_request(record["id"])
    assert record["state"] == "errored"
    assert record["error"]["type"] == error_type
    assert record["error"]["retryable"] is retryable
    assert record["error"]["message"]
    assert record["text"] and sent["text"].startswith(record["text"])
    if error_type != "upstream_protocol":
        assert record["text"] == sent["text"]
    assert record["usage"]["source"] == "estimated"


@pytest.mark.parametrize(
    ("model", "error_type", "status"),
    [
        ("sim/rate-limit", "rate_limited", 429),
        ("sim/overloaded", "overloaded", 503),
        ("simmsg/overloaded", "overloaded", 529),
        ("sim/no-such-model", "unknown_model", 404),
    ],
)
async def test_a_refusal_before_the_stream_errors_with_its_reason(
    gateway: GatewayUnderTest, model: str, error_type: str, status: int
) -> None:
    record = await run_native(gateway, model)
    assert record["state"] == "errored"
    assert record["error"]["type"] == error_type
    assert record["error"]["status"] == status
    assert record["text"] == ""
    assert record["usage"]["source"] == "refused"
    assert record["usage"]["input_tokens"] == record["usage"]["output_tokens"] == 0


async def test_a_rate_limit_reaches_an_openai_client_as_429_with_retry_after(
    gateway: GatewayUnderTest,
) -> None:
    response = await gateway.http.post(
        "/v1/chat/completions",
        json={
            "model": "sim/rate-limit",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-sim-retry-after": "7"},
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response.json()["error"]["code"] == "rate_limited"
    record = await gateway.final_record(response.headers["x-sluice-session-id"])
    assert record["error"]["retry_after"] == 7


async def test_an_overload_reaches_an_anthropic_client_as_529(gateway: GatewayUnderTest) -> None:
    response = await gateway.http.post(
        "/v1/messages",
        json={
            "model": "sim/overloaded",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert response.status_code == 529
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": response.json()["error"]["message"]},
    }


async def test_a_mid_stream_error_reaches_an_openai_client_as_an_error_frame(
    gateway: GatewayUnderTest,
) -> None:
    from openai import APIError, AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    for model in ("sim/error-mid-stream", "simmsg/error-mid-stream", "sim/truncated"):
        text = []
        with pytest.raises(APIError):
            stream = await client.chat.completions.create(
                model=model, stream=True, messages=[{"role": "user", "content": "hi"}]
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text.append(chunk.choices[0].delta.content)
        assert text, model


async def test_a_short_stall_is_not_an_error(gateway: GatewayUnderTest) -> None:
    record = await run_native(
        gateway, "sim/stall", **{"x-sim-stall-seconds": "0.3", "x-sim-stall-after": "5"}
    )
    sent = await gateway.sim_request(record["id"])
    assert record["state"] == "complete" and record["text"] == sent["text"]
    assert record["telemetry"]["gap_p99_ms"] >= 250


async def test_an_unreachable_upstream_is_an_explicit_error(gateway: GatewayUnderTest) -> None:
    from sluice.config import ProviderConfig

    gateway.gateway.settings.providers["down"] = ProviderConfig(
        "down", "sim", base_url="http://127.0.0.1:9/v1"
    )
    response = await gateway.http.post(
        "/v1/chat/completions",
        json={"model": "down/support", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    record = await gateway.final_record(response.headers["x-sluice-session-id"])
    assert record["state"] == "errored" and record["error"]["type"] == "upstream_unreachable"


async def test_a_store_that_fails_at_the_end_still_ends_the_session_and_says_so(
    gateway: GatewayUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    from sluice.session.store import StoreError

    store = gateway.gateway.sessions.store
    real_put = store.put

    def failing_final_put(record: Any, events: Any = None) -> Any:
        if events is None:
            return real_put(record)
        done = asyncio.get_running_loop().create_future()
        done.set_exception(StoreError("disk full"))
        return done

    store.put = failing_final_put  # type: ignore[method-assign]
    try:
        with caplog.at_level("ERROR", logger="sluice.session"):
            record = await run_native(gateway, "sim/support")
    finally:
        store.put = real_put  # type: ignore[method-assign]
    # The client's answer and the record it was sent are whole; only the store has not kept
    # the final record and the log.
    assert record["state"] == "complete" and record["text"]
    assert any(
        "session record not stored" in r.getMessage() and "disk full" in r.getMessage()
        for r in caplog.records
    )
