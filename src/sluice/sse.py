"""Server-sent events: an incremental decoder (bytes in any chunking -> events) and an encoder.

Implements the WHATWG HTML "server-sent events" parsing rules. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None


class SSEDecoder:
    """Feed bytes with ``decode()``; call ``flush()`` at end of stream."""

    def __init__(self) -> None:
        self.last_event_id = ""
        self.retry: int | None = None

    def decode(self, chunk: bytes) -> list[ServerSentEvent]:
        raise NotImplementedError

    def flush(self) -> list[ServerSentEvent]:
        raise NotImplementedError


def encode_event(
    data: str | bytes, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    raise NotImplementedError


def encode_comment(text: str = "") -> bytes:
    raise NotImplementedError
