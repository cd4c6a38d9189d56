"""``sluice demo``: the gateway with its simulator, one support answer streamed end to end,
then an agent's run that needs two tools.

Prints the question, the answer as it arrives, then structured lines with the figures measured
for it: how the turn ended, how the stream flowed, what it used and cost, and that the
operations center heard of its end. Then the agent ``support`` (the simulator's ``agent``
model, the demo's orders MCP server over stdio) answers a question about an order: one line
per step (its tools, with their arguments and durations), the answer, and how the run ended.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
import orjson

from sluice.config import AgentConfig, McpServerConfig, Settings
from sluice.gateway.app import create_app
from sluice.gateway.server import RunningServer
from sluice.logs import kv
from sluice.session.manager import SESSIONS_TOPIC
from sluice.sse import SSEDecoder

PROMPT = "Our nightly deploy fails with 'permission denied' on the release step. How do I fix it?"
MODEL = "sim/support"
AGENT = "support"
AGENT_PROMPT = "My order A-1042 hasn't arrived yet. Can you check the order and its shipping?"


def with_demo_agent(settings: Settings) -> Settings:
    """The demo's agent and its MCP server, unless the configuration has an agent of that
    name already."""
    if AGENT not in settings.agents:
        settings.mcp.setdefault(
            "orders",
            McpServerConfig(
                name="orders", command=[sys.executable, "-m", "sluice.agents.demo_orders"]
            ),
        )
        settings.agents[AGENT] = AgentConfig(
            name=AGENT,
            model="sim/agent",
            system="You answer customers' questions about their orders.",
            tools=["orders", "clock"],
            max_steps=4,
            tool_timeout=10.0,
        )
    return settings


async def run_demo(settings: Settings, once: bool, out: Any = sys.stdout) -> int:
    app = create_app(with_demo_agent(settings))
    gateway = app.state.gateway
    async with RunningServer(app, settings.host, settings.port) as server:
        print(
            f"sluice demo: a gateway on {server.url} with its built-in provider simulator",
            file=out,
        )
        print(f"prompt: {PROMPT}", file=out, flush=True)
        async with gateway.bus.subscribe(SESSIONS_TOPIC) as updates:
            broadcast = asyncio.ensure_future(_terminal_broadcast(updates))
            try:
                state = await _stream_one(server.url, out)
                final = await asyncio.wait_for(broadcast, timeout=10)
            finally:
                broadcast.cancel()
            # What the operations center's live views were told: the session's final state.
            print("ops center notified " + kv(state=final["state"]), file=out, flush=True)
        print(f"\nagent {AGENT}: {AGENT_PROMPT}", file=out, flush=True)
        run_state = await _run_agent(server.url, out)
        if state != "complete" or run_state != "complete":
            return 1
        if once:
            print(
                "\ndemo done; the gateway stops with it (without --once it keeps serving).",
                file=out,
                flush=True,
            )
            return 0
        print(
            f"\nsluice is serving on {server.url}  (records: {server.url}/api/sessions, "
            f"operations center: {server.url}/ops)",
            file=out,
            flush=True,
        )
        print("Ctrl-C to stop.", file=out, flush=True)
        await asyncio.Event().wait()
    return 0


async def _terminal_broadcast(updates: Any) -> dict[str, Any]:
    async for message in updates:
        if message.get("terminal"):
            return dict(message)
    raise RuntimeError("bus closed")


async def _stream_one(base_url: str, out: Any) -> str:
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 1024}
    decoder = SSEDecoder()
    end: dict[str, Any] = {}
    finish: dict[str, Any] = {}
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{base_url}/api/sessions", json=body, headers={"accept": "text/event-stream"}
        ) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"gateway answered {response.status}: {await response.text()}")
        session_id = response.headers["x-sluice-session-id"]
        print(kv(session_id=session_id, model=MODEL) + "\n", file=out, flush=True)
        async for chunk in response.content.iter_any():
            for event in decoder.decode(chunk):
                if event.event == "text":
                    out.write(orjson.loads(event.data)["text"])
                    out.flush()
                elif event.event == "finish":
                    finish = orjson.loads(event.data)
                elif event.event == "end":
                    end = orjson.loads(event.data)
    telemetry, usage, cost = end["telemetry"], end["usage"] or {}, end["cost"] or {}
    print("\n", file=out)
    # state: the session's final state in its stored record (complete, errored, cancelled);
    # finish_reason: why the model stopped (stop: on its own; length: max_tokens cut it).
    print(
        "session ended "
        + kv(
            state=end["state"],
            finish_reason=finish.get("reason"),
            duration_ms=round(telemetry["duration_ms"]),
            ttft_ms=round(telemetry["ttft_ms"] or 0),
            finalization_ms=telemetry["finalization_ms"],
        ),
        file=out,
    )
    print("stream " + _stats_line(telemetry), file=out)
    total = cost.get("total")
    print(
        "usage "
        + kv(
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            usage_source=usage.get("source"),
            total_cost="unknown" if total is None else f"{total:.6f}",
            price_source=cost.get("source"),
        ),
        file=out,
        flush=True,
    )
    return str(end["state"])


async def _run_agent(base_url: str, out: Any) -> str:
    """The agent's run, streamed: one line per step as it ends, then the answer and the end."""
    decoder = SSEDecoder()
    end: dict[str, Any] = {}
    answer: list[str] = []
    tools: dict[str, dict[str, Any]] = {}
    steps = 0
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{base_url}/api/agents/{AGENT}/runs",
            json={"prompt": AGENT_PROMPT},
            headers={"accept": "text/event-stream"},
        ) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"gateway answered {response.status}: {await response.text()}")
        print(kv(session_id=response.headers["x-sluice-session-id"], agent=AGENT), file=out)
        async for chunk in response.content.iter_any():
            for event in decoder.decode(chunk):
                data = orjson.loads(event.data)
                if event.event == "text":
                    answer.append(data["text"])
                elif event.event == "tool.start":
                    tools[data["id"]] = {"name": data["name"], "arguments": data["arguments"]}
                elif event.event == "tool.end":
                    tools[data["id"]]["ms"] = round(data["duration"] * 1000)
                    tools[data["id"]]["ok"] = not data["is_error"]
                elif event.event == "step.end":
                    # one line per step: how its model turn ended, the tools it called
                    used = ",".join(
                        f"{t['name']}({_arguments(t['arguments'])})={t['ms']}ms"
                        + ("" if t["ok"] else "!")
                        for t in tools.values()
                    )
                    print(
                        "agent step "
                        + kv(
                            step=data["step"],
                            finish_reason=data["finish_reason"],
                            tools=used or "-",
                            duration_ms=round(data["duration"] * 1000),
                        ),
                        file=out,
                        flush=True,
                    )
                    tools = {}
                    steps += 1
                elif event.event == "end":
                    end = data
    print("\n" + "".join(answer) + "\n", file=out)
    usage, cost = end.get("usage") or {}, end.get("cost") or {}
    total = cost.get("total")
    print(
        "agent run ended "
        + kv(
            state=end.get("state"),
            steps=steps,
            output_tokens=usage.get("output_tokens"),
            total_cost="unknown" if total is None else f"{total:.6f}",
        ),
        file=out,
        flush=True,
    )
    return str(end.get("state"))


def _arguments(arguments: dict[str, Any]) -> str:
    return ";".join(f"{k}={v}" for k, v in arguments.items())


def _stats_line(telemetry: dict[str, Any]) -> str:
    rate = telemetry.get("token_rate")
    p99 = telemetry.get("gap_p99_ms")
    return (
        f"token_rate={'-' if rate is None else round(rate)} t/s "
        f"backpressure={telemetry.get('backpressure')} "
        f"p99={'-' if p99 is None else f'{p99 / 1000:.3f}s'}"
    )
