"""The chat page's fold and its updates: what a page holds after any sequence of updates,
resumed from any event id, is the final answer's rendering, with nothing twice."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.gateway.chatview import CANCELLED, COMPLETE, ERRORED, ChatUpdates, ChatView
from sluice.gateway.markdown import render_blocks
from sluice.sim.corpus import split_pieces

ANSWER = (
    "## Tracking\n\nSome *text* here.\n\n- one\n- two\n\n```python\nprint('hi')\n```\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\nThe end.\n"
)
Event = tuple[str, dict[str, Any]]


def session_events(answer: str = ANSWER) -> list[Event]:
    events: list[Event] = [("status", {"phase": "waiting", "detail": None})]
    events.append(("status", {"phase": "thinking", "detail": None}))
    events += [("reasoning", {"text": piece}) for piece in split_pieces("Let me think about it.")]
    events += [("text", {"text": piece}) for piece in split_pieces(answer)]
    events.append(("finish", {"reason": "stop", "raw": "stop"}))
    return events


class Page:
    """What the browser does with updates (the same rules as chat.js)."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.reasoning = ""
        self.last_id = 0

    def apply(self, update: dict[str, Any]) -> None:
        self.blocks = self.blocks[: update["base"]] + update["blocks"]
        self.reasoning = self.reasoning[: update["reasoning_from"]] + update["reasoning"]
        self.last_id = update["seq"]


def stream(events: list[Event], page: Page, flush_points: list[int], after: int = 0) -> None:
    """One connection: the server folds up to ``after`` (what the page has), then sends an
    update at each flush point and at the end."""
    view, updates = ChatView(), ChatUpdates()
    for kind, data in events[:after]:
        view.apply(kind, data)
    if after:
        updates.assume_sent(view)
    position = after
    for point in sorted({p for p in flush_points if p > after} | {len(events)}):
        for kind, data in events[position:point]:
            view.apply(kind, data)
        position = point
        page.apply(updates.update(view, position))


def test_a_stream_ends_with_the_final_rendering() -> None:
    events = session_events()
    page = Page()
    stream(events, page, list(range(0, len(events), 3)))
    assert page.blocks == render_blocks(ANSWER)
    assert page.reasoning == "Let me think about it."


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_resuming_from_any_event_id_gives_the_same_page(data: st.DataObject) -> None:
    events = session_events()
    flushes = data.draw(st.lists(st.integers(1, len(events)), max_size=30))
    # the first connection shows some updates, then drops
    cut = data.draw(st.integers(0, len(flushes)))
    page = Page()
    stream(events[: max(sorted(flushes)[:cut], default=0)], page, sorted(flushes)[:cut])
    # the resumed connection starts after the page's last event id
    stream(events, page, flushes, after=page.last_id)
    assert page.blocks == render_blocks(ANSWER)
    assert page.reasoning == "Let me think about it."


def test_a_resumed_update_sends_only_the_blocks_that_changed() -> None:
    events = session_events()
    page = Page()
    middle = len(events) - 8
    stream(events[:middle], page, [middle])
    have = len(page.blocks)
    view, updates = ChatView(), ChatUpdates()
    for kind, data in events[:middle]:
        view.apply(kind, data)
    updates.assume_sent(view)
    for kind, data in events[middle:]:
        view.apply(kind, data)
    update = updates.update(view, len(events))
    assert have >= 4
    assert update["base"] >= have - 1  # only the open last block is sent again
    assert update["reasoning"] == ""


def test_status_reasoning_and_the_answer() -> None:
    view = ChatView()
    view.apply("status", {"phase": "thinking", "detail": None})
    view.apply("reasoning", {"text": "hmm"})
    assert view.status == {"phase": "thinking", "detail": None}
    view.apply("tool_call.start", {"index": 0, "id": "c1", "name": "lookup_order"})
    assert view.status == {"phase": "tool", "detail": "lookup_order"}
    view.apply("tool_call.delta", {"index": 0, "fragment": '{"a"'})
    view.apply(
        "tool_call.done",
        {
            "index": 0,
            "id": "c1",
            "name": "lookup_order",
            "raw_arguments": '{"a": 1}',
            "status": "ok",
        },
    )
    assert view.tools == [{"name": "lookup_order", "arguments": '{"a": 1}', "status": "ok"}]
    view.apply("text", {"text": "Hi"})
    assert view.status is None
    assert view.urgent


