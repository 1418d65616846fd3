"""Who may open the console and the dashboard (DESIGN.md §7).

A request passes with `Authorization: Bearer <api token>`, or with the login
cookie (browsers cannot send headers on a plain page load). The cookie is set by
the console's login form (a POST, so the token stays out of addresses and access
logs), or once by `?token=<api token>`, which then redirects to drop it. The
cookie holds an HMAC derived from the token, not the token, and rotating the
token logs everyone out. In demo mode, a request straight from
loopback needs nothing: `returnhub demo` binds 127.0.0.1 and is for trying it out.
Proxied requests (X-Forwarded-For, X-Real-IP, Via, … see PROXY_HEADERS) and
foreign Host headers never count as loopback, so a reverse proxy or a DNS-rebinding
page cannot borrow it. One case no server can tell apart: a proxy that adds none of
those headers and rewrites Host to 127.0.0.1 (nginx's bare `proxy_pass`). Never
put `returnhub demo` behind a proxy (docs/api.md says so).

State-changing console posts also pass `require_same_origin`, so another site's
page cannot post to a demo on loopback (where no cookie is needed).
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


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), _COOKIE_LABEL, hashlib.sha256).hexdigest()


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
    set_login_cookie(redirect, request, token)
    return redirect


def is_api_token(request: web.Request, given: str) -> bool:
    """`given` is the configured API token (constant time; never true when none is set)."""
    token = request.app[CTX].settings.api.token
    return bool(token) and _same(given, token)


def set_login_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    """The HttpOnly, SameSite=Strict login cookie: an HMAC of the token, not the token."""
    response.set_cookie(
        COOKIE,
        cookie_value(token),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=30 * 24 * 3600,
    )


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
        raise _forbidden(f"cross-site request refused (Sec-Fetch-Site: {site[:20]})")
    origin = request.headers.get("Origin")
    if origin is None:
        return
    _, _, authority = origin.partition("://")
    hosts = {request.host, request.headers.get("X-Forwarded-Host", "")}
    if authority and authority.lower() in {h.lower() for h in hosts if h}:
        return
    raise _forbidden("cross-origin request refused")


def _forbidden(message: str) -> web.HTTPForbidden:
    log.warning("%s", message)
    return web.HTTPForbidden(
        text=json.dumps({"error": f"{message}; 跨站请求已拒绝"}, ensure_ascii=False),
        content_type="application/json",
    )
