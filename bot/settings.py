"""Typed settings: returnhub.toml + routing.toml + sla.toml, overridden by RETURNHUB__* env.

One frozen object built once at start-up (STYLE.md rule 9). Secrets belong in the
environment, so every key can be set as `RETURNHUB__SECTION__KEY`. `load` reports
every problem at once as `file:line: message` (what `returnhub check-config`
prints), because fixing a config one error per restart is miserable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.config_locate import (
    ConfigError,
    data_dir,
)
from bot.settings_channels import CHANNELS, ChannelsSettings, GenericChannelSettings
from bot.settings_platforms import DingtalkSettings, WecomSettings
from bot.settings_runtime import (
    ApiSettings,
    ConsoleSettings,
    DatabaseSettings,
    DigestSettings,
    FilesSettings,
    OutboxSettings,
    PhotoSettings,
    ServerSettings,
)
from handlers.routing import RoutingRules
from handlers.sla_policies import SlaConfig, SlaPolicy, WorkCalendar
from handlers.warehouse_rules import WarehouseRules

# The section dataclasses live in one module per area (settings_runtime, settings_platforms,
# settings_channels); they are importable from here, as everything imports them.
__all__ = [
    "CHANNELS",
    "ApiSettings",
    "ChannelsSettings",
    "ConfigError",
    "ConsoleSettings",
    "DatabaseSettings",
    "DigestSettings",
    "DingtalkSettings",
    "FilesSettings",
    "GenericChannelSettings",
    "OutboxSettings",
    "PhotoSettings",
    "ServerSettings",
    "Settings",
    "WecomSettings",
    "check",
    "config_dir",
    "load",
    "templates_dir",
]

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
    "digest": DigestSettings,
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
    digest: DigestSettings = DigestSettings()
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
