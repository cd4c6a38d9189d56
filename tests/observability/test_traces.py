"""A streamed session through each endpoint, traced: the span a real OTLP receiver is sent,
its attributes from the GenAI conventions, its parent from the client's ``traceparent``, a
child span per upstream request whose ``traceparent`` the provider receives, a child span per
tool of an agent's run, and the GenAI metrics beside."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluice.config import AgentConfig
from tests.conftest import LONG, tokens_when_running
from tests.conftest import test_settings as gateway_settings
from tests.observability.conftest import (
    CLIENT_HEADERS,
    CLIENT_SPAN,
    CLIENT_TRACE,
    CORRELATION,
    Traced,
    read_stream,
)
from tests.observability.otlp import PointSeen, Received, SpanSeen

MESSAGES = [{"role": "user", "content": "How do refunds work?"}]

#: one streamed session through each client format: (path, body, extra headers, operation)
ENDPOINTS: dict[str, tuple[str, dict[str, Any], dict[str, str], str]] = {
    "native": (
        "/api/sessions",
        {"model": "sim/support", "prompt": "How do refunds work?"},
        {"accept": "text/event-stream"},
        "chat",
    ),
    "chat": (
        "/v1/chat/completions",
        {
            "model": "sim/support",
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        {},
        "chat",
    ),
    "messages": (
        "/v1/messages",
        {"model": "sim/support", "max_tokens": 400, "messages": MESSAGES, "stream": True},
        {},
        "chat",
    ),
    "responses": (
        "/v1/responses",
        {"model": "sim/support", "input": "How do refunds work?", "stream": True},
        {},
        "chat",
    ),
    "gemini": (
        "/v1beta/models/sim%2Fsupport:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": "How do refunds work?"}]}]},
        {},
        "generate_content",
    ),
}


def session_span(received: Received, session_id: str) -> SpanSeen:
    [span] = [s for s in received.spans if s.attributes.get("sluice.session.id") == session_id]
    return span


def points(received: Received, metric: str) -> list[PointSeen]:
    return received.metrics.get(metric, [])


def total_count(received: Received, metric: str) -> int:
    return sum(point.count for point in points(received, metric))


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_a_streamed_session_is_one_server_span_under_the_clients_trace(
    traced: Traced, endpoint: str
) -> None:
    path, body, headers, operation = ENDPOINTS[endpoint]
    async with traced() as (gw, received):
        session_id, events = await read_stream(gw, path, body, headers | CLIENT_HEADERS)
        record = await gw.final_record(session_id)
        upstream = await gw.sim_request(session_id)
    assert events and record["state"] == "complete"

    span = session_span(received, session_id)
    assert span.name == f"{operation} sim/support" and span.kind == "server"
    # the client's traceparent is the parent
    assert (span.trace_id, span.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    assert span.scope == "sluice" and span.resource["service.name"] == "sluice"
    a = span.attributes
    assert a["gen_ai.operation.name"] == operation
    assert a["gen_ai.provider.name"] == "sluice.sim"
    assert a["gen_ai.request.model"] == "sim/support"
    assert a["gen_ai.response.model"] == record["upstream_model"]
    assert a["gen_ai.response.id"] == record["response_id"]
    assert a["gen_ai.response.finish_reasons"] == (record["finish_reason"],)
    assert a["gen_ai.usage.input_tokens"] == record["usage"]["input_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] == record["usage"]["output_tokens"] > 0
    assert a["gen_ai.request.stream"] is True
    ttfc = record["telemetry"]["time_to_first_event_ms"] / 1000
    assert a["gen_ai.response.time_to_first_chunk"] == pytest.approx(ttfc, abs=1e-5)
    assert a["sluice.session.id"] == session_id and a["sluice.correlation_id"] == CORRELATION
    assert a["sluice.endpoint"] == endpoint and a["sluice.session.state"] == "complete"
    assert "error.type" not in a and span.status == 0  # unset

    # one request upstream: a client span, child of the session's, whose context it carried
    [attempt] = received.children(span)
    upstream_operation = "generate_content" if record["upstream_wire"] == "gemini" else "chat"
    assert attempt.name == f"{upstream_operation} support" and attempt.kind == "client"
    assert attempt.trace_id == CLIENT_TRACE
    assert upstream["traceparent"] == f"00-{CLIENT_TRACE}-{attempt.span_id}-01"
    b = attempt.attributes
    assert b["gen_ai.request.model"] == "support" and b["sluice.attempt"] == 1
    assert b["server.address"] == "127.0.0.1" and isinstance(b["server.port"], int)
    assert b["gen_ai.response.id"] == record["response_id"]
    assert b["gen_ai.usage.output_tokens"] == record["usage"]["output_tokens"]
    assert 0 < b["gen_ai.response.time_to_first_chunk"] <= a["gen_ai.response.time_to_first_chunk"]
    assert span.start <= attempt.start <= attempt.end <= span.end

    # the metrics: the server's, once for the session, and the client's, once for the request
    for metric in (
        "gen_ai.server.request.duration",
        "gen_ai.server.time_to_first_token",
        "gen_ai.server.time_per_output_token",
        "gen_ai.client.operation.duration",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    ):
        assert total_count(received, metric) == 1, metric
        assert received.units[metric] == "s"
    [server] = points(received, "gen_ai.server.request.duration")
    assert server.attributes == {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "sluice.sim",
        "gen_ai.request.model": "sim/support",
        "gen_ai.response.model": record["upstream_model"],
    }
    assert server.bounds[0] == 0.01 and server.bounds[-1] == 81.92
    [first_token] = points(received, "gen_ai.server.time_to_first_token")
    assert first_token.sum == pytest.approx(ttfc, abs=1e-5)
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in points(received, "gen_ai.client.token.usage")
    }
    usage = record["usage"]
    assert tokens == {"input": usage["input_tokens"], "output": usage["output_tokens"]}


async def test_a_refused_request_and_its_retry_are_two_client_spans(traced: Traced) -> None:
    headers = {"x-sim-fail-count": "1", "x-sim-retry-after": "0", **CLIENT_HEADERS}
    body = {"model": "sim/rate-limit", "prompt": "hello"}
    async with traced() as (gw, received):
        session_id, _ = await read_stream(
            gw, "/api/sessions", body, headers | {"accept": "text/event-stream"}
        )
        record = await gw.final_record(session_id)
        upstream = await gw.sim_requests(session_id)
    assert record["state"] == "complete"
    assert [e["type"] for e in record["attempt_errors"]] == ["rate_limited"]

    span = session_span(received, session_id)
    refused, accepted = sorted(received.children(span), key=lambda s: s.start)
    assert refused.kind == accepted.kind == "client"
    assert refused.attributes["sluice.attempt"] == 1 and accepted.attributes["sluice.attempt"] == 2
    assert refused.attributes["error.type"] == "rate_limited"
    assert refused.attributes["http.response.status_code"] == 429
    assert refused.status == 2  # error
    assert "gen_ai.usage.output_tokens" not in refused.attributes
    assert "error.type" not in accepted.attributes and accepted.status == 0
    assert accepted.attributes["gen_ai.usage.output_tokens"] == record["usage"]["output_tokens"]
    # each request carried its own span as the parent of what the provider does
    assert [r["traceparent"] for r in upstream] == [
        f"00-{CLIENT_TRACE}-{refused.span_id}-01",
        f"00-{CLIENT_TRACE}-{accepted.span_id}-01",
    ]
    durations = points(received, "gen_ai.client.operation.duration")
    by_error = {p.attributes.get("error.type"): p.count for p in durations}
    assert by_error == {"rate_limited": 1, None: 1}
    # a refusal is billed nothing: the token usage counts the accepted request only
    assert total_count(received, "gen_ai.client.token.usage") == 2  # its input and its output


async def test_an_agent_run_is_an_invoke_agent_span_with_its_model_calls_and_tools(
    traced: Traced, tmp_path: Path
) -> None:
    settings = gateway_settings(tmp_path)
    settings.agents = {
        # a model that always asks for a tool: step 1 calls it, step 2 asks again (max_steps)
        "helper": AgentConfig(name="helper", model="sim/tools", tools=["calculator"], max_steps=2)
    }
    async with traced(settings=settings) as (gw, received):
        session_id, events = await read_stream(
            gw,
            "/api/agents/helper/runs",
            {"prompt": "Where is my order?"},
            {"accept": "text/event-stream", **CLIENT_HEADERS},
        )
        record = await gw.final_record(session_id)
    assert record["state"] == "errored" and record["error"]["type"] == "max_steps"
    [tool_end] = [orjson.loads(data) for kind, data in events if kind == "tool.end"]

    span = session_span(received, session_id)
    assert span.name == "invoke_agent helper" and span.kind == "server"
    assert (span.trace_id, span.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    a = span.attributes
    assert a["gen_ai.operation.name"] == "invoke_agent" and a["gen_ai.agent.name"] == "helper"
    assert a["gen_ai.request.model"] == "sim/tools" and a["sluice.agent.steps"] == 2
    assert a["error.type"] == "max_steps" and span.status == 2
    assert a["gen_ai.usage.output_tokens"] == record["usage"]["output_tokens"]

    children = received.children(span)
    calls = sorted((s for s in children if s.kind == "client"), key=lambda s: s.start)
    [tool] = [s for s in children if s.kind == "internal"]
    assert [c.name for c in calls] == ["chat tools", "chat tools"]
    assert [c.attributes["gen_ai.response.finish_reasons"] for c in calls] == [("tool_calls",)] * 2
    assert tool.name == f"execute_tool {tool_end['name']}"
    t = tool.attributes
    assert t["gen_ai.operation.name"] == "execute_tool"
    assert t["gen_ai.tool.name"] == tool_end["name"]
    assert t["gen_ai.tool.call.id"] == tool_end["id"]
    assert t["gen_ai.tool.type"] == "extension"
    assert t["error.type"] == tool_end["error"] == "unknown_tool" and tool.status == 2
    # the tool ran between the two model calls
    assert calls[0].end <= tool.start <= tool.end <= calls[1].start
    [server] = points(received, "gen_ai.server.request.duration")
    assert server.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert server.attributes["error.type"] == "max_steps"
    assert total_count(received, "gen_ai.client.operation.duration") == 2


async def test_spans_and_metrics_are_exported_over_grpc(traced: Traced) -> None:
    path, body, headers, _ = ENDPOINTS["native"]
    async with traced("grpc") as (gw, received):
        session_id, _ = await read_stream(gw, path, body, headers | CLIENT_HEADERS)
        upstream = await gw.sim_request(session_id)
    assert "grpc TraceService/Export" in received.requests
    assert "grpc MetricsService/Export" in received.requests
    span = session_span(received, session_id)
    assert span.name == "chat sim/support" and span.parent_span_id == CLIENT_SPAN
    [attempt] = received.children(span)
    assert upstream["traceparent"] == f"00-{CLIENT_TRACE}-{attempt.span_id}-01"
    assert total_count(received, "gen_ai.server.request.duration") == 1
    assert total_count(received, "gen_ai.client.token.usage") == 2


async def test_a_session_without_a_traceparent_starts_a_trace_of_its_own(traced: Traced) -> None:
    path, body, headers, _ = ENDPOINTS["chat"]
    async with traced() as (gw, received):
        session_id, _ = await read_stream(gw, path, body, headers)
        upstream = await gw.sim_request(session_id)
    span = session_span(received, session_id)
    assert span.parent_span_id == "" and span.trace_id != CLIENT_TRACE
    # the client gave no X-Request-Id: the id the gateway made for the request
    assert re.fullmatch(r"[0-9a-f]{16}", span.attributes["sluice.correlation_id"])
    [attempt] = received.children(span)
    # sampled, and (a trace the gateway began) its trace id random: W3C trace context level 2
    assert upstream["traceparent"] == f"00-{span.trace_id}-{attempt.span_id}-03"


async def test_a_stopped_session_ends_its_open_request_span_without_an_error(
    traced: Traced,
) -> None:
    async with traced() as (gw, received):
        response = await gw.http.post(
            "/api/sessions",
            json={"model": "sim/support", "prompt": "hello"},
            headers={**LONG, **CLIENT_HEADERS},
        )
        session_id = response.json()["id"]
        await tokens_when_running(gw, session_id)
        await gw.http.post(f"/api/sessions/{session_id}/cancel")
        record = await gw.final_record(session_id)
    assert record["state"] == "cancelled"
    span = session_span(received, session_id)
    assert span.attributes["sluice.session.state"] == "cancelled"
    assert span.attributes["sluice.cancel_reason"] == "client_stop"
    assert "error.type" not in span.attributes and span.status == 0
    [attempt] = received.children(span)
    assert attempt.attributes["sluice.cancel_reason"] == "client_stop"
    assert "error.type" not in attempt.attributes
    # what it had streamed when stopped: an estimate, as the record's
    assert attempt.attributes["sluice.usage.source"] == "estimated"
    assert attempt.attributes["gen_ai.usage.output_tokens"] == record["usage"]["output_tokens"]
