"""The runbook page in a real browser: the repository's docs/runbook.md, whatever it holds."""

from __future__ import annotations

from playwright.async_api import Page

from sluice.gateway.markdown import page_headings
from sluice.gateway.pages import RUNBOOK_PATH
from tests.conftest import GatewayUnderTest


async def test_the_runbook_renders_with_anchored_headings_and_contents(
    gateway: GatewayUnderTest, page: Page
) -> None:
    text = RUNBOOK_PATH.read_text(encoding="utf-8")
    headings = page_headings(text)
    assert headings, "docs/runbook.md has no section headings"
    response = await page.goto(gateway.url + "/runbook")
    assert response is not None and response.status == 200
    assert await page.title() == "Runbook · Sluice"
    assert await page.get_attribute('.site-nav a[href="/runbook"]', "aria-current") == "page"

    shown = await page.eval_on_selector_all(
        ".runbook h2[id], .runbook h3[id]", "els => els.map(e => e.id)"
    )
    assert shown == [anchor for _level, _label, anchor in headings]
    toc = await page.locator(".runbook-toc a").all_text_contents()
    assert toc == [label for _level, label, _anchor in headings]

    # a contents link takes the reader to its section
    anchor = headings[-1][2]
    await page.click(f'.runbook-toc a[href="#{anchor}"]')
    assert await page.evaluate("() => location.hash") == f"#{anchor}"
    assert await page.locator(f"#{anchor}").is_visible()


async def test_the_runbooks_code_blocks_are_highlighted(
    gateway: GatewayUnderTest, page: Page
) -> None:
    text = RUNBOOK_PATH.read_text(encoding="utf-8")
    fences = text.count("\n```sh") + text.count("\n```bash") + text.count("\n```toml")
    await page.goto(gateway.url + "/runbook")
    blocks = page.locator(".runbook pre.code")
    assert await blocks.count() >= fences
    if fences:
        assert await page.locator(".runbook pre.code span").count() > 0
        # the highlighting stylesheet applies: some tokens are coloured unlike plain code
        coloured = await page.evaluate(
            """() => [...document.querySelectorAll(".runbook pre.code")].some(pre => {
                const plain = getComputedStyle(pre).color;
                return [...pre.querySelectorAll("span")]
                    .some(span => getComputedStyle(span).color !== plain);
            })"""
        )
        assert coloured
