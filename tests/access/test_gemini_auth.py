"""Client keys on the Gemini endpoints: sent as the google-genai SDK sends them
(``x-goog-api-key``) or in the query (``?key=``), refusals in Google's error shape."""

from __future__ import annotations

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.access.conftest import AuthGateway

BODY = {"contents": [{"role": "user", "parts": [{"text": "refunds?"}]}]}
STREAM = "/v1beta/models/sim/support:streamGenerateContent?alt=sse"


def sdk(ag: AuthGateway, key: str) -> genai.client.AsyncClient:
    options = types.HttpOptions(
        base_url=ag.gw.url,
        api_version="v1beta",
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=key, http_options=options).aio


async def test_the_sdks_x_goog_api_key_is_a_client_key(auth_gateway: AuthGateway) -> None:
    client = sdk(auth_gateway, auth_gateway.keys["own"])
    text = [
        chunk.text or ""
        async for chunk in await client.models.generate_content_stream(
            model="sim/support", contents="refunds?"
        )
    ]
    assert "".join(text)


async def test_a_key_in_the_query_is_a_client_key_on_gemini_paths_only(
    auth_gateway: AuthGateway,
) -> None:
    http = auth_gateway.gw.http
    key = auth_gateway.keys["own"]
    ok = await http.post(f"{STREAM}&key={key}", json=BODY, headers={"authorization": ""})
    assert ok.status_code == 200, ok.text
    chat = await http.post(
        f"/v1/chat/completions?key={key}",
        json={"model": "sim/support", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": ""},
    )
    assert chat.status_code == 401


async def test_refusals_are_in_googles_shape(auth_gateway: AuthGateway) -> None:
    http = auth_gateway.gw.http
    for headers in ({"authorization": ""}, {"x-goog-api-key": auth_gateway.keys["unknown"]}):
        refused = await http.post(STREAM, json=BODY, headers=headers)
        assert refused.status_code == 401
        error = refused.json()["error"]
        assert (error["code"], error["status"]) == (401, "UNAUTHENTICATED") and error["message"]


async def test_a_model_outside_the_keys_globs_is_refused_to_the_sdk(
    auth_gateway: AuthGateway,
) -> None:
    key = await auth_gateway.create("narrow", "client", models=["openai/*"])
    try:
        await sdk(auth_gateway, key).models.generate_content(model="sim/support", contents="hi")
    except genai_errors.ClientError as refused:
        assert (refused.code, refused.status) == (403, "PERMISSION_DENIED")
    else:
        raise AssertionError("a model outside the key's globs was served")
