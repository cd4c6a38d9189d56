"""The contract every registered wire format keeps, run over ``formats.all()``: a format is
covered here as soon as it is registered.

- its encoder's stream, read back through the project's SSE decoder and the same format's
  adapter, is the turn it was made from (however the bytes are cut, and with the hot path's
  shortcut taking the pieces it takes); so is a turn whose parallel tool calls interleave,
  encoded behind the ``ToolCallSequencer`` as the gateway encodes every translated stream;
  its ids are the format's own, and a reasoning signature never shows as text;
- its request builder's body, parsed by its client parser, is the turn it was built from;
- its passthrough body leaves the client's own untouched;
- its error body says the message where every provider's error body does;
- its auth headers carry the provider key, whole, in one header, and nothing else secret;
- its model list (where it has one) names the models given, in their order;
- its adapter and its parser never raise on garbage other than as they are meant to.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.errors import RequestError
from sluice.events import (
    TERMINAL,
    TOOL_OK,
    Error,
    Event,
    Finish,
    ReasoningDelta,
    Signature,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)
from sluice.sse import SSEDecoder
from sluice.turn import (
    Message,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    TurnAccumulator,
    TurnRequest,
    TurnResult,
)
from sluice.upstream import _error_message
from sluice.wire import formats
from sluice.wire.base import StreamAdapter, WireFormat
from sluice.wire.sequencer import ToolCallSequencer

ALL = formats.all()
IDS = [fmt.name for fmt in ALL]
WITH_ENCODER = [fmt for fmt in ALL if fmt.encoder is not None]
WITH_PARSER = [fmt for fmt in ALL if fmt.parse is not None]
CLIENT_FORMATS = [fmt for fmt in ALL if fmt.serves_clients]

KEY = "sk-" + "test-contract-not-a-real-key"  # plainly fake

#: formats whose tool calls exist only whole (Gemini's ``functionCall`` parts, arguments an
#: object): a call that is not usable has no way to be written, so it is left out; that it is
#: missing is what "not usable" reads back as
WHOLE_CALLS = {"gemini"}


def client_path(endpoint: str) -> str:
    """A request path of a client endpoint: the endpoint, or for a prefix (its paths name the
    model and the method, as Gemini's do) a streaming path under it."""
    return endpoint + "upstream-model:streamGenerateContent" if endpoint.endswith("/") else endpoint


def each(group: list[WireFormat]) -> Any:
    return pytest.mark.parametrize("fmt", group, ids=[fmt.name for fmt in group])


# -- canonical streams ---------------------------------------------------------------------


def conversation() -> list[Event]:
    """Reasoning, text, two tool calls (the second without arguments), usage, a finish."""
    return [
        Start("upstream-id", "upstream-model"),
        ReasoningDelta("Order first, ", 0),
        ReasoningDelta("then the time.", 0),
        TextDelta("Let me ", 1),
        TextDelta("look that up.", 1),
        ToolCallStart(2, "call_order", "lookup_order"),
        ToolCallDelta(2, '{"order_id": '),
        ToolCallDelta(2, '"A-1"}'),
        ToolCallDone(2, "call_order", "lookup_order", '{"order_id": "A-1"}', {"order_id": "A-1"}),
        ToolCallStart(3, "call_time", "get_time"),
        ToolCallDone(3, "call_time", "get_time", "", {}),
        Usage(input_tokens=30, output_tokens=12, cache_read_tokens=8, final=True),
        Finish("tool_calls", "tool_calls"),
    ]


def cut_by_error(kind: str = "rate_limited") -> list[Event]:
    """Text, then an error in the middle of a tool call's arguments (which an adapter
    reports as an incomplete call before the error)."""
    return [
        Start("upstream-id", "upstream-model"),
        TextDelta("Looking ", 0),
        TextDelta("it up", 0),
        ToolCallStart(1, "call_order", "lookup_order"),
        ToolCallDelta(1, '{"order_'),
        ToolCallDone(1, "call_order", "lookup_order", '{"order_', None, "incomplete"),
        Error(kind, "slow down, please", True),
    ]


def encoded(fmt: WireFormat, events: list[Event]) -> list[bytes]:
    """The client stream ``fmt``'s encoder writes for ``events``: one piece per call."""
    assert fmt.encoder is not None
    encoder = fmt.encoder(f"{fmt.id_prefix}contract", "client-model", True)
    pieces = [encoder.encode(event) for event in events]
    pieces.append(encoder.close())
    return [piece for piece in pieces if piece]


def decoded(fmt: WireFormat, chunks: list[bytes]) -> list[Event]:
    """Bytes in the given chunking -> the project's SSE decoder -> ``fmt``'s adapter."""
    adapter, decoder = fmt.adapter(), SSEDecoder()
    events: list[Event] = []
    for chunk in chunks:
        for event, data, _raw in decoder.frames(chunk):
            events += adapter.feed(event, data)
    for sse in decoder.flush():
        events += adapter.feed(sse.event, sse.data)
    return events + adapter.close()


def relayed(fmt: WireFormat, pieces: list[bytes]) -> list[Event]:
    """As the session's pump reads them: a piece that starts where the decoder is idle is
    offered to the adapter's ``quick`` first, and takes the general path if it declines."""
    adapter, decoder = fmt.adapter(), SSEDecoder(keep_raw=True)
    events: list[Event] = []
    for piece in pieces:
        delta = adapter.quick(piece) if decoder.idle else None
        if delta is not None:
            events.append(delta)
            continue
        for event, data, _raw in decoder.frames(piece):
            events += adapter.feed(event, data)
    for sse in decoder.flush():
        events += adapter.feed(sse.event, sse.data)
    return events + adapter.close()


def turn_of(events: list[Event]) -> TurnResult:
    acc = TurnAccumulator()
    for event in events:
        acc.apply(event)
    return acc.result()


def content(result: TurnResult) -> dict[str, Any]:
    """What a round trip keeps: the content, not the format's ids, indexes or raw words; a
    tool call's status only as usable or not (a format may have no word for a call cut
    short, and say its arguments are not JSON instead); the final usage only."""
    usage = result.usage
    return {
        "text": result.text,
        "reasoning": result.reasoning,
        "calls": [(c.call_id, c.name, c.arguments, c.status == TOOL_OK) for c in result.tool_calls],
        "usage": None
        if usage is None or not usage.final
        else (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens),
        "finish": result.finish_reason,
        "error": None if result.error is None else result.error.message,
    }


# -- encoder -> decoder -> adapter -----------------------------------------------------------


@each(WITH_ENCODER)
def test_the_encoded_stream_reads_back_as_the_same_turn(fmt: WireFormat) -> None:
    source = conversation()
    events = decoded(fmt, [b"".join(encoded(fmt, source))])
    assert content(turn_of(events)) == content(turn_of(source))
    assert type(events[-1]) in TERMINAL and not [e for e in events[:-1] if type(e) in TERMINAL]


@each(WITH_ENCODER)
@pytest.mark.parametrize("kind", ["rate_limited", "overloaded", "upstream_stalled"])
def test_a_stream_ended_by_an_error_reads_back_as_that_error(fmt: WireFormat, kind: str) -> None:
    source = cut_by_error(kind)
    events = decoded(fmt, [b"".join(encoded(fmt, source))])
    result = turn_of(events)
    expected = content(turn_of(source))
    if fmt.name in WHOLE_CALLS:
        expected["calls"] = [call for call in expected["calls"] if call[3]]
    assert content(result) == expected
    assert result.error is not None and type(events[-1]) is Error
    # a format without a word for the error says it is the upstream's; none says another
    assert result.error.type in (kind, "upstream_error")
    if kind == "rate_limited":  # every provider format has a word for this one
        assert result.error.type == kind and result.error.retryable


@each(WITH_ENCODER)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_read_back_does_not_depend_on_where_the_bytes_are_cut(
    fmt: WireFormat, data: st.DataObject
) -> None:
    source = data.draw(st.sampled_from([conversation(), cut_by_error()]))
    body = b"".join(encoded(fmt, source))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(body) - 1), max_size=12)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert decoded(fmt, chunks) == decoded(fmt, [body])


