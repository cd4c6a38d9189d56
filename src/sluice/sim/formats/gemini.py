"""Google Gemini (``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` and
``:generateContent``): chunks, bodies and errors, shaped like the recorded Gemini streams.

The model and the streaming come from the path, not the body. Each chunk is one
``data: <json>`` line and a blank line, CRLF as Google writes them, no ``event:`` line and
no ``[DONE]``: the stream ends with the body. Every chunk carries ``usageMetadata``
(cumulative); the last one carries ``finishReason``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from sluice.sim.conversation import (
    ChoiceMode,
    Conversation,
    DeclaredTool,
    ToolChoice,
    ToolResult,
    Turn,
    as_list,
    as_mapping,
    json_text,
)
from sluice.sim.formats.base import ErrorKind, ErrorReply, Exchange, dumps
from sluice.sim.script import (
    ConnectionReset,
    Event,
    Finish,
    MalformedFrame,
    ReasoningDelta,
    StopReason,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolCallStart,
    Transcript,
)

#: The API versions the simulator answers under (``/v1beta/models/…`` and ``/v1/models/…``).
VERSIONS = ("/v1beta/", "/v1/")
STREAM_METHOD = ":streamGenerateContent"
COMPLETE_METHOD = ":generateContent"

FINISH_REASONS: Mapping[StopReason, str] = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "tool_calls": "STOP",  # Gemini has no finish reason of its own for a tool call
}
STREAM_ERROR_MESSAGE = "An internal error has occurred. Please retry or report in troubleshooting"

_ERRORS: Mapping[ErrorKind, tuple[int, str]] = {
    "rate_limit": (429, "RESOURCE_EXHAUSTED"),
    "overloaded": (503, "UNAVAILABLE"),
    "model_not_found": (404, "NOT_FOUND"),
    "invalid_request": (400, "INVALID_ARGUMENT"),
    "request_too_large": (413, "INVALID_ARGUMENT"),
    "server_error": (500, "INTERNAL"),
    "authentication": (401, "UNAUTHENTICATED"),
}

#: What Google answers when an API key comes as an OAuth bearer token.
BEARER_REFUSED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential."
)


def route(path: str) -> tuple[str, bool] | None:
    """``(model, stream)`` for a Gemini path (``/v1beta/models/{model}:method``), else None.
    The model may hold slashes (``sim/support``) and may be written ``models/…`` twice over
    (``/v1beta/models/models/x``), as clients that pass the resource name do."""
    for version in VERSIONS:
        if path.startswith(version + "models/"):
            rest = path[len(version) + len("models/") :]
            break
    else:
        return None
    model, colon, method = rest.rpartition(":")
    if not colon or not model:
        return None
    if ":" + method == STREAM_METHOD:
        return model.removeprefix("models/"), True
    if ":" + method == COMPLETE_METHOD:
        return model.removeprefix("models/"), False
    return None


def signature(exchange: Exchange, what: str) -> str:
    """A stand-in for the opaque ``thoughtSignature`` of a part."""
    digest = hashlib.sha512(f"{exchange.uid}:{what}".encode()).digest()
    return base64.b64encode(digest).decode()


def response_id(exchange: Exchange) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(exchange.uid)[:17]).decode().rstrip("=")


def include_thoughts(body: Mapping[str, Any]) -> bool:
    config = body.get("generationConfig") or body.get("generation_config")
    if not isinstance(config, Mapping):
        return False
    thinking = config.get("thinkingConfig") or config.get("thinking_config")
    if not isinstance(thinking, Mapping):
        return False
    value = thinking.get("includeThoughts", thinking.get("include_thoughts"))
    return value is True


def usage(exchange: Exchange, transcript: Transcript, *, final: bool) -> dict[str, Any]:
    """``usageMetadata``: the answer's tokens without the thoughts, the thoughts apart; early
    chunks leave ``candidatesTokenCount`` out until there is an answer token, as Google's do."""
    thoughts = transcript.reasoning_tokens
    candidates = transcript.tokens - thoughts
    metadata: dict[str, Any] = {"promptTokenCount": exchange.input_tokens}
    if candidates or final:
        metadata["candidatesTokenCount"] = candidates
    metadata["totalTokenCount"] = exchange.input_tokens + candidates + thoughts
    metadata["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": exchange.input_tokens}]
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    return metadata


