"""The scenarios a request can ask for, and the paced script each one plays. No I/O.

A scenario is picked by the request's ``model`` (or the ``x-sim-scenario`` header, which wins).
Failure scenarios fail while ``fail_count`` allows (always, by default); after that they play
``support``. What a client sees:

==================  ==========================================================================
scenario            what the client sees
==================  ==========================================================================
support (steady)    a markdown support answer (heading, list, code fence) to the question the
                    prompt asks, one word per frame
bursty              the same answer, 3 to 8 tokens per write, then a pause
slow-start          reasoning for ``ttft`` seconds (default 12), then the answer
tools               a short sentence, then one ``lookup_order`` call (arguments cut anywhere)
parallel-tools      ``lookup_order`` and ``list_open_tickets`` (no arguments), no text
rate-limit          HTTP 429, ``retry-after``, the format's error body; no stream
overloaded          HTTP 529 (Anthropic) or 503 (OpenAI) with the format's error body
error-mid-stream    ``fail_after`` tokens, then the format's in-stream error frame; body ends
reset               ``fail_after`` tokens, then the connection drops inside the chunked body
stall               ``stall_after`` tokens, ``stall_seconds`` of silence, then the rest
malformed           one extra frame of invalid JSON after ``fail_after`` tokens, then the rest
truncated           ``fail_after`` tokens, then a clean end of body without the terminator
echo                the prompt's text said back, one piece per frame (for rendering tests)
agent               one turn of an agent run, planned from the request's tools and conversation:
                    the results it carries quoted, or the tools its question names called in
                    parallel (arguments from their schemas), or a text answer (``agent.py``)
==================  ==========================================================================

``output_tokens`` sets the answer's length: it ends on its own at the first end of a sentence at
or after that many tokens, with the format's stop reason (tool scenarios and ``echo`` ignore it;
``agent`` gives it to the ``support`` answer it says when it calls no tool and has no results).
The request's ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens`` is its token
budget: it caps every token, reasoning and tool arguments included, and an answer it cuts ends
with the format's length reason (``length``, ``max_tokens``, ``incomplete``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from random import Random

from sluice.sim import agent, corpus
from sluice.sim.conversation import Conversation
from sluice.sim.script import (
    TOKEN_EVENTS,
    ConnectionReset,
    Event,
    Finish,
    MalformedFrame,
    ReasoningDelta,
    Step,
    StopReason,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolCallStart,
)
from sluice.sim.settings import StreamParams


class Scenario(StrEnum):
    SUPPORT = "support"
    BURSTY = "bursty"
    SLOW_START = "slow-start"
    TOOLS = "tools"
    PARALLEL_TOOLS = "parallel-tools"
    RATE_LIMIT = "rate-limit"
    OVERLOADED = "overloaded"
    ERROR_MID_STREAM = "error-mid-stream"
    RESET = "reset"
    STALL = "stall"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    ECHO = "echo"
    AGENT = "agent"


ALIASES: dict[str, Scenario] = {"steady": Scenario.SUPPORT}

#: Scenarios that fail (while ``fail_count`` allows); past it they play ``support``.
FAILURES = frozenset(
    {
        Scenario.RATE_LIMIT,
        Scenario.OVERLOADED,
        Scenario.ERROR_MID_STREAM,
        Scenario.RESET,
        Scenario.STALL,
        Scenario.MALFORMED,
        Scenario.TRUNCATED,
    }
)

#: Failures answered with an HTTP error status before any byte of body.
HTTP_FAILURES = frozenset({Scenario.RATE_LIMIT, Scenario.OVERLOADED})

#: Smallest and largest burst of the ``bursty`` scenario, in tokens.
BURST = (3, 8)


def lookup(name: str) -> Scenario | None:
    """The scenario a model name or ``x-sim-scenario`` value asks for, or None."""
    name = name.strip().lower()
    try:
        return Scenario(name)
    except ValueError:
        return ALIASES.get(name)


def prompt_digest(model: str, prompt: str) -> bytes:
    """What makes the words deterministic: same model and prompt, same digest, same answer."""
    return hashlib.blake2b(f"{model}\0{prompt}".encode(), digest_size=16).digest()


def script(
    scenario: Scenario,
    params: StreamParams,
    *,
    digest: bytes,
    max_tokens: int | None = None,
    prompt: str = "",
    conversation: Conversation | None = None,
) -> Iterator[Step]:
    """The steps ``scenario`` plays. Lazy: a long answer is never held in memory.

    ``max_tokens`` caps the tokens (reasoning and tool arguments included); a capped turn
    finishes with ``length``. ``rate-limit`` and ``overloaded`` play ``support`` here: their
    fault is an HTTP status, which the app sends instead of playing the script. ``agent``
    plans its turn from ``conversation`` (none: an empty one).
    """
    seed = params.seed if params.seed is not None else int.from_bytes(digest[:8], "big")
    rng = Random(seed)
    plan = None
    if scenario is Scenario.AGENT:
        plan = agent.plan(conversation or Conversation())
    output = _Capped(_output(scenario, params, digest, rng, prompt, plan), max_tokens)
    # slow-start fills its ttft with reasoning, which begins one interval in.
    slow = scenario is Scenario.SLOW_START
    first_delay = 1.0 / params.token_rate if slow else params.ttft
    fault = _fault(scenario, params)
    yield from _pace(
        output,
        params,
        rng,
        first_delay=first_delay,
        bursty=scenario is Scenario.BURSTY,
        fault=fault,
    )
    if fault is None or not fault.ends_stream:
        reason: StopReason = "length" if output.capped else _natural_finish(scenario, plan)
        yield Step(0.0, (Finish(reason),))


def _output(
    scenario: Scenario,
    params: StreamParams,
    digest: bytes,
    rng: Random,
    prompt: str,
    plan: agent.Plan | None,
) -> Iterator[Event]:
    """Everything the model says, token by token, with tool-call starts in between."""
    match scenario:
        case Scenario.SLOW_START:
            thinking = max(1, round(params.ttft * params.token_rate))
            yield from map(ReasoningDelta, corpus.reasoning(thinking))
            yield from map(TextDelta, corpus.answer(prompt, digest, params.output_tokens))
        case Scenario.TOOLS:
            yield from map(TextDelta, corpus.preamble())
            yield from _tool_call(0, *corpus.LOOKUP_ORDER, rng)
        case Scenario.PARALLEL_TOOLS:
            yield from _tool_call(0, *corpus.LOOKUP_ORDER, rng)
            yield from _tool_call(1, *corpus.LIST_OPEN_TICKETS, rng)
        case Scenario.ECHO:
            yield from map(TextDelta, corpus.split_pieces(prompt))
        case Scenario.AGENT if plan is not None:
            yield from map(TextDelta, corpus.split_pieces(plan.text))
            if plan.answer_to is not None:
                answer = corpus.answer(plan.answer_to, digest, params.output_tokens)
                yield from map(TextDelta, answer)
            for index, (name, arguments) in enumerate(plan.calls):
                yield from _tool_call(index, name, arguments, rng)
        case _:
            yield from map(TextDelta, corpus.answer(prompt, digest, params.output_tokens))


def _tool_call(index: int, name: str, arguments: str, rng: Random) -> Iterator[Event]:
    yield ToolCallStart(index, name, has_arguments=arguments != "{}")
    for fragment in corpus.cut_fragments(arguments, rng):
        yield ToolArgsDelta(index, fragment)


def _natural_finish(scenario: Scenario, plan: agent.Plan | None) -> StopReason:
    if scenario in (Scenario.TOOLS, Scenario.PARALLEL_TOOLS):
        return "tool_calls"
    if plan is not None and plan.calls:
        return "tool_calls"
    return "stop"


@dataclass(frozen=True, slots=True)
class _Fault:
    """A step injected after ``at`` tokens; ``ends_stream`` faults are the script's last step."""

    step: Step
    at: int
    ends_stream: bool


