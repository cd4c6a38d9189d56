"""The tool-call argument accumulator shared by the stream adapters: fragments in, one parse out.

Providers stream a tool call's JSON arguments as text fragments that cut the JSON anywhere
(``{"locati``, ``on": "P``, ``aris"}``); only the concatenation is JSON, and only once the call
has ended. :class:`ToolArgs` appends each fragment to a list (linear in the stream length),
joins once and parses once when the call ends, and turns every ending into a
:class:`~sluice.events.ToolCallDone`:

* ``finish()``     -- the call ended normally: ``ok`` with the parsed object (empty text is a
  tool with no arguments: ``{}``), or ``invalid_json`` with the parser's message;
* ``incomplete()`` -- the stream ended first: ``incomplete``, never ``{}``, raw text kept.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.events import TOOL_INCOMPLETE, TOOL_INVALID_JSON, TOOL_OK, ToolCallDone

#: The one JSON parser argument text goes through (a module attribute, so a test can count calls).
_loads = orjson.loads

_JSON_KINDS: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def whole_text(done: ToolCallDone) -> str:
    """A finished call's argument text: as it arrived, else its arguments as JSON (``{}``)."""
    if done.raw or done.arguments is None:
        return done.raw
    return orjson.dumps(done.arguments).decode()


class ToolArgs:
    """One tool call's identity and the argument fragments received so far."""

    __slots__ = ("call_id", "index", "initial", "name", "parts", "started")

    def __init__(
        self, index: int, call_id: str, name: str, initial: dict[str, Any] | None = None
    ) -> None:
        self.index = index
        self.call_id = call_id
        self.name = name
        #: arguments given whole when the call began (an Anthropic ``tool_use`` block whose
        #: ``input`` is not empty); used only if no fragment ever arrives.
        self.initial = initial
        self.parts: list[str] = []
        #: true once any fragment arrived, even an empty one ("arguments started"): from
        #: then on the fragments, not ``initial``, are the arguments.
        self.started = False

    def append(self, fragment: str) -> None:
        self.started = True
        if fragment:
            self.parts.append(fragment)

    def text(self) -> str:
        parts = self.parts
        return parts[0] if len(parts) == 1 else "".join(parts)

    def finish(self, text: str | None = None) -> ToolCallDone:
        """The call ended: parse its arguments (``text`` overrides the fragments) exactly once."""
        raw = self.text() if text is None else text
        if not raw and not self.started and self.initial:
            # The arguments came whole with the start of the call and no fragment followed.
            return self._done(orjson.dumps(self.initial).decode(), self.initial)
        if not raw or raw.isspace():
            return self._done(raw, {})
        try:
            value = _loads(raw)
        except orjson.JSONDecodeError as exc:
            return self._done(raw, None, TOOL_INVALID_JSON, str(exc))
        if not isinstance(value, dict):
            kind = _JSON_KINDS.get(type(value), "value")
            return self._done(
                raw, None, TOOL_INVALID_JSON, f"arguments are a JSON {kind}, not an object"
            )
        return self._done(raw, value)

    def incomplete(self) -> ToolCallDone:
        """The stream ended before the call did: no arguments, the text so far kept."""
        return self._done(self.text(), None, TOOL_INCOMPLETE)

    def _done(
        self,
        raw: str,
        arguments: dict[str, Any] | None,
        status: str = TOOL_OK,
        error: str | None = None,
    ) -> ToolCallDone:
        return ToolCallDone(
            index=self.index,
            call_id=self.call_id,
            name=self.name,
            raw=raw,
            arguments=arguments,
            status=status,
            error=error,
            parse_attempts=1,
        )