@each(WITH_ENCODER)
@pytest.mark.parametrize("source", [conversation, cut_by_error], ids=["finish", "error"])
def test_the_hot_paths_shortcut_gives_what_the_general_path_gives(
    fmt: WireFormat, source: Any
) -> None:
    pieces = encoded(fmt, source())
    assert relayed(fmt, pieces) == decoded(fmt, [b"".join(pieces)])


def interleaved() -> list[Event]:
    """Two parallel calls whose argument fragments interleave, and text while they are open,
    as a Chat upstream may send them; a signed reasoning block before them."""
    return [
        Start("upstream-id", "upstream-model"),
        ReasoningDelta("Both at once.", 0),
        Signature("EqQBCgIYAhIMsignature", 0),
        TextDelta("Checking ", 1),
        ToolCallStart(2, "call_order", "lookup_order"),
        ToolCallStart(3, "call_time", "get_time"),
        ToolCallDelta(2, '{"order_'),
        ToolCallDelta(3, '{"tz": '),
        TextDelta("both.", 1),
        ToolCallDelta(2, 'id": "A-1"}'),
        ToolCallDelta(3, '"CET"}'),
        ToolCallDone(2, "call_order", "lookup_order", '{"order_id": "A-1"}', {"order_id": "A-1"}),
        ToolCallDone(3, "call_time", "get_time", '{"tz": "CET"}', {"tz": "CET"}),
        Usage(input_tokens=30, output_tokens=12, final=True),
        Finish("tool_calls", "tool_calls"),
    ]


