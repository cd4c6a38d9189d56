"""The three provider wire formats the simulator speaks, by the path that serves each."""

from __future__ import annotations

from collections.abc import Mapping

from sluice.sim.formats.base import ErrorKind, ErrorReply, Exchange, StreamEncoder, WireFormat
from sluice.sim.formats.chat import ChatFormat
from sluice.sim.formats.messages import MessagesFormat
from sluice.sim.formats.responses import ResponsesFormat

FORMATS_BY_PATH: Mapping[str, WireFormat] = {
    "/v1/chat/completions": ChatFormat(),
    "/v1/messages": MessagesFormat(),
    "/v1/responses": ResponsesFormat(),
}

__all__ = [
    "FORMATS_BY_PATH",
    "ChatFormat",
    "ErrorKind",
    "ErrorReply",
    "Exchange",
    "MessagesFormat",
    "ResponsesFormat",
    "StreamEncoder",
    "WireFormat",
]
