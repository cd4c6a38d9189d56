"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models a caller may use, as
``provider/model`` ids, in the shape its SDK expects: Anthropic's (paged) when the request
carries ``anthropic-version``, as the Anthropic SDK's do, else OpenAI's.

Which models a provider offers: its configured ``models`` list; else, for the simulator, its
scenarios; else the models the price table names exactly for it (``[prices]
"openai/gpt-4o"``, not a pattern). A provider that cannot be used (its key is not set, or the
simulator not mounted) is left out, and so is every model the caller's key may not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sluice.access.control import ANONYMOUS, Principal
from sluice.config import SIM_KIND, ProviderConfig, Settings
from sluice.errors import SluiceError, UnknownModel
from sluice.gateway.guard import PRINCIPAL
from sluice.gateway.responses import JSONResponse, error_response, format_of
from sluice.wire import formats
from sluice.wire.base import WireFormat

if TYPE_CHECKING:
    from sluice.gateway.app import Gateway


def listed_models(provider: ProviderConfig) -> list[str]:
    """The models a provider lists itself: its configured ``models``, or the simulator's
    scenarios; none for a provider that serves any model name."""
    if provider.models:
        return list(provider.models)
    if provider.kind == SIM_KIND:
        from sluice.sim.scenarios import Scenario

        return [scenario.value for scenario in Scenario]
    return []


def offered_models(settings: Settings, provider: ProviderConfig) -> list[str]:
    """``listed_models``, or else the models the price table names exactly for it."""
    listed = listed_models(provider)
    if listed:
        return listed
    prefix = f"{provider.name}/"
    return [
        ref.removeprefix(prefix)
        for ref in settings.prices
        if ref.startswith(prefix) and not any(c in ref for c in "*?[")
    ]


def usable(settings: Settings, provider: ProviderConfig) -> bool:
    if provider.needs_key and provider.api_key() is None:
        return False
    return provider.base_url is not None or (provider.kind == SIM_KIND and settings.embed_sim)


class ModelList:
    """The two endpoints, for one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def model_ids(self, principal: Principal) -> list[str]:
        settings, keys = self.gateway.settings, self.gateway.keys
        ids: dict[str, None] = {}  # in order, each once
        for provider in settings.providers.values():
            if not usable(settings, provider):
                continue
            for model in offered_models(settings, provider):
                ref = f"{provider.name}/{model}"
                if keys.allows_model(principal, ref):
                    ids[ref] = None
        return list(ids)

    async def list_models(self, request: Request) -> Response:
        fmt = _format(request)
        assert fmt.list_models is not None
        try:
            body = fmt.list_models(self.model_ids(_principal(request)), request.query_params)
        except SluiceError as exc:
            return error_response(fmt.name, exc.status, exc.type, exc.message)
        return JSONResponse(body)

    async def retrieve_model(self, request: Request) -> Response:
        fmt = _format(request)
        assert fmt.describe_model is not None
        model_id = request.path_params["model_id"]
        if model_id not in self.model_ids(_principal(request)):
            exc = UnknownModel(f"no model {model_id!r} here; GET /v1/models lists them")
            return error_response(fmt.name, exc.status, exc.type, exc.message)
        return JSONResponse(fmt.describe_model(model_id))


def _format(request: Request) -> WireFormat:
    """The wire format to answer in: the one whose SDK's header the request carries, when
    that format lists models; else OpenAI's."""
    fmt = formats.get(format_of(request.url.path, request.headers.keys()))
    return fmt if fmt.list_models is not None else formats.CHAT


def _principal(request: Request) -> Principal:
    principal: Principal = request.scope.get(PRINCIPAL, ANONYMOUS)
    return principal


def model_routes(gateway: Gateway) -> list[BaseRoute]:
    models = ModelList(gateway)
    return [
        Route("/v1/models", models.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", models.retrieve_model, methods=["GET"]),
    ]
