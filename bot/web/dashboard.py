"""`GET /dashboard`: what is stuck and why goods come back, for managers, on one page.

Server-rendered (jinja2, autoescaped) with SVG charts built here (bot/web/charts.py):
the page runs no script and loads nothing from the internet. The figures are
handlers/reports.py's (the ones /统计 answers) and handlers/dashboard_figures.py's,
for `?period=today|yesterday|week|month|30d` and optional `channel=` / `shop=`.

Who may see it: demo mode on loopback; a request with the API token as Bearer; or a
browser that entered the API token on the login form, which sets a signed cookie
(bot/web/session.py `dashboard_value`) valid 12 hours and only while that token
stays configured. A wrong token answers 401 with the form again and is logged.
"""

from __future__ import annotations

import hmac
import logging
import re
from datetime import timedelta

from aiohttp import web

from bot.appkeys import CTX
from bot.money import yuan
from bot.web import charts, console_pages
from bot.web.auth import has_api_token, is_local_demo, require_same_origin
from bot.web.console_login import FormRefused, read_form
from bot.web.session import DASHBOARD_LIFETIME, dashboard_ok, dashboard_value
from handlers import dashboard_figures as figures
from handlers import reports
from handlers.context import Ctx
from handlers.views import REASON_ZH

log = logging.getLogger(__name__)

COOKIE = "returnhub_dashboard"
PAGE, LOGIN = "dashboard.html.j2", "dashboard_login.html.j2"
PERIODS = {
    "today": "今天",
    "yesterday": "昨天",
    "week": "本周",
    "month": "本月",
    "30d": "近 30 天",
}
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def setup(app: web.Application) -> None:
    if console_pages.PAGES not in app:
        console_pages.setup(app)
    app.router.add_get("/dashboard", page)
    app.router.add_post("/dashboard/login", login)
    app.router.add_post("/dashboard/logout", logout)
    app.router.add_get("/dashboard/static/dashboard.css", stylesheet)


def _allowed(request: web.Request) -> bool:
    if is_local_demo(request) or has_api_token(request):
        return True
    ctx = request.app[CTX]
    value = request.cookies.get(COOKIE, "")
    return dashboard_ok(ctx.keyring, ctx.settings.api.token, value, ctx.clock())


def _login_page(request: web.Request, status: int, error: str = "") -> web.Response:
    configured = bool(request.app[CTX].settings.api.token)
    return console_pages.render(request, LOGIN, status, error=error, configured=configured)


async def stylesheet(request: web.Request) -> web.Response:
    body = request.app[console_pages.STATIC]["dashboard.css"]
    headers = {"Cache-Control": "public, max-age=86400", **console_pages.NOSNIFF}
    return web.Response(body=body, content_type="text/css", headers=headers)


async def login(request: web.Request) -> web.Response:
    require_same_origin(request)
    ctx = request.app[CTX]
    try:
        form = await read_form(request)
    except FormRefused as exc:
        return _login_page(request, exc.status, str(exc))
    token = ctx.settings.api.token
    given = form.get("token", "").strip()
    if not token or not given or not hmac.compare_digest(given.encode(), token.encode()):
        log.warning("dashboard login refused from %s", request.remote)
        return _login_page(request, 401, "令牌不正确")
    response = web.HTTPSeeOther("/dashboard")
    response.set_cookie(
        COOKIE,
        dashboard_value(ctx.keyring, token, ctx.clock()),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/dashboard",
        max_age=int(DASHBOARD_LIFETIME.total_seconds()),
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    require_same_origin(request)
    response = web.HTTPSeeOther("/dashboard")
    response.del_cookie(COOKIE, path="/dashboard")
    raise response


def _query(request: web.Request) -> tuple[str, reports.Filters] | str:
    name = request.query.get("period", "today")
    if name not in PERIODS:
        return f"period 须为 {' / '.join(PERIODS)}"
    found: dict[str, str | None] = {}
    for key in ("channel", "shop"):
        value = request.query.get(key, "").strip() or None
        if value is not None and not _NAME.fullmatch(value):
            return f"{key} 只能含字母、数字和 _ . -"
        found[key] = value
    return name, reports.Filters(channel=found["channel"], shop=found["shop"])


def _period(ctx: Ctx, name: str) -> reports.Period:
    now = ctx.now()
    if name == "30d":
        return reports.Period(name, now - timedelta(days=30), now)
    return reports.period(name, now, ctx.zone)


def _reason(code: str) -> str:
    head = code.split(".", 1)[0]
    label = REASON_ZH.get(head, "")
    return f"{label}·{code}" if label and "." in code else label or code or "未填写"


async def page(request: web.Request) -> web.Response:
    if not _allowed(request):
        return _login_page(request, 401 if request.cookies.get(COOKIE) else 200)
    parsed = _query(request)
    if isinstance(parsed, str):
        return web.json_response({"error": parsed}, status=400)
    name, filters = parsed
    ctx = request.app[CTX]
    p = _period(ctx, name)
    now = ctx.now()
    offset = ctx.zone.utcoffset(ctx.local(now).replace(tzinfo=None)) or timedelta(0)
    async with ctx.db.read() as session:
        kpis = await reports.kpis(session, p, now, filters)
        tiles = await figures.tiles(session, p, filters)
        by_code = await figures.reasons(session, p, filters)
        skus = await figures.reasons_by_sku(session, p, filters)
        stages = await figures.stage_times(session, p, filters)
        late = await figures.breaches_by_assignee(session, p, now, filters)
        flagged = await figures.flagged_buyers(session, filters)
        days = await figures.trend(session, now, offset.total_seconds() / 3600, filters)
    targets = _targets(ctx)
    context = {
        "periods": PERIODS,
        "period": name,
        "filters": filters,
        "tiles": tiles,
        "kpis": kpis,
        "yuan": yuan,
        "reason": _reason,
        "skus": skus,
        "late": late,
        "flagged": flagged,
        "stages": stages,
        "first_chart": charts.bars(
            [(_reason(c), n) for c, n in figures.first_level(by_code)],
            unit=" 单",
            title="一级原因",
        ),
        "code_chart": charts.bars(
            [(c or "未填写", n) for c, n in by_code[:10]], unit=" 单", title="二级原因"
        ),
        "stage_chart": charts.stages(
            [(s.label, s.p50_hours, s.p90_hours, targets.get(s.stage)) for s in stages],
            title="各环节用时",
        ),
        "trend_chart": charts.trend(days, title="近 30 天趋势"),
        "generated": ctx.local(now).strftime("%Y-%m-%d %H:%M"),
        "demo": is_local_demo(request),
    }
    return console_pages.render(request, PAGE, 200, **context)


def _targets(ctx: Ctx) -> dict[str, float]:
    """Stage -> the SLA target in hours: review shows the routing's first-review policy."""
    policy = ctx.settings.sla.get(ctx.settings.routing.fallback_sla)
    return {"review": policy.business_hours} if policy is not None else {}
