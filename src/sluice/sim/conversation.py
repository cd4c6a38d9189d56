"""What a request tells the simulated model, whatever its wire format: the tools it declares,
whether it may call them, and the conversation so far (questions, calls, tool results). No I/O.

Each wire format reads its own request JSON into a ``Conversation`` (``WireFormat.conversation``);
the ``agent`` scenario plans its turn from it. Reading is lenient about what it does not need
(an unknown item or part is skipped) and strict where a real provider is: a tool result that
answers no earlier call is refused (``ValueError``), as the three APIs that tie results to calls
by id refuse it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ChoiceMode = Literal["auto", "none", "required"]


@dataclass(frozen=True, slots=True)
class DeclaredTool:
    """A tool the request offers: its name, description and JSON Schema of its arguments."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: Any, description: Any, parameters: Any) -> DeclaredTool | None:
        """The tool a request's declaration names, as it came (None without a name: such a
        declaration is left out); a description or schema of the wrong type is left empty."""
        if not isinstance(name, str) or not name:
            return None
        return cls(
            name, description if isinstance(description, str) else "", as_mapping(parameters)
        )


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """What the request lets the model do with its tools: ``none`` calls none, ``required``
    calls at least one; ``allowed`` (when set) names the only tools it may call."""

    mode: ChoiceMode = "auto"
    allowed: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """One tool's result as the request carries it; ``is_error`` only where the format says."""

    name: str
    text: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of the conversation: a user's text and the tool results it carries, or an
    assistant's (what it said and the names of the tools it called)."""

    role: Literal["user", "assistant"]
    text: str = ""
    results: tuple[ToolResult, ...] = ()
    calls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Conversation:
    tools: tuple[DeclaredTool, ...] = ()
    choice: ToolChoice = ToolChoice()
    turns: tuple[Turn, ...] = ()

    @property
    def questions(self) -> list[str]:
        """The text of every user turn that asks something (not one that only carries results)."""
        return [
            turn.text
            for turn in self.turns
            if turn.role == "user" and not turn.results and turn.text.strip()
        ]

    @property
    def pending_results(self) -> list[ToolResult]:
        """The tool results of the user-side input after the last assistant turn."""
        results: list[ToolResult] = []
        for turn in reversed(self.turns):
            if turn.role == "assistant":
                break
            results[:0] = turn.results
        return results


class CallNames:
    """The name of each tool call by its id, as the assistant turns declare them, so that a
    result that names only its call can be told by its tool."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def add(self, call_id: Any, name: Any) -> str:
        """Note the call ``call_id`` of the tool ``name``; the name, ``""`` when it has none."""
        called = name if isinstance(name, str) else ""
        if isinstance(call_id, str) and call_id:
            self._names[call_id] = called
        return called

    def known(self, call_id: Any) -> bool:
        return isinstance(call_id, str) and call_id in self._names

    def name(self, call_id: Any, where: str) -> str:
        """The tool the call ``call_id`` called; ``ValueError`` when no earlier call has it."""
        name = self._names.get(call_id) if isinstance(call_id, str) else None
        if name is None:
            raise ValueError(f"{where}: no earlier tool call has the id {call_id!r}")
        return name


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def text_of(content: Any, kinds: tuple[str, ...] = ("text", "input_text", "output_text")) -> str:
    """The text of a message's content: a string, or the ``text`` of its parts of ``kinds``
    (a part without a ``type`` counts), joined by newlines."""
    if isinstance(content, str):
        return content
    return "\n".join(_texts(content, kinds))


def _texts(content: Any, kinds: tuple[str, ...]) -> Iterator[str]:
    for part in as_list(content):
        if isinstance(part, str):
            yield part
        elif isinstance(part, Mapping) and part.get("type", "text") in kinds:
            text = part.get("text")
            if isinstance(text, str):
                yield text


def json_text(value: Any) -> str:
    """A tool result that is no string, as JSON text (``json.dumps`` spacing)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def openai_choice(value: Any) -> ToolChoice:
    """``tool_choice`` of both OpenAI APIs: ``"none"``, ``"auto"``, ``"required"``, or one
    function, ``{"type": "function", "function": {"name"}}`` (Chat) or ``{"type": "function",
    "name"}`` (Responses)."""
    if value in ("none", "auto", "required"):
        return ToolChoice(value)
    choice = as_mapping(value)
    name = as_mapping(choice.get("function")).get("name", choice.get("name"))
    if choice.get("type") == "function" and isinstance(name, str):
        return ToolChoice("required", frozenset({name}))
    return ToolChoice()
