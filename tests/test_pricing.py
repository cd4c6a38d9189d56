"""Cost from final usage: configured table, the genai-prices library, and unknown prices."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sluice.config import Price
from sluice.events import Usage
from sluice.pricing import PriceBook

BOOK = PriceBook(
    {
        "sim/*": Price(input=0.15, output=0.60, cache_read=0.075),
        "local/llama": Price(input=0.0, output=0.0),
    }
)


def test_a_table_price_is_per_million_tokens() -> None:
    cost = BOOK.cost("sim", "sim", "support", Usage(120, 900), "provider")
    assert cost.total == pytest.approx(120 * 0.15e-6 + 900 * 0.60e-6)
    assert cost.source == "config" and cost.usage_source == "provider"


def test_cached_input_is_charged_at_the_cache_read_price() -> None:
    cost = BOOK.cost("sim", "sim", "x", Usage(1000, 0, cache_read_tokens=400), "provider")
    assert cost.input == pytest.approx(600 * 0.15e-6 + 400 * 0.075e-6)


def test_an_explicit_zero_price_is_zero_not_unknown() -> None:
    cost = BOOK.cost("local", "openai", "llama", Usage(10, 10), "provider")
    assert cost.total == 0.0 and cost.as_dict()["known"] is True


def test_the_library_prices_known_openai_and_anthropic_models() -> None:
    openai = BOOK.cost("openai", "openai", "gpt-4o-mini", Usage(1_000_000, 1_000_000), "provider")
    assert openai.total == pytest.approx(0.15 + 0.60)
    assert openai.source == "genai-prices"
    # under the 200k-token long-context tier: $3 per million input tokens
    claude = BOOK.cost("anthropic", "anthropic", "claude-sonnet-4-5", Usage(100_000, 0), "provider")
    assert claude.total == pytest.approx(0.30)


def test_a_model_without_a_price_is_unknown_never_zero() -> None:
    cost = BOOK.cost("openai", "openai", "no-such-model-xyz", Usage(10, 10), "provider")
    assert cost.total is None and cost.as_dict()["known"] is False
    other = BOOK.cost("vllm", "openai-compatible", "mistral", Usage(10, 10), "provider")
    assert other.total is None


def test_no_usage_means_no_cost() -> None:
    assert BOOK.cost("sim", "sim", "support", None, "estimated").total is None


def test_estimated_usage_is_labelled_as_such() -> None:
    cost = BOOK.cost("sim", "sim", "support", Usage(10, 10), "estimated")
    assert cost.as_dict()["usage_source"] == "estimated"


_WARM_PROBE = """
import asyncio, sys
from sluice.config import Settings
from sluice.gateway.app import create_app

async def main():
    app = create_app(Settings(store_url="memory://"))
    before = "genai_prices" in sys.modules
    async with app.router.lifespan_context(app):
        print(before, "genai_prices" in sys.modules)

asyncio.run(main())
"""


def test_the_gateway_loads_the_price_library_before_it_serves() -> None:
    """Not in the first session's cost: the import and the first lookup took 170 ms, a stall
    of every stream on the loop. A fresh interpreter, since this one may have loaded it."""
    out = subprocess.run(
        [sys.executable, "-c", _WARM_PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "True"]
