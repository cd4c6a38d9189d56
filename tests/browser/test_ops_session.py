"""A session's page in a real browser: the answer as it streams (coalesced), the event timeline,
and the final telemetry summary."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser.test_ops_center import WAIT_MS, FeedFrames, start_sessions
from tests.conftest import running_gateway
from tests.conftest import test_settings as gateway_settings


async def test_the_page_streams_the_answer_then_shows_the_final_telemetry(
    tmp_path: Path, page: Page
) -> None:
    settings = gateway_settings(tmp_path, token_rate=25.0, ttft=0.2, output_tokens=80)
    async with running_gateway(settings) as gw:
        [session_id] = await start_sessions(gw, 1)
        frames = FeedFrames(page, f"/ops/sessions/{session_id}/feed")
        opened = time.monotonic()
        await page.goto(f"{gw.url}/ops/sessions/{session_id}")
        head = page.locator("#session")
        await expect(head).to_have_attribute("data-final", "false")

        answer = page.locator("#answer")
        await expect(answer).not_to_be_empty(timeout=WAIT_MS)
        await expect(page.locator("#timeline .tl-text")).to_have_count(1, timeout=WAIT_MS)

        await expect(head).to_have_attribute("data-state", "complete", timeout=WAIT_MS)
        await expect(head).to_have_attribute("data-final", "true")
        summary = page.locator("#summary")
        await expect(summary.locator('[data-summary="state"]')).to_have_text(
            "complete", timeout=WAIT_MS
        )
        following = time.monotonic() - opened
        record = await gw.final_record(session_id)

        # The answer, rendered once final, is the record's text (markdown made into HTML).
        heading = record["text"].splitlines()[0].lstrip("# ").strip()
        await expect(answer.locator("h2").first).to_have_text(heading)
        assert await answer.get_attribute("class") == "prose"

        # The summary shows the record's figures.
        usage, cost, telemetry = record["usage"], record["cost"], record["telemetry"]
        await expect(summary.locator('[data-summary="output_tokens"]')).to_have_text(
            str(usage["output_tokens"])
        )
        await expect(summary.locator('[data-summary="usage_source"]')).to_have_text("provider")
        await expect(summary.locator('[data-summary="cost"]')).to_have_text(f"${cost['total']:.6f}")
        await expect(summary.locator('[data-summary="cost_source"]')).to_have_text(cost["source"])
        await expect(summary.locator('[data-summary="attempts"]')).to_have_text("1")
        await expect(summary.locator('[data-summary="disconnect_policy"]')).to_have_text("cancel")
        for key in ("ttft", "tpot", "gap_p50", "gap_p99", "finalization"):
            await expect(summary.locator(f'[data-summary="{key}"]')).to_have_text(
                _ms_pattern(telemetry[f"{key}_ms"])
            )

        # The timeline summarises the stream: one entry for the whole run of answer text.
        timeline = page.locator("#timeline li")
        kinds = await timeline.evaluate_all("items => items.map(i => i.className)")
        assert kinds.count("tl tl-text") == 1
        assert kinds[-1] == "tl tl-finish"
        text_entry = page.locator("#timeline .tl-text .tl-label")
        await expect(text_entry).to_contain_text(f"\u00d7 {usage['output_tokens']}")

        # Coalesced: a message per flush window at most (plus the snapshot and the final one),
        # far fewer than the tokens streamed.
        window = gw.gateway.settings.ops.flush_interval
        kinds_sent = [m["type"] for m in frames.messages]
        assert kinds_sent[0] == "snapshot" and kinds_sent[-1] == "final"
        assert len(frames.messages) <= following / window + 3
        assert len(frames.messages) < usage["output_tokens"] / 2


def _ms_pattern(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


async def test_stop_on_the_session_page_ends_it_with_a_cancelled_summary(
    tmp_path: Path, page: Page
) -> None:
    settings = gateway_settings(tmp_path, token_rate=10.0, ttft=0.2, output_tokens=300)
    async with running_gateway(settings) as gw:
        [session_id] = await start_sessions(gw, 1)
        await page.goto(f"{gw.url}/ops/sessions/{session_id}")
        head = page.locator("#session")
        await expect(head).to_have_attribute("data-state", "streaming", timeout=WAIT_MS)
        await expect(page.locator("#answer")).not_to_be_empty(timeout=WAIT_MS)

        await head.locator('button[data-action="cancel"]').click()
        await expect(head).to_have_attribute("data-state", "cancelled", timeout=WAIT_MS)
        summary = page.locator("#summary")
        await expect(summary.locator('[data-summary="state"]')).to_have_text(
            "cancelled", timeout=WAIT_MS
        )
        await expect(summary.locator('[data-summary="usage_source"]')).to_have_text("estimated")
        await expect(page.locator("#timeline .tl-error")).to_contain_text("client_stop")
        record = await gw.final_record(session_id)
        assert record["state"] == "cancelled"

        await head.locator('button[data-action="retry"]').click()
        await expect(head).to_have_attribute("data-state", "streaming", timeout=WAIT_MS)
        await expect(page.locator("#timeline .tl-retry")).to_contain_text("attempt 2")
        assert (await gw.record(session_id))["attempts"] == 2


async def test_an_unknown_session_is_a_not_found_page(tmp_path: Path, page: Page) -> None:
    async with running_gateway(gateway_settings(tmp_path)) as gw:
        response = await page.goto(f"{gw.url}/ops/sessions/op-000000000000")
        assert response is not None and response.status == 404
        await expect(page.locator("h1")).to_have_text("No such session")


async def test_the_attempts_count_agrees_with_the_earlier_attempts_listed(
    tmp_path: Path, page: Page
) -> None:
    settings = gateway_settings(tmp_path, output_tokens=20)
    settings.streams.retry_base_delay = 0.01
    async with running_gateway(settings) as gw:
        # Refused twice before the stream (429, retried), then answered.
        response = await gw.http.post(
            "/api/sessions",
            json={"model": "sim/rate-limit", "prompt": "first line\nsecond line"},
            headers={"x-sim-fail-count": "2", "x-sim-retry-after": "0"},
        )
        session_id = str(response.json()["id"])
        record = await gw.final_record(session_id)
        assert record["state"] == "complete" and len(record["attempt_errors"]) == 2
        await page.goto(f"{gw.url}/ops/sessions/{session_id}")
        summary = page.locator("#summary")
        await expect(summary.locator('[data-summary="attempts"]')).to_have_text("3")
        await expect(summary.locator("ol.attempts li")).to_have_count(2)
        await expect(summary.locator("h3")).to_have_text("Earlier attempts (2)")
        # The page shows the whole prompt, every line of it.
        await expect(page.locator('[data-field="prompt"] .prompt-text')).to_have_text(
            "first line\nsecond line"
        )
