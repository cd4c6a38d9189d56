"""The chat page's fold and its updates: what a page holds after any sequence of updates,
resumed from any event id, is the final answer's rendering, with nothing twice."""

from __future__ import annotations

import copy
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
        self.steps: list[dict[str, Any]] = []
        self.last_id = 0

    def apply(self, update: dict[str, Any]) -> None:
        self.blocks = self.blocks[: update["base"]] + update["blocks"]
        self.reasoning = self.reasoning[: update["reasoning_from"]] + update["reasoning"]
        if "steps" in update:  # (sent only when they changed; the page keeps the last)
            self.steps = copy.deepcopy(update["steps"])
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


def run_events(answer: str = "The sum is 4.") -> list[Event]:
    """An agent's run: a step that says a word, calls a tool that tells its progress, then
    a step that answers."""
    events: list[Event] = [("step.start", {"step": 1}), ("status", {"phase": "waiting"})]
    events += [("text", {"text": piece}) for piece in split_pieces("Let me check that.")]
    events.append(("tool_call.start", {"index": 0, "id": "c1", "name": "add"}))
    events += [("tool_call.delta", {"index": 0, "fragment": f}) for f in ('{"a": 2', ', "b": 2}')]
    events.append(
        (
            "tool_call.done",
            {"index": 0, "id": "c1", "name": "add", "raw_arguments": '{"a": 2, "b": 2}'},
        )
    )
    events.append(("finish", {"reason": "tool_calls", "raw": "tool_calls"}))
    events.append(("status", {"phase": "tool", "detail": "add"}))
    tool = {"id": "c1", "name": "add", "tool": "testtools.add", "arguments": {"a": 2, "b": 2}}
    events.append(("tool.start", tool))
    progress = {"id": "c1", "progress": 1, "total": 2, "message": "adding"}
    events.append(("tool.progress", progress))
    end = {"id": "c1", "name": "add", "duration": 0.25, "result": "4", "is_error": False}
    events.append(("tool.end", end | {"error": None}))
    usage = {"input_tokens": 10, "output_tokens": 5}
    step_end = {"step": 1, "finish_reason": "tool_calls", "usage": usage, "duration": 0.5}
    events.append(("step.end", step_end))
    events += [("step.start", {"step": 2}), ("status", {"phase": "waiting"})]
    events += [("text", {"text": piece}) for piece in split_pieces(answer)]
    events.append(("finish", {"reason": "stop", "raw": "stop"}))
    step_end = {"step": 2, "finish_reason": "stop", "usage": usage, "duration": 0.3}
    events.append(("step.end", step_end))
    return events


def test_a_runs_steps_keep_what_each_said_and_the_answer_is_the_last_steps() -> None:
    view = ChatView()
    events = run_events()
    started = next(i for i, (kind, _) in enumerate(events) if kind == "tool.start")
    for kind, data in events[:started]:
        view.apply(kind, data)
    assert view.answer == "Let me check that."
    assert view.tools == []  # (the model's calls are the step's)
    assert (view.state, view.finish_reason) == ("streaming", "tool_calls")
    assert view.run.steps[0]["text"] == ""
    view.apply(*events[started])
    assert view.answer == ""  # the tools run: the answer starts afresh with the next step
    assert view.state == "streaming"
    [step] = view.run.steps
    assert step["text"] == "Let me check that."
    assert step["calls"][0] | {"progress": None} == {
        "id": "c1",
        "name": "add",
        "state": "running",
        "tool": "testtools.add",
        "arguments": '{\n  "a": 2,\n  "b": 2\n}',
        "duration": None,
        "result": None,
        "error": None,
        "progress": None,
    }
    for kind, data in events[started + 1 :]:
        view.apply(kind, data)
    assert (view.state, view.finish_reason, view.answer) == (COMPLETE, "stop", "The sum is 4.")
    first, second = view.run.steps
    assert (first["state"], first["duration"]) == ("done", 0.5)
    assert first["finish_reason"] == "tool_calls"
    [call] = first["calls"]
    assert call["tool"] == "testtools.add" and call["state"] == "ok"
    assert call["arguments"] == '{\n  "a": 2,\n  "b": 2\n}'
    assert (call["result"], call["duration"], call["progress"]) == ("4", 0.25, None)
    assert (second["state"], second["text"], second["calls"]) == ("done", "", [])


