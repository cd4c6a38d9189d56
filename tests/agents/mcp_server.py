"""An MCP server for the agent tests, written with the ``mcp`` SDK's ``MCPServer``.

``python mcp_server.py stdio`` serves over stdin and stdout; ``python mcp_server.py http``
binds a loopback port, prints it on a line of its own, and serves Streamable HTTP at
``/mcp``. Its tools: sums and echoes, one that raises, one that sleeps, one that hangs until
cancelled (and counts the cancellations it saw), two that report progress (at once, and over a
while), one that makes the process exit in the middle of the call.
"""

from __future__ import annotations

import os
import socket
import sys

import anyio
import anyio.lowlevel
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("sluice-test-tools")
cancellations = 0


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> str:
    return str(a + b)


@server.tool(description="Say the text back.")
async def echo(text: str) -> str:
    await anyio.lowlevel.checkpoint()
    return f"echo: {text}"


@server.tool(description="Always fails.")
def fail(message: str) -> str:
    raise ValueError(message)


@server.tool(description="Sleep, then answer.")
async def sleep(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "slept"


@server.tool(description="Wait until cancelled.")
async def hang() -> str:
    global cancellations
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        cancellations += 1
        raise
    return "never"


@server.tool(description="How many calls of hang were cancelled.")
def cancelled() -> str:
    return str(cancellations)


@server.tool(description="Report progress, then answer.")
async def count(steps: int, ctx: Context) -> str:
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
    return f"counted {steps}"


@server.tool(description="Visit each site in turn, telling the progress as it goes.")
async def survey(sites: int, ctx: Context) -> str:
    for site in range(1, sites + 1):
        await ctx.report_progress(site, sites, f"site {site}")
        await anyio.sleep(0.4)
    return f"surveyed {sites} sites"


@server.tool(description="This process's id.")
def pid() -> str:
    return str(os.getpid())


@server.tool(description="End the process in the middle of the call.")
async def crash() -> str:
    await anyio.lowlevel.checkpoint()
    os._exit(3)


async def serve_http() -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # Listening before the port is told: a client that connects while uvicorn still starts
    # waits in the backlog instead of being refused.
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    if sys.argv[1] == "http":
        anyio.run(serve_http)
    else:
        anyio.run(server.run_stdio_async)
