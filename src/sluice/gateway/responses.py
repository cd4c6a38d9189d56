"""Responses every part of the gateway answers with: JSON, and errors in the format of the
API a path belongs to (OpenAI-style, Anthropic-style or native)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from sluice.wire.requests import anthropic_error_body, openai_error_body

JSON = "application/json"


class JSONResponse(Response):
    media_type = JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(
    fmt: str, status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    if fmt == "anthropic":
        body = anthropic_error_body(status, message)
    elif fmt == "openai":
        body = openai_error_body(status, message, type_)
    else:
        body = {"error": {"type": type_, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def format_of(path: str) -> str:
    """The error format of the API ``path`` belongs to: ``anthropic`` for ``/v1/messages``,
    ``openai`` for the rest of ``/v1/``, else ``native``."""
    if path.startswith("/v1/"):
        return "anthropic" if path.startswith("/v1/messages") else "openai"
    return "native"
