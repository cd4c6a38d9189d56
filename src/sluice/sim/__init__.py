"""The provider simulator: a stand-in for paid LLM APIs that speaks their wire formats exactly.

It serves OpenAI Chat Completions, OpenAI Responses, Anthropic Messages and Google Gemini,
streaming and not, plays a scenario chosen by the request's ``model`` (steady text, bursts, slow
reasoning, tool calls, an agent's turns, and failures of every kind), and records every request
for tests to inspect.
"""

from __future__ import annotations

from sluice.sim.app import SimApp, SimulatedReset, route_path
from sluice.sim.recorder import Recorder, RequestRecord
from sluice.sim.scenarios import ALIASES, FAILURES, Scenario
from sluice.sim.server import serve_sim, sim_server
from sluice.sim.settings import HEADERS, InvalidParameter, SimSettings, StreamParams


def create_sim_app(settings: SimSettings | None = None) -> SimApp:
    """A new simulator ASGI app; its ``recorder`` attribute holds the request records."""
    return SimApp(settings)


__all__ = [
    "ALIASES",
    "FAILURES",
    "HEADERS",
    "InvalidParameter",
    "Recorder",
    "RequestRecord",
    "Scenario",
    "SimApp",
    "SimSettings",
    "SimulatedReset",
    "StreamParams",
    "create_sim_app",
    "route_path",
    "serve_sim",
    "sim_server",
]
