"""The registry of wire formats: each format Sluice speaks, as one ``WireFormat``, by name.

Everything else reads a format's parts from here: the sessions their adapter, the router its
request builder, URL path and authentication, the configuration the provider kinds and their
defaults, the gateway its client endpoints, parsers, encoders and error bodies. A format's
parts are written in its own modules (``openai_chat``, ``anthropic_messages``,
``openai_responses``, with the request side in ``requests``); the entries below bind each
into one object. A new format is a module with its parts and its ``WireFormat``, and one
line in ``_BUILTIN``; ``tests/wire/test_format_contract.py`` covers it from then on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from sluice.turn import TurnRequest
from sluice.wire.anthropic_messages import MessagesStreamAdapter, MessagesStreamEncoder
from sluice.wire.base import JSONDict, ProviderKind, StreamEncoder, WireFormat
from sluice.wire.gemini import GEMINI
from sluice.wire.models import (
    anthropic_model,
    anthropic_model_list,
    openai_model,
    openai_model_list,
)
from sluice.wire.openai_chat import ChatStreamAdapter, ChatStreamEncoder
from sluice.wire.openai_responses import ResponsesStreamAdapter, ResponsesStreamEncoder
from sluice.wire.requests import (
    anthropic_error_body,
    build_chat_request,
    build_messages_request,
    build_responses_request,
    forward_chat_request,
    forward_request,
    openai_error_body,
    parse_chat_request,
    parse_messages_request,
    parse_responses_request,
    render_chat_response,
    render_messages_response,
    render_responses_response,
)

__all__ = [
    "ANTHROPIC",
    "CHAT",
    "GEMINI",
    "MESSAGES",
    "OPENAI",
    "RESPONSES",
    "WireFormat",
    "all",
    "by_sdk_header",
    "for_path",
    "get",
    "kinds",
    "names",
    "of_kind",
    "register",
]

OPENAI = ProviderKind("openai", "https://api.openai.com/v1", "OPENAI_API_KEY")
ANTHROPIC = ProviderKind("anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY")

#: the Messages API version Sluice speaks (sent upstream with every Messages request)
ANTHROPIC_VERSION = "2023-06-01"


def bearer_auth(key: str | None) -> dict[str, str]:
    """OpenAI's: ``Authorization: Bearer <key>``."""
    return {} if key is None else {"authorization": f"Bearer {key}"}


def anthropic_auth(key: str | None) -> dict[str, str]:
    """Anthropic's: ``x-api-key``, and the API version every request names."""
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if key is not None:
        headers["x-api-key"] = key
    return headers


def _openai_error(status: int, type_: str, message: str) -> JSONDict:
    return openai_error_body(status, message, type_)


def _anthropic_error(status: int, type_: str, message: str) -> JSONDict:
    return anthropic_error_body(status, message)


def _parse_chat(body: JSONDict, path: str) -> TurnRequest:
    return parse_chat_request(body)


def _parse_messages(body: JSONDict, path: str) -> TurnRequest:
    return parse_messages_request(body)


def _parse_responses(body: JSONDict, path: str) -> TurnRequest:
    # as a translated request: what only a Responses provider acts on is refused (the
    # gateway's endpoint parses a body bound for one unchanged leniently)
    return parse_responses_request(body)


def _chat_encoder(response_id: str, model: str, include_usage: bool) -> StreamEncoder:
    return ChatStreamEncoder(response_id, model, int(time.time()), include_usage)


def _messages_encoder(response_id: str, model: str, include_usage: bool) -> StreamEncoder:
    return MessagesStreamEncoder(response_id, model)


def _responses_encoder(response_id: str, model: str, include_usage: bool) -> StreamEncoder:
    return ResponsesStreamEncoder(response_id, model, created_at=int(time.time()))


