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


async def test_the_code_blocks_wrap_so_every_comment_is_in_view_at_1280(
    gateway: GatewayUnderTest, page: Page
) -> None:
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.goto(gateway.url + "/runbook")
    blocks = page.locator(".runbook pre.code")
    assert await blocks.count() > 0
    overflowing = await page.evaluate(
        """() => [...document.querySelectorAll(".runbook pre.code")]
            .filter(pre => pre.scrollWidth > pre.clientWidth)
            .map(pre => pre.textContent.slice(0, 80))"""
    )
    assert overflowing == []
    # A long command with its "# →" comment: the comment is on the page, inside its block.
    arrow = page.locator(".runbook pre.code", has_text="# \u2192").first
    box = await arrow.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1280
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 1280
