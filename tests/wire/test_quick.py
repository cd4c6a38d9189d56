"""The adapters' shortcut (``quick``, the C module ``sluice.wire._scan``) against the general
path: for a piece it takes, the same one event and the same adapter state as the SSE decoder
and ``feed`` give; for a piece it refuses, None. The fuzzer (``tests/fuzz/test_quick_fuzz.py``)
tries the same on generated and damaged pieces."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import pytest

from sluice.bench.frames import frames_for
from sluice.events import Event, ReasoningDelta, TextDelta
from sluice.sse import SSEDecoder
from sluice.wire.anthropic_messages import MessagesStreamAdapter
from sluice.wire.openai_chat import ChatStreamAdapter
from sluice.wire.openai_responses import ResponsesStreamAdapter
from tests.wire.wire_replay import Adapter, adapter_for, transcript, transcripts


def test_the_c_module_is_built() -> None:
    try:
        module = importlib.import_module("sluice.wire._scan")
    except ImportError as exc:  # pragma: no cover - the message is the point
        pytest.fail(
            "the C module sluice.wire._scan is not built, so every relayed piece would take "
            f"the general path ({exc}); `make setup` builds it (it needs gcc and the Python "
            "headers)"
        )
    assert Path(module.__file__ or "").suffix == ".so"


def state(value: Any) -> Any:
    """An adapter's state as plain data, to compare two adapters."""
    if hasattr(type(value), "__slots__"):
        slots = [s for klass in type(value).__mro__ for s in getattr(klass, "__slots__", ())]
        return (type(value).__name__, {s: state(getattr(value, s)) for s in slots})
    if isinstance(value, dict):
        return {k: state(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [state(v) for v in value]
    return value


def idle_decoder() -> SSEDecoder:
    decoder = SSEDecoder(keep_raw=True)
    decoder.decode(b"data: first\n\n")  # past the stream's start (and its byte order mark)
    assert decoder.idle
    return decoder


def agrees(adapter: Adapter, piece: bytes) -> Event | None:
    """``adapter.quick(piece)`` on a copy of ``adapter``, checked against the general path on
    another copy; returns what ``quick`` gave."""
    general, quick = copy.deepcopy(adapter), copy.deepcopy(adapter)
    frames = idle_decoder().frames(piece)
    expected: list[Event] = []
    for event, data, _raw in frames:
        expected += general.feed(event, data)
    got = quick.quick(piece)
    if got is not None:
        assert [got] == expected, piece
        assert [raw for _, _, raw in frames] == [piece], "the piece is one whole event"
        assert state(quick) == state(general), piece
    return got


def started(kind: str) -> Adapter:
    """An adapter of ``kind`` past its stream's first frames."""
    adapter: Adapter
    if kind == "chat":
        adapter = ChatStreamAdapter()
        adapter.feed("message", '{"id":"c1","model":"m","choices":[{"index":0,"delta":{}}]}')
    elif kind == "messages":
        adapter = MessagesStreamAdapter()
        adapter.feed(
            "message_start",
            '{"type":"message_start","message":{"id":"m1","model":"m","usage":{}}}',
        )
    else:
        adapter = ResponsesStreamAdapter()
        adapter.feed("message", '{"type":"response.created","response":{"id":"r","model":"m"}}')
    return adapter


def chat(delta: str, extra: str = "", choice: str = "", prefix: bytes = b"data: ") -> bytes:
    body = f'{{"id":"c1"{extra},"choices":[{{"index":0,"delta":{delta}{choice}}}]}}'
    return prefix + body.encode() + b"\n\n"


def test_the_benchmark_streams_deltas_take_the_shortcut() -> None:
    for fmt, kind in (("chat", "chat"), ("messages", "messages")):
        piece = frames_for(fmt, "mock/paced").delta(7, 1_000_000)
        assert agrees(started(kind), piece) == TextDelta("t007:00001000000")


@pytest.mark.parametrize(
    ("piece", "event"),
    [
        (chat('{"content":"Hello"}'), TextDelta("Hello")),
        (chat('{"content":"Hi"}', prefix=b"data:"), TextDelta("Hi")),
        (chat('{"content":"x"}', prefix=b"event: whatever\ndata: "), TextDelta("x")),
        (chat('{"role":"assistant","content":"x","refusal":null}'), TextDelta("x")),
        (chat('{"content":"a\\nb\\t\\"c\\"\\\\ \\/"}'), TextDelta('a\nb\t"c"\\ /')),
        (chat('{"content":"\\u00e9\\u4e2d\\ud83d\\ude00\\u0000"}'), TextDelta("é中😀\x00")),
        (chat('{"content":"café 中 😀"}'), TextDelta("café 中 😀")),
        (chat('{"content":"x"}', choice=',"finish_reason":null,"logprobs":null'), TextDelta("x")),
        (chat('{"content":"x","tool_calls":null}', extra=',"usage":null'), TextDelta("x")),
        (chat('{"reasoning_content":"hm"}'), ReasoningDelta("hm")),
        (chat('{"reasoning":"hm","content":null}'), ReasoningDelta("hm")),
        (chat('{"reasoning_content":"a","reasoning":"b"}'), ReasoningDelta("a")),
        (chat('{"reasoning_content":"","reasoning":"b"}'), ReasoningDelta("b")),
        (chat(' { "content" : "x" } '), TextDelta("x")),
        (
            chat('{"content":"x"}', extra=',"n":[1,-2.5e-3,0.25,true,false,null,{"a":[]}]'),
            TextDelta("x"),
        ),
        (chat('{"content":"' + "long " * 300 + '\\n"}'), TextDelta("long " * 300 + "\n")),
    ],
)
def test_chat_pieces_the_shortcut_takes(piece: bytes, event: Event) -> None:
    assert agrees(started("chat"), piece) == event


@pytest.mark.parametrize(
    "piece",
    [
        chat('{"role":"assistant","content":""}'),  # no delta at all
        chat('{"content":null}'),
        chat('{"content":"x","reasoning_content":"y"}'),  # two events
        chat('{"content":"x"}', choice=',"finish_reason":"stop"'),
        chat('{"content":"x","tool_calls":[]}'),
        chat('{"content":"x"}', extra=',"usage":{"prompt_tokens":1}'),
        chat('{"content":"x"}', extra=',"error":null,"error":null'),
        chat('{"content":"x","content":"y"}'),  # a key twice
        chat('{"cont\\u0065nt":"x"}'),  # a key with an escape
        chat('{"content":5}'),
        chat('{"content":"\\ud800"}'),  # a lone surrogate
        chat('{"content":"\\udc00x"}'),
        chat('{"content":"x"}', extra=',"big":123456789012345678901'),
        chat('{"content":"x"}', extra=',"e":1e400'),
        chat('{"content":"x"}', extra=',"d":' + "[" * 40 + "]" * 40),
        chat('{"content":"x"}', extra=',"bad":01'),
        chat('{"content":"x"}', extra=",trailing"),
        chat('{"content":"x",}'),
        chat('{"content":"x\x01"}'),  # a raw control character
        b'data: {"id":"c","choices":[{"index":1,"delta":{"content":"x"}}]}\n\n',
        b'data: {"id":"c","choices":[{"index":0.0,"delta":{"content":"x"}}]}\n\n',
        b'data: {"id":"c","choices":[]}\n\n',
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}},{"a":]}\n\n',
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]} x\n\n',
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"\xff"}}]}\n\n',
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"\xed\xa0\x80"}}]}\n\n',
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"\xc0\xaf"}}]}\n\n',
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}\r\n\r\n',
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}\n',
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}\n\ndata: {}\n\n',
        b'id: 7\ndata: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}\n\n',
        b': hi\ndata: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}\n\n',
        b"data: [DONE]\n\n",
        b"data: \n\n",
        b"\n\n",
        b"",
    ],
)
def test_chat_pieces_the_shortcut_refuses(piece: bytes) -> None:
    assert agrees(started("chat"), piece) is None


