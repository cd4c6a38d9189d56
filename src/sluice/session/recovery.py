"""Closing the sessions a dead gateway process left live: at start, each record still in a
live state whose process is gone becomes ``interrupted`` (reason ``gateway_lost``), with the
text, tool calls and estimated usage of the events its journal holds, and that log stored
as its own, ending in the ``gateway_lost`` error. Resuming one replays what was stored and
ends with that state.

Which processes are gone is the caller's answer (``gone``): in one process on its own store,
every other one; across processes, those whose lease ran out. A node lost while its peers run
(``NODE_LOST``) is closed by one of them as ``errored``: ``interrupted`` stays the state of what
a gateway finds left over as it starts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import orjson

from sluice import events as ev
from sluice.logs import kv
from sluice.pricing import PriceBook
from sluice.session.session import INTERRUPTED, without_content
from sluice.session.store import NewEvent, Record, SessionStore, StoreError
from sluice.turn import answer_of

log = logging.getLogger("sluice.session")

GATEWAY_LOST = "gateway_lost"
#: the error of a session whose node's lease ran out while other nodes ran
NODE_LOST = "node_lost"
#: records read per query while recovering
PAGE = 500


def interrupted(
    record: Record,
    stored: list[tuple[int, str, bytes]],
    prices: PriceBook,
    reason: str,
    state: str = INTERRUPTED,
) -> tuple[Record, list[NewEvent]]:
    """The record and log of a session whose relaying process died: its journaled events
    folded into its answer, then the terminal error ``reason``; the record ends in
    ``state``."""
    read: list[tuple[int, str, dict[str, Any]]] = [
        (seq, kind, orjson.loads(raw)) for seq, kind, raw in stored
    ]
    acc = answer_of(ev.from_payload(kind, data) for _, kind, data in read)
    events: list[NewEvent] = list(read)
    message = (
        "the gateway process relaying this session ended before the session did; "
        "what it had relayed and stored is kept"
    )
    last = events[-1][0] if events else 0
    events.append((last + 1, *ev.payload(ev.Error(reason, message, retryable=True))))
    usage = acc.usage
    if usage is not None and usage.final:
        source = "provider"
    else:
        prompt = record.get("prompt") or ""
        input_tokens = usage.input_tokens if usage is not None else math.ceil(len(prompt) / 4)
        usage = ev.Usage(input_tokens=input_tokens, output_tokens=acc.output_deltas)
        source = "estimated"
    cost = prices.cost(
        str(record.get("provider", "")),
        str(record.get("provider_kind", "")),
        str(record.get("model", "")),
        usage,
        source,
    ).as_dict()
    out: dict[str, Any] = dict(record)
    out.update(
        state=state,
        updated_at=time.time(),
        response_id=acc.response_id or record.get("response_id"),
        upstream_model=acc.model or record.get("upstream_model"),
        text=acc.text,
        reasoning=acc.reasoning,
        tool_calls=[call.as_dict() for call in acc.tool_calls],
        finish_reason=acc.finish_reason,
        usage=ev.payload(usage)[1] | {"source": source},
        cost=cost,
        error={
            "type": reason,
            "message": message,
            "retryable": True,
            "status": None,
            "retry_after": None,
            "upstream": None,
        },
        events=last + 1,
    )
    return out, events


async def close_interrupted(
    store: SessionStore,
    prices: PriceBook,
    gone: Callable[[str | None], Awaitable[bool]],
    reason: str = GATEWAY_LOST,
    state: str = INTERRUPTED,
    keep: Collection[str] = (),
    keep_content: bool = True,
) -> list[Record]:
    """Close every record left live by a process that is ``gone`` (in ``state``, with the
    error ``reason``) but those in ``keep``; return their closed records. A record that fails
    to store is logged and left for the next start. Without ``keep_content`` the closed
    record keeps nothing that was said, and its journaled log is removed."""
    closed: list[Record] = []
    skipped: set[str] = set(keep)
    while True:
        page = [r for r in await store.unfinished(PAGE + len(skipped)) if r["id"] not in skipped]
        if not page:
            return closed
        for record in page:
            session_id = record["id"]
            if not await gone(record.get("node")):
                skipped.add(session_id)
                continue
            stored = await store.get_events(session_id)
            final, events = interrupted(record, stored, prices, reason, state)
            if not keep_content:
                final, events = without_content(final), []
            try:
                await store.put(final, events)
            except StoreError as exc:
                log.error(
                    "interrupted session not closed %s",
                    kv(session_id=session_id, error=exc.message),
                )
                skipped.add(session_id)
                continue
            closed.append(final)
            log.warning(
                "session interrupted %s",
                kv(
                    session_id=session_id,
                    reason=reason,
                    node=record.get("node"),
                    events=len(events),
                    chars=len(final["text"]),
                ),
            )
