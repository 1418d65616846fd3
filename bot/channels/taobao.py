"""Taobao/Tmall: TMC notices polled, the refund detail behind each, decisions sent back.

Inbound: `TmcPoller` consumes the app's TMC queue by HTTP polling
(`taobao.tmc.messages.consume`, bot/channels/polling.py runs it under a lease,
so one replica polls). Each refund message becomes a `ChannelNotice` keyed by its
TMC id; the runner stores the notices, then the cursor, and the next poll
confirms exactly those ids (`taobao.tmc.messages.confirm`): a message is
confirmed only after it is stored, and one lost in a crash before that comes
back from TMC (about a minute later) and dedupes on its key. A message that can
never be applied (not JSON, no refund id, a shop we do not serve) is confirmed
too, logged and reported to the admins, never retried forever. The dispatcher
then fetches the detail (`taobao.refund.get`) and the intake applies it when
newer (`refund_version`).

Outbound (the outbox's `ChannelClient`), each call preceded by a fresh detail so
a decision the platform already shows is not sent twice:
- approved (a return) -> `taobao.rp.returngoods.agree`;
- rejected -> `taobao.refund.refuse` with the reason;
- refund_released -> `taobao.rp.refunds.agree`, `refund_id|fen|refund_version|phase`.
  The version is the detail's: if the buyer changed the amount since the
  decision, the call is refused (the change arrives as a newer notice). Above the
  platform's threshold it wants the SMS code the seller received: the admins are
  told so and the refund stays queued (retried), never lost.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.channels import base, taobao_map
from bot.channels.api_errors import Refused, Transient
from bot.channels.form_api import Alert
from bot.channels.top import TopClient
from bot.channels.values import minor_from_decimal
from bot.events import ChannelNotice, ReturnRequest
from bot.money import parse_yuan, yuan
from bot.outbox import PermanentError

log = logging.getLogger(__name__)

CHANNEL = taobao_map.CHANNEL
BATCH = 100  # messages per consume call (TMC allows 10 to 200)
ROUNDS = 5  # consume calls per poll while the queue keeps answering full batches
DONE = {
    "approve": frozenset({"WAIT_BUYER_RETURN_GOODS", "WAIT_SELLER_CONFIRM_GOODS", "SUCCESS"}),
    "reject": frozenset({"SELLER_REFUSE_BUYER", "CLOSED"}),
    "refund": frozenset({"SUCCESS"}),
}


class TaobaoChannel(base.Deciding):
    """The configured sellers (by seller nick), each with its TOP client."""

    name = CHANNEL

    def __init__(self, clients: dict[str, TopClient], alert: Alert | None = None) -> None:
        self.clients = clients
        self.alert = alert
        self._asked: set[str] = set()  # refunds whose SMS code the admins were asked for

    def client_for(self, shop: str) -> TopClient:
        client = self.clients.get(shop)
        if client is None:
            raise PermanentError(f"taobao shop {shop!r} is not configured")
        return client

    async def detail(self, shop: str, refund_id: str) -> dict[str, Any]:
        answer = await self.client_for(shop).call(
            "taobao.refund.get", refund_id=refund_id, fields=taobao_map.DETAIL_FIELDS
        )
        refund = answer.get("refund")
        if not isinstance(refund, dict):
            raise Transient(f"taobao.refund.get {refund_id}: no refund in the answer")
        return refund

    async def fetch(self, notice: ChannelNotice) -> ReturnRequest:
        refund = await self.detail(notice.shop, notice.external_id)
        return taobao_map.request(refund, key=notice.key, shop=notice.shop)

    async def _decide(self, payload: dict[str, Any], decision: str, event_id: str) -> None:
        shop, refund_id = str(payload.get("shop", "")), str(payload.get("external_id", ""))
        client = self.client_for(shop)
        refund = await self.detail(shop, refund_id)
        if str(refund.get("status")) in DONE[decision]:
            log.info("taobao %s: %s already %s; not sent again", event_id, refund_id, decision)
            return
        if decision == "approve":
            await client.call("taobao.rp.returngoods.agree", refund_id=refund_id)
        elif decision == "reject":
            reason = str(payload.get("reason") or "商家审核未通过")[:200]
            await client.call("taobao.refund.refuse", refund_id=refund_id, refuse_message=reason)
        else:
            await self._agree(client, payload, refund)
        log.info("taobao %s: %s on refund %s done", event_id, decision, refund_id)

    async def _agree(
        self, client: TopClient, payload: dict[str, Any], refund: dict[str, Any]
    ) -> None:
        refund_id = str(refund.get("refund_id"))
        fen = parse_yuan(str(payload.get("amount") or "0"), allow_zero=True)
        asked = minor_from_decimal(refund.get("refund_fee"), "refund_fee")
        if fen <= 0 or fen > asked:
            raise Refused(
                "taobao.rp.refunds.agree", "amount", f"退款金额 {fen} 分超出申请 {asked} 分"
            )
        if payload.get("amount_fen") not in (None, asked):
            raise Refused(
                "taobao.rp.refunds.agree", "changed", "买家已修改退款申请，等待新版本同步后再处理"
            )
        phase = str(refund.get("refund_phase") or "")
        info = f"{refund_id}|{fen}|{refund.get('refund_version')}|{phase}"
        answer = await client.call("taobao.rp.refunds.agree", refund_infos=info)
        if answer.get("succ") in (True, "true"):
            return
        results = (answer.get("results") or {}).get("refund_mapping_result") or []
        message = "；".join(str(r.get("message") or "") for r in results if isinstance(r, dict))
        message = message or str(answer.get("message") or answer.get("msg_code") or "")
        if "验证码" in message:
            # UNCONFIRMED how the platform words it; the seller's SMS code is needed.
            await self._ask_for_code(payload, refund_id, fen)
            raise Transient(f"taobao.rp.refunds.agree {refund_id}: 需要短信验证码（{message}）")
        raise Refused("taobao.rp.refunds.agree", str(answer.get("msg_code") or ""), message)

    async def _ask_for_code(self, payload: dict[str, Any], refund_id: str, fen: int) -> None:
        if refund_id in self._asked or self.alert is None:
            return
        self._asked.add(refund_id)
        await self.alert(
            f"⚠ 淘宝退款 {payload.get('case_id')}（退款单 {refund_id}，{yuan(fen)} 元）需要卖家的"
            "短信验证码才能完成：请在淘宝千牛后台手动同意这笔退款；机器人会继续重试，"
            "平台显示已退款后自动结案"
        )

    async def check(self) -> list[tuple[str, bool, str]]:
        """(shop, works, what): the cheapest call with the seller's session."""
        found = []
        for shop, client in self.clients.items():
            try:
                await client.call("taobao.tmc.user.get", nick=shop, fields="user_nick,topics")
            except Exception as exc:  # noqa: BLE001 - reported per shop, in words
                found.append((shop, False, str(exc)[:200]))
            else:
                found.append((shop, True, "凭证可用 / credentials work"))
        return found


