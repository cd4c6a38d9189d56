"""The OpenAPI 3.1 description of the gateway's HTTP API, served at ``GET /openapi.json``.

Request bodies of the provider-compatible endpoints follow the providers' public request
shapes, narrowed to what the gateway accepts (text, tool calls and tool results; other content
parts are refused with 400 because they cannot be translated between formats). Every error
response names the body it carries: OpenAI's on ``/v1/chat/completions`` and
``/v1/responses``, Anthropic's on ``/v1/messages``, either on ``/v1/models`` (Anthropic's when
the request carries ``anthropic-version``), the native ``{"error": {"type", "message"}}`` on
``/api/…``. The WebSocket transport (``/api/sessions/{id}/ws``) is described by its handshake,
with its frames in the operation's description (OpenAPI has no words for them); the HTML pages
and the embedded simulator are not described.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sluice import __version__
from sluice.config import provider_kinds

JSONSchema = dict[str, Any]


def _ref(name: str) -> JSONSchema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JSONSchema, description: str) -> JSONSchema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(schema: str, statuses: dict[str, str]) -> dict[str, JSONSchema]:
    return {status: _json(_ref(schema), what) for status, what in statuses.items()}


_SSE = {
    "text/event-stream": {
        "schema": {
            "description": "server-sent events, each `data` a JSON object in the endpoint's "
            "stream format (Chat ends with `data: [DONE]`)"
        }
    }
}

_STRING_LIST = {"type": "array", "items": {"type": "string"}}

# -- OpenAI Chat Completions -----------------------------------------------------------------

_CHAT_TEXT = {
    "anyOf": [
        {"type": "string"},
        {"type": "null"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "text"],
                "properties": {
                    "type": {"enum": ["text", "input_text", "output_text"]},
                    "text": {"type": "string"},
                },
            },
        },
    ]
}

_CHAT_TOOL_CALL = {
    "type": "object",
    "required": ["id", "type", "function"],
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name", "arguments"],
            "properties": {
                "name": {"type": "string"},
                "arguments": {"type": "string", "description": "a JSON object, as text"},
            },
        },
    },
}

_CHAT_MESSAGE = {
    "oneOf": [
        {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"enum": ["system", "developer", "user"]},
                "content": _CHAT_TEXT,
            },
        },
        {
            "type": "object",
            "required": ["role"],
            "properties": {
                "role": {"const": "assistant"},
                "content": _CHAT_TEXT,
                "tool_calls": {"type": "array", "items": _CHAT_TOOL_CALL},
            },
        },
        {
            "type": "object",
            "required": ["role", "tool_call_id", "content"],
            "properties": {
                "role": {"const": "tool"},
                "tool_call_id": {"type": "string"},
                "content": _CHAT_TEXT,
            },
        },
    ]
}

_CHAT_TOOL = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "parameters": {"type": "object", "description": "a JSON Schema"},
            },
        },
    },
}

_CHAT_FIELDS: JSONSchema = {
    "model": {
        "type": "string",
        "description": "`<provider>/<model>`, e.g. `sim/support` or `openai/gpt-4o-mini`",
        "examples": ["sim/support"],
    },
    "messages": {"type": "array", "minItems": 1, "items": _CHAT_MESSAGE},
    "max_tokens": {"type": "integer", "minimum": 1},
    "max_completion_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "stop": {"anyOf": [{"type": "string"}, _STRING_LIST, {"type": "null"}]},
    "stream": {"type": "boolean"},
    "stream_options": {
        "type": "object",
        "properties": {"include_usage": {"type": "boolean"}},
    },
    "tools": {"type": "array", "items": _CHAT_TOOL},
    "tool_choice": {
        "anyOf": [
            {"enum": ["none", "auto", "required"]},
            {
                "type": "object",
                "required": ["type", "function"],
                "properties": {
                    "type": {"const": "function"},
                    "function": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                },
            },
        ]
    },
    "user": {"type": "string"},
}

_CHAT_REQUEST = {
    "type": "object",
    "description": "OpenAI's Chat Completions request. Fields not listed here are forwarded "
    "to an OpenAI-compatible upstream unchanged.",
    "required": ["model", "messages"],
    "properties": _CHAT_FIELDS,
}

_USAGE_CHAT = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}

_CHAT_COMPLETION = {
    "type": "object",
    "required": ["id", "object", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "message", "finish_reason"],
                "properties": {
                    "index": {"type": "integer"},
                    "message": {"type": "object"},
                    "finish_reason": {"type": ["string", "null"]},
                },
            },
        },
        "usage": _USAGE_CHAT,
    },
}

# -- Anthropic Messages --------------------------------------------------------------------

_TEXT_BLOCK = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}

_ANTHROPIC_BLOCK = {
    "oneOf": [
        _TEXT_BLOCK,
        {
            "type": "object",
            "required": ["type", "id", "name", "input"],
            "properties": {
                "type": {"const": "tool_use"},
                "id": {"type": "string"},
                "name": {"type": "string"},
                "input": {"type": "object"},
            },
        },
        {
            "type": "object",
            "required": ["type", "tool_use_id"],
            "properties": {
                "type": {"const": "tool_result"},
                "tool_use_id": {"type": "string"},
                "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_BLOCK}]},
                "is_error": {"type": "boolean"},
            },
        },
    ]
}

_MESSAGES_REQUEST = {
    "type": "object",
    "description": "Anthropic's Messages request. Fields not listed here are forwarded to an "
    "Anthropic upstream unchanged.",
    "required": ["model", "max_tokens", "messages"],
    "properties": {
        "model": _CHAT_FIELDS["model"],
        "max_tokens": {"type": "integer", "minimum": 1},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"enum": ["user", "assistant"]},
                    "content": {
                        "anyOf": [
                            {"type": "string"},
                            {"type": "array", "items": _ANTHROPIC_BLOCK},
                        ]
                    },
                },
            },
        },
        "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_BLOCK}]},
        "stop_sequences": _STRING_LIST,
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "stream": {"type": "boolean"},
        "tools": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "input_schema"],
                "properties": {
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "input_schema": {"type": "object", "description": "a JSON Schema"},
                },
            },
        },
        "tool_choice": {
            "oneOf": [
                {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"enum": ["auto", "any", "none"]}},
                },
                {
                    "type": "object",
                    "required": ["type", "name"],
                    "properties": {"type": {"const": "tool"}, "name": {"type": "string"}},
                },
            ]
        },
        "metadata": {"type": "object", "properties": {"user_id": {"type": "string"}}},
    },
}

_MESSAGE = {
    "type": "object",
    "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "message"},
        "role": {"const": "assistant"},
        "model": {"type": "string"},
        "content": {"type": "array", "items": {"type": "object"}},
        "stop_reason": {"type": ["string", "null"]},
        "usage": {
            "type": "object",
            "properties": {
                "input_tokens": {"type": "integer"},
                "output_tokens": {"type": "integer"},
            },
        },
    },
}

# -- native API ------------------------------------------------------------------------------

_NATIVE_REQUEST = {
    "type": "object",
    "description": "The Chat Completions shape (`messages`), or a bare `prompt`; the session "
    "always streams into its event log.",
    "required": ["model"],
    "anyOf": [{"required": ["messages"]}, {"required": ["prompt"]}],
    "properties": {
        **_CHAT_FIELDS,
        "prompt": {"type": "string", "description": "one user message"},
        "disconnect_policy": {"enum": ["cancel", "detach", "drain"]},
    },
}

_RUN_REQUEST = {
    "type": "object",
    "description": "A run's input: a `prompt` (one user message, after the conversation's "
    "history), or `messages` in the Chat shape (the whole conversation)",
    "anyOf": [{"required": ["messages"]}, {"required": ["prompt"]}],
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "messages": _CHAT_FIELDS["messages"],
        "conversation_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "disconnect_policy": {"enum": ["cancel", "detach", "drain"]},
    },
}

_TURN_REQUEST = {
    "type": "object",
    "description": "A conversation's next turn: its `prompt`, run by the conversation's "
    "agent (or model), or by the `agent` or `model` named",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "agent": {"type": "string"},
        "model": _CHAT_FIELDS["model"],
        "max_tokens": {"type": "integer", "minimum": 1},
        "disconnect_policy": {"enum": ["cancel", "detach", "drain"]},
    },
}

_RUN_STARTED = {
    "type": "object",
    "required": ["id", "state", "agent", "conversation_id", "events_url", "record_url"],
    "properties": {
        "id": {"type": "string"},
        "state": {"type": "string"},
        "agent": {"type": ["string", "null"]},
        "conversation_id": {"type": ["string", "null"]},
        "events_url": {"type": "string"},
        "record_url": {"type": "string"},
    },
}

_RUN_ERRORS = {
    "400": "malformed JSON, neither prompt nor messages, or a bad value",
    "403": "this credential may not start sessions, or not with the agent's model",
    "404": "no such agent (unknown_agent) or model",
    "409": "the conversation has a run under way (conversation_busy), or its history is not "
    "kept here (conversation_not_kept)",
    "413": "the body is over the configured limit",
    "429": "this key's ceiling of streams, rate or budget (`Retry-After`)",
    "503": "the gateway's capacity is reached, or the agent's tools are unavailable",
}

_CONVERSATION_ID = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "the conversation's id (`cv-…`, or one the client chose)",
}


def _run_operation(summary: str, request: str, parameters: list[JSONSchema]) -> JSONSchema:
    return {
        "summary": summary,
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(request)}},
        },
        "responses": {
            "201": _json(_RUN_STARTED, "the run started"),
            "200": {
                "description": "the run's native events (`Accept: text/event-stream`)",
                "content": _SSE,
            },
            **_errors("NativeError", _RUN_ERRORS),
        },
    }


_TEXT_PARTS = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"type": "string"}, "text": {"type": "string"}},
            },
        },
    ]
}

_AGUI_INPUT = {
    "type": "object",
    "description": "AG-UI's RunAgentInput: the thread's id (the conversation's) and its whole "
    "history; system, developer, user and assistant messages are the run's, by their text "
    "(docs/agents.md, AG-UI)",
    "required": ["threadId", "runId", "messages"],
    "properties": {
        "threadId": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
        "runId": {"type": "string", "minLength": 1},
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "role"],
                "properties": {
                    "id": {"type": "string"},
                    "role": {
                        "enum": [
                            "developer",
                            "system",
                            "user",
                            "assistant",
                            "tool",
                            "activity",
                            "reasoning",
                        ]
                    },
                    "content": _TEXT_PARTS,
                },
            },
        },
        "tools": {"type": "array"},
        "context": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["description", "value"],
                "properties": {"description": {"type": "string"}, "value": {"type": "string"}},
            },
        },
        "state": {},
        "forwardedProps": {
            "type": "object",
            "properties": {"disconnect_policy": {"enum": ["cancel", "detach", "drain"]}},
        },
    },
}

_CHAT_REQUEST = {
    "type": "object",
    "description": "The AI SDK chat transport's request (useChat): the chat's id (the "
    "conversation's) and its whole history as UI messages, whose text parts are the run's "
    "(docs/agents.md, AI SDK UI message stream)",
    "required": ["id", "messages"],
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "role", "parts"],
                "properties": {
                    "id": {"type": "string"},
                    "role": {"enum": ["system", "user", "assistant"]},
                    "parts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type"],
                            "properties": {
                                "type": {"type": "string"},
                                "text": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
        "trigger": {"enum": ["submit-message", "regenerate-message"]},
        "messageId": {"type": "string"},
        "disconnect_policy": {"enum": ["cancel", "detach", "drain"]},
    },
}

_FRONT_END_ERRORS = {
    **_RUN_ERRORS,
    "400": "malformed JSON, a body this cannot run (no user message with text, a bad id)",
    "415": "a body that is not JSON",
}

_AGENT_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


_SESSION_STATES = [
    "starting",
    "streaming",
    "finalizing",
    "complete",
    "errored",
    "cancelled",
    "interrupted",
]

_RECORD = {
    "type": "object",
    "description": "A session's record: request, answer, usage, cost, telemetry and ending. "
    "Described here by its principal fields.",
    "required": ["id", "state", "created_at", "provider", "model", "text"],
    "properties": {
        "id": {"type": "string"},
        "state": {"enum": _SESSION_STATES},
        "created_at": {"type": "number"},
        "updated_at": {"type": "number"},
        "endpoint": {"type": "string"},
        "provider": {"type": "string"},
        "model": {"type": "string"},
        "prompt": {"type": "string", "description": "the last user message's text"},
        "text": {"type": "string"},
        "reasoning": {"type": "string"},
        "signatures": {
            "type": "array",
            "items": {"type": "object"},
            "description": "the reasoning's opaque tokens (`signature`, block `index`, "
            "`redacted`), which a client continuing the turn sends back unchanged",
        },
        "tool_calls": {"type": "array", "items": {"type": "object"}},
        "finish_reason": {"type": ["string", "null"]},
        "usage": {"type": ["object", "null"]},
        "cost": {"type": ["object", "null"]},
        "telemetry": {"type": ["object", "null"]},
        "error": {"type": ["object", "null"]},
        "attempts": {"type": "integer"},
    },
}

_SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "the session id (`op-…`), also in every response's `x-sluice-session-id`",
}

# -- OpenAI Responses ----------------------------------------------------------------------

_RESPONSES_TEXT = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"type": "string", "examples": ["input_text", "output_text"]},
                    "text": {"type": "string"},
                },
            },
        },
    ]
}

_RESPONSES_ITEM = {
    "type": "object",
    "description": "A message (`role` and `content`; `type` may be left out), a "
    "`function_call` (`call_id`, `name`, `arguments` as JSON text), a `function_call_output` "
    "(`call_id`, `output`) or a `reasoning` item (dropped when translated). Other item types "
    "and parts (images, files) reach a Responses provider unchanged and are refused with 400 "
    "when the request is translated.",
    "properties": {
        "type": {
            "type": "string",
            "examples": ["message", "function_call", "function_call_output", "reasoning"],
        },
        "role": {"enum": ["user", "assistant", "system", "developer"]},
        "content": _RESPONSES_TEXT,
        "call_id": {"type": "string"},
        "name": {"type": "string"},
        "arguments": {"type": "string"},
        "output": _RESPONSES_TEXT,
    },
}

_RESPONSES_REQUEST = {
    "type": "object",
    "description": "OpenAI's Responses request. Relayed unchanged to a provider that speaks "
    "Responses (fields not listed here included); translated for any other, where what only a "
    "Responses provider acts on (hosted tools, `previous_response_id`, `conversation`, "
    "`prompt`, a structured `text.format`, images and files) is refused with 400 naming the "
    "field. `background: true` answers a request without `stream` at once, in progress, and "
    "lets the response run to its end whoever reads it.",
    "required": ["model", "input"],
    "properties": {
        "model": _CHAT_FIELDS["model"],
        "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": _RESPONSES_ITEM}]},
        "instructions": {"type": "string"},
        "max_output_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "stream": {"type": "boolean"},
        "background": {"type": "boolean"},
        "store": {"type": "boolean"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "reasoning": {
            "type": "object",
            "properties": {"effort": {"type": "string"}, "summary": {"type": "string"}},
        },
        "tools": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "name"],
                "properties": {
                    "type": {"const": "function"},
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "parameters": {"type": "object"},
                },
            },
        },
        "tool_choice": {
            "anyOf": [
                {"enum": ["none", "auto", "required"]},
                {
                    "type": "object",
                    "required": ["type", "name"],
                    "properties": {"type": {"const": "function"}, "name": {"type": "string"}},
                },
            ]
        },
        "user": {"type": "string"},
    },
}

_RESPONSE = {
    "type": "object",
    "description": "A response object. Its `id` is `resp_<session id>` when Sluice wrote the "
    "response (translated), the provider's own when it was relayed unchanged.",
    "required": ["id", "object", "status", "model", "output"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "response"},
        "created_at": {"type": "number"},
        "status": {
            "enum": ["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
        },
        "model": {"type": "string"},
        "output": {"type": "array", "items": {"type": "object"}},
        "error": {"type": ["object", "null"]},
        "incomplete_details": {"type": ["object", "null"]},
        "usage": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {
                        "input_tokens": {"type": "integer"},
                        "output_tokens": {"type": "integer"},
                        "total_tokens": {"type": "integer"},
                    },
                },
            ]
        },
    },
}

_RESPONSE_ID = {
    "name": "response_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "the response's id: `resp_<session id>` for any response, or the "
    "provider's own id of a relayed one while its session is in memory",
}

# -- errors ----------------------------------------------------------------------------------

_OPENAI_ERROR = {
    "type": "object",
    "description": "OpenAI's error body. `code` carries Sluice's stable error type.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_ANTHROPIC_ERROR = {
    "type": "object",
    "description": "Anthropic's error body.",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}

_NATIVE_ERROR = {
    "type": "object",
    "description": "The native API's error body; `type` is Sluice's stable error type.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

# -- model lists ----------------------------------------------------------------------------

_OPENAI_MODEL = {
    "type": "object",
    "description": "A model as OpenAI's API describes one (`created`: 0, not known).",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": {"type": "string", "description": "`provider/model`"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string", "description": "the provider"},
    },
}
_ANTHROPIC_MODEL = {
    "type": "object",
    "description": "A model as Anthropic's API describes one (`created_at`: the epoch).",
    "required": ["type", "id", "display_name", "created_at"],
    "properties": {
        "type": {"const": "model"},
        "id": {"type": "string", "description": "`provider/model`"},
        "display_name": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_MODEL_LIST = {
    "anyOf": [
        {
            "type": "object",
            "description": "OpenAI's list: every model",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": _OPENAI_MODEL},
            },
        },
        {
            "type": "object",
            "description": "Anthropic's page (with `anthropic-version`)",
            "required": ["data", "has_more", "first_id", "last_id"],
            "properties": {
                "data": {"type": "array", "items": _ANTHROPIC_MODEL},
                "has_more": {"type": "boolean"},
                "first_id": {"type": ["string", "null"]},
                "last_id": {"type": ["string", "null"]},
            },
        },
    ]
}
_ANTHROPIC_VERSION = {
    "name": "anthropic-version",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "sent by Anthropic's SDKs: the answer (and any error) is in Anthropic's "
    "shape, else in OpenAI's",
}
_EITHER_ERROR = {
    "anyOf": [
        {"$ref": "#/components/schemas/OpenAIError"},
        {"$ref": "#/components/schemas/AnthropicError"},
    ]
}


def _model_operation(
    summary: str, parameters: list[JSONSchema], ok: JSONSchema, errors: dict[str, str]
) -> JSONSchema:
    return {
        "summary": summary,
        "parameters": [_ANTHROPIC_VERSION, *parameters],
        "responses": {
            "200": _json(ok, "OpenAI's shape, or Anthropic's with `anthropic-version`"),
            **{status: _json(_EITHER_ERROR, what) for status, what in errors.items()},
        },
    }


_MODEL_AUTH = {"401": "keys are required, and none (or an unknown one) was sent"}

_PROVIDER_ERRORS = {
    "400": "malformed JSON, a missing field or a bad value",
    "404": "no such provider or model",
    "413": "the body is over the configured limit",
    "429": "rate limited by the provider, or this key's ceiling of streams (`Retry-After`)",
    "500": "the provider has no API key configured",
    "502": "the provider failed or could not be reached",
    "503": "the gateway's or the provider's capacity is reached (`Retry-After`)",
    "504": "the provider stalled",
}


def _provider_operation(
    summary: str, request: JSONSchema, response: JSONSchema, error: str, extra: dict[str, str]
) -> JSONSchema:
    return {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        "responses": {
            "200": {
                "description": "the answer: JSON, or an event stream when `stream` is true",
                "headers": {"x-sluice-session-id": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": response}, **_SSE},
            },
            **_errors(error, {**_PROVIDER_ERRORS, **extra}),
        },
    }


_WEBSOCKET = """The native events over a WebSocket (OpenAPI describes only the handshake).

