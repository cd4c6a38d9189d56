"""An agent's run: a session whose turn is several model calls with the gateway's tools between.

    step 1: model turn ──► its tool calls, executed in parallel ──► results into the messages
    step 2: model turn ──► ... until a turn asks for no tool (the answer) or ``max_steps``

Every step goes to the session's log between ``StepStart`` and ``StepEnd``: the model's own
events as any session relays them, then ``ToolStart`` ``ToolProgress``* ``ToolEnd`` for each
tool it called. The run is a ``Session`` in every other way: the same log and readers
(resume, disconnect policies), the same Stop (the task is cancelled: the model call's socket
closes and the running tools are cancelled, which an MCP server is told), the same record,
with its steps. A Retry runs the whole run again from its first message (docs/agents.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sluice import events as ev
from sluice.agents.declare import AgentTools
from sluice.agents.tools import ToolError, ToolOutcome, ToolProgress
from sluice.config import AgentConfig
from sluice.session.session import Session, SessionDeps, SessionSpec
from sluice.turn import Message, Part, TextPart, ToolCallPart, ToolResultPart, TurnRequest

#: The terminal error of a run whose last allowed step still asked for tools.
MAX_STEPS = "max_steps"

#: Builds the upstream request body of a turn (the route's wire format, fixed for the run).
BodyBuilder = Callable[[TurnRequest], bytes]


class AgentRun(Session):
    """One run of ``agent``: its model's turns and its tools, as one session."""

    __slots__ = (
        "_build",
        "_messages",
        "_step_started",
        "agent",
        "conversation",
        "conversation_id",
        "step",
        "steps",
        "tools",
    )

    def __init__(
        self,
        session_id: str,
        spec: SessionSpec,
        deps: SessionDeps,
        *,
        agent: AgentConfig,
        tools: AgentTools,
        build: BodyBuilder,
        conversation: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(session_id, spec, deps)
        self.agent = agent
        self.tools = tools
        self._build = build
        #: the conversation the run is a turn of, as stored when it began (its history is the
        #: run's messages); the run's end stores it with the answer added
        self.conversation = conversation
        self.conversation_id = None if conversation is None else conversation["id"]
        #: the messages the run began with (a Retry begins again from them)
        self._messages = list(spec.turn.messages)
        #: the step under way (0 before the first)
        self.step = 0
        self._step_started = 0.0
        #: each step's record: its turn's text, finish reason, usage, and tools called
        self.steps: list[dict[str, Any]] = []

    # -- the loop -----------------------------------------------------------------------------

    async def _attempts(self) -> None:
        turn = self.spec.turn
        while True:
            self._begin_step()
            await super()._attempts()  # the step's model turn, its refusals retried
            if self.error is not None:
                return  # (the step's error is the run's: it ends with it)
            acc = self.acc
            calls = acc.tool_calls
            if acc.finish_reason != ev.FINISH_TOOL_CALLS or not calls or not self.agent.tools:
                # The answer; or calls with no tool to run them (a model's turn of a
                # conversation): they end the run as they end a plain session.
                self._end_step([])
                return
            if self.step >= self.agent.max_steps:
                self._end_step([])
                self._end_with(
                    ev.Error(
                        MAX_STEPS,
                        f"the model still asked for tools after {self.step} steps, the "
                        f"agent's max_steps",
                    )
                )
                return
            # What the readers have of this step reaches them now (the session holds the
            # end of each model response back, in case it is the session's end).
            self.log.held = False
            self.log.notify()
            said = acc.text
            assistant: list[Part] = [*acc.thinking()]
            if said:
                assistant.append(TextPart(said))
            assistant += [ToolCallPart(c.call_id, c.name, c.arguments or {}) for c in calls]
            results = await self._call_tools(calls)
            self._end_step(results)
            turn.messages.append(Message("assistant", assistant))
            turn.messages.append(Message("user", [part for part, _ in results]))
            self.spec.body = self._build(turn)
            self._carry_usage()

    def _begin_step(self) -> None:
        self.step += 1
        self._step_started = time.monotonic()
        self.log.append(ev.StepStart(self.step))

    def _end_step(self, results: list[tuple[ToolResultPart, dict[str, Any]]]) -> None:
        usage, source = self.attempt_usage()
        usage_data = None if source == "refused" else ev.payload(usage)[1] | {"source": source}
        duration = round(time.monotonic() - self._step_started, 6)
        acc = self.acc
        self.steps.append(
            {
                "step": self.step,
                "duration": duration,
                "finish_reason": acc.finish_reason,
                "usage": usage_data,
                "text": acc.text,
                "tool_calls": [record for _, record in results],
            }
        )
        self.log.append(ev.StepEnd(self.step, acc.finish_reason, usage_data, duration))
        self.log.notify()

    # -- tools --------------------------------------------------------------------------------

    async def _call_tools(self, calls: list[Any]) -> list[tuple[ToolResultPart, dict[str, Any]]]:
        """The step's tool calls, in parallel; each ends in a result for the model and its
        record. Stop cancels them all (each logged as cancelled) and ends the run."""
        names = ", ".join(dict.fromkeys(call.name for call in calls))
        self._status("tool", names)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._call_tool(call)) for call in calls]
        return [task.result() for task in tasks]

    async def _call_tool(self, call: Any) -> tuple[ToolResultPart, dict[str, Any]]:
        log, redactor = self.log, self.redactor
        call_id, name = call.call_id, call.name
        try:
            origin = self.tools.origin(name)
        except ToolError:
            origin = name
        arguments = call.arguments if call.arguments is not None else {}
        log.append(ev.ToolStart(call_id, name, origin, arguments))
        log.notify()
        started = time.monotonic()

        def progress(update: ToolProgress) -> None:
            message = None if update.message is None else redactor.text(update.message)
            log.append(ev.ToolProgress(call_id, update.progress, update.total, message))
            log.notify()

        error: str | None = None
        outcome: ToolOutcome | None = None
        try:
            if call.status != ev.TOOL_OK:
                error = "invalid_arguments"
                text = f"the arguments were not a JSON object ({call.status}): {call.error}"
            else:
                outcome = await self.tools.call(
                    name, arguments, time_limit=self.agent.tool_timeout, progress=progress
                )
                text = outcome.text
        except ToolError as exc:
            exc.__traceback__ = None
            error, text = exc.type, f"{exc.type}: {exc.message}"
        except asyncio.CancelledError:
            duration = round(time.monotonic() - started, 6)
            log.append(ev.ToolEnd(call_id, name, duration, "stopped", True, "cancelled"))
            stopped: dict[str, Any] = {
                "id": call_id,
                "name": name,
                "tool": origin,
                "duration": duration,
                "is_error": True,
                "error": "cancelled",
            }
            self.deps.observer.on_tool_end(self, stopped, started)
            raise
        text = redactor.text(text)
        is_error = error is not None or (outcome is not None and outcome.is_error)
        duration = round(time.monotonic() - started, 6)
        log.append(ev.ToolEnd(call_id, name, duration, text, is_error, error))
        log.notify()
        record: dict[str, Any] = {
            "id": call_id,
            "name": name,
            "tool": origin,
            "arguments": arguments,
            "duration": duration,
            "result": text,
            "is_error": is_error,
            "error": error,
            "content": redactor.value(outcome.content) if outcome is not None else [],
        }
        self.deps.observer.on_tool_end(self, record, started)
        return ToolResultPart(call_id, text, is_error), record

    # -- retry, record ------------------------------------------------------------------------

    def _begin_attempt(self, reason: str, delay: float) -> None:
        """A Retry runs the whole run again, from the messages it began with."""
        super()._begin_attempt(reason, delay)
        self.spec.turn.messages[:] = self._messages
        self.spec.body = self._build(self.spec.turn)
        self.step = 0
        self.steps = []

    def _may_retry_turn(self, error: ev.Error) -> bool:
        # A failure mid-stream ends the run (a whole-turn retry would repeat its tools'
        # effects); the recover button runs it again whole.
        return False

    def _final_writes(self) -> list[Awaitable[None]]:
        """The conversation, with this run's answer, is stored with the record: a client
        told of the end may send the next turn at once."""
        conversation = self.conversation
        if conversation is None or not self.deps.keep_content:
            return []
        messages = [_message_record(m) for m in self._messages]
        answer = "".join(step["text"] for step in self._steps_so_far())
        if answer:
            messages.append({"role": "assistant", "content": answer})
        sessions = [s for s in conversation.get("sessions", ()) if s != self.id]
        updated = conversation | {
            "messages": messages,
            "sessions": [*sessions, self.id],
            "updated_at": time.time(),
        }
        self.conversation = updated
        return [self.deps.store.put_conversation(updated)]

    def run_progress(self) -> tuple[str, int, int] | None:
        return self.agent.name, self.step, len(self.steps)

    def _steps_so_far(self) -> list[dict[str, Any]]:
        """The steps ended, and the one under way if any (a Stop, an error)."""
        if self.step > len(self.steps):
            return [*self.steps, {"step": self.step, "text": self.acc.text, "tool_calls": []}]
        return self.steps

    def _record(self) -> dict[str, Any]:
        record = super()._record()
        steps = self._steps_so_far()
        record["agent"] = self.agent.name
        record["conversation_id"] = self.conversation_id
        record["steps"] = steps
        record["step"] = self.step
        record["text"] = "".join(step["text"] for step in steps)
        record["messages"] = [_message_record(m) for m in self._messages]
        return record


def _message_record(message: Message) -> dict[str, Any]:
    """A message of the run's input as the record keeps it: its role and its text."""
    text = "".join(part.text for part in message.parts if isinstance(part, TextPart))
    return {"role": message.role, "content": text}
