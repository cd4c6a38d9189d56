"""The built-in tools: the clock, the calculator (and what it refuses), the docs search."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from sluice.agents.builtin import (
    DOCS_DIR,
    MAX_HIT_CHARS,
    BuiltinTool,
    CalculationError,
    builtin_tools,
    calculate,
    read_sections,
)
from sluice.agents.toolbox import ToolBox
from sluice.agents.tools import ToolOutcome, ToolRejected, ToolTimeout
from sluice.config import BUILTIN_TOOLS


def test_the_built_in_tools_are_those_configuration_accepts() -> None:
    tools = builtin_tools()
    assert tuple(tools) == BUILTIN_TOOLS
    for tool in tools.values():
        assert tool.source == "builtin" and tool.description
        assert tool.parameters["type"] == "object"


async def test_the_clock_says_the_time_in_utc() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = await builtin_tools()["clock"].call({}, time_limit=5)
    after = datetime.now(UTC)
    said = datetime.fromisoformat(result.text.replace("Z", "+00:00"))
    assert result.text.endswith("Z") and not result.is_error
    assert before <= said <= after + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("-3 ** 2", -9),
        ("+4 - -4", 8),
        ("1.5e3 + 0.25", 1500.25),
        ("2 ** 4000 // 2 ** 3999", 2),
        ("  12  ", 12),
    ],
)
def test_the_calculator_computes_arithmetic(expression: str, value: float) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("9 ** 9 ** 9", "exponent is over"),
        ("2 ** 5000", "too large"),
        ("10 ** 2000 * 10 ** 2000", "too large"),
        ("10.0 ** 400", "too large"),
        ("1e999", "not a finite number"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 / 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("x + 1", "Name is not allowed"),
        ("__import__('os').system('true')", "Call is not allowed"),
        ("(1).__class__", "Attribute is not allowed"),
        ("[1, 2]", "List is not allowed"),
        ("'a' * 3", "Constant is not allowed|only numbers"),
        ("True + 1", "only numbers"),
        ("1 if 1 else 2", "IfExp is not allowed"),
        ("1 << 4000", "BinOp is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("1 +", "not an arithmetic expression"),
        ("1;2", "not an arithmetic expression"),
        ("1" + "+1" * 300, "over 500 characters"),
        ("(1+" * 100 + "1" + ")" * 100, "nests deeper"),
        ("-" * 200 + "1", "nests deeper"),
    ],
)
def test_the_calculator_refuses_what_is_not_bounded_arithmetic(
    expression: str, reason: str
) -> None:
    with pytest.raises(CalculationError, match=reason):
        calculate(expression)


async def test_the_calculator_tool_reports_refusals_as_tool_errors() -> None:
    calculator = builtin_tools()["calculator"]
    assert (await calculator.call({"expression": "6 * 7"}, time_limit=5)).text == "42"
    refused = await calculator.call({"expression": "__import__('os')"}, time_limit=5)
    assert refused.is_error and refused.text.startswith("cannot calculate: Call is not allowed")
    missing = await calculator.call({}, time_limit=5)
    assert missing.is_error and "expression" in missing.text
    with pytest.raises(ToolRejected):
        await calculator.call("6 * 7", time_limit=5)  # type: ignore[arg-type]


async def test_docs_search_finds_a_known_section() -> None:
    result = await builtin_tools()["docs_search"].call(
        {"query": "disconnect policy detach grace"}, time_limit=10
    )
    assert not result.is_error
    first = result.text.split("\n", 1)[0]
    assert first.startswith(("configuration.md", "architecture.md", "runbook.md"))
    assert "detach" in result.text


async def test_docs_search_output_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "big.md").write_text(
        "# Walrus\n" + "walrus " * 50_000 + "\n# Other\nnothing here\n"
    )
    (tmp_path / "small.md").write_text("# Seals\na walrus is no seal\n")
    tool = builtin_tools(tmp_path)["docs_search"]
    result = await tool.call({"query": "walrus " * 1000}, time_limit=10)
    hits = result.text.split("\n\n")
    assert hits[0].startswith("big.md — Walrus")
    assert len(result.text) < 3 * (MAX_HIT_CHARS + 200)
    none = await tool.call({"query": "zebra"}, time_limit=10)
    assert none.text == "no section of the documentation matches"
    empty = await tool.call({"query": "  "}, time_limit=10)
    assert empty.is_error


def test_the_project_docs_are_read_into_sections() -> None:
    sections = read_sections(DOCS_DIR)
    assert any(s.path == "agents.md" and s.heading == "Configuration" for s in sections)


async def test_a_built_in_tool_past_its_time_limit_is_a_typed_timeout() -> None:
    async def slow(arguments: dict[str, object]) -> ToolOutcome:
        await anyio.sleep(60)
        return ToolOutcome(text="late")

    tool = BuiltinTool("slow", "sleeps", {"type": "object"}, slow)
    with pytest.raises(ToolTimeout, match=r"slow: no result within 0\.2 s"):
        await tool.call({}, time_limit=0.2)


async def test_the_toolbox_gives_built_in_tools_by_name() -> None:
    async with ToolBox({}, builtin_tools()) as toolbox:
        tools = await toolbox.tools(["calculator", "clock"])
    assert [tool.name for tool in tools] == ["calculator", "clock"]


def test_a_gateway_without_mcp_servers_never_loads_the_mcp_sdk(tmp_path: Path) -> None:
    """The SDK (and what it imports: pydantic models, OpenTelemetry's API) is some 35 MB of
    resident memory: it is loaded with the first MCP server an agent uses, not before."""
    script = (
        "import sys\n"
        "from sluice.config import AgentConfig, load_settings\n"
        "from sluice.gateway.app import create_app\n"
        f"settings = load_settings(None, store_url='sqlite:///{tmp_path}/s.db')\n"
        "settings.agents = {'a': AgentConfig(name='a', model='sim/agent', tools=['clock'])}\n"
        "create_app(settings)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mcp', 'opentelemetry'}))\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