CHAT = WireFormat(
    name="chat",
    kind=OPENAI,
    adapter=ChatStreamAdapter,
    build=build_chat_request,
    forward=forward_chat_request,
    path=lambda model, stream: "/chat/completions",
    auth=bearer_auth,
    error_body=_openai_error,
    endpoints=("/v1/chat/completions",),
    parse=_parse_chat,
    encoder=_chat_encoder,
    render=render_chat_response,
    id_prefix="chatcmpl-",
    list_models=openai_model_list,
    describe_model=openai_model,
)

MESSAGES = WireFormat(
    name="messages",
    kind=ANTHROPIC,
    adapter=MessagesStreamAdapter,
    build=build_messages_request,
    forward=forward_request,
    path=lambda model, stream: "/messages",
    auth=anthropic_auth,
    error_body=_anthropic_error,
    error_statuses=MappingProxyType({"overloaded": 529}),
    endpoints=("/v1/messages",),
    parse=_parse_messages,
    encoder=_messages_encoder,
    render=render_messages_response,
    id_prefix="msg_",
    sdk_header="anthropic-version",
    list_models=anthropic_model_list,
    describe_model=anthropic_model,
)

#: its client endpoint has a handler of its own in the gateway (``gateway.responses_endpoints``),
#: beside a response's own endpoints (``GET /v1/responses/{id}``, its ``/cancel``)
RESPONSES = WireFormat(
    name="responses",
    kind=OPENAI,
    adapter=ResponsesStreamAdapter,
    build=build_responses_request,
    forward=forward_request,
    path=lambda model, stream: "/responses",
    auth=bearer_auth,
    error_body=_openai_error,
    endpoints=("/v1/responses",),
    parse=_parse_responses,
    encoder=_responses_encoder,
    render=render_responses_response,
    id_prefix="resp_",
    drops=frozenset({"stop"}),
)

#: the formats Sluice ships with, in the order a provider kind prefers them
_BUILTIN = (CHAT, MESSAGES, RESPONSES, GEMINI)

_formats: dict[str, WireFormat] = {}


def register(fmt: WireFormat) -> WireFormat:
    """Add ``fmt`` (after those registered before it: a provider kind's first format is its
    primary). A name or a client endpoint path another format has is refused."""
    if fmt.name in _formats:
        raise ValueError(f"a wire format named {fmt.name!r} is registered already")
    for other in _formats.values():
        shared = set(fmt.endpoints) & set(other.endpoints)
        if shared:
            raise ValueError(f"{sorted(shared)} are served by the {other.name!r} format already")
    _formats[fmt.name] = fmt
    return fmt


def get(name: str) -> WireFormat:
    """The format named ``name``; ``KeyError`` for a name no format has."""
    return _formats[name]


def all() -> tuple[WireFormat, ...]:
    """Every registered format, in the order registered."""
    return tuple(_formats.values())


def names() -> tuple[str, ...]:
    return tuple(_formats)


def kinds() -> Mapping[str, ProviderKind]:
    """The provider kinds whose APIs the formats are, by name, in the formats' order."""
    found: dict[str, ProviderKind] = {}
    for fmt in _formats.values():
        found.setdefault(fmt.kind.name, fmt.kind)
    return found


def of_kind(kind: str) -> tuple[str, ...]:
    """The names of the formats a provider kind's API speaks, its primary first."""
    return tuple(fmt.name for fmt in _formats.values() if fmt.kind.name == kind)


def for_path(path: str) -> WireFormat | None:
    """The format whose client endpoint ``path`` is (or lies under); None for any other."""
    for fmt in _formats.values():
        if path.startswith(fmt.endpoints) and (fmt.claims is None or fmt.claims(path)):
            return fmt
    return None


def by_sdk_header(header_names: Iterable[str]) -> WireFormat | None:
    """The format whose SDKs' own header is among ``header_names`` (lowercase); None when
    no format's is."""
    names = set(header_names)
    for fmt in _formats.values():
        if fmt.sdk_header is not None and fmt.sdk_header in names:
            return fmt
    return None


for _fmt in _BUILTIN:
    register(_fmt)
