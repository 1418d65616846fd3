"""Douyin Shop (抖店): the detail behind each notice, and decisions sent back.

Inbound: a stored `ChannelNotice` (douyin_push.py, or the reconciliation poll)
is handled off the acknowledgement path by the dispatcher: `fetch` calls
`afterSale/Detail` and returns the `ReturnRequest` the intake applies. A
failed fetch (API down, rate limited) raises: the notice stays recorded and the
dispatcher retries it with backoff, so an outage loses nothing.

Outbound (the `ChannelClient` the outbox performs): every decision is one
`afterSale/operate` call carrying the case's channel version as `update_time`,
the platform's guard against deciding on a request that changed meanwhile.
Before it, the current detail is read: a decision the platform already shows
(our earlier call went through but its answer was lost) is not sent again, and
the operation type follows the after-sale's type and stage:

| decision | waiting for the seller (6)                  | returned, awaiting receipt (11) |
|----------|---------------------------------------------|---------------------------------|
| approve  | 201 refund types · 101 return · 301 exchange | 111 agree refund               |
| reject   | 202 refund types · 102 return                | 112 reject refund              |
| refund   | 201                                          | 111                            |

201/202/101/301 are confirmed (reference/channels.md §2.4); 102/111/112 follow the
platform's numbering and are unconfirmed (docs/channels.md). A later `update_time`
than the case's is used only when the decided fields (amount, type) are unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp

from bot.channels import base
from bot.channels.douyin_api import Alert, DouyinApi
from bot.channels.douyin_detail import (
    CHANNEL,
    EXCHANGE,
    REFUND_SHIPPED,
    REFUND_UNSHIPPED,
    RETURN,
    SHIPPED,
    info_of,
    to_request,
)
from bot.channels.shops import DouyinShop
from bot.events import ChannelNotice, ReturnRequest
from bot.outbox import PermanentError
from storage.db import Database

log = logging.getLogger(__name__)

WAITING = 6
REFUND_TYPES = frozenset({REFUND_SHIPPED, REFUND_UNSHIPPED, 6})
# Operation type -> the statuses showing it has been done.
DONE = {
    201: frozenset({12, 51, 53}),
    111: frozenset({12, 53}),
    101: frozenset({7, 11, 12}),
    301: frozenset({7, 11, 13, 14}),
    202: frozenset({27, 28}),
    102: frozenset({27, 28}),
    112: frozenset({29, 28}),
}


def _int(info: dict[str, Any], name: str) -> int:
    value = info.get(name, -1)
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else -1


def operation(decision: str, info: dict[str, Any]) -> int:
    """The `afterSale/operate` type for `decision` on the after-sale as it stands."""
    status, kind = _int(info, "after_sale_status"), _int(info, "after_sale_type")
    if status == SHIPPED:
        return 112 if decision == "reject" else 111
    if status != WAITING:
        raise PermanentError(f"售后单状态 {status} 不能{decision} / status {status}")
    if decision == "reject":
        return 202 if kind in REFUND_TYPES else 102
    if kind in REFUND_TYPES or decision == "refund":
        return 201
    if kind == RETURN:
        return 101
    if kind == EXCHANGE:
        return 301
    raise PermanentError(f"抖店售后类型 {kind} 请在抖店后台处理 / type {kind} not supported")


class DouyinChannel(base.Deciding):
    """All configured 抖店 shops: notice fetching, the outbox client, the health check.
    A refund-only case waits for its refund command (`base.decision`)."""

    name = CHANNEL

    def __init__(
        self,
        shops: list[DouyinShop],
        base: str,
        http: Callable[[], aiohttp.ClientSession],
        clock: Callable[[], datetime],
        *,
        timeout: float = 10.0,
        alert: Alert | None = None,
        db: Database | None = None,
    ) -> None:
        self.shops = shops
        self.apis = [
            DouyinApi(s, base, http, clock, timeout=timeout, alert=alert, db=db) for s in shops
        ]

    def api_for(self, shop_id: str) -> DouyinApi:
        api = next((a for a in self.apis if a.shop.shop_id == shop_id), None)
        api = api or next((a for a in self.apis if not a.shop.shop_id), None)
        if api is None:
            raise PermanentError(f"douyin shop {shop_id!r} is not configured")
        return api

    async def fetch(self, notice: ChannelNotice) -> ReturnRequest:
        """The after-sale's current detail as a neutral event keyed like the notice."""
        data = await self.api_for(notice.shop).detail(notice.external_id)
        return to_request(data, key=notice.key, shop=notice.shop)

    async def _decide(self, payload: dict[str, Any], decision: str, event_id: str) -> None:
        api = self.api_for(str(payload.get("shop", "")))
        aftersale = str(payload.get("external_id", ""))
        info = info_of(await api.detail(aftersale))
        status = _int(info, "after_sale_status")
        if any(status in done for done in _done_for(decision)):
            log.info("douyin %s: %s already shows %s; not sent again", event_id, aftersale, status)
            return
        kind = operation(decision, info)
        item: dict[str, Any] = {
            "aftersale_id": aftersale,
            "update_time": self._version(payload, info),
        }
        if kind in (101, 301):
            if not api.shop.return_address_id.isdigit():
                raise PermanentError(
                    f"抖店 {api.shop.label} 未配置 return_address_id（退货地址 id），无法同意退货"
                )
            item["logistics"] = {"receiver_address_id": int(api.shop.return_address_id)}
        if decision == "reject":
            if not api.shop.reject_reason_code.isdigit():
                raise PermanentError(
                    f"抖店 {api.shop.label} 未配置 reject_reason_code（驳回原因编码），无法驳回"
                )
            reason = str(payload.get("reason") or "商家审核未通过")[:200]
            code = int(api.shop.reject_reason_code)
            item.update(reason=reason, remark=reason, reject_reason_code=code)
        await api.operate(kind, item)
        log.info("douyin %s: afterSale/operate %d on %s done", event_id, kind, aftersale)

    @staticmethod
    def _version(payload: dict[str, Any], info: dict[str, Any]) -> int:
        ours = str(payload.get("version", ""))
        current = _int(info, "update_time")
        if not ours.isdigit():
            return current
        unchanged = _int(info, "refund_total_amount") == payload.get("amount_fen")
        # A newer version whose decided fields are the same (a deadline moved) is
        # still the request that was decided; anything else the platform refuses.
        return current if unchanged and current > int(ours) else int(ours)

    async def check(self) -> list[tuple[str, bool, str]]:
        """(shop, works, what) per shop: the cheapest authenticated call (`afterSale/List`)."""
        results = []
        for api in self.apis:
            try:
                await api.updated(0, 1, 0, size=1)
            except Exception as exc:  # noqa: BLE001 - reported per shop, in words
                results.append((api.shop.label, False, str(exc)[:200]))
            else:
                results.append((api.shop.label, True, "凭证可用 / credentials work"))
        return results


def _done_for(decision: str) -> list[frozenset[int]]:
    if decision == "reject":
        return [DONE[202], DONE[112]]
    if decision == "approve":
        return [DONE[101], DONE[301]]
    return [DONE[201]]
