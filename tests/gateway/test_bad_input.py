"""Bad input gets a clear error in the endpoint's own format, the right status, a log line, and
no stack trace."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import GatewayUnderTest

MSG = [{"role": "user", "content": "hi"}]


def assert_openai_error(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert "Traceback" not in body["error"]["message"]


def assert_anthropic_error(body: dict[str, Any], kind: str) -> None:
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]


CASES = [
    # (name, raw body or JSON, status, openai code, anthropic type)
    (
        "malformed JSON",
        b'{"model": "sim/support", "messages": [',
        400,
        "invalid_request",
        "invalid_request_error",
    ),
    ("not an object", b"[1, 2]", 400, "invalid_request", "invalid_request_error"),
    ("empty body", b"", 400, "invalid_request", "invalid_request_error"),
    (
        "missing model",
        {"messages": MSG, "max_tokens": 5},
        400,
        "invalid_request",
        "invalid_request_error",
    ),
    (
        "model without provider",
        {"model": "support", "messages": MSG, "max_tokens": 5},
        404,
        "unknown_model",
        "not_found_error",
    ),
    (
        "unknown provider",
        {"model": "nope/support", "messages": MSG, "max_tokens": 5},
        404,
        "unknown_model",
        "not_found_error",
    ),
    (
        "provider without a key",
        {"model": "keyless/gpt", "messages": MSG, "max_tokens": 5},
        500,
        "provider_not_configured",
        "api_error",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "code", "kind"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_requests_get_errors_in_each_endpoint_format(
    gateway: GatewayUnderTest,
    caplog: pytest.LogCaptureFixture,
    name: str,
    body: Any,
    status: int,
    code: str,
    kind: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="sluice")
    for path in ("/v1/chat/completions", "/v1/messages", "/api/sessions"):
        kwargs: dict[str, Any] = (
            {"content": body, "headers": {"content-type": "application/json"}}
            if isinstance(body, bytes)
            else {"json": body}
        )
        response = await gateway.http.post(path, **kwargs)
        assert response.status_code == status, (path, response.text)
        if path == "/v1/chat/completions":
            assert_openai_error(response.json(), code)
        elif path == "/v1/messages":
            assert_anthropic_error(response.json(), kind)
        else:
            assert response.json()["error"]["type"] == code
    assert sum("request rejected" in r.getMessage() for r in caplog.records) == 3


async def test_the_missing_key_is_named_but_never_shown(
    gateway: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = await gateway.http.post(
        "/v1/chat/completions", json={"model": "keyless/gpt", "messages": MSG}
    )
    assert "SLUICE_NO_SUCH_KEY" in response.json()["error"]["message"]


async def test_a_body_over_the_limit_is_413(gateway: GatewayUnderTest) -> None:
    limit = gateway.gateway.settings.max_body_bytes
    big = {
        "model": "sim/support",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x" * (limit + 1)}],
    }
    response = await gateway.http.post("/v1/chat/completions", json=big)
    assert response.status_code == 413
    assert_openai_error(response.json(), "payload_too_large")
    response = await gateway.http.post("/v1/messages", json=big)
    assert response.status_code == 413
    assert_anthropic_error(response.json(), "request_too_large")


async def test_a_chunked_body_over_the_limit_is_413_too(gateway: GatewayUnderTest) -> None:
    limit = gateway.gateway.settings.max_body_bytes

    async def chunks():  # no content-length: the limit is enforced while reading
        yield b'{"model": "sim/support", "messages": [{"role": "user", "content": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}]}'

    response = await gateway.http.post(
        "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x", None]
)
async def test_a_state_change_that_is_not_json_is_415_in_each_endpoint_format(
    gateway: GatewayUnderTest, ctype: str | None
) -> None:
    """What a page on another site can send without a preflight (a form, a ``no-cors``
    fetch) is refused before it is read."""
    body = b'{"model": "sim/support", "max_tokens": 5, "messages": [], "prompt": "x"}'
    headers = {} if ctype is None else {"content-type": ctype}
    for path in ("/v1/chat/completions", "/v1/messages", "/api/sessions"):
        response = await gateway.http.post(path, content=body, headers=headers)
        assert response.status_code == 415, (path, response.text)
        if path == "/v1/chat/completions":
            assert_openai_error(response.json(), "unsupported_media_type")
        elif path == "/v1/messages":
            assert_anthropic_error(response.json(), "invalid_request_error")
        else:
            assert response.json()["error"]["type"] == "unsupported_media_type"
    assert (await gateway.http.get("/api/sessions")).json()["sessions"] == []


async def test_anthropic_requests_without_max_tokens_are_refused(
    gateway: GatewayUnderTest,
) -> None:
    response = await gateway.http.post(
        "/v1/messages", json={"model": "sim/support", "messages": MSG}
    )
    assert response.status_code == 400
    assert "max_tokens" in response.json()["error"]["message"]


async def test_unknown_sessions_are_404_in_native_format(gateway: GatewayUnderTest) -> None:
    for method, path in [
        ("GET", "/api/sessions/op-nope"),
        ("GET", "/api/sessions/op-nope/events"),
        ("POST", "/api/sessions/op-nope/cancel"),
    ]:
        response = await gateway.http.request(method, path)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "unknown_session"


async def test_a_bad_resume_position_is_400(gateway: GatewayUnderTest) -> None:
    response = await gateway.http.get("/api/sessions/op-x/events", headers={"last-event-id": "x"})
    assert response.status_code == 400


async def test_a_rejected_request_starts_no_session(gateway: GatewayUnderTest) -> None:
    await gateway.http.post("/v1/chat/completions", content=b"{")
    listing = (await gateway.http.get("/api/sessions")).json()
    assert listing["sessions"] == []


async def test_a_non_ascii_digit_resume_position_is_400_not_500(gateway: GatewayUnderTest) -> None:
    response = await gateway.http.get("/api/sessions/op-x/events?after=²")
    assert response.status_code == 400


async def test_a_store_that_fails_under_a_read_is_a_json_error_not_a_traceback(
    gateway: GatewayUnderTest,
) -> None:
    await gateway.gateway.store.close()  # every read now fails with StoreError
    for path in ("/api/sessions", "/api/sessions/op-000000000000"):
        response = await gateway.http.get(path)
        assert response.status_code == 500, path
        assert response.json()["error"]["type"] == "store_error"
        assert "Traceback" not in response.text


HOSTED = {"model": "simmsg/support", "input": "hi", "tools": [{"type": "file_search"}]}
RESPONSES_CASES = [
    # (name, raw body or JSON, status, code)
    ("malformed JSON", b'{"model": "sim/support", "input": [', 400, "invalid_request"),
    ("not an object", b"[1, 2]", 400, "invalid_request"),
    ("empty body", b"", 400, "invalid_request"),
    ("missing model", {"input": "hi"}, 400, "invalid_request"),
    ("missing input", {"model": "simchat/support"}, 400, "invalid_request"),
    ("input of no message", {"model": "simchat/support", "input": []}, 400, "invalid_request"),
    ("model without provider", {"model": "support", "input": "hi"}, 404, "unknown_model"),
    ("unknown provider", {"model": "nope/support", "input": "hi"}, 404, "unknown_model"),
    ("keyless", {"model": "keyless/gpt", "input": "hi"}, 500, "provider_not_configured"),
    ("a hosted tool, translated", HOSTED, 400, "invalid_request"),
    ("over the limit", {"model": "sim/x", "input": "x" * (1 << 20)}, 413, "payload_too_large"),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "code"), RESPONSES_CASES, ids=[c[0] for c in RESPONSES_CASES]
)
async def test_bad_responses_requests_get_openai_errors_and_start_nothing(
    gateway: GatewayUnderTest,
    caplog: pytest.LogCaptureFixture,
    name: str,
    body: Any,
    status: int,
    code: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="sluice")
    kwargs: dict[str, Any] = (
        {"content": body, "headers": {"content-type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body}
    )
    response = await gateway.http.post("/v1/responses", **kwargs)
    assert response.status_code == status, response.text
    assert_openai_error(response.json(), code)
    assert sum("request rejected" in r.getMessage() for r in caplog.records) == 1
    assert (await gateway.http.get("/api/sessions")).json()["sessions"] == []
