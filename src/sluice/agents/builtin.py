"""The tools built into the gateway, so that an agent runs with no MCP server: a clock, a
calculator, and a search over the project's own documentation."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from sluice.agents.tools import (
    ProgressFn,
    ToolOutcome,
    ToolTimeout,
    check_arguments,
    summarise,
)

#: The documentation ``docs_search`` reads: the checkout's ``docs/``.
DOCS_DIR = Path(__file__).resolve().parents[3] / "docs"

#: Bounds of the calculator: the expression's length, an integer's size in bits (intermediate
#: results included), an exponent's magnitude, the expression's nesting.
MAX_EXPRESSION_CHARS = 500
MAX_INT_BITS = 4096
MAX_EXPONENT = 10_000
MAX_DEPTH = 50

#: Bounds of docs_search: the query's length and terms, the sections returned, each one's text.
MAX_QUERY_CHARS = 500
MAX_QUERY_TERMS = 20
MAX_HITS = 3
MAX_HIT_CHARS = 1500


class CalculationError(ValueError):
    """An expression the calculator refuses, or one it cannot compute."""


Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def calculate(expression: str) -> Number:
    """The value of an arithmetic expression: numbers, ``+ - * / // % **`` and parentheses,
    nothing else (no names, calls, attributes or other syntax), within bounds on size."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"the expression is over {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise CalculationError("not an arithmetic expression") from exc
    return _value(tree.body, 0)


def _value(node: ast.expr, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise CalculationError(f"the expression nests deeper than {MAX_DEPTH}")
    match node:
        case ast.Constant(value=bool()):
            raise CalculationError("only numbers are allowed")
        case ast.Constant(value=int() | float() as number):
            return _bounded(number)
        case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
            return _UNARY[type(op)](_value(operand, depth + 1))
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            a, b = _value(left, depth + 1), _value(right, depth + 1)
            _check_size(op, a, b)
            try:
                return _bounded(_BINARY[type(op)](a, b))
            except ZeroDivisionError as exc:
                raise CalculationError("division by zero") from exc
            except OverflowError as exc:
                raise CalculationError("the result is too large") from exc
    raise CalculationError(
        f"{type(node).__name__} is not allowed: only numbers, + - * / // % ** and parentheses"
    )


def _check_size(op: ast.operator, a: Number, b: Number) -> None:
    """Refuse, before computing it, an integer result that would pass ``MAX_INT_BITS``."""
    if isinstance(op, ast.Pow):
        if abs(b) > MAX_EXPONENT:
            raise CalculationError(f"an exponent is over {MAX_EXPONENT}")
        # |a| ** b has more than (bits of |a| - 1) * b bits
        if (
            isinstance(a, int)
            and isinstance(b, int)
            and (abs(a).bit_length() - 1) * b >= MAX_INT_BITS
        ):
            raise CalculationError("the result is too large")
        if isinstance(a, int) and a == 0 and b < 0:
            raise CalculationError("division by zero")
    elif (
        isinstance(op, ast.Mult)
        and isinstance(a, int)
        and isinstance(b, int)
        and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1
    ):
        raise CalculationError("the result is too large")


def _bounded(number: Any) -> Number:
    if isinstance(number, complex):
        raise CalculationError("the result is not a real number")
    if isinstance(number, int) and number.bit_length() > MAX_INT_BITS:
        raise CalculationError("the result is too large")
    if isinstance(number, float) and not math.isfinite(number):
        raise CalculationError("the result is not a finite number")
    return number  # type: ignore[no-any-return]


@dataclass(slots=True, frozen=True)
class Section:
    path: str
    heading: str
    text: str


def read_sections(docs: Path) -> list[Section]:
    """The Markdown files of ``docs`` cut at their headings."""
    sections: list[Section] = []
    for path in sorted(docs.glob("*.md")):
        heading, lines = path.stem, list[str]()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("#"):
                if lines:
                    sections.append(Section(path.name, heading, "\n".join(lines).strip()))
                heading, lines = line.lstrip("#").strip(), []
            else:
                lines.append(line)
        if lines:
            sections.append(Section(path.name, heading, "\n".join(lines).strip()))
    return sections


_WORD = re.compile(r"[a-z0-9_]{2,}")


def search_sections(sections: list[Section], query: str) -> list[Section]:
    """The sections that best match ``query``: its terms counted, a heading's thrice."""
    terms = list(dict.fromkeys(_WORD.findall(query[:MAX_QUERY_CHARS].lower())))[:MAX_QUERY_TERMS]
    scored: list[tuple[int, int, Section]] = []
    for index, section in enumerate(sections):
        heading, text = section.heading.lower(), section.text.lower()
        score = sum(3 * heading.count(term) + text.count(term) for term in terms)
        matched = sum(1 for term in terms if term in heading or term in text)
        if score:
            scored.append((matched * 1000 + score, -index, section))
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [section for _, _, section in scored[:MAX_HITS]]


Handler = Callable[[dict[str, Any]], Awaitable[ToolOutcome]]


@dataclass(slots=True)
class BuiltinTool:
    """A tool run inside the gateway, with the same interface as an MCP server's."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: Handler = field(repr=False)
    source: str = "builtin"

    async def call(
        self,
        arguments: dict[str, Any],
        *,
        time_limit: float,
        progress: ProgressFn | None = None,
    ) -> ToolOutcome:
        arguments = check_arguments(self.name, arguments)
        with anyio.move_on_after(time_limit):
            return await self.handler(arguments)
        raise ToolTimeout(f"{self.name}: no result within {time_limit:g} s")


def _string_argument(arguments: dict[str, Any], key: str) -> str | None:
    value = arguments.get(key)
    return value if isinstance(value, str) else None


async def _clock(arguments: dict[str, Any]) -> ToolOutcome:
    now = datetime.now(UTC)
    return ToolOutcome(text=now.isoformat(timespec="seconds").replace("+00:00", "Z"))


async def _calculator(arguments: dict[str, Any]) -> ToolOutcome:
    expression = _string_argument(arguments, "expression")
    if expression is None:
        return ToolOutcome(text="'expression' must be a string", is_error=True)
    try:
        value = calculate(expression)
    except CalculationError as exc:
        return ToolOutcome(text=f"cannot calculate: {exc}", is_error=True)
    return ToolOutcome(text=repr(value) if isinstance(value, float) else str(value))


class DocsIndex:
    """The documentation's sections, read once, on the first search."""

    def __init__(self, docs: Path) -> None:
        self.docs = docs
        self._sections: list[Section] | None = None
        self._lock = anyio.Lock()

    async def sections(self) -> list[Section]:
        async with self._lock:
            if self._sections is None:
                self._sections = await anyio.to_thread.run_sync(read_sections, self.docs)
            return self._sections

    async def search(self, arguments: dict[str, Any]) -> ToolOutcome:
        query = _string_argument(arguments, "query")
        if query is None or not query.strip():
            return ToolOutcome(text="'query' must be a non-empty string", is_error=True)
        hits = search_sections(await self.sections(), query)
        if not hits:
            return ToolOutcome(text="no section of the documentation matches")
        return ToolOutcome(
            text="\n\n".join(
                f"{hit.path} — {hit.heading}\n{summarise(hit.text, MAX_HIT_CHARS)}" for hit in hits
            )
        )


def builtin_tools(docs: Path = DOCS_DIR) -> dict[str, BuiltinTool]:
    """The built-in tools by name (``sluice.config.BUILTIN_TOOLS``)."""
    index = DocsIndex(docs)
    empty = {"type": "object", "properties": {}, "additionalProperties": False}
    return {
        "clock": BuiltinTool(
            "clock", "The current date and time in UTC (ISO 8601).", empty, _clock
        ),
        "calculator": BuiltinTool(
            "calculator",
            "Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.",
            {
                "type": "object",
                "properties": {"expression": {"type": "string", "description": "e.g. (2 + 3) * 4"}},
                "required": ["expression"],
                "additionalProperties": False,
            },
            _calculator,
        ),
        "docs_search": BuiltinTool(
            "docs_search",
            "Search Sluice's documentation; returns the best-matching sections.",
            {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "words to look for"}},
                "required": ["query"],
                "additionalProperties": False,
            },
            index.search,
        ),
    }
