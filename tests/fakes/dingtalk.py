"""A fake DingTalk (api.dingtalk.com and oapi.dingtalk.com in one) on loopback.

In the manner of the fake WeCom (tests/fakes/wecom.py):

- `POST /v1.0/oauth2/accessToken` checks appKey/appSecret (`token_fetches` counts
  every call); every other new-style call must carry a live token in the
  `x-acs-dingtalk-access-token` header (a query `access_token` does not count),
  else 401 `InvalidAuthentication`; `expire_tokens()` makes the old ones fail;
- cards: `createAndDeliver` validates what the real API requires (template id,
  outTrackId unique per app, `cardParamMap` string values only, an `openSpaceId` of
  IM_ROBOT/IM_GROUP with the matching deliver model, a callbackRouteKey for HTTP
  callbacks) and answers per recipient in `deliverResults`; `fail_recipient` makes
  a recipient's delivery fail (success false) while the call answers 200;
  `deliver` re-delivers an existing instance; `PUT /v1.0/card/instances` records
  updates and keeps each instance's current data (`cards[outTrackId]`);
- robot sends (`oToMessages/batchSend`, `groupMessages/send`) are recorded, with
  `invalidStaffIdList` for users the fake does not know; session-webhook replies
  (`/robot/sendBySession`) are recorded while the session is live;
- `messageFiles/download` hands out a URL on this server that serves the file;
- custom robots (`/robot/send`) check the 加签 signature and the 1-hour window,
  take 20 messages a minute and then answer 130101 for 10 minutes;
- `media/upload` (oapi) takes JPG/PNG/GIF/BMP up to 20 MB and answers a media_id;
  `sampleImageMsg` must name one (or an http URL) as its photoURL;
- `fail(path, …)` and `slow(path, seconds)` fail or delay the next calls;
  `slow_answer(path, seconds)` does the work and answers late.

Times are on the injectable `clock` (epoch seconds), the test's FakeClock.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes.faults import arrive

APP_KEY = "dingappkey0123456789"
APP_SECRET = "dingtalk-app-secret-for-tests-0123456789abcdef"
ROBOT_CODE = "dingappkey0123456789"
TEMPLATE_ID = "2f1d3c4b-0000-4a5b-8c9d-returnhub.schema"
EVENT_TOKEN = "eventToken123"
EVENT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CORP_ID = "dingcorp0123456789"
ROBOT_TOKEN = "robot-access-token-ops"
ROBOT_SECRET = "SEC0123456789abcdef0123456789abcdef"
ROBOT_TOO_FAST = 130101
_SPACE = re.compile(r"dtv1\.card//(IM_ROBOT|IM_GROUP)\.([^;]{1,128})")


@dataclass
class Failure:
    status: int
    code: str
    times: int | None = 1


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class FakeDingtalk:
    app_key: str = APP_KEY
    app_secret: str = APP_SECRET
    robot_code: str = ROBOT_CODE
    users: set[str] | None = None  # None: any staff id exists
    clock: Callable[[], float] = lambda: 0.0
    url: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # token -> "ok" | "expired"
    token_fetches: int = 0
    calls: list[str] = field(default_factory=list)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # outTrackId -> instance
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # every createAndDeliver
    updates: list[dict[str, Any]] = field(default_factory=list)
    sends: list[dict[str, Any]] = field(default_factory=list)  # robot OpenAPI sends
    session_replies: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> user, expiry
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # downloadCode -> file
    registered: list[dict[str, Any]] = field(default_factory=list)
    robot_tokens: dict[str, str] = field(default_factory=lambda: {ROBOT_TOKEN: ROBOT_SECRET})
    robot_messages: list[dict[str, Any]] = field(default_factory=list)
    robot_times: dict[str, list[float]] = field(default_factory=dict)
    robot_penalty: dict[str, float] = field(default_factory=dict)
    recipient_failures: dict[str, int] = field(default_factory=dict)  # spaceId -> times
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    media: dict[str, bytes] = field(default_factory=dict)  # media/upload: media_id -> bytes
    lags: dict[str, float] = field(default_factory=dict)  # after the work, before the answer

    # --- test controls ------------------------------------------------------------------

    def fail(self, path: str, *, status: int = 500, code: str = "ServiceUnavailable",
             times: int | None = 1) -> None:  # fmt: skip
        """Answer the next `times` calls to `path` (e.g. "card/instances") with an error."""
        self.failures.setdefault(path, []).append(Failure(status, code, times))

    def slow(self, path: str, seconds: float) -> None:
        self.delays[path] = seconds

    def slow_answer(self, path: str, seconds: float) -> None:
        """Do the work at once, answer `seconds` later: a client that times out meanwhile
        loses the answer to a call DingTalk accepted (a created card, an update)."""
        self.lags[path] = seconds

    def fail_recipient(self, space_id: str, times: int = 1) -> None:
        """The next `times` deliveries to `space_id` fail in `deliverResults` (HTTP 200)."""
        self.recipient_failures[space_id] = times

    def expire_tokens(self) -> None:
        for token in self.tokens:
            self.tokens[token] = "expired"

    def add_file(self, code: str, content: bytes, content_type: str = "image/jpeg") -> None:
        self.files[code] = (content, content_type)

    def open_session(self, user: str, seconds: float = 5400) -> tuple[str, int]:
        """A sessionWebhook for `user` (URL, expiry in ms) as a robot message carries it."""
        session = secrets.token_urlsafe(12)
        expires = self.clock() + seconds
        self.sessions[session] = (user, expires)
        return f"{self.url}/robot/sendBySession?session={session}", int(expires * 1000)

    def cards_to(self, space_id: str) -> list[dict[str, Any]]:
        """The card instances delivered to `space_id` (a staff id or a conversation id)."""
        return [c for c in self.cards.values() if space_id in c["delivered"]]

    def texts_to(self, user: str) -> list[str]:
        texts = [
            json.loads(s["msgParam"])["content"]
            for s in self.sends
            if user in s.get("userIds", []) and s["msgKey"] == "sampleText"
        ]
        texts += [r["text"]["content"] for r in self.session_replies if r["user"] == user]
        return texts

    def group_texts(self, conversation_id: str) -> list[str]:
        return [
            json.loads(s["msgParam"])["content"]
            for s in self.sends
            if s.get("openConversationId") == conversation_id
        ]

    # --- the server ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 << 20)  # media uploads past 1 MB
        app.router.add_post("/v1.0/oauth2/accessToken", self._token)
        api = [
            ("POST", "/v1.0/card/instances/createAndDeliver", self._create),
            ("POST", "/v1.0/card/instances/deliver", self._deliver),
            ("PUT", "/v1.0/card/instances", self._update),
            ("POST", "/v1.0/card/callbacks/register", self._register),
            ("POST", "/v1.0/robot/oToMessages/batchSend", self._batch_send),
            ("POST", "/v1.0/robot/groupMessages/send", self._group_send),
            ("POST", "/v1.0/robot/messageFiles/download", self._download),
        ]
        for method, path, work in api:
            app.router.add_route(method, path, self._api(work))
        app.router.add_get("/files/{code}", self._file)
        app.router.add_post("/robot/send", self._robot)
        app.router.add_post("/robot/sendBySession", self._session_reply)
        app.router.add_post("/media/upload", self._upload)
        return app

    async def _before(self, path: str) -> web.Response | None:
        failure = await arrive(path, self.calls, self.delays, self.failures)
        if failure is None:
            return None
        return _refuse(failure.status, failure.code, "injected failure")

    async def _token(self, request: web.Request) -> web.Response:
        self.token_fetches += 1
        if (injected := await self._before("oauth2/accessToken")) is not None:
            return injected
        body = await request.json()
        if body.get("appKey") != self.app_key or body.get("appSecret") != self.app_secret:
            return _refuse(400, "invalidClientIdOrSecret", "无效的appKey或appSecret")
        token = "dt_" + secrets.token_urlsafe(24)
        self.tokens[token] = "ok"
        return web.json_response({"accessToken": token, "expireIn": 7200})

    def _api(self, work: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
        async def handler(request: web.Request) -> web.Response:
            path = request.path.removeprefix("/v1.0/")
            token = request.headers.get("x-acs-dingtalk-access-token", "")
            if self.tokens.get(token) != "ok":
                self.calls.append(path)
                return _refuse(401, "InvalidAuthentication", "不合法的access_token")
            if (injected := await self._before(path)) is not None:
                return injected
            try:
                body = json.loads(await request.read())
                if not isinstance(body, dict):
                    raise Refusal(400, "InvalidParameter", "body is not an object")
                answer = web.json_response(work(body))
                if self.lags.get(path):
                    await asyncio.sleep(self.lags[path])
                return answer
            except ValueError:
                return _refuse(400, "InvalidParameter", "body is not JSON")
            except Refusal as exc:
                return _refuse(exc.status, exc.code, exc.message)

        return handler

    def _space(self, body: dict[str, Any]) -> tuple[str, str]:
        found = _SPACE.fullmatch(str(body.get("openSpaceId", "")))
        if found is None:
            raise Refusal(400, "param.openSpaceIdInvalid", "openSpaceId 格式错误")
        kind, space = found.groups()
        model = "imRobotOpenDeliverModel" if kind == "IM_ROBOT" else "imGroupOpenDeliverModel"
        deliver = body.get(model)
        if not isinstance(deliver, dict) or deliver.get("robotCode") != self.robot_code:
            raise Refusal(400, "param.deliverModelInvalid", f"{model}.robotCode 不正确")
        if kind == "IM_ROBOT" and deliver.get("spaceType") != "IM_ROBOT":
            raise Refusal(400, "param.deliverModelInvalid", "spaceType 必须为 IM_ROBOT")
        return kind, space

    def _results(self, kind: str, space: str) -> list[dict[str, Any]]:
        ok = True
        if self.recipient_failures.get(space):
            self.recipient_failures[space] -= 1
            ok = False
        elif kind == "IM_ROBOT" and self.users is not None and space not in self.users:
            ok = False
        result: dict[str, Any] = {"spaceType": kind, "spaceId": space, "success": ok}
        if not ok:
            result["errorMsg"] = "用户不在机器人可见范围内或投放失败"
        return [result]

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("cardTemplateId"):
            raise Refusal(400, "param.cardTemplateIdEmpty", "cardTemplateId 不能为空")
        out_track_id = body.get("outTrackId")
        if not isinstance(out_track_id, str) or not out_track_id:
            raise Refusal(400, "param.outTrackIdEmpty", "outTrackId 不能为空")
        if out_track_id in self.cards:
            raise Refusal(400, "param.outTrackIdExist", "outTrackId 已存在")
        params = _param_map(body.get("cardData"))
        if body.get("callbackType") == "HTTP" and not body.get("callbackRouteKey"):
            raise Refusal(400, "param.callbackRouteKeyEmpty", "HTTP 回调需要 callbackRouteKey")
        kind, space = self._space(body)
        results = self._results(kind, space)
        self.cards[out_track_id] = {
            "outTrackId": out_track_id,
            "kind": kind,
            "space": space,
            "params": dict(params),
            "callbackType": body.get("callbackType"),
            "delivered": [space] if results[0]["success"] else [],
        }
        self.deliveries.append(body)
        return {"success": True, "result": {"outTrackId": out_track_id, "deliverResults": results}}

    def _deliver(self, body: dict[str, Any]) -> dict[str, Any]:
        card = self.cards.get(str(body.get("outTrackId")))
        if card is None:
            raise Refusal(400, "param.outTrackIdNotExist", "卡片实例不存在")
        kind, space = self._space(body)
        results = self._results(kind, space)
        if results[0]["success"] and space not in card["delivered"]:
            card["delivered"].append(space)
        return {"success": True, "result": {"deliverResults": results}}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        card = self.cards.get(str(body.get("outTrackId")))
        if card is None:
            raise Refusal(400, "param.outTrackIdNotExist", "卡片实例不存在")
        card["params"].update(_param_map(body.get("cardData")))
        self.updates.append(body)
        return {"success": True, "result": True}

    def _register(self, body: dict[str, Any]) -> dict[str, Any]:
        for name in ("callbackRouteKey", "callbackUrl", "apiSecret"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise Refusal(400, "InvalidParameter", f"{name} 不能为空")
        self.registered.append(body)
        return {"success": True, "result": {"callbackUrl": body["callbackUrl"]}}

    def _robot_send(self, body: dict[str, Any]) -> None:
        if body.get("robotCode") != self.robot_code:
            raise Refusal(400, "robot.notExist", "robotCode 不存在")
        if body.get("msgKey") not in ("sampleText", "sampleMarkdown", "sampleImageMsg"):
            raise Refusal(400, "param.msgKeyInvalid", "msgKey 不正确")
        param = body.get("msgParam")
        if not isinstance(param, str) or not isinstance(json.loads(param), dict):
            raise Refusal(400, "param.msgParamInvalid", "msgParam 须为 JSON 字符串")
        if body["msgKey"] == "sampleImageMsg":
            photo = str(json.loads(param).get("photoURL", ""))
            if photo not in self.media and not photo.startswith(("http://", "https://")):
                raise Refusal(400, "param.photoURLInvalid", "photoURL 须为图片地址或 media_id")
        self.sends.append(body)

    def _batch_send(self, body: dict[str, Any]) -> dict[str, Any]:
        users = body.get("userIds")
        if not isinstance(users, list) or not users:
            raise Refusal(400, "param.userIdsEmpty", "userIds 不能为空")
        invalid = [u for u in users if self.users is not None and u not in self.users]
        self._robot_send(body)
        return {"processQueryKey": secrets.token_hex(8), "invalidStaffIdList": invalid}

    def _group_send(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("openConversationId"):
            raise Refusal(400, "param.openConversationIdEmpty", "openConversationId 不能为空")
        self._robot_send(body)
        return {"processQueryKey": secrets.token_hex(8)}

    def _download(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("robotCode") != self.robot_code:
            raise Refusal(400, "robot.notExist", "robotCode 不存在")
        code = body.get("downloadCode")
        if code not in self.files:
            raise Refusal(400, "param.downloadCodeInvalid", "downloadCode 无效或已过期")
        return {"downloadUrl": f"{self.url}/files/{code}"}

    async def _file(self, request: web.Request) -> web.Response:
        if (injected := await self._before("files")) is not None:
            return injected
        found = self.files.get(request.match_info["code"])
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found[0], content_type=found[1])

    async def _session_reply(self, request: web.Request) -> web.Response:
        if (injected := await self._before("sendBySession")) is not None:
            return injected
        found = self.sessions.get(request.query.get("session", ""))
        if found is None or found[1] < self.clock():
            # UNCONFIRMED errcode for an expired session webhook.
            return web.json_response({"errcode": 300001, "errmsg": "session 已过期"})
        body = await request.json()
        if body.get("msgtype") not in ("text", "markdown"):
            return web.json_response({"errcode": 40035, "errmsg": "不合法的参数"})
        self.session_replies.append({**body, "user": found[0]})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _upload(self, request: web.Request) -> web.Response:
        """oapi media/upload?type=image: a live token as `access_token` (UNCONFIRMED that
        the new-style token is taken here), one multipart field `media`, a JPG/PNG/GIF/BMP
        of at most 20 MB; answers a media_id ("@…") sampleImageMsg may name."""
        if self.tokens.get(request.query.get("access_token", "")) != "ok":
            self.calls.append("media/upload")
            return web.json_response({"errcode": 40014, "errmsg": "不合法的access_token"})
        if (injected := await self._before("media/upload")) is not None:
            return injected
        if request.query.get("type") != "image":
            return web.json_response({"errcode": 40004, "errmsg": "不合法的媒体文件类型"})
        part = (await request.post()).get("media") if request.content_type.startswith(
            "multipart/form-data") else None  # fmt: skip
        if not isinstance(part, web.FileField):
            return web.json_response({"errcode": 41006, "errmsg": "缺少media参数"})
        raw = part.file.read()
        if not raw.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"BM")):
            return web.json_response({"errcode": 40005, "errmsg": "不合法的文件类型"})
        if len(raw) > 20 << 20:
            return web.json_response({"errcode": 40006, "errmsg": "不合法的文件大小"})
        media_id = "@lA" + secrets.token_urlsafe(18)
        self.media[media_id] = raw
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "type": "image", "media_id": media_id,
             "created_at": int(self.clock() * 1000)}
        )  # fmt: skip

    def images_to(self, user: str) -> list[bytes]:
        """The pictures sampleImageMsg sent `user` in the robot's 1:1 chat."""
        return [
            self.media[json.loads(s["msgParam"])["photoURL"]]
            for s in self.sends
            if s["msgKey"] == "sampleImageMsg" and user in s.get("userIds", [])
        ]

    async def _robot(self, request: web.Request) -> web.Response:
        if (injected := await self._before("robot/send")) is not None:
            return injected
        token = request.query.get("access_token", "")
        secret = self.robot_tokens.get(token)
        if secret is None:
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
        timestamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
        mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
        expected = base64.b64encode(mac.digest()).decode()
        fresh = timestamp.isdigit() and abs(self.clock() - int(timestamp) / 1000) <= 3600
        if not fresh or not hmac.compare_digest(expected, sign):
            # aiohttp's query already URL-decoded `sign`, as DingTalk's server does.
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        now = self.clock()
        if now < self.robot_penalty.get(token, 0.0):
            return web.json_response({"errcode": ROBOT_TOO_FAST, "errmsg": "send too fast"})
        recent = [t for t in self.robot_times.get(token, []) if now - t < 60]
        if len(recent) >= 20:
            self.robot_penalty[token] = now + 600
            return web.json_response(
                {"errcode": ROBOT_TOO_FAST, "errmsg": "send too fast, exceed 20 times per minute"}
            )
        self.robot_times[token] = [*recent, now]
        self.robot_messages.append(await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})


def _param_map(card_data: Any) -> dict[str, str]:
    params = card_data.get("cardParamMap") if isinstance(card_data, dict) else None
    if not isinstance(params, dict):
        raise Refusal(400, "param.cardDataInvalid", "cardData.cardParamMap 不能为空")
    for key, value in params.items():
        if not isinstance(value, str):
            raise Refusal(400, "param.cardParamMapInvalid", f"cardParamMap.{key} 须为字符串")
    return params


def _refuse(status: int, code: str, message: str) -> web.Response:
    body = {"code": code, "message": message, "requestid": secrets.token_hex(8)}
    return web.json_response(body, status=status)


@asynccontextmanager
async def running(fake: FakeDingtalk) -> AsyncIterator[FakeDingtalk]:
    """Serve `fake` on 127.0.0.1; `fake.url` is both api_base and oapi_base."""
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()
