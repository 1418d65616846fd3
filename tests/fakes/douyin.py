"""A fake 抖店 open platform on loopback: the message push sender and the signed API.

Both signing recipes are written out here from reference/channels.md, not
imported from bot/: the push's `event-sign` is hex MD5(app_key + body +
app_secret); an API call's `sign` is hex HMAC-SHA256(secret, secret + "app_key"…
"v2" + secret) over the exact `param_json` body. A wrong sign is answered the
way the platform does (code 40003, `isv.signature-invalid`), a wrong or
expired access token with `isv.access-token-expired`. `afterSale/operate`
enforces `update_time` as the version guard (50002 when stale) and moves the
after-sale as the platform would; `operations` records each one it applied.
`fail_next(path, mode)` makes the next call time out ("timeout": answered after
the client gave up, not applied), apply and then drop the connection ("drop"),
or answer an error code (an int).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.settings import Settings, load
from tests.support import Client, make_settings

APP_KEY = "7300000000000000001"
APP_SECRET = "douyin-test-secret"
SHOP_ID = "95250"
TOKEN = "douyin-token-1"
REFRESH = "douyin-refresh-1"
ADDRESS_ID = "880001"
REJECT_CODE = "11"  # a code from afterSale/rejectReasonCodeList
STATUS_AFTER = {201: 12, 111: 12, 101: 7, 301: 7, 202: 27, 102: 27, 112: 29}


def push_sign(body: bytes, app_key: str = APP_KEY, secret: str = APP_SECRET) -> str:
    return hashlib.md5(app_key.encode() + body + secret.encode()).hexdigest()  # noqa: S324


def api_sign(secret: str, app_key: str, method: str, body: str, timestamp: str) -> str:
    text = f"{secret}app_key{app_key}method{method}param_json{body}timestamp{timestamp}v2{secret}"
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


@dataclass
class FakeDouyin:
    clock: Callable[[], datetime]
    url: str = ""
    access_token: str = TOKEN
    refresh_token: str = REFRESH
    aftersales: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    logistics: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failures: dict[str, list[int | str]] = field(default_factory=dict)
    delay: float = 2.0

    def add(
        self,
        aftersale_id: str,
        *,
        amount: int = 13200,
        kind: int = 1,
        status: int = 6,
        update_time: int = 1_800_000_000,
        deadline: int = 1_800_086_400,
    ) -> None:
        self.aftersales[aftersale_id] = {
            "after_sale_id": int(aftersale_id),
            "after_sale_status": status,
            "after_sale_type": kind,
            "refund_status": 1,
            "refund_total_amount": amount,
            "refund_post_amount": 0,
            "apply_time": update_time,
            "update_time": update_time,
            "reason": "质量问题",
            "reason_code": 1,
            "reason_remark": "开关失灵",
            "evidence": ["https://img.example.com/1.jpg"],
            "status_deadline": deadline,
        }
        self.orders[aftersale_id] = {
            "shop_order_id": 4705288465508532862,
            "sku_order_infos": [
                {
                    "sku_order_id": 4705288465508532863,
                    "product_name": "自动喂食器",
                    "shop_sku_code": "FEEDER-2",
                    "item_quantity": 1,
                    "pay_amount": amount,
                }
            ],
        }

    def change(self, aftersale_id: str, **fields: Any) -> None:
        self.aftersales[aftersale_id].update(fields)

    def ship_back(self, aftersale_id: str, waybill: str, carrier: str) -> None:
        info = self.aftersales[aftersale_id]
        info.update(after_sale_status=11, update_time=info["update_time"] + 60)
        self.logistics[aftersale_id] = {"tracking_no": waybill, "company_name": carrier}

    def fail_next(self, path: str, mode: int | str) -> None:
        self.failures.setdefault(path, []).append(mode)

    def applied(self, kind: int) -> list[dict[str, Any]]:
        return [item for k, item in self.operations if k == kind]

    # The API --------------------------------------------------------------------

    def _error(self, code: int, sub_code: str, msg: str) -> web.Response:
        return web.json_response({"code": code, "sub_code": sub_code, "msg": msg, "data": {}})

    def _ok(self, data: dict[str, Any]) -> web.Response:
        return web.json_response({"code": 10000, "msg": "success", "data": data})

    async def api(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body = (await request.read()).decode()
        q = request.query
        method = path.replace("/", ".")
        self.calls.append(path)
        if q.get("method") != method or q.get("app_key") != APP_KEY or q.get("v") != "2":
            self.refused.append(f"{path}: bad system parameters")
            return self._error(40003, "isv.parameter-invalid", "系统参数错误")
        expected = api_sign(APP_SECRET, APP_KEY, method, body, q.get("timestamp", ""))
        if q.get("sign_method") != "hmac-sha256" or not hmac.compare_digest(
            q.get("sign", ""), expected
        ):
            self.refused.append(f"{path}: bad sign")
            return self._error(40003, "isv.signature-invalid", "签名校验失败")
        params = json.loads(body)
        if path == "token/refresh":
            return self._refresh(params)
        if q.get("access_token") != self.access_token:
            return self._error(40003, "isv.access-token-expired", "access_token已过期")
        mode = self.failures.get(path, []).pop(0) if self.failures.get(path) else None
        if mode == "timeout":
            await asyncio.sleep(self.delay)
            return self._error(20001, "isp.timeout", "内部服务超时")
        if isinstance(mode, int):
            return self._error(mode, "isp.service-error", "注入的错误")
        answer = self._handle(path, params)
        if mode == "drop":
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("fake douyin dropped the answer")
        return answer

    def _refresh(self, params: dict[str, Any]) -> web.Response:
        if params.get("refresh_token") != self.refresh_token:
            return self._error(50001, "dop.token-generate-failed:token-invalid", "token不存在")
        self.access_token, self.refresh_token = self.access_token + "x", self.refresh_token + "x"
        data = {"access_token": self.access_token, "refresh_token": self.refresh_token}
        return self._ok({**data, "expires_in": 604800, "shop_id": int(SHOP_ID)})

    def _handle(self, path: str, params: dict[str, Any]) -> web.Response:
        if path == "afterSale/Detail":
            ident = str(params.get("after_sale_id"))
            if ident not in self.aftersales:
                return self._error(50002, "isv.business-failed:404", "售后单不存在")
            process: dict[str, Any] = {"after_sale_info": self.aftersales[ident]}
            if ident in self.logistics:
                process["logistics_info"] = {"return": self.logistics[ident]}
            return self._ok({"process_info": process, "order_info": self.orders[ident]})
        if path == "afterSale/operate":
            return self._operate(params)
        if path == "afterSale/List":
            start, end = params.get("update_start_time", 0), params.get("update_end_time", 0)
            items = [
                {"aftersale_info": {"aftersale_id": str(i["after_sale_id"]), **i}}
                for i in self.aftersales.values()
                if start <= i["update_time"] <= end
            ]
            return self._ok({"items": items, "has_more": False, "total": len(items)})
        return self._error(70000, "isp.api-service-off", "API不存在")

    def _operate(self, params: dict[str, Any]) -> web.Response:
        kind = params["type"]
        (item,) = params["items"]
        info = self.aftersales.get(str(item["aftersale_id"]))
        if info is None:
            return self._error(20000, "isp.service-error:10000", "存在无效的售后单")
        if item.get("update_time") and item["update_time"] != info["update_time"]:
            return self._error(50002, "isv.business-failed:20309541", "售后状态错误")
        if kind in (101, 301) and not (item.get("logistics") or {}).get("receiver_address_id"):
            return self._error(40004, "isv.parameter-invalid:11000", "缺少退货地址")
        self.operations.append((kind, item))
        info["after_sale_status"] = STATUS_AFTER[kind]
        info["update_time"] += 1
        if STATUS_AFTER[kind] == 12:
            info["refund_status"] = 3
        return self._ok({"items": [{"aftersale_id": info["after_sale_id"], "status_code": 0}]})

    # The push sender --------------------------------------------------------------

    def message(self, tag: int, aftersale_id: str, msg_id: str) -> dict[str, Any]:
        """One push element the way zsmhub/bububa model it: string tag and data."""
        info = self.aftersales[aftersale_id]
        data = {
            "aftersale_id": aftersale_id,
            "aftersale_status": info["after_sale_status"],
            "aftersale_type": info["after_sale_type"],
            "p_id": 4705288465508532862,
            "s_id": 4705288465508532863,
            "shop_id": int(SHOP_ID),
            "refund_amount": info["refund_total_amount"],
            "update_time": info["update_time"],
        }
        return {"tag": str(tag), "msg_id": msg_id, "data": json.dumps(data)}

    async def push(
        self, client: Client, messages: list[dict[str, Any]] | bytes, *, secret: str = APP_SECRET
    ) -> tuple[int, dict[str, Any]]:
        raw = messages if isinstance(messages, bytes) else json.dumps(messages).encode()
        headers = {
            "Content-Type": "application/json",
            "app-id": APP_KEY,
            "event-sign": push_sign(raw, APP_KEY, secret),
        }
        resp = await client.post("/webhooks/douyin", data=raw, headers=headers)
        return resp.status, await resp.json()


@asynccontextmanager
async def running_douyin(clock: Callable[[], datetime]) -> AsyncIterator[FakeDouyin]:
    fake = FakeDouyin(clock=clock)
    app = web.Application()
    app.router.add_post("/{path:.+}", fake.api)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()


def douyin_settings(tmp_path: Path, db_url: str, api_url: str, **keys: str) -> Settings:
    """The test settings with one 抖店 shop on the fake (single-shop CONTRACT keys)."""
    path = make_settings(tmp_path, db_url).source
    values = {
        "app_key": APP_KEY,
        "app_secret": APP_SECRET,
        "access_token": TOKEN,
        "refresh_token": REFRESH,
        "api_base": api_url,
        "shop_id": SHOP_ID,
        "return_address_id": ADDRESS_ID,
        "reject_reason_code": REJECT_CODE,
        **keys,
    }
    lines = ["", "[channels.douyin]", *(f'{k} = "{v}"' for k, v in values.items())]
    lines.append("timeout_seconds = 0.5")
    with Path(path).open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return load(path, env={})