def test_chat_takes_the_general_path_until_the_response_started() -> None:
    piece = chat('{"content":"Hello"}')
    assert agrees(ChatStreamAdapter(), piece) is None
    assert agrees(started("chat"), piece) == TextDelta("Hello")


def test_no_shortcut_after_the_end() -> None:
    for kind, done in (
        ("chat", ("message", "[DONE]")),
        ("messages", ("message_stop", '{"type":"message_stop"}')),
        ("responses", ("message", '{"type":"response.completed","response":{}}')),
    ):
        adapter = started(kind)
        adapter.feed(*done)
        assert adapter.done
        piece = {
            "chat": chat('{"content":"late"}'),
            "messages": frames_for("messages", "mock/paced").delta(1, 1),
            "responses": b'data: {"type":"response.output_text.delta","delta":"late"}\n\n',
        }[kind]
        assert agrees(adapter, piece) is None


def messages(body: str, event: bytes = b"event: content_block_delta\n") -> bytes:
    return event + b"data: " + body.encode() + b"\n\n"


@pytest.mark.parametrize(
    ("piece", "event"),
    [
        (
            messages(
                '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}'
            ),
            TextDelta("Hi", 0),
        ),
        (
            messages(
                '{"type":"content_block_delta","index":3,"delta":{"type":"thinking_delta","thinking":"hm"}}'
            ),
            ReasoningDelta("hm", 3),
        ),
        (
            messages(
                '{"delta":{"text":"a\\u00e9","type":"text_delta"},"index":-1,"type":"content_block_delta"}',
                b"",
            ),
            TextDelta("aé", -1),
        ),
        (
            messages(
                '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}',
                b"event: message_stop\n",
            ),
            TextDelta("x", 0),
        ),
    ],
)
def test_messages_pieces_the_shortcut_takes(piece: bytes, event: Event) -> None:
    assert agrees(started("messages"), piece) == event


