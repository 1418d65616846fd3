"""The order channels' settings: [channels.generic] typed, the marketplaces as dicts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenericChannelSettings:
    secret: str = ""
    callback_url: str = ""
    replay_window_seconds: int = 300
    shop: str = "main-store"  # when the webhook body names no shop


@dataclass(frozen=True)
class _Douyin:
    app_key: str = ""
    app_secret: str = ""
    access_token: str = ""
    api_base: str = "https://openapi-fxg.jinritemai.com"
    # Issue 12 (bot/channels/shops.py, docs/channels.md): the single shop's id and the
    # rest of its credentials, or several shops as [[channels.douyin.shops]] tables.
    shop_id: str = ""
    refresh_token: str = ""
    return_address_id: str = ""
    reject_reason_code: str = ""  # afterSale/operate needs one to reject (rejectReasonCodeList)
    timeout_seconds: float = 10.0
    reconcile_minutes: float = 10.0
    shops: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Taobao:
    app_key: str = ""
    app_secret: str = ""
    session: str = ""
    api_base: str = "https://eco.taobao.com/router/rest"
    poll_seconds: int = 30
    # Issue 12 (bot/channels/taobao.py, docs/channels.md): the seller's nick, TOP's
    # sign method, the app's TMC group, or several sellers as [[channels.taobao.shops]].
    seller_nick: str = ""
    sign_method: str = "hmac-sha256"
    group_name: str = "default"
    timeout_seconds: float = 10.0
    shops: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Jd:
    app_key: str = ""
    app_secret: str = ""
    access_token: str = ""
    api_base: str = "https://api.jd.com/routerjson"
    poll_seconds: int = 60
    # Issue 12 (bot/channels/jd.py): the shop, the unit JD's applyRefundSum comes in
    # (unconfirmed: check one live call), the reviewer name JD records, or shops.
    shop_id: str = ""
    refund_sum_unit: str = "yuan"
    operator: str = "returnhub"
    timeout_seconds: float = 10.0
    shops: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Shopify:
    shop_domain: str = ""
    secret: str = ""
    access_token: str = ""
    api_base: str = ""  # default https://{shop_domain}/admin/api/<version>
    # Issue 12: the Admin API version, and several shops as [[channels.shopify.shops]].
    api_version: str = "2025-01"
    timeout_seconds: float = 10.0
    shops: tuple[Any, ...] = ()


CHANNELS: dict[str, type] = {
    "douyin": _Douyin,
    "taobao": _Taobao,
    "jd": _Jd,
    "shopify": _Shopify,
}


def _loose(cls: type) -> Any:
    return field(default_factory=lambda: dataclasses.asdict(cls()))


@dataclass(frozen=True)
class ChannelsSettings:
    """`generic` is typed; the marketplace ones are dicts with every CONTRACT key filled in."""

    generic: GenericChannelSettings = GenericChannelSettings()
    douyin: dict[str, Any] = _loose(_Douyin)
    taobao: dict[str, Any] = _loose(_Taobao)
    jd: dict[str, Any] = _loose(_Jd)
    shopify: dict[str, Any] = _loose(_Shopify)