class GeminiStream:
    """``GenerateContentResponse`` chunks: one part per chunk.

    Thought parts (``thought: true``) are written only when the request set
    ``thinkingConfig.includeThoughts``; they are counted in ``thoughtsTokenCount`` either way.
    The first answer part after thinking carries a ``thoughtSignature``, and so does a
    response's first function call, as Gemini 3 models send them. A function call goes out
    whole once its arguments are complete (at the next event); a call cut by the token
    budget is never sent (``MAX_TOKENS``). The finishing chunk has an empty text part.
    """

    def __init__(self, exchange: Exchange, transcript: Transcript, *, thoughts: bool) -> None:
        self._exchange = exchange
        self._transcript = transcript
        self._thoughts = thoughts
        self._thought = False  # thinking came, and no answer part has carried its signature
        self._signed_call = False
        self._call: tuple[str, list[str]] | None = None  # the call whose arguments arrive
        self._tail = (
            b',"modelVersion":'
            + dumps(exchange.model)
            + b',"responseId":'
            + dumps(response_id(exchange))
            + b"}\r\n\r\n"
        )

    def encode(self, event: Event) -> bytes:
        frames = b""
        if self._call is not None and not isinstance(event, ToolArgsDelta):
            frames = self._flush_call(cut=isinstance(event, Finish) and event.reason == "length")
        match event:
            case TextDelta(text):
                frames += self._chunk([self._signed({"text": text})])
            case ReasoningDelta(text):
                self._thought = True
                if self._thoughts:
                    frames += self._chunk([{"text": text, "thought": True}])
            case ToolCallStart(_, name):
                self._call = (name, [])
            case ToolArgsDelta(_, fragment):
                if self._call is not None:
                    self._call[1].append(fragment)
            case Finish(reason):
                part = self._signed({"text": ""})
                frames += self._chunk([part], FINISH_REASONS[reason])
            case MalformedFrame():
                # A chunk cut off inside a string: the data line is not JSON.
                frames += b'data: {"candidates": [{"content": {"parts": [{"text": "\r\n\r\n'
            case StreamError():
                error = {"code": 500, "message": STREAM_ERROR_MESSAGE, "status": "INTERNAL"}
                frames += b"data: " + dumps({"error": error}) + b"\r\n\r\n"
            case ConnectionReset():
                pass
        return frames

    def _flush_call(self, *, cut: bool) -> bytes:
        assert self._call is not None
        name, fragments = self._call
        self._call = None
        if cut:
            return b""  # Gemini sends no half call
        try:
            args = orjson.loads("".join(fragments) or "{}")
        except orjson.JSONDecodeError:
            return b""
        part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
        if not self._signed_call:
            self._signed_call = True
            self._thought = False
            part["thoughtSignature"] = signature(self._exchange, "call")
        return self._chunk([part])

    def _signed(self, part: dict[str, Any]) -> dict[str, Any]:
        if self._thought:
            self._thought = False
            part["thoughtSignature"] = signature(self._exchange, "text")
        return part

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None) -> bytes:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        metadata = usage(self._exchange, self._transcript, final=finish is not None)
        head = b'data: {"candidates":' + dumps([candidate]) + b',"usageMetadata":'
        return head + dumps(metadata) + self._tail


