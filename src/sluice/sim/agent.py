"""The ``agent`` scenario's turn, planned from the conversation: answer from the tool results it
carries, or call the tools its question names, or answer the question. No I/O.

The *question* is the last user message that asks something (one that only carries tool
results does not). The rules (``docs/simulator.md`` says them for clients):

1. When the user-side input after the last assistant turn carries tool results, the turn is a
   text answer that quotes each, in order: ``Here is what I found. lookup_order: <result>.``
   (a result the format flags as an error: ``The tool lookup_order failed: <result>.``), then
   ``Let me know if you need anything else.``
2. Otherwise, when tools are declared and the tool choice is not ``none``, the tools the
   question names are called, all in parallel, in the order declared, after
   ``Let me check that.`` and a blank line: a tool whose whole name is a word of the question
   (any case); when the question names no tool whole, a tool that has a part of its name
   (split at ``_`` and ``-``) of five letters or more that begins a word of the question. A
   choice of one tool allows only it; a required choice (or one tool) with no match calls the
   first tool allowed.
3. Otherwise the turn answers in text: ``You asked: "<question>"``, then the ``support``
   answer to it.

A call's arguments come from its tool's JSON Schema: every ``required`` property, and an
optional one only when the question holds a value of its own for it (an id, an expression,
a number). By the property's type and name:

- ``enum``: the first value that is a word of the question, else the first value;
- ``boolean``: ``false``; ``array``: ``[]``; ``object``: ``{}``;
- ``integer`` / ``number``: the first number that stands as a word of the question (for an id
  property, else the digits of the id), else the schema's ``default``, else ``1``;
- a string named ``id``, ``*_id``, ``*-id``, ``*Id`` or ``*ID``: the question's first
  whitespace-separated token with a digit in it, stripped of the punctuation around it;
- a string named ``expression``: the question's first arithmetic expression (a run of digits,
  ``+ - * / % .``, parentheses and spaces with an operator between two operands);
- any other string (or one of the above the question has nothing for): the question, its runs
  of whitespace made one space, cut to 200 characters.

Quotes are a text with its runs of whitespace made one space, cut to 200 characters (``…``
marks a cut). When the conversation has asked more than one question, the turn's text begins
``Following up on your earlier question ("<first question>"): ``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.sim.conversation import Conversation, DeclaredTool, ToolResult

#: How much of a question or a tool result a turn quotes, in characters.
QUOTE = 200
CHECKING = "Let me check that.\n\n"
FOUND = "Here is what I found."
CLOSING = "Let me know if you need anything else."

_WORD = re.compile(r"[^\W_]+")
_NAME_PARTS = re.compile(r"[_-]+")
#: a property that holds an id: ``id``, ``order_id``, ``order-id``, ``orderId``, ``orderID``
_ID_NAME = re.compile(r"(?:^|[_-])[iI][dD]$|[a-z0-9]Id$|ID$")
#: a run of digits, operators, dots, parentheses and spaces, from a digit or ``(`` on
_EXPRESSION = re.compile(r"[\d(][\d\s.+\-*/%()]*")
_OPERATOR_BETWEEN = re.compile(r"[\d)]\s*[-+*/%]+\s*[\d(]")
#: a number that stands as a word of its own (``3`` in ``in 3 days``, not ``1042`` in ``A-1042``)
_NUMBER = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?(?![\w-]|\.\d)")
_DIGITS = re.compile(r"\d+")
_PUNCTUATION = ".,;:!?()[]{}<>\"'`"


@dataclass(frozen=True, slots=True)
class Plan:
    """What the turn says: ``text``, then the ``support`` answer to ``answer_to`` when it is
    set, then the ``calls`` (name, JSON arguments), in parallel."""

    text: str
    calls: tuple[tuple[str, str], ...] = ()
    answer_to: str | None = None


def plan(conversation: Conversation) -> Plan:
    questions = conversation.questions
    opening = ""
    if len(questions) > 1:
        opening = f'Following up on your earlier question ("{quote(questions[0])}"): '
    question = questions[-1] if questions else ""
    results = conversation.pending_results
    if results:
        return Plan(opening + report(results))
    calls = tuple(
        (tool.name, json.dumps(arguments(tool, question), ensure_ascii=False))
        for tool in chosen_tools(conversation, question)
    )
    if calls:
        return Plan(opening + CHECKING, calls)
    asked = f'You asked: "{quote(question)}"\n\n' if question.strip() else ""
    return Plan(opening + asked, answer_to=question)


def quote(text: str) -> str:
    """``text`` on one line, cut to ``QUOTE`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= QUOTE else text[:QUOTE] + "…"


def report(results: list[ToolResult]) -> str:
    sentences = [FOUND]
    for result in results:
        said = quote(result.text) or "(no output)"
        end = "" if said[-1] in ".!?" else "."
        if result.is_error:
            sentences.append(f"The tool {result.name} failed: {said}{end}")
        else:
            sentences.append(f"{result.name}: {said}{end}")
    sentences.append(CLOSING)
    return " ".join(sentences)


def chosen_tools(conversation: Conversation, question: str) -> list[DeclaredTool]:
    """The tools the turn calls, in the order the request declares them."""
    choice = conversation.choice
    if choice.mode == "none":
        return []
    allowed = [
        tool for tool in conversation.tools if choice.allowed is None or tool.name in choice.allowed
    ]
    lowered = question.lower()
    named = [tool for tool in allowed if _names(tool.name.lower(), lowered)]
    if not named:
        words = _WORD.findall(lowered)
        named = [tool for tool in allowed if _hints(tool.name.lower(), words)]
    if not named and choice.mode == "required" and allowed:
        named = allowed[:1]
    return named


def _names(name: str, text: str) -> bool:
    """Whether ``text`` holds ``name`` as a word of its own."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def _hints(name: str, words: list[str]) -> bool:
    """Whether a part of ``name`` of five letters or more begins one of ``words``."""
    parts = [part for part in _NAME_PARTS.split(name) if len(part) >= 5 and part.isalpha()]
    return any(word.startswith(part) for part in parts for word in words)


_SKIP = object()


def arguments(tool: DeclaredTool, question: str) -> dict[str, Any]:
    """Arguments for ``tool`` from its JSON Schema and the question: every required property,
    and an optional one when the question holds a value of its own for it."""
    schema = tool.parameters
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = schema.get("required")
    needed = (
        {name for name in required if isinstance(name, str)}
        if isinstance(required, list)
        else set()
    )
    names = [*properties, *sorted(needed - set(properties))]
    values: dict[str, Any] = {}
    for name in names:
        spec = properties.get(name)
        value = _value(
            name, spec if isinstance(spec, Mapping) else {}, question, required=name in needed
        )
        if value is not _SKIP:
            values[name] = value
    return values


def _value(name: str, spec: Mapping[str, Any], question: str, *, required: bool) -> Any:
    kind = _kind(spec)
    choices = spec.get("enum")
    if isinstance(choices, list) and choices:
        words = set(_WORD.findall(question.lower()))
        for choice in choices:
            if isinstance(choice, str) and choice.lower() in words:
                return choice
        return choices[0] if required else _SKIP
    if kind == "boolean":
        return False if required else _SKIP
    if kind in ("integer", "number"):
        text = first_number(question)
        if text is None and _ID_NAME.search(name):
            token = first_id(question) or ""
            digits = _DIGITS.search(token)
            text = digits.group() if digits else None
        if text is None:
            return spec.get("default", 1) if required else _SKIP
        return int(text.partition(".")[0]) if kind == "integer" or "." not in text else float(text)
    if kind == "array":
        return [] if required else _SKIP
    if kind == "object":
        return {} if required else _SKIP
    if kind == "null":
        return None if required else _SKIP
    found_text: str | None = None
    if _ID_NAME.search(name):
        found_text = first_id(question)
    elif name.lower() == "expression":
        found_text = first_expression(question)
    if found_text is not None:
        return found_text
    return " ".join(question.split())[:QUOTE] if required else _SKIP


def _kind(spec: Mapping[str, Any]) -> str:
    """The schema's type, lower case (Gemini writes ``STRING``); the first that is not
    ``null`` when it is a list; ``string`` when it says none."""
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if isinstance(k, str) and k.lower() != "null"), "null")
    return kind.lower() if isinstance(kind, str) else "string"


def first_id(text: str) -> str | None:
    """The first whitespace-separated token of ``text`` with a digit in it, without the
    punctuation around it (``A-1042`` in ``order A-1042?``)."""
    for token in text.split():
        token = token.strip(_PUNCTUATION)
        if any(ch.isdigit() for ch in token):
            return token
    return None


def first_number(text: str) -> str | None:
    """The first number of ``text`` that stands as a word of its own."""
    found = _NUMBER.search(text)
    return found.group() if found else None


def first_expression(text: str) -> str | None:
    """The first arithmetic expression of ``text``: a run of digits, operators, dots,
    parentheses and spaces with an operator between two operands (``12 * (3 + 4)``)."""
    for found in _EXPRESSION.finditer(text):
        candidate = found.group()
        while True:  # no operator, dot, open or unmatched closing parenthesis at the end
            trimmed = candidate.rstrip("+-*/%.( ")
            if trimmed.endswith(")") and trimmed.count(")") > trimmed.count("("):
                trimmed = trimmed[:-1]
            if trimmed == candidate:
                break
            candidate = trimmed
        if _OPERATOR_BETWEEN.search(candidate) and candidate.count("(") == candidate.count(")"):
            return candidate
    return None
