"""The 抖店 reconciliation poll: `afterSale/List` by update time catches what a push missed.

Every `reconcile_minutes` per shop (bot/channels/polling.py runs it under the
shop's lease): the after-sales updated between the stored cursor (less an
overlap, for clock skew and late writes) and now, oldest first, each as a
`ChannelNotice` keyed by after-sale and `update_time`, so a version already
seen (in the overlap, or again next time) is one key and is handled once. Its
handling is a push's: the detail is fetched and applied only when newer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot import keys
from bot.channels.douyin_api import DouyinApi
from bot.channels.douyin_detail import CHANNEL
from bot.channels.values import id_str
from bot.events import ChannelNotice

OVERLAP_SECONDS = 120
PAGE_SIZE = 100
MAX_PAGES = 20


class DouyinReconciler:
    """One shop's poll; needs the shop's `shop_id` (the list does not name the shop)."""

    def __init__(self, api: DouyinApi, every: timedelta) -> None:
        self.api = api
        self.every = every
        self.shop = api.shop.shop_id
        self.name = f"{CHANNEL}:{self.shop}"

    async def poll(
        self, cursor: dict[str, Any] | None, now: datetime
    ) -> tuple[list[ChannelNotice], dict[str, Any]]:
        until = int(now.timestamp())
        since = (
            int(cursor["until"]) - OVERLAP_SECONDS
            if cursor
            else until - 2 * int(self.every.total_seconds())
        )
        notices: list[ChannelNotice] = []
        last = since
        for page in range(MAX_PAGES):
            data = await self.api.updated(since, until, page, PAGE_SIZE)
            for item in data.get("items") or ():
                info = item.get("aftersale_info") if isinstance(item, dict) else None
                if not isinstance(info, dict):
                    continue
                aftersale = id_str(info.get("aftersale_id"), "aftersale_info.aftersale_id")
                version = str(info.get("update_time") or "")
                if version.isdigit():
                    last = max(last, int(version))
                key = keys.key(CHANNEL, self.shop, "poll", aftersale, version)
                notices.append(ChannelNotice(key, CHANNEL, self.shop, aftersale, "poll"))
            if not data.get("has_more"):
                break
        else:
            until = last  # more than MAX_PAGES pages: go on from the last one seen next time
        return notices, {"until": until}
