"""A fake Shopify on loopback: the webhook sender and the Admin GraphQL endpoint.

Webhooks are signed as shopify.dev describes, written out here: base64 of
HMAC-SHA256(client secret, raw body) in `X-Shopify-Hmac-Sha256`. The GraphQL
endpoint checks `X-Shopify-Access-Token` (401 otherwise, as Shopify answers),
knows returns (REQUESTED -> OPEN / DECLINED) and orders (transactions, refunds),
and records every mutation it applied in `mutations`. `fail_next(name, mode)`
makes the next call of that operation time out ("timeout", not applied), apply
and drop the answer ("drop"), answer HTTP 429/5xx (an int) or THROTTLED.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.settings import Settings, load
from tests.support import Client, make_settings

DOMAIN = "pet-supplies.myshopify.com"
SECRET = "shopify-client-secret"
TOKEN = "shpat_test_token"
VERSION = "2025-01"


def webhook_hmac(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def return_payload(
    return_id: int = 1001, *, price: str = "132.00", qty: int = 1, updated_at: str = ""
) -> dict[str, Any]:
    return {
        "id": return_id,
        "admin_graphql_api_id": f"gid://shopify/Return/{return_id}",
        "status": "requested",
        "order": {"id": 5001, "admin_graphql_api_id": "gid://shopify/Order/5001", "name": "#1001"},
        "return_line_items": [
            {
                "id": 9001,
                "quantity": qty,
                "return_reason": "defective",
                "return_reason_note": "开关失灵",
                "fulfillment_line_item": {
                    "line_item": {
                        "id": 7001,
                        "sku": "FEEDER-2",
                        "title": "自动喂食器",
                        "price": price,
                    }
                },
            }
        ],
        "total_return_line_items": qty,
        "created_at": "2026-11-23T10:00:00+08:00",
        "updated_at": updated_at or "2026-11-23T10:00:00+08:00",
    }


@dataclass
class FakeShopify:
    url: str = ""
    returns: dict[str, str] = field(default_factory=dict)  # gid -> status
    refunds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # order gid -> refunds
    mutations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: dict[str, list[int | str]] = field(default_factory=dict)
    refused: int = 0
    delay: float = 2.0

    def fail_next(self, operation: str, mode: int | str) -> None:
        self.failures.setdefault(operation, []).append(mode)

    @staticmethod
    def _operation(query: str) -> str:
        for name in ("returnApproveRequest", "returnDeclineRequest", "refundCreate"):
            if name in query:
                return name
        if "order(id" in query:
            return "order"
        if "return(id" in query:
            return "return"
        return "shop"

    async def graphql(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-Shopify-Access-Token") != TOKEN:
            self.refused += 1
            return web.json_response(
                {"errors": "[API] Invalid API key or access token"}, status=401
            )
        body = await request.json()
        operation = self._operation(body["query"])
        variables = body.get("variables") or {}
        queue = self.failures.get(operation)
        mode = queue.pop(0) if queue else None
        if mode == "timeout":
            await asyncio.sleep(self.delay)
            return web.json_response({"data": {}})
        if mode == "throttled":
            return web.json_response(
                {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}
            )
        if isinstance(mode, int):
            return web.json_response({"errors": "injected"}, status=mode)
        data = self._apply(operation, variables)
        if mode == "drop":
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("fake shopify dropped the answer")
        return web.json_response({"data": data})

    def _apply(self, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
        if operation == "shop":
            return {"shop": {"name": "Pet Supplies"}}
        if operation == "return":
            ident = variables["id"]
            status = self.returns.get(ident)
            return {"return": {"id": ident, "status": status} if status else None}
        if operation == "order":
            ident = variables["id"]
            sale = {
                "id": "gid://shopify/OrderTransaction/42",
                "kind": "SALE",
                "status": "SUCCESS",
                "gateway": "shopify_payments",
                "amountSet": {"shopMoney": {"amount": "132.00", "currencyCode": "CNY"}},
            }
            return {
                "order": {
                    "id": ident,
                    "refunds": self.refunds.get(ident, []),
                    "transactions": [sale],
                }
            }
        payload = variables["input"]
        self.mutations.append((operation, payload))
        if operation == "refundCreate":
            refund = {"id": f"gid://shopify/Refund/{len(self.mutations)}", "note": payload["note"]}
            self.refunds.setdefault(payload["orderId"], []).append(refund)
            return {"refundCreate": {"refund": refund, "userErrors": []}}
        ident = payload["id"]
        if self.returns.get(ident) != "REQUESTED":
            errors = [{"field": ["id"], "message": "Return is not requested"}]
            return {operation: {"return": None, "userErrors": errors}}
        self.returns[ident] = "OPEN" if operation == "returnApproveRequest" else "DECLINED"
        return {
            operation: {"return": {"id": ident, "status": self.returns[ident]}, "userErrors": []}
        }

    async def send(
        self,
        client: Client,
        topic: str,
        body: dict[str, Any] | bytes,
        event_id: str,
        *,
        secret: str = SECRET,
        domain: str = DOMAIN,
    ) -> tuple[int, dict[str, Any]]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": webhook_hmac(raw, secret),
            "X-Shopify-Shop-Domain": domain,
            "X-Shopify-API-Version": VERSION,
            "X-Shopify-Webhook-Id": f"wh-{event_id}",
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Triggered-At": "2026-11-23T02:00:00Z",
        }
        resp = await client.post("/webhooks/shopify", data=raw, headers=headers)
        return resp.status, await resp.json()


@asynccontextmanager
async def running_shopify() -> AsyncIterator[FakeShopify]:
    fake = FakeShopify()
    app = web.Application()
    app.router.add_post(f"/admin/api/{VERSION}/graphql.json", fake.graphql)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url(f"/admin/api/{VERSION}"))
    try:
        yield fake
    finally:
        await server.close()


def shopify_settings(tmp_path: Path, db_url: str, api_base: str) -> Settings:
    """The test settings with one Shopify shop on the fake, as a [[channels.shopify.shops]]."""
    path = make_settings(tmp_path, db_url).source
    lines = [
        "",
        "[channels.shopify]",
        "timeout_seconds = 0.5",
        "",
        "[[channels.shopify.shops]]",
        f'shop_domain = "{DOMAIN}"',
        f'secret = "{SECRET}"',
        f'access_token = "{TOKEN}"',
        f'api_base = "{api_base}"',
    ]
    with Path(path).open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return load(path, env={})