@pytest.mark.parametrize(
    "piece",
    [
        messages(
            '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}',
            b"event: ping\n",
        ),
        messages(
            '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}'
        ),
        messages('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}'),
        messages('{"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}'),
        messages(
            '{"type":"content_block_delta","index":"0","delta":{"type":"text_delta","text":"x"}}'
        ),
        messages(
            '{"type":"content_block_delta","index":0.5,"delta":{"type":"text_delta","text":"x"}}'
        ),
        messages(
            '{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}'
        ),
        messages(
            '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"s"}}'
        ),
        messages(
            '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","type":"text_delta"}}'
        ),
        messages('{"type":"message_delta","index":0,"delta":{"type":"text_delta","text":"x"}}'),
        messages('{"index":0,"delta":{"type":"text_delta","text":"x"}}'),
        messages('{"type":"content_block_delta","index":0,"delta":[]}'),
    ],
)
def test_messages_pieces_the_shortcut_refuses(piece: bytes) -> None:
    assert agrees(started("messages"), piece) is None


@pytest.mark.parametrize(
    ("piece", "event"),
    [
        (
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            b'"item_id":"msg_1","output_index":1,"content_index":0,"delta":"Hi","logprobs":[],'
            b'"sequence_number":5}\n\n',
            TextDelta("Hi", 1),
        ),
        (
            b'data: {"type":"response.reasoning_summary_text.delta","delta":"hm"}\n\n',
            ReasoningDelta("hm", 0),
        ),
        (
            b'data: {"type":"response.reasoning_text.delta","output_index":0,"delta":"h"}\n\n',
            ReasoningDelta("h", 0),
        ),
    ],
)
def test_responses_pieces_the_shortcut_takes(piece: bytes, event: Event) -> None:
    assert agrees(started("responses"), piece) == event


@pytest.mark.parametrize(
    "piece",
    [
        b'data: {"type":"response.output_text.delta","delta":""}\n\n',
        b'data: {"type":"response.output_text.delta","delta":"x","output_index":-1}\n\n',
        b'data: {"type":"response.output_text.delta","delta":"x","output_index":1.0}\n\n',
        b'data: {"type":"response.output_text.delta","delta":null}\n\n',
        b'data: {"type":"response.function_call_arguments.delta","delta":"{"}\n\n',
        b'data: {"type":"response.output_text.delta","delta":"x","delta":"y"}\n\n',
    ],
)
def test_responses_pieces_the_shortcut_refuses(piece: bytes) -> None:
    assert agrees(started("responses"), piece) is None


