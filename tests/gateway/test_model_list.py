"""``GET /v1/models`` through the official SDKs: OpenAI's list and Anthropic's pages of the
configured models, each key seeing only the models it may use, refusals in each SDK's own
error format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from sluice.config import Price, ProviderConfig
from sluice.sim.scenarios import Scenario
from tests.conftest import GatewayUnderTest, running_gateway
from tests.conftest import test_settings as gateway_settings

#: the test gateway's simulator providers, in their configured order; its others cannot be
#: used (no key is set for them) and list nothing
SIM_PROVIDERS = ("sim", "simchat", "simmsg", "simresp", "simgem")
EXPECTED = [f"{p}/{s.value}" for p in SIM_PROVIDERS for s in Scenario]


def openai_client(gw: GatewayUnderTest, key: str = "sk-test-unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def anthropic_client(
    gw: GatewayUnderTest, key: str = "sk-ant-test-unused"
) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0)


async def test_the_openai_sdk_lists_the_configured_models(gateway: GatewayUnderTest) -> None:
    page = await openai_client(gateway).models.list()
    assert [m.id for m in page.data] == EXPECTED
    assert {(m.object, m.owned_by) for m in page.data if m.id.startswith("simmsg/")} == {
        ("model", "simmsg")
    }


async def test_the_openai_sdk_retrieves_one_model_and_is_told_of_an_unknown_one(
    gateway: GatewayUnderTest,
) -> None:
    client = openai_client(gateway)
    model = await client.models.retrieve("simchat/tools")
    assert (model.id, model.object, model.owned_by) == ("simchat/tools", "model", "simchat")
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("sim/no-such-scenario")
    assert caught.value.code == "unknown_model"
    assert "sim/no-such-scenario" in caught.value.message


async def test_the_anthropic_sdk_pages_through_the_configured_models(
    gateway: GatewayUnderTest,
) -> None:
    client = anthropic_client(gateway)
    seen = [m.id async for m in client.models.list()]  # pages of 20, after_id each time
    assert seen == EXPECTED
    first = await client.models.list(limit=5)
    assert [m.id for m in first.data] == EXPECTED[:5]
    assert (first.has_more, first.first_id, first.last_id) == (True, EXPECTED[0], EXPECTED[4])
    assert all(m.type == "model" and m.display_name == m.id for m in first.data)
    later = await client.models.list(limit=5, after_id=EXPECTED[4])
    assert [m.id for m in later.data] == EXPECTED[5:10]
    earlier = await client.models.list(limit=3, before_id=EXPECTED[4])
    assert [m.id for m in earlier.data] == EXPECTED[1:4] and earlier.has_more
    last = await client.models.list(limit=1000, after_id=EXPECTED[-3])
    assert [m.id for m in last.data] == EXPECTED[-2:] and last.has_more is False


async def test_the_anthropic_sdk_retrieves_one_model_and_is_told_of_an_unknown_one(
    gateway: GatewayUnderTest,
) -> None:
    client = anthropic_client(gateway)
    model = await client.models.retrieve("sim/support")
    assert (model.id, model.type, model.created_at.year) == ("sim/support", "model", 1970)
    with pytest.raises(anthropic.NotFoundError) as caught:
        await client.models.retrieve("sim/no-such-scenario")
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "no model 'sim/no-such-scenario' here; GET /v1/models lists them",
        },
    }


async def test_a_paging_query_anthropic_refuses_is_a_400_in_its_format(
    gateway: GatewayUnderTest,
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_client(gateway).models.list(limit=0)
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    response = await gateway.http.get(
        "/v1/models",
        params={"after_id": "sim/nope"},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    # without Anthropic's header the same query is OpenAI's, which has no paging to refuse
    assert (await gateway.http.get("/v1/models", params={"after_id": "sim/nope"})).json()[
        "object"
    ] == "list"


async def test_a_provider_without_a_list_offers_the_models_its_prices_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_TEST_PAID_KEY", "sk-test-paid-not-real")
    settings = gateway_settings(tmp_path)
    settings.providers = {
        "paid": ProviderConfig("paid", "openai", "http://127.0.0.1:9/v1", "SLUICE_TEST_PAID_KEY"),
        "listed": ProviderConfig(
            "listed",
            "anthropic",
            "http://127.0.0.1:9/v1",
            "SLUICE_TEST_PAID_KEY",
            models=["claude-x"],
        ),
        "keyless": ProviderConfig(
            "keyless", "openai", "http://127.0.0.1:9/v1", "SLUICE_NO_SUCH_KEY", models=["gpt-y"]
        ),
    }
    settings.prices.update(
        {
            "paid/gpt-x": Price(1.0, 2.0),
            "paid/gpt-*": Price(1.0, 2.0),  # a pattern names no model
            "listed/claude-z": Price(1.0, 2.0),  # the provider's own list wins
        }
    )
    async with running_gateway(settings) as gw:
        page = await openai_client(gw).models.list()
    assert [m.id for m in page.data] == ["paid/gpt-x", "listed/claude-x"]


# -- with keys ----------------------------------------------------------------------------


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[tuple[GatewayUnderTest, str, str]]:
    """A gateway with keys required: a key for ``simchat/*`` and ``sim/support`` only, and
    one for every model."""
    settings = gateway_settings(tmp_path)
    settings.auth.required = True
    async with running_gateway(settings) as gw:
        narrow, _ = await gw.gateway.keys.create(
            "narrow", "client", models=["simchat/*", "sim/support"]
        )
        wide, _ = await gw.gateway.keys.create("wide", "client")
        yield gw, narrow, wide


async def test_a_key_is_listed_only_the_models_it_may_use(
    keyed: tuple[GatewayUnderTest, str, str],
) -> None:
    gw, narrow, wide = keyed
    allowed = ["sim/support"] + [f"simchat/{s.value}" for s in Scenario]
    assert [m.id for m in (await openai_client(gw, narrow).models.list()).data] == allowed
    assert [m.id async for m in anthropic_client(gw, narrow).models.list()] == allowed
    assert [m.id for m in (await openai_client(gw, wide).models.list()).data] == EXPECTED
    with pytest.raises(openai.NotFoundError):
        await openai_client(gw, narrow).models.retrieve("simmsg/support")
    assert (await openai_client(gw, wide).models.retrieve("simmsg/support")).id == (
        "simmsg/support"
    )


async def test_without_a_key_each_sdk_is_refused_in_its_own_format(
    keyed: tuple[GatewayUnderTest, str, str],
) -> None:
    gw, _, _ = keyed
    with pytest.raises(openai.AuthenticationError) as openai_refusal:
        await openai_client(gw, "sk-sluice-" + "A" * 32).models.list()
    assert openai_refusal.value.body == {  # the SDK keeps the "error" object
        "message": "the API key is not known to this gateway",
        "type": "authentication_error",
        "param": None,
        "code": "unauthorized",
    }
    with pytest.raises(anthropic.AuthenticationError) as anthropic_refusal:
        await anthropic_client(gw, "sk-sluice-" + "A" * 32).models.list()
    assert anthropic_refusal.value.body == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "the API key is not known to this gateway",
        },
    }
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        bare = await http.get("/v1/models")
        anthropic_bare = await http.get(
            "/v1/models/sim/support", headers={"anthropic-version": "2023-06-01"}
        )
    assert bare.status_code == anthropic_bare.status_code == 401
    assert set(bare.json()["error"]) == {"message", "type", "param", "code"}
    assert anthropic_bare.json()["type"] == "error"
    assert anthropic_bare.json()["error"]["type"] == "authentication_error"