@each(WITH_ENCODER)
def test_interleaved_parallel_calls_read_back_whole_behind_the_sequencer(fmt: WireFormat) -> None:
    assert fmt.encoder is not None
    sequencer = ToolCallSequencer(fmt.encoder(f"{fmt.id_prefix}contract", "client-model", True))
    source = interleaved()
    body = b"".join(sequencer.encode(event) for event in source) + sequencer.close()
    # (the signature, where the format has a place for it, is never text or reasoning)
    assert content(turn_of(decoded(fmt, [body]))) == content(turn_of(source))


@each(WITH_ENCODER)
def test_the_encoder_writes_ids_of_its_own_format(fmt: WireFormat) -> None:
    assert fmt.encoder is not None
    encoder = fmt.encoder("op-contract", "client-model", True)
    body = b"".join(encoder.encode(e) for e in conversation()) + encoder.close()
    assert f'"{fmt.id_prefix}op-contract"'.encode() in body


@each(WITH_ENCODER)
def test_nothing_is_written_after_an_error_and_closing_twice_is_harmless(
    fmt: WireFormat,
) -> None:
    assert fmt.encoder is not None
    encoder = fmt.encoder("contract", "client-model", True)
    encoder.encode(Start("x", "m"))
    assert encoder.encode(Error("upstream_error", "broken")) != b""
    assert encoder.encode(TextDelta("late")) == b""
    assert encoder.close() == b"" and encoder.close() == b""


# -- builder -> parser -------------------------------------------------------------------------


def canonical_turn(tool_choice: str | None) -> TurnRequest:
    return TurnRequest(
        model="upstream-model",
        system="Be brief.",
        messages=[
            Message("user", [TextPart("Where is order A-1, and what time is it?")]),
            Message(
                "assistant",
                [
                    TextPart("Let me look."),
                    ToolCallPart("call_1", "lookup_order", {"order_id": "A-1", "fast": True}),
                    ToolCallPart("call_2", "get_time", {}),
                ],
            ),
            Message(
                "user",
                [
                    ToolResultPart("call_1", "shipped"),
                    ToolResultPart("call_2", "noon"),
                    TextPart("Thanks. And A-2?"),
                ],
            ),
        ],
        max_tokens=256,
        temperature=0.25,
        top_p=0.5,
        stop=["END", "STOP"],
        tools=[
            ToolSpec(
                "lookup_order",
                "Find an order",
                {"type": "object", "properties": {"order_id": {"type": "string"}}},
            ),
            ToolSpec("get_time", "The time now", {"type": "object"}),
        ],
        tool_choice=tool_choice,
        stream=True,
        include_usage=True,
    )


