"""A fake WeCom server (qyapi.weixin.qq.com) on loopback, and a signer for callbacks.

`FakeWecom` issues tokens (gettoken checks corpid/corpsecret), expires them on
demand (the old token then gets 42001), checks `access_token` on every call,
validates what the real API requires of message/send, update_template_card and
webhook/send (tests/fakes/wecom_checks.py: card fields, content lengths, single-use
response_codes bound to one member, 20 robot messages a minute on `clock`),
records what was sent, serves media (Range honoured, at most 20 MB a chunk;
unknown ids answer JSON 40007), and fails or slows down when told to.

The inbound side (what WeCom POSTs to our callback, encrypted and signed) is
`CallbackSigner` in tests/fakes/wecom_callbacks.py; both share the test app's
credentials defined here.
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

from tests.fakes.wecom_checks import (
    INTERACTIVE,
    INVALID_MEDIA,
    INVALID_PARAM,
    TEXT_BYTES,
    Refusal,
    check_card,
    check_content,
    check_robot,
    media_answer,
)

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
class FakeWecom:
    corp_id: str = CORP_ID
    secret: str = SECRET
    agent_id: int = AGENT_ID
    users: set[str] | None = None  # None: any well-formed userid exists
    robot_keys: set[str] = field(default_factory=lambda: {"robot-key-ops"})
    range_required_over: int = 1 << 20
    tokens: dict[str, str] = field(default_factory=dict)  # token -> "ok" | "expired"
    token_fetches: int = 0
    calls: list[str] = field(default_factory=list)  # paths, in order (no secrets)
    messages: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    robot: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    robot_times: dict[str, list[float]] = field(default_factory=dict)
    media: dict[str, tuple[bytes, str, str]] = field(default_factory=dict)
    ranges: list[str] = field(default_factory=list)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_ids: set[str] = field(default_factory=set)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic  # the robots' 20-a-minute window
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

    def expire_tokens(self) -> None:
        for token in self.tokens:
            self.tokens[token] = "expired"

    def add_media(self, media_id: str, content: bytes, content_type: str = "image/jpeg") -> None:
        self.media[media_id] = (content, content_type, f"{media_id}.jpg")

    def click_code(self, userid: str, task_id: str) -> str:
        """The fresh ResponseCode WeCom puts in a template_card_event for `userid`."""
        return self._issue_code(userid, task_id)

    def texts_to(self, userid: str) -> list[str]:
        return [
            m["text"]["content"]
            for m in self.messages
            if m["msgtype"] == "text" and m["touser"] == userid
        ]

    def cards_to(self, userid: str) -> list[dict[str, Any]]:
        return [
            m["template_card"]
            for m in self.messages
            if m["msgtype"] == "template_card" and m["touser"] == userid
        ]

    def updates_for(self, userid: str) -> list[dict[str, Any]]:
        return [u for u in self.updates if userid in u["userids"]]

    # --- the server ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        app.router.add_post("/cgi-bin/message/send", self._api(self._send))
        app.router.add_post("/cgi-bin/message/update_template_card", self._api(self._update))
        app.router.add_get("/cgi-bin/media/get", self._media)
        app.router.add_post("/cgi-bin/webhook/send", self._webhook)
        return app

    def _issue_code(self, userid: str, task_id: str) -> str:
        code = "rc_" + secrets.token_urlsafe(24)
        self.codes[code] = {"userid": userid, "task_id": task_id, "used": False}
        return code

    async def _before(self, path: str) -> web.Response | None:
        self.calls.append(path)
        if self.delays.get(path):
            await asyncio.sleep(self.delays[path])
        queue = self.failures.get(path) or []
        if not queue:
            return None
        failure = queue[0]
        if failure.times is not None:
            failure.times -= 1
            if failure.times <= 0:
                queue.pop(0)
        if failure.status is not None:
            return web.Response(status=failure.status, text="upstream trouble")
        return _err(failure.errcode or -1, "injected failure")

    def _token_error(self, request: web.Request) -> web.Response | None:
        token = request.query.get("access_token")
        if not token:
            return _err(41001, "access_token missing")
        state = self.tokens.get(token)
        if state is None:
            return _err(40014, "invalid access_token")
        if state == "expired":
            return _err(42001, "access_token expired")
        return None

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.token_fetches += 1
        if (injected := await self._before("gettoken")) is not None:
            return injected
        if request.query.get("corpid") != self.corp_id:
            return _err(40013, "invalid corpid")
        if request.query.get("corpsecret") != self.secret:
            return _err(40001, "invalid credential")
        token = "tok_" + secrets.token_urlsafe(32)
        self.tokens[token] = "ok"
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
        )

    def _api(self, work: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
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
                if type(body.get("agentid")) is not int or body["agentid"] != self.agent_id:
                    raise Refusal(40056, "invalid agentid")  # both APIs need the int agentid
                return web.json_response({"errcode": 0, "errmsg": "ok", **work(body)})
            except ValueError:
                return _err(47001, "data format error")
            except Refusal as exc:
                return _err(exc.errcode, exc.errmsg)

        return handler

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        touser = body.get("touser")
        if not isinstance(touser, str) or not touser:
            raise Refusal(40031, "invalid touser")
        users = touser.split("|")
        invalid = [u for u in users if self.users is not None and u not in self.users]
        if len(invalid) == len(users):
            raise Refusal(81013, "user & party & tag all invalid")
        msgtype = body.get("msgtype")
        content = body.get(msgtype) if isinstance(msgtype, str) else None
        if msgtype in ("text", "markdown"):
            check_content(content, TEXT_BYTES)
        elif msgtype == "template_card":
            check_card(content, send=True, seen=self.task_ids)
        else:
            raise Refusal(40008, "invalid message type")
        self.messages.append(body)
        answer: dict[str, Any] = {"msgid": secrets.token_hex(8), "invaliduser": "|".join(invalid)}
        if msgtype == "template_card" and content["card_type"] in INTERACTIVE:
            self.task_ids.add(content["task_id"])
            answer["response_code"] = self._issue_code(users[0], content["task_id"])
        return answer

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        userids = body.get("userids")
        if not isinstance(userids, list) or not userids or len(userids) > 1000:
            raise Refusal(INVALID_PARAM, "invalid userids")
        code = self.codes.get(str(body.get("response_code")))
        if code is None or code["used"]:
            raise Refusal(INVALID_PARAM, "invalid response_code: unknown or already used")
        if any(u != code["userid"] for u in userids):  # a code updates the card it came with
            raise Refusal(INVALID_PARAM, "response_code is for another member's card")
        if "template_card" in body:
            card = body["template_card"]
            check_card(card, send=False, seen=set())
            if card.get("task_id", code["task_id"]) != code["task_id"]:
                raise Refusal(INVALID_PARAM, "task_id does not match the response_code")
        elif not isinstance(body.get("button"), dict) or not body["button"].get("replace_name"):
            raise Refusal(INVALID_PARAM, "need template_card or button.replace_name")
        code["used"] = True
        self.updates.append(body)
        return {"invaliduser": []}

    async def _media(self, request: web.Request) -> web.Response:
        if (refused := self._token_error(request)) is not None:
            self.calls.append("media/get")
            return refused
        if (injected := await self._before("media/get")) is not None:
            return injected
        found = self.media.get(request.query.get("media_id", ""))
        if found is None:
            return _err(INVALID_MEDIA, "invalid media_id")
        self.ranges.extend(request.headers.getall("Range", []))
        return media_answer(*found, request.headers.get("Range"), self.range_required_over)

    async def _webhook(self, request: web.Request) -> web.Response:
        if (injected := await self._before("webhook/send")) is not None:
            return injected
        key = request.query.get("key", "")
        if key not in self.robot_keys:
            return _err(93000, "invalid webhook url")
        try:
            body = json.loads(await request.read())
            check_robot(body)
        except ValueError:
            return _err(40035, "invalid json")
        except Refusal as exc:
            return _err(exc.errcode, exc.errmsg)
        now = self.clock()
        recent = [t for t in self.robot_times.get(key, []) if now - t < 60]
        if len(recent) >= 20:  # 20 messages a minute per robot
            return _err(45009, "api freq out of limit")
        self.robot_times[key] = [*recent, now]
        self.robot.append((key, body))
        return _err(0, "ok")


def _err(errcode: int, errmsg: str) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg})


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
