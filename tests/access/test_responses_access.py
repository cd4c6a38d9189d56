"""The Responses endpoints under ``[auth] required``: a response is its tenant's; another
tenant's id answers as an unknown one does, on the response, its stream and its cancel; a
viewer may read but not Stop; refusals are OpenAI's error bodies."""

from __future__ import annotations

import httpx

from tests.access.conftest import AuthGateway

REQUEST = {"model": "simchat/support", "input": "Where is my order?"}
SLOW = {"x-sim-token-rate": "20", "x-sim-output-tokens": "400"}


def openai_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return str(error["code"])


async def test_a_response_is_its_tenants_and_only_they_or_an_operator_may_stop_it(
    auth_gateway: AuthGateway,
) -> None:
    ag = auth_gateway
    async with httpx.AsyncClient(base_url=ag.gw.url, timeout=30) as raw:
        done = await raw.post("/v1/responses", json=REQUEST, headers=ag.headers("own"))
        assert done.status_code == 200, done.text
        done_id = done.json()["id"]
        live = await raw.post(
            "/v1/responses", json=REQUEST | {"background": True}, headers=ag.headers("own") | SLOW
        )
        live_id = live.json()["id"]
        assert live.json()["status"] == "in_progress"

        for path in (f"/v1/responses/{done_id}", f"/v1/responses/{done_id}?stream=true"):
            assert openai_error(await raw.get(path, headers=ag.headers("other")), 404) == (
                "unknown_session"
            )
            assert (await raw.get(path, headers=ag.headers("own"))).status_code == 200
            assert (await raw.get(path, headers=ag.headers("viewer"))).status_code == 200
            assert openai_error(await raw.get(path), 401) == "unauthorized"

        cancel = f"/v1/responses/{live_id}/cancel"
        assert openai_error(await raw.post(cancel, headers=ag.headers("other")), 404) == (
            "unknown_session"
        )
        assert openai_error(await raw.post(cancel, headers=ag.headers("viewer")), 403) == (
            "forbidden"
        )
        stopped = await raw.post(cancel, headers=ag.headers("own"))
        assert stopped.status_code == 200 and stopped.json()["status"] == "cancelled"
        refused = await raw.post("/v1/responses", json=REQUEST, headers=ag.headers("viewer"))
        assert openai_error(refused, 403) == "forbidden"
