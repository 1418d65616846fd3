"""The marketplace channels a config switches on, built once for bot/app.py.

One place decides which channels are live (a shop with its credentials), so the
app, `returnhub channels check` and the startup report agree: each live channel
contributes an outbox client (`clients`), a detail fetch for its notices, and
its webhook route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from bot.channels import douyin_push, shopify
from bot.channels.base import ChannelClient
from bot.channels.douyin import DouyinChannel
from bot.channels.douyin_api import Alert
from bot.channels.douyin_poll import DouyinReconciler
from bot.channels.notices import Fetch, Submit, notice_handler
from bot.channels.polling import PollRunner
from bot.channels.shopify_api import ShopifyChannel
from bot.channels.shops import douyin_shops, shopify_shops
from bot.events import ChannelNotice
from bot.settings import Settings
from storage.db import Database


class Marketplaces:
    """The live marketplace channels of `settings` (none when nothing is configured)."""

    def __init__(
        self,
        settings: Settings,
        http: Callable[[], aiohttp.ClientSession],
        clock: Callable[[], datetime],
        alert: Alert | None = None,
        db: Database | None = None,
    ) -> None:
        channels = settings.channels
        self.db = db
        self.clock = clock
        self.reconcile = timedelta(minutes=channels.douyin["reconcile_minutes"])
        self.douyin: DouyinChannel | None = None
        self.shopify: ShopifyChannel | None = None
        live = [s for s in douyin_shops(channels) if s.configured]
        if live:
            conf = channels.douyin
            self.douyin = DouyinChannel(
                live,
                conf["api_base"],
                http,
                clock,
                timeout=conf["timeout_seconds"],
                alert=alert,
                db=db,
            )
        stores = [s for s in shopify_shops(channels) if s.configured]
        if stores:
            conf = channels.shopify
            self.shopify = ShopifyChannel(
                stores,
                conf["api_version"],
                http,
                timeout=conf["timeout_seconds"],
            )

    @property
    def clients(self) -> dict[str, ChannelClient]:
        found: dict[str, ChannelClient] = {}
        if self.douyin is not None:
            found[self.douyin.name] = self.douyin
        if self.shopify is not None:
            found[self.shopify.name] = self.shopify
        return found

    @property
    def fetchers(self) -> dict[str, Fetch]:
        return {} if self.douyin is None else {self.douyin.name: self.douyin.fetch}

    def notice_handler(self, submit: Submit) -> Callable[[ChannelNotice, Any], Awaitable[None]]:
        return notice_handler(self.fetchers, submit)

    def poll_runner(self, accept: Callable[[ChannelNotice], Awaitable[bool]]) -> PollRunner:
        """The pollers of the live channels (抖店 reconciliation for shops with a shop_id)."""
        pollers = []
        if self.douyin is not None and self.reconcile > timedelta(0):
            pollers = [
                DouyinReconciler(api, self.reconcile)
                for api in self.douyin.apis
                if api.shop.shop_id
            ]
        if self.db is None:
            raise RuntimeError("pollers need the database")
        return PollRunner(self.db, pollers, accept, self.clock)

    def setup(
        self,
        app: web.Application,
        *,
        accept: Callable[[ChannelNotice], Awaitable[bool]],
        intake: Submit,
    ) -> None:
        """Mount the webhook of each live channel."""
        if self.douyin is not None:
            douyin_push.setup(app, self.douyin.shops, accept)
        if self.shopify is not None:
            shopify.setup(app, self.shopify.shops, intake)
