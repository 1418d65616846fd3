"""Signing in to the console as one member: the login page, its form post, sign-out.

An admin runs `returnhub console-login NAME` and sends the member the link it
prints. Opening it (GET) only shows the login page with the code filled in and the
name it is for, so a chat app's link preview cannot use it up; the member's click
posts it, the code is redeemed once, and the session cookie is set.

The form post is read by hand, not with `request.post()`: only a small
`application/x-www-form-urlencoded` body in UTF-8 is accepted, and anything else
(multipart with or without a boundary, another charset, bytes that are not UTF-8,
too many fields) is a 4xx with the login page, never a 500: this route is open to
anyone.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.appkeys import CTX
from bot.settings import Settings
from bot.web.auth import clear_session_cookie, require_same_origin, set_session_cookie
from bot.web.body import BodyTooLarge, read_body
from bot.web.console_pages import render
from bot.web.session import CODE_MAX, BadSignin, issue_code, read_code
from handlers.context import naive_utc
from handlers.inbox import DUPLICATE, once
from storage.db import Database
from storage.models import Member
from storage.secrets import Keyring, load_keyring

log = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM = 4096
MAX_FIELDS = 8
PAGE = "login.html.j2"


class FormRefused(ValueError):
    """A login post that cannot be read; `status` is the 4xx to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def setup(app: web.Application) -> None:
    app.router.add_get("/console/login", login_page)
    app.router.add_post("/console/login", login)
    app.router.add_post("/console/logout", logout)


def _page(request: web.Request, status: int, *, error: str = "", code: str = "") -> web.Response:
    member = ""
    if code:
        try:
            member = read_code(request.app[CTX].keyring, code, _now(request)).member
        except BadSignin:
            code, error = "", error or "登录码无效或已过期，请向管理员索取新的登录链接"
    return render(request, PAGE, status, error=error, code=code, member=member)


def _now(request: web.Request) -> datetime:
    return request.app[CTX].now().replace(tzinfo=UTC)


async def login_page(request: web.Request) -> web.Response:
    """The login page; from a sign-in link, with the code filled in (not yet used)."""
    code = request.query.get("code", "").strip()
    return _page(request, 200, code=code)


async def read_form(request: web.Request) -> dict[str, str]:
    """The urlencoded form's fields (first of each name); FormRefused for anything else."""
    if request.content_type != FORM_TYPE:
        raise FormRefused(415, "表单格式不正确（需要 application/x-www-form-urlencoded）")
    if (request.charset or "utf-8").lower() not in ("utf-8", "utf8"):
        raise FormRefused(415, "表单编码必须是 UTF-8")
    try:
        raw = await read_body(request, MAX_FORM)
    except BodyTooLarge:
        raise FormRefused(413, f"表单过大（上限 {MAX_FORM} 字节）") from None
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):  # bytes or %-escapes not UTF-8; too many fields
        raise FormRefused(400, "表单内容无法解析") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


async def login(request: web.Request) -> web.Response:
    """Redeem a sign-in code: once, for an active member; then the session cookie."""
    require_same_origin(request)
    try:
        form = await read_form(request)
    except FormRefused as exc:
        log.info("console login from %s refused (%d): %s", request.remote, exc.status, exc)
        return _page(request, exc.status, error=str(exc))
    ctx = request.app[CTX]
    code = form.get("code", "").strip()
    try:
        signin = read_code(ctx.keyring, code, _now(request))
    except BadSignin as exc:
        log.info("console login from %s refused: code %s", request.remote, exc)
        return _page(request, 401, error="登录码无效或已过期，请向管理员索取新的登录链接")

    async def claim(session: AsyncSession) -> bool:
        found = await session.scalars(
            select(Member.id).where(Member.name == signin.member, Member.active.is_(True))
        )
        return found.first() is not None

    claimed = await once(ctx, f"console:signin:{signin.nonce}", "console", claim)
    if claimed is DUPLICATE:
        log.info(
            "console login from %s refused: code for %s already used",
            request.remote,
            signin.member,
        )
        return _page(request, 401, error="该登录码已使用过，请向管理员索取新的登录链接")
    if not claimed:
        log.info(
            "console login from %s refused: %s is no active member", request.remote, signin.member
        )
        return _page(request, 401, error=f"成员 {signin.member} 不存在或已停用")
    log.info("console: %s signed in from %s", signin.member, request.remote)
    done = web.HTTPSeeOther(location="/console")
    set_session_cookie(done, request, signin.member)
    raise done


async def logout(request: web.Request) -> web.Response:
    """Forget the session in this browser (the page then shows the login form)."""
    require_same_origin(request)
    done = web.json_response({"ok": True})
    clear_session_cookie(done)
    return done


def print_signin_link(settings: Settings, member: str, hours: float) -> int:
    """`returnhub console-login NAME`: print a one-time sign-in link for a configured member,
    signed with the keyring the servers use (read from the database, as they read it)."""
    if member not in {m.name for m in settings.members}:
        print(f"未知成员：{member}（请先在 [[members]] 中配置）/ unknown member", file=sys.stderr)
        return 2
    if not 0 < hours <= CODE_MAX.total_seconds() / 3600:
        print("--hours 必须大于 0 且不超过 168 / --hours must be in (0, 168]", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    try:
        keyring = asyncio.run(_stored_keyring(settings, now))
    except DBAPIError as exc:
        print(
            f"读不到数据库中的签名密钥，请先运行 returnhub db upgrade 或启动一次 serve / "
            f"cannot read the signing keyring: {str(exc.orig)[:200]}",
            file=sys.stderr,
        )
        return 2
    link = signin_link(settings, keyring, member, timedelta(hours=hours), now)
    print(f"{member} 的控制台登录链接（{hours:g} 小时内有效，只能使用一次）：")
    print(link)
    return 0


async def _stored_keyring(settings: Settings, now: datetime) -> Keyring:
    db = Database(settings.database.url, timeout=settings.database.timeout_seconds)
    try:
        grace = timedelta(days=settings.server.secret_grace_days)
        return await load_keyring(db, settings.server.secret, grace, naive_utc(now))
    finally:
        await db.dispose()


def signin_link(
    settings: Settings, keyring: Keyring, member: str, valid: timedelta, now: datetime
) -> str:
    """The link `returnhub console-login` prints: the login page with a fresh code."""
    code = issue_code(keyring, member, now, valid)
    base = settings.server.public_url.rstrip("/")
    if not base:
        base = f"http://{settings.server.host}:{settings.server.port}"
    return f"{base}/console/login?{urlencode({'code': code})}"
