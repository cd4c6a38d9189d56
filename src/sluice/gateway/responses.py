"""Responses every part of the gateway answers with: JSON, and errors in the format of the
API a path belongs to (a wire format's, such as OpenAI's or Anthropic's, or native)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from starlette.responses import Response

from sluice.wire import formats

JSON = "application/json"

#: the error format of the native API and the gateway's own paths
NATIVE = "native"
#: the wire format whose errors the rest of ``/v1/`` answers with (OpenAI's)
V1_DEFAULT = formats.CHAT.name


class JSONResponse(Response):
    media_type = JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(
    fmt: str, status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """An error in format ``fmt``: a wire format's name, or ``native``."""
    if fmt == NATIVE:
        body: dict[str, Any] = {"error": {"type": type_, "message": message}}
    else:
        body = formats.get(fmt).error_body(status, type_, message)
    return JSONResponse(body, status_code=status, headers=headers)


def format_of(path: str, header_names: Iterable[str] = ()) -> str:
    """The error format of the API ``path`` belongs to: the wire format whose client endpoint
    it is (``messages`` for ``/v1/messages``); on the rest of ``/v1/`` (``/v1/models``), the
    format whose SDKs' own header the request carries (``anthropic-version``: ``messages``),
    else ``chat``; outside ``/v1/``, ``native``."""
    fmt = formats.for_path(path)
    if fmt is not None:
        return fmt.name
    if not path.startswith("/v1/"):
        return NATIVE
    fmt = formats.by_sdk_header(header_names)
    return V1_DEFAULT if fmt is None else fmt.name
