"""Model lists as each provider's API answers ``GET /v1/models``: OpenAI's (one list) and
Anthropic's (paged by ``limit``, ``after_id``, ``before_id``). No I/O.

Each takes the model ids the gateway offers (``provider/model``), in its order. Sluice does
not know when a provider made a model: the creation time is the epoch (``0``, or
``1970-01-01T00:00:00Z``), and the owner is the provider the id names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sluice.errors import BadRequest
from sluice.wire.base import JSONDict

#: Anthropic's page sizes: 20 unless asked, at most 1000
ANTHROPIC_PAGE = 20
ANTHROPIC_MAX_PAGE = 1000
_EPOCH = "1970-01-01T00:00:00Z"


def openai_model(model_id: str) -> JSONDict:
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": model_id.partition("/")[0],
    }


def openai_model_list(model_ids: Sequence[str], query: Mapping[str, str]) -> JSONDict:
    """Every model at once: OpenAI's list has no paging."""
    return {"object": "list", "data": [openai_model(m) for m in model_ids]}


def anthropic_model(model_id: str) -> JSONDict:
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id,
        "created_at": _EPOCH,
    }


def anthropic_model_list(model_ids: Sequence[str], query: Mapping[str, str]) -> JSONDict:
    """One page: the ``limit`` models after ``after_id``, or just before ``before_id``, or
    from the first; ``has_more`` says whether more lie beyond the page in that direction."""
    limit = _page_size(query.get("limit"))
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise BadRequest("give after_id or before_id, not both")
    if before is not None:
        end = _position(model_ids, before, "before_id")
        start = max(0, end - limit)
        page, has_more = model_ids[start:end], start > 0
    else:
        start = 0 if after is None else _position(model_ids, after, "after_id") + 1
        page, has_more = model_ids[start : start + limit], start + limit < len(model_ids)
    return {
        "data": [anthropic_model(m) for m in page],
        "has_more": has_more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }


def _page_size(raw: str | None) -> int:
    if raw is None:
        return ANTHROPIC_PAGE
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= ANTHROPIC_MAX_PAGE:
        raise BadRequest(f"limit must be an integer from 1 to {ANTHROPIC_MAX_PAGE}")
    return int(raw)


def _position(model_ids: Sequence[str], model_id: str, name: str) -> int:
    try:
        return list(model_ids).index(model_id)
    except ValueError:
        raise BadRequest(f"{name} {model_id!r} is not a model in this list") from None
