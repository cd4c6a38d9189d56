"""TLS to the upstream against a real local TLS server whose certificates the test makes: trusted
through the provider's CA bundle; refused for an unknown CA and for a wrong hostname; a client
certificate for mutual TLS. Every transport, and a session through the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.config import ProviderConfig
from sluice.errors import UpstreamConnectError, UpstreamTLSError
from sluice.transports.network import Network, NetworkOptions
from sluice.transports.select import make_transport
from sluice.upstream import Upstream
from tests.conftest import running_gateway, start
from tests.conftest import test_settings as settings_for
from tests.transport.servers import Certificates, chat_answer, origin, sse_answer, stranger_context

TRANSPORTS = ("fast", "httpx", "aiohttp")

BODY = b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"


@pytest.fixture
async def made() -> AsyncIterator[list[Upstream]]:
    upstreams: list[Upstream] = []
    yield upstreams
    for upstream in upstreams:
        await upstream.close()


def transport(made: list[Upstream], kind: str, **options: str) -> Upstream:
    network = Network(NetworkOptions(**options), environ={})
    upstream = make_transport(kind, network, 5.0, None)
    made.append(upstream)
    return upstream


async def body_of(upstream: Upstream, url: str) -> bytes:
    stream = await upstream.open(url, {}, b"{}")
    pieces: list[bytes] = []
    await stream.start(pieces.append)
    stream.release()
    return b"".join(pieces)


def localhost(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_server_signed_by_the_providers_ca_bundle_is_trusted(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    upstream = transport(made, kind, ca_bundle=str(certs.ca_bundle))
    async with origin(sse_answer, tls=certs.server_context()) as server:
        assert await body_of(upstream, localhost(server.url)) == BODY
        assert await body_of(upstream, server.url) == BODY  # by its IP address, in the cert


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_without_the_bundle_the_private_ca_is_refused(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    upstream = transport(made, kind)  # the system's CAs
    async with origin(sse_answer, tls=certs.server_context()) as server:
        with pytest.raises(UpstreamTLSError) as caught:
            await upstream.open(localhost(server.url), {}, b"{}")
    assert "certificate verify failed" in caught.value.message.lower()
    assert caught.value.type == "upstream_tls" and not caught.value.retryable
    assert not server.requests


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_certificate_from_an_unknown_ca_is_refused(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    upstream = transport(made, kind, ca_bundle=str(certs.ca_bundle))
    async with origin(sse_answer, tls=stranger_context()) as server:
        with pytest.raises(UpstreamTLSError) as caught:
            await upstream.open(localhost(server.url), {}, b"{}")
    assert "unable to get local issuer certificate" in caught.value.message.lower()
    assert "secret" not in caught.value.message
    assert not server.requests


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_certificate_for_another_hostname_is_refused(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    upstream = transport(made, kind, ca_bundle=str(certs.ca_bundle))
    async with origin(sse_answer, tls=certs.context_for("api.other.test")) as server:
        with pytest.raises(UpstreamTLSError) as caught:
            await upstream.open(localhost(server.url), {}, b"{}")
    assert "hostname mismatch" in caught.value.message.lower()
    assert not server.requests


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_client_certificate_is_presented_for_mutual_tls(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    upstream = transport(
        made,
        kind,
        ca_bundle=str(certs.ca_bundle),
        client_cert=str(certs.client_cert),
        client_key=str(certs.client_key),
    )
    async with origin(sse_answer, tls=certs.server_context(mutual=True)) as server:
        assert await body_of(upstream, localhost(server.url)) == BODY
    peer = server.peer_certs[0]
    assert peer is not None
    assert "gateway@sluice.test" in str(peer.get("subjectAltName"))


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_without_a_client_certificate_a_mutual_tls_server_is_not_reached(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    upstream = transport(made, kind, ca_bundle=str(certs.ca_bundle))
    async with origin(sse_answer, tls=certs.server_context(mutual=True)) as server:
        with pytest.raises(UpstreamConnectError):
            await upstream.open(localhost(server.url), {}, b"{}")
    assert not server.requests


def _provider(base_url: str, **network: str) -> ProviderConfig:
    provider = ProviderConfig("private", "sim", base_url=base_url, wire="chat")
    for key, value in network.items():
        setattr(provider, key, value)
    return provider


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_session_to_a_private_ca_streams_with_its_bundle(
    kind: str, certs: Certificates, tmp_path: Path
) -> None:
    async with origin(chat_answer("Hel", "lo"), tls=certs.server_context()) as server:
        settings = settings_for(tmp_path)
        base = localhost(server.url).split("/v1/")[0] + "/v1"
        settings.providers["private"] = _provider(
            base, transport=kind, ca_bundle=str(certs.ca_bundle)
        )
        async with running_gateway(settings) as gw:
            record = await gw.final_record(await start(gw, model="private/m"))
    assert record["state"] == "complete", record
    assert record["text"] == "Hello"


async def test_a_session_to_an_unknown_ca_errors_upstream_tls_without_retrying(
    certs: Certificates, tmp_path: Path
) -> None:
    async with origin(chat_answer("never"), tls=stranger_context()) as server:
        settings = settings_for(tmp_path)
        base = localhost(server.url).split("/v1/")[0] + "/v1"
        settings.providers["private"] = _provider(base, ca_bundle=str(certs.ca_bundle))
        async with running_gateway(settings) as gw:
            record = await gw.final_record(await start(gw, model="private/m"))
    assert record["state"] == "errored"
    assert record["error"]["type"] == "upstream_tls"
    assert record["error"]["retryable"] is False
    assert "certificate verify failed" in record["error"]["message"].lower()
    assert record["text"] == "" and record["attempts"] == 1
    assert not server.requests


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_ipv6_literal_is_checked_against_the_certificates_address(
    kind: str, certs: Certificates, made: list[Upstream]
) -> None:
    upstream = transport(made, kind, ca_bundle=str(certs.ca_bundle))
    async with origin(sse_answer, tls=certs.server_context(), host="::1") as server:
        assert server.url.startswith("https://[::1]:")
        assert await body_of(upstream, server.url) == BODY
    async with origin(sse_answer, tls=certs.context_for("localhost"), host="::1") as server:
        with pytest.raises(UpstreamTLSError):  # a certificate that does not name ::1
            await upstream.open(server.url, {}, b"{}")
