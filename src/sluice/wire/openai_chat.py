"""OpenAI Chat Completions streaming: the adapter (chunks -> events) and encoder (events -> chunks).

Wire facts (the provider's published streaming format): ``data:`` frames only, each a
``chat.completion.chunk``; the stream ends with ``data: [DONE]``; tool calls arrive as
``delta.tool_calls[]`` fragments keyed by ``index`` (id and name only in the first fragment of
an index, several indexes may interleave); ``finish_reason`` arrives in a chunk of its own; with
``stream_options.include_usage`` one more chunk (``choices: []`` and ``usage``) comes before
``[DONE]``. OpenAI-compatible servers (vLLM, DeepSeek, llama.cpp) stream reasoning as
``delta.reasoning_content`` or ``delta.reasoning``.

Scope: only choice ``index`` 0 produces events; ``n > 1`` is not supported (the other choices
are ignored, as are ``logprobs`` and ``delta.refusal``).
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.events import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    FINISH_PAUSE,
    FINISH_REFUSAL,
    FINISH_STOP,
    FINISH_TOOL_CALLS,
    Error,
    Event,
    Finish,
    ReasoningDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)

from ._fold import (
    WireFold,
    chat_shortcut,
    count,
    maybe_count,
    openai_error,
    sub,
    text,
    truncated,
)
from ._toolargs import ToolArgs, whole_text

__all__ = ["ChatStreamAdapter", "ChatStreamEncoder"]

#: finish_reason -> normalised reason; any other word finishes as ``stop`` (raw kept).
_FINISH = {
    "stop": FINISH_STOP,
    "length": FINISH_LENGTH,
    "tool_calls": FINISH_TOOL_CALLS,
    "content_filter": FINISH_CONTENT_FILTER,
    "function_call": FINISH_TOOL_CALLS,  # the deprecated ``functions`` API
}


#: no tool call ended yet (shared: an empty set would be 216 bytes per open stream)
_NONE_CLOSED: frozenset[int] = frozenset()


class ChatStreamAdapter(WireFold):
    """A fold from Chat Completions chunks to normalised events.

    ``Finish`` is held back until ``data: [DONE]`` so that the usage chunk, which comes after
    the ``finish_reason`` chunk, precedes it. ``close()`` after a ``finish_reason`` but without
    ``[DONE]`` (some OpenAI-compatible servers) finishes then; without any ``finish_reason``
    (also at a ``[DONE]`` that follows none) the stream counts as truncated.
    """

    __slots__ = ("_closed", "_finish")

    FORMAT = "OpenAI Chat"
    SHORTCUT = chat_shortcut

    def __init__(self) -> None:
        super().__init__()
        self._finish: str | None = None  # the raw finish_reason, once seen
        self._closed = _NONE_CLOSED  # tool call indexes already ended

    def feed(self, event: str, data: str) -> list[Event]:
        if data.startswith("[DONE]") and not self.done:  # the SDKs test the prefix, too
            self.last_was_usage_only = False
            return self._end()
        return WireFold.feed(self, event, data)  # (no super object per frame)

    def _frame(self, event: str, frame: dict[str, Any]) -> list[Event]:
        error = frame.get("error")
        if error:
            return self._terminate([], openai_error(error))
        out: list[Event] = []
        choices = frame.get("choices")
        if not self._started and (choices or frame.get("id")):
            # Azure sends a first chunk with an empty id and no choices (prompt filter results).
            self._started = True
            out.append(Start(response_id=text(frame, "id"), model=text(frame, "model")))
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    self._choice(choice, out)
                    break
        usage = frame.get("usage")
        if isinstance(usage, dict):
            self.last_was_usage_only = choices == []
            out.append(
                Usage(
                    input_tokens=count(usage, "prompt_tokens"),
                    output_tokens=count(usage, "completion_tokens"),
                    cache_read_tokens=count(sub(usage, "prompt_tokens_details"), "cached_tokens"),
                    reasoning_tokens=count(
                        sub(usage, "completion_tokens_details"), "reasoning_tokens"
                    ),
                    final=self.last_was_usage_only or self._finish is not None,
                )
            )
        return out

    def _choice(self, choice: dict[str, Any], out: list[Event]) -> None:
        delta = sub(choice, "delta")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            out.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if content and isinstance(content, str):
            out.append(TextDelta(content))
        tool_calls = delta.get("tool_calls")
        if tool_calls and isinstance(tool_calls, list):
            for position, fragment in enumerate(tool_calls):
                if isinstance(fragment, dict):
                    self._tool_fragment(position, fragment, out)
        reason = choice.get("finish_reason")
        if reason and isinstance(reason, str) and self._finish is None:
            self._finish = reason
            self._closed = frozenset(self._calls)
            if reason == "length":
                # The output limit cut the calls: incomplete, as the other formats say it,
                # even where the cut arguments happen to parse.
                self._incomplete_calls(out)
            else:
                self._finish_calls(out)

    def _tool_fragment(self, position: int, fragment: dict[str, Any], out: list[Event]) -> None:
        index = maybe_count(fragment, "index")
        if index is None:  # some compatible servers leave it out; the list position stands in
            index = position
        if index in self._closed:
            return
        function = sub(fragment, "function")
        call = self._calls.get(index)
        if call is None:
            call = ToolArgs(index, text(fragment, "id"), text(function, "name"))
            self._calls[index] = call
            out.append(ToolCallStart(index=index, call_id=call.call_id, name=call.name))
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.append(arguments)
            if arguments:
                out.append(ToolCallDelta(index=index, fragment=arguments))

    def _end(self) -> list[Event]:
        """``[DONE]``, or the body ended: finish if a ``finish_reason`` came, else truncated."""
        raw = self._finish
        if raw is None:
            return self._terminate([], truncated("the stream ended without a finish_reason"))
        out: list[Event] = []
        self._finish_calls(out)  # calls that began after the finish_reason chunk
        out.append(Finish(reason=_FINISH.get(raw, FINISH_STOP), raw=raw))
        self.done = True
        return out


def completion_id(value: str) -> str:
    """``value`` as a Chat completion id: it starts with ``chatcmpl-``."""
    return value if value.startswith("chatcmpl-") else "chatcmpl-" + value


#: normalised finish reason -> the finish_reason a Chat client understands.
_FINISH_OUT = {
    FINISH_STOP: b"stop",
    FINISH_LENGTH: b"length",
    FINISH_TOOL_CALLS: b"tool_calls",
    FINISH_CONTENT_FILTER: b"content_filter",
    FINISH_PAUSE: b"stop",
    FINISH_REFUSAL: b"content_filter",
}

#: Error.type -> OpenAI's ``code`` where OpenAI has one (``error.type`` carries Sluice's word).
_ERROR_CODES = {"rate_limited": "rate_limit_exceeded"}


class ChatStreamEncoder:
    """Renders normalised events as Chat Completions chunks (``data: {...}`` frames).

    Every chunk shares one precomputed prefix (id, object, created, model); a frame is that
    prefix, one small delta dict and a constant tail. Tool calls are renumbered 0, 1, 2… in
    order of appearance, whatever the source's index. A tool call that produced no argument
    fragment gets its whole argument text as one fragment at ``ToolCallDone`` (``"{}"`` for
    a tool without arguments, as OpenAI sends). ``close()`` writes the usage chunk (when the
    client asked for usage and usage is known) and ``data: [DONE]``; after an ``Error`` it
    writes nothing. ``Signature`` events are dropped: a chunk has no field for them.

    Ids are the client format's own: the completion id starts ``chatcmpl-`` (the prefix is
    added to one given without it); a tool call keeps the upstream's id, unchanged
    (``call_…`` made up only when the upstream gave none).
    """

    __slots__ = (
        "_args_sent",
        "_choice_head",
        "_closed",
        "_include_usage",
        "_response_id",
        "_started",
        "_tool_index",
        "_usage",
        "_usage_head",
    )

    _TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'

    def __init__(self, response_id: str, model: str, created: int, include_usage: bool) -> None:
        self._response_id = response_id = completion_id(response_id)
        head = orjson.dumps(
            {
                "id": response_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
        )
        head = b"data: " + head[:-1]  # open: choices or usage follow
        self._choice_head = head + b',"choices":[{"index":0,"delta":'
        self._usage_head = head + b',"choices":[],"usage":'
        self._include_usage = include_usage
        self._started = False
        self._closed = False
        self._tool_index: dict[int, int] = {}  # source index -> Chat index
        self._args_sent: list[bool] = []  # by Chat index: a non-empty fragment went out
        self._usage: Usage | None = None

    def encode(self, event: Event) -> bytes:
        if self._closed:
            return b""
        match event:
            case TextDelta(text=chunk):
                return self._start() + self._delta({"content": chunk})
            case ReasoningDelta(text=chunk):
                return self._start() + self._delta({"reasoning_content": chunk})
            case ToolCallStart():
                return self._start() + self._tool_start(event)
            case ToolCallDelta(index=index, fragment=fragment):
                return self._tool_fragment(index, fragment)
            case ToolCallDone():
                return self._tool_done(event)
            case Usage():
                self._usage = event
                return b""
            case Finish(reason=reason):
                word = _FINISH_OUT.get(reason, b"stop")
                return (
                    self._start()
                    + self._choice_head
                    + b'{},"logprobs":null,"finish_reason":"'
                    + word
                    + b'"}]}\n\n'
                )
            case Error():
                self._closed = True
                error = {
                    "message": event.message,
                    "type": event.type,
                    "param": None,
                    "code": _ERROR_CODES.get(event.type),
                }
                return b"data: " + orjson.dumps({"error": error}) + b"\n\n"
            case Start():
                return self._start()
        return b""

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        usage = self._usage
        if not (self._include_usage and usage is not None):
            return b"data: [DONE]\n\n"
        body = {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        }
        return self._usage_head + orjson.dumps(body) + b"}\n\ndata: [DONE]\n\n"

    def _start(self) -> bytes:
        """The role chunk, once, before anything else."""
        if self._started:
            return b""
        self._started = True
        return self._delta({"role": "assistant", "content": ""})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._choice_head + orjson.dumps(delta) + self._TAIL

    def _tool_start(self, event: ToolCallStart) -> bytes:
        index = self._tool_index.get(event.index)
        if index is not None:
            return b""  # a repeated start says nothing new
        index = self._tool_index[event.index] = len(self._args_sent)
        self._args_sent.append(False)
        function = {"name": event.name, "arguments": ""}
        # The upstream's id, unchanged (it comes back with the tool's result); one is made up
        # only where the upstream gave none.
        call_id = event.call_id or f"call_{self._response_id.removeprefix('chatcmpl-')}_{index}"
        call = {"index": index, "id": call_id, "type": "function", "function": function}
        return self._delta({"tool_calls": [call]})

    def _tool_fragment(self, source_index: int, fragment: str) -> bytes:
        index = self._tool_index.get(source_index)
        if index is None or not fragment:
            return b""
        self._args_sent[index] = True
        return self._delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def _tool_done(self, event: ToolCallDone) -> bytes:
        index = self._tool_index.get(event.index)
        if index is None:
            return b""
        out = b"" if self._args_sent[index] else self._tool_fragment(event.index, whole_text(event))
        del self._tool_index[event.index]  # ended: its index, used again, is a new call
        return out
