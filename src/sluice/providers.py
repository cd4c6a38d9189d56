"""Routing a ``"<provider>/<model>"`` reference to an upstream: URL, wire format, headers, body.

Reads each wire format's URL path, authentication and request builder from the registry
(``sluice.wire.formats``); knows nothing of sessions or HTTP serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from sluice.config import SIM_KIND, ProviderConfig, Settings
from sluice.errors import ProviderNotConfigured, UnknownModel
from sluice.turn import TurnRequest
from sluice.wire import formats

#: Request headers a client may address to the simulator (scenario and pacing).
SIM_HEADER_PREFIX = "x-sim-"


@dataclass(slots=True)
class Route:
    provider: ProviderConfig
    model: str
    wire: str

    @property
    def label(self) -> str:
        """The model as clients write it: ``provider/model``."""
        return f"{self.provider.name}/{self.model}"


class Router:
    """Resolves model references against the configured providers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def resolve(self, model_ref: str, client_wire: str | None) -> Route:
        provider_name, sep, model = model_ref.partition("/")
        if not sep or not provider_name or not model:
            raise UnknownModel(
                f"model {model_ref!r} must be addressed as '<provider>/<model>' "
                f"(providers: {', '.join(sorted(self.settings.providers))})"
            )
        provider = self.settings.providers.get(provider_name)
        if provider is None:
            raise UnknownModel(
                f"unknown provider {provider_name!r} in model {model_ref!r} "
                f"(providers: {', '.join(sorted(self.settings.providers))})"
            )
        if provider.models and model not in provider.models:
            raise UnknownModel(f"provider {provider_name!r} does not serve model {model!r}")
        if provider.needs_key and provider.api_key() is None:
            raise ProviderNotConfigured(
                f"provider {provider_name!r} has no API key: set the environment variable "
                f"{provider.api_key_env}"
            )
        wires = provider.wires
        wire = client_wire if client_wire in wires else wires[0]
        return Route(provider, model, wire)

    def url(self, route: Route, self_url: str) -> str:
        """The upstream URL; ``self_url`` is this gateway's own origin, under which the
        embedded simulator is mounted at ``/sim``."""
        base = route.provider.base_url
        if base is None:
            if route.provider.kind != SIM_KIND or not self.settings.embed_sim:
                raise ProviderNotConfigured(f"provider {route.provider.name!r} has no base_url")
            base = self_url + "/sim/v1"
        return base.rstrip("/") + formats.get(route.wire).path(route.model, True)

    def headers(
        self, route: Route, session_id: str, client_headers: dict[str, str]
    ) -> dict[str, str]:
        provider = route.provider
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "x-sluice-session-id": session_id,
        }
        headers.update(formats.get(route.wire).auth(provider.api_key()))
        if provider.kind == SIM_KIND:
            for name, value in client_headers.items():
                if name.startswith(SIM_HEADER_PREFIX):
                    headers[name] = value
        headers.update(provider.headers)
        return headers


def build_body(route: Route, turn: TurnRequest, passthrough: dict[str, object] | None) -> bytes:
    """The upstream request body. A client speaking the upstream's own format has its body
    forwarded with only the model (and the usage request) changed, so fields Sluice does not
    model still reach the provider."""
    fmt = formats.get(route.wire)
    if passthrough is not None:
        return _exact(orjson.dumps(fmt.forward(passthrough, route.model)))
    return _exact(orjson.dumps(fmt.build(turn, route.model)))


def _exact(data: bytes) -> bytes:
    """A copy of exactly ``len(data)`` bytes. The session keeps its upstream body for as long
    as it lives (retries send it again), and a bytes object from ``orjson.dumps`` keeps a
    whole page of memory behind it however short it is: about 4 KB per open stream."""
    return bytes(memoryview(data))
