"""Where a connection to an origin goes, and with which TLS context: a provider's network
settings (``proxy``, ``ca_bundle``, ``client_cert``, ``client_key``) over the environment's
proxies (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``).

The environment is read the way curl, requests and httpx read it:

- ``https_proxy`` / ``HTTPS_PROXY`` for https origins, ``http_proxy`` / ``HTTP_PROXY`` for
  http ones, ``all_proxy`` / ``ALL_PROXY`` for both when the scheme's own is unset; the
  lower-case name wins when both are set;
- ``no_proxy`` / ``NO_PROXY``: a comma-separated list of ``*`` (no proxy at all), host names
  (``example.com`` matches it and its subdomains, as does ``.example.com``), IP addresses,
  CIDR blocks (``10.0.0.0/8``, ``fd00::/8``), each optionally with ``:port``.

Loopback origins (``localhost``, 127.0.0.0/8, ``::1``: the embedded simulator, a local model
server) never go through the environment's proxies. A provider's own ``proxy`` is used for it
whatever the environment says (``NO_PROXY`` and loopback included);
``proxy = ""`` sends it direct. Proxies are ``http://`` proxies (``user:pass@`` is sent as
``Proxy-Authorization: Basic``); the credentials never appear in a message or a ``repr``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class ProxyError(ValueError):
    """A proxy URL the gateway cannot use (its message names no credentials)."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where to connect, and the ``Proxy-Authorization`` value, if any."""

    host: str
    port: int
    username: str = ""
    password: str = ""

    @property
    def url(self) -> str:
        """The proxy's URL without credentials (safe to log)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        if not self.username and not self.password:
            return None
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"

    def __repr__(self) -> str:
        auth = ", with credentials" if self.authorization else ""
        return f"Proxy({self.url}{auth})"


def parse_proxy(url: str) -> Proxy:
    """``http://[user:pass@]host[:port]``; a URL without a scheme is taken as http (as curl
    does). The port defaults to 80."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ProxyError(f"invalid proxy URL: {_safe(text)}") from exc
    if parts.scheme != "http":
        raise ProxyError(
            f"proxy {_safe(text)}: only http:// proxies are supported (CONNECT for https "
            "upstreams goes through them)"
        )
    if not parts.hostname:
        raise ProxyError(f"proxy {_safe(text)} has no host")
    return Proxy(
        parts.hostname,
        port or 80,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
    )


def _safe(url: str) -> str:
    """A proxy URL for a message: the credentials replaced."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


@dataclass(frozen=True, slots=True)
class NetworkOptions:
    """One provider's network settings (``[providers.NAME]`` in the configuration)."""

    #: ``None``: from the environment; ``""``: direct; else the proxy's URL
    proxy: str | None = None
    #: the PEM file of the CAs trusted for the provider's TLS (instead of the system's)
    ca_bundle: str | None = None
    #: the client certificate (PEM) presented to the provider, and its key if apart
    client_cert: str | None = None
    client_key: str | None = None


class _NoProxy:
    """The ``NO_PROXY`` list, matched against an origin."""

    __slots__ = ("_all", "_hosts", "_networks")

    def __init__(self, value: str) -> None:
        self._all = False
        #: (host or suffix without a leading dot, port or None)
        self._hosts: list[tuple[str, int | None]] = []
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for raw in value.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self._all = True
                continue
            host, port = _split_port(entry)
            try:
                self._networks.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                self._hosts.append((host.lstrip(".").lstrip("*").lstrip("."), port))

    def matches(self, host: str, port: int) -> bool:
        if self._all:
            return True
        host = host.lower().rstrip(".")
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
                host
            )
        except ValueError:
            address = None
        if address is not None:
            for network, wanted in self._networks:
                if address in network and wanted in (None, port):
                    return True
        for name, wanted in self._hosts:
            if wanted not in (None, port):
                continue
            if host == name or host.endswith("." + name):
                return True
        return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1] or [::1]:8080
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port) if port.isdigit() else None
    return entry, None


def _loopback(host: str) -> bool:
    """``localhost``, ``*.localhost``, 127.0.0.0/8 and ::1: never through the environment's
    proxies (as Go's ``ProxyFromEnvironment`` does), so the embedded simulator and a local
    model server stay direct whatever ``NO_PROXY`` says."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name.lower()) or environ.get(name.upper()) or ""


class Network:
    """The proxies and TLS context of one transport: built once, asked per connection."""

    __slots__ = ("_context", "_explicit", "_no_proxy", "_proxies", "options")

    def __init__(
        self, options: NetworkOptions | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        self.options = options = options or NetworkOptions()
        env = os.environ if environ is None else environ
        self._explicit: Proxy | None = None
        self._proxies: dict[str, Proxy] = {}
        self._no_proxy = _NoProxy("")
        if options.proxy is not None:
            if options.proxy.strip():
                self._explicit = parse_proxy(options.proxy)
        else:
            fallback = _env(env, "all_proxy")
            for scheme in ("http", "https"):
                url = _env(env, f"{scheme}_proxy") or fallback
                if url:
                    self._proxies[scheme] = parse_proxy(url)
            self._no_proxy = _NoProxy(_env(env, "no_proxy"))
        self._context: ssl.SSLContext | None = None

    @property
    def direct(self) -> bool:
        """No origin goes through a proxy."""
        return self._explicit is None and not self._proxies

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy a connection to ``scheme://host:port`` goes through, or None for direct."""
        if self._explicit is not None:
            return self._explicit
        proxy = self._proxies.get(scheme)
        if proxy is None or _loopback(host) or self._no_proxy.matches(host, port):
            return None
        return proxy

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for https origins: the system's CAs, or the provider's bundle; the
        client certificate if one is set. Built on first use, then shared."""
        if self._context is None:
            self._context = tls_context(self.options)
        return self._context


def tls_context(options: NetworkOptions) -> ssl.SSLContext:
    """A client TLS context with hostname checks and certificate verification on."""
    context = ssl.create_default_context(cafile=options.ca_bundle)
    if options.client_cert:
        context.load_cert_chain(options.client_cert, options.client_key)
    return context
