"""The toolbox against real MCP servers (the SDK's own server side), over stdio and HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.agents.toolbox import ToolBox
from sluice.agents.tools import (
    ToolProgress,
    ToolRejected,
    ToolServerLost,
    ToolTimeout,
    ToolUnavailable,
    UnknownTool,
)
from sluice.config import McpServerConfig
from tests.agents.conftest import SERVER, stdio_server


def box(server: McpServerConfig) -> ToolBox:
    return ToolBox({server.name: server})


async def test_a_server_lists_its_tools_with_their_schemas(server: McpServerConfig) -> None:
    async with box(server) as toolbox:
        tools = {tool.name: tool for tool in await toolbox.tools(["testtools"])}
    assert {"add", "echo", "fail", "sleep", "hang", "count", "crash"} <= set(tools)
    add = tools["add"]
    assert (add.source, add.description) == ("testtools", "Add two integers.")
    assert add.parameters["type"] == "object"
    assert set(add.parameters["properties"]) == {"a", "b"}


async def test_one_tool_of_a_server_is_chosen_by_its_dotted_name(server: McpServerConfig) -> None:
    async with box(server) as toolbox:
        tools = await toolbox.tools(["testtools.echo"])
        assert [tool.name for tool in tools] == ["echo"]
        with pytest.raises(UnknownTool, match="lists no tool 'nope'"):
            await toolbox.tools(["testtools.nope"])


async def test_a_call_with_arguments_gives_the_text_and_the_whole_result(
    server: McpServerConfig,
) -> None:
    async with box(server) as toolbox:
        (add,) = await toolbox.tools(["testtools.add"])
        result = await add.call({"a": 2, "b": 40}, time_limit=30)
    assert (result.text, result.is_error) == ("42", False)
    assert result.content == [{"type": "text", "text": "42"}]
    assert result.as_record()["content"][0]["text"] == "42"


async def test_calls_in_parallel_all_complete(server: McpServerConfig) -> None:
    async with box(server) as toolbox:
        (echo,) = await toolbox.tools(["testtools.echo"])
        results = await asyncio.gather(
            *(echo.call({"text": f"n{i}"}, time_limit=30) for i in range(12))
        )
    assert sorted(result.text for result in results) == sorted(f"echo: n{i}" for i in range(12))


async def test_a_tool_that_raises_is_a_tool_error_result(server: McpServerConfig) -> None:
    async with box(server) as toolbox:
        (fail,) = await toolbox.tools(["testtools.fail"])
        result = await fail.call({"message": "the order database is down"}, time_limit=30)
    assert result.is_error
    assert "fail" in result.text


async def test_arguments_the_server_refuses_are_a_tool_error_result_or_a_rejection(
    server: McpServerConfig,
) -> None:
    async with box(server) as toolbox:
        (add,) = await toolbox.tools(["testtools.add"])
        with pytest.raises(ToolRejected, match="must be a JSON object"):
            await add.call(["1", "2"], time_limit=30)  # type: ignore[arg-type]
        result = await add.call({"a": "one"}, time_limit=30)
    assert result.is_error


async def test_a_call_past_its_time_limit_is_a_typed_timeout(server: McpServerConfig) -> None:
    async with box(server) as toolbox:
        (sleep, echo) = await toolbox.tools(["testtools.sleep", "testtools.echo"])
        with pytest.raises(ToolTimeout, match=r"testtools\.sleep: no result within 0\.3 s"):
            await sleep.call({"seconds": 60}, time_limit=0.3)
        # the connection serves the next call
        assert (await echo.call({"text": "after"}, time_limit=30)).text == "echo: after"


async def test_cancelling_the_caller_cancels_the_call_on_the_server(
    server: McpServerConfig,
) -> None:
    async with box(server) as toolbox:
        (hang, cancelled, echo) = await toolbox.tools(
            ["testtools.hang", "testtools.cancelled", "testtools.echo"]
        )
        before = int((await cancelled.call({}, time_limit=30)).text)
        call = asyncio.ensure_future(hang.call({}, time_limit=300))
        # the call has reached the server when a later call on the same connection answers
        await echo.call({"text": "x"}, time_limit=30)
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        seen = before
        for _ in range(200):  # the server counts it when notifications/cancelled arrives
            seen = int((await cancelled.call({}, time_limit=30)).text)
            if seen > before:
                break
            await asyncio.sleep(0.02)
    assert seen == before + 1


async def test_progress_notifications_reach_the_callback_in_order(
    server: McpServerConfig,
) -> None:
    seen: list[ToolProgress] = []
    async with box(server) as toolbox:
        (count,) = await toolbox.tools(["testtools.count"])
        result = await count.call({"steps": 5}, time_limit=30, progress=seen.append)
    assert result.text == "counted 5"
    assert seen == [ToolProgress(float(i), 5.0, f"step {i}") for i in range(1, 6)]


async def test_a_server_that_exits_mid_call_is_a_typed_error_and_the_next_call_reconnects() -> None:
    async with ToolBox({"testtools": stdio_server()}) as toolbox:
        (crash, pid) = await toolbox.tools(["testtools.crash", "testtools.pid"])
        first = (await pid.call({}, time_limit=30)).text
        with pytest.raises(ToolServerLost, match=r"testtools\.crash"):
            await crash.call({}, time_limit=30)
        second = (await pid.call({}, time_limit=30)).text
        assert toolbox.connection("testtools").opened == 2
    assert first != second and int(second) > 0


async def test_a_command_that_cannot_start_is_unavailable(tmp_path: Path) -> None:
    missing = McpServerConfig(name="gone", command=[str(tmp_path / "no-such-server")])
    async with ToolBox({"gone": missing}) as toolbox:
        with pytest.raises(ToolUnavailable, match=r"mcp\.gone"):
            await toolbox.tools(["gone"])


async def test_a_server_that_exits_at_once_is_unavailable() -> None:
    quits = McpServerConfig(name="quits", command=[sys.executable, "-c", "pass"])
    async with ToolBox({"quits": quits}) as toolbox:
        with pytest.raises(ToolUnavailable, match=r"mcp\.quits"):
            await toolbox.tools(["quits"])


async def test_an_unset_variable_in_a_header_is_unavailable_naming_it(
    http_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLUICE_TEST_NO_SUCH_TOKEN", raising=False)
    config = McpServerConfig(
        name="web",
        url=http_server_url,
        headers={"Authorization": "Bearer ${SLUICE_TEST_NO_SUCH_TOKEN}"},
    )
    async with ToolBox({"web": config}) as toolbox:
        with pytest.raises(ToolUnavailable, match="SLUICE_TEST_NO_SUCH_TOKEN is not set"):
            await toolbox.tools(["web"])


async def test_env_references_reach_a_stdio_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_TEST_FAKE_TOKEN", "fake-token-for-tests")
    config = McpServerConfig(
        name="envy",
        command=[
            sys.executable,
            "-c",
            "import os, sys; sys.exit(0 if os.environ['X'] == 'fake-token-for-tests' else 1)",
        ],
        env={"X": "${SLUICE_TEST_FAKE_TOKEN}"},
    )
    # the process sees the value (it exits 0), and speaks no MCP: unavailable, not a crash
    async with ToolBox({"envy": config}) as toolbox:
        with pytest.raises(ToolUnavailable):
            await toolbox.tools(["envy"])


def test_the_http_test_server_listens_before_it_names_its_port() -> None:
    """The fixture connects the moment the port is printed: the connection waits in the
    backlog while the server still starts, and is not refused."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "http"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    finally:
        process.terminate()
        process.wait(timeout=10)
