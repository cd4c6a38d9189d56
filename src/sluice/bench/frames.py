"""The mock's wire bytes: OpenAI Chat and Anthropic Messages SSE frames, and HTTP chunking.

No I/O. Everything but the text of a delta is encoded once per stream; a delta is a prefix,
16 bytes of text and a suffix. The text is a marker, ``t<index>:<send time>``: the delta's
index (mod 1000) and the mock's ``perf_counter`` at sending, in microseconds (mod 1e11). It
survives any gateway that relays the text, re-encoded or not, and lets the load generator tell
a lost or reordered delta, and the time each one spent in flight, without parsing JSON.
"""

from __future__ import annotations

import re
from typing import Protocol

import orjson

#: ``t042:01234567890``: 16 bytes, the size of a typical token's text delta.
MARKER = re.compile(rb"t(\d{3}):(\d{11})")
MARKER_PERIOD_US = 10**11
TEXT_BYTES = 16
PROMPT_TOKENS = 12

#: The request path that selects each wire format.
FORMAT_PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages"}


def marker(index: int, sent_us: int) -> bytes:
    return b"t%03d:%011d" % (index % 1000, sent_us % MARKER_PERIOD_US)


def http_chunk(payload: bytes) -> bytes:
    """One chunk of the HTTP/1.1 chunked transfer coding (RFC 9112, 7.1)."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


LAST_CHUNK = b"0\r\n\r\n"


def response_head(*, close: bool) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\n"
        b"content-type: text/event-stream; charset=utf-8\r\n"
        b"cache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n" + (b"connection: close\r\n" if close else b"") + b"\r\n"
    )


class StreamFrames(Protocol):
    """One stream's SSE frames: what opens it, each text delta, and what ends it."""

    def opening(self) -> bytes: ...

    def delta(self, index: int, sent_us: int) -> bytes: ...

    def closing(self, deltas: int) -> bytes: ...


class ChatFrames:
    """``chat.completion.chunk`` frames shaped like OpenAI's (see ``sluice.sim.formats.chat``):
    the role chunk, content deltas, a chunk with ``finish_reason``, the usage chunk
    (``choices: []``) and ``data: [DONE]``."""

    def __init__(self, model: str) -> None:
        head = orjson.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "system_fingerprint": "fp_bench",
            }
        )
        self._head = b"data: " + head[:-1] + b',"choices":'
        self._delta_prefix = self._head + b'[{"index":0,"delta":{"content":"'
        self._delta_suffix = b'"},"logprobs":null,"finish_reason":null}]}\n\n'

    def _chunk(self, delta: object, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._head + orjson.dumps([choice]) + b"}\n\n"

    def opening(self) -> bytes:
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def delta(self, index: int, sent_us: int) -> bytes:
        return self._delta_prefix + marker(index, sent_us) + self._delta_suffix

    def closing(self, deltas: int) -> bytes:
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": deltas,
            "total_tokens": PROMPT_TOKENS + deltas,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        return (
            self._chunk({}, "stop")
            + self._head
            + b'[],"usage":'
            + orjson.dumps(usage)
            + b"}\n\n"
            + b"data: [DONE]\n\n"
        )


def _event(payload: dict[str, object]) -> bytes:
    name = str(payload["type"]).encode()
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class MessagesFrames:
    """Anthropic Messages events: ``message_start``, one text block (with the ``ping`` the
    real API sends after the first block start), ``message_delta`` with usage, ``message_stop``."""

    _DELTA_PREFIX = (
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'
    )
    _DELTA_SUFFIX = b'"}}\n\n'

    def __init__(self, model: str) -> None:
        self._model = model

    def opening(self) -> bytes:
        message: dict[str, object] = {
            "id": "msg_01bench",
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": PROMPT_TOKENS,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        }
        return (
            _event({"type": "message_start", "message": message})
            + _event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                }
            )
            + b'event: ping\ndata: {"type": "ping"}\n\n'
        )

    def delta(self, index: int, sent_us: int) -> bytes:
        return self._DELTA_PREFIX + marker(index, sent_us) + self._DELTA_SUFFIX

    def closing(self, deltas: int) -> bytes:
        return (
            _event({"type": "content_block_stop", "index": 0})
            + _event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": deltas},
                }
            )
            + _event({"type": "message_stop"})
        )


def frames_for(fmt: str, model: str) -> StreamFrames:
    if fmt == "messages":
        return MessagesFrames(model)
    return ChatFrames(model)
