"""`returnhub channels check`: each configured shop's cheapest authenticated API call.

For an operator setting a channel up: it says, per shop and in Chinese, whether
the credentials work (抖店 `afterSale/List` for one row, 淘宝 `taobao.tmc.user.get`,
京东 `queryPageList` for one row, Shopify `{ shop { name } }`)
and, when not, what the platform answered. It sends nothing a shop would see.
"""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp

from bot.channels.wiring import Marketplaces
from bot.settings import Settings

TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
LABELS = {"douyin": "抖店", "taobao": "淘宝/天猫", "jd": "京东", "shopify": "Shopify"}


async def check_channels(settings: Settings) -> tuple[list[str], bool]:
    """(lines to print, every shop works); no marketplace configured is not a failure."""
    lines: list[str] = []
    ok = True
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        live = Marketplaces(settings, lambda: http, lambda: datetime.now(UTC))
        channels = live.live
        if not channels:
            return [
                "未配置任何电商渠道（抖店、淘宝、京东、Shopify）/ no marketplace channel"
            ], True
        for channel in channels:
            for shop, works, what in await channel.check():
                ok = ok and works
                mark = "✓" if works else "✗"
                lines.append(f"{mark} {LABELS[channel.name]} {shop}: {what}")
    return lines, ok
