"""A fake TOP gateway on loopback: checks every call the way the real router does, and
holds a TMC queue and the shop's refunds.

Checked per call, with TOP's own error codes: the app key (29), the session key
(27), the timestamp (`yyyy-MM-dd HH:mm:ss` China time, inside 10 minutes of the
fake's clock: 32), `sign_method` and the signature over the sorted parameters
(25), the method (22). The TMC queue redelivers a message handed out but not
confirmed within `redeliver_after` seconds, as TMC does after about a minute.
`taobao.rp.refunds.agree` checks each refund's version (`refund_version`) and,
above `sms_threshold_fen`, wants the SMS code the seller received. `fail_next`
and `slow_next` inject faults; `calls` records every accepted call.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.channels.top import SIGN_METHODS, response_key, sign
from bot.channels.values import SHANGHAI as CHINA
from bot.money import parse_yuan
from bot.settings import Settings, load
from tests.support import make_settings

APP_KEY = "12345678"
APP_SECRET = "top-test-secret"
SESSION = "6100a-seller-session"
SELLER_NICK = "喵星旗舰店"


@dataclass
class Queued:
    message: dict[str, Any]
    handed_at: datetime | None = None


@dataclass
class FakeTop:
    clock: Callable[[], datetime]
    app_key: str = APP_KEY
    app_secret: str = APP_SECRET
    session: str = SESSION
    redeliver_after: float = 60.0
    sms_threshold_fen: int = 500_000
    sms_code: str = "246810"
    url: str = ""
    queue: dict[int, Queued] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    fail_next: list[dict[str, Any] | int] = field(default_factory=list)  # error body or HTTP
    slow_next: list[float] = field(default_factory=list)
    _next_id: int = 7_000_000_000_000_000_001

    # -- what a test sets up ------------------------------------------------------
    def push(self, topic: str, content: dict[str, Any], nick: str = "喵星旗舰店") -> int:
        """A TMC message as the platform would queue it; its (19-digit) id."""
        self._next_id += 1
        self.queue[self._next_id] = Queued(
            {
                "id": self._next_id,
                "topic": topic,
                "pub_app_key": "12497914",
                "pub_time": self.clock().astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                "user_nick": nick,
                "user_id": 2207000001,
                "content": json.dumps(content, ensure_ascii=False),
            }
        )
        return self._next_id

    def calls_of(self, method: str) -> list[dict[str, str]]:
        return [params for name, params in self.calls if name == method]

    # -- the router -----------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/router/rest", self._route)
        return app

    def _error(self, code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> web.Response:
        self.refused.append(f"{code} {msg} {sub_code}".strip())
        body = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        return web.json_response({"error_response": {k: v for k, v in body.items() if v != ""}})

    def _check(self, form: dict[str, str]) -> web.Response | None:
        if form.get("app_key") != self.app_key:
            return self._error(29, "Invalid App Key")
        if form.get("session") != self.session:
            return self._error(27, "Invalid session", "invalid-sessionkey", "SessionKey非法")
        try:
            stamp = datetime.strptime(form.get("timestamp", ""), "%Y-%m-%d %H:%M:%S").replace(
                tzinfo=CHINA
            )
        except ValueError:
            return self._error(32, "Invalid Timestamp")
        skew = abs(stamp - self.clock())
        if skew > timedelta(minutes=10):
            return self._error(32, "Invalid Timestamp", "isv.invalid-timestamp")
        method = form.get("sign_method", "md5")
        if method not in SIGN_METHODS:
            return self._error(25, "Invalid Signature", "isv.invalid-sign-method")
        expected = sign(form, self.app_secret, method)
        if not hmac.compare_digest(form.get("sign", ""), expected):
            return self._error(25, "Invalid Signature")
        return None

    async def _route(self, request: web.Request) -> web.StreamResponse:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if self.slow_next:
            await asyncio.sleep(self.slow_next.pop(0))
        refused = self._check(form)
        if refused is not None:
            return refused
        method = form.get("method", "")
        handler = self.METHODS.get(method)
        if handler is None:
            return self._error(22, "Invalid Method", "isv.method-not-exist")
        if self.fail_next:
            fault = self.fail_next.pop(0)
            if isinstance(fault, int):
                return web.Response(status=fault, text="gateway fault")
            return web.json_response({"error_response": fault})
        self.calls.append((method, form))
        result = handler(self, form)
        if isinstance(result, web.Response):
            return result
        return web.json_response({response_key(method): result})

    # -- methods --------------------------------------------------------------------
    def _consume(self, form: dict[str, str]) -> dict[str, Any]:
        quantity = int(form.get("quantity", "100"))
        now = self.clock()
        out = []
        for queued in self.queue.values():
            stale = queued.handed_at is None or (now - queued.handed_at).total_seconds() >= (
                self.redeliver_after
            )
            if stale and len(out) < quantity:
                queued.handed_at = now
                out.append(queued.message)
        return {"messages": {"tmc_message": out}} if out else {}

    def _confirm(self, form: dict[str, str]) -> dict[str, Any]:
        for raw in form.get("s_message_ids", "").split(","):
            if raw.strip().isdigit():
                self.queue.pop(int(raw), None)
        return {"is_success": True}

    def _refund_get(self, form: dict[str, str]) -> dict[str, Any] | web.Response:
        refund = self.refunds.get(form.get("refund_id", ""))
        if refund is None:
            return self._error(15, "Remote service error", "isv.refund-not-exist", "退款不存在")
        return {"refund": dict(refund)}

    def _agree(self, form: dict[str, str]) -> dict[str, Any]:
        results, total = [], 0
        for info in form.get("refund_infos", "").split(","):
            refund_id, amount, version, *_ = [*info.split("|"), "", "", ""]
            refund = self.refunds.get(refund_id)
            if refund is None:
                results.append({"refund_id": refund_id, "succ": False, "message": "退款不存在"})
            elif str(refund.get("refund_version")) != version:
                results.append(
                    {"refund_id": refund_id, "succ": False, "message": "退款版本已过期"}
                )
            elif not amount.isdigit() or int(amount) > parse_yuan(refund["refund_fee"]):
                results.append({"refund_id": refund_id, "succ": False, "message": "退款金额错误"})
            else:
                total += int(amount)
                results.append({"refund_id": refund_id, "succ": True, "message": ""})
        if total > self.sms_threshold_fen and form.get("code") != self.sms_code:
            failed = [{**r, "succ": False, "message": "需要输入短信验证码"} for r in results]
            return {"succ": False, "msg_code": "OP_FAILURE_UE", "message": "需要短信验证码",
                    "results": {"refund_mapping_result": failed}}  # fmt: skip
        for r in results:
            if r["succ"]:
                self.refunds[r["refund_id"]]["status"] = "SUCCESS"
        ok = all(r["succ"] for r in results)
        return {"succ": ok, "msg_code": "OP_SUCC" if ok else "SOME_OP_SUCC",
                "results": {"refund_mapping_result": results}}  # fmt: skip

    def _refuse(self, form: dict[str, str]) -> dict[str, Any] | web.Response:
        refund = self.refunds.get(form.get("refund_id", ""))
        if refund is None:
            return self._error(15, "Remote service error", "isv.refund-not-exist", "退款不存在")
        if not form.get("refuse_message"):
            return self._error(
                40, "Missing Required Arguments", "isv.missing-parameter:refuse_message"
            )
        refund["status"] = "SELLER_REFUSE_BUYER"
        return {"refund": {"refund_id": refund["refund_id"], "status": refund["status"]}}

    def _returngoods_agree(self, form: dict[str, str]) -> dict[str, Any] | web.Response:
        refund = self.refunds.get(form.get("refund_id", ""))
        if refund is None:
            return self._error(15, "Remote service error", "isv.refund-not-exist", "退款不存在")
        refund["status"] = "WAIT_BUYER_RETURN_GOODS"
        return {"is_success": True}

    def _tmc_user(self, form: dict[str, str]) -> dict[str, Any]:
        return {"tmc_user": {"user_nick": form.get("nick", ""), "is_valid": True}}

    METHODS: ClassVar[dict[str, Callable[[FakeTop, dict[str, str]], Any]]] = {
        "taobao.tmc.messages.consume": _consume,
        "taobao.tmc.messages.confirm": _confirm,
        "taobao.refund.get": _refund_get,
        "taobao.rp.refunds.agree": _agree,
        "taobao.refund.refuse": _refuse,
        "taobao.rp.returngoods.agree": _returngoods_agree,
        "taobao.tmc.user.get": _tmc_user,
    }


def taobao_settings(tmp_path: Path, db_url: str, api_url: str, **keys: str) -> Settings:
    path = make_settings(tmp_path, db_url).source
    values = {"app_key": APP_KEY, "app_secret": APP_SECRET, "session": SESSION,
              "api_base": api_url, "seller_nick": SELLER_NICK, **keys}  # fmt: skip
    lines = ["", "[channels.taobao]", *(f'{k} = "{v}"' for k, v in values.items())]
    lines += ["timeout_seconds = 0.5", "poll_seconds = 1"]
    with Path(path).open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return load(path, env={})


@asynccontextmanager
async def running_top(clock: Callable[[], datetime], **options: Any) -> AsyncIterator[FakeTop]:
    fake = FakeTop(clock, **options)
    server = TestServer(fake.app())
    await server.start_server()
    fake.url = str(server.make_url("/router/rest"))
    try:
        yield fake
    finally:
        await server.close()
