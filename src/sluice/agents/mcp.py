"""The connections to the configured MCP servers (``McpConnection``), their tools, and calls.

Each server's connection (its transport and its ``ClientSession``) is held by one task of the
toolbox's task group, which opens it and closes it: anyio's transports must be left by the
task that entered them. Calls come from the callers' own tasks and go through the session. A
connection is opened on first use; one found closed (its server exited, its HTTP endpoint went
away) is opened anew for the next call. The SDK's and anyio's errors stop here: callers see
the ``ToolError`` tree of ``sluice.agents.tools``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import httpx2
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import StreamableHTTPError, streamable_http_client
from mcp.shared.exceptions import MCPError

from sluice.agents.tools import (
    ProgressFn,
    ToolOutcome,
    ToolProgress,
    ToolRejected,
    ToolServerLost,
    ToolTimeout,
    ToolUnavailable,
    UnknownTool,
    check_arguments,
    summarise,
)
from sluice.config import ENV_REFERENCE, McpServerConfig

log = logging.getLogger("sluice.agents")

#: Pages of ``tools/list`` read from one server, and tools kept from it, at most.
MAX_TOOL_PAGES = 20
MAX_SERVER_TOOLS = 500

#: What a broken connection raises under a call, besides the SDK's ``CONNECTION_CLOSED``.
_CONNECTION_ERRORS = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    StreamableHTTPError,
    httpx2.TransportError,
    OSError,
)


class EnvReferenceError(ToolUnavailable):
    pass


def expand(where: str, values: Mapping[str, str]) -> dict[str, str]:
    """``values`` with each ``${VAR}`` replaced by the environment's ``VAR`` (read now)."""

    def one(match: Any) -> str:
        name = match.group(1)
        value = os.environ.get(name)
        if value is None:
            raise EnvReferenceError(f"{where}: the environment variable {name} is not set")
        return value

    return {key: ENV_REFERENCE.sub(one, value) for key, value in values.items()}


def outcome(result: types.CallToolResult) -> ToolOutcome:
    """A ``CallToolResult`` as the model's text (its blocks joined) and the record's JSON."""
    pieces: list[str] = []
    for block in result.content:
        match block:
            case types.TextContent(text=text):
                pieces.append(text)
            case types.ImageContent(mime_type=mime) | types.AudioContent(mime_type=mime):
                pieces.append(f"[{block.type} {mime}]")
            case types.ResourceLink(uri=uri, name=name):
                pieces.append(f"[resource {name}: {uri}]")
            case types.EmbeddedResource(resource=types.TextResourceContents(text=text)):
                pieces.append(text)
            case types.EmbeddedResource(resource=resource):
                pieces.append(f"[resource {resource.uri}]")
    structured = result.structured_content
    if not pieces and structured is not None:
        import orjson

        pieces.append(orjson.dumps(structured).decode())
    return ToolOutcome(
        text=summarise("\n".join(pieces)),
        is_error=bool(result.is_error),
        content=[
            block.model_dump(mode="json", by_alias=True, exclude_none=True)
            for block in result.content
        ],
        structured=structured,
    )


@dataclass(slots=True)
class McpTool:
    """One tool of one MCP server; calls go through the server's current connection."""

    connection: McpConnection
    name: str
    description: str
    parameters: dict[str, Any]

    @property
    def source(self) -> str:
        return self.connection.config.name

    async def call(
        self,
        arguments: dict[str, Any],
        *,
        time_limit: float,
        progress: ProgressFn | None = None,
    ) -> ToolOutcome:
        return await self.connection.call(
            self.name, arguments, time_limit=time_limit, progress=progress
        )


@dataclass(slots=True)
class _Live:
    """An open connection: its session, the tools it listed, and the event that ends it."""

    session: ClientSession
    tools: dict[str, types.Tool]
    done: anyio.Event


