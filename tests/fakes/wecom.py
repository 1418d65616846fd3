"""A fake WeCom server (qyapi.weixin.qq.com) on loopback, and a signer for callbacks.

`FakeWecom` issues tokens (gettoken checks corpid/corpsecret: 40013/40001, counted
in `token_fetches` and `token_refusals`), expires them on demand (the old token then
gets 42001), checks `access_token` on every call, validates what the real API
requires of message/send, update_template_card, appchat/send and webhook/send
(tests/fakes/wecom_checks.py; a robot `image` must be a JPG/PNG of at most 2 MB whose
md5 matches its base64), takes `media/upload` images (JPG/PNG, at most 10 MB) whose
media_id message/send `image` must name, records what was sent, serves media (Range honoured,
at most 20 MB a chunk; unknown ids answer JSON 40007), and fails or slows down when
told to. Like the real platform, on its injectable `clock` (tests/fakes/wecom_limits.py):

- a response_code is single-use and expires 72 h after it was issued (60140);
  `click_code` is the fresh one every click carries, even on a closed card;
- one member gets at most 30 app messages a minute and 1,000 an hour: the excess is
  answered errcode 0 and silently dropped into `dropped` (group chats: 200 / 10,000 a day);
- a template_card's task_id is unique per app: a reused one answers 42014;
- `distrust_ip()` makes calls answer 60020 (企业可信IP), `has_callback_url = False`
  makes callback-capable cards answer 43012, `rotate_secret()` makes the old secret
  answer 40001.

The inbound side (what WeCom POSTs to our callback, encrypted and signed) is
`CallbackSigner` in tests/fakes/wecom_callbacks.py; both share the test app's
credentials defined here. The sending endpoints and the views of what they delivered
are tests/fakes/wecom_messages.py, media/get and media/upload tests/fakes/wecom_media.py.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes.faults import arrive
from tests.fakes.wecom_checks import (
    IP_NOT_TRUSTED,
    Refusal,
    err,
)
from tests.fakes.wecom_limits import CHAT_LIMITS, MemberWindows, issue_code
from tests.fakes.wecom_media import Media
from tests.fakes.wecom_messages import Messages

CORP_ID = "ww0123456789abcdef"
SECRET = "app-secret-for-tests-0123456789"
AGENT_ID = 1000002
TOKEN = "callbackToken123"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 chars
OTHER_AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"


@dataclass
class Failure:
    errcode: int | None = None
    status: int | None = None
    times: int | None = 1  # None: for ever


@dataclass
class FakeWecom(Messages, Media):
    corp_id: str = CORP_ID
    secret: str = SECRET
    agent_id: int = AGENT_ID
    users: set[str] | None = None  # None: any well-formed userid exists
    robot_keys: set[str] = field(default_factory=lambda: {"robot-key-ops"})
    range_required_over: int = 1 << 20
    tokens: dict[str, str] = field(default_factory=dict)  # token -> "ok" | "expired"
    token_fetches: int = 0  # every gettoken call, refused or not
    token_refusals: int = 0  # gettoken calls refused for the corpid or secret
    calls: list[str] = field(default_factory=list)  # paths, in order (no secrets)
    messages: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    robot: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    robot_times: dict[str, list[float]] = field(default_factory=dict)
    media: dict[str, tuple[bytes, str, str]] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)  # media_ids media/upload issued
    ranges: list[str] = field(default_factory=list)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> userid, task_id,
    task_ids: set[str] = field(default_factory=set)  # used, issued (clock seconds)
    dropped: list[dict[str, Any]] = field(default_factory=list)  # accepted, never delivered
    # message/send's duplicate check: (clock seconds, touser, the message) delivered, and
    # the flagged sends it dropped as copies (answered errcode 0, like WeCom).
    delivered_at: list[tuple[float, str, str]] = field(default_factory=list)
    deduplicated: list[dict[str, Any]] = field(default_factory=list)
    member_windows: MemberWindows = field(default_factory=MemberWindows)
    chats: dict[str, set[str]] = field(default_factory=dict)  # chatid -> members
    chat_messages: list[dict[str, Any]] = field(default_factory=list)
    chat_windows: MemberWindows = field(default_factory=lambda: MemberWindows(CHAT_LIMITS))
    has_callback_url: bool = True  # False: callback-capable cards answer 43012
    ip_trusted: bool = True  # False: API calls answer 60020
    ip_checked_on_gettoken: bool = False  # with ip_trusted False: gettoken answers 60020 too
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    lags: dict[str, float] = field(default_factory=dict)  # after the work, before the answer
    # Seconds: robots' 20-a-minute window, members' limits, response_code lifetimes.
    clock: Callable[[], float] = time.monotonic
    url: str = ""

    # --- test controls ------------------------------------------------------------------

    def fail(
        self,
        path: str,
        *,
        errcode: int | None = None,
        status: int | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next `times` calls to `path` (e.g. "message/send") with an error."""
        self.failures.setdefault(path, []).append(Failure(errcode, status, times))

    def slow(self, path: str, seconds: float) -> None:
        self.delays[path] = seconds

    def slow_answer(self, path: str, seconds: float) -> None:
        """Do the work at once, answer `seconds` later: a client that times out meanwhile
        loses the answer to a call WeCom accepted (a sent card, its response_code)."""
        self.lags[path] = seconds

    def expire_tokens(self) -> None:
        for token in self.tokens:
            self.tokens[token] = "expired"

    def click_code(self, userid: str, task_id: str, *, code: str | None = None) -> str:
        """The fresh ResponseCode WeCom puts in a template_card_event for `userid`.

        Every click carries a new one, also on a card whose earlier code was used or
        has expired (doc path/94945): that is how a late decision still updates it.
        `code` picks its text (WeCom promises no alphabet or length for it).
        """
        return issue_code(self.codes, userid, task_id, self.clock(), code=code)

    def distrust_ip(self, *, gettoken: bool = False) -> None:
        """Our egress IP leaves 企业可信IP: API calls (and gettoken if asked) answer 60020.

        Which calls WeCom checks is UNCONFIRMED: reports show message/send refused, and
        some show gettoken refused too; tests choose.
        """
        self.ip_trusted, self.ip_checked_on_gettoken = False, gettoken

    def trust_ip(self) -> None:
        self.ip_trusted = True

    def rotate_secret(self, secret: str) -> None:
        """The admin reset the app's Secret: the old one now answers 40001."""
        self.secret = secret

    def add_chat(self, chatid: str, members: set[str]) -> None:
        """A group chat this app created (appchat/create), so appchat/send may post to it."""
        self.chats[chatid] = set(members)

    # --- the server ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 << 20)  # media and robot images past 1 MB
        app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        app.router.add_post("/cgi-bin/message/send", self._api(self._send))
        app.router.add_post("/cgi-bin/message/update_template_card", self._api(self._update))
        app.router.add_post("/cgi-bin/appchat/send", self._api(self._appchat, agent=False))
        app.router.add_get("/cgi-bin/media/get", self._media)
        app.router.add_post("/cgi-bin/media/upload", self._upload)
        app.router.add_post("/cgi-bin/webhook/send", self._webhook)
        return app

    async def _before(self, path: str) -> web.Response | None:
        failure = await arrive(path, self.calls, self.delays, self.failures)
        if failure is None:
            return None
        if failure.status is not None:
            return web.Response(status=failure.status, text="upstream trouble")
        return err(failure.errcode or -1, "injected failure")

    def _ip_error(self, request: web.Request) -> web.Response | None:
        if self.ip_trusted:
            return None
        return err(
            IP_NOT_TRUSTED,
            f"not allow to access from your ip, hint: [{secrets.token_hex(8)}], "
            f"from ip: {request.remote}, more info at "
            "https://open.work.weixin.qq.com/devtool/query?e=60020",
        )

    def _token_error(self, request: web.Request) -> web.Response | None:
        if (refused := self._ip_error(request)) is not None:
            return refused
        token = request.query.get("access_token")
        if not token:
            return err(41001, "access_token missing")
        state = self.tokens.get(token)
        if state is None:
            return err(40014, "invalid access_token")
        if state == "expired":
            return err(42001, "access_token expired")
        return None

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.token_fetches += 1
        if (injected := await self._before("gettoken")) is not None:
            return injected
        if self.ip_checked_on_gettoken and (refused := self._ip_error(request)) is not None:
            return refused
        if request.query.get("corpid") != self.corp_id:
            self.token_refusals += 1
            return err(40013, "invalid corpid")
        if request.query.get("corpsecret") != self.secret:
            # 40001 "不合法的secret参数" (errcode page path/90455); repeated, the IP is
            # banned for about an hour (im-protocols.md 7a), which this fake does not play.
            self.token_refusals += 1
            return err(40001, "invalid credential, access_token is invalid or not latest")
        token = "tok_" + secrets.token_urlsafe(32)
        self.tokens[token] = "ok"
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
        )

    def _api(self, work: Callable[[dict[str, Any]], dict[str, Any]], *, agent: bool = True) -> Any:
        async def handler(request: web.Request) -> web.Response:
            path = request.path.removeprefix("/cgi-bin/")
            if (refused := self._token_error(request)) is not None:
                self.calls.append(path)
                return refused
            if (injected := await self._before(path)) is not None:
                return injected
            try:
                body = json.loads(await request.read())
                if not isinstance(body, dict):
                    raise Refusal(47001, "data format error")
                if agent and (
                    type(body.get("agentid")) is not int or body["agentid"] != self.agent_id
                ):
                    raise Refusal(40056, "invalid agentid")  # message/* need the int agentid
                answer = web.json_response({"errcode": 0, "errmsg": "ok", **work(body)})
                if self.lags.get(path):
                    await asyncio.sleep(self.lags[path])
                return answer
            except ValueError:
                return err(47001, "data format error")
            except Refusal as exc:
                return err(exc.errcode, exc.errmsg)

        return handler


@asynccontextmanager
async def running(fake: FakeWecom) -> AsyncIterator[FakeWecom]:
    """Serve `fake` on 127.0.0.1 (random port); `fake.url` is the api_base to configure."""
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()
