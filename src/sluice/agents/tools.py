"""The tool interface an agent's run calls, whatever runs the tool, and what a call ends in.

    ToolError                 a call that produced no result (``type`` reaches logs and UI)
    ├── ToolTimeout               the call passed its deadline; it was cancelled
    ├── ToolUnavailable           the tool's server could not be started, reached or initialised
    ├── ToolServerLost            the server's connection closed during the call
    ├── ToolRejected              the server refused the request (unknown tool, bad params)
    └── UnknownTool               no tool of that name

A tool that ran and failed is no exception: its ``ToolOutcome`` has ``is_error`` set, and its
text goes to the model like any result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluice.errors import SluiceError

#: Characters of a result's text given to the model; the whole result stays in the record.
MAX_SUMMARY_CHARS = 16_000


class ToolError(SluiceError):
    type = "tool_error"


class ToolTimeout(ToolError):
    type = "tool_timeout"


class ToolUnavailable(ToolError):
    type = "tool_unavailable"


class ToolServerLost(ToolError):
    type = "tool_server_lost"


class ToolRejected(ToolError):
    type = "tool_rejected"


class UnknownTool(ToolError):
    type = "unknown_tool"


@dataclass(slots=True, frozen=True)
class ToolProgress:
    """One progress notification of a running call (MCP ``notifications/progress``)."""

    progress: float
    total: float | None = None
    message: str | None = None


ProgressFn = Callable[[ToolProgress], None]


@dataclass(slots=True)
class ToolOutcome:
    """What a call returned: ``text`` for the model (bounded), ``content`` whole for the record."""

    text: str
    is_error: bool = False
    #: the result's content blocks, as JSON
    content: list[dict[str, Any]] = field(default_factory=list)
    structured: dict[str, Any] | None = None

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"is_error": self.is_error, "content": self.content}
        if self.structured is not None:
            record["structured"] = self.structured
        return record


class Tool(Protocol):
    """A tool as an agent sees it: where it comes from, its name there, what it does, the JSON
    Schema of its arguments, and a call under a deadline."""

    @property
    def source(self) -> str:
        """``"builtin"``, or the name of the MCP server that has it."""
        ...

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> dict[str, Any]: ...

    async def call(
        self,
        arguments: dict[str, Any],
        *,
        time_limit: float,
        progress: ProgressFn | None = None,
    ) -> ToolOutcome:
        """Run the tool; ``ToolTimeout`` past ``time_limit`` seconds, other ``ToolError`` when
        there is no result. Cancelling the caller cancels the call."""
        ...


def summarise(text: str, limit: int = MAX_SUMMARY_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[{len(text) - limit} more characters not shown]"


def check_arguments(tool: str, arguments: Any) -> dict[str, Any]:
    if not isinstance(arguments, dict):
        raise ToolRejected(f"{tool}: the arguments must be a JSON object")
    return arguments
