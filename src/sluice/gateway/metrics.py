"""Prometheus metrics, updated once per session (never per chunk), served at ``/metrics``.

One process keeps its metrics in memory. The workers of ``sluice serve --workers N`` run in
prometheus_client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` (set by their supervisor,
``sluice.gateway.workers``) names a directory where each process writes its values to files
of its own, and ``/metrics``, answered by any worker, reads them all: counters and histograms
summed over every worker that has run (a dead worker's counts stay), gauges summed over the
workers alive (``livesum``; the supervisor removes a dead worker's). The names are the same;
counters have no ``_created`` series there.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from sluice.session.session import Session

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
_GAP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)
_SMOOTHNESS_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
_TPOT_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1)
#: distinct ``model`` label values kept; later models are counted as ``other`` (a client
#: names its model, and a label's every value is a series kept for ever)
MAX_MODELS = 200


#: prometheus_client's variable: where the processes of one gateway write their values
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: whether the values are several processes' (read from ``PROMETHEUS_MULTIPROC_DIR``)
        self.multiprocess = bool(os.environ.get(MULTIPROC_DIR_ENV))
        self._scraped = self.registry
        if self.multiprocess:
            self._scraped = CollectorRegistry()
            MultiProcessCollector(self._scraped)  # type: ignore[no-untyped-call]
        r = self.registry
        self.sessions = Counter(
            "sluice_sessions",
            "Sessions ended, by provider and final state",
            ["provider", "state"],
            registry=r,
        )
        self.errors = Counter(
            "sluice_session_errors",
            "Sessions that ended with an error, by error type",
            ["provider", "type"],
            registry=r,
        )
        self.live = Gauge(
            "sluice_live_sessions",
            "Sessions not yet final",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "sluice_rejected_requests",
            "Requests refused before a session started",
            ["endpoint", "type"],
            registry=r,
        )
        self.ttft = Histogram(
            "sluice_time_to_first_token_seconds",
            "Time to first token measured at the gateway",
            ["provider", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "sluice_time_per_output_token_seconds",
            "Each session's time per output token after the first",
            ["provider", "model"],
            buckets=_TPOT_BUCKETS,
            registry=r,
        )
        self.gap_p99 = Histogram(
            "sluice_inter_token_gap_p99_seconds",
            "Each session's p99 gap between tokens",
            ["provider"],
            buckets=_GAP_BUCKETS,
            registry=r,
        )
        self.smoothness = Histogram(
            "sluice_stream_smoothness",
            "Each stream's smoothness, 1/(1+cv) of its gaps between tokens (1: an even pace)",
            ["provider", "model"],
            buckets=_SMOOTHNESS_BUCKETS,
            registry=r,
        )
        self.stalls = Counter(
            "sluice_stream_stalls",
            "Gaps between tokens over 5 times the stream's mean gap and 0.1 s",
            ["provider", "model"],
            registry=r,
        )
        self.burst_tokens = Counter(
            "sluice_stream_burst_tokens",
            "Tokens that came within 2 ms of the one before (in a burst)",
            ["provider", "model"],
            registry=r,
        )
        self.gaps = Counter(
            "sluice_stream_gaps",
            "Gaps between tokens measured (the denominator of the burst share)",
            ["provider", "model"],
            registry=r,
        )
        self._models: set[str] = set()
        self.output_tokens = Counter(
            "sluice_output_tokens",
            "Output tokens (provider-reported or estimated)",
            ["provider", "source"],
            registry=r,
        )
        self.cost = Counter(
            "sluice_cost_usd",
            "Attributed cost in US dollars, where the price is known",
            ["provider", "model"],
            registry=r,
        )
        self.events = Counter(
            "sluice_relayed_events",
            "Normalised events produced from upstream streams",
            ["provider"],
            registry=r,
        )
        self.backpressure = Counter(
            "sluice_session_backpressure",
            "Sessions ended, by the share of their stream spent waiting for a slow reader "
            "(low under 10 %, medium under 50 %, high)",
            ["provider", "level"],
            registry=r,
        )
        self.held = Counter(
            "sluice_upstream_held_seconds",
            "Seconds upstream reads were paused for a reader too far behind",
            ["provider"],
            registry=r,
        )

        self.client_connections = Gauge(
            "sluice_client_connections",
            "Client connections open",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.client_connection_ceiling = Gauge(
            "sluice_client_connection_ceiling",
            "Client connections the server keeps open at most (server.max_connections)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.client_closed = Counter(
            "sluice_client_connections_closed",
            "Client connections closed or refused by the server's client bounds, by reason",
            ["reason"],
            registry=r,
        )

    def session_started(self, session: Session) -> None:
        self.live.inc()

    def session_finished(self, session: Session) -> None:
        provider = session.route.provider.name
        model = self._model_label(session.route.model)
        self.live.dec()
        self.sessions.labels(provider, session.state).inc()
        if session.error:
            self.errors.labels(provider, session.error["type"]).inc()
        telemetry = session.telemetry()
        if telemetry["ttft_ms"] is not None:
            self.ttft.labels(provider, model).observe(telemetry["ttft_ms"] / 1000)
        if telemetry["tpot_ms"] is not None:
            self.tpot.labels(provider, model).observe(telemetry["tpot_ms"] / 1000)
        if telemetry["gap_p99_ms"] is not None:
            self.gap_p99.labels(provider).observe(telemetry["gap_p99_ms"] / 1000)
        if telemetry.get("smoothness") is not None:
            self.smoothness.labels(provider, model).observe(telemetry["smoothness"])
            self.stalls.labels(provider, model).inc(telemetry["stalls"])
            gaps = len(session.clock.gaps)
            self.gaps.labels(provider, model).inc(gaps)
            self.burst_tokens.labels(provider, model).inc(round(telemetry["burst_share"] * gaps))
        self.output_tokens.labels(provider, session.usage_source).inc(session.output_tokens())
        total = (session.cost or {}).get("total")
        if total:
            self.cost.labels(provider, model).inc(total)
        self.events.labels(provider).inc(len(session.log))
        if not session.failed_before_stream:
            self.backpressure.labels(provider, telemetry["backpressure"]).inc()
            self.held.labels(provider).inc(telemetry["blocked_ms"] / 1000)

    def _model_label(self, model: str) -> str:
        models = self._models
        if model in models:
            return model
        if len(models) >= MAX_MODELS:
            return "other"
        models.add(model)
        return model

    def session_interrupted(self, provider: str, error: str) -> None:
        """A session a dead process left live, closed ``interrupted`` at start."""
        self.sessions.labels(provider, "interrupted").inc()
        self.errors.labels(provider, error).inc()

    def render(self) -> bytes:
        """The exposition: this process's, or every worker's together."""
        return generate_latest(self._scraped)
