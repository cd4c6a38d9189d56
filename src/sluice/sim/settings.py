"""Simulator settings, and the per-request parameters resolved from them and ``x-sim-*`` headers."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Defaults for every request; most can be overridden per request by a header.

    ============================  =========================  ===============================
    field                         header                     meaning
    ============================  =========================  ===============================
    ``token_rate``                ``x-sim-token-rate``       tokens per second
    ``ttft``                      ``x-sim-ttft``             seconds before the first token
    ``slow_start_ttft``           (``x-sim-ttft``)           ``ttft`` of ``slow-start``
    ``jitter``                    ``x-sim-jitter``           0..1, share of the interval
    ``output_tokens``             ``x-sim-output-tokens``    answer's length (ends a sentence)
    ``fail_after``                ``x-sim-fail-after``       tokens before an injected fault
    ``stall_after``               ``x-sim-stall-after``      tokens before ``stall`` stalls
    ``stall_seconds``             ``x-sim-stall-seconds``    how long ``stall`` stalls
    ``retry_after``               ``x-sim-retry-after``      ``retry-after`` of a 429 (s)
    ``fail_count``                ``x-sim-fail-count``       fail only the first N attempts
    ``seed``                      ``x-sim-seed``             RNG seed for timing and cuts
    ============================  =========================  ===============================

    ``fail_count`` ``None`` means failure scenarios always fail. ``seed`` ``None`` means the
    seed is derived from the request's model and prompt. ``max_records`` bounds the recorder;
    a write that takes longer than ``write_block_threshold`` seconds counts as blocked. A
    request body over ``max_body_bytes`` is answered 413 (``request_too_large``) at once if
    its ``content-length`` says so, else as soon as that much of it is read.
    """

    token_rate: float = 40.0
    ttft: float = 0.3
    slow_start_ttft: float = 12.0
    jitter: float = 0.2
    output_tokens: int = 300
    fail_after: int = 20
    stall_after: int = 10
    stall_seconds: float = 5.0
    retry_after: int = 1
    fail_count: int | None = None
    seed: int | None = None
    max_records: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    write_block_threshold: float = 0.05


@dataclass(frozen=True, slots=True)
class StreamParams:
    """The knobs of one request, after headers were applied to the settings."""

    token_rate: float
    ttft: float
    jitter: float
    output_tokens: int
    fail_after: int
    stall_after: int
    stall_seconds: float
    retry_after: int
    fail_count: int | None
    seed: int | None


class InvalidParameter(ValueError):
    """A ``x-sim-*`` header whose value can't be used."""

    def __init__(self, header: str, reason: str) -> None:
        super().__init__(f"{header}: {reason}")
        self.header = header


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = float(value)
        if not math.isfinite(number) or not low <= number <= high:
            raise ValueError(f"must be a number in [{low:g}, {high:g}]")
        return number

    return parse


def _positive_number(high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = float(value)
        if not math.isfinite(number) or not 0 < number <= high:
            raise ValueError(f"must be a number in (0, {high:g}]")
        return number

    return parse


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be an integer in [{low}, {high}]")
        return number

    return parse


HOUR = 3600.0

#: header -> (StreamParams field, parser). Parsers raise ValueError with a reason.
HEADERS: Mapping[str, tuple[str, Callable[[str], Any]]] = {
    "x-sim-token-rate": ("token_rate", _positive_number(10_000_000)),
    "x-sim-ttft": ("ttft", _number(0, HOUR)),
    "x-sim-jitter": ("jitter", _number(0, 1)),
    "x-sim-output-tokens": ("output_tokens", _integer(1, 100_000_000)),
    "x-sim-fail-after": ("fail_after", _integer(0, 100_000_000)),
    "x-sim-stall-after": ("stall_after", _integer(0, 100_000_000)),
    "x-sim-stall-seconds": ("stall_seconds", _number(0, HOUR)),
    "x-sim-retry-after": ("retry_after", _integer(0, int(HOUR))),
    "x-sim-fail-count": ("fail_count", _integer(0, 1_000_000)),
    "x-sim-seed": ("seed", _integer(-(2**63), 2**63 - 1)),
}


def resolve_params(
    settings: SimSettings, headers: Mapping[str, str], *, slow_start: bool = False
) -> StreamParams:
    """Apply the ``x-sim-*`` headers (lower-case names) to the settings.

    ``slow_start`` picks ``settings.slow_start_ttft`` as the default time to first token.
    Raises ``InvalidParameter`` for a value that doesn't parse or is out of range.
    """
    params = StreamParams(
        token_rate=settings.token_rate,
        ttft=settings.slow_start_ttft if slow_start else settings.ttft,
        jitter=settings.jitter,
        output_tokens=settings.output_tokens,
        fail_after=settings.fail_after,
        stall_after=settings.stall_after,
        stall_seconds=settings.stall_seconds,
        retry_after=settings.retry_after,
        fail_count=settings.fail_count,
        seed=settings.seed,
    )
    changes: dict[str, Any] = {}
    for header, (name, parse) in HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        try:
            changes[name] = parse(value.strip())
        except ValueError as exc:
            reason = str(exc) if str(exc).startswith("must") else "not a valid number"
            raise InvalidParameter(header, reason) from exc
    return replace(params, **changes) if changes else params
