"""The provider wire formats the simulator speaks, by the path that serves each.

Three are served at one path each; Gemini's paths name the model and the method
(``/v1beta/models/{model}:streamGenerateContent``), so ``route`` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sluice.sim.formats.base import ErrorKind, ErrorReply, Exchange, StreamEncoder, WireFormat
from sluice.sim.formats.chat import ChatFormat
from sluice.sim.formats.gemini import GeminiFormat
from sluice.sim.formats.gemini import route as gemini_route
from sluice.sim.formats.messages import MessagesFormat
from sluice.sim.formats.responses import ResponsesFormat

FORMATS_BY_PATH: Mapping[str, WireFormat] = {
    "/v1/chat/completions": ChatFormat(),
    "/v1/messages": MessagesFormat(),
    "/v1/responses": ResponsesFormat(),
}

GEMINI = GeminiFormat()


@dataclass(frozen=True, slots=True)
class Target:
    """What a request's path says: the format, and for a format whose path names them the
    model and whether to stream (None: the body says)."""

    wire: WireFormat
    model: str | None = None
    stream: bool | None = None


def route(path: str) -> Target | None:
    """The format that serves ``path`` (relative to the simulator), or None."""
    wire = FORMATS_BY_PATH.get(path)
    if wire is not None:
        return Target(wire)
    found = gemini_route(path)
    if found is None:
        return None
    model, stream = found
    return Target(GEMINI, model, stream)


__all__ = [
    "FORMATS_BY_PATH",
    "GEMINI",
    "ChatFormat",
    "ErrorKind",
    "ErrorReply",
    "Exchange",
    "GeminiFormat",
    "MessagesFormat",
    "ResponsesFormat",
    "StreamEncoder",
    "Target",
    "WireFormat",
    "route",
]
