"""The record of every request the simulator served, kept in memory and bounded."""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.sim.script import Transcript

State = Literal["running", "completed", "client_disconnected", "failed"]


@dataclass(slots=True)
class RequestRecord:
    """One request, updated live while it is served.

    Times are epoch seconds: ``first_byte_at`` when the response head was written,
    ``first_token_at`` when the first token was (streams only).

    ``state``: ``running`` until the response ends; ``completed`` when it ended as the
    scenario meant (a stall or a malformed frame included); ``client_disconnected`` when the
    client left first; ``failed`` when a fault ended it (an error status, an in-stream error,
    a reset, a truncation) or the request was invalid.
    """

    id: str
    format: str
    session: str | None
    started_at: float
    scenario: str | None = None
    model: str | None = None
    stream: bool = False
    status: int | None = None
    attempt: int | None = None
    fault: str | None = None
    #: where the request carried a credential (a header's name, or ``?key=``), never the
    #: credential: what a test of a gateway's authentication upstream reads
    auth: str | None = None
    #: the request's W3C ``traceparent`` header, as sent (a gateway's trace propagation)
    traceparent: str | None = None
    input_tokens: int = 0
    first_byte_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    state: State = "running"
    client_disconnected: bool = False
    disconnected_at: float | None = None
    tokens_at_disconnect: int | None = None
    writes: int = 0
    write_blocked_count: int = 0
    write_blocked_seconds: float = 0.0
    max_write_block_seconds: float = 0.0
    #: a write longer than this (seconds) waited for the client: it counts as blocked
    write_block_threshold: float = 0.05
    #: ``time.perf_counter()`` at the start of the write in progress, if any
    writing_since: float | None = None
    transcript: Transcript = field(default_factory=Transcript)

    @property
    def tokens_produced(self) -> int:
        return self.transcript.tokens

    def write_started(self) -> None:
        self.writing_since = time.perf_counter()

    def write_ended(self, at: float) -> None:
        """Count the write that started last; the first write's end is the first byte."""
        if self.writing_since is None:
            return
        took = time.perf_counter() - self.writing_since
        self.writing_since = None
        self.writes += 1
        if self.first_byte_at is None:
            self.first_byte_at = at
        if took > self.write_block_threshold:
            self.write_blocked_count += 1
            self.write_blocked_seconds += took
            self.max_write_block_seconds = max(self.max_write_block_seconds, took)

    def write_blocks(self) -> tuple[int, float, float, bool]:
        """Blocked writes (count, seconds, longest, blocked now), the one in progress included.

        A client that stopped reading leaves a write hanging: it shows here while it hangs.
        """
        count = self.write_blocked_count
        seconds = self.write_blocked_seconds
        longest = self.max_write_block_seconds
        if self.writing_since is not None:
            took = time.perf_counter() - self.writing_since
            if took > self.write_block_threshold:
                return count + 1, seconds + took, max(longest, took), True
        return count, seconds, longest, False

    def disconnected(self, at: float) -> None:
        if self.client_disconnected:
            return
        self.client_disconnected = True
        self.disconnected_at = at
        self.tokens_at_disconnect = self.transcript.tokens

    def close(self, state: State, at: float) -> None:
        """End the record; only the first call counts."""
        if self.state != "running":
            return
        self.state = state
        self.finished_at = at

    def to_json(self) -> dict[str, Any]:
        transcript = self.transcript
        blocked, blocked_seconds, longest_block, blocked_now = self.write_blocks()
        return {
            "id": self.id,
            "format": self.format,
            "scenario": self.scenario,
            "model": self.model,
            "session": self.session,
            "stream": self.stream,
            "status": self.status,
            "attempt": self.attempt,
            "fault": self.fault,
            "auth": self.auth,
            "traceparent": self.traceparent,
            "started_at": self.started_at,
            "first_byte_at": self.first_byte_at,
            "first_token_at": self.first_token_at,
            "finished_at": self.finished_at,
            "state": self.state,
            "tokens_produced": transcript.tokens,
            "input_tokens": self.input_tokens,
            "reasoning_tokens": transcript.reasoning_tokens,
            "finish_reason": transcript.finish_reason,
            "client_disconnected": self.client_disconnected,
            "disconnected_at": self.disconnected_at,
            "tokens_at_disconnect": self.tokens_at_disconnect,
            "text": transcript.text,
            "reasoning": transcript.reasoning,
            "tool_calls": [
                {"index": call.index, "name": call.name, "arguments": call.arguments}
                for call in transcript.tool_calls
            ],
            "malformed_frames": transcript.malformed_frames,
            "writes": self.writes,
            "write_blocked_count": blocked,
            "write_blocked_seconds": blocked_seconds,
            "max_write_block_seconds": longest_block,
            "write_blocked_now": blocked_now,
        }


class Recorder:
    """Records by id, oldest first, at most ``max_records`` (the oldest are dropped).

    Also counts the attempts of each ``x-sluice-session-id`` at a failure scenario, for
    ``fail_count``; requests without a session share one count.
    """

    def __init__(self, max_records: int = 10_000) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.max_records = max_records
        self._records: OrderedDict[str, RequestRecord] = OrderedDict()
        self._attempts: OrderedDict[str | None, int] = OrderedDict()
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        return f"sim-{next(self._ids):06d}"

    def open(
        self,
        record_id: str,
        *,
        format: str,
        session: str | None,
        at: float,
        write_block_threshold: float = 0.05,
    ) -> RequestRecord:
        record = RequestRecord(
            id=record_id,
            format=format,
            session=session,
            started_at=at,
            write_block_threshold=write_block_threshold,
        )
        self._records[record_id] = record
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)
        return record

    def get(self, record_id: str) -> RequestRecord | None:
        return self._records.get(record_id)

    def records(self, session: str | None = None) -> list[RequestRecord]:
        """All records, newest last; only those of ``session`` when given."""
        if session is None:
            return list(self._records.values())
        return [record for record in self._records.values() if record.session == session]

    def next_attempt(self, session: str | None) -> int:
        """Count one more attempt of ``session`` at a failure scenario; returns its number (1..)."""
        attempt = self._attempts.pop(session, 0) + 1
        self._attempts[session] = attempt
        while len(self._attempts) > self.max_records:
            self._attempts.popitem(last=False)
        return attempt

    def clear(self) -> None:
        self._records.clear()
        self._attempts.clear()

    def __len__(self) -> int:
        return len(self._records)
