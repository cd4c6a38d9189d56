"""The gateway's HTML pages: the shared shell, its static files, the chat page and the runbook.

Pages are rendered on the server with Jinja2 (autoescaping on) from ``sluice/web/templates``;
CSS and small hand-written ES modules are served from ``sluice/web/static`` under ``/static``.
Every page gets ``PAGE_CSP``: scripts, styles and connections only from the gateway itself, so
templates load their code from ``/static`` and use no inline ``<script>`` or ``style=``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    from sluice.gateway.app import Gateway

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

#: The Content-Security-Policy of every page: a second wall behind the sanitiser.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

PAGE_HEADERS = {
    "content-security-policy": PAGE_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


@functools.cache
def templates() -> jinja2.Environment:
    """The page templates (one environment per process; autoescaping on for everything)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(
    template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> Response:
    """A page from ``template`` (extending ``base.html``) with the pages' security headers.

    ``context["active_nav"]`` (``"chat"``, ``"ops"`` or ``"runbook"``) marks the current
    section in the header.
    """
    html = templates().get_template(template).render({"active_nav": None, **(context or {})})
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def not_found_page(heading: str, message: str) -> Response:
    return render_page("not_found.html", {"heading": heading, "message": message}, status=404)


def page_routes(gateway: Gateway) -> list[BaseRoute]:
    """The pages and their static files, to be added to the gateway's routes."""
    return [
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