class TmcPoller:
    """One app's TMC queue (its group), for all of its sellers."""

    def __init__(
        self,
        client: TopClient,
        shops: frozenset[str],
        every: timedelta,
        group: str = "default",
        alert: Alert | None = None,
    ) -> None:
        self.client, self.shops, self.every, self.group = client, shops, every, group
        self.alert = alert
        self.name = f"{CHANNEL}:{client.app_key}:{group}"

    async def poll(
        self, cursor: dict[str, Any] | None, now: datetime
    ) -> tuple[list[ChannelNotice], dict[str, Any]]:
        stored = [str(i) for i in (cursor or {}).get("confirm", ())]
        await self._confirm(stored)  # stored by the last run: now TMC may forget them
        notices: list[ChannelNotice] = []
        handed: list[str] = []
        for _ in range(ROUNDS):
            answer = await self.client.call(
                "taobao.tmc.messages.consume", group_name=self.group, quantity=BATCH
            )
            messages = (answer.get("messages") or {}).get("tmc_message") or []
            for message in messages:
                handed.append(str(message.get("id")))
                notice = await self._notice(message)
                if notice is not None:
                    notices.append(notice)
            if len(messages) < BATCH:
                break
        return notices, {"confirm": handed}

    async def _notice(self, message: dict[str, Any]) -> ChannelNotice | None:
        try:
            found = taobao_map.notice(message)
        except ValueError as exc:
            await self._bad(message, str(exc))
            return None
        if found is None:
            return None  # a topic we do not follow: confirmed with the rest
        if found.shop not in self.shops:
            await self._bad(message, f"店铺 {found.shop} 未配置")
            return None
        key = taobao_map.notice_key(found.shop, found.message_id)
        return ChannelNotice(key, CHANNEL, found.shop, found.refund_id, found.topic)

    async def _bad(self, message: dict[str, Any], why: str) -> None:
        log.error("taobao TMC message %s dropped: %s", message.get("id"), why)
        if self.alert is not None:
            await self.alert(f"⚠ 淘宝消息 {message.get('id')} 无法处理，已确认丢弃：{why}")

    async def _confirm(self, ids: list[str]) -> None:
        for start in range(0, len(ids), 200):
            chunk = ids[start : start + 200]
            await self.client.call(
                "taobao.tmc.messages.confirm", group_name=self.group, s_message_ids=chunk
            )
