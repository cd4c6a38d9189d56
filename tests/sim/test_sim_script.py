"""The parts without I/O: tokens, scripts, parameters, paths and the recorder."""

from __future__ import annotations

import json
from collections.abc import Iterable
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.sim import SimSettings, create_sim_app, route_path
from sluice.sim.corpus import (
    SIGN_OFFS,
    TOPICS,
    answer,
    cut_fragments,
    sentence_ends,
    sign_off,
    split_pieces,
    topic_for,
)
from sluice.sim.formats import FORMATS_BY_PATH, Exchange
from sluice.sim.recorder import Recorder
from sluice.sim.scenarios import Scenario, lookup, prompt_digest, script
from sluice.sim.script import (
    TOKEN_EVENTS,
    ConnectionReset,
    Finish,
    MalformedFrame,
    Step,
    StreamError,
    TextDelta,
    Transcript,
)
from sluice.sim.settings import InvalidParameter, StreamParams, resolve_params

DIGEST = prompt_digest("support", "hello")


def params(**changes: str) -> StreamParams:
    headers = {"x-sim-token-rate": "1000", "x-sim-ttft": "0", **changes}
    return resolve_params(SimSettings(), headers)


def fold(steps: Iterable[Step]) -> Transcript:
    transcript = Transcript()
    for step in steps:
        for event in step.events:
            transcript.observe(event)
    return transcript


@given(st.text().filter(lambda text: text.strip() != ""))
def test_pieces_join_back_to_the_text(text: str) -> None:
    pieces = split_pieces(text)
    assert "".join(pieces) == text
    assert all(piece.strip() for piece in pieces)


@given(st.text(min_size=1), st.integers(min_value=0))
def test_fragments_join_back_to_the_arguments(text: str, seed: int) -> None:
    assert "".join(cut_fragments(text, Random(seed))) == text


def test_a_long_answer_goes_on_past_the_corpus() -> None:
    pieces = list(answer("hello", DIGEST, 5000))
    assert len(pieces) == 5000
    assert pieces[:250] == list(answer("hello", DIGEST, 300))[:250]


def ends_with_a_whole_sentence(text: str) -> bool:
    return text.rstrip().rstrip("*_)\"'")[-1:] in (".", "!", "?")


@given(st.integers(min_value=1, max_value=1500), st.binary(min_size=16, max_size=16))
def test_an_answer_has_its_length_and_ends_with_a_whole_sentence(
    tokens: int, digest: bytes
) -> None:
    pieces = list(answer("", digest, tokens))
    assert len(pieces) == tokens
    text = "".join(pieces)
    assert ends_with_a_whole_sentence(text)
    assert text.count("```") % 2 == 0  # never inside a code block


def test_the_prompt_chooses_the_topic() -> None:
    asked = {
        "Our deploy fails with 'permission denied' on the release step.": "deploy-permissions",
        "Every request now gets 401 Unauthorized, was my key revoked?": "api-keys",
        "My order A-1042 has not arrived, the tracking page shows nothing.": "delayed-order",
        "We keep hitting 429 errors when the batch job runs.": "rate-limits",
        "Why was my card charged twice on this invoice?": "billing",
    }
    for prompt, name in asked.items():
        topic = topic_for(prompt, DIGEST)
        assert topic.name == name, prompt
        assert "".join(answer(prompt, DIGEST, 300)).startswith(topic.heading)


def test_a_prompt_about_nothing_known_still_gets_one_topic_by_its_digest() -> None:
    chosen = {topic_for("hello", bytes([n]) * 16).name for n in range(len(TOPICS))}
    assert chosen == {topic.name for topic in TOPICS}


def test_sign_offs_have_the_length_their_key_says() -> None:
    assert all(len(split_pieces(text)) == size for size, text in SIGN_OFFS.items())
    for count in range(1, 200):
        closing = sign_off(count)
        assert len(closing) == count and ends_with_a_whole_sentence("".join(closing))


