"""The OpenTelemetry GenAI semantic conventions (v1.41) as Sluice fills them: span names,
attributes and metric names, computed from a session's record and clock. No I/O and no
OpenTelemetry here: plain names and dicts, built once per session, attempt or tool.

    session span   SERVER    chat {model} | generate_content {model} | invoke_agent {agent}
      attempt      CLIENT    chat {upstream model}    one per upstream request
      tool         INTERNAL  execute_tool {tool}      an agent's tool executions
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from sluice import events as ev
from sluice.agents.run import AgentRun
from sluice.errors import UpstreamError, UpstreamStatus
from sluice.session.session import CANCELLED, Session

#: ``gen_ai.provider.name`` by provider kind (the simulator is a provider of its own)
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}
SIM_PROVIDER = "sluice.sim"

CHAT = "chat"
GENERATE_CONTENT = "generate_content"
INVOKE_AGENT = "invoke_agent"
EXECUTE_TOOL = "execute_tool"
#: a tool the gateway itself executes, by the conventions' ``gen_ai.tool.type``
TOOL_TYPE = "extension"

# Metrics: the server's, of the sessions the gateway serves, and the client's, of its calls to
# providers (seconds, and tokens).
SERVER_REQUEST_DURATION = "gen_ai.server.request.duration"
SERVER_TIME_TO_FIRST_TOKEN = "gen_ai.server.time_to_first_token"
SERVER_TIME_PER_OUTPUT_TOKEN = "gen_ai.server.time_per_output_token"
CLIENT_OPERATION_DURATION = "gen_ai.client.operation.duration"
CLIENT_TOKEN_USAGE = "gen_ai.client.token.usage"
CLIENT_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
CLIENT_TIME_PER_OUTPUT_CHUNK = "gen_ai.client.operation.time_per_output_chunk"

#: the buckets the conventions advise for each histogram: 0.01 s to 81.92 s doubling; tokens
#: from 1 to 4^13
DURATION_BUCKETS = tuple(0.01 * 2**n for n in range(14))
FIRST_TOKEN_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1),
    *(0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
PER_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = tuple(float(4**n) for n in range(14))

Attributes = dict[str, Any]


def provider_name(session: Session) -> str:
    kind = session.route.provider.kind
    return PROVIDER_NAMES.get(kind, SIM_PROVIDER if kind == "sim" else kind)


def operation_of(wire: str) -> str:
    """A request in Gemini's format generates content; the others chat."""
    return GENERATE_CONTENT if wire == "gemini" else CHAT


def agent_of(session: Session) -> str | None:
    """The agent whose run the session is, if it is one."""
    return session.agent.name if isinstance(session, AgentRun) else None


# -- the session ------------------------------------------------------------------------------


def session_operation(session: Session) -> str:
    if agent_of(session) is not None:
        return INVOKE_AGENT
    return operation_of(session.spec.endpoint)


def session_span_name(session: Session) -> str:
    agent = agent_of(session)
    if agent is not None:
        return f"{INVOKE_AGENT} {agent}"
    return f"{operation_of(session.spec.endpoint)} {session.spec.turn.model}"


def session_start_attributes(session: Session) -> Attributes:
    """What is known as the session begins."""
    spec = session.spec
    attributes: Attributes = {
        "gen_ai.operation.name": session_operation(session),
        "gen_ai.provider.name": provider_name(session),
        "gen_ai.request.model": spec.turn.model,
        "sluice.session.id": session.id,
        "sluice.endpoint": spec.endpoint,
        "sluice.provider": session.route.provider.name,
    }
    if isinstance(session, AgentRun):
        attributes["gen_ai.agent.name"] = session.agent.name
        if session.conversation_id is not None:
            attributes["gen_ai.conversation.id"] = session.conversation_id
    if spec.correlation_id is not None:
        attributes["sluice.correlation_id"] = spec.correlation_id
    return attributes


def session_end_attributes(session: Session) -> Attributes:
    """The session's outcome, from its final record's values (once per session)."""
    spec, acc = session.spec, session.acc
    turn = spec.turn
    attributes: Attributes = {
        "gen_ai.request.stream": turn.stream,
        "sluice.session.state": session.state,
        "sluice.attempts": session.attempts,
    }
    if turn.max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = turn.max_tokens
    if turn.temperature is not None:
        attributes["gen_ai.request.temperature"] = turn.temperature
    if turn.top_p is not None:
        attributes["gen_ai.request.top_p"] = turn.top_p
    _response(attributes, acc.model, acc.response_id, acc.finish_reason)
    usage = session.final_usage
    if usage is not None and session.usage_source != "refused":
        _usage(attributes, usage)
        attributes["sluice.usage.source"] = session.usage_source
    first = session.clock.first_event
    if first is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = first - session.clock.started
    cost = (session.cost or {}).get("total")
    if cost is not None:
        attributes["sluice.cost.usd"] = cost
    if isinstance(session, AgentRun):
        attributes["sluice.agent.steps"] = session.step
    error = session_error(session)
    if error is not None:
        attributes["error.type"] = error
    if session.cancel_reason is not None:
        attributes["sluice.cancel_reason"] = session.cancel_reason
    return attributes


