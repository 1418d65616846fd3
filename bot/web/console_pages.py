"""The console's HTML pages and assets: one jinja2 environment, read once at start-up.

Both pages are autoescaped and sent with a strict Content-Security-Policy: the chat
page runs only its own script; the login page runs none and may post only to us.
"""

from __future__ import annotations

import hashlib

import jinja2
from aiohttp import web

from bot.settings import templates_dir

ASSETS = {
    "console.js": "application/javascript",
    "console.css": "text/css",
    "dashboard.css": "text/css",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
LOGIN_CSP = CSP.replace("form-action 'none'", "form-action 'self'").replace(
    "script-src 'self'", "script-src 'none'"
)
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
CHAT_PAGE = "console.html.j2"
PAGES: web.AppKey[jinja2.Environment] = web.AppKey("console_pages")
STATIC: web.AppKey[dict[str, bytes]] = web.AppKey("console_static")


def setup(app: web.Application) -> None:
    app[PAGES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / "web")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # Read once at start-up: no file I/O on the event loop per request.
    app[STATIC] = {name: (templates_dir() / "web" / name).read_bytes() for name in ASSETS}


def _version(request: web.Request, name: str) -> str:
    return hashlib.sha256(request.app[STATIC][name]).hexdigest()[:10]


def render(request: web.Request, name: str, status: int = 200, **context: object) -> web.Response:
    """Template `name` as an HTML response with the page's security headers."""
    html = (
        request.app[PAGES]
        .get_template(name)
        .render(
            js_version=_version(request, "console.js"),
            css_version=_version(request, "console.css"),
            dashboard_css_version=_version(request, "dashboard.css"),
            **context,
        )
    )
    csp = CSP if name == CHAT_PAGE else LOGIN_CSP  # the dashboard too: no script at all
    headers = {"Content-Security-Policy": csp, "Referrer-Policy": "no-referrer", **NOSNIFF}
    return web.Response(text=html, status=status, content_type="text/html", headers=headers)
