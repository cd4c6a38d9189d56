"""The sessions' observer that turns what they tell into OpenTelemetry spans and metrics.

Per session: its span begins as its first upstream request goes out (so that the request can
carry the trace), and ends with its record, its attributes set then from the record and the
clock. Per upstream request: a child span, begun before the request is sent (its
``traceparent`` goes with it), ended with the request, and the client metrics. Spans begin
bare: the request waits for their start, not for their attributes. Per tool
execution of an agent: a child span, made whole when the tool ends. Nothing per chunk: the
chunks' timing comes from the session's clock at the end (``StreamClock.mark``/``since``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram, Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sluice import __version__
from sluice import events as ev
from sluice.errors import UpstreamError
from sluice.logs import kv
from sluice.otel import genai
from sluice.session.session import Session

log = logging.getLogger("sluice.otel")

#: the instrumentation scope of every span and metric
SCOPE = "sluice"


@contextmanager
def _kept_apart(session: Session, step: str) -> Iterator[None]:
    """A failure of telemetry is logged and goes no further: the session it observes is
    relayed and recorded all the same."""
    try:
        yield
    except Exception:
        log.exception("telemetry failed %s", kv(session_id=session.id, step=step))


@dataclass(slots=True)
class _Trace:
    """One session's spans while it lives."""

    span: Span
    #: the upstream request under way, and what is needed to end it
    attempt: Span | None = None
    attempt_attributes: dict[str, Any] = field(default_factory=dict)
    attempt_started: float = 0.0
    attempt_mark: tuple[int, float | None] = (0, None)
    attempts: int = 0


