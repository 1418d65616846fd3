"""Shopify decisions through the Admin GraphQL API: approve, decline, refund.

`POST {api_base or https://{shop}/admin/api/{version}}/graphql.json` with
`X-Shopify-Access-Token`. Errors for the outbox: HTTP 429 or 5xx, a timeout, a
dropped connection and a `THROTTLED` error are retryable; 401/403/404, other
GraphQL errors and `userErrors` are permanent.

Each decision first reads the state it would change, so a retry after a lost
answer does nothing twice: a return already OPEN is not approved again, one
already DECLINED not declined again, and a refund is created only when the
order has none whose note carries the case's refund id (`returnhub:<RC-…>`).
The refund goes to the order's successful sale (or capture) transaction, for the
case's refund amount in the shop's currency.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.channels.shops import ShopifyShop
from bot.outbox import PermanentError, RetryableError

log = logging.getLogger(__name__)

CHANNEL = "shopify"
RETURN_STATUS = "query($id: ID!) { return(id: $id) { id status } }"
APPROVE = (
    "mutation($input: ReturnApproveRequestInput!) { returnApproveRequest(input: $input) "
    "{ return { id status } userErrors { field message } } }"
)
DECLINE = (
    "mutation($input: ReturnDeclineRequestInput!) { returnDeclineRequest(input: $input) "
    "{ return { id status } userErrors { field message } } }"
)
ORDER_MONEY = (
    "query($id: ID!) { order(id: $id) { id refunds { id note } transactions "
    "{ id kind status gateway amountSet { shopMoney { amount currencyCode } } } } }"
)
REFUND = (
    "mutation($input: RefundInput!) { refundCreate(input: $input) "
    "{ refund { id note } userErrors { field message } } }"
)
SHOP = "{ shop { name } }"


def gid(kind: str, value: str) -> str:
    return value if value.startswith("gid://") else f"gid://shopify/{kind}/{value}"


def marker(refund_id: str) -> str:
    return f"returnhub:{refund_id}"


class ShopifyChannel:
    """The configured Shopify shops' outbox client and health check."""

    name = CHANNEL

    def __init__(
        self,
        shops: list[ShopifyShop],
        version: str,
        http: Callable[[], aiohttp.ClientSession],
        *,
        timeout: float = 10.0,
    ) -> None:
        self.shops = shops
        self.version = version
        self.http = http
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    def _shop(self, domain: str) -> ShopifyShop:
        shop = next((s for s in self.shops if s.shop_domain.lower() == domain.lower()), None)
        if shop is None:
            raise PermanentError(f"shopify shop {domain!r} is not configured")
        return shop

    def url(self, shop: ShopifyShop) -> str:
        base = shop.api_base or f"https://{shop.shop_domain}/admin/api/{self.version}"
        return f"{base.rstrip('/')}/graphql.json"

    async def graphql(
        self, shop: ShopifyShop, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The `data` of one GraphQL call; raises Retryable/PermanentError."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        headers = {"Content-Type": "application/json", "X-Shopify-Access-Token": shop.access_token}
        try:
            async with self.http().post(
                self.url(shop), data=body, headers=headers, timeout=self.timeout
            ) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"shopify {shop.shop_domain}: {type(exc).__name__}") from exc
        if status == 429 or status >= 500:
            raise RetryableError(f"shopify {shop.shop_domain}: HTTP {status}")
        if status != 200:
            raise PermanentError(f"shopify {shop.shop_domain}: HTTP {status}: {text[:200]}")
        try:
            answer = json.loads(text)
        except ValueError:
            raise PermanentError(f"shopify {shop.shop_domain}: answer is not JSON") from None
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if errors:
            codes = {str((e.get("extensions") or {}).get("code")) for e in errors}
            message = f"shopify {shop.shop_domain}: {json.dumps(errors)[:300]}"
            raise RetryableError(message) if "THROTTLED" in codes else PermanentError(message)
        data = answer.get("data") if isinstance(answer, dict) else None
        return data if isinstance(data, dict) else {}

    async def send_event(self, payload: dict[str, Any], event_id: str) -> None:
        """approved -> returnApproveRequest; rejected -> returnDeclineRequest."""
        event = payload.get("event")
        if event not in ("approved", "rejected") or payload.get("kind") == "refund_only":
            return
        shop = self._shop(str(payload.get("shop", "")))
        ident = gid("Return", str(payload.get("external_id", "")))
        found = await self.graphql(shop, RETURN_STATUS, {"id": ident})
        status = ((found.get("return") or {}).get("status")) or ""
        wanted = "OPEN" if event == "approved" else "DECLINED"
        if status == wanted:
            log.info("shopify %s: return %s is already %s", event_id, ident, status)
            return
        if status != "REQUESTED":
            raise PermanentError(
                f"shopify return {ident} is {status or 'unknown'}: cannot {event}"
            )
        if event == "approved":
            field, data = (
                "returnApproveRequest",
                await self.graphql(shop, APPROVE, {"input": {"id": ident}}),
            )
        else:
            note = str(payload.get("reason") or "")[:500]
            variables = {"input": {"id": ident, "declineReason": "OTHER", "declineNote": note}}
            field, data = "returnDeclineRequest", await self.graphql(shop, DECLINE, variables)
        _user_errors(field, data)

    async def refund(self, payload: dict[str, Any], event_id: str) -> bool:
        """refundCreate on the order, once per refund id."""
        shop = self._shop(str(payload.get("shop", "")))
        order = gid("Order", str(payload.get("order_id", "")))
        note = marker(str(payload.get("refund_id", "")))
        found = (await self.graphql(shop, ORDER_MONEY, {"id": order})).get("order") or {}
        if any(note in str(r.get("note") or "") for r in found.get("refunds") or ()):
            log.info("shopify %s: order %s already has refund %s", event_id, order, note)
            return True
        parent = next(
            (
                t
                for t in found.get("transactions") or ()
                if t.get("kind") in ("SALE", "CAPTURE") and t.get("status") == "SUCCESS"
            ),
            None,
        )
        if parent is None:
            raise PermanentError(f"shopify order {order}: no successful payment to refund")
        transaction = {
            "orderId": order,
            "parentId": parent["id"],
            "kind": "REFUND",
            "gateway": parent.get("gateway", ""),
            "amount": str(payload.get("amount", "0")),
        }
        variables = {"input": {"orderId": order, "note": note, "transactions": [transaction]}}
        _user_errors("refundCreate", await self.graphql(shop, REFUND, variables))
        return True

    async def check(self) -> list[tuple[str, bool, str]]:
        """(shop, works, what): `{ shop { name } }`, the cheapest authenticated query."""
        results = []
        for shop in self.shops:
            try:
                data = await self.graphql(shop, SHOP)
            except Exception as exc:  # noqa: BLE001 - reported per shop, in words
                results.append((shop.label, False, str(exc)[:200]))
            else:
                name = (data.get("shop") or {}).get("name", "")
                results.append((shop.label, True, f"凭证可用（{name}）/ credentials work"))
        return results


def _user_errors(field: str, data: dict[str, Any]) -> None:
    errors = (data.get(field) or {}).get("userErrors") or []
    if errors:
        raise PermanentError(f"shopify {field}: {json.dumps(errors, ensure_ascii=False)[:300]}")
