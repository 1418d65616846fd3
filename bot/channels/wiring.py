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
from bot.channels.jd import JdAccount, JdChannel, JdPoller
from bot.channels.jos import JosClient
from bot.channels.notices import Fetch, Submit, notice_handler
from bot.channels.polling import Poller, PollRunner
from bot.channels.shopify_api import ShopifyChannel
from bot.channels.shops import TaobaoShop, douyin_shops, jd_shops, shopify_shops, taobao_shops
from bot.channels.taobao import TaobaoChannel, TmcPoller
from bot.channels.top import TopClient
from bot.events import ChannelNotice
from bot.settings import ChannelsSettings, Settings
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
        self.taobao, self.tmc = _taobao(channels, http, clock, alert)
        self.jd, self.jd_pollers = _jd(channels, http, clock, alert)
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
    def live(self) -> list[DouyinChannel | ShopifyChannel | TaobaoChannel | JdChannel]:
        return [c for c in (self.douyin, self.taobao, self.jd, self.shopify) if c is not None]

    @property
    def clients(self) -> dict[str, ChannelClient]:
        return {channel.name: channel for channel in self.live}

    @property
    def fetchers(self) -> dict[str, Fetch]:
        return {c.name: c.fetch for c in (self.douyin, self.taobao, self.jd) if c is not None}

    def notice_handler(self, submit: Submit) -> Callable[[ChannelNotice, Any], Awaitable[None]]:
        return notice_handler(self.fetchers, submit)

    def poll_runner(self, accept: Callable[[ChannelNotice], Awaitable[bool]]) -> PollRunner:
        """The pollers of the live channels (抖店 reconciliation for shops with a shop_id)."""
        pollers: list[Poller] = []
        if self.douyin is not None and self.reconcile > timedelta(0):
            pollers = [
                DouyinReconciler(api, self.reconcile)
                for api in self.douyin.apis
                if api.shop.shop_id
            ]
        if self.db is None:
            raise RuntimeError("pollers need the database")
        return PollRunner(self.db, [*pollers, *self.tmc, *self.jd_pollers], accept, self.clock)

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


def _taobao(
    channels: ChannelsSettings,
    http: Callable[[], aiohttp.ClientSession],
    clock: Callable[[], datetime],
    alert: Alert | None,
) -> tuple[TaobaoChannel | None, list[Poller]]:
    """The Taobao sellers' clients, and one TMC poller per app and group."""
    conf = channels.taobao
    shops = [s for s in taobao_shops(channels) if s.configured]
    if not shops:
        return None, []
    clients = {
        shop.seller_nick: TopClient(
            http,
            api_base=shop.api_base or conf["api_base"],
            app_key=shop.app_key,
            app_secret=shop.app_secret,
            session=shop.session,
            clock=clock,
            sign_method=shop.sign_method,
            timeout=conf["timeout_seconds"],
            alert=alert,
            label=shop.label,
        )
        for shop in shops
    }
    every = timedelta(seconds=conf["poll_seconds"])
    apps: dict[tuple[str, str], list[TaobaoShop]] = {}
    for shop in shops:
        apps.setdefault((shop.app_key, shop.group_name), []).append(shop)
    pollers: list[Poller] = [
        TmcPoller(
            clients[sellers[0].seller_nick],
            frozenset(s.seller_nick for s in sellers),
            every,
            group,
            alert,
        )
        for (_, group), sellers in apps.items()
    ]
    return TaobaoChannel(clients, alert), pollers


def _jd(
    channels: ChannelsSettings,
    http: Callable[[], aiohttp.ClientSession],
    clock: Callable[[], datetime],
    alert: Alert | None,
) -> tuple[JdChannel | None, list[Poller]]:
    """The JD shops' clients, and one poller per shop."""
    conf = channels.jd
    found = {
        shop.key: JdAccount(
            shop.key,
            JosClient(
                http,
                api_base=shop.api_base or conf["api_base"],
                app_key=shop.app_key,
                app_secret=shop.app_secret,
                access_token=shop.access_token,
                clock=clock,
                timeout=conf["timeout_seconds"],
                alert=alert,
                label=shop.label,
            ),
            shop.refund_sum_unit,
            shop.operator,
        )
        for shop in jd_shops(channels)
        if shop.configured
    }
    if not found:
        return None, []
    every = timedelta(seconds=conf["poll_seconds"])
    return JdChannel(found), [JdPoller(account, every) for account in found.values()]
