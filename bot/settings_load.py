"""Loading and validating settings: the one pass behind `load()` and `check-config`.

Kept apart from the dataclasses in bot/settings.py so each file stays readable;
every check appends to one error list, reported as `file:line: message`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bot.config_locate import (
    ConfigError,
    Report,
    aes_key_problem,
    apply_env,
    build,
    read_toml,
    url_problem,
    zone_problem,
)
from bot.settings import (
    CHANNELS,
    DB_SCHEMES,
    DEFAULT_ROLES,
    ENV_PREFIX,
    ERROR_POSITION,
    SECTIONS,
    ChannelsSettings,
    FilesSettings,
    GenericChannelSettings,
    MemberConfig,
    RoleRoute,
    Settings,
    config_dir,
)
from handlers.routing import RoutingRules, parse_rules
from handlers.sla_policies import SlaConfig, parse_sla
from handlers.warehouse_rules import WarehouseRules, parse_warehouse

log = logging.getLogger("bot.settings")
T = TypeVar("T")
# appchat/create: a chatid is 1-32 letters or digits, and only the app's own chats work.
WECOM_CHAT_ID = re.compile(r"[0-9A-Za-z]{1,32}")
CHAT_ID_RULE = (
    "wecom_chat_id: 须为应用用 appchat/create 建的群聊 chatid（1-32 位字母或数字）"
    " / must be a chatid made by the app's appchat/create (1-32 letters or digits)"
)
CHAT_NEEDS_APP = (
    "wecom_chat_id: 群聊通知由企业微信自建应用发出，请先配置 [wecom] corp_id 与 secret"
    " / needs the WeCom app: set [wecom] corp_id and secret"
)


# DingTalk: an AppKey / robotCode is letters and digits ("ding…"); an advanced card
# template id ends in ".schema" (im-protocols.md 4c); a callbackRouteKey is ours.
DINGTALK_KEY = re.compile(r"[0-9A-Za-z]{1,64}")
KEY_RULE = "应为 1-64 位字母或数字（开发者后台「凭证与基础信息」）/ 1-64 letters or digits"
DINGTALK_TEMPLATE = re.compile(r"[0-9A-Za-z_\-.]{1,120}\.schema")
TEMPLATE_RULE = (
    '应为卡片平台中模板的 ID，以 ".schema" 结尾 / the card template id, ending in ".schema"'
)
ROUTE_KEY = re.compile(r"[0-9A-Za-z_\-]{1,64}")
ROUTE_RULE = "应为 1-64 位字母、数字、_ 或 - / 1-64 letters, digits, _ or -"


def _pattern_problem(pattern: re.Pattern[str], value: str, rule: str) -> str | None:
    return None if pattern.fullmatch(value) else f"{value[:40]!r}: {rule}"


# A member's `platforms = [...]`: each name and the user id it needs.
MEMBER_PLATFORMS = {"wecom": "wecom_userid", "dingtalk": "dingtalk_staff_id"}


def _positive(value: float) -> str | None:
    return None if value > 0 else "必须为正数 / must be positive"


def _when_set(check: Callable[[str], str | None]) -> Callable[[str], str | None]:
    return lambda value: check(value) if value else None


_VALUE_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "server.port": lambda v: None if 0 < v < 65536 else "必须在 1-65535 之间 / must be 1-65535",
    "server.public_url": _when_set(url_problem),
    "server.timezone": zone_problem,
    "server.max_body_bytes": _positive,
    "server.body_timeout_seconds": _positive,
    "server.idle_timeout_seconds": _positive,
    "server.secret_grace_days": lambda v: None if v >= 0 else "must be 0 or more",
    "server.workers": lambda v: None if v >= 0 else "须为 0（自动）或正整数 / must be 0 or more",
    "database.timeout_seconds": _positive,
    "database.statement_timeout_seconds": lambda v: None if v >= 0 else "must be 0 or more",
    "database.url": lambda v: (
        None
        if v.startswith(DB_SCHEMES)
        else f"必须以 {' 或 '.join(DB_SCHEMES)} 开头 / must start with " + " or ".join(DB_SCHEMES)
    ),
    **{f"database.{k}": _positive for k in ("write_batch", "write_concurrency")},
    "wecom.encoding_aes_key": _when_set(aes_key_problem),
    "wecom.replay_window_seconds": _positive,
    "dingtalk.event_aes_key": _when_set(aes_key_problem),
    "dingtalk.mode": lambda v: (
        None
        if v in ("http", "stream")
        else '必须是 "http" 或 "stream" / must be "http" or "stream"'
    ),
    "dingtalk.app_key": _when_set(lambda v: _pattern_problem(DINGTALK_KEY, v, KEY_RULE)),
    "dingtalk.robot_code": _when_set(lambda v: _pattern_problem(DINGTALK_KEY, v, KEY_RULE)),
    "dingtalk.card_template_id": _when_set(
        lambda v: _pattern_problem(DINGTALK_TEMPLATE, v, TEMPLATE_RULE)
    ),
    "dingtalk.callback_route_key": lambda v: _pattern_problem(ROUTE_KEY, v, ROUTE_RULE),
    "dingtalk.api_base": url_problem,
    "dingtalk.oapi_base": url_problem,
    "dingtalk.replay_window_seconds": _positive,
    "dingtalk.robot_secrets": lambda secrets: next(
        (
            f"{name}: 加签密钥以 SEC 开头（机器人安全设置 → 加签）"
            " / a signing secret starts with SEC"
            for name, secret in secrets.items()
            if not secret.startswith("SEC")
        ),
        None,
    ),
    "channels.generic.callback_url": _when_set(url_problem),
    "channels.generic.replay_window_seconds": _positive,
    **{f"outbox.{k}": _positive for k in ("batch", "rate_per_minute")},
    **{f"outbox.{k}": _positive for k in ("tick_seconds", "lease_seconds", "base_delay_seconds")},
    **{f"outbox.{k}": _positive for k in ("max_delay_seconds", "give_up_after_hours")},
    **{f"photos.{k}": _positive for k in ("max_bytes", "max_pixels", "evidence_window_minutes")},
}


# A half-configured platform fails at the first message; say so at start-up instead.
_REQUIRED_TOGETHER = {
    "wecom": ("corp_id", "agent_id", "secret", "token", "encoding_aes_key"),
    "dingtalk": ("app_key", "app_secret", "robot_code"),
}


def _by_file_and_line(errors: list[str]) -> list[str]:
    """Group errors per file (in order of first mention), by line; env ones last."""
    files: dict[str, int] = {}
    keys: list[tuple[int, int]] = []
    for error in errors:
        m = ERROR_POSITION.match(error)
        name, line = (m.group(1), int(m.group(2))) if m else ("", 0)
        keys.append((files.setdefault(name, len(files)) if m else 1 << 30, line))
    return [e for _, e in sorted(zip(keys, errors, strict=True), key=lambda pair: pair[0])]


def _main_path(path: str | Path | None, env: Mapping[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if env.get("RETURNHUB_CONFIG"):
        return Path(env["RETURNHUB_CONFIG"])
    local = Path("returnhub.toml")
    return local if local.is_file() else None


class _Loader:
    """One pass over a config set; every check appends to the same error list."""

    def __init__(self, data: dict[str, Any], report: Report, base: Path) -> None:
        self.data, self.report, self.errors, self.base = data, report, report.errors, base

    def section(self, cls: type[T], *path: str) -> T:
        table: Any = self.data
        for part in path:
            table = table.get(part, {}) if isinstance(table, dict) else {}
        return build(cls, table, path, self.report) or cls()

    def channels(self) -> ChannelsSettings:
        table = self.data.get("channels", {})
        if not isinstance(table, dict):
            self.report.at(
                ("channels",),
                "channels: 应为 [channels.generic] 这样的表 / expected tables like "
                "[channels.generic]",
            )
            table = {}
        for name in table:
            if name != "generic" and name not in CHANNELS:
                self.report.at(("channels", name), f"未知渠道 / unknown channel [channels.{name}]")
        loose = {
            n: dataclasses.asdict(self.section(c, "channels", n)) for n, c in CHANNELS.items()
        }
        return ChannelsSettings(
            self.section(GenericChannelSettings, "channels", "generic"), **loose
        )

    def roles(self) -> dict[str, RoleRoute]:
        table = self.data.get("roles", {})
        if not isinstance(table, dict):
            self.report.at(
                ("roles",),
                "roles: 应为 [roles.warehouse] 这样的表 / expected tables like [roles.warehouse]",
            )
            return {}
        routes = {name: self.section(RoleRoute, "roles", name) for name in table}
        for name, route in routes.items():
            if route.wecom_chat_id and not WECOM_CHAT_ID.fullmatch(route.wecom_chat_id):
                self.report.at(("roles", name, "wecom_chat_id"), f"roles.{name}.{CHAT_ID_RULE}")
        return routes

    def members(self, known: frozenset[str]) -> tuple[MemberConfig, ...]:
        tables = self.data.get("members", [])
        if not isinstance(tables, list):
            self.report.at(
                ("members",), "members: 应为 [[members]] 表 / expected [[members]] tables"
            )
            return ()
        members: list[MemberConfig] = []
        seen: dict[str, str] = {}
        for i, table in enumerate(tables):
            member = build(MemberConfig, table, ("members", i), self.report)
            if member is None:
                continue
            members.append(member)
            where = f"members[{i}] ({member.name})"
            if not member.roles:
                self.report.at(
                    ("members", i, "roles"), f"{where}: roles 不能为空 / roles must not be empty"
                )
            for role in member.roles:
                if role not in known:
                    msg = (
                        f"未知角色 {role!r}，请用 [roles.{role}] 表声明 / unknown role "
                        f"{role!r}; declare it with a [roles.{role}] table"
                    )
                    self.report.at(("members", i, "roles"), f"{where}: {msg}")
            for platform in member.platforms:
                key = MEMBER_PLATFORMS.get(platform)
                if key is None or not getattr(member, key):
                    self.report.at(
                        ("members", i, "platforms"),
                        f"{where}: platforms 中的 {platform!r} 须为 "
                        + " 或 ".join(
                            f'"{p}"（且已设置 {k}）' for p, k in MEMBER_PLATFORMS.items()
                        )
                        + f" / {platform!r} must be wecom or dingtalk, with its user id set",
                    )
            for key in ("wecom_userid", "dingtalk_staff_id"):
                value = getattr(member, key)
                if value and key == "wecom_userid":  # 企业微信 userid 不区分大小写
                    value = value.lower()
                if value and f"{key}={value}" in seen:
                    other = seen[f"{key}={value}"]
                    self.report.at(
                        ("members", i, key),
                        f"{where}: {key} 已被 {other} 使用 / {key} already used by {other}",
                    )
                seen.setdefault(f"{key}={value}", member.name)
        return tuple(members)

    def check_values(self, settings: Settings) -> None:
        from bot.channels import shops  # imports bot.settings: import when used

        shops.check(settings.channels, self.report)
        if problem := workers_problem(settings.server.workers, settings.database.url):
            self.report.at(("server", "workers"), f"server.workers: {problem}")
        for name, route in settings.roles.items():
            if route.wecom_chat_id and not settings.wecom.enabled:  # else never used
                self.report.at(("roles", name, "wecom_chat_id"), f"roles.{name}.{CHAT_NEEDS_APP}")
        for key, check in _VALUE_CHECKS.items():
            if problem := check(functools.reduce(getattr, key.split("."), settings)):
                self.report.at(tuple(key.split(".")), f"{key}: {problem}")
        for section, keys in _REQUIRED_TOGETHER.items():
            values = {k: getattr(getattr(settings, section), k) for k in keys}
            if any(values.values()):  # the platform is being set up: it needs every key
                for key, value in values.items():
                    if not value:
                        self.report.at(
                            (section, key),
                            f"{section}.{key}: 缺少此项（[{section}] 的其他项已设置；"
                            f"也可用环境变量 RETURNHUB__{section.upper()}__{key.upper()}）"
                            f" / missing (the other [{section}] keys are set)",
                        )

    def rule_file(self, files: FilesSettings, key: str) -> tuple[dict[str, Any], Report] | None:
        """Read routing.toml / sla.toml beside the main file, else the packaged default."""
        relative, default = getattr(files, key), getattr(FilesSettings(), key)
        path = self.base / relative
        if not path.is_file():
            if self.report.locator and self.report.locator.find(("files", key)):
                log.warning(
                    "%s 不存在，改用内置的 %s / not found; using the packaged one", path, default
                )
            path = config_dir() / default
        parsed = read_toml(path, str(path), self.errors)
        return (parsed[0], Report(str(path), parsed[1], errors=self.errors)) if parsed else None


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the main file (or built-in defaults), its rule files and the env.

    `path` None means $RETURNHUB_CONFIG, then ./returnhub.toml, then the packaged
    defaults. Raises ConfigError listing every problem found.
    """
    return _load(path, os.environ if env is None else env)


