"""Per-key limits through a real gateway: models, rpm, max-streams and budget, in each
endpoint's format, with ``Retry-After``; and the official SDKs raising their own errors."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.access.conftest import AuthGateway
from tests.conftest import LONG

CHAT = {"model": "sim/support", "messages": [{"role": "user", "content": "refunds?"}]}
NATIVE = {"model": "sim/support", "prompt": "refunds?"}


async def test_a_model_outside_the_allow_list_is_403_in_each_format(
    auth_gateway: AuthGateway,
) -> None:
    ag = auth_gateway
    raw = await ag.create("narrow", models=["sim/*"])
    bearer, x_api = {"authorization": f"Bearer {raw}"}, {"x-api-key": raw}
    async with httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as http:
        ok = await http.post("/v1/chat/completions", json=CHAT, headers=bearer)
        assert ok.status_code == 200
        other = {**CHAT, "model": "simchat/support"}
        chat = await http.post("/v1/chat/completions", json=other, headers=bearer)
        assert chat.status_code == 403 and chat.json()["error"]["type"] == "permission_error"
        messages = await http.post("/v1/messages", json={**other, "max_tokens": 20}, headers=x_api)
        assert messages.status_code == 403
        assert messages.json()["error"]["type"] == "permission_error"
        native = await http.post("/api/sessions", json={**NATIVE, **other}, headers=bearer)
        assert native.status_code == 403 and native.json()["error"]["type"] == "forbidden"


async def test_rpm_is_held_with_retry_after_and_other_keys_are_not_affected(
    auth_gateway: AuthGateway,
) -> None:
    ag = auth_gateway
    limited = {"authorization": f"Bearer {await ag.create('slow', rpm=3)}"}
    async with httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as http:
        for _ in range(3):
            assert (
                await http.post("/api/sessions", json=NATIVE, headers=limited)
            ).status_code == 201
        refused = await http.post("/v1/chat/completions", json=CHAT, headers=limited)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        other = await http.post("/api/sessions", json=NATIVE, headers=ag.headers("own"))
        assert other.status_code == 201


async def test_max_streams_holds_for_a_key_and_frees_when_a_stream_ends(
    auth_gateway: AuthGateway,
) -> None:
    ag = auth_gateway
    headers = {"authorization": f"Bearer {await ag.create('one', max_streams=1)}"}
    async with httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as http:
        first = await http.post(
            "/api/sessions",
            json={**NATIVE, "disconnect_policy": "drain"},
            headers={**headers, **LONG},
        )
        assert first.status_code == 201
        refused = await http.post("/api/sessions", json=NATIVE, headers=headers)
        assert refused.status_code == 429 and "retry-after" in refused.headers
        assert refused.json()["error"]["type"] == "rate_limited"
        ok = await http.post(f"/api/sessions/{first.json()['id']}/cancel", headers=headers)
        assert ok.status_code == 200
        again = await http.post("/api/sessions", json=NATIVE, headers=headers)
        assert again.status_code == 201


async def test_invented_keys_do_not_get_past_the_limits(auth_gateway: AuthGateway) -> None:
    """With auth on, a key the gateway does not know is refused before any limit counts."""
    ag = auth_gateway
    async with httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as http:
        for n in range(5):
            invented = {"authorization": f"Bearer sk-sluice-{str(n) * 32}"}
            response = await http.post("/api/sessions", json=NATIVE, headers=invented)
            assert response.status_code == 401
    assert not ag.gw.gateway.sessions.live and not ag.gw.gateway.sessions.recent


async def test_a_key_over_its_budget_is_refused_and_its_spend_is_its_sessions_costs(
    auth_gateway: AuthGateway,
) -> None:
    ag = auth_gateway
    headers = {"authorization": f"Bearer {await ag.create('small', budget=0.00005)}"}
    costs = []
    async with httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as http:
        refused = None
        for _ in range(20):
            response = await http.post("/v1/chat/completions", json=CHAT, headers=headers)
            if response.status_code == 429:
                refused = response
                break
            assert response.status_code == 200, response.text
            record = await ag.gw.final_record(response.headers["x-sluice-session-id"])
            assert record["api_key"] == "small" and record["tenant"] == "small"
            costs.append(record["cost"]["total"])
        assert refused is not None, "the budget never held"
        assert refused.json()["error"]["code"] == "budget_exceeded"
        assert "retry-after" in refused.headers
        key = (await http.get("/api/admin/keys/small", headers=ag.headers("operator"))).json()
    assert key["spend"] == pytest.approx(sum(costs))
    assert key["spend"] >= key["budget"] > sum(costs[:-1])
    assert key["spend_complete"] is True


async def test_a_session_at_an_unknown_price_is_counted_as_unknown(
    auth_gateway: AuthGateway,
) -> None:
    ag = auth_gateway
    headers = ag.headers("own")
    unpriced = {**CHAT, "model": "simchat/support"}  # the price table has sim/* only
    async with httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as http:
        response = await http.post("/v1/chat/completions", json=unpriced, headers=headers)
        assert response.status_code == 200
        record = await ag.gw.final_record(response.headers["x-sluice-session-id"])
        assert record["cost"]["total"] is None
        key = (await http.get("/api/admin/keys/own", headers=ag.headers("operator"))).json()
    assert key["unpriced_sessions"] == 1 and key["spend_complete"] is False


def _openai(ag: AuthGateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{ag.gw.url}/v1", api_key=key, max_retries=0)


def _anthropic(ag: AuthGateway, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=ag.gw.url, api_key=key, max_retries=0)


async def test_the_official_sdks_raise_their_own_error_types(auth_gateway: AuthGateway) -> None:
    ag = auth_gateway
    narrow = await ag.create("narrow", models=["simmsg/*"], rpm=2)
    messages: list[Any] = [{"role": "user", "content": "hi"}]

    async def chat(key: str, model: str = "simmsg/support") -> Any:
        async with _openai(ag, key) as client:
            return await client.chat.completions.create(model=model, messages=messages)

    async def message(key: str, model: str = "simmsg/support") -> Any:
        async with _anthropic(ag, key) as client:
            return await client.messages.create(model=model, max_tokens=20, messages=messages)

    for call in (chat, message):
        with pytest.raises((openai.AuthenticationError, anthropic.AuthenticationError)):
            await call(ag.keys["revoked"])
        with pytest.raises((openai.AuthenticationError, anthropic.AuthenticationError)):
            await call("sk-not-a-sluice-key")
        with pytest.raises((openai.PermissionDeniedError, anthropic.PermissionDeniedError)):
            await call(narrow, "sim/support")
    # two requests allowed a minute; the SDKs' third is theirs to retry
    assert (await chat(narrow)).choices[0].message.content
    assert (await message(narrow)).content[0].text
    with pytest.raises(openai.RateLimitError) as limited:
        await chat(narrow)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    with pytest.raises(anthropic.RateLimitError):
        await message(narrow)


async def test_a_key_revoked_while_the_gateway_runs_stops_working(
    auth_gateway: AuthGateway,
) -> None:
    ag = auth_gateway
    raw = await ag.create("soon-gone")
    headers = {"authorization": f"Bearer {raw}"}
    async with httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as http:
        assert (await http.get("/api/sessions", headers=headers)).status_code == 200
        revoke = await http.delete("/api/admin/keys/soon-gone", headers=ag.headers("operator"))
        assert revoke.status_code == 200 and revoke.json()["status"] == "revoked"
        assert (await http.get("/api/sessions", headers=headers)).status_code == 401
        await asyncio.sleep(0)


async def test_the_model_list_offers_a_key_only_the_models_it_may_use(
    auth_gateway: AuthGateway,
) -> None:
    ag = auth_gateway
    raw = await ag.create("picky", models=["sim/support", "simchat/*"])
    async with httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as http:
        picky = (await http.get("/api/models", headers={"authorization": f"Bearer {raw}"})).json()
        everything = (await http.get("/api/models", headers=ag.headers("own"))).json()
    offered = {m for p in picky["providers"] for m in p["models"]}
    assert "sim/support" in offered and all(
        m == "sim/support" or m.startswith("simchat/") for m in offered
    )
    assert {p["name"] for p in picky["providers"]} == {"sim", "simchat"}
    assert len({p["name"] for p in everything["providers"]}) > 2
