"""Who may open the console and the dashboard (DESIGN.md §7).

A request passes with `Authorization: Bearer <api token>`, or with the login
cookie that `?token=<api token>` sets once (browsers cannot send headers on a
plain page load). The cookie holds an HMAC derived from the token, not the token,
and rotating the token logs everyone out. In demo mode, a request straight from
loopback needs nothing: `returnhub demo` binds 127.0.0.1 and is for trying it out.
Proxied requests (X-Forwarded-For / Forwarded) and foreign Host headers never
count as loopback, so a reverse proxy or a DNS-rebinding page cannot borrow it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging

from aiohttp import web
from yarl import URL

from bot.appkeys import CTX

log = logging.getLogger(__name__)

COOKIE = "returnhub_login"
_COOKIE_LABEL = b"returnhub console/dashboard login v1"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _unauthorized(message: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=json.dumps({"error": message}, ensure_ascii=False),
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="returnhub"'},
    )


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), _COOKIE_LABEL, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def is_local_demo(request: web.Request) -> bool:
    """Demo mode and a direct connection from this machine (no proxy in between)."""
    if not request.app[CTX].settings.server.demo:
        return False
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    if (request.url.host or "").lower() not in _LOOPBACK_HOSTS:
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def require_login(request: web.Request) -> None:
    """Return if the request may see the console/dashboard; raise 401 (JSON) otherwise.

    A valid `?token=` on a GET answers 302 to the same URL without it, setting the
    HttpOnly cookie, so the token does not stay in the address bar or history.
    """
    if is_local_demo(request):
        return
    token = request.app[CTX].settings.api.token
    if not token:
        raise _unauthorized("no API token is configured ([api] token); 未配置 API 令牌")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and _same(given.strip(), token):
        return
    if _same(request.cookies.get(COOKIE, ""), cookie_value(token)):
        return
    query_token = request.query.get("token", "")
    if _same(query_token, token):
        if request.method != "GET":
            return
        raise _login_redirect(request, token)
    log.info("login required: %s %s from %s", request.method, request.path, request.remote)
    raise _unauthorized(
        "login required: Authorization: Bearer <api token>, or open the page with "
        "?token=<api token>; 需要登录令牌"
    )


def _login_redirect(request: web.Request, token: str) -> web.HTTPFound:
    url = URL(request.path_qs)
    clean = url.with_query({k: v for k, v in url.query.items() if k != "token"})
    redirect = web.HTTPFound(location=str(clean))
    redirect.set_cookie(
        COOKIE,
        cookie_value(token),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=30 * 24 * 3600,
    )
    return redirect
