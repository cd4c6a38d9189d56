"""The gateway's upstream, built from the providers' settings: one transport per distinct
``transport`` and network setting, chosen per request by the provider's ``base_url``.

When no provider sets one, the upstream is the gateway's own client alone (``UpstreamClient``,
with the environment's proxies if any): nothing is added to a request's way. Otherwise a
``TransportRouter`` sends each request to the transport of the provider whose ``base_url``
starts its URL, and every other URL (the embedded simulator's, a provider without settings)
to that default client. See docs/upstreams.md.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from sluice.config import ConfigError, ProviderConfig, Settings
from sluice.transports.network import Network, NetworkOptions, ProxyError
from sluice.transports.select import TransportRouter, make_transport
from sluice.upstream import Upstream, UpstreamClient


def network_options(provider: ProviderConfig) -> NetworkOptions:
    return NetworkOptions(
        proxy=provider.proxy,
        ca_bundle=provider.ca_bundle,
        client_cert=provider.client_cert,
        client_key=provider.client_key,
    )


def build_upstream(settings: Settings, environ: Mapping[str, str] | None = None) -> Upstream:
    """The upstream for ``settings``' providers; ``ConfigError`` for a proxy in the environment
    that cannot be used, or a CA bundle or client certificate that does not load."""
    streams = settings.streams
    connect, stall, max_body = (
        streams.connect_timeout,
        streams.stall_timeout,
        streams.max_stream_bytes,
    )
    from_env = _network(NetworkOptions(), environ, "environment")
    default = UpstreamClient(
        connect, stall, max_body=max_body, network=None if from_env.direct else from_env
    )
    transports: dict[tuple[str, NetworkOptions], Upstream] = {}
    routes: list[tuple[str, Upstream]] = []
    claimed: dict[str, tuple[str, tuple[str, NetworkOptions]]] = {}
    for provider in settings.providers.values():
        if not provider.sets_network or provider.base_url is None:
            continue
        key = (provider.transport, network_options(provider))
        prefix = provider.base_url.rstrip("/") + "/"
        other = claimed.get(prefix)
        if other is not None and other[1] != key:
            raise ConfigError(
                f"providers {other[0]} and {provider.name} share base_url {provider.base_url} "
                "but differ in transport or network settings"
            )
        claimed[prefix] = (provider.name, key)
        transport = transports.get(key)
        if transport is None:
            network = _network(key[1], environ, f"providers.{provider.name}")
            transports[key] = transport = make_transport(key[0], network, connect, stall, max_body)
        routes.append((prefix, transport))
    if not routes:
        return default
    return TransportRouter(default, routes)


def _network(options: NetworkOptions, environ: Mapping[str, str] | None, where: str) -> Network:
    try:
        network = Network(options, environ)
    except ProxyError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if options.ca_bundle or options.client_cert:
        try:
            network.ssl_context()  # loaded now: a bad file stops the start, not a request
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{where}: the CA bundle or client certificate: {exc}") from None
    return network
