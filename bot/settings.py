"""Typed settings: returnhub.toml + routing.toml + sla.toml, overridden by RETURNHUB__* env.

One frozen object built once at start-up (STYLE.md rule 9). Secrets belong in the
environment, so every key can be set as `RETURNHUB__SECTION__KEY`. `load` reports
every problem at once as `file:line: message` (what `returnhub check-config`
prints), because fixing a config one error per restart is miserable.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bot.config_locate import (
    ConfigError,
    data_dir,
)
from handlers.routing import RoutingRules
from handlers.sla_policies import SlaConfig, SlaPolicy, WorkCalendar
from handlers.warehouse_rules import WarehouseRules

__all__ = ["ConfigError", "Settings", "check", "config_dir", "load", "templates_dir"]

log = logging.getLogger(__name__)
T = TypeVar("T")
ENV_PREFIX = "RETURNHUB__"
# The roles of CONTRACT.md; a config may add others with a [roles.<name>] table.
DEFAULT_ROLES: tuple[str, ...] = (
    "cs_agent",
    "cs_lead",
    "ops_director",
    "finance_director",
    "warehouse",
    "risk",
    "admin",
)
ERROR_POSITION = re.compile(r"^(.+):(\d+): ")
DB_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    timezone: str = "Asia/Shanghai"
    # Signs card-button tokens and API cursors; unset: one is generated and kept in the
    # database. Changing it keeps the old one valid for secret_grace_days (docs/operations.md).
    secret: str = ""
    secret_grace_days: int = 7
    demo: bool = False
    max_body_bytes: int = 1_048_576
    body_timeout_seconds: float = 10.0  # a body not complete by then gets 408
    # A connection with no complete request head this long after it opened (or after its
    # last answer) is closed: a client trickling header bytes holds no slot for longer.
    idle_timeout_seconds: float = 15.0
    # `returnhub serve` processes (bot/workers.py); 0: one per core on PostgreSQL, 1 on SQLite.
    workers: int = 0


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///./var/returnhub.db"
    timeout_seconds: float = 5.0  # connect, pooled-connection wait, /healthz
    statement_timeout_seconds: float = 10.0  # per statement; SQLite lock waits; 0 = none
    # Group commit (bot/writer.py): at most this many inbound events per transaction,
    # and on PostgreSQL this many such transactions at once (SQLite has one writer).
    write_batch: int = 200
    write_concurrency: int = 4


@dataclass(frozen=True)
class ApiSettings:
    token: str = ""


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = False


@dataclass(frozen=True)
class WecomSettings:
    corp_id: str = ""
    agent_id: int = 0
    secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    api_base: str = "https://qyapi.weixin.qq.com"
    replay_window_seconds: int = 300  # WeCom documents none for callbacks: ours
    # Group robots for notices: name -> webhook key (a secret: set it from the env,
    # RETURNHUB__WECOM__ROBOTS__<NAME>); each allows 20 messages a minute.
    robots: dict[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.corp_id and self.secret)


@dataclass(frozen=True)
class DingtalkSettings:
    app_key: str = ""
    app_secret: str = ""
    robot_code: str = ""
    mode: str = "http"  # "http" | "stream"
    card_template_id: str = ""
    callback_route_key: str = "returnhub"
    event_token: str = ""
    event_aes_key: str = ""
    api_base: str = "https://api.dingtalk.com"
    oapi_base: str = "https://oapi.dingtalk.com"
    replay_window_seconds: int = 3600  # robot callbacks: DingTalk's own rule is 1 hour
    # Custom group robots (群自定义机器人) for notices: name -> webhook access_token, and
    # name -> its 加签 secret ("SEC…"); both secrets: set them from the env.
    robots: dict[str, str] = field(default_factory=dict)
    robot_secrets: dict[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.app_key and self.app_secret)


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


@dataclass(frozen=True)
class MemberConfig:
    name: str
    roles: tuple[str, ...]
    wecom_userid: str | None = None
    dingtalk_staff_id: str | None = None
    platforms: tuple[str, ...] = ()  # where cards go; empty: every platform the member is on


@dataclass(frozen=True)
class RoleRoute:
    """A role's group chats: they get a notice of each of its cards (each member
    still gets the card itself); see bot/platforms/wecom_chat.py."""

    wecom_chat_id: str = ""
    dingtalk_conversation_id: str = ""


@dataclass(frozen=True)
class FilesSettings:
    routing: str = "routing.toml"
    sla: str = "sla.toml"
    scripts: str = "scripts"
    evidence: str = "var/evidence"  # chat photos, content-addressed (storage/evidence.py)
    warehouse: str = "warehouse.toml"  # inspection outcomes, release timing, parts, abuse


@dataclass(frozen=True)
class OutboxSettings:
    """Delivery: retry schedule (bot/outbox_retry.py), batch, robot limit, tick, lease."""

    base_delay_seconds: float = 2.0  # first retry after 1-2 s, doubling per failure
    max_delay_seconds: float = 600.0  # the cap on one wait
    give_up_after_hours: float = 24.0  # dead-letter once failing this long (not by count)
    batch: int = 50
    rate_per_minute: int = 20  # per destination: WeCom/DingTalk group robots allow 20/min
    tick_seconds: float = 1.0
    lease_seconds: int = 60


@dataclass(frozen=True)
class PhotoSettings:
    """Chat photos: the byte and pixel bounds of one image, and how long after a scan a
    photo without a code is evidence for the case just scanned (handlers/photos.py)."""

    max_bytes: int = 10 << 20  # a phone photo is 2-6 MB
    max_pixels: int = 40_000_000  # 40 megapixels: every phone camera, no decompression bomb
    evidence_window_minutes: int = 30


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "database": DatabaseSettings,
    "api": ApiSettings,
    "console": ConsoleSettings,
    "wecom": WecomSettings,
    "dingtalk": DingtalkSettings,
    "files": FilesSettings,
    "outbox": OutboxSettings,
    "photos": PhotoSettings,
}


@dataclass(frozen=True)
class Settings:
    """Everything the app needs. Build it with `load()`; `Settings()` is for tests only."""

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    api: ApiSettings = ApiSettings()
    console: ConsoleSettings = ConsoleSettings()
    wecom: WecomSettings = WecomSettings()
    dingtalk: DingtalkSettings = DingtalkSettings()
    channels: ChannelsSettings = ChannelsSettings()
    members: tuple[MemberConfig, ...] = ()
    roles: dict[str, RoleRoute] = field(default_factory=dict)
    files: FilesSettings = FilesSettings()
    outbox: OutboxSettings = OutboxSettings()
    photos: PhotoSettings = PhotoSettings()
    routing: RoutingRules = RoutingRules(tiers=())
    sla: dict[str, SlaPolicy] = field(default_factory=dict)
    source: str = "<defaults>"
    calendar: WorkCalendar = WorkCalendar()
    warehouse: WarehouseRules = WarehouseRules()
    # The whole sla.toml: stages, overrides, escalation chain, deadline margin.
    sla_config: SlaConfig = SlaConfig()

    @property
    def known_roles(self) -> frozenset[str]:
        return frozenset(DEFAULT_ROLES) | frozenset(self.roles)

    def resolve(self, relative: str, default_name: str) -> Path:
        """A [files] entry: relative to the main config's directory, else the packaged default."""
        base = config_dir() if self.source == "<defaults>" else Path(self.source).parent
        candidate = base / relative
        return candidate if candidate.exists() else config_dir() / default_name

    @property
    def scripts_dir(self) -> Path:
        return self.resolve(self.files.scripts, "scripts")


def config_dir() -> Path:
    """Packaged default config: `<repo>/config`, or `returnhub_data/config` when installed."""
    return data_dir("config")


def templates_dir() -> Path:
    """Packaged templates: `<repo>/templates`, or `returnhub_data/templates` when installed."""
    return data_dir("templates")


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the main file (or built-in defaults), its rule files and the env.

    `path` None means $RETURNHUB_CONFIG, then ./returnhub.toml, then the packaged
    defaults. Raises ConfigError listing every problem found.
    """
    from bot import settings_load  # the loader builds these dataclasses: import when used

    return settings_load.load(path, env)


def check(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """The errors `load` would raise ([] when the config is valid); for `check-config`."""
    from bot import settings_load

    return settings_load.check(path, env)
