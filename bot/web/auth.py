"""Who may use the read API and the console, and as whom (DESIGN.md §7).

Two different things, never mixed:

- The read API (`/api/*`) takes `Authorization: Bearer <api token>`. The token is an
  integrator's, read-only: it opens no console and can never act as a member.
- The console acts as exactly one member: the one whose signed session cookie the
  browser holds, got by redeeming an admin-issued sign-in code (bot/web/session.py).
  Every post and poll must name that member; naming anyone else is refused (403).

Demo mode, on a direct connection from this machine, needs neither, and the console
may act as any member (the member picker): `returnhub demo` binds 127.0.0.1 and is
for trying it out. Proxied requests (X-Forwarded-For, X-Real-IP, Via, … see
PROXY_HEADERS) and foreign Host headers never count as loopback, so a reverse proxy
or a DNS-rebinding page cannot borrow it. One case no server can tell apart: a proxy
that adds none of those headers and rewrites Host to 127.0.0.1 (nginx's bare
`proxy_pass`). Never put `returnhub demo` behind a proxy (docs/api.md says so).

State-changing console posts also pass `require_same_origin`, so another site's
page cannot post to a demo on loopback (where no cookie is needed).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from datetime import UTC, datetime

from aiohttp import web

from bot.appkeys import CTX
from bot.platforms.console import is_member
from bot.web.session import SESSION_LIFETIME, session_member, session_value

log = logging.getLogger(__name__)

SESSION_COOKIE = "returnhub_member"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Any of these means a proxy (nginx, Apache, Caddy, Traefik, a CDN, a tunnel) relayed
# the request: its peer address is the proxy's, loopback or not.
PROXY_HEADERS = (
    *("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"),
    *("X-Forwarded-Server", "X-Real-IP", "Via", "CF-Connecting-IP", "True-Client-IP"),
    "X-Client-IP",
)
_SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site values we accept


def _unauthorized(message: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=json.dumps({"error": message}, ensure_ascii=False),
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="returnhub"'},
    )


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def is_local_demo(request: web.Request) -> bool:
    """Demo mode and a direct connection from this machine (no proxy in between)."""
    if not request.app[CTX].settings.server.demo:
        return False
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    if (request.url.host or "").lower() not in _LOOPBACK_HOSTS:
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _bearer(request: web.Request) -> str:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def has_api_token(request: web.Request) -> bool:
    """The request carries the configured API token (constant time; never without one)."""
    token = request.app[CTX].settings.api.token
    return bool(token) and _same(_bearer(request), token)


def require_api(request: web.Request) -> None:
    """Return if the request may read `/api/*`; raise 401 (JSON) otherwise."""
    if is_local_demo(request) or has_api_token(request):
        return
    if not request.app[CTX].settings.api.token:
        raise _unauthorized("no API token is configured ([api] token); 未配置 API 令牌")
    log.info("API token required: %s %s from %s", request.method, request.path, request.remote)
    raise _unauthorized("Authorization: Bearer <api token> required; 需要 API 令牌")


def _now(request: web.Request) -> datetime:
    return request.app[CTX].now().replace(tzinfo=UTC)


async def console_member(request: web.Request) -> str | None:
    """The member the console acts as: None in demo mode on loopback (any member, the
    page picks), else the signed-in member. Raises 401 without a valid session, and
    403 for the API token, which is read-only."""
    if is_local_demo(request):
        return None
    ctx = request.app[CTX]
    value = request.cookies.get(SESSION_COOKIE, "")
    member = session_member(ctx.keyring, value, _now(request))
    if member is not None and await is_member(ctx.db, member):
        return member
    if has_api_token(request):
        log.warning("console refused the API token from %s: it is read-only", request.remote)
        raise _forbidden("the API token is read-only and cannot act in the console; API 令牌只读")
    log.info("console login required: %s %s from %s", request.method, request.path, request.remote)
    raise _unauthorized(
        "sign in first: ask an admin for a sign-in link (returnhub console-login NAME); "
        "请先登录：向管理员索取登录链接"
    )


def acting_as(me: str | None, user: str) -> None:
    """Raise 403 unless a signed-in member (`me`) names themselves; demo (None) passes."""
    if me is not None and user != me:
        log.warning("console: %s tried to act as %s", me, user[:64])
        raise _forbidden(f"signed in as {me}; you can act only as yourself; 只能以本人身份操作")


def set_session_cookie(response: web.StreamResponse, request: web.Request, member: str) -> None:
    """The HttpOnly, SameSite=Strict session cookie naming `member`, signed and expiring."""
    ctx = request.app[CTX]
    response.set_cookie(
        SESSION_COOKIE,
        session_value(ctx.keyring, member, _now(request)),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=int(SESSION_LIFETIME.total_seconds()),
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")


def require_same_origin(request: web.Request) -> None:
    """Raise 403 (JSON) for a state-changing request another site's page made.

    Demo mode on loopback needs no login, so a cookie cannot be what stops a
    page on another site from posting to 127.0.0.1. Browsers say where a request
    came from: `Sec-Fetch-Site` (all current ones) and `Origin`. Requests with
    neither are not from a browser page (curl, scripts) and pass to the login check.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.lower() in _SAME_SITE:
            return
        log.warning("cross-site request refused (Sec-Fetch-Site: %s)", site[:20])
        raise _forbidden(
            f"cross-site request refused (Sec-Fetch-Site: {site[:20]}); 跨站请求已拒绝"
        )
    origin = request.headers.get("Origin")
    if origin is None:
        return
    _, _, authority = origin.partition("://")
    hosts = {request.host, request.headers.get("X-Forwarded-Host", "")}
    if authority and authority.lower() in {h.lower() for h in hosts if h}:
        return
    log.warning("cross-origin request refused (Origin: %s)", origin[:60])
    raise _forbidden("cross-origin request refused; 跨站请求已拒绝")


def _forbidden(message: str) -> web.HTTPForbidden:
    return web.HTTPForbidden(
        text=json.dumps({"error": message}, ensure_ascii=False),
        content_type="application/json",
    )
