"""An agent's tools under the names a model may call them by, declared as ``ToolSpec``s.

Providers accept function names of 1 to 64 letters, digits, ``_`` and ``-`` (OpenAI's Chat
and Responses APIs, Anthropic's Messages API alike). A tool keeps its own name when that name
is such a name and no other tool of the agent has it; otherwise it is called
``server__tool`` (other characters as ``_``, cut to fit, a number added if still taken).
``TurnRequest.tools`` carries the specs in neutral form; each wire format's request builder
renders them in its own (``tools[].function``, ``tools[].input_schema``, ``tools[].name``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sluice.agents.tools import ProgressFn, Tool, ToolOutcome, UnknownTool
from sluice.turn import ToolSpec

#: A function name every supported provider accepts.
MODEL_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OTHER = re.compile(r"[^A-Za-z0-9_-]")


def parameters_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema as providers take it: an object schema with its properties."""
    out = dict(schema)
    out["type"] = "object"
    properties = out.get("properties")
    out["properties"] = properties if isinstance(properties, dict) else {}
    return out


class AgentTools:
    """An agent's tools by the names its model sees; calls go to the tool a name stands for."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        counts: dict[str, int] = {}
        for tool in tools:
            counts[tool.name] = counts.get(tool.name, 0) + 1
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            name = tool.name
            if counts[name] > 1 or MODEL_TOOL_NAME.fullmatch(name) is None:
                name = _OTHER.sub("_", f"{tool.source}__{tool.name}")[:64]
            base, n = name, 1
            while name in self._tools:
                n += 1
                suffix = f"_{n}"
                name = base[: 64 - len(suffix)] + suffix
            self._tools[name] = tool

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[ToolSpec]:
        """The declarations for ``TurnRequest.tools``, in the agent's order."""
        return [
            ToolSpec(
                name=name,
                description=tool.description or tool.name,
                parameters=parameters_schema(tool.parameters),
            )
            for name, tool in self._tools.items()
        ]

    def tool(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownTool(f"the agent has no tool {name!r}") from None

    def origin(self, name: str) -> str:
        """Where the tool a model's name stands for comes from: ``"server.tool"``, or the
        built-in tool's name."""
        tool = self.tool(name)
        return tool.name if tool.source == "builtin" else f"{tool.source}.{tool.name}"

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        time_limit: float,
        progress: ProgressFn | None = None,
    ) -> ToolOutcome:
        return await self.tool(name).call(arguments, time_limit=time_limit, progress=progress)
