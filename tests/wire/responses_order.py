"""A strict checker of a Responses event stream: the order the API defines, frame by frame.

It holds a stream to what the official SDK's accumulator relies on and more: the event name
equals the JSON ``type``; ``sequence_number`` rises by one from the first frame (unless the
stream is of the 2025 format that had none); ``response.created`` first, then
``response.in_progress``; each output item ``added`` at the next ``output_index`` before
anything addresses it, by ``output_index`` and ``item_id`` both; a message's content part and a
reasoning item's summary part ``added`` before their deltas and ``done`` after them, with the
text the deltas made; a call's ``function_call_arguments.done`` with the arguments its deltas
made; ``output_item.done`` once per item, after its parts, repeating what was streamed; nothing
for an item after its ``done``; one terminal frame, last, whose response carries the same id,
the finished items in order and usage, when there is any, that adds up. Items may be open
together (interleaved calls are addressed by their index). ``check`` returns the final
response object; any breach raises ``StreamOrderError`` naming the frame.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.sse import SSEDecoder

TERMINAL = ("response.completed", "response.incomplete", "response.failed")
LIFECYCLE = ("response.created", "response.queued", "response.in_progress")


class StreamOrderError(AssertionError):
    pass


@dataclass
class _Item:
    kind: str
    id: str | None
    added: dict[str, Any]
    parts: list[str] = field(default_factory=list)  # each part's text so far (``_Done`` once done)
    arguments: str = ""
    arguments_done: bool = False
    done: dict[str, Any] | None = None


def frames_of(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """An SSE body's frames as (event name, parsed data)."""
    decoder = SSEDecoder()
    return [(e.event, orjson.loads(e.data)) for e in decoder.decode(body) + decoder.flush()]


def check(
    frames: list[tuple[str, dict[str, Any]]],
    *,
    numbered: bool = True,
    first: int = 0,
    unknown: bool = False,
    ended: bool = True,
) -> dict[str, Any] | None:
    """Check ``frames`` (a whole stream, or with ``first`` the tail of one after a resume,
    which starts at that number; a tail is checked for numbering and shape only). ``unknown``
    lets event types outside the text, reasoning and function-call families pass;
    ``ended=False`` accepts a stream that stops before its terminal frame."""
    return _Checker(numbered, first, unknown).run(frames, ended)


