"""Markdown to safe HTML for the pages: parse, highlight, sanitise. No I/O.

Model output is untrusted, so every fragment this module returns has been through two walls:

1. markdown-it-py parses with raw HTML *disabled* (a ``<script>`` in the text stays text) and
   refuses ``javascript:``, ``vbscript:``, ``file:`` and ``data:`` link targets;
2. nh3 (ammonia) cleans the rendered HTML against an allow-list: known tags only, no ``on*``
   or ``style`` attributes, links limited to http, https, mailto and relative targets, classes
   limited to the ones this module writes itself.

Images are rendered as links (a model's answer must not make the browser fetch arbitrary
URLs). Code fences are highlighted by Pygments once they are closed; a fence still open while
an answer streams is shown as plain code, never as raw backticks.

``render_blocks`` cuts a document into its top-level blocks, each rendered and sanitised on its
own, which lets a stream send the blocks that changed instead of the whole answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight as pygments_highlight  # type: ignore[import-untyped]
from pygments.formatters import HtmlFormatter  # type: ignore[import-untyped]
from pygments.lexers import get_lexer_by_name  # type: ignore[import-untyped]
from pygments.token import STANDARD_TYPES  # type: ignore[import-untyped]
from pygments.util import ClassNotFound  # type: ignore[import-untyped]

#: The Pygments style of highlighted code (a light one, to match the pages).
PYGMENTS_STYLE = "friendly"
#: Longest code block that is highlighted; longer ones are shown plain (bounded work).
MAX_HIGHLIGHT_CHARS = 100_000

_TOKEN_CLASSES = frozenset(c for c in STANDARD_TYPES.values() if c)
_LANG = re.compile(r"[A-Za-z0-9_+#.-]{1,32}")
_CLOSING_FENCE = re.compile(r"^[ \t>]*(`{3,}|~{3,})[ \t]*$")
_SLUG_DROP = re.compile(r"[^\w\- ]+")
_ALIGN = re.compile(r"text-align:\s*(left|center|right)")

_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr",
    "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"data-lang"},
    "ol": {"start"},
}
_CLASSES = {
    "a": {"heading-anchor"},
    "pre": {"code", "code-open"},
    "span": set(_TOKEN_CLASSES),
    "th": {"align-left", "align-center", "align-right"},
    "td": {"align-left", "align-center", "align-right"},
}
_URL_SCHEMES = {"http", "https", "mailto"}
_LINK_REL = "noopener noreferrer nofollow"


@functools.cache
def _cleaner(anchors: bool) -> nh3.Cleaner:
    attributes = {tag: set(names) for tag, names in _ATTRIBUTES.items()}
    if anchors:
        for level in range(1, 7):
            attributes[f"h{level}"] = {"id"}
    return nh3.Cleaner(
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes=attributes,
        allowed_classes=_CLASSES,
        url_schemes=_URL_SCHEMES,
        link_rel=_LINK_REL,
        strip_comments=True,
    )


def sanitize(html: str, *, anchors: bool = False) -> str:
    """``html`` cleaned against the pages' allow-list (``anchors`` keeps heading ids)."""
    return _cleaner(anchors).clean(html)


@functools.lru_cache(maxsize=4096)
def _sanitized_block(html: str) -> str:
    """One block, cleaned (cached: the finished blocks of a streaming answer repeat)."""
    return _cleaner(False).clean(html)


# ---------------------------------------------------------------------------------------------
# Rendering rules


