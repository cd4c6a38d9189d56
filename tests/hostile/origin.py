"""A hostile upstream on loopback: one HTTP/1.1 server that plays a case per model name.

It runs in a thread of its own with its own event loop, so that the gateway under test (a
process of its own) and the test's client share nothing with it. The case is the request's
``model`` (``"hostile/<case>"`` at the gateway, ``"<case>"`` here); ``ordinary`` is a good
stream that the tests run beside every case."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections import Counter
from collections.abc import Awaitable, Callable

import orjson

Case = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
#: the ordinary stream: this many deltas, one every ``ORDINARY_GAP`` seconds
ORDINARY_DELTAS = 60
ORDINARY_GAP = 0.02
#: a piece of the endless line, sent again and again (one object: the origin allocates
#: nothing per write)
LINE_PIECE = b"x" * 65536
#: the endless line's length, if nothing stopped it
LINE_BYTES = 1000 * 1024 * 1024
#: the tiny events' count, if nothing stopped them
TINY_EVENTS = 1_000_000


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def delta(text: str) -> bytes:
    frame = {"id": "c1", "object": "chat.completion.chunk", "model": "m"}
    frame["choices"] = [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
    return b"data: " + orjson.dumps(frame) + b"\n\n"


FINISH = (
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
    b'"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


def ordinary_text() -> str:
    return "".join(f"w{n} " for n in range(ORDINARY_DELTAS))


class HostileOrigin:
    def __init__(self) -> None:
        self.port = 0
        self.requests: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-origin", daemon=True)
        # a bomb: 2 GB of zeros in some 2 MB of gzip (2,048 members of 1 MB each)
        self.bomb = gzip.compress(bytes(1024 * 1024), compresslevel=9) * 2048
        self.cases: dict[str, Case] = {
            "ordinary": self._ordinary,
            "gzip-bomb": self._gzip_bomb,
            "endless-line": self._endless_line,
            "tiny-events": self._tiny_events,
            "comments-only": self._comments_only,
            "redirect-302": self._redirect(b"302 Found"),
            "redirect-307": self._redirect(b"307 Temporary Redirect"),
            "html": self._html,
            "non-json": self._non_json,
            "drop-once": self._drop_once,
        }

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the hostile origin did not start")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = orjson.loads(await reader.readexactly(length))
                case = str(body.get("model", ""))
                self.requests[case] += 1
                await self.cases[case](reader, writer)
                await writer.drain()
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError, KeyError):
            pass
        finally:
            writer.close()

    # -- the cases ------------------------------------------------------------------------

    async def _ordinary(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(SSE_HEAD)
        for n in range(ORDINARY_DELTAS):
            w.write(chunk(delta(f"w{n} ")))
            await w.drain()
            await asyncio.sleep(ORDINARY_GAP)
        w.write(chunk(FINISH) + b"0\r\n\r\n")

    async def _gzip_bomb(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
            b"content-length: %d\r\n\r\n" % len(self.bomb)
        )
        w.write(self.bomb)

    async def _endless_line(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(SSE_HEAD + chunk(delta("before the line ")) + chunk(b"data: "))
        piece = chunk(LINE_PIECE)
        for _ in range(LINE_BYTES // len(LINE_PIECE)):
            w.write(piece)
            await w.drain()  # ends with ConnectionError once the gateway lets go
        w.close()

    async def _tiny_events(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(SSE_HEAD)
        batch = chunk(delta("t") * 1000)
        for _ in range(TINY_EVENTS // 1000):
            w.write(batch)
            await w.drain()
        w.write(chunk(FINISH) + b"0\r\n\r\n")

    async def _comments_only(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(SSE_HEAD + chunk(delta("one word, then only comments ")))
        for _ in range(6000):  # a few minutes of it, if nothing stopped it
            w.write(chunk(b": keep-alive\n\n"))
            await w.drain()
            await asyncio.sleep(0.02)
        w.close()

    def _redirect(self, status: bytes) -> Case:
        async def redirect(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(
                b"HTTP/1.1 %s\r\nlocation: https://elsewhere.example/v1/chat/completions\r\n"
                % status
            )
            w.write(b"content-length: 0\r\n\r\n")

        return redirect

    async def _html(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        page = b"<html><body>Please sign in</body></html>"
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n")
        w.write(b"content-length: %d\r\n\r\n%s" % (len(page), page))

    async def _non_json(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(SSE_HEAD + chunk(delta("fine so far ")))
        w.write(chunk(b"data: <html>not json</html>\n\n"))
        w.write(chunk(delta("never relayed ")) + chunk(FINISH) + b"0\r\n\r\n")

    async def _drop_once(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self.requests["drop-once"] == 1:
            w.transport.abort()  # the request was read; the connection goes without a word
            return
        await self._ordinary(_r, w)
