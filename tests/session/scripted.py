"""A scripted upstream for the session tests: an HTTP/1.1 server on loopback that answers each
request with the next reply it was given, written as the test says (chunks, waits on events,
a close mid-body, a hold), and records what it was sent and when its client left.

It speaks just enough HTTP/1.1 for ``sluice.upstream.UpstreamClient``: a request's head and
its ``content-length`` body in, a chunked event stream or a whole body out, kept alive
between replies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson

#: how a streamed reply ends: the chunked body's last chunk, the connection closed mid-body,
#: or nothing more until the client leaves
END, CLOSE, HOLD = "end", "close", "hold"


@dataclass
class Reply:
    """One response. ``chunks`` are written one HTTP chunk each; an ``asyncio.Event`` among
    them makes the server wait for it (or for the client to leave) before going on. With
    ``body``, the response is that body, whole, with a ``content-length``."""

    status: int = 200
    chunks: Sequence[bytes | asyncio.Event] = ()
    end: str = END
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: waited for before the status line is written
    before: asyncio.Event | None = None


@dataclass
class Seen:
    """A request as the server read it."""

    path: str
    headers: dict[str, str]
    body: bytes
    #: set once the client has closed the connection that carried this request
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class ScriptedUpstream:
    """``async with ScriptedUpstream([Reply(...), ...]) as upstream``: ``upstream.url`` takes
    the requests; past the last reply, each request gets a 500."""

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.seen: list[Seen] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> ScriptedUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()  # each handler then reads the connection's end and returns
        async with asyncio.timeout(10):
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def requests(self, count: int) -> list[Seen]:
        """Once at least ``count`` requests have arrived: the requests."""
        while len(self.seen) < count:
            self._arrived.clear()
            await self._arrived.wait()
        return self.seen

    # -- serving ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        seen: Seen | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(lines[0].split(" ")[1], headers, body)
                self.seen.append(seen)
                self._arrived.set()
                reply = self.replies.popleft() if self.replies else _NO_MORE
                if not await self._write(reply, reader, writer):
                    return
        finally:
            if seen is not None:
                seen.gone.set()
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()

    async def _write(
        self, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Write ``reply``; False once the connection is over (closed by either side)."""
        if reply.before is not None and not await _wait(reply.before, reader):
            return False
        reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error"}
        head = [f"HTTP/1.1 {reply.status} {reason.get(reply.status, 'Status')}"]
        if reply.body is not None:
            headers = {"content-type": "application/json", **reply.headers}
            headers["content-length"] = str(len(reply.body))
        else:
            headers = {"content-type": "text/event-stream", **reply.headers}
            headers["transfer-encoding"] = "chunked"
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if reply.body is not None:
            writer.write(reply.body)
            await writer.drain()
            return True
        for chunk in reply.chunks:
            if isinstance(chunk, asyncio.Event):
                if not await _wait(chunk, reader):
                    return False
                continue
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        if reply.end == CLOSE:
            return False
        if reply.end == HOLD:
            await reader.read()  # until the client leaves
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


async def _wait(gate: asyncio.Event, reader: asyncio.StreamReader) -> bool:
    """Wait for ``gate``; False if the client closed the connection first."""
    opened = asyncio.ensure_future(gate.wait())
    left = asyncio.ensure_future(reader.read())
    try:
        await asyncio.wait({opened, left}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (opened, left):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
    return opened.done() and not opened.cancelled()


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "server_error"}})


_NO_MORE = Reply(status=500, body=error_body("the script has no more replies"))


# -- OpenAI Chat Completions frames -----------------------------------------------------------


def frame(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return frame(
        {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "model": "scripted-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


#: the first frame: the response's id and model, no text
OPENING = chunk({"role": "assistant", "content": ""})
DONE = b"data: [DONE]\n\n"


def words(*texts: str) -> list[bytes]:
    return [chunk({"content": text}) for text in texts]


def ending(input_tokens: int, output_tokens: int) -> list[bytes]:
    """A finish reason, the usage chunk and ``[DONE]``."""
    usage = {"prompt_tokens": input_tokens, "completion_tokens": output_tokens}
    return [
        chunk({}, "stop"),
        frame({"id": "chatcmpl-scripted", "choices": [], "usage": usage}),
        DONE,
    ]


def answer(*texts: str, input_tokens: int = 5) -> list[bytes]:
    """A whole answer of ``texts``, ended by the provider with its usage."""
    return [OPENING, *words(*texts), *ending(input_tokens, len(texts))]
