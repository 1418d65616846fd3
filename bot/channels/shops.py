"""The shops of each marketplace channel, typed: one per `[[channels.<name>.shops]]` table.

A channel section may describe one shop with the CONTRACT.md keys alone
(`[channels.douyin] app_key … access_token`), or several as
`[[channels.douyin.shops]]` tables, each with its own credentials. A key a shop
table leaves out is taken from the section (an ISV app authorised by several
shops sets `app_key`/`app_secret` once, and a token per shop). `check` validates
the tables for `check-config` with file:line errors; `douyin_shops` and
`shopify_shops` give the shops the app serves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bot.config_locate import Report, build, url_problem
from bot.settings import CHANNELS, ChannelsSettings

DOUYIN, SHOPIFY = "douyin", "shopify"


@dataclass(frozen=True)
class DouyinShop:
    """One 抖店 shop: the app it is authorised to and its tokens.

    `shop_id` is Douyin's numeric shop id as a string ("" in the single-shop form:
    the shop is then whatever shop the app's pushes name). `return_address_id` is
    the address (`/address/list`) a buyer is told to send returns to.
    """

    shop_id: str = ""
    name: str = ""
    app_key: str = ""
    app_secret: str = ""
    access_token: str = ""
    refresh_token: str = ""
    return_address_id: str = ""
    api_base: str = ""

    @property
    def label(self) -> str:
        return self.name or self.shop_id or "（单店）"

    @property
    def configured(self) -> bool:
        return bool(self.app_key and self.app_secret)


@dataclass(frozen=True)
class ShopifyShop:
    shop_domain: str = ""
    name: str = ""
    secret: str = ""
    access_token: str = ""
    api_base: str = ""

    @property
    def label(self) -> str:
        return self.name or self.shop_domain

    @property
    def configured(self) -> bool:
        return bool(self.shop_domain and self.secret)


_KINDS: dict[str, type[DouyinShop] | type[ShopifyShop]] = {
    DOUYIN: DouyinShop,
    SHOPIFY: ShopifyShop,
}
_REQUIRED = {DOUYIN: "shop_id", SHOPIFY: "shop_domain"}


def _inherited(section: dict[str, Any], cls: type[Any], table: dict[str, Any]) -> dict[str, Any]:
    """The shop table with the keys it leaves out taken from its section."""
    names = {f.name for f in dataclasses.fields(cls)}
    merged = {k: v for k, v in section.items() if k in names and k != "name"}
    merged.update(table)
    return merged


def _shops(channels: ChannelsSettings, name: str) -> list[Any]:
    section: dict[str, Any] = getattr(channels, name)
    cls = _KINDS[name]
    tables = [t for t in section.get("shops", ()) if isinstance(t, dict)]
    if not tables:
        single = cls(**_inherited(section, cls, {}))
        return [single] if single.configured else []
    report = Report("<channels>")
    shops = [
        build(cls, _inherited(section, cls, t), ("channels", name, "shops", i), report)
        for i, t in enumerate(tables)
    ]
    return [s for s in shops if s is not None]


def douyin_shops(channels: ChannelsSettings) -> list[DouyinShop]:
    """The 抖店 shops configured (possibly only partly; see `check`)."""
    return _shops(channels, DOUYIN)


def shopify_shops(channels: ChannelsSettings) -> list[ShopifyShop]:
    return _shops(channels, SHOPIFY)


def check(channels: ChannelsSettings, report: Report) -> None:
    """Each shop table is a table of known keys with its id; ids are unique; URLs parse."""
    for name, cls in _KINDS.items():
        section: dict[str, Any] = getattr(channels, name)
        seen: set[str] = set()
        required = _REQUIRED[name]
        for i, table in enumerate(section.get("shops", ())):
            path = ("channels", name, "shops", i)
            where = f"channels.{name}.shops[{i}]"
            shop = build(cls, table, path, report)
            if shop is None:
                continue
            ident = getattr(shop, required)
            if not ident:
                report.at(path, f"{where}: 缺少 {required} / missing {required}")
            elif ident in seen:
                report.at(path, f"{where}: {required} {ident!r} 重复 / duplicate {required}")
            seen.add(ident)
            if shop.api_base and (problem := url_problem(shop.api_base)):
                report.at((*path, "api_base"), f"{where}.api_base: {problem}")
        base = section.get("api_base", "")
        if base and (problem := url_problem(base)):
            report.at(("channels", name, "api_base"), f"channels.{name}.api_base: {problem}")
        timeout = section.get("timeout_seconds", 1.0)
        if not timeout > 0:
            report.at(
                ("channels", name, "timeout_seconds"),
                f"channels.{name}.timeout_seconds: 必须为正数 / must be positive",
            )


def _filled(channels: ChannelsSettings, name: str) -> bool:
    """Someone wrote into the section: it differs from its defaults."""
    section: dict[str, Any] = getattr(channels, name)
    return section != dataclasses.asdict(CHANNELS[name]())


def report(channels: ChannelsSettings) -> list[tuple[bool, str]]:
    """(is a warning, text) for the startup report: which shops are live, what is missing."""
    lines: list[tuple[bool, str]] = []
    douyin = douyin_shops(channels)
    live = [s for s in douyin if s.configured]
    if live:
        names = "、".join(s.label for s in live)
        every = channels.douyin.get("reconcile_minutes", 0)
        lines.append(
            (False, f"已启用的电商渠道 / live: 抖店（{names}；推送 /webhooks/douyin；"
             f"对账轮询每 {every:g} 分钟）")
        )  # fmt: skip
    elif _filled(channels, DOUYIN):
        lines.append((True, "[channels.douyin] 不完整：缺少 app_key 或 app_secret / incomplete"))
    for shop in live:
        if not shop.shop_id:
            lines.append((True, f"抖店 {shop.label}：未设置 shop_id，不做对账轮询 / no shop_id"))
        if not shop.return_address_id:
            lines.append(
                (True, f"抖店 {shop.label}：未设置 return_address_id，同意退货将失败 / no address")
            )
        if not shop.refresh_token:
            lines.append(
                (True, f"抖店 {shop.label}：未设置 refresh_token，token 过期后需人工更新")
            )
    stores = shopify_shops(channels)
    ready = [s for s in stores if s.configured]
    if ready:
        names = "、".join(s.label for s in ready)
        lines.append((False, f"已启用的电商渠道 / live: Shopify（{names}；/webhooks/shopify）"))
    elif _filled(channels, SHOPIFY):
        lines.append((True, "[channels.shopify] 不完整：缺少 shop_domain 或 secret / incomplete"))
    for store in ready:
        if not store.access_token:
            lines.append(
                (True, f"Shopify {store.label}：未设置 access_token，审批结果无法回传 / no token")
            )
    return lines
