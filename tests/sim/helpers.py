"""Shared helpers of the simulator tests: a running simulator, SDK clients, an SSE splitter."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import uvicorn
from google import genai
from google.genai import types as genai_types

from sluice.sim import SimApp

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"

#: Fast streams: tests never wait for the default 40 tokens/s.
FAST = {"x-sim-token-rate": "5000", "x-sim-ttft": "0", "x-sim-jitter": "0"}

USER: Any = [{"role": "user", "content": "My API key stopped working, what should I do?"}]

LOOKUP_ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "include_history": {"type": "boolean"}},
    "required": ["order_id", "include_history"],
    "additionalProperties": False,
}
NO_ARGS_SCHEMA = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
LOOKUP_ORDER_ARGS = {"order_id": "A-1042", "include_history": True}


def new_session() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@dataclass
class Sim:
    """A simulator served by uvicorn on loopback for one test."""

    base_url: str
    app: SimApp

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=10)

    def openai(self, session: str, **options: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.base_url}/v1",
            api_key="sk-test",
            max_retries=options.pop("max_retries", 0),
            default_headers={"x-sluice-session-id": session, **FAST, **options},
        )

    def anthropic(self, session: str, **options: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            base_url=self.base_url,
            api_key="sk-ant-test",
            max_retries=options.pop("max_retries", 0),
            default_headers={"x-sluice-session-id": session, **FAST, **options},
        )

    def gemini(self, session: str, api_version: str | None = "v1beta", **options: Any) -> Any:
        """A ``google-genai`` client (its ``aio`` side) against the simulator; with
        ``api_version=None`` the SDK's own default version (``v1`` when given a base URL)."""
        http_options = genai_types.HttpOptions(
            base_url=self.base_url,
            headers={"x-sluice-session-id": session, **FAST, **options},
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        )
        if api_version is not None:
            http_options.api_version = api_version
        return genai.Client(api_key="fake-gemini-key", http_options=http_options).aio

    async def records(self, session: str | None = None) -> list[dict[str, Any]]:
        params = {"session": session} if session is not None else {}
        async with self.http() as client:
            response = await client.get("/requests", params=params)
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records

    async def only_record(self, session: str) -> dict[str, Any]:
        records = await self.records(session)
        assert len(records) == 1, records
        return records[0]

    async def record(self, request_id: str) -> dict[str, Any]:
        async with self.http() as client:
            response = await client.get(f"/requests/{request_id}")
        response.raise_for_status()
        record: dict[str, Any] = response.json()
        return record

    async def wait_for(
        self, request_id: str, ready: Callable[[dict[str, Any]], bool], within: float = 5.0
    ) -> dict[str, Any]:
        """Poll a record until ``ready(record)``; fail after ``within`` seconds."""
        async with asyncio.timeout(within):
            while True:
                record = await self.record(request_id)
                if ready(record):
                    return record
                await asyncio.sleep(0.02)


async def start(server: uvicorn.Server) -> tuple[asyncio.Task[None], str]:
    """Start ``server`` in the running loop; its task and its base URL once it listens."""
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(5):
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error
            await asyncio.sleep(0.005)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return task, f"http://{host}:{port}"


def split_sse(body: str) -> list[tuple[str | None, str]]:
    """(event, data) of each frame. The simulator writes one data line per frame, LF only."""
    frames: list[tuple[str | None, str]] = []
    for block in body.split("\n\n"):
        if not block:
            continue
        event: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
        frames.append((event, "\n".join(data)))
    return frames


def payloads(body: str) -> list[Any]:
    """The JSON data of every frame except ``[DONE]``."""
    return [json.loads(data) for _, data in split_sse(body) if data != "[DONE]"]


def gemini_chunks(body: bytes) -> list[Any]:
    """The JSON of each event of a Gemini stream (CRLF line ends, one data line each)."""
    assert body.endswith(b"\r\n\r\n")
    events = body.split(b"\r\n\r\n")[:-1]
    assert all(event.startswith(b"data: ") and b"\n" not in event for event in events)
    return [json.loads(event.removeprefix(b"data: ")) for event in events]


@cache
def _recorded_gemini_keys() -> tuple[set[str], set[str], set[str], set[str]]:
    """The keys the recorded Gemini streams use: of a chunk, a candidate, a part, the usage."""
    recorded = [
        chunk
        for path in sorted(RECORDED.glob("gemini-*.sse"))
        for chunk in gemini_chunks(path.read_bytes())
    ]
    return (
        {key for chunk in recorded for key in chunk},
        {key for chunk in recorded for key in chunk["candidates"][0]},
        {
            key
            for chunk in recorded
            for part in chunk["candidates"][0]["content"]["parts"]
            for key in part
        },
        {key for chunk in recorded for key in chunk["usageMetadata"]},
    )


def check_gemini_stream(ours: list[Any]) -> None:
    """Assert that a simulated Gemini stream uses only the recorded streams' keys, names one
    response, and carries ``finishReason`` on its last chunk only, an empty text part."""
    top, candidate_keys, part_keys, usage_keys = _recorded_gemini_keys()
    for chunk in ours:
        assert set(chunk) <= top and {"usageMetadata", "modelVersion", "responseId"} <= set(chunk)
        [candidate] = chunk["candidates"]
        assert set(candidate) <= candidate_keys
        assert candidate["content"]["role"] == "model"
        assert all(set(part) <= part_keys for part in candidate["content"]["parts"])
        assert set(chunk["usageMetadata"]) <= usage_keys
    assert [("finishReason" in c["candidates"][0]) for c in ours] == [False] * (len(ours) - 1) + [
        True
    ]
    assert ours[-1]["candidates"][0]["content"]["parts"] == [{"text": ""}]
    assert len({c["responseId"] for c in ours}) == 1