class McpConnection:
    """One configured server's connection, opened (again) on demand in the toolbox's group."""

    def __init__(self, config: McpServerConfig, group: anyio.abc.TaskGroup) -> None:
        self.config = config
        self._group = group
        self._live: _Live | None = None
        self._lock = anyio.Lock()
        #: connections opened so far (a reconnection counts)
        self.opened = 0

    async def tools(self) -> list[McpTool]:
        live = await self._open()
        return [
            McpTool(self, tool.name, tool.description or "", dict(tool.input_schema))
            for tool in live.tools.values()
        ]

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        time_limit: float,
        progress: ProgressFn | None = None,
    ) -> ToolOutcome:
        where = f"{self.config.name}.{name}"
        arguments = check_arguments(where, arguments)
        with anyio.move_on_after(time_limit) as scope:
            live = await self._open()
            if name not in live.tools:
                raise UnknownTool(f"{where}: the server lists no such tool")
            on_progress = None if progress is None else _progress_relay(progress)
            try:
                result = await live.session.call_tool(
                    name, arguments, progress_callback=on_progress
                )
            except MCPError as exc:
                if exc.code == types.CONNECTION_CLOSED:
                    live.done.set()
                    raise ToolServerLost(f"{where}: the server's connection closed") from exc
                raise ToolRejected(f"{where}: the server refused the call: {exc.message}") from exc
            except _CONNECTION_ERRORS as exc:
                live.done.set()
                raise ToolServerLost(f"{where}: the server's connection broke") from exc
            except RuntimeError as exc:  # a result this client cannot take (input_required)
                raise ToolRejected(f"{where}: {exc}") from exc
            if not isinstance(result, types.CallToolResult):
                raise ToolRejected(f"{where}: the server answered with no tool result")
            return outcome(result)
        assert scope.cancelled_caught
        raise ToolTimeout(f"{where}: no result within {time_limit:g} s")

    def close(self) -> None:
        """Ask the connection's task to close it; harmless when none is open."""
        if self._live is not None:
            self._live.done.set()

    async def _open(self) -> _Live:
        async with self._lock:
            live = self._live
            if live is None or live.done.is_set():
                try:
                    live = self._live = await self._group.start(self._hold)
                except ToolUnavailable:
                    raise
                except TimeoutError as exc:
                    raise ToolUnavailable(
                        f"mcp.{self.config.name}: no answer within "
                        f"{self.config.connect_timeout:g} s"
                    ) from exc
                except Exception as exc:  # the SDK's, anyio's, the OS's: mapped here, once
                    raise ToolUnavailable(
                        f"mcp.{self.config.name}: cannot connect ({type(exc).__name__})"
                    ) from exc
            return live

    async def _hold(self, *, task_status: anyio.abc.TaskStatus[_Live]) -> None:
        """Open the connection, hand it to the caller of ``_open``, keep it until it is done,
        and close it. A failure after the hand-over ends this connection alone."""
        started = False
        done = anyio.Event()
        try:
            # The deadline's scope encloses the transport's and the session's task groups,
            # which must be left in the order they were entered; it is lifted once connected.
            with anyio.CancelScope(
                deadline=anyio.current_time() + self.config.connect_timeout
            ) as connecting:
                async with contextlib.AsyncExitStack() as stack:
                    read, write = await stack.enter_async_context(self._transport(stack))
                    session = await stack.enter_async_context(ClientSession(read, write))
                    await session.initialize()
                    tools = await _list_tools(session)
                    connecting.deadline = math.inf
                    self.opened += 1
                    task_status.started(_Live(session, tools, done))
                    started = True
                    await done.wait()
            if not started:
                raise TimeoutError
        except Exception as exc:
            if not started:
                raise
            log.warning("mcp.%s: the connection ended: %s", self.config.name, type(exc).__name__)
        finally:
            done.set()

    def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        config = self.config
        if config.url is None:
            params = StdioServerParameters(
                command=config.command[0],
                args=config.command[1:],
                env=expand(f"mcp.{config.name}.env", config.env) or None,
                cwd=config.cwd,
            )
            return stdio_client(params)
        headers = expand(f"mcp.{config.name}.headers", config.headers)
        client = httpx2.AsyncClient(
            headers=headers, timeout=httpx2.Timeout(config.connect_timeout, read=300.0)
        )
        stack.push_async_callback(client.aclose)
        return streamable_http_client(config.url, http_client=client)


def _progress_relay(progress: ProgressFn) -> Any:
    async def relay(value: float, total: float | None, message: str | None) -> None:
        progress(ToolProgress(value, total, message))

    return relay


async def _list_tools(session: ClientSession) -> dict[str, types.Tool]:
    tools: dict[str, types.Tool] = {}
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        params = None if cursor is None else types.PaginatedRequestParams(cursor=cursor)
        page = await session.list_tools(params=params)
        for tool in page.tools[: MAX_SERVER_TOOLS - len(tools)]:
            tools[tool.name] = tool
        cursor = page.next_cursor
        if cursor is None or len(tools) >= MAX_SERVER_TOOLS:
            break
    return tools