Server → client, JSON text frames: `{"id": <seq>, "type": "<event type>", "data": {...}}` for
every event after `after`, ids rising (the same ids, types and data as the SSE stream);
`{"type": "ping"}` after a heartbeat interval without a frame; `{"type": "end", "data":
{...}}` once the record is final, then a normal close (1000).

Client → server: `{"ack": <seq>}`, cumulative. The server never has more than `window` events
sent and not acknowledged. Reconnecting with `?after=<last acknowledged id>` resumes with no
gap and no duplicate.

A refusal is one `NativeError` text frame, then a close: 1008 for a bad parameter or a broken
protocol, 4404 for an unknown session, 1011 when the store cannot be read."""

_MODELS = {
    "type": "object",
    "required": ["providers"],
    "properties": {
        "providers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "kind", "available", "reason", "any_model", "models"],
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"enum": list(provider_kinds())},
                    "available": {"type": "boolean", "description": "its key is set"},
                    "reason": {"type": ["string", "null"]},
                    "any_model": {
                        "type": "boolean",
                        "description": "no list: any model name the provider serves",
                    },
                    "models": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}


def _query_number(
    name: str, kind: str, default: float, low: float, high: float, what: str
) -> JSONSchema:
    return {
        "name": name,
        "in": "query",
        "schema": {"type": kind, "default": default, "minimum": low, "maximum": high},
        "description": what,
    }


@cache
def openapi_document() -> JSONSchema:
    """The whole description (built once)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sluice",
            "version": __version__,
            "description": "A streaming gateway for LLM responses: provider-compatible "
            "endpoints, a native session API, health and metrics.",
        },
        "paths": {
            "/v1/chat/completions": {
                "post": _provider_operation(
                    "OpenAI Chat Completions, streaming or not, for every provider kind",
                    _ref("ChatCompletionRequest"),
                    _CHAT_COMPLETION,
                    "OpenAIError",
                    {},
                )
            },
            "/v1/messages": {
                "post": _provider_operation(
                    "Anthropic Messages, streaming or not, for every provider kind",
                    _ref("MessagesRequest"),
                    _MESSAGE,
                    "AnthropicError",
                    {"529": "the provider is overloaded"},
                )
            },
            "/v1/responses": {
                "post": _provider_operation(
                    "OpenAI Responses, streaming or not, for every provider kind",
                    _ref("ResponsesRequest"),
                    _RESPONSE,
                    "OpenAIError",
                    {},
                )
            },
            "/v1/responses/{response_id}": {
                "get": {
                    "summary": "A response as it stands, or (`stream=true`) its events from "
                    "the start or after `starting_after`, then the live ones",
                    "parameters": [
                        _RESPONSE_ID,
                        {"name": "stream", "in": "query", "schema": {"type": "boolean"}},
                        {
                            "name": "starting_after",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0},
                            "description": "the `sequence_number` of the last event received",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the response object, or its event stream",
                            "headers": {"x-sluice-session-id": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": _RESPONSE}, **_SSE},
                        },
                        **_errors(
                            "OpenAIError",
                            {
                                "400": "`starting_after` is not a number, or past the last "
                                "event; or a relayed stream no longer in memory resumed",
                                "404": "no such response (or another tenant's)",
                            },
                        ),
                    },
                }
            },
            "/v1/responses/{response_id}/cancel": {
                "post": {
                    "summary": "Stop: the upstream is closed and the response ends cancelled",
                    "parameters": [_RESPONSE_ID],
                    "responses": {
                        "200": _json(_RESPONSE, "the response as it ended"),
                        **_errors(
                            "OpenAIError",
                            {
                                "403": "a viewer's credential may not Stop",
                                "404": "no such response (or another tenant's)",
                            },
                        ),
                    },
                }
            },
            "/v1/models": {
                "get": _model_operation(
                    "The models this caller may use, as `provider/model` ids",
                    [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                            "description": "Anthropic's page size (20 unless given)",
                        },
                        {"name": "after_id", "in": "query", "schema": {"type": "string"}},
                        {"name": "before_id", "in": "query", "schema": {"type": "string"}},
                    ],
                    _MODEL_LIST,
                    {"400": "an Anthropic paging query names no listed model", **_MODEL_AUTH},
                )
            },
            "/v1/models/{model_id}": {
                "get": _model_operation(
                    "One model this caller may use",
                    [
                        {
                            "name": "model_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": "`provider/model` (its slash as it is, or %2F)",
                        }
                    ],
                    {"anyOf": [_OPENAI_MODEL, _ANTHROPIC_MODEL]},
                    {"404": "no such model, or not one this caller may use", **_MODEL_AUTH},
                )
            },
            "/api/sessions": {
                "post": {
                    "summary": "Start a session; `Accept: text/event-stream` streams it at once",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("SessionRequest")}},
                    },
                    "responses": {
                        "201": _json(
                            {
                                "type": "object",
                                "required": ["id", "state", "events_url", "record_url"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "state": {"enum": _SESSION_STATES},
                                    "events_url": {"type": "string"},
                                    "record_url": {"type": "string"},
                                },
                            },
                            "the session started",
                        ),
                        "200": {"description": "the session's events", "content": _SSE},
                        **_errors(
                            "NativeError",
                            {
                                k: _PROVIDER_ERRORS[k]
                                for k in ("400", "404", "413", "429", "500", "503")
                            },
                        ),
                    },
                },
                "get": {
                    "summary": "Session records, newest first",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                        {"name": "state", "in": "query", "schema": {"enum": _SESSION_STATES}},
                        {"name": "provider", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["sessions"],
                                "properties": {"sessions": {"type": "array", "items": _RECORD}},
                            },
                            "the records",
                        ),
                        **_errors("NativeError", {"400": "limit is not an integer 1..1000"}),
                    },
                },
            },
            "/api/agents": {
                "get": {
                    "summary": "The agents this caller may run",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["agents"],
                                "properties": {
                                    "agents": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["name", "model", "tools", "max_steps"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "model": {"type": "string"},
                                                "tools": _STRING_LIST,
                                                "max_steps": {"type": "integer"},
                                            },
                                        },
                                    }
                                },
                            },
                            "the agents",
                        )
                    },
                }
            },
            "/api/agents/{name}/runs": {
                "post": _run_operation(
                    "Start an agent's run (a session); `Accept: text/event-stream` streams it",
                    "RunRequest",
                    [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                )
            },
            "/ag-ui/agents/{name}": {
                "post": {
                    "summary": "An agent's run for an AG-UI client: RunAgentInput in, the "
                    "run's AG-UI events out",
                    "parameters": [_AGENT_NAME],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("AGUIRunInput")}},
                    },
                    "responses": {
                        "200": {
                            "description": "AG-UI events, `data: <json>` each: RUN_STARTED, "
                            "steps, messages, tool calls and results, RUN_FINISHED or "
                            "RUN_ERROR",
                            "content": _SSE,
                        },
                        **_errors("NativeError", _FRONT_END_ERRORS),
                    },
                }
            },
            "/api/agents/{name}/ui": {
                "post": {
                    "summary": "An agent's run for an AI SDK chat (useChat): the transport's "
                    "request in, the UI message stream out",
                    "parameters": [_AGENT_NAME],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ChatRequest")}},
                    },
                    "responses": {
                        "200": {
                            "description": "UI message stream chunks, `data: <json>` each, "
                            "then `data: [DONE]` (header `x-vercel-ai-ui-message-stream: v1`)",
                            "content": _SSE,
                        },
                        **_errors("NativeError", _FRONT_END_ERRORS),
                    },
                }
            },
            "/api/agents/{name}/ui/{chat_id}/stream": {
                "get": {
                    "summary": "The chat's run under way, as the UI message stream from its "
                    "start (the AI SDK's resume)",
                    "parameters": [
                        _AGENT_NAME,
                        {
                            "name": "chat_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {"description": "the UI message stream", "content": _SSE},
                        "204": {"description": "the chat has no run under way"},
                        **_errors("NativeError", {"404": "no such agent (unknown_agent)"}),
                    },
                }
            },
            "/api/conversations/{conversation_id}": {
                "get": {
                    "summary": "A conversation: its history and its runs",
                    "parameters": [_CONVERSATION_ID],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["id", "model", "messages", "sessions"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "agent": {"type": ["string", "null"]},
                                    "model": {"type": "string"},
                                    "messages": {"type": "array"},
                                    "sessions": _STRING_LIST,
                                },
                            },
                            "the conversation",
                        ),
                        **_errors("NativeError", {"404": "no such conversation"}),
                    },
                }
            },
            "/api/conversations/{conversation_id}/turns": {
                "post": _run_operation(
                    "The conversation's next turn, run by its agent or model",
                    "TurnRequest",
                    [_CONVERSATION_ID],
                )
            },
            "/api/sessions/{session_id}": {
                "get": {
                    "summary": "One session's record",
                    "parameters": [_SESSION_ID],
                    "responses": {
                        "200": _json(_RECORD, "the record"),
                        **_errors("NativeError", {"404": "no such session"}),
                    },
                }
            },
            "/api/sessions/{session_id}/events": {
                "get": {
                    "summary": "The session's events, then its live tail; resumable",
                    "parameters": [
                        _SESSION_ID,
                        {
                            "name": "after",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 10**15 - 1},
                            "description": "resume after this event id",
                        },
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "schema": {"type": "string", "pattern": "^[0-9]{1,15}$"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "text, reasoning, signature, tool_call.*, usage, "
                            "finish or error events with SSE ids, then `end`",
                            "content": _SSE,
                        },
                        **_errors(
                            "NativeError",
                            {
                                "400": "after or Last-Event-ID is not a non-negative "
                                "integer of at most 15 digits (invalid_request), or is past "
                                "the session's last event (resume_beyond_log)",
                                "404": "no such session",
                            },
                        ),
                    },
                }
            },
            "/api/sessions/{session_id}/cancel": {
                "post": {
                    "summary": "Stop: close the upstream connection",
                    "parameters": [_SESSION_ID],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["id", "cancelled", "state"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "cancelled": {"type": "boolean"},
                                    "state": {"enum": _SESSION_STATES},
                                },
                            },
                            "the session, and whether this call stopped it",
                        ),
                        **_errors("NativeError", {"404": "no such live session"}),
                    },
                }
            },
            "/api/sessions/{session_id}/retry": {
                "post": {
                    "summary": "Recover: a new attempt of an errored or cancelled session",
                    "parameters": [_SESSION_ID],
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "required": ["id", "state", "attempt", "events_url"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "state": {"enum": _SESSION_STATES},
                                    "attempt": {"type": "integer"},
                                    "events_url": {"type": "string"},
                                },
                            },
                            "the new attempt started",
                        ),
                        **_errors(
                            "NativeError",
                            {
                                "404": "no such session in memory",
                                "409": "the session is not errored or cancelled",
                            },
                        ),
                    },
                }
            },
            "/api/sessions/{session_id}/ws": {
                "get": {
                    "summary": "The session's events over a WebSocket, with an acknowledged "
                    "flow-control window; resumable",
                    "description": _WEBSOCKET,
                    "parameters": [
                        _SESSION_ID,
                        {
                            "name": "after",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "default": 0},
                            "description": "the last event id the client already has",
                        },
                        {
                            "name": "window",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 1024,
                                "default": 64,
                            },
                            "description": "events that may be sent and not yet acknowledged",
                        },
                        {
                            "name": "Upgrade",
                            "in": "header",
                            "required": True,
                            "schema": {"const": "websocket"},
                        },
                    ],
                    "responses": {
                        "101": {
                            "description": "the WebSocket handshake: then the frames described "
                            "above (a refusal is one NativeError text frame, then a close)",
                        }
                    },
                }
            },
            "/api/models": {
                "get": {
                    "summary": "The providers and models the chat page offers (never a key, a "
                    "key's name or a base URL)",
                    "responses": {"200": _json(_MODELS, "the configured providers")},
                }
            },
            "/api/diagnostics/stream": {
                "get": {
                    "summary": "A timestamped test stream for `sluice doctor` (no session, no "
                    "upstream): `hello`, then `events` ticks, `idle` seconds of heartbeats, "
                    "`done`",
                    "parameters": [
                        _query_number("events", "integer", 20, 0, 1000, "tick events"),
                        _query_number("interval", "number", 0.25, 0, 10, "seconds between ticks"),
                        _query_number("idle", "number", 0, 0, 900, "seconds of heartbeats only"),
                        _query_number("pad", "integer", 0, 0, 65536, "bytes of padding per event"),
                    ],
                    "responses": {
                        "200": {
                            "description": "`hello`, `tick` and `done` events, each `data` a "
                            "JSON object with `seq` and `sent_at` (the gateway's clock, in "
                            "seconds), and `: ping` heartbeats",
                            "content": _SSE,
                        },
                        **_errors("NativeError", {"400": "a parameter out of its bounds"}),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["status", "live_sessions"],
                                "properties": {
                                    "status": {"const": "ok"},
                                    "live_sessions": {"type": "integer", "minimum": 0},
                                },
                            },
                            "the gateway is up",
                        )
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "the text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "ChatCompletionRequest": _CHAT_REQUEST,
                "MessagesRequest": _MESSAGES_REQUEST,
                "ResponsesRequest": _RESPONSES_REQUEST,
                "SessionRequest": _NATIVE_REQUEST,
                "RunRequest": _RUN_REQUEST,
                "TurnRequest": _TURN_REQUEST,
                "AGUIRunInput": _AGUI_INPUT,
                "ChatRequest": _CHAT_REQUEST,
                "OpenAIError": _OPENAI_ERROR,
                "AnthropicError": _ANTHROPIC_ERROR,
                "NativeError": _NATIVE_ERROR,
            }
        },
    }


async def openapi_endpoint(request: Request) -> Response:
    return Response(orjson.dumps(openapi_document()), media_type="application/json")
