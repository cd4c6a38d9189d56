"""Model lists in OpenAI's and Anthropic's shapes, and Anthropic's paging."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.errors import BadRequest
from sluice.wire.models import (
    anthropic_model,
    anthropic_model_list,
    openai_model,
    openai_model_list,
)

IDS = [f"sim/model-{i}" for i in range(7)]


def test_openai_lists_every_model_at_once_owned_by_its_provider() -> None:
    body = openai_model_list(["sim/support", "openai/gpt-x"], {"limit": "1"})
    assert body == {
        "object": "list",
        "data": [
            {"id": "sim/support", "object": "model", "created": 0, "owned_by": "sim"},
            {"id": "openai/gpt-x", "object": "model", "created": 0, "owned_by": "openai"},
        ],
    }
    assert openai_model("sim/support") == body["data"][0]


def test_anthropics_first_page_is_twenty_models() -> None:
    ids = [f"sim/m{i:02}" for i in range(25)]
    body = anthropic_model_list(ids, {})
    assert [m["id"] for m in body["data"]] == ids[:20]
    assert (body["has_more"], body["first_id"], body["last_id"]) == (True, "sim/m00", "sim/m19")
    assert (
        body["data"][0]
        == anthropic_model("sim/m00")
        == {
            "type": "model",
            "id": "sim/m00",
            "display_name": "sim/m00",
            "created_at": "1970-01-01T00:00:00Z",
        }
    )


def test_an_empty_list_is_one_empty_page() -> None:
    assert anthropic_model_list([], {}) == {
        "data": [],
        "has_more": False,
        "first_id": None,
        "last_id": None,
    }


def pages_forward(limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    query = {"limit": str(limit)}
    while True:
        body = anthropic_model_list(IDS, query)
        pages.append([m["id"] for m in body["data"]])
        if not body["has_more"]:
            return pages
        query = {"limit": str(limit), "after_id": body["last_id"]}


@given(limit=st.integers(1, 9))
def test_paging_forward_by_after_id_gives_every_model_once_in_order(limit: int) -> None:
    pages = pages_forward(limit)
    assert [m for page in pages for m in page] == IDS
    assert all(len(page) == limit for page in pages[:-1]) and 0 < len(pages[-1]) <= limit


@given(limit=st.integers(1, 9))
def test_paging_back_by_before_id_gives_every_earlier_model_once_in_order(limit: int) -> None:
    pages: list[list[str]] = []
    query = {"limit": str(limit), "before_id": IDS[-1]}
    while True:
        body = anthropic_model_list(IDS, query)
        pages.insert(0, [m["id"] for m in body["data"]])
        if not body["has_more"]:
            break
        query = {"limit": str(limit), "before_id": body["first_id"]}
    assert [m for page in pages for m in page] == IDS[:-1]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "0"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "1001"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "ten"}, "limit must be an integer from 1 to 1000"),
        ({"after_id": IDS[0], "before_id": IDS[2]}, "not both"),
        ({"after_id": "sim/nope"}, "after_id 'sim/nope' is not a model in this list"),
        ({"before_id": "sim/nope"}, "before_id 'sim/nope' is not a model in this list"),
    ],
)
def test_a_query_anthropic_would_refuse_is_a_bad_request(
    query: dict[str, str], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        anthropic_model_list(IDS, query)