def _fault(scenario: Scenario, params: StreamParams) -> _Fault | None:
    match scenario:
        case Scenario.STALL:
            return _Fault(Step(params.stall_seconds, ()), params.stall_after, ends_stream=False)
        case Scenario.MALFORMED:
            return _Fault(Step(0.0, (MalformedFrame(),)), params.fail_after, ends_stream=False)
        case Scenario.ERROR_MID_STREAM:
            return _Fault(Step(0.0, (StreamError(),)), params.fail_after, ends_stream=True)
        case Scenario.RESET:
            return _Fault(Step(0.0, (ConnectionReset(),)), params.fail_after, ends_stream=True)
        case Scenario.TRUNCATED:
            # An empty last step: the script ends without Finish, so with no terminator.
            return _Fault(Step(0.0, ()), params.fail_after, ends_stream=True)
        case _:
            return None


class _Capped:
    """Groups output events into units of one token each, stopping after ``cap`` tokens."""

    def __init__(self, events: Iterable[Event], cap: int | None) -> None:
        self._events = events
        self._cap = cap
        self.capped = False

    def __iter__(self) -> Iterator[tuple[Event, ...]]:
        pending: list[Event] = []
        count = 0
        for event in self._events:
            if not isinstance(event, TOKEN_EVENTS):
                pending.append(event)
                continue
            if self._cap is not None and count >= self._cap:
                self.capped = True
                return
            pending.append(event)
            yield tuple(pending)
            pending = []
            count += 1


def _pace(
    units: Iterable[tuple[Event, ...]],
    params: StreamParams,
    rng: Random,
    *,
    first_delay: float,
    bursty: bool,
    fault: _Fault | None,
) -> Iterator[Step]:
    """Spread token units over time; inject ``fault`` after ``fault.at`` tokens.

    A fault that ends the stream stops the steps; when the output is shorter than
    ``fault.at``, the fault comes after the last token.
    """
    interval = 1.0 / params.token_rate
    units = iter(units)
    emitted = 0
    delay = first_delay
    group: list[Event] = []
    while True:
        if fault is not None and emitted >= fault.at:
            yield fault.step
            if fault.ends_stream:
                return
            fault = None
        size = rng.randint(*BURST) if bursty else 1
        if fault is not None:
            size = min(size, fault.at - emitted)
        taken = 0
        for unit in units:
            group.extend(unit)
            taken += 1
            if taken == size:
                break
        if not taken:
            break
        yield Step(delay, tuple(group))
        group = []
        emitted += taken
        delay = interval * taken * (1.0 + params.jitter * rng.uniform(-1.0, 1.0))
    if fault is not None:
        yield fault.step
