"""The ``agent`` scenario over loopback HTTP, in every wire format: tools called in parallel
from the question, results quoted in the next turn, ``tool_choice`` none, conversation memory,
failed results; each stream checked frame by frame for its format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .agent_formats import (
    ANSWER,
    FORMATS,
    ORDER_RESULT,
    QUESTION,
    SHIPPING_RESULT,
    TOOLS,
    Answer,
    Assistant,
    Call,
    Chat,
    Format,
    Gemini,
    Item,
    Result,
    Results,
    Tool,
    User,
)
from .helpers import FAST, Sim, new_session

by_format = pytest.mark.parametrize("wire", FORMATS, ids=lambda wire: wire.name)
by_format_and_mode = pytest.mark.parametrize(
    ("wire", "stream"),
    [(wire, stream) for wire in FORMATS for stream in (True, False)],
    ids=lambda value: value.name if isinstance(value, Format) else ("stream" if value else "whole"),
)


async def ask(
    sim: Sim,
    wire: Format,
    items: list[Item],
    *,
    stream: bool = True,
    tools: list[Tool] = TOOLS,
    session: str | None = None,
    **options: Any,
) -> Answer:
    body = wire.body(items, tools, stream=stream, **options)
    headers = {**FAST, "x-sluice-session-id": session or new_session()}
    async with sim.http() as client:
        response = await client.post(wire.path(stream=stream), json=body, headers=headers)
    assert response.status_code == 200, response.text
    if stream:
        return wire.read_stream(response.content)
    return wire.read_body(response.content)


@by_format_and_mode
async def test_a_question_hinting_at_two_tools_calls_both_in_parallel(
    sim: Sim, wire: Format, stream: bool
) -> None:
    session = new_session()
    answer = await ask(sim, wire, [User(QUESTION)], stream=stream, session=session)

    assert answer.text == "Let me check that.\n\n"
    assert [(call.name, call.args) for call in answer.calls] == [
        ("lookup_order", {"order_id": "A-1042", "include_history": False}),
        ("shipping_estimate", {"order_id": "A-1042"}),
    ]
    assert answer.stop == wire.tool_stop
    record = await sim.only_record(session)
    assert record["scenario"] == "agent"
    assert record["finish_reason"] == "tool_calls"
    assert [json.loads(call["arguments"]) for call in record["tool_calls"]] == [
        call.args for call in answer.calls
    ]
    assert answer.output_tokens == record["tokens_produced"]


@by_format
async def test_whole_tool_names_win_over_hints(sim: Sim, wire: Format) -> None:
    question = "Run CALCULATOR and clock (not the shipping one) for A-1042: 12 * (3 + 4)"
    answer = await ask(sim, wire, [User(question)])

    assert [(call.name, call.args) for call in answer.calls] == [
        ("calculator", {"expression": "12 * (3 + 4)"}),
        ("clock", {}),
    ]
    assert answer.stop == wire.tool_stop


@by_format_and_mode
async def test_the_next_turn_quotes_the_tool_results(sim: Sim, wire: Format, stream: bool) -> None:
    first = await ask(sim, wire, [User(QUESTION)])
    order, shipping = first.calls
    items: list[Item] = [
        User(QUESTION),
        Assistant(first.text, tuple(first.calls)),
        Results((Result(order, ORDER_RESULT), Result(shipping, SHIPPING_RESULT))),
    ]
    session = new_session()
    answer = await ask(sim, wire, items, stream=stream, session=session)

    assert answer.text == ANSWER
    assert answer.calls == []
    assert answer.stop == wire.text_stop
    record = await sim.only_record(session)
    assert record["finish_reason"] == "stop" and record["text"] == ANSWER


@by_format
async def test_tool_choice_none_answers_in_text(sim: Sim, wire: Format) -> None:
    session = new_session()
    answer = await ask(sim, wire, [User(QUESTION)], choice_none=True, session=session)

    assert answer.calls == []
    assert answer.stop == wire.text_stop
    assert answer.text.startswith(f'You asked: "{QUESTION}"\n\n## ')
    assert (await sim.only_record(session))["tool_calls"] == []


@by_format
async def test_a_question_that_names_no_tool_gets_a_text_answer(sim: Sim, wire: Format) -> None:
    answer = await ask(sim, wire, [User("My API key stopped working, what now?")])

    assert answer.calls == []
    assert answer.text.startswith('You asked: "My API key stopped working, what now?"\n\n')
    assert "API key" in answer.text.split("\n\n", 1)[1]  # the support answer about keys


@by_format
async def test_a_later_turn_quotes_the_first_question(sim: Sim, wire: Format) -> None:
    order = Call("call_first_0", "lookup_order", {"order_id": "A-1042", "include_history": False})
    earlier: list[Item] = [
        User(QUESTION),
        Assistant("Let me check that.", (order,)),
        Results((Result(order, ORDER_RESULT),)),
        Assistant("It shipped on 2 May."),
    ]
    text_turn = await ask(sim, wire, [*earlier, User("Thanks! Anything else I should know?")])
    call_turn = await ask(sim, wire, [*earlier, User("And the shipping time for A-1042?")])

    opening = f'Following up on your earlier question ("{QUESTION}"): '
    assert text_turn.text.startswith(opening + 'You asked: "Thanks! Anything else I should know?"')
    assert text_turn.calls == []
    assert call_turn.text == opening + "Let me check that.\n\n"
    assert [(call.name, call.args) for call in call_turn.calls] == [
        ("shipping_estimate", {"order_id": "A-1042"})
    ]


@by_format
async def test_a_failed_result_is_reported_as_failed_where_the_format_says_so(
    sim: Sim, wire: Format
) -> None:
    first = await ask(sim, wire, [User("Where is order A-1042?")])
    [order] = first.calls
    failure = "tool_timeout: no answer within 30 s"
    items: list[Item] = [
        User("Where is order A-1042?"),
        Assistant(first.text, (order,)),
        Results((Result(order, failure, is_error=True),)),
    ]
    answer = await ask(sim, wire, items)

    said = (
        f"The tool lookup_order failed: {failure}."
        if wire.flags_errors
        else f"lookup_order: {failure}."  # no flag in the format: the result is quoted as it is
    )
    assert answer.text == f"Here is what I found. {said} Let me know if you need anything else."


@pytest.mark.parametrize(
    "wire", [w for w in FORMATS if not isinstance(w, Gemini)], ids=lambda wire: wire.name
)
async def test_a_result_for_no_earlier_call_is_refused(sim: Sim, wire: Format) -> None:
    stray = Call("call_never_made", "lookup_order", {})
    items: list[Item] = [User(QUESTION), Assistant("Checking."), Results((Result(stray, "x"),))]
    body = wire.body(items, TOOLS, stream=True)
    async with sim.http() as client:
        response = await client.post(wire.path(stream=True), json=body, headers=FAST)
    assert response.status_code == 400
    assert "call_never_made" in response.text


@by_format
async def test_the_token_budget_still_caps_the_turn(sim: Sim, wire: Format) -> None:
    session = new_session()
    answer = await ask(sim, wire, [User(QUESTION)], max_tokens=3, session=session)

    assert (answer.text, answer.calls, answer.stop) == ("Let me check ", [], wire.length_stop)
    record = await sim.only_record(session)
    assert record["finish_reason"] == "length"
    assert record["tokens_produced"] == answer.output_tokens == 3


async def test_the_scenario_header_selects_agent(sim: Sim) -> None:
    wire = Chat()
    body = {**wire.body([User(QUESTION)], TOOLS, stream=False), "model": "support"}
    async with sim.http() as client:
        response = await client.post(
            wire.path(stream=False), json=body, headers={**FAST, "x-sim-scenario": "agent"}
        )
    answer = wire.read_body(response.content)
    assert [call.name for call in answer.calls] == ["lookup_order", "shipping_estimate"]