def test_no_sentence_of_the_corpus_is_longer_than_the_sign_offs_can_replace() -> None:
    for topic in TOPICS:
        ends = sentence_ends(split_pieces(topic.text))
        gaps = [b - a for a, b in zip([-1, *ends_at(ends)], ends_at(ends), strict=False)]
        assert max(gaps) <= sum(SIGN_OFFS), topic.name


def ends_at(ends: list[bool]) -> list[int]:
    return [index for index, end in enumerate(ends) if end]


def test_lookup_knows_names_and_aliases() -> None:
    assert lookup("steady") is Scenario.SUPPORT
    assert lookup(" Parallel-Tools ") is Scenario.PARALLEL_TOOLS
    assert lookup("gpt-4o") is None


def test_support_script_says_output_tokens_then_stops() -> None:
    transcript = fold(
        script(Scenario.SUPPORT, params(**{"x-sim-output-tokens": "25"}), digest=DIGEST)
    )
    assert transcript.tokens == 25
    assert (transcript.finish_reason, transcript.ending) == ("stop", "finished")
    assert ends_with_a_whole_sentence(transcript.text)


def test_an_answer_cut_by_the_budget_ends_with_length_mid_sentence() -> None:
    steps = script(Scenario.SUPPORT, params(), digest=DIGEST, max_tokens=7, prompt="deploy")
    transcript = fold(steps)
    assert transcript.tokens == 7
    assert (transcript.finish_reason, transcript.ending) == ("length", "finished")
    assert transcript.text == "".join(split_pieces(TOPICS[0].text)[:7])


def test_the_cap_counts_every_kind_of_token() -> None:
    slow = params(**{"x-sim-ttft": "0.01"})  # 10 reasoning tokens
    transcript = fold(script(Scenario.SLOW_START, slow, digest=DIGEST, max_tokens=12))
    assert (transcript.reasoning_tokens, transcript.tokens) == (10, 12)
    assert transcript.finish_reason == "length"


def test_a_cap_equal_to_the_output_is_no_cut() -> None:
    steps = script(
        Scenario.SUPPORT, params(**{"x-sim-output-tokens": "5"}), digest=DIGEST, max_tokens=5
    )
    assert fold(steps).finish_reason == "stop"


@pytest.mark.parametrize(
    ("scenario", "fault"),
    [
        (Scenario.ERROR_MID_STREAM, StreamError),
        (Scenario.RESET, ConnectionReset),
    ],
)
def test_ending_faults_come_after_fail_after_tokens(scenario: Scenario, fault: type) -> None:
    steps = list(script(scenario, params(**{"x-sim-fail-after": "7"}), digest=DIGEST))
    tokens = sum(isinstance(e, TOKEN_EVENTS) for step in steps for e in step.events)
    assert tokens == 7
    assert isinstance(steps[-1].events[0], fault)
    assert not any(isinstance(e, Finish) for step in steps for e in step.events)


def test_a_fault_after_a_short_answer_comes_at_its_end() -> None:
    short = params(**{"x-sim-fail-after": "50", "x-sim-output-tokens": "5"})
    steps = list(script(Scenario.ERROR_MID_STREAM, short, digest=DIGEST))
    assert isinstance(steps[-1].events[0], StreamError)
    assert fold(steps).tokens == 5


def test_truncated_ends_without_finish() -> None:
    transcript = fold(
        script(Scenario.TRUNCATED, params(**{"x-sim-fail-after": "3"}), digest=DIGEST)
    )
    assert (transcript.tokens, transcript.ending) == (3, None)


def test_malformed_is_one_extra_frame() -> None:
    steps = list(script(Scenario.MALFORMED, params(**{"x-sim-output-tokens": "9"}), digest=DIGEST))
    events = [e for step in steps for e in step.events]
    assert sum(isinstance(e, MalformedFrame) for e in events) == 1
    assert sum(isinstance(e, TextDelta) for e in events) == 9
    assert isinstance(events[-1], Finish)


def test_stall_is_one_silent_step() -> None:
    stall = params(**{"x-sim-stall-after": "4", "x-sim-stall-seconds": "2.5"})
    steps = list(script(Scenario.STALL, stall, digest=DIGEST))
    silent = [index for index, step in enumerate(steps) if not step.events]
    assert len(silent) == 1
    assert steps[silent[0]].delay == 2.5
    assert sum(len(step.events) for step in steps[: silent[0]]) == 4


