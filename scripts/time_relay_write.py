"""Time one relayed chunk's write, in-process: uvicorn's ``send`` (an ASGI message and a
coroutine run to completion, as the relay's listener does) against the gateway server's
connection hook (``ConnectionHook.write``, the fast write path), and against ``send`` through
a middleware that counts the body's bytes, started in the response's context, as the listener
does when the app is wrapped. The transport discards the bytes, so what is timed is the
Python on the way to the system call.

    .venv/bin/python scripts/time_relay_write.py
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref

import uvloop
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from sluice.gateway.server import _Hook

N = 200_000
BODY = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"t12:123456789012"},"finish_reason":null}]}\n\n'
)


class _Discard:
    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def main() -> None:
    transport = _Discard()
    cycle = RequestResponseCycle(
        scope={"type": "http", "method": "POST"},  # type: ignore[typeddict-item]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("uvicorn.error"),
        access_logger=logging.getLogger("uvicorn.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    await cycle.send({"type": "http.response.start", "status": 200, "headers": []})
    hook = _Hook()
    hook.cycle = weakref.ref(cycle)
    counted = 0

    async def counting_send(message: dict[str, object]) -> None:  # an ordinary middleware's
        nonlocal counted
        if message["type"] == "http.response.body":
            counted += len(message["body"])  # type: ignore[arg-type]
        await cycle.send(message)  # type: ignore[arg-type]

    context = contextvars.copy_context()
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(N):
            sending = cycle.send({"type": "http.response.body", "body": BODY, "more_body": True})
            try:  # noqa: SIM105 - suppress() would add a context manager to what is timed
                sending.send(None)
            except StopIteration:
                pass
        middle = time.perf_counter()
        for _ in range(N):
            hook.write(BODY)
        ended = time.perf_counter()
        for _ in range(N):
            wrapped = counting_send({"type": "http.response.body", "body": BODY, "more_body": True})
            try:  # noqa: SIM105 - as above
                context.run(wrapped.send, None)
            except StopIteration:
                pass
        last = time.perf_counter()
        print(
            f"uvicorn send {(middle - started) / N * 1e6:.2f} µs"
            f"   hook write {(ended - middle) / N * 1e6:.2f} µs"
            f"   through a middleware {(last - ended) / N * 1e6:.2f} µs"
        )


if __name__ == "__main__":
    uvloop.run(main())