def test_the_status_names_the_running_tools_and_their_last_progress() -> None:
    view = ChatView()
    view.apply("step.start", {"step": 1})
    view.apply("status", {"phase": "waiting", "detail": None})
    assert view.status == {"phase": "waiting", "detail": None}
    for index, (call_id, name) in enumerate([("a", "survey"), ("b", "clock")]):
        view.apply("tool_call.start", {"index": index, "id": call_id, "name": name})
        view.apply("tool_call.done", {"index": index, "id": call_id, "name": name})
    view.apply("finish", {"reason": "tool_calls"})
    view.apply("status", {"phase": "tool", "detail": "survey, clock"})
    for call_id, name in [("a", "survey"), ("b", "clock")]:
        view.apply("tool.start", {"id": call_id, "name": name, "tool": name, "arguments": {}})
    view.urgent = False
    view.apply("tool.progress", {"id": "a", "progress": 1, "total": 3, "message": "site 1"})
    assert not view.urgent  # progress is coalesced into the flush window
    assert view.status == {
        "phase": "tool",
        "detail": "survey, clock",
        "progress": {"tool": "survey", "progress": 1, "total": 3, "message": "site 1"},
    }
    end = {"duration": 0.1, "result": "now", "is_error": False, "error": None}
    view.apply("tool.end", {"id": "b", "name": "clock", **end})
    assert view.urgent
    assert view.status is not None and view.status["detail"] == "survey"
    assert view.status["progress"]["message"] == "site 1"
    view.apply("tool.end", {"id": "a", "name": "survey", **end})
    assert view.status is not None and view.status["detail"] == "survey"
    assert "progress" not in view.status
    view.apply("step.end", {"step": 1, "finish_reason": "tool_calls", "duration": 1.0})
    view.apply("step.start", {"step": 2})
    view.apply("status", {"phase": "waiting", "detail": None})
    assert view.status == {"phase": "waiting", "detail": None}


def test_calls_that_nothing_runs_end_the_run_with_them_as_its_answer() -> None:
    view = ChatView()
    events = run_events()
    finish = events.index(("finish", {"reason": "tool_calls", "raw": "tool_calls"}))
    for kind, data in events[: finish + 1]:
        view.apply(kind, data)
    usage = {"input_tokens": 10, "output_tokens": 5}
    view.apply("step.end", {"step": 1, "finish_reason": "tool_calls", "usage": usage})
    assert (view.state, view.finish_reason) == (COMPLETE, "tool_calls")
    assert view.answer == "Let me check that." and view.status is None
    assert [call["state"] for call in view.run.steps[0]["calls"]] == ["called"]


def test_a_stop_during_a_tool_ends_the_step_and_the_call_stopped() -> None:
    view = ChatView()
    events = run_events()
    running = next(i for i, (kind, _) in enumerate(events) if kind == "tool.progress")
    for kind, data in events[: running + 1]:
        view.apply(kind, data)
    end = {"id": "c1", "name": "add", "duration": 3.0, "result": "stopped", "is_error": True}
    view.apply("tool.end", end | {"error": "cancelled"})
    view.apply("error", {"type": "cancelled", "message": "stopped: client_stop"})
    assert view.state == CANCELLED and view.status is None
    [step] = view.run.steps
    assert step["state"] == "stopped"
    assert [call["state"] for call in step["calls"]] == ["stopped"]


def test_steps_are_sent_when_they_change_and_a_retry_clears_them() -> None:
    view, updates = ChatView(), ChatUpdates()
    assert updates.update(view, 0)["steps"] == []
    events = run_events()
    for seq, (kind, data) in enumerate(events, start=1):
        view.apply(kind, data)
        update = updates.update(view, seq)
        assert ("steps" in update) == (kind in STEP_CHANGES), kind
    view.apply("retry", {"attempt": 2, "reason": "recover"})
    assert updates.update(view, len(events) + 1)["steps"] == []


STEP_CHANGES = {
    "step.start",
    "step.end",
    "tool_call.start",
    "tool_call.delta",
    "tool_call.done",
    "tool.start",
    "tool.progress",
    "tool.end",
}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_resuming_a_run_from_any_event_id_gives_the_same_page(data: st.DataObject) -> None:
    events = run_events("## Done\n\nThe sum is **4**.\n")
    whole = ChatView()
    for kind, payload in events:
        whole.apply(kind, payload)
    flushes = data.draw(st.lists(st.integers(1, len(events)), max_size=30))
    cut = data.draw(st.integers(0, len(flushes)))
    page = Page()
    stream(events[: max(sorted(flushes)[:cut], default=0)], page, sorted(flushes)[:cut])
    stream(events, page, flushes, after=page.last_id)
    assert page.blocks == render_blocks("## Done\n\nThe sum is **4**.\n")
    assert page.steps == whole.run.steps
