"""An agent's tools as a model sees them: names providers accept, and each wire format's body."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.agents.builtin import builtin_tools
from sluice.agents.declare import MODEL_TOOL_NAME, AgentTools
from sluice.agents.toolbox import ToolBox
from sluice.agents.tools import ProgressFn, ToolOutcome, UnknownTool
from sluice.turn import Message, TextPart, TurnRequest
from sluice.wire import formats
from tests.agents.conftest import stdio_server


class Named:
    """A tool that only has a name and a source (what naming reads)."""

    def __init__(self, source: str, name: str, schema: dict[str, Any] | None = None) -> None:
        self.source, self.name = source, name
        self.description = ""
        self.parameters = schema if schema is not None else {"type": "object"}

    async def call(
        self, arguments: dict[str, Any], *, time_limit: float, progress: ProgressFn | None = None
    ) -> ToolOutcome:
        return ToolOutcome(text=f"{self.source}.{self.name}")


def test_a_tool_keeps_its_own_name_when_it_is_unique_and_valid() -> None:
    tools = AgentTools([Named("builtin", "clock"), Named("orders", "search_orders")])
    assert tools.names() == ["clock", "search_orders"]
    assert tools.origin("search_orders") == "orders.search_orders"
    assert tools.origin("clock") == "clock"


def test_names_that_clash_or_that_providers_refuse_are_qualified_by_the_server() -> None:
    tools = AgentTools(
        [
            Named("orders", "search"),
            Named("web", "search"),
            Named("files", "read.file"),
            Named("x" * 40, "y" * 40),
            Named("x" * 40, "y" * 40 + "z"),
        ]
    )
    names = tools.names()
    assert names[:3] == ["orders__search", "web__search", "files__read_file"]
    assert len(set(names)) == 5
    assert all(MODEL_TOOL_NAME.fullmatch(name) for name in names)
    assert tools.origin("files__read_file") == "files.read.file"


async def test_a_call_by_the_model_s_name_reaches_its_tool() -> None:
    tools = AgentTools([Named("orders", "search"), Named("web", "search")])
    assert (await tools.call("web__search", {}, time_limit=5)).text == "web.search"
    with pytest.raises(UnknownTool, match="no tool 'search'"):
        await tools.call("search", {}, time_limit=5)


def test_specs_carry_object_schemas_and_a_description() -> None:
    (spec,) = AgentTools([Named("s", "t", {"properties": "junk"})]).specs()
    assert spec.parameters == {"type": "object", "properties": {}}
    assert spec.description == "t"


@pytest.mark.parametrize("wire", formats.names())
async def test_each_wire_format_declares_the_tools_in_its_own_shape(wire: str) -> None:
    async with ToolBox({"testtools": stdio_server()}, builtin_tools()) as toolbox:
        tools = AgentTools(await toolbox.tools(["testtools.add", "calculator"]))
    turn = TurnRequest(
        model="sim/x", messages=[Message("user", [TextPart("6 * 7?")])], tools=tools.specs()
    )
    body = formats.get(wire).build(turn, "x")
    # Gemini groups its declarations in one tool: ``{"functionDeclarations": [...]}``
    declared = [d for t in body["tools"] for d in t.get("functionDeclarations", [t])]
    names = [t.get("name") or t.get("function", {}).get("name") for t in declared]
    assert names == ["add", "calculator"]
    schemas = [
        t.get("input_schema")
        or t.get("parameters")
        or t.get("parametersJsonSchema")
        or t["function"]["parameters"]
        for t in declared
    ]
    assert set(schemas[0]["properties"]) == {"a", "b"}
    assert schemas[1]["required"] == ["expression"]
    # and the body reads back as the same tools where the format is one clients speak
    parse = formats.get(wire).parse
    if parse is not None:
        path = formats.get(wire).endpoints[0]
        if wire == "gemini":  # the model and the method are in Gemini's path
            path += "sim%2Fx:streamGenerateContent"
        again = parse(body, path)
        assert [(t.name, t.parameters) for t in again.tools] == [
            (s.name, s.parameters) for s in tools.specs()
        ]