class SessionTelemetry:
    """A ``SessionObserver`` (``sluice.session.session``) that exports spans and metrics."""

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._tracer: Tracer | None = None
        if tracer_provider is not None:
            self._tracer = tracer_provider.get_tracer(SCOPE, __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._traces: dict[str, _Trace] = {}
        self._metrics: _Metrics | None = None
        if meter_provider is not None:
            self._metrics = _Metrics(meter_provider.get_meter(SCOPE, __version__))

    # -- SessionObserver ------------------------------------------------------------------------

    def on_state(self, session: Session) -> None:
        pass

    def on_first_token(self, session: Session) -> None:
        pass

    def on_attempt(self, session: Session) -> None:
        with _kept_apart(session, "attempt"):
            self._attempt(session)

    def on_attempt_end(self, session: Session, error: UpstreamError | ev.Error | None) -> None:
        with _kept_apart(session, "attempt_end"):
            traced = self._traces.get(session.id)
            if traced is not None and traced.attempt_attributes:
                self._end_attempt(session, traced, error)

    def on_tool_end(self, session: Session, call: dict[str, Any], started: float) -> None:
        with _kept_apart(session, "tool_end"):
            self._tool(session, call, started)

    async def on_finished(self, session: Session) -> None:
        with _kept_apart(session, "finished"):
            self._finished(session)

    # -- spans ----------------------------------------------------------------------------------

    def _attempt(self, session: Session) -> None:
        """An upstream request is about to go out: its span (and the session's, before the
        first), and its ``traceparent`` among the request's headers."""
        tracer = self._tracer
        traced = self._traces.get(session.id)
        if traced is None:
            traced = self._traces[session.id] = _Trace(self._session_span(session))
        traced.attempts += 1
        attributes = genai.attempt_start_attributes(session, traced.attempts)
        if tracer is not None:
            # (no attributes yet: the request waits for this span, its attributes can wait for
            # its end)
            traced.attempt = tracer.start_span(
                genai.attempt_span_name(session),
                trace.set_span_in_context(traced.span),
                SpanKind.CLIENT,
            )
            self._propagator.inject(session.spec.headers, trace.set_span_in_context(traced.attempt))
        traced.attempt_attributes = attributes
        traced.attempt_started = time.monotonic()
        traced.attempt_mark = session.clock.mark()

    def _tool(self, session: Session, call: dict[str, Any], started: float) -> None:
        traced, tracer = self._traces.get(session.id), self._tracer
        if traced is None or tracer is None:
            return
        name, attributes = genai.tool_span(call)
        ended = time.time_ns()
        span = tracer.start_span(
            name,
            trace.set_span_in_context(traced.span),
            SpanKind.INTERNAL,
            attributes,
            start_time=ended - int((time.monotonic() - started) * 1e9),
        )
        if "error.type" in attributes:
            span.set_status(Status(StatusCode.ERROR))
        span.end(ended)

    def _finished(self, session: Session) -> None:
        traced = self._traces.pop(session.id, None)
        if traced is None:  # (a session that sent no request: there is none today)
            traced = _Trace(self._session_span(session))
        if traced.attempt_attributes:  # cut short by Stop or a failure of the gateway
            self._end_attempt(session, traced, None, with_session=True)
        span = traced.span
        if span.is_recording():
            attributes = genai.session_start_attributes(session)
            attributes |= genai.session_end_attributes(session)
            span.set_attributes(attributes)
            if "error.type" in attributes:
                span.set_status(Status(StatusCode.ERROR, (session.error or {}).get("message")))
        span.end()
        if self._metrics is not None:
            self._metrics.session(session)

    def _session_span(self, session: Session) -> Span:
        """The session's span, begun as its first request goes out; its parent is the span
        current where the session starts (an HTTP server span, if the application is
        wrapped in one), else the client's ``traceparent``, else none."""
        tracer = self._tracer
        if tracer is None:
            return trace.INVALID_SPAN
        current = trace.get_current_span()
        kind = SpanKind.SERVER
        parent: Context | None = None
        if current.get_span_context().is_valid:
            kind = SpanKind.INTERNAL
        elif session.spec.trace_context:
            parent = self._propagator.extract(session.spec.trace_context)
        else:
            parent = Context()
        return tracer.start_span(genai.session_span_name(session), parent, kind)

    def _end_attempt(
        self,
        session: Session,
        traced: _Trace,
        error: UpstreamError | ev.Error | None,
        *,
        with_session: bool = False,
    ) -> None:
        """The upstream request under way is over: its span ends with its outcome, and the
        client metrics count it. ``with_session``: it ended with the session (Stop, a bug),
        whose error or Stop is its own."""
        duration = time.monotonic() - traced.attempt_started
        count, first, last = session.clock.since(traced.attempt_mark)
        to_first = None if first is None else first - traced.attempt_started
        end = genai.attempt_end_attributes(session, error, to_first)
        if with_session:
            failure = genai.session_error(session)
            if failure is not None:
                end["error.type"] = failure
            if session.cancel_reason is not None:
                end["sluice.cancel_reason"] = session.cancel_reason
        span = traced.attempt
        if span is not None:
            if span.is_recording():
                span.set_attributes(traced.attempt_attributes | end)
                if "error.type" in end:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
        if self._metrics is not None:
            per_chunk = None
            if first is not None and last is not None and count > 1:
                per_chunk = (last - first) / (count - 1)
            self._metrics.attempt(traced.attempt_attributes, end, duration, to_first, per_chunk)
        traced.attempt = None
        traced.attempt_attributes = {}

    # -- the end --------------------------------------------------------------------------------

    def force_flush(self) -> None:
        """Export what is buffered now (blocking: call it off the event loop)."""
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()

    def shutdown(self) -> None:
        """Export what is left and stop the exporters (blocking)."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()

    async def close(self) -> None:
        """``shutdown`` in a thread: the exporters may wait on the network (a failed export
        is logged by the SDK, never raised)."""
        await asyncio.to_thread(self.shutdown)


class _Metrics:
    """The GenAI histograms, each recorded once per session or upstream request."""

    def __init__(self, meter: Meter) -> None:
        def histogram(
            name: str, unit: str, description: str, buckets: tuple[float, ...]
        ) -> Histogram:
            return meter.create_histogram(
                name, unit, description, explicit_bucket_boundaries_advisory=buckets
            )

        self.request_duration = histogram(
            genai.SERVER_REQUEST_DURATION,
            "s",
            "Sessions served, from the request to the stream's end",
            genai.DURATION_BUCKETS,
        )
        self.time_to_first_token = histogram(
            genai.SERVER_TIME_TO_FIRST_TOKEN,
            "s",
            "From a session's request to its first content delta",
            genai.FIRST_TOKEN_BUCKETS,
        )
        self.time_per_output_token = histogram(
            genai.SERVER_TIME_PER_OUTPUT_TOKEN,
            "s",
            "A session's time per output token after the first",
            genai.PER_TOKEN_BUCKETS,
        )
        self.operation_duration = histogram(
            genai.CLIENT_OPERATION_DURATION,
            "s",
            "Requests to providers, from sending to the stream's end or the refusal",
            genai.DURATION_BUCKETS,
        )
        self.token_usage = histogram(
            genai.CLIENT_TOKEN_USAGE,
            "{token}",
            "Tokens of each request to a provider, by gen_ai.token.type",
            genai.TOKEN_BUCKETS,
        )
        self.time_to_first_chunk = histogram(
            genai.CLIENT_TIME_TO_FIRST_CHUNK,
            "s",
            "From sending a request to a provider to its first content chunk",
            genai.DURATION_BUCKETS,
        )
        self.time_per_output_chunk = histogram(
            genai.CLIENT_TIME_PER_OUTPUT_CHUNK,
            "s",
            "Between a provider's content chunks after the first, per request",
            genai.DURATION_BUCKETS,
        )

    def session(self, session: Session) -> None:
        attributes = genai.server_metric_attributes(session)
        clock = session.clock
        if clock.ended is not None:
            self.request_duration.record(clock.ended - clock.started, attributes)
        if clock.first_event is not None:
            self.time_to_first_token.record(clock.first_event - clock.started, attributes)
        per_token, _rate = clock.pace(session.output_tokens())
        if per_token is not None:
            self.time_per_output_token.record(per_token / 1000, attributes)

    def attempt(
        self,
        start: dict[str, Any],
        end: dict[str, Any],
        duration: float,
        to_first: float | None,
        per_chunk: float | None,
    ) -> None:
        attributes = genai.client_metric_attributes(start, end)
        self.operation_duration.record(duration, attributes)
        if "gen_ai.usage.input_tokens" in end:
            self.token_usage.record(
                end["gen_ai.usage.input_tokens"], attributes | {"gen_ai.token.type": "input"}
            )
            self.token_usage.record(
                end["gen_ai.usage.output_tokens"], attributes | {"gen_ai.token.type": "output"}
            )
        if to_first is not None:
            self.time_to_first_chunk.record(to_first, attributes)
        if per_chunk is not None:
            self.time_per_output_chunk.record(per_chunk, attributes)
