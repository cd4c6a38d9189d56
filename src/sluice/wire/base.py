"""What a wire format is: the two stream contracts (adapter, encoder) and ``WireFormat``, the
one object that holds all of a format's parts (``sluice.wire.formats`` registers them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from sluice.events import Event
from sluice.turn import TurnRequest, TurnResult

JSONDict = dict[str, Any]


class StreamAdapter(Protocol):
    """A fold from one upstream stream's SSE frames to normalised events. No I/O.

    ``feed`` takes one decoded SSE event (its ``event`` field and its ``data`` text) and
    returns the normalised events it produces (often none, usually one). ``close`` is called
    once when the upstream body ends (cleanly or not) and returns what the end implies:
    open tool calls reported ``incomplete``, and an ``Error`` of type ``upstream_truncated``
    when the stream ended before its terminator. After a terminal event, later input is
    ignored.
    """

    #: true once the format's terminator was seen (``[DONE]``, ``message_stop``,
    #: ``response.completed``…) or a terminal event was produced.
    done: bool
    #: true when the frame just fed held only usage (Chat's ``choices: []`` chunk): a client
    #: that did not ask for usage must not receive it
    last_was_usage_only: bool
    #: secrets (as bytes) that no delta ``quick`` takes may hold in its text: a piece whose
    #: text holds one takes the general path, where the session redacts it
    keys: tuple[bytes, ...]

    def feed(self, event: str, data: str) -> list[Event]: ...

    def quick(self, piece: bytes) -> Event | None:
        """The hot path's shortcut past the SSE decoder and ``feed``: for a body piece that is
        one SSE event holding one text or reasoning delta and nothing else (most of a streamed
        answer), that delta; else None, and the piece takes the general path. Only for a
        piece that starts where the decoder is idle. Where it answers, it answers as the
        general path would, and leaves the adapter as ``feed`` would."""
        ...

    def close(self) -> list[Event]: ...


class StreamEncoder(Protocol):
    """Renders normalised events as one wire format's SSE bytes, for a client. No I/O."""

    def encode(self, event: Event) -> bytes: ...

    def close(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ProviderKind:
    """A provider whose own API speaks one or more wire formats (``kind`` in a provider's
    configuration): where it is reached unless configured otherwise, and the environment
    variable that holds its key unless ``api_key_env`` names another."""

    name: str
    base_url: str
    api_key_env: str


#: no error type answered with a status of the format's own
_NO_STATUSES: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class WireFormat:
    """One wire format, whole: what the gateway needs to read it from an upstream, to send a
    turn upstream in it, and (when clients may speak it) to serve it to a client. No I/O.

    Each part is the function the gateway calls, not a wrapper around it: ``adapter()`` and
    ``encoder(...)`` make the objects whose ``quick``/``feed`` and ``encode`` run per chunk.
    """

    #: the format's name: a provider's ``wire`` setting, a record's ``upstream_wire``
    name: str
    #: the provider kind whose API this is (the simulator speaks every format as well)
    kind: ProviderKind
    #: a new stream adapter (upstream SSE frames -> normalised events), one per response
    adapter: Callable[[], StreamAdapter]
    #: the upstream request body for a turn: ``build(turn, model)``
    build: Callable[[TurnRequest, str], JSONDict]
    #: the upstream body when the client speaks this format too (passthrough): the client's
    #: own body with the upstream's model (and whatever streaming needs) set, so that fields
    #: Sluice does not model still reach the provider: ``forward(body, model)``
    forward: Callable[[JSONDict, str], JSONDict]
    #: the upstream URL's path under the provider's base URL: ``path(model, stream)``
    path: Callable[[str, bool], str]
    #: the request headers that carry a provider key (and any the format always needs):
    #: ``auth(key)``, with ``None`` when the provider has no key
    auth: Callable[[str | None], dict[str, str]]
    #: an error body in this format: ``error_body(status, type, message)``, ``type`` being
    #: Sluice's stable error type (``rate_limited``, ``unknown_model``...)
    error_body: Callable[[int, str, str], JSONDict]
    #: Sluice error types answered with a status of the format's own rather than the
    #: gateway's usual one (Anthropic's 529 for ``overloaded``, where others get 503)
    error_statuses: Mapping[str, int] = field(default_factory=lambda: _NO_STATUSES)
    #: the ``TurnRequest`` fields the format has no word for (Responses has no stop
    #: sequences): its builder leaves them out, and its parser leaves them at their default
    drops: frozenset[str] = frozenset()

    # -- as a client format (all None / empty: the format is spoken only upstream) --------

    #: the client endpoints' paths; a request path that starts with one is this format's,
    #: its errors included. One that ends with a slash is a prefix: the paths under it that
    #: ``claims`` accepts are the format's endpoint (Gemini's name the model and a method:
    #: ``/v1beta/models/{model}:generateContent``)
    endpoints: tuple[str, ...] = ()
    #: which paths under a prefix endpoint are the format's (None: every one); the others
    #: (``GET /v1/models/{id}``, OpenAI's, under Gemini's ``/v1/models/``) belong elsewhere
    claims: Callable[[str], bool] | None = None
    #: a client's request body as a ``TurnRequest``, raising ``BadRequest``:
    #: ``parse(body, path)`` (the path, for a format that puts the model or the streaming
    #: choice in it)
    parse: Callable[[JSONDict, str], TurnRequest] | None = None
    #: a new client stream encoder: ``encoder(response_id, model, include_usage)``
    encoder: Callable[[str, str, bool], StreamEncoder] | None = None
    #: the whole (non-streamed) response body of a finished turn: ``render(result, model)``
    render: Callable[[TurnResult, str], JSONDict] | None = None
    #: what a response id starts with for this format's clients (``chatcmpl-``, ``msg_``)
    id_prefix: str = ""
    #: a request header only this format's SDKs send (``anthropic-version``): a request on a
    #: path that no format's endpoints hold (``/v1/models``) and that carries it is answered
    #: in this format, its errors included
    sdk_header: str | None = None
    #: the body of ``GET /v1/models`` in this format: ``list_models(ids, query)``, paged as
    #: the query asks where the format pages (``BadRequest`` for a query it refuses)
    list_models: Callable[[Sequence[str], Mapping[str, str]], JSONDict] | None = None
    #: the body of ``GET /v1/models/{id}``: ``describe_model(id)``
    describe_model: Callable[[str], JSONDict] | None = None

    @property
    def serves_clients(self) -> bool:
        return bool(self.endpoints) and None not in (self.parse, self.encoder, self.render)