def _fence(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    lang = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    lang = lang if _LANG.fullmatch(lang) else ""
    closed = _fence_closed(token, env.get("lines", ()))
    return code_block(token.content, lang, closed=closed)


def _code_block(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return code_block(tokens[idx].content, "", closed=True)


def _image(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or str(token.attrGet("src"))
    href = _escape(str(token.attrGet("src") or ""))
    return f'<a href="{href}">{_escape(alt)}</a>'


def _heading_close(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    slug = token.meta.get("slug")
    anchor = f'<a class="heading-anchor" href="#{slug}" aria-hidden="true">#</a>' if slug else ""
    return f"{anchor}</{token.tag}>\n"


def code_block(code: str, lang: str, *, closed: bool) -> str:
    """A code block: highlighted when ``closed`` and the language is known, else plain."""
    lang_attr = f' data-lang="{lang}"' if lang else ""
    if closed and lang and len(code) <= MAX_HIGHLIGHT_CHARS:
        body = _highlighted(code, lang)
        if body is not None:
            return f'<pre class="code"><code{lang_attr}>{body}</code></pre>\n'
    css = "code" if closed else "code code-open"
    return f'<pre class="{css}"><code{lang_attr}>{_escape(code)}</code></pre>\n'


@functools.lru_cache(maxsize=256)
def _highlighted(code: str, lang: str) -> str | None:
    """Highlighted code (cached: a streaming answer re-renders its finished blocks often)."""
    try:
        lexer = get_lexer_by_name(lang, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None
    return str(pygments_highlight(code, lexer, _formatter()))


def _fence_closed(token: Token, lines: Sequence[str]) -> bool:
    """Whether a fence has its closing marker (CommonMark runs an unclosed one to the end)."""
    if token.map is None:
        return True
    start, end = token.map
    if end - start < 2 or end > len(lines):
        return False
    match = _CLOSING_FENCE.match(lines[end - 1])
    return bool(
        match and match.group(1)[0] == token.markup[0] and len(match.group(1)) >= len(token.markup)
    )


@functools.cache
def _formatter() -> Any:
    return HtmlFormatter(nowrap=True, style=PYGMENTS_STYLE)


@functools.cache
def highlight_css() -> str:
    """The stylesheet of highlighted code, generated once from the Pygments style."""
    formatter = HtmlFormatter(style=PYGMENTS_STYLE)
    rules = "\n".join(formatter.get_token_style_defs(".code"))
    return f"/* Pygments style {PYGMENTS_STYLE!r}, generated by sluice */\n{rules}\n"


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


# ---------------------------------------------------------------------------------------------
# The parser


@functools.cache
def _parser(answer: bool = False) -> MarkdownIt:
    """The markdown parser; for answers (``answer``) without link reference definitions, whose
    effect reaches back to earlier blocks (see ``render_tail``)."""
    md = MarkdownIt(
        "commonmark", {"html": False, "linkify": False, "typographer": False, "breaks": False}
    )
    md.enable(["table", "strikethrough"])
    if answer:
        md.disable("reference")
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _code_block)
    md.add_render_rule("image", _image)
    md.add_render_rule("heading_close", _heading_close)
    return md


def _prepare(tokens: list[Token], anchors: bool) -> None:
    """Table alignment as classes (no style attributes), and heading slugs when ``anchors``."""
    seen: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if token.type in ("th_open", "td_open"):
            style = token.attrGet("style")
            if style is not None:
                token.attrs.pop("style", None)
                match = _ALIGN.search(str(style))
                if match:
                    token.attrSet("class", f"align-{match.group(1)}")
        elif anchors and token.type == "heading_open" and index + 1 < len(tokens):
            slug = slugify(tokens[index + 1].content) or "section"
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            slug = f"{slug}-{count}" if count else slug
            token.attrSet("id", slug)
            tokens[index + 2].meta["slug"] = slug


def slugify(text: str) -> str:
    """A heading's anchor: lower case, words joined by hyphens (as GitHub does)."""
    return _SLUG_DROP.sub("", text.strip().lower()).replace(" ", "-")


def _tokens(text: str, anchors: bool, answer: bool = False) -> tuple[list[Token], dict[str, Any]]:
    env: dict[str, Any] = {"lines": text.split("\n")}
    tokens = _parser(answer).parse(text, env)
    _prepare(tokens, anchors)
    return tokens, env


def render_markdown(text: str, *, anchors: bool = False) -> str:
    """The whole document as sanitised HTML; ``anchors`` gives headings ids and ``#`` links."""
    md = _parser()
    tokens, env = _tokens(text, anchors)
    return sanitize(md.renderer.render(tokens, md.options, env), anchors=anchors)


def page_headings(text: str, levels: tuple[int, ...] = (2, 3)) -> list[tuple[int, str, str]]:
    """The document's headings of ``levels`` as (level, text, anchor), for a table of contents;
    the anchors are the ids ``render_markdown(text, anchors=True)`` gives them."""
    tokens, _env = _tokens(text, True)
    found = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and int(token.tag[1]) in levels:
            inline = tokens[index + 1]
            label = "".join(
                c.content for c in inline.children or [] if c.type in ("text", "code_inline")
            )
            found.append((int(token.tag[1]), label, str(token.attrGet("id"))))
    return found


def render_blocks(text: str) -> list[str]:
    """An answer's top-level blocks, each as sanitised HTML (link reference definitions are
    not interpreted in answers)."""
    return render_tail(text)[0]


def render_tail(text: str) -> tuple[list[str], int, int]:
    """Render a streaming answer's text: its blocks, how many of the first ones are final, and
    where in ``text`` the rest begins.

    A top-level block is final when another top-level block starts after it, at the left
    margin, after a blank line, on a line that is complete (a partial line can still change
    what it starts: ``--`` becomes a rule, then a list item). CommonMark closes blocks line by
    line and never reopens one, so no text appended later can change a final block (link
    reference definitions could, which is why answers are parsed without them). The rest of
    the text, parsed on its own as a document, then gives the same blocks as the whole text
    would: a stream renders only its tail.
    """
    md = _parser(answer=True)
    tokens, env = _tokens(text, False, answer=True)
    lines: list[str] = env["lines"]
    blocks: list[str] = []
    starts: list[int] = []
    start = 0
    for index, token in enumerate(tokens):
        if token.level == 0 and token.nesting >= 0 and start == index and token.map:
            starts.append(token.map[0])
        if token.level == 0 and token.nesting <= 0:
            html = md.renderer.render(tokens[start : index + 1], md.options, env)
            blocks.append(_sanitized_block(html))
            start = index + 1
    final, offset = 0, 0
    for block in range(1, len(starts)):
        line = starts[block]
        complete = line + 1 < len(lines)  # the next block's first line has its newline
        if not (complete and line > 0 and not lines[line - 1].strip() and lines[line][:1].strip()):
            break
        final = block
        offset = sum(len(text_line) + 1 for text_line in lines[:line])
    return blocks, final, offset