@each(WITH_PARSER)
@pytest.mark.parametrize("tool_choice", [None, "auto", "none", "required", "lookup_order"])
def test_the_built_body_parses_back_to_the_same_turn(
    fmt: WireFormat, tool_choice: str | None
) -> None:
    assert fmt.parse is not None
    turn = canonical_turn(tool_choice)
    body = orjson.loads(orjson.dumps(fmt.build(copy.deepcopy(turn), "upstream-model")))
    parsed = fmt.parse(body, client_path(fmt.endpoints[0]) if fmt.endpoints else "/")
    # the model travels in the body or in the path: the rest must come back as it was, but
    # for what the format has no word for, which comes back as if never set
    unsaid = {name: getattr(TurnRequest(model="", messages=[]), name) for name in fmt.drops}
    assert replace(parsed, model=turn.model) == replace(turn, **unsaid)


@each(list(ALL))
def test_the_built_body_is_json_and_leaves_the_turn_alone(fmt: WireFormat) -> None:
    turn = canonical_turn("auto")
    before = copy.deepcopy(turn)
    orjson.dumps(fmt.build(turn, "upstream-model"))
    assert turn == before


@each(list(ALL))
def test_passthrough_forwards_a_copy_with_the_upstreams_model(fmt: WireFormat) -> None:
    body = {"model": "provider/client-model", "stream": False, "extra": {"kept": [1, 2]}}
    before = copy.deepcopy(body)
    forwarded = fmt.forward(body, "upstream-model")
    assert body == before, "the client's own body is not changed"
    assert forwarded["extra"] == {"kept": [1, 2]}, "fields Sluice does not model go through"
    assert "provider/client-model" not in orjson.dumps(forwarded).decode()


# -- errors, paths, auth -------------------------------------------------------------------


@each(list(ALL))
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "unknown_model"),
        (413, "payload_too_large"),
        (429, "rate_limited"),
        (500, "internal_error"),
        (502, "upstream_error"),
        (503, "gateway_overloaded"),
        (529, "overloaded"),
    ],
)
def test_the_error_body_says_the_message_where_providers_do(
    fmt: WireFormat, status: int, kind: str
) -> None:
    message = 'no model "x/y" here; try another'
    body = fmt.error_body(status, kind, message)
    assert body["error"]["message"] == message
    # read back as an upstream's error body, as a gateway in front of this one reads it
    assert _error_message(orjson.dumps(body)) == message


@each(list(ALL))
def test_the_formats_own_statuses_are_error_statuses(fmt: WireFormat) -> None:
    assert all(400 <= status <= 599 for status in fmt.error_statuses.values())


@each(list(ALL))
@pytest.mark.parametrize("stream", [True, False])
def test_the_upstream_path_is_a_path_under_the_base_url(fmt: WireFormat, stream: bool) -> None:
    path = fmt.path("model-1", stream)
    assert path.startswith("/") and "://" not in path and " " not in path


@each(list(ALL))
def test_auth_headers_carry_the_key_whole_in_one_header_and_nothing_else(
    fmt: WireFormat,
) -> None:
    with_key, without = fmt.auth(KEY), fmt.auth(None)
    carrying = [name for name, value in with_key.items() if KEY in value]
    assert len(carrying) == 1
    name = carrying[0]
    assert with_key[name] in (KEY, f"Bearer {KEY}")
    # without a key: the same headers but that one, and no key at all
    assert without == {k: v for k, v in with_key.items() if k != name}
    for headers in (with_key, without):
        for header, value in headers.items():
            assert header == header.lower() and header.isascii() and ":" not in header
            assert "\r" not in value and "\n" not in value
    assert KEY not in fmt.path("model-1", True)


