"""Fuzzing the adapters' shortcut (``quick``, the C module ``sluice.wire._scan``).

The shortcut is held to the general path: for any piece it takes, the same one event and the
same adapter state as the SSE decoder and ``feed`` give (``tests/wire/test_quick.py``'s
``agrees``). The pieces are delta frames of each format built with every field the adapters
read set to any JSON value, keys added, repeated and escaped, spacing and escaping varied,
lone surrogates and broken UTF-8 written raw; then the same pieces damaged byte by byte; and
the recorded streams, broken frame by frame as in ``test_adapter_fuzz.py``, relayed one piece
per frame the way the session's pump does, shortcut first. A last property checks the other
side: a plain delta frame, however it is spaced, escaped or padded with other fields, is taken.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice import events as ev
from sluice.sse import SSEDecoder, encode_event
from tests.fuzz.budget import OUTCOMES, fuzz, tally
from tests.fuzz.test_adapter_fuzz import ADAPTERS, Pair, hostile_streams, json_values
from tests.wire.test_quick import agrees, started

#: text with what JSON escapes and UTF-8 make hard: quotes, backslashes, control characters,
#: characters of every width, and lone surrogates
tricky_text = st.text(
    st.characters(codec=None, exclude_categories=())
    | st.sampled_from(['"', "\\", "/", "\n", "\x00", "\x1f", "\x7f", "é", "中", "😀", "\ud800"]),
    max_size=12,
)
field_values = tricky_text | tricky_text.filter(bool) | json_values
prefixes = st.sampled_from([b"data: ", b"data:", b"event: x\ndata: ", b"event:\ndata:"])


def serialise(data: st.DrawFn, frame: Any) -> bytes:
    """``frame`` as JSON, spaced and escaped one of several ways, UTF-8 (lone surrogates
    written raw, as a broken encoder would)."""
    separators = data(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
    text = json.dumps(frame, ensure_ascii=data(st.booleans()), separators=separators)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def twice(draw: st.DrawFn, body: bytes) -> bytes:
    """Sometimes a key of the object repeated (JSON allows it; the last one counts)."""
    if body.startswith(b"{") and draw(st.booleans()):
        key = draw(st.sampled_from([b"content", b"delta", b"type", b"index", b"usage", b"x"]))
        value = draw(st.sampled_from([b'"y"', b"null", b"0", b"{}"]))
        return b'{"' + key + b'":' + value + b"," + body[1:]
    return body


def some_keys(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    return {key: draw(field_values) for key in keys}


@st.composite
def chat_pieces(draw: st.DrawFn) -> bytes:
    delta = some_keys(draw, ["content", "reasoning_content", "reasoning", "tool_calls", "role"])
    if draw(st.booleans()):
        delta["content"] = draw(tricky_text)
    choice: dict[str, Any] = {"delta": delta if draw(st.integers(0, 9)) else draw(json_values)}
    choice |= some_keys(draw, ["index", "finish_reason", "logprobs"])
    if draw(st.booleans()):
        choice["index"] = draw(st.sampled_from([0, 1, -0.0, 0.0, None, "0", False]))
    choices: Any = [choice, *draw(st.lists(json_values, max_size=2))]
    if not draw(st.integers(0, 9)):
        choices = draw(json_values)
    frame = {"id": "c", "choices": choices} | some_keys(draw, ["usage", "error", "model"])
    body = draw(twice(serialise(draw, frame)))
    return draw(prefixes) + body + b"\n\n"


@st.composite
def messages_pieces(draw: st.DrawFn) -> bytes:
    delta = some_keys(draw, ["type", "text", "thinking", "partial_json"])
    if draw(st.booleans()):
        delta["type"] = draw(st.sampled_from(["text_delta", "thinking_delta", "other"]))
    frame: dict[str, Any] = {"type": "content_block_delta", "index": 0, "delta": delta}
    frame |= some_keys(draw, ["type", "index", "delta", "x"])
    body = draw(twice(serialise(draw, frame)))
    event = draw(st.sampled_from([b"event: content_block_delta\n", b"event: ping\n", b""]))
    return event + b"data: " + body + b"\n\n"


@st.composite
def responses_pieces(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            [
                "response.output_text.delta",
                "response.reasoning_summary_text.delta",
                "response.function_call_arguments.delta",
            ]
        )
    )
    frame: dict[str, Any] = {"type": kind, "delta": draw(tricky_text)}
    frame |= some_keys(draw, ["type", "delta", "output_index", "item_id", "logprobs"])
    body = draw(twice(serialise(draw, frame)))
    return draw(prefixes) + body + b"\n\n"


PIECES = {"chat": chat_pieces(), "messages": messages_pieces(), "responses": responses_pieces()}


def note(kind: str, taken: ev.Event | None) -> None:
    OUTCOMES[f"quick: {kind} {'taken' if taken is not None else 'general path'}"] += 1


@pytest.mark.parametrize("kind", sorted(PIECES))
@fuzz(400)
@given(data=st.data())
def test_a_generated_piece_takes_the_shortcut_only_with_the_general_paths_outcome(
    kind: str, data: st.DataObject
) -> None:
    tally(f"quick: {kind} generated pieces")
    piece = data.draw(PIECES[kind], label="piece")
    note(kind, agrees(started(kind), piece))


def damaged(data: st.DataObject, piece: bytes) -> bytes:
    out = bytearray(piece)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(out)))
        match data.draw(st.sampled_from(["insert", "delete", "replace", "flip"])):
            case "insert":
                out[at:at] = data.draw(st.binary(min_size=1, max_size=3))
            case "delete" if at < len(out):
                del out[at]
            case "replace" if at < len(out):
                out[at] = data.draw(st.sampled_from(b'"\\{}[],:0 \n\r\x00\x80\xc3\xed\xff'))
            case "flip" if at < len(out):
                out[at] ^= 1 << data.draw(st.integers(0, 7))
    return bytes(out)


@pytest.mark.parametrize("kind", sorted(PIECES))
@fuzz(400)
@given(data=st.data())
def test_a_damaged_piece_takes_the_shortcut_only_with_the_general_paths_outcome(
    kind: str, data: st.DataObject
) -> None:
    tally(f"quick: {kind} damaged pieces")
    piece = damaged(data, data.draw(PIECES[kind], label="piece"))
    agrees(started(kind), piece)


def relayed(adapter: Any, pieces: list[bytes]) -> list[ev.Event]:
    """The session pump's way: the shortcut for a piece that starts where the decoder is
    idle, else the decoder and ``feed``."""
    decoder = SSEDecoder(keep_raw=True)
    events: list[ev.Event] = []
    for piece in pieces:
        delta = adapter.quick(piece) if decoder.idle else None
        if delta is not None:
            events.append(delta)
            continue
        for event, data, _raw in decoder.frames(piece):
            events += adapter.feed(event, data)
    decoder.flush()
    return events + adapter.close()


def piece_of(pair: Pair) -> bytes:
    name, data = pair
    return encode_event(data, event=name if name != "message" else None)


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@fuzz(150)
@given(data=st.data())
def test_hostile_streams_relayed_piece_by_piece_give_the_general_paths_events(
    kind: str, data: st.DataObject
) -> None:
    tally(f"quick: {kind} hostile streams")
    pieces = [piece_of(pair) for pair in data.draw(hostile_streams(kind), label="frames")]
    general = relayed(ADAPTERS[kind](), [b"".join(pieces)])  # one piece: no shortcut
    assert relayed(ADAPTERS[kind](), pieces) == general


#: other fields a plain frame may carry, with values every JSON reader reads alike
plain_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**17), 10**17)
    | st.floats(min_value=-1e50, max_value=1e50).filter(lambda x: x == 0 or abs(x) > 1e-50)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
plain_text = st.text(min_size=1, max_size=40)  # no lone surrogates: every character encodes


@st.composite
def plain_pieces(draw: st.DrawFn, kind: str) -> tuple[bytes, ev.Event]:
    text = draw(plain_text)
    extra = draw(st.dictionaries(st.sampled_from(["x", "obfuscation", "id9"]), plain_values))
    if kind == "chat":
        field = draw(st.sampled_from(["content", "reasoning_content", "reasoning"]))
        delta: dict[str, Any] = {field: text} | extra
        frame: dict[str, Any] = {"id": "c", "choices": [{"index": 0, "delta": delta}]} | extra
        want: ev.Event = ev.TextDelta(text) if field == "content" else ev.ReasoningDelta(text)
    elif kind == "messages":
        reasoning = draw(st.booleans())
        field = "thinking" if reasoning else "text"
        delta = {"type": f"{field}_delta", field: text} | extra
        index = draw(st.integers(-(10**9), 10**9))
        frame = {"type": "content_block_delta", "index": index, "delta": delta} | extra
        want = ev.ReasoningDelta(text, index) if reasoning else ev.TextDelta(text, index)
    else:
        reasoning = draw(st.booleans())
        word = "reasoning_summary_text" if reasoning else "output_text"
        index = draw(st.integers(0, 10**9))
        frame = {"type": f"response.{word}.delta", "output_index": index, "delta": text} | extra
        want = ev.ReasoningDelta(text, index) if reasoning else ev.TextDelta(text, index)
    return draw(prefixes) + serialise(draw, frame) + b"\n\n", want


@pytest.mark.parametrize("kind", sorted(PIECES))
@fuzz(300)
@given(data=st.data())
def test_a_plain_delta_frame_takes_the_shortcut(kind: str, data: st.DataObject) -> None:
    tally(f"quick: {kind} plain pieces")
    piece, want = data.draw(plain_pieces(kind), label="piece")
    assert agrees(started(kind), piece) == want
