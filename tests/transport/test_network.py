"""Which proxy an origin takes: the environment's variables (both cases), ``NO_PROXY`` entries
(``*``, names and suffixes, IP addresses, CIDR blocks, ports), loopback, and a provider's own
``proxy``; and proxy URLs that cannot be used."""

from __future__ import annotations

import pytest

from sluice.transports.network import Network, NetworkOptions, ProxyError, parse_proxy


def proxy_of(environ: dict[str, str], url: tuple[str, str, int], proxy: str | None = None) -> str:
    chosen = Network(NetworkOptions(proxy=proxy), environ).proxy_for(*url)
    return "direct" if chosen is None else chosen.url


API = ("https", "api.example.com", 443)


def test_each_scheme_takes_its_own_variable_and_all_proxy_is_the_fallback() -> None:
    environ = {"HTTPS_PROXY": "http://tls:3128", "HTTP_PROXY": "http://plain:3128"}
    assert proxy_of(environ, API) == "http://tls:3128"
    assert proxy_of(environ, ("http", "api.example.com", 80)) == "http://plain:3128"
    assert proxy_of({"ALL_PROXY": "http://all:1"}, API) == "http://all:1"
    assert proxy_of({"HTTP_PROXY": "http://plain:3128"}, API) == "direct"
    assert proxy_of({}, API) == "direct"


def test_the_lower_case_variable_wins_and_a_proxy_without_scheme_is_http() -> None:
    environ = {"https_proxy": "lower:8080", "HTTPS_PROXY": "http://upper:8080"}
    assert proxy_of(environ, API) == "http://lower:8080"


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("*", "api.example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "example.com", 443, True),
        (".example.com", "api.example.com", 443, True),
        (".example.com", "example.com", 443, True),
        ("*.example.com", "api.example.com", 443, True),
        ("example.com", "notexample.com", 443, False),
        ("api.example.com", "example.com", 443, False),
        ("EXAMPLE.com", "Api.Example.COM", 443, True),
        ("other.test, example.com", "api.example.com", 443, True),
        ("example.com:8443", "api.example.com", 443, False),
        ("example.com:443", "api.example.com", 443, True),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("192.168.1.5", "192.168.1.5", 443, True),
        ("fd00::/8", "fd12::1", 443, True),
        ("[fd12::1]:443", "fd12::1", 443, True),
        ("", "api.example.com", 443, False),
    ],
)
def test_no_proxy_entries(no_proxy: str, host: str, port: int, bypassed: bool) -> None:
    environ = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy}
    expected = "direct" if bypassed else "http://proxy:3128"
    assert proxy_of(environ, ("https", host, port)) == expected


@pytest.mark.parametrize("host", ["localhost", "sim.localhost", "127.0.0.1", "127.5.5.5", "::1"])
def test_loopback_never_takes_the_environments_proxy(host: str) -> None:
    assert proxy_of({"HTTPS_PROXY": "http://proxy:3128"}, ("https", host, 443)) == "direct"


def test_a_providers_proxy_overrides_the_environment_and_empty_means_direct() -> None:
    environ = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "*"}
    assert proxy_of(environ, API, proxy="http://own:2") == "http://own:2"
    assert proxy_of(environ, ("https", "127.0.0.1", 443), proxy="http://own:2") == "http://own:2"
    assert proxy_of({"HTTPS_PROXY": "http://env:1"}, API, proxy="") == "direct"


def test_credentials_are_decoded_sent_as_basic_and_kept_out_of_repr() -> None:
    proxy = parse_proxy("http://us%40er:p%3Ass@proxy.corp:8080")
    assert (proxy.username, proxy.password) == ("us@er", "p:ss")
    assert proxy.authorization == "Basic dXNAZXI6cDpzcw=="  # base64 of "us@er:p:ss"
    assert proxy.url == "http://proxy.corp:8080"
    assert "p:ss" not in repr(proxy) and "us@er" not in repr(proxy)
    assert parse_proxy("http://[fd00::1]:3128").url == "http://[fd00::1]:3128"
    assert parse_proxy("proxy.corp").port == 80


@pytest.mark.parametrize(
    "url", ["socks5://user:hunter2@proxy:1080", "https://user:hunter2@proxy:443", "http://:1"]
)
def test_an_unusable_proxy_is_refused_without_its_credentials(url: str) -> None:
    with pytest.raises(ProxyError) as caught:
        parse_proxy(url)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ProxyError):
        Network(NetworkOptions(), {"HTTPS_PROXY": url})
