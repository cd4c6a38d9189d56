"""``ToolBox``: the tools agents call, the configured MCP servers' and the built-in ones.

``async with`` owns the servers' connections (``sluice.agents.mcp``), each opened on first use.
The MCP SDK itself is loaded with the first server used: a gateway with agents of built-in tools
alone, or with none, never loads it (some 35 MB of resident memory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from sluice.agents.tools import Tool, UnknownTool
from sluice.config import BUILTIN_TOOLS, McpServerConfig

if TYPE_CHECKING:
    from sluice.agents.mcp import McpConnection

#: Seconds the toolbox's close waits for its connections to close before cutting them.
CLOSE_GRACE = 5.0


class ToolBox:
    """The configured MCP servers and the built-in tools; ``async with`` owns the connections.

    ``await box.tools(["orders", "search.web_search", "clock"])`` gives an agent's tools as
    its ``tools`` entries name them, connecting the servers they come from.
    """

    def __init__(
        self,
        servers: Mapping[str, McpServerConfig],
        builtins: Mapping[str, Tool] | None = None,
    ) -> None:
        self._servers = dict(servers)
        self._builtins = dict(builtins or {})
        self._group: anyio.abc.TaskGroup | None = None
        self._connections: dict[str, McpConnection] = {}

    async def __aenter__(self) -> ToolBox:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
        # Each connection's task closes its own; one that takes too long is cut.
        group.cancel_scope.deadline = anyio.current_time() + CLOSE_GRACE
        await group.__aexit__(None, None, None)

    def connection(self, server: str) -> McpConnection:
        if self._group is None:
            raise RuntimeError("the toolbox is not open (use it in `async with`)")
        if server not in self._servers:
            raise UnknownTool(f"no MCP server {server!r} is configured")
        connection = self._connections.get(server)
        if connection is None:
            from sluice.agents.mcp import McpConnection  # (the SDK, on first use)

            connection = McpConnection(self._servers[server], self._group)
            self._connections[server] = connection
        return connection

    async def tools(self, entries: Sequence[str]) -> list[Tool]:
        """The tools ``entries`` name (an agent's ``tools``), in their order."""
        chosen: list[Tool] = []
        for entry in entries:
            server, dot, name = entry.partition(".")
            if not dot and entry in BUILTIN_TOOLS:
                if entry not in self._builtins:
                    raise UnknownTool(f"the built-in tool {entry!r} is not available here")
                chosen.append(self._builtins[entry])
                continue
            listed = await self.connection(server).tools()
            if not dot:
                chosen.extend(listed)
                continue
            found = [tool for tool in listed if tool.name == name]
            if not found:
                raise UnknownTool(f"{entry}: the server {server!r} lists no tool {name!r}")
            chosen.extend(found)
        return chosen
