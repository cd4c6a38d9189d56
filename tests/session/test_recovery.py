"""Closing the records a dead process left live: the journaled events folded into the answer,
the terminal error appended, only the processes that are gone, on every store backend."""

from __future__ import annotations

import orjson
import pytest

from sluice import events as ev
from sluice.pricing import PriceBook
from sluice.session.recovery import close_interrupted, interrupted
from sluice.session.store import SessionStore

EVERY_EVENT: list[ev.Event] = [
    ev.Status("waiting"),
    ev.Start("resp_1", "support"),
    ev.ReasoningDelta("think"),
    ev.Signature("EqQBCgIYAh", 0),
    ev.Signature("EmwKAhgB", 1, redacted=True),
    ev.TextDelta("Hello"),
    ev.ToolCallStart(0, "call_1", "lookup"),
    ev.ToolCallDelta(0, '{"id": 1}'),
    ev.ToolCallDone(0, "call_1", "lookup", '{"id": 1}', {"id": 1}),
    ev.Usage(input_tokens=3, output_tokens=4, final=True),
    ev.Finish("stop", "end_turn"),
    ev.Retry(2, "overloaded", 0.5),
    ev.Error("overloaded", "busy", True, 529),
    ev.StepStart(1),
    ev.StepEnd(1, "tool_calls", {"input_tokens": 3, "output_tokens": 4}, 0.25),
    ev.ToolStart("call_1", "lookup", "orders.lookup", {"id": 1}),
    ev.ToolProgress("call_1", 1.0, 2.0, "half way"),
    ev.ToolEnd("call_1", "lookup", 0.1, "order 1: shipped", False, None),
]


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: type(e).__name__)
def test_an_event_read_back_from_its_payload_is_equal(event: ev.Event) -> None:
    kind, data = ev.payload(event)
    assert ev.from_payload(kind, orjson.loads(orjson.dumps(data))) == event


def test_every_event_type_is_in_the_round_trip() -> None:
    assert {type(e) for e in EVERY_EVENT} == set(ev.Event.__args__)  # type: ignore[attr-defined]


def test_a_signature_stored_before_redacted_existed_reads_back() -> None:
    assert ev.from_payload("signature", {"signature": "s", "index": 2}) == ev.Signature("s", 2)


def test_a_payload_of_an_unknown_type_or_fields_reads_as_none() -> None:
    assert ev.from_payload("nonsense", {}) is None
    assert ev.from_payload("text", {"txt": "a"}) is None
    assert ev.from_payload("usage", {"input_tokens": 1, "surprise": 2}) is None


def _stored(*events: ev.Event) -> list[tuple[int, str, bytes]]:
    out = []
    for seq, event in enumerate(events, 1):
        kind, data = ev.payload(event)
        out.append((seq, kind, orjson.dumps(data)))
    return out


LIVE = {
    "id": "op-1",
    "created_at": 1.0,
    "state": "streaming",
    "provider": "sim",
    "provider_kind": "sim",
    "model": "support",
    "prompt": "x" * 40,
    "node": "host-1-aa",
}


def test_the_journal_is_folded_into_the_answer_and_ends_in_the_error() -> None:
    stored = _stored(
        ev.Status("waiting"),
        ev.Start("resp_1", "support-v2"),
        ev.TextDelta("Hello "),
        ev.TextDelta("there"),
        ev.ToolCallStart(0, "call_1", "lookup"),
        ev.ToolCallDone(0, "call_1", "lookup", '{"id": 1}', {"id": 1}),
    )
    record, events = interrupted(LIVE, stored, PriceBook({}), "gateway_lost")
    assert record["state"] == "interrupted"
    assert record["text"] == "Hello there"
    assert record["response_id"] == "resp_1" and record["upstream_model"] == "support-v2"
    assert [c["name"] for c in record["tool_calls"]] == ["lookup"]
    assert record["error"]["type"] == "gateway_lost" and record["error"]["retryable"]
    # no final usage from the provider: estimated from the prompt and the deltas
    assert record["usage"] == {
        "input_tokens": 10,
        "output_tokens": 2,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "final": False,
        "source": "estimated",
    }
    assert [e[0] for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert events[-1][1] == "error" and events[-1][2]["type"] == "gateway_lost"
    assert record["events"] == 7
    assert record["node"] == "host-1-aa"  # the record says where it was lost


def test_a_whole_turn_retry_in_the_journal_starts_the_answer_afresh() -> None:
    stored = _stored(ev.TextDelta("first try"), ev.Retry(2, "overloaded"), ev.TextDelta("again"))
    record, _ = interrupted(LIVE, stored, PriceBook({}), "gateway_lost")
    assert record["text"] == "again"


def test_the_providers_final_usage_is_kept_when_it_came() -> None:
    stored = _stored(ev.TextDelta("a"), ev.Usage(input_tokens=7, output_tokens=9, final=True))
    record, _ = interrupted(LIVE, stored, PriceBook({}), "gateway_lost")
    assert record["usage"]["source"] == "provider" and record["usage"]["output_tokens"] == 9


def test_a_session_with_nothing_journaled_ends_in_the_error_alone() -> None:
    record, events = interrupted(LIVE | {"state": "starting"}, [], PriceBook({}), "gateway_lost")
    assert record["text"] == "" and [e[1] for e in events] == ["error"]
    assert record["events"] == 1


async def test_only_the_records_of_processes_that_are_gone_are_closed(
    store: SessionStore,
) -> None:
    await store.put(LIVE | {"id": "op-dead", "node": "dead"})
    await store.put(LIVE | {"id": "op-alive", "node": "alive", "created_at": 2.0})
    await store.put(LIVE | {"id": "op-done", "node": "dead", "state": "complete"})
    await store.append_events("op-dead", [(1, "text", {"text": "kept"})])

    async def gone(node: str | None) -> bool:
        return node == "dead"

    closed = await close_interrupted(store, PriceBook({}), gone)
    assert [r["id"] for r in closed] == ["op-dead"]
    dead = await store.get("op-dead")
    assert dead is not None and dead["state"] == "interrupted" and dead["text"] == "kept"
    assert [(seq, kind) for seq, kind, _ in await store.get_events("op-dead")] == [
        (1, "text"),
        (2, "error"),
    ]
    assert [r["id"] for r in await store.unfinished()] == ["op-alive"]
    done = await store.get("op-done")
    assert done is not None and done["state"] == "complete"
    # a second pass finds nothing more to close
    assert await close_interrupted(store, PriceBook({}), gone) == []


async def test_without_keep_content_a_closed_record_keeps_nothing_said(
    store: SessionStore,
) -> None:
    await store.put(LIVE | {"id": "op-dead", "node": "dead", "prompt": "secret plans"})
    await store.append_events("op-dead", [(1, "text", {"text": "what was said"})])

    async def gone(node: str | None) -> bool:
        return node == "dead"

    closed = await close_interrupted(store, PriceBook({}), gone, keep_content=False)
    assert [r["id"] for r in closed] == ["op-dead"]
    dead = await store.get("op-dead")
    assert dead is not None and dead["state"] == "interrupted"
    assert (dead["text"], dead["prompt"]) == ("", "")
    assert dead["usage"]["output_tokens"] == 1  # what it cost is kept
    assert await store.get_events("op-dead") == []
