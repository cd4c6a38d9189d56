"""The wire-format registry: the built-in formats, what the configuration and the router read
from it, and a format registered later reaching them without a change anywhere else."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from sluice.config import ConfigError, kind_wires, load_settings, provider_kinds
from sluice.providers import Router, build_body
from sluice.turn import Message, TextPart, TurnRequest
from sluice.wire import formats
from sluice.wire.base import JSONDict, ProviderKind, WireFormat

ACME = ProviderKind("acme", "https://api.acme.example/v2", "ACME_API_KEY")


def acme_format() -> WireFormat:
    """A format of a made-up provider: its own path, auth and body."""

    def build(turn: TurnRequest, model: str) -> JSONDict:
        return {"prompt": turn.prompt_text()}

    return replace(
        formats.CHAT,
        name="acme",
        kind=ACME,
        build=build,
        path=lambda model, stream: f"/engines/{model}:{'stream' if stream else 'once'}",
        auth=lambda key: {} if key is None else {"x-acme-key": key},
        endpoints=(),
    )


@pytest.fixture
def registered() -> Iterator[WireFormat]:
    """``acme`` registered for the test only."""
    saved = dict(formats._formats)
    try:
        yield formats.register(acme_format())
    finally:
        formats._formats.clear()
        formats._formats.update(saved)


def test_the_built_in_formats_are_registered_in_order() -> None:
    assert formats.names() == ("chat", "messages", "responses", "gemini")
    assert formats.all() == (formats.CHAT, formats.MESSAGES, formats.RESPONSES, formats.GEMINI)
    assert formats.get("messages") is formats.MESSAGES
    with pytest.raises(KeyError):
        formats.get("nope")


def test_provider_kinds_and_their_formats_come_from_the_registry() -> None:
    assert provider_kinds() == ("openai", "anthropic", "gemini", "sim")
    assert kind_wires("openai") == ("chat", "responses")
    assert kind_wires("anthropic") == ("messages",)
    assert kind_wires("gemini") == ("gemini",)
    assert kind_wires("sim") == ("chat", "messages", "responses", "gemini")


def test_a_name_or_an_endpoint_is_registered_once(registered: WireFormat) -> None:
    with pytest.raises(ValueError, match="named 'acme'"):
        formats.register(registered)
    with pytest.raises(ValueError, match="/v1/messages"):
        formats.register(replace(registered, name="other", endpoints=("/v1/messages",)))


def test_a_path_belongs_to_the_format_whose_endpoint_it_starts_with() -> None:
    assert formats.for_path("/v1/chat/completions") is formats.CHAT
    assert formats.for_path("/v1/messages") is formats.MESSAGES
    assert formats.for_path("/v1/messages/count_tokens") is formats.MESSAGES
    assert formats.for_path("/v1/models") is None
    assert formats.for_path("/v1/models/sim/x:generateContent") is formats.GEMINI
    assert formats.for_path("/v1beta/models/x:streamGenerateContent") is formats.GEMINI
    assert formats.for_path("/api/sessions") is None


def test_a_registered_format_is_a_provider_kind_with_its_defaults(
    registered: WireFormat, tmp_path: Path
) -> None:
    assert provider_kinds() == ("openai", "anthropic", "gemini", "acme", "sim")
    assert kind_wires("sim")[-1] == "acme"
    path = tmp_path / "sluice.toml"
    path.write_text('[providers.mine]\nkind = "acme"\n')
    settings = load_settings(path)
    mine = settings.providers["mine"]
    assert (mine.base_url, mine.api_key_env, mine.wires) == (
        "https://api.acme.example/v2",
        "ACME_API_KEY",
        ("acme",),
    )
    assert settings.providers["acme"].kind == "acme"  # a default provider of the kind
    path.write_text('[providers.mine]\nkind = "acme"\nwire = "chat"\n')
    with pytest.raises(ConfigError, match="must be one of acme for acme"):
        load_settings(path)


def test_the_router_reads_the_path_auth_and_body_of_a_registered_format(
    registered: WireFormat, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_API_KEY", "acme-test-key-not-real")
    path = tmp_path / "sluice.toml"
    path.write_text('[providers.mine]\nkind = "acme"\nheaders = { "x-team" = "blue" }\n')
    router = Router(load_settings(path))
    route = router.resolve("mine/rocket-1", "chat")
    assert route.wire == "acme"
    assert router.url(route, "http://127.0.0.1:1") == (
        "https://api.acme.example/v2/engines/rocket-1:stream"
    )
    headers = router.headers(route, "op-1", {"x-sim-scenario": "errors"})
    assert headers["x-acme-key"] == "acme-test-key-not-real"
    assert headers["x-team"] == "blue" and headers["x-sluice-session-id"] == "op-1"
    assert "authorization" not in headers and "x-sim-scenario" not in headers
    turn = TurnRequest("mine/rocket-1", [Message("user", [TextPart("hello")])])
    assert orjson.loads(build_body(route, turn, None)) == {"prompt": "hello"}


@pytest.mark.parametrize(
    ("wire", "auth"),
    [
        ("chat", {"authorization": "Bearer sk-test-fake"}),
        ("responses", {"authorization": "Bearer sk-test-fake"}),
        ("messages", {"anthropic-version": "2023-06-01", "x-api-key": "sk-test-fake"}),
        ("gemini", {"x-goog-api-key": "sk-test-fake"}),
    ],
)
def test_upstream_headers_carry_the_formats_own_auth(
    wire: str, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_TEST_FAKE_KEY", "sk-test-fake")
    settings = load_settings(None)
    provider = settings.providers["sim"]
    provider.api_key_env = "SLUICE_TEST_FAKE_KEY"
    router = Router(settings)
    route = router.resolve("sim/support", wire)
    headers = router.headers(route, "op-1", {})
    assert {k: v for k, v in headers.items() if k in auth or "key" in k or "auth" in k} == auth