def test_bursts_hold_three_to_eight_tokens() -> None:
    steps = list(script(Scenario.BURSTY, params(**{"x-sim-output-tokens": "200"}), digest=DIGEST))
    sizes = [len(step.events) for step in steps[:-2]]  # the last burst may be short
    assert all(3 <= size <= 8 for size in sizes)
    assert sum(len(step.events) for step in steps[:-1]) == 200


def test_timing_follows_rate_ttft_and_jitter() -> None:
    timed = params(**{"x-sim-ttft": "0.5", "x-sim-jitter": "0.2", "x-sim-seed": "7"})
    delays = [step.delay for step in script(Scenario.SUPPORT, timed, digest=DIGEST)]
    assert delays[0] == 0.5
    assert all(0.0008 <= delay <= 0.0012 for delay in delays[1:-1])
    again = [step.delay for step in script(Scenario.SUPPORT, timed, digest=DIGEST)]
    assert again == delays


def test_tool_arguments_are_cut_but_whole() -> None:
    steps = script(Scenario.PARALLEL_TOOLS, params(), digest=DIGEST)
    transcript = fold(steps)
    assert [json.loads(call.arguments) for call in transcript.tool_calls] == [
        {"order_id": "A-1042", "include_history": True},
        {},
    ]
    assert transcript.finish_reason == "tool_calls"


def test_headers_override_settings() -> None:
    resolved = resolve_params(
        SimSettings(token_rate=10),
        {"x-sim-token-rate": "250", "x-sim-fail-count": "2", "x-sim-seed": "-3"},
    )
    assert (resolved.token_rate, resolved.fail_count, resolved.seed) == (250, 2, -3)
    assert resolve_params(SimSettings(), {}, slow_start=True).ttft == 12


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-sim-token-rate", "0"),
        ("x-sim-token-rate", "nan"),
        ("x-sim-jitter", "1.5"),
        ("x-sim-output-tokens", "ten"),
        ("x-sim-fail-count", "-1"),
    ],
)
def test_bad_header_values_are_refused(header: str, value: str) -> None:
    with pytest.raises(InvalidParameter, match=header):
        resolve_params(SimSettings(), {header: value})


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/v1/messages", "", "/v1/messages"),
        ("/sim/v1/messages", "/sim", "/v1/messages"),
        ("/v1/messages", "/sim", "/v1/messages"),
        ("/sim", "/sim", "/"),
        ("/simulator/x", "/sim", "/simulator/x"),
    ],
)
def test_route_path_standalone_and_mounted(path: str, root_path: str, expected: str) -> None:
    assert route_path({"path": path, "root_path": root_path}) == expected


def test_recorder_drops_the_oldest_records() -> None:
    recorder = Recorder(max_records=3)
    ids = [recorder.new_id() for _ in range(5)]
    for record_id in ids:
        recorder.open(record_id, format="openai-chat", session=None, at=0.0)
    assert [record.id for record in recorder.records()] == ids[2:]
    assert recorder.get(ids[0]) is None
    assert len(create_sim_app(SimSettings(max_records=3)).recorder.records()) == 0


def test_anthropic_cut_inside_a_tool_leaves_the_block_open() -> None:
    # As in the recorded stream anthropic-tool-args-cut-by-max-tokens.sse.
    wire = FORMATS_BY_PATH["/v1/messages"]
    exchange = Exchange("sim-1", "0" * 32, "tools", 0, 1, {})
    transcript = Transcript()
    encoder = wire.stream(exchange, transcript)
    frames = b""
    for step in script(Scenario.TOOLS, params(), digest=DIGEST, max_tokens=12):
        for event in step.events:
            transcript.observe(event)
            frames += encoder.encode(event)
    text = frames.decode()
    assert text.count("event: content_block_start\n") == 2
    assert text.count("event: content_block_stop\n") == 1  # the text block only
    assert '"stop_reason":"max_tokens"' in text
    assert text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')
