"""Strict checkers of event order in what a client encoder wrote, one per format.

Each reads an SSE body as a client would and fails (``AssertionError``, naming the frame) on
anything out of order that some client chokes on: a fragment of a tool block outside its
start and stop, two blocks open at once, blocks numbered out of turn, frames after the end.
They return the tool calls' argument text, joined as a client joins them.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.sse import SSEDecoder

#: Anthropic delta type -> the block type it may appear in
_DELTA_BLOCKS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "thinking",
    "input_json_delta": "tool_use",
}


def sse_frames(body: bytes) -> list[tuple[str, str]]:
    decoder = SSEDecoder()
    return [(e.event, e.data) for e in decoder.decode(body) + decoder.flush()]


def check_messages_order(body: bytes) -> dict[str, str]:
    """Anthropic Messages: ``message_start`` first; content blocks numbered 0, 1, 2… and open
    one at a time; every ``content_block_delta`` for block k between k's
    ``content_block_start`` and ``content_block_stop``, of a type that block takes (an
    ``input_json_delta`` only in a ``tool_use`` block); ``message_delta`` with no block open,
    then ``message_stop``, last. Returns each tool_use block's id -> its joined arguments."""
    frames = [(name, orjson.loads(data)) for name, data in sse_frames(body)]
    assert frames and frames[0][0] == "message_start", frames[:1]
    kinds: dict[int, str] = {}
    arguments: dict[int, list[str]] = {}
    ids: dict[int, str] = {}
    open_block: int | None = None
    ended = False
    for position, (name, data) in enumerate(frames[1:], start=1):
        where = f"frame {position} ({name} {data.get('index')})"
        assert not ended, f"{where}: after message_stop"
        assert name == data["type"], where
        if name == "content_block_start":
            assert open_block is None, f"{where}: block {open_block} is still open"
            assert data["index"] == len(kinds), f"{where}: blocks are numbered 0, 1, 2…"
            block = data["content_block"]
            open_block = data["index"]
            kinds[open_block] = block["type"]
            if block["type"] == "tool_use":
                ids[open_block] = block["id"]
                arguments[open_block] = []
        elif name == "content_block_delta":
            assert open_block is not None and data["index"] == open_block, (
                f"{where}: not inside its start and stop"
            )
            delta = data["delta"]
            assert _DELTA_BLOCKS.get(delta["type"]) == kinds[open_block], where
            if delta["type"] == "input_json_delta":
                arguments[open_block].append(delta["partial_json"])
        elif name == "content_block_stop":
            assert data["index"] == open_block, f"{where}: stops a block that is not open"
            open_block = None
        elif name == "message_delta":
            assert open_block is None, f"{where}: block {open_block} is still open"
        elif name == "message_stop":
            ended = True
        else:
            assert name in ("ping", "error"), where
            ended = name == "error"
    assert ended, "the stream ends with message_stop (or an error)"
    return {ids[k]: "".join(parts) or "{}" for k, parts in arguments.items()}


def check_chat_order(body: bytes) -> dict[str, str]:
    """Chat Completions: the role chunk first; tool calls numbered 0, 1, 2… in order, each
    opening with its id, type and name; once a call has begun, no earlier call gets another
    fragment (each call's fragments together); the finish chunk, then at most the usage
    chunk, then ``[DONE]``, last. Returns each call's id -> its joined arguments."""
    frames = sse_frames(body)
    assert frames and frames[-1][1] == "[DONE]", "the stream ends with [DONE]"
    chunks: list[dict[str, Any]] = [orjson.loads(data) for _, data in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    ids: list[str] = []
    arguments: list[list[str]] = []
    finished = False
    for position, chunk in enumerate(chunks):
        where = f"chunk {position}"
        if not chunk["choices"]:
            assert finished and "usage" in chunk and position == len(chunks) - 1, where
            continue
        assert not finished, f"{where}: after the finish chunk"
        [choice] = chunk["choices"]
        finished = choice["finish_reason"] is not None
        for call in choice["delta"].get("tool_calls") or []:
            index = call["index"]
            if index == len(ids):
                assert call["id"] and call["type"] == "function", where
                assert call["function"]["name"], where
                ids.append(call["id"])
                arguments.append([])
            assert index == len(ids) - 1, f"{where}: call {index} after call {len(ids) - 1}"
            arguments[index].append(call["function"].get("arguments") or "")
    assert finished, "the stream has a finish chunk"
    return {call_id: "".join(parts) for call_id, parts in zip(ids, arguments, strict=True)}


def check_responses_order(body: bytes) -> dict[str, str]:
    """Responses: ``sequence_number`` 0, 1, 2…; ``response.created`` first; output items added
    with ``output_index`` 0, 1, 2… and open one at a time; every delta for an item between
    its ``output_item.added`` and ``output_item.done``; ``response.completed`` (or
    ``.incomplete`` / ``.failed``) last. Returns each call's call_id -> its joined arguments."""
    frames = [(name, orjson.loads(data)) for name, data in sse_frames(body)]
    assert frames and frames[0][0] == "response.created"
    added: list[dict[str, Any]] = []
    arguments: dict[str, list[str]] = {}
    open_item: str | None = None
    for position, (name, data) in enumerate(frames):
        where = f"frame {position} ({name})"
        assert data["sequence_number"] == position, where
        assert name == data["type"], where
        if name == "response.output_item.added":
            assert open_item is None, f"{where}: item {open_item} is still open"
            assert data["output_index"] == len(added), where
            item = data["item"]
            added.append(item)
            open_item = item["id"]
            if item["type"] == "function_call":
                arguments[item["call_id"]] = []
        elif name == "response.output_item.done":
            assert data["item"]["id"] == open_item, where
            open_item = None
        elif name.endswith((".delta", ".added", ".done")) and "item_id" in data:
            assert data["item_id"] == open_item, f"{where}: not inside its item"
            if name == "response.function_call_arguments.delta":
                arguments[added[-1]["call_id"]].append(data["delta"])
        elif name in ("response.completed", "response.incomplete", "response.failed"):
            assert position == len(frames) - 1, f"{where}: not last"
            assert open_item is None, where
    return {call_id: "".join(parts) for call_id, parts in arguments.items()}
