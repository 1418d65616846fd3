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

from bot.channels.jd_map import UNITS
from bot.channels.top import SIGN_METHODS
from bot.config_locate import Key, Report, build, url_problem
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
    reject_reason_code: str = ""
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


@dataclass(frozen=True)
class TaobaoShop:
    """One Taobao/Tmall seller: `seller_nick` is its key in TMC ("" in the single-shop
    form: whichever seller the app's messages name)."""

    seller_nick: str = ""
    name: str = ""
    app_key: str = ""
    app_secret: str = ""
    session: str = ""
    sign_method: str = "hmac-sha256"
    group_name: str = "default"
    api_base: str = ""

    @property
    def label(self) -> str:
        return self.name or self.seller_nick or "（单店）"

    @property
    def configured(self) -> bool:
        return bool(self.app_key and self.app_secret and self.session)


@dataclass(frozen=True)
class JdShop:
    """One JD POP shop; `refund_sum_unit` is how its applyRefundSum reads (yuan | fen)."""

    shop_id: str = ""
    name: str = ""
    app_key: str = ""
    app_secret: str = ""
    access_token: str = ""
    refund_sum_unit: str = "yuan"
    operator: str = "returnhub"
    api_base: str = ""

    @property
    def key(self) -> str:
        return self.shop_id or "jd"

    @property
    def label(self) -> str:
        return self.name or self.shop_id or "（单店）"

    @property
    def configured(self) -> bool:
        return bool(self.app_key and self.app_secret and self.access_token)


TAOBAO, JD = "taobao", "jd"
_KINDS: dict[str, type[DouyinShop] | type[ShopifyShop] | type[TaobaoShop] | type[JdShop]] = {
    DOUYIN: DouyinShop,
    SHOPIFY: ShopifyShop,
    TAOBAO: TaobaoShop,
    JD: JdShop,
}
_REQUIRED = {DOUYIN: "shop_id", SHOPIFY: "shop_domain", TAOBAO: "seller_nick", JD: "shop_id"}


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


def taobao_shops(channels: ChannelsSettings) -> list[TaobaoShop]:
    return _shops(channels, TAOBAO)


def jd_shops(channels: ChannelsSettings) -> list[JdShop]:
    return _shops(channels, JD)


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
    _choices(channels, report)


# Keys whose value is one of a few words: TOP's sign methods, JD's amount unit.
_CHOICES = {TAOBAO: ("sign_method", SIGN_METHODS), JD: ("refund_sum_unit", UNITS)}


def _choices(channels: ChannelsSettings, report: Report) -> None:
    for name, (key, allowed) in _CHOICES.items():
        section: dict[str, Any] = getattr(channels, name)
        places: list[tuple[Key, str, dict[str, Any]]] = [
            (("channels", name), f"channels.{name}", section)
        ]
        places += [
            (("channels", name, "shops", i), f"channels.{name}.shops[{i}]", t)
            for i, t in enumerate(section.get("shops", ()))
            if isinstance(t, dict)
        ]
        for path, where, table in places:
            value = table.get(key)
            if value is not None and value not in allowed:
                report.at(
                    (*path, key),
                    f"{where}.{key}: 须为 {' / '.join(allowed)} 之一 / must be one of them",
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
        if not shop.reject_reason_code.isdigit():
            lines.append(
                (
                    True,
                    f"抖店 {shop.label}：未设置 reject_reason_code，驳回将失败 / no reject code",
                )
            )
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
    lines += _polled(
        channels, TAOBAO, "淘宝/天猫", "TMC 消息轮询", "app_key、app_secret 或 session"
    )
    lines += _polled(channels, JD, "京东", "退款申请轮询", "app_key、app_secret 或 access_token")
    return lines


def _polled(
    channels: ChannelsSettings, name: str, label: str, how: str, needs: str
) -> list[tuple[bool, str]]:
    """The report lines of a polled channel (淘宝 TMC, 京东 queryPageList)."""
    live = [s for s in _shops(channels, name) if s.configured]
    section: dict[str, Any] = getattr(channels, name)
    if live:
        names = "、".join(s.label for s in live)
        every = section.get("poll_seconds", 0)
        return [(False, f"已启用的电商渠道 / live: {label}（{names}；{how}每 {every:g} 秒）")]
    if _filled(channels, name):
        return [(True, f"[channels.{name}] 不完整：缺少 {needs} / incomplete")]
    return []
