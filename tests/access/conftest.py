"""A gateway with ``[auth] required`` on, and one key of each kind the tests need."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sluice.access.keys import make_key
from sluice.config import Settings
from tests.conftest import GatewayUnderTest, running_gateway, test_settings


@dataclass
class AuthGateway:
    gw: GatewayUnderTest
    #: credential name -> the raw key (or a made-up value)
    keys: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str, *, anthropic: bool = False) -> dict[str, str]:
        """The headers of ``who``'s requests: a bearer token (x-api-key for Anthropic's)."""
        raw = self.keys.get(who)
        if raw is None:
            return {}
        if who == "malformed":
            return {"authorization": raw}
        return {"x-api-key": raw} if anthropic else {"authorization": f"Bearer {raw}"}

    async def create(self, name: str, role: str = "client", **options: Any) -> str:
        raw, _ = await self.gw.gateway.keys.create(name, role, **options)
        self.keys[name] = raw
        return raw


def auth_settings(tmp_path: Path, **sim: Any) -> Settings:
    settings = test_settings(tmp_path, **sim)
    settings.auth.required = True
    return settings


@asynccontextmanager
async def auth_gateway_for(settings: Settings) -> AsyncIterator[AuthGateway]:
    async with running_gateway(settings) as gw:
        ag = AuthGateway(gw)
        await ag.create("operator", "operator")
        await ag.create("viewer", "viewer")
        await ag.create("own", "client")
        await ag.create("other", "client")
        await ag.create("revoked", "client")
        await gw.gateway.keys.revoke("revoked")
        raw, expired = make_key("expired", "client", expires_in=60)
        expired.expires_at = time.time() - 1
        await gw.gateway.keys.store.add(expired)
        await gw.gateway.keys.refresh()
        ag.keys["expired"] = raw
        ag.keys["unknown"] = "sk-sluice-" + "A" * 32
        ag.keys["malformed"] = "Basic dXNlcjpwYXNz"
        # the suite's own calls (records, the simulator's recorder) go as the operator
        gw.http.headers["authorization"] = f"Bearer {ag.keys['operator']}"
        yield ag


@pytest.fixture
async def auth_gateway(tmp_path: Path) -> AsyncIterator[AuthGateway]:
    async with auth_gateway_for(auth_settings(tmp_path)) as ag:
        yield ag


@pytest.fixture
def auth_gateway_with(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[AuthGateway]]:
    def make(**streams: Any) -> AbstractAsyncContextManager[AuthGateway]:
        settings = auth_settings(tmp_path)
        for key, value in streams.items():
            setattr(settings.streams, key, value)
        return auth_gateway_for(settings)

    return make