def test_interleaved_parallel_calls_keep_their_own_arguments() -> None:
    view = ChatView()
    view.apply("tool_call.start", {"index": 0, "id": "a", "name": "weather"})
    view.apply("tool_call.start", {"index": 1, "id": "b", "name": "time"})
    for index, fragment in [(0, '{"city"'), (1, '{"tz"'), (0, ': "Paris"}'), (1, ': "CET"}')]:
        view.apply("tool_call.delta", {"index": index, "fragment": fragment})
    assert [t["arguments"] for t in view.tools] == ['{"city": "Paris"}', '{"tz": "CET"}']
    view.apply("tool_call.done", {"index": 1, "name": "time", "raw_arguments": "", "status": "ok"})
    assert [t["status"] for t in view.tools] == ["running", "ok"]


def test_a_signature_is_never_shown() -> None:
    view = ChatView()
    view.apply("reasoning", {"text": "hmm"})
    view.apply("signature", {"signature": "EqQBCgIYAh", "index": 0, "redacted": False})
    view.apply("text", {"text": "Hi"})
    assert (view.reasoning, view.answer, view.tools) == (["hmm"], "Hi", [])


def test_endings() -> None:
    complete, errored, cancelled = ChatView(), ChatView(), ChatView()
    complete.apply("finish", {"reason": "length"})
    errored.apply("error", {"type": "overloaded", "message": "busy", "retryable": True})
    cancelled.apply("error", {"type": "cancelled", "message": "stopped: client_stop"})
    assert (complete.state, complete.finish_reason) == (COMPLETE, "length")
    assert errored.state == ERRORED
    assert errored.error == {"type": "overloaded", "message": "busy", "retryable": True}
    assert (cancelled.state, cancelled.error) == (CANCELLED, None)


def test_a_retry_starts_the_answer_afresh_on_the_page() -> None:
    first = [("text", {"text": "Partial answer "}), ("text", {"text": "that broke"})]
    first.append(("error", {"type": "upstream_reset", "message": "reset", "retryable": True}))
    events = [*first, ("retry", {"attempt": 2, "reason": "recover"}), *session_events("Again.")]
    page = Page()
    stream(events, page, [2, 3])
    assert page.blocks == ["<p>Again.</p>\n"]
    resumed = Page()
    resumed.blocks, resumed.last_id = ["<p>Partial answer that broke</p>\n"], 3
    stream(events, resumed, [], after=3)
    assert resumed.blocks == ["<p>Again.</p>\n"]


MARKDOWN_PIECES = st.sampled_from(
    [
        "word ", "text", "\n", "\n\n", "# ", "## ", "- ", "* ", "1. ", "> ", "    ", "  ", "\t",
        "```", "```py\n", "~~~", "---", "===", "|", "| a | b |\n|---|---|\n", "**", "_", "`",
        "[x](https://e.example)", "[x]", "[x]: https://ref.example\n", "<b>", "&amp;", "\\",
        "-", "2) ", "+ ", " ", "\n- ", "\n> ", "\n\n    ", "\n1. ", "\n\n- ", "=", "<!--",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(MARKDOWN_PIECES, max_size=60), st.data())
def test_rendering_only_the_open_tail_gives_the_whole_rendering(
    pieces: list[str], data: st.DataObject
) -> None:
    """At every update, the blocks the page holds are those of the whole text so far."""
    view, updates, page = ChatView(), ChatUpdates(), Page()
    text = ""
    for seq, piece in enumerate(pieces, start=1):
        view.apply("text", {"text": piece})
        text += piece
        if data.draw(st.booleans()):
            page.apply(updates.update(view, seq))
            assert page.blocks == render_blocks(text)
    page.apply(updates.update(view, len(pieces) + 1))
    assert page.blocks == render_blocks(text)
