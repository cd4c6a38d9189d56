"""The per-provider transport settings in the configuration, and the upstream the gateway builds
from them: the fast client alone when no provider sets one, else a router by ``base_url``."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.config import ConfigError, load_settings
from sluice.gateway.upstreams import build_upstream
from sluice.transports.aiohttp_client import AiohttpUpstream
from sluice.transports.httpx_client import HttpxUpstream
from sluice.transports.select import TransportRouter
from sluice.upstream import UpstreamClient
from tests.transport.servers import Certificates


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sluice.toml"
    path.write_text(text)
    return path


def test_the_settings_are_read_with_their_defaults(tmp_path: Path, certs: Certificates) -> None:
    path = write(
        tmp_path,
        f"""
[providers.corp]
kind = "openai"
base_url = "https://llm.corp.test/v1"
transport = "httpx"
proxy = "http://user:pw@proxy.corp.test:3128"
ca_bundle = "{certs.ca_bundle}"
client_cert = "{certs.client_cert}"
client_key = "{certs.client_key}"
""",
    )
    settings = load_settings(path)
    corp = settings.providers["corp"]
    assert (corp.transport, corp.proxy) == ("httpx", "http://user:pw@proxy.corp.test:3128")
    assert (corp.ca_bundle, corp.client_cert, corp.client_key) == (
        str(certs.ca_bundle),
        str(certs.client_cert),
        str(certs.client_key),
    )
    openai = settings.providers["openai"]
    assert openai.transport == "fast" and openai.proxy is None and openai.ca_bundle is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('transport = "curl"', "transport must be one of fast, httpx, aiohttp"),
        ("transport = 2", "transport must be a string"),
        ('proxy = "socks5://user:hunter2@p:1080"', "only http:// proxies"),
        ('ca_bundle = "/no/such/ca.pem"', "no such file"),
        ('client_key = "{cert}"', "client_key needs client_cert"),
    ],
)
def test_impossible_transport_settings_are_refused_with_a_reason(
    tmp_path: Path, certs: Certificates, text: str, message: str
) -> None:
    setting = text.replace("{cert}", str(certs.client_key))
    path = write(
        tmp_path, f'[providers.x]\nkind = "openai"\nbase_url = "https://x.test"\n{setting}'
    )
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(path)
    assert "hunter2" not in str(caught.value)


def test_network_settings_need_a_base_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        load_settings(write(tmp_path, '[providers.s]\nkind = "sim"\ntransport = "httpx"'))


def test_a_ca_bundle_that_is_not_pem_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    path = write(
        tmp_path,
        f'[providers.x]\nkind = "openai"\nbase_url = "https://x.test"\n'
        f'ca_bundle = "{tmp_path / "bad.pem"}"',
    )
    with pytest.raises(ConfigError, match=r"providers\.x: the CA bundle"):
        build_upstream(load_settings(path), environ={})


def test_without_settings_the_upstream_is_the_fast_client_alone() -> None:
    assert type(build_upstream(load_settings(None), environ={})) is UpstreamClient


async def test_each_provider_reaches_its_own_transport_by_base_url(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[providers.h2]
kind = "openai"
base_url = "https://h2.test/v1"
transport = "httpx"
[providers.h2mini]
kind = "openai"
base_url = "https://h2.test/v1/"
transport = "httpx"
[providers.old]
kind = "openai"
base_url = "https://old.test/v1"
transport = "aiohttp"
[providers.nested]
kind = "openai"
base_url = "https://h2.test/v1/deep"
proxy = ""
""",
    )
    upstream = build_upstream(load_settings(path), environ={})
    assert isinstance(upstream, TransportRouter)
    h2 = upstream.transport_for("https://h2.test/v1/chat/completions")
    assert isinstance(h2, HttpxUpstream)
    assert isinstance(upstream.transport_for("https://old.test/v1/messages"), AiohttpUpstream)
    nested = upstream.transport_for("https://h2.test/v1/deep/chat/completions")
    assert isinstance(nested, UpstreamClient) and nested is not upstream.default
    assert upstream.transport_for("https://h2.test/v10/chat") is upstream.default
    assert upstream.transport_for("https://api.openai.com/v1/chat") is upstream.default
    assert len({id(transport) for _, transport in upstream.routes}) == 3  # h2 and h2mini share
    await upstream.close()


def test_providers_sharing_a_base_url_must_agree(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[providers.a]\nkind = "openai"\nbase_url = "https://x.test/v1"\ntransport = "httpx"\n'
        '[providers.b]\nkind = "openai"\nbase_url = "https://x.test/v1"\ntransport = "aiohttp"\n',
    )
    with pytest.raises(ConfigError, match="share base_url"):
        build_upstream(load_settings(path), environ={})


def test_an_unusable_proxy_in_the_environment_stops_the_start() -> None:
    with pytest.raises(ConfigError, match="environment: proxy"):
        build_upstream(load_settings(None), environ={"HTTPS_PROXY": "socks5://p:1080"})
