"""Markdown to safe HTML: hostile model output stays inert; code renders while it streams."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.gateway.markdown import (
    highlight_css,
    page_headings,
    render_blocks,
    render_markdown,
    sanitize,
)

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 1">',
    '<a href="javascript:alert(1)">click</a>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](  javascript:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<javascript:alert(1)>",
    "![x](javascript:alert(1))",
    '![x](https://example.com/a.png" onerror="alert(1))',
    '<div style="position:fixed;inset:0">overlay</div>',
    '<p style="color:red" onclick="alert(1)">raw</p>',
    '<iframe src="https://example.com"></iframe>',
    "<svg><script>alert(1)</script></svg>",
    '<svg onload="alert(1)"></svg>',
    "<style>body { display: none }</style>",
    "<!-- comment --><b>bold</b>",
    '[link](https://example.com "title" onmouseover="alert(1)")',
    '<form action="https://evil.example"><input name=a></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
]

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr",
    "ul",
}  # fmt: skip


class Elements(HTMLParser):
    """Every element and attribute of an HTML fragment, as a browser would see them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def dangers(html: str) -> list[str]:
    """What in ``html`` could run, restyle the page or fetch something."""
    problems = []
    for tag, attrs in Elements(html).found:
        if tag not in ALLOWED_TAGS:
            problems.append(f"<{tag}>")
        for name, value in attrs.items():
            if name.startswith("on") or name in ("style", "src", "srcdoc", "action", "formaction"):
                problems.append(f"<{tag} {name}>")
            if name == "href" and value is not None:
                scheme = value.strip().split(":", 1)[0].lower() if ":" in value else ""
                if scheme and scheme not in ("http", "https", "mailto"):
                    problems.append(f"<{tag} href={value!r}>")
    return problems


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_renders_inert(text: str) -> None:
    for html in (render_markdown(text), "".join(render_blocks(text))):
        assert dangers(html) == [], html


def test_a_script_tag_stays_visible_text() -> None:
    html = render_markdown("before <script>window.__pwned = 1</script> after")
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html


def test_a_javascript_link_is_not_a_link() -> None:
    html = render_markdown("[x](javascript:alert(1)) and <javascript:alert(1)>")
    assert "<a " not in html


def test_safe_links_keep_their_target_and_get_rel() -> None:
    html = render_markdown("[docs](https://example.com/a?b=1) [mail](mailto:a@example.com)")
    assert 'href="https://example.com/a?b=1"' in html
    assert 'href="mailto:a@example.com"' in html
    assert html.count('rel="noopener noreferrer nofollow"') == 2


def test_images_become_links_the_browser_does_not_fetch() -> None:
    html = render_markdown('![a chart](https://example.com/chart.png "t")')
    assert "<img" not in html
    assert '<a href="https://example.com/chart.png"' in html
    assert "a chart" in html


def test_the_sanitiser_alone_strips_handlers_styles_and_scripts() -> None:
    html = sanitize(
        '<p style="color:red" onclick="x()">a<script>alert(1)</script>'
        '<a href="javascript:alert(1)">b</a><span class="k evil">c</span></p>'
    )
    assert html == '<p>a<a rel="noopener noreferrer nofollow">b</a><span class="k">c</span></p>'


def test_heading_ids_only_where_anchors_are_asked_for() -> None:
    assert "id=" not in render_markdown("## Hello world")
    html = render_markdown("## Hello world\n\n## Hello world", anchors=True)
    assert '<h2 id="hello-world">' in html
    assert '<h2 id="hello-world-1">' in html
    assert 'href="#hello-world"' in html


def test_headings_for_a_table_of_contents_match_the_rendered_ids() -> None:
    text = "# Title\n\n## Start, stop\n\n### `sluice serve`\n\n## Start, stop\n"
    headings = page_headings(text)
    assert headings == [
        (2, "Start, stop", "start-stop"),
        (3, "sluice serve", "sluice-serve"),
        (2, "Start, stop", "start-stop-1"),
    ]
    html = render_markdown(text, anchors=True)
    for _level, _label, anchor in headings:
        assert f'id="{anchor}"' in html


def test_a_closed_fence_is_highlighted() -> None:
    html = render_markdown("```python\nimport os\nprint('hi')\n```\n")
    assert '<pre class="code"><code data-lang="python">' in html
    assert '<span class="kn">import</span>' in html
    assert "```" not in html


def test_an_unfinished_fence_renders_as_code_not_backticks() -> None:
    blocks = render_blocks("Here is the code:\n\n```python\nimport os\nprint('hi')")
    assert blocks[0] == "<p>Here is the code:</p>\n"
    assert blocks[1].startswith('<pre class="code code-open"><code data-lang="python">')
    assert "import os" in blocks[1]
    assert "`" not in "".join(blocks)
    assert "<span" not in blocks[1]  # highlighted only once it is complete


def test_a_fence_closes_with_a_longer_marker_only() -> None:
    assert "code-open" in render_markdown("````js\nlet x\n```")
    assert "code-open" not in render_markdown("```js\nlet x\n`````")
    assert "code-open" not in render_markdown("> ```js\n> let x\n> ```")


def test_an_unknown_language_is_plain_code() -> None:
    html = render_markdown("```nosuchlang\n<b>x</b>\n```")
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<span" not in html


def test_a_hostile_fence_language_is_dropped() -> None:
    html = render_markdown('```" onmouseover="alert(1)\ncode\n```')
    assert "data-lang" not in html
    assert "onmouseover=" not in html.replace("&quot;", "")


def test_table_alignment_is_a_class_not_a_style() -> None:
    html = render_markdown("| a | b |\n|:-:|--:|\n| 1 | 2 |")
    assert 'class="align-center"' in html and 'class="align-right"' in html
    assert "style" not in html


def test_blocks_are_the_top_level_blocks() -> None:
    text = "# T\n\npara\n\n- a\n- b\n\n```sh\nls\n```\n\n> q\n"
    blocks = render_blocks(text)
    assert len(blocks) == 5
    assert "".join(blocks) == render_markdown(text)


@given(st.text(alphabet=st.sampled_from(list("ab #`*-_[]()<>\n:/jvascript")), max_size=80))
def test_any_prefix_of_hostile_text_renders_inert(text: str) -> None:
    """A streaming answer is rendered at every length, so every prefix must be safe."""
    for html in render_blocks(text):
        assert dangers(html) == [], html


def test_the_highlight_stylesheet_is_scoped_to_code_blocks() -> None:
    css = highlight_css()
    rules = [line for line in css.splitlines() if "{" in line]
    assert rules and all(line.startswith(".code ") for line in rules)


def test_the_danger_check_sees_what_it_looks_for() -> None:
    html = '<img src=x onerror="a()"><a href=" JavaScript:x">y</a><p style="x">z</p>'
    assert dangers(html) == [
        "<img>",
        "<img src>",
        "<img onerror>",
        "<a href=' JavaScript:x'>",
        "<p style>",
    ]