def check(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """The errors `load` would raise ([] when the config is valid); for `check-config`."""
    try:
        _load(path, os.environ if env is None else env)
    except ConfigError as exc:
        return exc.errors
    return []


def _load(path: str | Path | None, env: Mapping[str, str]) -> Settings:
    main = _main_path(path, env)
    errors: list[str] = []
    data: dict[str, Any] | None = {}
    report = Report("<defaults>", errors=errors)
    if main is not None:
        parsed = read_toml(main, str(main), errors)
        if parsed is None and not main.is_file():
            raise ConfigError(errors)
        data = parsed[0] if parsed else None  # None: syntax error, already reported
        report = Report(str(main), parsed[1] if parsed else None, errors=errors)
    report.env, env_errors = apply_env(data or {}, env, ENV_PREFIX)
    errors += env_errors
    for key in data or {}:
        if key not in ("channels", "members", "roles", *SECTIONS):
            report.at((key,), f"未知配置段 / unknown section [{key}]")
    _retired_keys(data or {})
    ld = _Loader(data or {}, report, main.parent if main else config_dir())
    sections: dict[str, Any] = {name: ld.section(cls, name) for name, cls in SECTIONS.items()}
    channels, roles = ld.channels(), ld.roles()
    declared = frozenset(DEFAULT_ROLES) | frozenset(roles)
    members = ld.members(declared)
    known = declared if data is not None else None  # main file unparsed: skip role checks
    sla, rules = SlaConfig(), RoutingRules(tiers=())
    sla_names = None  # sla.toml unreadable: don't also flag every tier's policy
    if parsed_sla := ld.rule_file(sections["files"], "sla"):
        sla = parse_sla(parsed_sla[0], parsed_sla[1], known_roles=known)[0]
        sla_names = sla.policies.keys()
    if parsed_rules := ld.rule_file(sections["files"], "routing"):
        kw = {"known_roles": known, "sla_names": sla_names}
        rules = parse_rules(parsed_rules[0], parsed_rules[1], **kw)[0]
    warehouse = WarehouseRules()
    if parsed_warehouse := ld.rule_file(sections["files"], "warehouse"):
        names = [t.name for t in rules.tiers] if parsed_rules else None
        warehouse = parse_warehouse(*parsed_warehouse, tiers=names)[0]
    settings = Settings(
        **sections,
        channels=channels,
        members=members,
        roles=roles,
        routing=rules,
        sla=sla.policies,
        calendar=sla.calendar,
        sla_config=sla,
        source=str(main) if main else "<defaults>",
        warehouse=warehouse,
    )
    ld.check_values(settings)
    if errors:
        raise ConfigError(_by_file_and_line(errors))
    return settings


def workers_problem(workers: int, database_url: str) -> str | None:
    """Why `workers` server processes cannot run on this database, or None.

    SQLite has one writer, and storage/db.py serializes write transactions with an
    asyncio lock that covers only its own process. SQLite ignores FOR UPDATE, so the
    claims of the outbox, the timers and inbound recovery are atomic only under that
    lock: two processes could read the same due row and both claim it (a duplicate
    delivery), and a transaction that read before writing can fail with "database is
    locked" instead of waiting. A second process would not write any faster either:
    the file takes one writer at a time. See docs/operations.md "多进程".
    """
    if workers > 1 and database_url.startswith("sqlite"):
        return (
            f"SQLite 只能由一个进程写入，不能用 {workers} 个工作进程；请设为 1，"
            "或改用 PostgreSQL / SQLite allows one writer process: use 1 worker, "
            "or PostgreSQL for more"
        )
    return None


# Keys earlier releases wrote into returnhub.toml that no longer mean anything: a
# config copied from an old example must still start, told what replaced them.
RETIRED = {
    ("outbox", "max_attempts"): "重试不再按次数计，改为 outbox.give_up_after_hours（默认 24 小时）"
    " / retries are bounded by outbox.give_up_after_hours now",
}


def _retired_keys(data: dict[str, Any]) -> None:
    for (section, key), instead in RETIRED.items():
        table = data.get(section)
        if isinstance(table, dict) and key in table:
            del table[key]
            log.warning("配置项 %s.%s 已停用并被忽略：%s", section, key, instead)
