"""Gemini: the recorded streams through decoder and adapter, the adapter's edges, the encoder,
and requests, whole responses and error bodies in Gemini's shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sluice.errors import BadRequest, UnknownEndpoint
from sluice.events import (
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
from sluice.turn import (
    Message,
    ReasoningSpec,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    TurnAccumulator,
    TurnRequest,
)
from sluice.wire import formats
from sluice.wire.gemini import (
    SKIP_SIGNATURE,
    GeminiStreamAdapter,
    GeminiStreamEncoder,
    auth_headers,
    build_gemini_request,
    client_target,
    forward_request,
    gemini_error_body,
    parse_gemini_request,
    render_gemini_response,
    upstream_path,
)
from tests.wire.wire_replay import (
    RECORDED,
    dones,
    feed_all,
    reasoning_of,
    replay,
    replay_file,
    starts,
    terminal,
    text_of,
    usages,
)


def signatures(events: list[Event]) -> list[str]:
    return [e.signature for e in events if isinstance(e, Signature)]


def chunk(*parts: dict[str, Any], finish: str | None = None, **extra: Any) -> tuple[str, str]:
    candidate: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = finish
    return "message", orjson.dumps({"candidates": [candidate], **extra}).decode()


# -- the recorded streams (tests/fixtures/recorded/README.md) ------------------------------


def test_recorded_text_takes_the_last_usage_never_the_first_or_a_sum() -> None:
    events = replay_file(RECORDED / "gemini-text.sse")
    assert events[0] == Start("w1peaMz6INOvnvgPgYfPiQY", "gemini-2.0-flash-exp")
    assert text_of(events) == "The capital of France is Paris.\n"
    assert terminal(events) == Finish(reason="stop", raw="STOP")
    last = usages(events)[-1]
    assert (last.input_tokens, last.output_tokens, last.final) == (13, 8, True)
    assert not any(u.final for u in usages(events)[:-1])


def test_recorded_function_call_is_one_whole_call_and_stop_means_tool_calls() -> None:
    events = replay_file(RECORDED / "gemini-function-call.sse")
    [start] = starts(events)
    [done] = dones(events)
    assert (start.name, done.name, done.arguments, done.status) == (
        "get_capital",
        "get_capital",
        {"country": "France"},
        "ok",
    )
    assert start.call_id == done.call_id and done.call_id.startswith("call_")
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [orjson.loads(d.fragment) for d in deltas] == [{"country": "France"}]
    assert text_of(events) == ""
    assert terminal(events) == Finish(reason="tool_calls", raw="STOP")
    last = usages(events)[-1]
    assert (last.input_tokens, last.output_tokens) == (52, 5)


def test_recorded_call_ids_are_the_same_on_every_replay() -> None:
    first = replay_file(RECORDED / "gemini-function-call.sse")
    again = replay_file(RECORDED / "gemini-function-call.sse")
    assert dones(first)[0].call_id == dones(again)[0].call_id


def test_recorded_thought_signature_on_a_call_is_kept_before_the_call() -> None:
    path = RECORDED / "gemini-function-call-thought-signature.sse"
    events = replay_file(path)
    [done] = dones(events)
    assert (done.name, done.arguments) == ("get_country", {})
    wire = orjson.loads(path.read_bytes().split(b"\r\n")[0].removeprefix(b"data: "))
    expected = wire["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    assert signatures(events) == [expected]
    kinds = [type(e) for e in events]
    assert kinds.index(Signature) == kinds.index(ToolCallStart) - 1
    assert text_of(events) == ""  # the trailing empty text part adds nothing
    last = usages(events)[-1]
    # 29 in, 10 answer + 202 thoughts out: total 241 = prompt + candidates + thoughts
    assert (last.input_tokens, last.output_tokens, last.reasoning_tokens) == (29, 212, 202)
    assert terminal(events) == Finish(reason="tool_calls", raw="STOP")


def test_recorded_thinking_gives_thoughts_then_the_answer_with_its_signature() -> None:
    events = replay_file(RECORDED / "gemini-thinking.sse")
    assert len(reasoning_of(events)) == 1575
    answer = text_of(events)
    assert len(answer) == 1938 and answer.startswith("This is a great question!")
    assert len(signatures(events)) == 1
    kinds = [type(e) for e in events]
    first_text = kinds.index(TextDelta)
    assert kinds.index(Signature) == first_text - 1
    assert ReasoningDelta not in kinds[first_text:]
    last = usages(events)[-1]
    assert (last.input_tokens, last.output_tokens, last.reasoning_tokens) == (34, 469 + 787, 787)
    assert terminal(events) == Finish(reason="stop", raw="STOP")


def test_recorded_usage_is_live_mid_stream_and_counts_thoughts_without_thought_parts() -> None:
    events = replay_file(RECORDED / "gemini-usage-mid-stream.sse")
    answer = text_of(events)
    assert answer == "\n".join(str(n) for n in range(1, 31)) and len(answer) == 80
    outputs = [u.output_tokens - u.reasoning_tokens for u in usages(events)]
    assert outputs == [31, 79, 80]
    last = usages(events)[-1]
    assert (last.input_tokens, last.reasoning_tokens, last.final) == (18, 35, True)
    assert reasoning_of(events) == ""


def test_recorded_accumulated_usage_totals_are_googles_totals() -> None:
    for name, total in [
        ("gemini-text.sse", 21),
        ("gemini-function-call.sse", 57),
        ("gemini-function-call-thought-signature.sse", 241),
        ("gemini-thinking.sse", 1290),
        ("gemini-usage-mid-stream.sse", 133),
    ]:
        acc = TurnAccumulator()
        for event in replay_file(RECORDED / name):
            acc.apply(event)
        assert acc.usage is not None
        assert acc.usage.input_tokens + acc.usage.output_tokens == total, name


# -- the adapter's edges -------------------------------------------------------------------


def test_a_body_that_ends_without_a_finish_reason_is_truncated() -> None:
    events = feed_all(GeminiStreamAdapter(), [chunk({"text": "Hel"})])
    end = terminal(events)
    assert isinstance(end, Error) and end.type == "upstream_truncated" and end.retryable


def test_an_error_frame_inside_the_stream_is_a_typed_error() -> None:
    error = {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
    events = feed_all(
        GeminiStreamAdapter(),
        [chunk({"text": "Hi"}), ("message", orjson.dumps({"error": error}).decode())],
    )
    end = terminal(events)
    assert isinstance(end, Error)
    assert (end.type, end.retryable, end.status, end.message) == (
        "overloaded",
        True,
        503,
        "The model is overloaded.",
    )


@pytest.mark.parametrize(
    ("status", "code", "kind", "retryable"),
    [
        ("RESOURCE_EXHAUSTED", 429, "rate_limited", True),
        ("INTERNAL", 500, "upstream_error", True),
        ("INVALID_ARGUMENT", 400, "upstream_error", False),
        ("PERMISSION_DENIED", 403, "upstream_auth", False),
    ],
)
def test_error_statuses(status: str, code: int, kind: str, retryable: bool) -> None:
    frame = {"error": {"code": code, "message": "m", "status": status}}
    end = terminal(feed_all(GeminiStreamAdapter(), [("message", orjson.dumps(frame).decode())]))
    assert isinstance(end, Error) and (end.type, end.retryable) == (kind, retryable)


@pytest.mark.parametrize(
    ("word", "reason"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("LANGUAGE", "stop"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reasons(word: str, reason: str) -> None:
    events = feed_all(GeminiStreamAdapter(), [chunk({"text": "x"}, finish=word)])
    assert terminal(events) == Finish(reason=reason, raw=word)


def test_a_malformed_function_call_ends_in_an_error_not_an_empty_answer() -> None:
    events = feed_all(
        GeminiStreamAdapter(),
        [chunk(finish="MALFORMED_FUNCTION_CALL", **{"usageMetadata": {"promptTokenCount": 3}})],
    )
    end = terminal(events)
    assert isinstance(end, Error) and end.type == "upstream_tool_call" and end.retryable
    assert "MALFORMED_FUNCTION_CALL" in end.message


def test_a_blocked_prompt_finishes_content_filter() -> None:
    frame = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}}
    events = feed_all(GeminiStreamAdapter(), [("message", orjson.dumps(frame).decode())])
    assert terminal(events) == Finish(reason="content_filter", raw="SAFETY")
    assert usages(events)[-1].input_tokens == 9


def test_parallel_calls_are_numbered_in_order_and_ids_given_are_kept() -> None:
    events = feed_all(
        GeminiStreamAdapter(),
        [
            chunk(
                {"functionCall": {"name": "a", "args": {"x": 1}, "id": "given-1"}},
                {"functionCall": {"name": "b"}},
                finish="STOP",
            )
        ],
    )
    assert [(s.index, s.name) for s in starts(events)] == [(0, "a"), (1, "b")]
    first, second = dones(events)
    assert first.call_id == "given-1" and first.arguments == {"x": 1}
    assert second.arguments == {} and second.raw == "{}" and second.call_id != first.call_id


def test_arguments_that_are_not_an_object_are_invalid_with_their_text_kept() -> None:
    events = feed_all(
        GeminiStreamAdapter(), [chunk({"functionCall": {"name": "a", "args": [1]}}, finish="STOP")]
    )
    [done] = dones(events)
    assert (done.status, done.arguments, done.raw) == ("invalid_json", None, "[1]")


def test_thoughts_become_reasoning_and_empty_parts_still_give_their_signature() -> None:
    events = feed_all(
        GeminiStreamAdapter(),
        [
            chunk({"text": "Let me think.", "thought": True}),
            chunk({"text": "", "thoughtSignature": "sig-1"}, finish="STOP"),
        ],
    )
    assert reasoning_of(events) == "Let me think." and text_of(events) == ""
    assert signatures(events) == ["sig-1"]


def test_only_the_first_candidate_counts_and_unknown_parts_are_ignored() -> None:
    frame = {
        "candidates": [
            {"content": {"parts": [{"text": "other"}]}, "index": 1},
            {"content": {"parts": [{"inlineData": {"data": "AA=="}}, {"text": "one"}]}},
        ],
        "serviceTier": "standard",
    }
    events = feed_all(
        GeminiStreamAdapter(), [("message", orjson.dumps(frame).decode()), chunk(finish="STOP")]
    )
    assert text_of(events) == "one"


def test_the_same_usage_twice_is_said_once() -> None:
    usage = {"usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}
    events = feed_all(
        GeminiStreamAdapter(),
        [chunk({"text": "a"}, **usage), chunk({"text": "b"}, **usage), chunk(finish="STOP")],
    )
    assert usages(events) == [Usage(input_tokens=5)]


# -- the encoder ---------------------------------------------------------------------------


def encoded(events: list[Event]) -> list[dict[str, Any]]:
    encoder = GeminiStreamEncoder("gemini-1", "gemini-x")
    body = b"".join(encoder.encode(e) for e in events) + encoder.close()
    assert body.endswith(b"\n\n") and b"event:" not in body and b"[DONE]" not in body
    return [orjson.loads(line.removeprefix(b"data: ")) for line in body.split(b"\n\n") if line]


def test_every_chunk_carries_model_version_response_id_and_the_latest_usage() -> None:
    frames = encoded(
        [
            Start("up", "m"),
            TextDelta("Hel"),
            Usage(input_tokens=10, output_tokens=30, reasoning_tokens=20, cache_read_tokens=4),
            TextDelta("lo"),
            Finish("stop"),
        ]
    )
    assert all(f["modelVersion"] == "gemini-x" and f["responseId"] == "gemini-1" for f in frames)
    assert "usageMetadata" not in frames[0]
    assert frames[1]["usageMetadata"] == {
        "promptTokenCount": 10,
        "candidatesTokenCount": 10,
        "thoughtsTokenCount": 20,
        "cachedContentTokenCount": 4,
        "totalTokenCount": 40,
    }
    assert frames[-1]["candidates"][0]["finishReason"] == "STOP"
    assert [f["candidates"][0]["content"]["parts"][0]["text"] for f in frames] == ["Hel", "lo", ""]


def test_a_call_is_one_whole_function_call_part_and_a_signature_rides_on_the_next_part() -> None:
    frames = encoded(
        [
            ReasoningDelta("hmm"),
            Signature("c2lnLWE="),
            ToolCallStart(3, "call_9", "lookup"),
            ToolCallDelta(3, '{"id": '),
            ToolCallDelta(3, '"A-1"}'),
            ToolCallDone(3, "call_9", "lookup", '{"id": "A-1"}', {"id": "A-1"}),
            Finish("tool_calls"),
        ]
    )
    parts = [f["candidates"][0]["content"]["parts"][0] for f in frames]
    assert parts[0] == {"text": "hmm", "thought": True}
    assert parts[1] == {
        "functionCall": {"name": "lookup", "args": {"id": "A-1"}, "id": "call_9"},
        "thoughtSignature": "c2lnLWE=",
    }
    assert parts[2] == {"text": ""}
    assert frames[-1]["candidates"][0]["finishReason"] == "STOP"


def test_a_signature_left_at_the_finish_rides_on_an_empty_text_part() -> None:
    frames = encoded([TextDelta("x"), Signature("c2lnLWI="), Finish("stop")])
    assert frames[-1]["candidates"][0]["content"]["parts"] == [
        {"text": "", "thoughtSignature": "c2lnLWI="}
    ]


def test_a_signature_that_is_not_base64_is_left_out() -> None:
    frames = encoded([Signature("not base64!"), TextDelta("x"), Finish("stop")])
    assert all("thoughtSignature" not in f["candidates"][0]["content"]["parts"][0] for f in frames)


def test_a_call_whose_arguments_did_not_parse_finishes_malformed() -> None:
    frames = encoded(
        [
            ToolCallStart(0, "c", "f"),
            ToolCallDelta(0, '{"a": '),
            ToolCallDone(0, "c", "f", '{"a": ', None, "invalid_json", "cut"),
            Finish("tool_calls"),
        ]
    )
    assert len(frames) == 1
    assert frames[0]["candidates"][0]["finishReason"] == "MALFORMED_FUNCTION_CALL"


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [("rate_limited", 429, "RESOURCE_EXHAUSTED"), ("upstream_truncated", 500, "INTERNAL")],
)
def test_an_error_is_a_google_error_frame(kind: str, code: int, status: str) -> None:
    [frame] = encoded([Error(kind, "went wrong"), TextDelta("never")])
    assert frame == {"error": {"code": code, "message": "went wrong", "status": status}}


def test_the_encoder_round_trips_signatures_through_the_adapter() -> None:
    source: list[Event] = [
        Start("r", "m"),
        ReasoningDelta("plan"),
        Signature("c2lnLWM="),
        TextDelta("answer"),
        Usage(input_tokens=2, output_tokens=5, reasoning_tokens=3, final=True),
        Finish("stop"),
    ]
    encoder = GeminiStreamEncoder("r", "m")
    body = b"".join(encoder.encode(e) for e in source)
    events = replay(GeminiStreamAdapter(), [body])
    assert signatures(events) == ["c2lnLWM="]
    assert (reasoning_of(events), text_of(events)) == ("plan", "answer")
    last = usages(events)[-1]
    assert (last.input_tokens, last.output_tokens, last.reasoning_tokens) == (2, 5, 3)


# -- requests, whole responses, error bodies -----------------------------------------------

SDK_BODY: dict[str, Any] = {
    "contents": [
        {"role": "user", "parts": [{"text": "Where is order A-1?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "thinking…", "thought": True},
                {
                    "functionCall": {"name": "lookup", "args": {"id": "A-1"}},
                    "thoughtSignature": "s",
                },
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "lookup", "response": {"status": "shipped"}}}],
        },
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}], "role": "user"},
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "lookup",
                    "description": "Find an order.",
                    "parametersJsonSchema": {"type": "object", "properties": {"id": {}}},
                }
            ]
        },
        {"googleSearch": {}},
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}},
    "generationConfig": {
        "maxOutputTokens": 256,
        "temperature": 0.5,
        "topP": 0.9,
        "stopSequences": ["END"],
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 1024},
    },
}


def test_a_request_of_the_sdk_parses_into_a_turn() -> None:
    turn = parse_gemini_request(SDK_BODY, "sim/support", stream=True)
    assert (turn.model, turn.stream, turn.system) == ("sim/support", True, "Be brief.")
    user, model, result = turn.messages
    assert user == Message("user", [TextPart("Where is order A-1?")])
    [call] = model.parts
    assert isinstance(call, ToolCallPart) and (call.name, call.arguments) == (
        "lookup",
        {"id": "A-1"},
    )
    [answer] = result.parts
    assert isinstance(answer, ToolResultPart)
    assert answer.call_id == call.call_id and orjson.loads(answer.content) == {"status": "shipped"}
    assert [t.name for t in turn.tools] == ["lookup"]
    assert turn.tools[0].parameters == {"type": "object", "properties": {"id": {}}}
    assert turn.tool_choice == "lookup"
    assert (turn.max_tokens, turn.temperature, turn.top_p, turn.stop) == (256, 0.5, 0.9, ["END"])
    assert turn.reasoning == ReasoningSpec(budget_tokens=1024, include=True)


def test_proto_field_names_are_read_as_well() -> None:
    body = {
        "contents": [{"parts": [{"text": "hi"}]}],
        "system_instruction": {"parts": [{"text": "sys"}]},
        "generation_config": {"max_output_tokens": 5, "thinking_config": {"thinking_level": "LOW"}},
    }
    turn = parse_gemini_request(body, "m", stream=False)
    assert (turn.system, turn.max_tokens) == ("sys", 5)
    assert turn.reasoning == ReasoningSpec(effort="low")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "'contents' is required"),
        ({"contents": "hi"}, "'contents' must be a list"),
        ({"contents": []}, "must not be empty"),
        ({"contents": [{"role": "system", "parts": []}]}, "'role'"),
        ({"contents": [{"parts": "x"}]}, "'parts' must be a list"),
        ({"contents": [{"parts": [{"inlineData": {"data": "AA=="}}]}]}, "'inlineData'"),
        ({"contents": [{"parts": [{"functionCall": {"name": "f"}}]}]}, "model turn"),
        ({"contents": [{"parts": [{"text": 3}]}]}, "'text' must be a string"),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": 0}},
            "maxOutputTokens",
        ),
        ({"contents": [{"parts": [{"text": "x"}]}], "tools": {}}, "'tools' must be a list"),
    ],
)
def test_bad_requests_name_the_field(body: dict[str, Any], words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_gemini_request(body, "m", stream=True)
    assert words in caught.value.message


def test_a_built_request_names_each_result_s_function_and_signs_the_first_call() -> None:
    turn = TurnRequest(
        model="gemini-x",
        messages=[
            Message("user", [TextPart("q")]),
            Message(
                "assistant",
                [
                    TextPart("Checking."),
                    ToolCallPart("c1", "a", {"x": 1}),
                    ToolCallPart("c2", "b", {}),
                ],
            ),
            Message("user", [ToolResultPart("c1", '{"ok": true}'), ToolResultPart("c2", "done")]),
        ],
        system="sys",
        max_tokens=100,
        tools=[ToolSpec("a", "A.", {"type": "object"}), ToolSpec("b")],
        tool_choice="required",
        reasoning=ReasoningSpec(effort="high", include=True),
    )
    body = build_gemini_request(turn, "gemini-x")
    assert "model" not in body and "stream" not in body
    model_parts = body["contents"][1]["parts"]
    assert model_parts[1]["thoughtSignature"] == SKIP_SIGNATURE
    assert "thoughtSignature" not in model_parts[2]
    results = [p["functionResponse"] for p in body["contents"][2]["parts"]]
    assert results == [
        {"name": "a", "response": {"ok": True}, "id": "c1"},
        {"name": "b", "response": {"output": "done"}, "id": "c2"},
    ]
    assert body["systemInstruction"] == {"parts": [{"text": "sys"}]}
    assert body["tools"][0]["functionDeclarations"][0] == {
        "name": "a",
        "parametersJsonSchema": {"type": "object"},
        "description": "A.",
    }
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert body["generationConfig"] == {
        "maxOutputTokens": 100,
        "thinkingConfig": {"includeThoughts": True, "thinkingLevel": "HIGH"},
    }


def test_a_parsed_request_built_again_keeps_its_content() -> None:
    turn = parse_gemini_request(SDK_BODY, "m", stream=True)
    again = parse_gemini_request(build_gemini_request(turn, "m"), "m", stream=True)
    assert again.messages == turn.messages
    assert (again.system, again.tools, again.tool_choice) == (turn.system, turn.tools, "lookup")
    assert again.reasoning == turn.reasoning


def test_the_whole_response_of_a_turn() -> None:
    acc = TurnAccumulator()
    for event in replay_file(RECORDED / "gemini-function-call.sse"):
        acc.apply(event)
    body = render_gemini_response(acc.result(), "sim/x")
    candidate = body["candidates"][0]
    [part] = candidate["content"]["parts"]
    assert part["functionCall"]["name"] == "get_capital"
    assert part["functionCall"]["args"] == {"country": "France"}
    assert candidate["finishReason"] == "STOP"
    assert body["usageMetadata"]["totalTokenCount"] == 57
    assert body["modelVersion"] == "gemini-2.0-flash"


def test_error_bodies_are_googles() -> None:
    assert gemini_error_body(429, "slow down") == {
        "error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}
    }
    assert gemini_error_body(404, "no")["error"]["status"] == "NOT_FOUND"


# -- URLs and keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", ("gemini-2.5-flash", True)),
        ("/v1/models/sim/support:generateContent", ("sim/support", False)),
        ("/v1beta/models/models/sim/support:streamGenerateContent", ("sim/support", True)),
        ("/v1/models/vllm/org/model:v2:generateContent", ("vllm/org/model:v2", False)),
    ],
)
def test_a_client_path_names_the_model_and_the_streaming(path: str, target: Any) -> None:
    assert client_target(path) == target


@pytest.mark.parametrize(
    "path",
    [
        "/v1beta/models/sim/support:countTokens",
        "/v1beta/models/:generateContent",
        "/v1beta/models/sim/support",
        "/v1/chat/completions",
    ],
)
def test_other_paths_are_not_gemini_endpoints(path: str) -> None:
    with pytest.raises(UnknownEndpoint):
        client_target(path)


def test_the_upstream_path_escapes_the_model_and_always_streams() -> None:
    assert upstream_path("gemini-2.5-flash", False) == (
        "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    )
    assert upstream_path("models/a/b?c", True) == "/models/a%2Fb%3Fc:streamGenerateContent?alt=sse"
    assert upstream_path("tunedModels/mine", True).startswith("/tunedModels/mine:")


def test_the_key_goes_in_x_goog_api_key() -> None:
    assert auth_headers("fake-key") == {"x-goog-api-key": "fake-key"}
    assert auth_headers(None) == {}


@pytest.mark.parametrize(
    ("path", "claimed"),
    [
        ("/v1/models/sim/support:generateContent", True),
        ("/v1beta/models/x:countTokens", True),
        ("/v1/models/gpt-4o", False),
        ("/v1/models/ft:gpt-4o-mini:acme:custom:AbC123", False),
    ],
)
def test_gemini_claims_only_the_paths_that_name_a_model_method(path: str, claimed: bool) -> None:
    assert (formats.for_path(path) is formats.GEMINI) is claimed


def test_a_passthrough_body_goes_as_it_is_but_for_a_model_field() -> None:
    body = {"contents": [], "cachedContent": "cachedContents/x"}
    assert forward_request(body, "m") is body
    assert forward_request({**body, "model": "sim/x"}, "m") == body


def test_a_result_given_as_output_text_reads_back_as_that_text() -> None:
    body = {
        "contents": [
            {"role": "model", "parts": [{"functionCall": {"name": "f", "id": "c"}}]},
            {"parts": [{"functionResponse": {"name": "f", "response": {"error": "no such"}}}]},
        ]
    }
    [_, result] = parse_gemini_request(body, "m", stream=True).messages
    assert result.parts == [ToolResultPart("c", "no such", True)]