class _Checker:
    def __init__(self, numbered: bool, first: int, unknown: bool) -> None:
        self.numbered = numbered
        self.next = first
        self.tail = first > 0
        self.unknown = unknown
        self.items: dict[int, _Item] = {}
        self.response_id: str | None = None
        self.final: dict[str, Any] | None = None
        self.errored = False
        self.position = 0

    def fail(self, message: str) -> StreamOrderError:
        return StreamOrderError(f"frame {self.position}: {message}")

    def run(self, frames: list[tuple[str, dict[str, Any]]], ended: bool) -> dict[str, Any] | None:
        for self.position, (name, data) in enumerate(frames):
            if self.final is not None:
                raise self.fail(f"{name} after the terminal frame")
            if name != data.get("type"):
                raise self.fail(f"event {name!r} carries type {data.get('type')!r}")
            if self.numbered:
                if data.get("sequence_number") != self.next:
                    raise self.fail(
                        f"sequence_number {data.get('sequence_number')!r}, expected {self.next}"
                    )
                self.next += 1
            with contextlib.suppress(_Skip):
                self.frame(name, data)
        if ended and self.final is None and not self.tail:
            raise StreamOrderError("the stream ended without a terminal frame")
        return self.final

    def frame(self, name: str, data: dict[str, Any]) -> None:
        if not self.tail:
            if self.position == 0 and name != "response.created":
                raise self.fail(f"the first frame is {name}, not response.created")
            if self.position == 1 and name != "response.in_progress":
                raise self.fail(f"the second frame is {name}, not response.in_progress")
        if self.errored and name != "response.failed":
            raise self.fail(f"{name} after an error frame")
        if name in LIFECYCLE:
            self.lifecycle(data)
        elif name == "response.output_item.added":
            self.added(data)
        elif name == "response.output_item.done":
            self.item_done(data)
        elif name in ("response.content_part.added", "response.reasoning_summary_part.added"):
            item, index = self.part(data, name)
            if index != len(item.parts) or (item.parts and not isinstance(item.parts[-1], _Done)):
                raise self.fail(f"{name} at index {index} while another part is open")
            if (data.get("part") or {}).get("text") != "":
                raise self.fail(f"{name} carries text")
            item.parts.append("")
        elif name in ("response.output_text.delta", "response.reasoning_summary_text.delta"):
            item, index = self.open_part(data, name)
            if not isinstance(data.get("delta"), str):
                raise self.fail(f"{name} without a string delta")
            item.parts[index] += data["delta"]
        elif name in ("response.output_text.done", "response.reasoning_summary_text.done"):
            item, index = self.open_part(data, name)
            if data.get("text") != item.parts[index]:
                raise self.fail(f"{name} says {data.get('text')!r}, the deltas made another")
        elif name in ("response.content_part.done", "response.reasoning_summary_part.done"):
            item, index = self.open_part(data, name)
            if (data.get("part") or {}).get("text") != item.parts[index]:
                raise self.fail(f"{name}'s part is not the text the deltas made")
            item.parts[index] = _Done(item.parts[index])
        elif name == "response.function_call_arguments.delta":
            item = self.call(data, name)
            if not isinstance(data.get("delta"), str):
                raise self.fail(f"{name} without a string delta")
            item.arguments += data["delta"]
        elif name == "response.function_call_arguments.done":
            item = self.call(data, name)
            if data.get("arguments") != item.arguments:
                raise self.fail(f"{name} says {data.get('arguments')!r}, the deltas made another")
            item.arguments_done = True
        elif name == "error":
            if not isinstance(data.get("message"), str) and not isinstance(data.get("error"), dict):
                raise self.fail("an error frame without a message")
            self.errored = True
        elif name in TERMINAL:
            self.terminal(name, data)
        elif not self.unknown:
            raise self.fail(f"unexpected event {name!r}")

    # -- lifecycle ----------------------------------------------------------------------------

    def lifecycle(self, data: dict[str, Any]) -> None:
        response = self.response(data)
        if response.get("status") not in ("queued", "in_progress"):
            raise self.fail(f"a lifecycle frame with status {response.get('status')!r}")

    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        response = data.get("response")
        if not isinstance(response, dict) or response.get("object") != "response":
            raise self.fail("a frame without its response object")
        for key in ("id", "created_at", "model", "output", "status"):
            if key not in response:
                raise self.fail(f"the response object has no {key!r}")
        if self.response_id is None:
            self.response_id = response["id"]
        elif response["id"] != self.response_id:
            raise self.fail(f"the response id changed to {response['id']!r}")
        return response

    def terminal(self, name: str, data: dict[str, Any]) -> None:
        response = self.response(data)
        status = response["status"]
        expected = {"response.completed": ("completed",), "response.incomplete": ("incomplete",)}
        if status not in expected.get(name, ("failed", "cancelled")):
            raise self.fail(f"{name} with status {status!r}")
        if self.errored and name != "response.failed":
            raise self.fail(f"{name} after an error frame")
        done = [item.done for _, item in sorted(self.items.items()) if item.done is not None]
        if name == "response.failed":
            if status == "failed" and not response.get("error"):
                raise self.fail("a failed response without its error")
            if not self.tail and any(item not in done for item in response["output"]):
                raise self.fail("the failed response lists an item that never ended")
        else:
            if not self.tail and len(done) != len(self.items):
                raise self.fail(f"{name} while items are still open")
            if not self.tail and list(map(_opened, response["output"])) != list(map(_opened, done)):
                raise self.fail(f"{name}'s output is not the items as they ended")
        if name == "response.incomplete" and not (response.get("incomplete_details") or {}).get(
            "reason"
        ):
            raise self.fail("an incomplete response without its reason")
        usage = response.get("usage")
        if usage is not None:  # (a provider that reported none leaves it null)
            if usage["input_tokens"] + usage["output_tokens"] != usage["total_tokens"]:
                raise self.fail("usage does not add up")
            _ = usage["input_tokens_details"]["cached_tokens"]
            _ = usage["output_tokens_details"]["reasoning_tokens"]
        self.final = response

    # -- items --------------------------------------------------------------------------------

    def added(self, data: dict[str, Any]) -> None:
        index, item = data.get("output_index"), data.get("item")
        if self.tail and isinstance(index, int) and isinstance(item, dict):
            self.items[index] = _Item(item.get("type", ""), item.get("id"), item)
            return
        if index != len(self.items):
            raise self.fail(f"output_item.added at {index!r}, expected {len(self.items)}")
        if not isinstance(item, dict):
            raise self.fail("output_item.added without its item")
        kind = item.get("type", "")
        if kind not in ("message", "reasoning", "function_call") and not self.unknown:
            raise self.fail(f"an added item of type {kind!r}")
        if kind == "message" and (item.get("content") != [] or item.get("status") != "in_progress"):
            raise self.fail("a message item added with content, or not in progress")
        if kind == "function_call" and (
            item.get("arguments") != "" or not item.get("call_id") or not item.get("name")
        ):
            raise self.fail("a function_call added without call_id and name, or with arguments")
        self.items[index] = _Item(kind, item.get("id"), item)

    def item(self, data: dict[str, Any], name: str) -> _Item:
        index = data.get("output_index")
        item = self.items.get(index) if isinstance(index, int) else None
        if item is None:
            if self.tail:
                raise _Skip
            raise self.fail(f"{name} for output_index {index!r}, which was never added")
        if item.done is not None:
            raise self.fail(f"{name} for an item already done")
        if data.get("item_id") != item.id:
            raise self.fail(f"{name} addresses item {data.get('item_id')!r}, not {item.id!r}")
        return item

    def part(self, data: dict[str, Any], name: str) -> tuple[_Item, int]:
        item = self.item(data, name)
        key = "content_index" if "content" in name or "output_text" in name else "summary_index"
        kind = "message" if key == "content_index" else "reasoning"
        if item.kind != kind:
            raise self.fail(f"{name} for a {item.kind} item")
        index = data.get(key)
        if not isinstance(index, int):
            raise self.fail(f"{name} without {key}")
        return item, index

    def open_part(self, data: dict[str, Any], name: str) -> tuple[_Item, int]:
        item, index = self.part(data, name)
        if index >= len(item.parts) or isinstance(item.parts[index], _Done):
            raise self.fail(f"{name} for part {index}, which is not open")
        return item, index

    def call(self, data: dict[str, Any], name: str) -> _Item:
        item = self.item(data, name)
        if item.kind != "function_call":
            raise self.fail(f"{name} for a {item.kind} item")
        if item.arguments_done:
            raise self.fail(f"{name} after the arguments were done")
        return item

    def item_done(self, data: dict[str, Any]) -> None:
        name = "response.output_item.done"
        try:
            item = self.item(data | {"item_id": (data.get("item") or {}).get("id")}, name)
        except _Skip:
            return
        final = data.get("item")
        assert isinstance(final, dict)
        if final.get("type") != item.kind:
            raise self.fail("an item done as another type than it was added")
        if final.get("status", "completed") not in ("completed", "incomplete"):
            raise self.fail(f"an item done with status {final.get('status')!r}")
        if item.kind == "message":
            texts = [part.get("text") for part in final.get("content", [])]
            if any(not isinstance(p, _Done) for p in item.parts) or texts != [
                str(p) for p in item.parts
            ]:
                raise self.fail("a message done with other text than its parts")
        elif item.kind == "reasoning":
            texts = [part.get("text") for part in final.get("summary", [])]
            if any(not isinstance(p, _Done) for p in item.parts) or texts != [
                str(p) for p in item.parts
            ]:
                raise self.fail("a reasoning item done with other summaries than its parts")
        elif item.kind == "function_call":
            if not item.arguments_done and not self.tail:
                raise self.fail("a function_call done before function_call_arguments.done")
            added = item.added
            if (final.get("call_id"), final.get("name")) != (added["call_id"], added["name"]):
                raise self.fail("a function_call done with another call_id or name")
            if final.get("arguments") != item.arguments and not self.tail:
                raise self.fail("a function_call done with other arguments than its deltas")
        item.done = final


def _opened(item: dict[str, Any]) -> dict[str, Any]:
    """An item without its ``encrypted_content``, which OpenAI encrypts afresh each time it
    writes it (the same reasoning item's differs between its ``done`` and the final output)."""
    return {key: value for key, value in item.items() if key != "encrypted_content"}


class _Done(str):
    """A part whose ``done`` frames came: its final text."""


class _Skip(Exception):
    """A tail's frame for an item added before the tail began: nothing to check it against."""