# -- client side -----------------------------------------------------------------------------


@each(CLIENT_FORMATS)
def test_a_client_format_has_endpoints_an_id_prefix_and_renders_a_whole_answer(
    fmt: WireFormat,
) -> None:
    assert fmt.render is not None
    assert all(path.startswith("/") for path in fmt.endpoints) and fmt.id_prefix
    assert all(formats.for_path(client_path(path)) is fmt for path in fmt.endpoints)
    result = turn_of(conversation())
    result.response_id = fmt.id_prefix + "contract"
    body = orjson.loads(orjson.dumps(fmt.render(result, "provider/model")))
    assert "look that up" in orjson.dumps(body).decode()
    assert "A-1" in orjson.dumps(body).decode()


@each([fmt for fmt in ALL if fmt.list_models is not None])
def test_a_model_list_names_each_model_in_order_and_one_model_by_its_id(fmt: WireFormat) -> None:
    assert fmt.list_models is not None and fmt.describe_model is not None
    ids = ["sim/support", "openai/gpt-x", "acme/rocket-1"]
    listed = orjson.dumps(fmt.list_models(ids, {})).decode()
    assert [listed.index(f'"{m}"') for m in ids] == sorted(listed.index(f'"{m}"') for m in ids)
    assert '"acme/rocket-1"' in orjson.dumps(fmt.describe_model("acme/rocket-1")).decode()


# -- garbage ---------------------------------------------------------------------------------

#: the field names the formats' frames use, so that garbage reaches past the first lookup
FIELDS = [
    "type",
    "id",
    "model",
    "choices",
    "index",
    "delta",
    "content",
    "text",
    "tool_calls",
    "function",
    "arguments",
    "name",
    "finish_reason",
    "usage",
    "error",
    "message",
    "content_block",
    "partial_json",
    "stop_reason",
    "response",
    "item",
    "output_index",
    "candidates",
    "parts",
    "functionCall",
    "usageMetadata",
]
EVENT_NAMES = [
    "message",
    "error",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "response.created",
    "response.output_item.added",
    "response.output_text.delta",
    "response.function_call_arguments.delta",
    "response.completed",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from([*FIELDS, "[DONE]", "tool_use", "text_delta", "input_json_delta"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=24,
)
frames = st.tuples(
    st.sampled_from(EVENT_NAMES) | st.text(max_size=10),
    json_values.map(json.dumps) | st.text(max_size=40),
)


def fed(adapter: StreamAdapter, pairs: list[tuple[str, str]]) -> list[Event]:
    events: list[Event] = []
    for event, data in pairs:
        events += adapter.feed(event, data)
    return events + adapter.close()


@each(list(ALL))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(frames, max_size=12), piece=st.binary(max_size=80))
def test_the_adapter_never_raises_on_garbage(
    fmt: WireFormat, pairs: list[tuple[str, str]], piece: bytes
) -> None:
    events = fed(fmt.adapter(), pairs)
    ends = [i for i, e in enumerate(events) if type(e) in TERMINAL]
    assert len(ends) <= 1 and (not ends or ends[0] == len(events) - 1), events
    adapter = fmt.adapter()
    fed(adapter, pairs[:1])
    got = adapter.quick(b"data: " + piece + b"\n\n")
    assert got is None or type(got) in (TextDelta, ReasoningDelta)


@each(WITH_PARSER)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(st.sampled_from([*FIELDS, "messages", "max_tokens"]), json_values))
def test_the_parser_refuses_garbage_only_as_a_request_error(
    fmt: WireFormat, body: dict[str, Any]
) -> None:
    assert fmt.parse is not None
    try:
        fmt.parse(body, fmt.endpoints[0])
    except RequestError as exc:
        assert 400 <= exc.status < 500 and exc.message
