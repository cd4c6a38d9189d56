"""Test helpers: wire transcripts replayed through the real SSE decoder into an adapter."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sluice.events import (
    Error,
    Event,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)
from sluice.sse import SSEDecoder
from sluice.wire.anthropic_messages import MessagesStreamAdapter
from sluice.wire.gemini import GeminiStreamAdapter
from sluice.wire.openai_chat import ChatStreamAdapter
from sluice.wire.openai_responses import ResponsesStreamAdapter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECORDED = FIXTURES / "recorded"
HANDMADE = FIXTURES / "wire"

Adapter = ChatStreamAdapter | MessagesStreamAdapter | ResponsesStreamAdapter | GeminiStreamAdapter


def adapter_for(path: Path) -> Adapter:
    """The adapter for a transcript, by its file name's prefix."""
    name = path.name
    if name.startswith("anthropic-"):
        return MessagesStreamAdapter()
    if name.startswith(("chat-", "openai-chat-")):
        return ChatStreamAdapter()
    if name.startswith(("responses-", "openai-responses-")):
        return ResponsesStreamAdapter()
    if name.startswith("gemini-"):
        return GeminiStreamAdapter()
    raise ValueError(f"no adapter for {name}")


def transcripts() -> list[Path]:
    return sorted(RECORDED.glob("*.sse")) + sorted(HANDMADE.glob("*.sse"))


def transcript(path: Path) -> bytes:
    """A transcript's bytes, ending with a blank line as on the wire.

    The recorded Anthropic files end without the blank line after their last event (see
    ``tests/fixtures/recorded/README.md``); a conforming decoder would discard that event.
    """
    data = path.read_bytes()
    if not data.endswith(b"\n\n"):
        data += b"\n" if data.endswith(b"\n") else b"\n\n"
    return data


def replay(adapter: Adapter, chunks: Iterable[bytes]) -> list[Event]:
    """Bytes in the given chunking -> SSE decoder -> adapter, then ``close()``."""
    decoder = SSEDecoder()
    events: list[Event] = []
    for chunk in chunks:
        for sse in decoder.decode(chunk):
            events += adapter.feed(sse.event, sse.data)
    for sse in decoder.flush():
        events += adapter.feed(sse.event, sse.data)
    events += adapter.close()
    return events


def replay_file(path: Path) -> list[Event]:
    return replay(adapter_for(path), [transcript(path)])


def frames(data: bytes) -> list[tuple[str, str]]:
    decoder = SSEDecoder()
    return [(sse.event, sse.data) for sse in decoder.decode(data) + decoder.flush()]


def feed_all(adapter: Adapter, pairs: Iterable[tuple[str, str]]) -> list[Event]:
    events: list[Event] = []
    for event, data in pairs:
        events += adapter.feed(event, data)
    return events + adapter.close()


# -- reading event lists -----------------------------------------------------------------


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def reasoning_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, ReasoningDelta))


def starts(events: list[Event]) -> list[ToolCallStart]:
    return [e for e in events if isinstance(e, ToolCallStart)]


def dones(events: list[Event]) -> list[ToolCallDone]:
    return [e for e in events if isinstance(e, ToolCallDone)]


def fragments(events: list[Event], index: int) -> str:
    return "".join(e.fragment for e in events if isinstance(e, ToolCallDelta) and e.index == index)


def usages(events: list[Event]) -> list[Usage]:
    return [e for e in events if isinstance(e, Usage)]


def terminals(events: list[Event]) -> list[Finish | Error]:
    return [e for e in events if isinstance(e, Finish | Error)]


def terminal(events: list[Event]) -> Finish | Error:
    found = terminals(events)
    assert len(found) == 1, found
    assert events[-1] is found[0], "the terminal event is the last one"
    return found[0]