def session_error(session: Session) -> str | None:
    """The session's ``error.type``: its error's type; none for a Stop."""
    if session.state == CANCELLED or session.error is None:
        return None
    return str(session.error["type"])


def server_metric_attributes(session: Session) -> Attributes:
    """The attributes of the server metrics: few, so that series stay few."""
    attributes: Attributes = {
        "gen_ai.operation.name": session_operation(session),
        "gen_ai.provider.name": provider_name(session),
        "gen_ai.request.model": session.spec.turn.model,
    }
    if session.acc.model:
        attributes["gen_ai.response.model"] = session.acc.model
    error = session_error(session)
    if error is not None:
        attributes["error.type"] = error
    return attributes


# -- an attempt -------------------------------------------------------------------------------


def attempt_span_name(session: Session) -> str:
    route = session.route
    return f"{operation_of(route.wire)} {route.model}"


def attempt_start_attributes(session: Session, number: int) -> Attributes:
    """An upstream request's: the model asked of the provider, and where it goes."""
    route = session.route
    attributes: Attributes = {
        "gen_ai.operation.name": operation_of(route.wire),
        "gen_ai.provider.name": provider_name(session),
        "gen_ai.request.model": route.model,
        "gen_ai.request.stream": True,
        "sluice.attempt": number,
    }
    host, port = server_of(session.spec.url)
    if host is not None:
        attributes["server.address"] = host
        attributes["server.port"] = port
    return attributes


@lru_cache(maxsize=256)
def server_of(url: str) -> tuple[str | None, int]:
    """The host and port an upstream URL names (a provider's few URLs, parsed once each)."""
    parts = urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def attempt_end_attributes(
    session: Session,
    error: UpstreamError | ev.Error | None,
    first_chunk: float | None,
) -> Attributes:
    """How the request ended: refused (``UpstreamError``: nothing streamed, nothing billed),
    or its stream's answer, usage and end. ``first_chunk`` is seconds from the request to
    its first content delta."""
    attributes: Attributes = {}
    if isinstance(error, UpstreamError):
        attributes["error.type"] = error.type
        if isinstance(error, UpstreamStatus):
            attributes["http.response.status_code"] = error.status
        return attributes
    acc = session.acc
    _response(attributes, acc.model, acc.response_id, acc.finish_reason)
    usage, source = session.attempt_usage()
    if source != "refused":
        _usage(attributes, usage)
        attributes["sluice.usage.source"] = source
    if first_chunk is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = first_chunk
    if error is not None:
        attributes["error.type"] = error.type
    return attributes


def client_metric_attributes(start: Attributes, end: Attributes) -> Attributes:
    """The client metrics' attributes, from an attempt span's."""
    names = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model")
    attributes = {name: start[name] for name in names}
    for name in ("server.address", "server.port"):
        if name in start:
            attributes[name] = start[name]
    for name in ("gen_ai.response.model", "error.type"):
        if name in end:
            attributes[name] = end[name]
    return attributes


# -- a tool -----------------------------------------------------------------------------------


def tool_span(call: dict[str, Any]) -> tuple[str, Attributes]:
    """An agent's tool execution, from its record."""
    name = str(call["name"])
    attributes: Attributes = {
        "gen_ai.operation.name": EXECUTE_TOOL,
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.id": str(call["id"]),
        "gen_ai.tool.type": TOOL_TYPE,
    }
    origin = call.get("tool")
    if origin:
        attributes["sluice.tool.origin"] = str(origin)
    if call.get("is_error"):
        attributes["error.type"] = str(call.get("error") or "tool_error")
    return f"{EXECUTE_TOOL} {name}", attributes


# -- shared -----------------------------------------------------------------------------------


def _response(
    attributes: Attributes, model: str | None, response_id: str | None, finish: str | None
) -> None:
    if model:
        attributes["gen_ai.response.model"] = model
    if response_id:
        attributes["gen_ai.response.id"] = response_id
    if finish:
        attributes["gen_ai.response.finish_reasons"] = (finish,)


def _usage(attributes: Attributes, usage: ev.Usage) -> None:
    attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
    attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
    if usage.cache_read_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
