"""JD POP: refund applications polled by check time, decisions sent back with replyRefund.

Inbound: `JdPoller` asks `queryPageList` for the applications reviewed (or
applied for) in the window since its cursor, less an overlap for late writes and
clock skew, oldest first, page by page; each record is a `ChannelNotice` whose
key is the record's state (bot/channels/jd_map.py), so the overlap and a
re-poll cost nothing twice, and the cursor moves only once the notices are
stored (bot/channels/polling.py). The detail is the record itself, fetched again
by id when the notice is handled, so the newest state is what applies.

Outbound: JD pays a pre-shipment refund itself once the seller approves it, so
`approved` (and a refund release not yet approved) is `replyRefund` status 1,
`rejected` is status 2 with the reason; the current record is read first, and an
application already reviewed is not reviewed again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.channels import jd_map
from bot.channels.api_errors import Refused, Transient
from bot.channels.jos import JosClient
from bot.channels.top import china_time
from bot.events import ChannelNotice, ReturnRequest
from bot.outbox import PermanentError

log = logging.getLogger(__name__)

CHANNEL = jd_map.CHANNEL
QUERY = "jingdong.pop.afs.soa.refundapply.queryPageList"
REPLY = "jingdong.pop.afs.soa.refundapply.replyRefund"
OVERLAP = timedelta(minutes=5)
PAGE_SIZE = 50
MAX_PAGES = 20
APPROVED = frozenset({1, 3, 5, 6, 7, 8, 9, 10, 16, 17, 27})
REJECTED = frozenset({2, 4})


class JdAccount:
    """One JD shop's client and the unit its `applyRefundSum` comes in."""

    def __init__(self, shop: str, client: JosClient, unit: str, operator: str) -> None:
        self.shop, self.client, self.unit, self.operator = shop, client, unit, operator


class JdChannel:
    name = CHANNEL

    def __init__(self, shops: dict[str, JdAccount]) -> None:
        self.shops = shops

    def shop_for(self, shop: str) -> JdAccount:
        found = self.shops.get(shop)
        if found is None:
            raise PermanentError(f"jd shop {shop!r} is not configured")
        return found

    async def record(self, shop: str, apply_id: str) -> dict[str, Any]:
        answer = await self.shop_for(shop).client.call(
            QUERY, ids=apply_id, pageIndex=1, pageSize=1
        )
        rows = (answer.get("queryResult") or {}).get("result") or []
        found = [r for r in rows if isinstance(r, dict) and str(r.get("id")) == apply_id]
        if not found:
            raise Transient(f"jd refund apply {apply_id} not found (yet)")
        return found[0]

    async def fetch(self, notice: ChannelNotice) -> ReturnRequest:
        shop = self.shop_for(notice.shop)
        record = await self.record(notice.shop, notice.external_id)
        return jd_map.request(record, key=notice.key, shop=notice.shop, unit=shop.unit)

    async def send_event(self, payload: dict[str, Any], event_id: str) -> None:
        event = payload.get("event")
        if event == "approved":
            await self._reply(payload, 1, event_id)
        elif event == "rejected":
            await self._reply(payload, 2, event_id)

    async def refund(self, payload: dict[str, Any], event_id: str) -> bool:
        await self._reply(payload, 1, event_id)
        return True

    async def _reply(self, payload: dict[str, Any], status: int, event_id: str) -> None:
        shop = self.shop_for(str(payload.get("shop", "")))
        apply_id = str(payload.get("external_id", ""))
        current = int((await self.record(shop.shop, apply_id)).get("status", -1))
        done = APPROVED if status == 1 else REJECTED
        if current in done:
            log.info("jd %s: %s already reviewed (%s)", event_id, apply_id, current)
            return
        if current != 0:
            raise Refused(REPLY, str(current), f"退款申请状态 {current}，不能再审核")
        params: dict[str, Any] = {"id": apply_id, "status": status, "checkUserName": shop.operator}
        if status == 1:
            params["remark"] = "同意退款"
        else:
            params.update(
                remark=str(payload.get("reason") or "商家审核未通过")[:200], rejectType=5
            )
        answer = await shop.client.call(REPLY, **params)
        result = answer.get("replyResult") or {}
        if not (isinstance(result, dict) and result.get("success") in (True, "true")):
            message = str(result.get("errorMessage") if isinstance(result, dict) else result)
            raise Refused(REPLY, "refused", message)
        log.info("jd %s: replyRefund %d on %s done", event_id, status, apply_id)

    async def check(self) -> list[tuple[str, bool, str]]:
        found = []
        for name, shop in self.shops.items():
            try:
                await shop.client.call(QUERY, pageIndex=1, pageSize=1)
            except Exception as exc:  # noqa: BLE001 - reported per shop, in words
                found.append((name, False, str(exc)[:200]))
            else:
                found.append((name, True, "凭证可用 / credentials work"))
        return found


class JdPoller:
    """One shop's poll by check-time window."""

    def __init__(self, shop: JdAccount, every: timedelta) -> None:
        self.shop, self.every = shop, every
        self.name = f"{CHANNEL}:{shop.shop}"

    async def poll(
        self, cursor: dict[str, Any] | None, now: datetime
    ) -> tuple[list[ChannelNotice], dict[str, Any]]:
        until = now
        since = (
            datetime.fromisoformat(cursor["until"]) - OVERLAP if cursor else now - 2 * self.every
        )
        notices: list[ChannelNotice] = []
        window = {"checkTimeStart": china_time(since), "checkTimeEnd": china_time(until)}
        for page in range(1, MAX_PAGES + 1):
            answer = await self.shop.client.call(
                QUERY, pageIndex=page, pageSize=PAGE_SIZE, **window
            )
            rows = (answer.get("queryResult") or {}).get("result") or []
            for record in rows:
                notices.append(self._notice(record))
            if len(rows) < PAGE_SIZE:
                break
        else:
            until = jd_map.checked_at(rows[-1])  # more than MAX_PAGES: go on from there
        return notices, {"until": until.isoformat()}

    def _notice(self, record: dict[str, Any]) -> ChannelNotice:
        key = jd_map.notice_key(record, self.shop.shop)
        return ChannelNotice(key, CHANNEL, self.shop.shop, str(record.get("id")), "poll")
