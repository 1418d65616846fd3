"""Routes of the local console: the page, its assets, and the member list.

The console is a chat platform like WeCom or DingTalk, only the client is a web
page: posts (console_post.py) become neutral events handled by the same
handlers, and replies come back through the outbox into `console_messages`
(bot/platforms/console.py), which the page polls (console_poll.py).
"""

from __future__ import annotations

import hashlib
import logging

import jinja2
from aiohttp import web
from sqlalchemy import func, select

from bot.appkeys import CTX
from bot.settings import templates_dir
from bot.web.auth import is_api_token, require_login, require_same_origin, set_login_cookie
from bot.web.console_poll import dumps, messages
from bot.web.console_post import click, send
from handlers.people import ROLE_ZH
from storage.models import ConsoleMessage, Member

log = logging.getLogger(__name__)

POLL_MS = 1000
ROLE_ORDER = tuple(ROLE_ZH)
ASSETS = {"console.js": "application/javascript", "console.css": "text/css"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
LOGIN_CSP = CSP.replace("form-action 'none'", "form-action 'self'").replace(
    "script-src 'self'", "script-src 'none'"
)
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
PAGES: web.AppKey[jinja2.Environment] = web.AppKey("console_pages")
STATIC: web.AppKey[dict[str, bytes]] = web.AppKey("console_static")


def setup(app: web.Application) -> None:
    """Mount the console on `app` (bot/app.py calls this when [console] enabled)."""
    app[PAGES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / "web")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # Read once at start-up: no file I/O on the event loop per request.
    app[STATIC] = {name: (templates_dir() / "web" / name).read_bytes() for name in ASSETS}
    app.router.add_get("/console", page)
    app.router.add_post("/console/login", login)
    app.router.add_get("/console/static/{name}", asset)
    app.router.add_get("/console/api/members", members)
    app.router.add_get("/console/api/messages", messages)
    app.router.add_post("/console/api/send", send)
    app.router.add_post("/console/api/click", click)


def _version(request: web.Request, name: str) -> str:
    return hashlib.sha256(request.app[STATIC][name]).hexdigest()[:10]


def _html(request: web.Request, name: str, status: int = 200, **context: object) -> web.Response:
    html = (
        request.app[PAGES]
        .get_template(name)
        .render(
            js_version=_version(request, "console.js"),
            css_version=_version(request, "console.css"),
            **context,
        )
    )
    csp = CSP if name == "console.html.j2" else LOGIN_CSP
    headers = {"Content-Security-Policy": csp, "Referrer-Policy": "no-referrer", **NOSNIFF}
    return web.Response(text=html, status=status, content_type="text/html", headers=headers)


async def page(request: web.Request) -> web.Response:
    """The chat page; a browser without a login gets the login form instead (401)."""
    try:
        require_login(request)
    except web.HTTPUnauthorized:
        if "text/html" not in request.headers.get("Accept", ""):
            raise
        return _html(request, "login.html.j2", 401, error="")
    ctx = request.app[CTX]
    return _html(request, "console.html.j2", demo=ctx.settings.server.demo, poll_ms=POLL_MS)


async def login(request: web.Request) -> web.Response:
    """The login form's POST: the right API token sets the cookie and goes to /console."""
    require_same_origin(request)
    form = await request.post()
    token = form.get("token")
    if not isinstance(token, str) or not is_api_token(request, token.strip()):
        log.info("console login refused from %s", request.remote)
        return _html(request, "login.html.j2", 401, error="令牌不正确，请重试")
    done = web.HTTPSeeOther(location="/console")
    set_login_cookie(done, request, token.strip())
    raise done


async def asset(request: web.Request) -> web.StreamResponse:
    """The page's script and stylesheet: a fixed whitelist, nothing else under templates/."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.Response(
        body=request.app[STATIC][name],
        content_type=ASSETS[name],
        charset="utf-8",
        headers={"Cache-Control": "no-cache", **NOSNIFF},
    )


async def members(request: web.Request) -> web.Response:
    """Everyone who can chat with the bot, with zh role labels and their newest message id."""
    require_login(request)
    async with request.app[CTX].db.read() as session:
        active = select(Member).where(Member.active.is_(True)).order_by(Member.id)
        people = list(await session.scalars(active))
        last = (
            select(ConsoleMessage.user_id, func.max(ConsoleMessage.id))
            .where(ConsoleMessage.direction == "out")
            .group_by(ConsoleMessage.user_id)
        )
        newest = {user: int(top) for user, top in await session.execute(last)}
    rows = []
    for member in people:
        roles = sorted(member.role_names, key=_role_rank)
        rows.append(
            {
                "name": member.name,
                "roles": roles,
                "role_labels": [ROLE_ZH.get(r, r) for r in roles],
                "last_id": newest.get(member.name, 0),
            }
        )
    return web.json_response({"members": rows}, dumps=dumps)


def _role_rank(role: str) -> tuple[int, str]:
    return (ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER), role)
