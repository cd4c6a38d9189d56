"""The operations center in a real browser: hundreds of live sessions on one coalesced feed,
filters, and the Stop and Retry buttons."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.async_api import Browser, Page, WebSocket, expect

from tests.conftest import GatewayUnderTest, running_gateway
from tests.conftest import test_settings as gateway_settings

WAIT_MS = 30_000  # the bound on every wait in the browser


class FeedFrames:
    """The text frames the page received on its operations feed socket, as they arrive."""

    def __init__(self, page: Page, path: str = "/ops/feed") -> None:
        self.messages: list[dict[str, Any]] = []
        self.sockets = 0
        self._path = path
        page.on("websocket", self._opened)

    def _opened(self, socket: WebSocket) -> None:
        if socket.url.endswith(self._path):
            self.sockets += 1
            socket.on("framereceived", self._frame)

    def _frame(self, payload: str | bytes) -> None:
        self.messages.append(orjson.loads(payload))


async def start_sessions(
    gw: GatewayUnderTest, count: int, model: str = "sim/support", **body: Any
) -> list[str]:
    async def one(i: int) -> str:
        response = await gw.http.post(
            "/api/sessions", json={"model": model, "prompt": f"question {i}", **body}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


@pytest.fixture
async def slow_gateway(tmp_path: Path) -> AsyncIterator[GatewayUnderTest]:
    """Sessions that stay live for tens of seconds: 15 tokens per second, 400 tokens."""
    settings = gateway_settings(tmp_path, token_rate=15.0, ttft=0.2, output_tokens=400)
    async with running_gateway(settings) as gw:
        yield gw
        await stop_all(gw)


async def stop_all(gw: GatewayUnderTest) -> None:
    """Stop every live session, so that the server shuts down without waiting on streams."""
    live = list(gw.gateway.sessions.live.values())
    for session in live:
        session.cancel("client_stop")
    async with asyncio.timeout(WAIT_MS / 1000):
        for session in live:
            await session.finished.wait()


async def test_two_hundred_live_sessions_arrive_in_one_update_per_flush_window(
    slow_gateway: GatewayUnderTest, page: Page
) -> None:
    gw = slow_gateway
    window = gw.gateway.settings.ops.flush_interval
    frames = FeedFrames(page)
    await page.goto(f"{gw.url}/ops")
    ids = await start_sessions(gw, 200, max_tokens=400)

    rows = page.locator("#ops-rows tr[data-id]")
    await expect(rows).to_have_count(200, timeout=WAIT_MS)
    await expect(page.locator('#ops-rows tr[data-state="streaming"]')).to_have_count(
        200, timeout=WAIT_MS
    )
    no_ttft = page.locator('#ops-rows [data-field="ttft"]', has_text="\u2013")
    await expect(no_ttft).to_have_count(0, timeout=WAIT_MS)  # every first token has arrived
    sessions = [gw.gateway.sessions.live[i] for i in ids]
    await asyncio.sleep(2 * window)  # the first tokens' urgent flushes are behind us

    # Steady streaming: count the feed's messages and the tokens generated over an interval.
    received_before = len(frames.messages)
    tokens_before = sum(s.output_tokens() for s in sessions)
    started = time.monotonic()
    await asyncio.sleep(3.0)
    interval = time.monotonic() - started
    received = len(frames.messages) - received_before
    tokens = sum(s.output_tokens() for s in sessions) - tokens_before
    assert all(s.state == "streaming" for s in sessions), "every session live throughout"

    assert frames.sockets == 1
    assert received <= interval / window + 3, (received, interval, window)
    assert received >= 1, "the page is fed while sessions stream"
    assert tokens > 20 * received, (tokens, received)
    seqs = [m["seq"] for m in frames.messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no message missed or doubled"

    # The page shows every session with what the gateway knows of it.
    assert await page.locator('[data-total="live"]').text_content() == "200"
    shown = await page.eval_on_selector_all(
        "#ops-rows tr[data-id]", "rows => rows.map(r => r.dataset.id)"
    )
    assert sorted(shown) == sorted(ids)
    first = page.locator(f'#ops-rows tr[data-id="{ids[0]}"]')
    await expect(first.locator('[data-field="provider"]')).to_have_text("sim")
    await expect(first.locator('[data-field="tokens"]')).to_contain_text("/ 400")
    points = await first.locator('[data-field="spark"]').get_attribute("points")
    assert points is not None and len(points.split()) >= 10, points


async def test_stop_and_retry_buttons_cancel_and_recover_a_session(
    tmp_path: Path, page: Page
) -> None:
    settings = gateway_settings(tmp_path, token_rate=10.0, ttft=0.2, output_tokens=40)
    async with running_gateway(settings) as gw:
        await page.goto(f"{gw.url}/ops")
        [target, other] = await start_sessions(gw, 2)
        row = page.locator(f'#ops-rows tr[data-id="{target}"]')
        await expect(row).to_have_attribute("data-state", "streaming", timeout=WAIT_MS)

        await row.locator('button[data-action="cancel"]').click()
        await expect(row).to_have_attribute("data-state", "cancelled", timeout=WAIT_MS)
        await expect(row.locator('[data-field="reason"]')).to_have_text("client_stop")
        record = await gw.record(target)
        assert record["state"] == "cancelled"
        assert record["cancel_reason"] == "client_stop"
        stopped = await gw.sim_request(target)
        assert stopped["client_disconnected"] is True

        retry = row.locator('button[data-action="retry"]')
        await expect(retry).to_be_enabled()
        await retry.click()
        await expect(row).to_have_attribute("data-state", "complete", timeout=WAIT_MS)
        record = await gw.final_record(target)
        assert record["state"] == "complete"
        assert record["attempts"] == 2
        assert len(await gw.sim_requests(target)) == 2
        await expect(row.locator('[data-field="cost"]')).to_have_text(
            f"${record['cost']['total']:.6f}"
        )

        # The other session was left alone.
        assert (await gw.final_record(other))["attempts"] == 1


async def test_filters_show_the_sessions_of_one_state_or_provider(
    tmp_path: Path, page: Page
) -> None:
    settings = gateway_settings(tmp_path, output_tokens=30)
    async with running_gateway(settings) as gw:
        complete = await start_sessions(gw, 2)
        errored = await start_sessions(gw, 1, model="sim/error-mid-stream")
        other = await start_sessions(gw, 1, model="simchat/support")
        for session_id in complete + errored + other:
            await gw.final_record(session_id)
        await page.goto(f"{gw.url}/ops")
        visible = page.locator("#ops-rows tr[data-id]:visible")
        await expect(visible).to_have_count(4, timeout=WAIT_MS)

        await page.select_option("#filter-state", "errored")
        await expect(visible).to_have_count(1)
        await expect(visible.first).to_have_attribute("data-id", errored[0])
        await expect(visible.first.locator('[data-field="reason"]')).not_to_be_empty()
        await expect(page.locator("#ops-count")).to_have_text("1 of 4 sessions")

        await page.select_option("#filter-state", "")
        await page.select_option("#filter-provider", "simchat")
        await expect(visible).to_have_count(1)
        await expect(visible.first).to_have_attribute("data-id", other[0])

        await page.select_option("#filter-provider", "sim")
        await page.select_option("#filter-state", "complete")
        await expect(visible).to_have_count(2)
        assert sorted(
            await page.eval_on_selector_all(
                "#ops-rows tr[data-id]:not([hidden])", "rows => rows.map(r => r.dataset.id)"
            )
        ) == sorted(complete)
        totals = page.locator('[data-total="error_rate"]')
        await expect(totals).to_have_text("25.0 %")


#: a prompt whose first line is longer than its column, and that has more lines
LONG_PROMPT = (
    "Our nightly deploy to the production cluster in eu-west fails with 'permission denied' "
    "on the release step since Tuesday's change to the service account roles. How do I fix it?"
    "\nThe log of the failing job follows.\n$ example-cli release --env production"
)


async def test_the_table_fits_1280_by_800_with_every_button_in_view(
    tmp_path: Path, browser: Browser
) -> None:
    settings = gateway_settings(tmp_path, token_rate=10.0, ttft=0.2, output_tokens=400)
    async with running_gateway(settings) as gw:
        # Rows of every kind, the widest texts each column can get.
        errored = await start_sessions(gw, 1, model="sim/error-mid-stream")
        other = await start_sessions(gw, 1, model="simchat/parallel-tools")
        for session_id in errored + other:
            await gw.final_record(session_id)
        live = await start_sessions(gw, 3, max_tokens=400)
        response = await gw.http.post(
            "/api/sessions", json={"model": "sim/support", "prompt": LONG_PROMPT}
        )
        long_one = str(response.json()["id"])
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = await context.new_page()
            await page.goto(f"{gw.url}/ops")
            rows = page.locator("#ops-rows tr[data-id]")
            await expect(rows).to_have_count(6, timeout=WAIT_MS)
            row = page.locator(f'#ops-rows tr[data-id="{live[0]}"]')
            await expect(row).to_have_attribute("data-state", "streaming", timeout=WAIT_MS)
            await gw.http.post(f"/api/sessions/{live[1]}/cancel")
            cancelled = page.locator(f'#ops-rows tr[data-id="{live[1]}"]')
            await expect(cancelled).to_have_attribute("data-state", "cancelled", timeout=WAIT_MS)

            # No sideways scroll, for the page or the table.
            widths = await page.evaluate(
                """() => ({
                    page: document.documentElement.scrollWidth,
                    table: document.getElementById("ops-table").scrollWidth,
                    card: document.querySelector(".ops-table-card").clientWidth,
                })"""
            )
            assert widths["page"] <= 1280, widths
            assert widths["table"] <= widths["card"], widths

            # Every button of every row lies inside the table's card, in full, and is the
            # element found at its centre (nothing covers or clips it).
            card = await page.locator(".ops-table-card").bounding_box()
            assert card is not None
            buttons = page.locator("#ops-rows tr[data-id] button[data-action]")
            assert await buttons.count() == 12
            for index in range(12):
                button = buttons.nth(index)
                box = await button.bounding_box()
                assert box is not None
                assert (
                    card["x"] <= box["x"] and box["x"] + box["width"] <= card["x"] + card["width"]
                ), (index, box, card)
                assert box["x"] + box["width"] <= 1280 and box["y"] >= 0
                found = await button.evaluate(
                    """b => {
                        const r = b.getBoundingClientRect();
                        const x = r.x + r.width / 2, y = r.y + r.height / 2;
                        return document.elementFromPoint(x, y) === b;
                    }"""
                )
                assert found or box["y"] + box["height"] > 800, index  # below the fold is fine

            # Every column is there, with its header in view.
            headers = page.locator("#ops-table thead th")
            for index in range(await headers.count()):
                box = await headers.nth(index).bounding_box()
                assert box is not None and box["width"] > 40
                assert box["x"] + box["width"] <= card["x"] + card["width"] + 1

            # The prompt column: the first line, cut to the column, whole in the title.
            prompt = page.locator(f'#ops-rows tr[data-id="{long_one}"] [data-field="prompt"]')
            first_line = LONG_PROMPT.splitlines()[0]
            title = await prompt.get_attribute("title")
            assert title is not None and first_line.startswith(title.rstrip("\u2026")[:100])
            clipped = await prompt.evaluate("td => td.scrollWidth > td.clientWidth")
            assert clipped  # cut by the column, with an ellipsis, not wrapping the row
            await expect(
                page.locator(f'#ops-rows tr[data-id="{live[0]}"] [data-field="prompt"]')
            ).to_have_text("question 0")
        finally:
            await context.close()
            await stop_all(gw)


async def test_the_count_says_one_session_in_the_singular(tmp_path: Path, page: Page) -> None:
    async with running_gateway(gateway_settings(tmp_path, output_tokens=20)) as gw:
        await page.goto(f"{gw.url}/ops")
        await expect(page.locator("#ops-count")).to_have_text("0 sessions")
        [session_id] = await start_sessions(gw, 1)
        await expect(page.locator("#ops-count")).to_have_text("1 session", timeout=WAIT_MS)
        await gw.final_record(session_id)
        await start_sessions(gw, 1)
        await expect(page.locator("#ops-count")).to_have_text("2 sessions", timeout=WAIT_MS)
        await page.select_option("#filter-state", "errored")
        await expect(page.locator("#ops-count")).to_have_text("0 of 2 sessions")


async def test_the_sessions_shown_are_those_the_records_hold_across_restarts(
    tmp_path: Path, page: Page
) -> None:
    settings = gateway_settings(tmp_path, output_tokens=20)
    async with running_gateway(settings) as first:  # an earlier run of the gateway
        earlier = await start_sessions(first, 2)
        for session_id in earlier:
            await first.final_record(session_id)
    async with running_gateway(settings) as gw:
        [now] = await start_sessions(gw, 1)
        await gw.final_record(now)
        records = (await gw.http.get("/api/sessions")).json()["sessions"]
        assert len(records) == 3
        await page.goto(f"{gw.url}/ops")
        shown = page.locator("#ops-rows tr[data-id]")
        await expect(shown).to_have_count(3, timeout=WAIT_MS)
        await expect(page.locator("#ops-count")).to_have_text("3 sessions")
        ids = await shown.evaluate_all("rows => rows.map(r => r.dataset.id)")
        assert sorted(ids) == sorted(r["id"] for r in records)
        old = page.locator(f'#ops-rows tr[data-id="{earlier[0]}"]')
        await expect(old).to_have_attribute("data-state", "complete")
        await expect(old.locator('[data-field="prompt"]')).to_have_text("question 0")
        await expect(old.locator('[data-field="tokens"]')).to_have_text("20")


async def test_smoothness_by_provider_and_model_tells_steady_from_bursty(
    tmp_path: Path, page: Page
) -> None:
    settings = gateway_settings(tmp_path, token_rate=100.0, jitter=0.1, output_tokens=40)
    async with running_gateway(settings) as gw:
        await page.goto(f"{gw.url}/ops")
        rows = page.locator("#ops-smoothness tr")
        await expect(rows).to_have_count(0)
        for model in ("sim/support", "sim/bursty"):
            response = await gw.http.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.status_code == 200, response.text
        # smoothest first: the steady stream, then the bursty one, each with its figures
        await expect(rows).to_have_count(2, timeout=WAIT_MS)
        steady, bursty = [
            [await cell.text_content() for cell in await row.locator("td").all()]
            for row in await rows.all()
        ]
        assert steady[:2] == ["sim / support", "1"] and bursty[:2] == ["sim / bursty", "1"]
        # (bounds that hold on a busy machine: a late write may join two steady tokens)
        assert float(steady[2] or 0) > float(bursty[2] or 1)
        assert int((steady[3] or "100%").rstrip("%")) < 50 < int((bursty[3] or "0%").rstrip("%"))
    # a new page of a gateway on the same store shows the recorded streams' figures too
    async with running_gateway(settings) as gw:
        await page.goto(f"{gw.url}/ops")
        await expect(page.locator("#ops-smoothness tr")).to_have_count(2, timeout=WAIT_MS)