class GeminiFormat:
    name = "gemini"
    request_id_header = "x-goog-request-id"
    stream_error: tuple[ErrorKind, str] = ("server_error", STREAM_ERROR_MESSAGE)

    def prompt(self, body: Mapping[str, Any]) -> str:
        texts: list[str] = []
        system = body.get("systemInstruction") or body.get("system_instruction")
        if isinstance(system, Mapping):
            texts += _texts(system)
        elif isinstance(system, str):
            texts.append(system)
        contents = body.get("contents")
        if isinstance(contents, list):
            for content in contents:
                if isinstance(content, Mapping):
                    texts += _texts(content)
        return "\n".join(texts)

    def max_tokens(self, body: Mapping[str, Any]) -> int | None:
        config = body.get("generationConfig") or body.get("generation_config")
        if config is None:
            return None
        if not isinstance(config, Mapping):
            raise ValueError("generationConfig must be an object")
        value = config.get("maxOutputTokens", config.get("max_output_tokens"))
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("generationConfig.maxOutputTokens must be an integer >= 1")
        return value

    def conversation(self, body: Mapping[str, Any]) -> Conversation:
        """``tools[].functionDeclarations``, ``toolConfig.functionCallingConfig``, and the
        ``contents``: ``model`` turns (text, ``functionCall`` parts) and the others (text,
        ``functionResponse`` parts, named by their tool; one whose ``response`` holds an
        ``error`` key failed). Field names may be camelCase or snake_case."""
        tools = []
        for entry in map(as_mapping, as_list(body.get("tools"))):
            declarations = _get(entry, "functionDeclarations", "function_declarations")
            for declaration in map(as_mapping, as_list(declarations)):
                schema = _get(
                    declaration, "parametersJsonSchema", "parameters_json_schema"
                ) or declaration.get("parameters")
                tool = DeclaredTool.of(
                    declaration.get("name"), declaration.get("description"), schema
                )
                if tool is not None:
                    tools.append(tool)
        turns: list[Turn] = []
        for content in map(as_mapping, as_list(body.get("contents"))):
            parts = [as_mapping(part) for part in as_list(content.get("parts"))]
            text = "\n".join(
                part["text"]
                for part in parts
                if isinstance(part.get("text"), str) and part.get("thought") is not True
            )
            if content.get("role") == "model":
                calls = tuple(
                    str(as_mapping(_get(part, "functionCall", "function_call")).get("name"))
                    for part in parts
                    if _get(part, "functionCall", "function_call") is not None
                )
                turns.append(Turn("assistant", text, calls=calls))
                continue
            results = tuple(
                _result(as_mapping(_get(part, "functionResponse", "function_response")))
                for part in parts
                if _get(part, "functionResponse", "function_response") is not None
            )
            turns.append(Turn("user", text, results))
        return Conversation(tuple(tools), _choice(body), tuple(turns))

    def stream(self, exchange: Exchange, transcript: Transcript) -> GeminiStream:
        return GeminiStream(exchange, transcript, thoughts=include_thoughts(exchange.body))

    def render(self, exchange: Exchange, transcript: Transcript) -> bytes:
        parts: list[dict[str, Any]] = []
        if transcript.reasoning_parts and include_thoughts(exchange.body):
            parts.append({"text": transcript.reasoning, "thought": True})
        if transcript.text_parts:
            part: dict[str, Any] = {"text": transcript.text}
            if transcript.reasoning_parts:
                part["thoughtSignature"] = signature(exchange, "text")
            parts.append(part)
        reason = transcript.finish_reason or "stop"
        for position, call in enumerate(transcript.tool_calls):
            try:
                args = orjson.loads(call.arguments or "{}")
            except orjson.JSONDecodeError:
                continue  # cut by the token budget: never sent
            function: dict[str, Any] = {"functionCall": {"name": call.name, "args": args}}
            if position == 0:
                function["thoughtSignature"] = signature(exchange, "call")
            parts.append(function)
        candidate = {
            "content": {"parts": parts, "role": "model"},
            "finishReason": FINISH_REASONS[reason],
            "index": 0,
        }
        body = {
            "candidates": [candidate],
            "usageMetadata": usage(exchange, transcript, final=True),
            "modelVersion": exchange.model,
            "responseId": response_id(exchange),
        }
        return dumps(body)

    def error(self, kind: ErrorKind, message: str) -> ErrorReply:
        status, word = _ERRORS[kind]
        return ErrorReply(
            status, dumps({"error": {"code": status, "message": message, "status": word}})
        )


def _get(value: Mapping[str, Any], camel: str, snake: str) -> Any:
    return value.get(camel, value.get(snake))


_CHOICE_MODES: Mapping[Any, ChoiceMode] = {"NONE": "none", "ANY": "required"}


def _choice(body: Mapping[str, Any]) -> ToolChoice:
    """``toolConfig.functionCallingConfig``: ``mode`` (``NONE``, ``ANY``; ``AUTO`` and
    ``VALIDATED`` leave the choice to the model) and ``allowedFunctionNames``."""
    config = as_mapping(
        _get(
            as_mapping(_get(body, "toolConfig", "tool_config")),
            "functionCallingConfig",
            "function_calling_config",
        )
    )
    mode = config.get("mode")
    allowed = _get(config, "allowedFunctionNames", "allowed_function_names")
    names = frozenset(name for name in as_list(allowed) if isinstance(name, str))
    return ToolChoice(
        _CHOICE_MODES.get(mode.upper() if isinstance(mode, str) else mode, "auto"),
        names or None,
    )


def _result(response: Mapping[str, Any]) -> ToolResult:
    """A ``functionResponse``: its ``response``'s ``error`` (failed) or ``output``, else the
    whole ``response``, as Google describes the object."""
    name = response.get("name")
    name = name if isinstance(name, str) and name else "a tool"
    value = as_mapping(response.get("response"))
    if "error" in value:
        return ToolResult(name, json_text(value["error"]), is_error=True)
    return ToolResult(name, json_text(value.get("output", value)))


def _texts(content: Mapping[str, Any]) -> list[str]:
    parts = content.get("parts")
    if not isinstance(parts, list):
        return []
    return [
        part["text"]
        for part in parts
        if isinstance(part, Mapping) and isinstance(part.get("text"), str)
    ]
