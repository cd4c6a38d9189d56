"""An agent run of two turns against the ``agent`` scenario through each official SDK: the
SDK's stream helpers accept the frames, the calls come back parsed, and the turn after the
results quotes them."""

from __future__ import annotations

import json
from typing import Any

from google.genai import types as genai_types

from .agent_formats import ANSWER, ORDER_RESULT, QUESTION, SHIPPING_RESULT, TOOLS
from .helpers import Sim, new_session

RESULTS = {"lookup_order": ORDER_RESULT, "shipping_estimate": SHIPPING_RESULT}
CALLED = [
    ("lookup_order", {"order_id": "A-1042", "include_history": False}),
    ("shipping_estimate", {"order_id": "A-1042"}),
]


async def test_openai_chat_completions_run(sim: Sim) -> None:
    client = sim.openai(new_session())
    tools: Any = [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.schema},
        }
        for t in TOOLS
    ]
    messages: Any = [{"role": "user", "content": QUESTION}]
    async with client.chat.completions.stream(model="agent", messages=messages, tools=tools) as s:
        first = await s.get_final_completion()
    message = first.choices[0].message
    calls = message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == CALLED  # type: ignore[union-attr]
    assert first.choices[0].finish_reason == "tool_calls"

    messages.append(message.model_dump(exclude_none=True))
    messages += [
        {"role": "tool", "tool_call_id": c.id, "content": RESULTS[c.function.name]}  # type: ignore[union-attr]
        for c in calls
    ]
    async with client.chat.completions.stream(model="agent", messages=messages, tools=tools) as s:
        second = await s.get_final_completion()
    assert second.choices[0].message.content == ANSWER
    assert second.choices[0].finish_reason == "stop"


async def test_openai_responses_run(sim: Sim) -> None:
    client = sim.openai(new_session())
    tools: Any = [
        {"type": "function", "name": t.name, "description": t.description, "parameters": t.schema}
        for t in TOOLS
    ]
    async with client.responses.stream(model="agent", input=QUESTION, tools=tools) as s:
        first = await s.get_final_response()
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == CALLED
    assert first.output_text == "Let me check that.\n\n"

    given: Any = [
        {"role": "user", "content": QUESTION},
        *[item.model_dump(exclude_none=True) for item in first.output],
        *[
            {"type": "function_call_output", "call_id": c.call_id, "output": RESULTS[c.name]}
            for c in calls
        ],
    ]
    async with client.responses.stream(model="agent", input=given, tools=tools) as s:
        second = await s.get_final_response()
    assert second.output_text == ANSWER
    assert second.status == "completed"


async def test_anthropic_messages_run(sim: Sim) -> None:
    client = sim.anthropic(new_session())
    tools: Any = [
        {"name": t.name, "description": t.description, "input_schema": t.schema} for t in TOOLS
    ]
    messages: Any = [{"role": "user", "content": QUESTION}]
    async with client.messages.stream(
        model="agent", max_tokens=1024, messages=messages, tools=tools
    ) as s:
        first = await s.get_final_message()
    calls = [block for block in first.content if block.type == "tool_use"]
    assert [(c.name, c.input) for c in calls] == CALLED
    assert first.stop_reason == "tool_use"

    messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": c.id, "content": RESULTS[c.name]}
                for c in calls
            ],
        }
    )
    async with client.messages.stream(
        model="agent", max_tokens=1024, messages=messages, tools=tools
    ) as s:
        second = await s.get_final_message()
    assert [block.type for block in second.content] == ["text"]
    assert second.content[0].text == ANSWER  # type: ignore[union-attr]
    assert second.stop_reason == "end_turn"


async def test_gemini_run(sim: Sim) -> None:
    client = sim.gemini(new_session())
    config = genai_types.GenerateContentConfig(
        tools=[
            genai_types.Tool(
                function_declarations=[
                    genai_types.FunctionDeclaration(
                        name=t.name, description=t.description, parameters_json_schema=t.schema
                    )
                    for t in TOOLS
                ]
            )
        ],
        automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
    )
    contents = [genai_types.Content(role="user", parts=[genai_types.Part(text=QUESTION)])]
    parts: list[genai_types.Part] = []
    async for chunk in await client.models.generate_content_stream(
        model="agent", contents=contents, config=config
    ):
        parts += chunk.candidates[0].content.parts or []
    calls = [part.function_call for part in parts if part.function_call is not None]
    assert [(c.name, c.args) for c in calls] == CALLED

    contents.append(genai_types.Content(role="model", parts=parts))
    contents.append(
        genai_types.Content(
            role="user",
            parts=[
                genai_types.Part.from_function_response(
                    name=c.name or "", response={"output": RESULTS[c.name or ""]}
                )
                for c in calls
            ],
        )
    )
    text = ""
    async for chunk in await client.models.generate_content_stream(
        model="agent", contents=contents, config=config
    ):
        text += chunk.text or ""
    assert text == ANSWER
