"""A fake JOS router on loopback: checks each call as the real one does, and holds the
shop's refund applications for `queryPageList` and `replyRefund`.

Checked: the app key, the access token (an expired one answers code 19), the
timestamp (China time, within 10 minutes of the fake's clock), the MD5 signature
over the sorted parameters. `queryPageList` filters by ids and by check-time window
(both bounds inclusive) and pages; `replyRefund` moves an
application to the answered status and stamps its check time. `fail_next`
injects HTTP faults or error bodies; `calls` records the accepted calls.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.channels.jos import PARAM_JSON, sign
from bot.channels.values import SHANGHAI as CHINA
from bot.settings import Settings, load
from tests.support import make_settings

APP_KEY = "jd-app-key"
APP_SECRET = "jd-app-secret"
TOKEN = "jd-access-token"
QUERY = "jingdong.pop.afs.soa.refundapply.queryPageList"
REPLY = "jingdong.pop.afs.soa.refundapply.replyRefund"


def _at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)


@dataclass
class FakeJos:
    clock: Callable[[], datetime]
    url: str = ""
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    fail_next: list[int | dict[str, Any]] = field(default_factory=list)
    token: str = TOKEN

    def add(self, apply_id: str, order_id: str, amount: str, **fields: Any) -> dict[str, Any]:
        now = self.clock().astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        record = {"id": int(apply_id), "orderId": int(order_id), "applyRefundSum": amount,
                  "status": 0, "applyTime": now, "checkTime": now, "buyerId": "jd_buyer_01",
                  "buyerName": "京东买家", **fields}  # fmt: skip
        self.refunds[apply_id] = record
        return record

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == method]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/routerjson", self._route)
        return app

    def _error(self, code: str, zh: str) -> web.Response:
        self.refused.append(f"{code} {zh}")
        return web.json_response({"error_response": {"code": code, "zh_desc": zh, "en_desc": zh}})

    async def _route(self, request: web.Request) -> web.StreamResponse:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if form.get("app_key") != APP_KEY:
            return self._error("15", "无效的app_key")
        if form.get("access_token") != self.token:
            return self._error("19", "token已过期或者不存在，请重新授权访问")
        try:
            skew = abs(_at(form.get("timestamp", "")) - self.clock())
        except ValueError:
            return self._error("17", "timestamp格式错误")
        if skew > timedelta(minutes=10):
            return self._error("17", "timestamp已过期")
        if not hmac.compare_digest(form.get("sign", ""), sign(form, APP_SECRET)):
            return self._error("14", "签名无效")
        method = form.get("method", "")
        if method not in (QUERY, REPLY):
            return self._error("22", "方法不存在")
        if self.fail_next:
            fault = self.fail_next.pop(0)
            if isinstance(fault, int):
                return web.Response(status=fault, text="gateway fault")
            return web.json_response({"error_response": fault})
        params = json.loads(form.get(PARAM_JSON) or "{}")
        self.calls.append((method, params))
        key = method.replace(".", "_") + "_responce"
        result = self._query(params) if method == QUERY else self._reply(params)
        return web.json_response({key: result})

    def _query(self, params: dict[str, Any]) -> dict[str, Any]:
        found = list(self.refunds.values())
        if params.get("ids"):
            wanted = set(str(params["ids"]).split(","))
            found = [r for r in found if str(r["id"]) in wanted]
        if "checkTimeStart" in params:
            start, end = _at(params["checkTimeStart"]), _at(params["checkTimeEnd"])
            found = [r for r in found if start <= _at(r["checkTime"]) <= end]
        found.sort(key=lambda r: (r["checkTime"], r["id"]))
        index, size = int(params.get("pageIndex", 1)), int(params.get("pageSize", 50))
        page = found[(index - 1) * size : index * size]
        return {"code": "0", "queryResult": {"result": page, "totalCount": len(found),
                                             "success": True}}  # fmt: skip

    def _reply(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self.refunds.get(str(params.get("id")))
        if record is None:
            return {"code": "0", "replyResult": {"success": False, "errorMessage": "退款单不存在"}}
        status = int(params.get("status", 0))
        if status != 9 and not params.get("remark"):
            return {"code": "0", "replyResult": {"success": False, "errorMessage": "审核备注必填"}}
        if record["status"] not in (0,):
            return {"code": "0", "replyResult": {"success": False, "errorMessage": "退款单已审核"}}
        record["status"] = status
        record["checkTime"] = self.clock().astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        return {"code": "0", "replyResult": {"success": True}}


def jd_settings(tmp_path: Path, db_url: str, api_url: str, **keys: str) -> Settings:
    path = make_settings(tmp_path, db_url).source
    values = {"app_key": APP_KEY, "app_secret": APP_SECRET, "access_token": TOKEN,
              "api_base": api_url, "shop_id": "jd-pets", **keys}  # fmt: skip
    lines = ["", "[channels.jd]", *(f'{k} = "{v}"' for k, v in values.items())]
    lines += ["timeout_seconds = 0.5", "poll_seconds = 60"]
    with Path(path).open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return load(path, env={})


@asynccontextmanager
async def running_jos(clock: Callable[[], datetime]) -> AsyncIterator[FakeJos]:
    fake = FakeJos(clock)
    server = TestServer(fake.app())
    await server.start_server()
    fake.url = str(server.make_url("/routerjson"))
    try:
        yield fake
    finally:
        await server.close()