@pytest.mark.parametrize("path", transcripts(), ids=lambda p: p.name)
def test_recorded_streams_frame_by_frame_give_the_same_events(path: Path) -> None:
    """Each transcript, one piece per event as providers send them, through both paths."""
    pieces = [raw for _, _, raw in SSEDecoder(keep_raw=True).frames(transcript(path))]
    quick_adapter, general_adapter = adapter_for(path), adapter_for(path)
    decoder = SSEDecoder(keep_raw=True)
    quick_events: list[Event] = []
    general_events: list[Event] = []
    took = 0
    for piece in pieces:
        delta = quick_adapter.quick(piece) if decoder.idle else None
        if delta is not None:
            took += 1
            quick_events.append(delta)
        else:
            for event, data, _raw in decoder.frames(piece):
                quick_events += quick_adapter.feed(event, data)
    for event, data, _raw in SSEDecoder().frames(b"".join(pieces)):
        general_events += general_adapter.feed(event, data)
    assert quick_events + quick_adapter.close() == general_events + general_adapter.close()
    assert state(quick_adapter) == state(general_adapter)
    deltas = sum(type(e) in (TextDelta, ReasoningDelta) for e in general_events)
    if path.name.startswith("gemini-"):
        # Gemini has no shortcut: every chunk carries usageMetadata beside its text
        assert took == 0
    elif deltas > 2:  # a stream with more than its first delta or two: most take the shortcut
        assert took >= deltas // 2, (took, deltas)


# -- the SSE framings of the web-platform-tests vectors (tests/test_sse.py) ----------------
#
# The shortcut reads the SSE framing itself. Around a plain delta, every framing the EventSource
# format vectors exercise (field names, the space after the colon, line ends, comments, BOMs,
# ``event``, ``id`` and ``retry`` lines, missing or extra blank lines): where the shortcut
# answers, it answers as the decoder and ``feed`` do, and it answers for the shapes it is for.

_JSON = {
    "chat": b'{"id":"c1","choices":[{"index":0,"delta":{"content":"x"}}]}',
    "messages": b'{"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"x"}}',
}
_FRAMINGS = [
    (b"data:", b"\n\n", True),
    (b"data: ", b"\n\n", True),
    (b"data:  ", b"\n\n", None),  # (a second space is the JSON's)
    (b"data:\t", b"\n\n", None),
    (b"event: \ndata:", b"\n\n", None),
    (b"event:content_block_delta\ndata:", b"\n\n", True),
    (b"Data:", b"\n\n", False),
    (b"data\0:", b"\n\n", False),
    (b" data:", b"\n\n", False),
    (b"da-ta:", b"\n\n", False),
    (b"\xef\xbb\xbfdata:", b"\n\n", False),
    (b"data:", b"\r\n\r\n", False),
    (b"data:", b"\r\r", False),
    (b"data:", b"\r\n\r", False),
    (b"data:", b"\n\r\n", False),
    (b"data:", b"\n", False),
    (b"data:", b"\n\n\n", False),
    (b":\0\ndata:", b"\n\n", False),
    (b":comment\rdata:", b"\n\n", False),
    (b"id: \xe2\x80\xa6\ndata:", b"\n\n", False),
    (b"id\ndata:", b"\n\n", False),
    (b"retry:03000\ndata:", b"\n\n", False),
    (b"retry\ndata:", b"\n\n", False),
    (b"foobar:xxx\njustsometext\ndata:", b"\n\n", False),
]


@pytest.mark.parametrize("kind", list(_JSON))
@pytest.mark.parametrize(("head", "tail", "taken"), _FRAMINGS)
def test_the_sse_framings_of_the_conformance_vectors(
    kind: str, head: bytes, tail: bytes, taken: bool | None
) -> None:
    got = agrees(started(kind), head + _JSON[kind] + tail)
    if taken is not None:  # None: either way, as long as it agrees
        assert (got is not None) is taken
