"""Validating a built Settings: per-key value rules, platforms set up by halves, the
digest's roles and robots, and the server's process count for its database."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from bot.config_locate import Report, aes_key_problem, url_problem, zone_problem
from bot.settings import DB_SCHEMES, Settings

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


DIGEST_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


def _pattern_problem(pattern: re.Pattern[str], value: str, rule: str) -> str | None:
    return None if pattern.fullmatch(value) else f"{value[:40]!r}: {rule}"


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
    "digest.time": lambda v: _pattern_problem(
        DIGEST_TIME, v, '应为 24 小时制 "HH:MM"，如 "09:00" / must be "HH:MM", e.g. "09:00"'
    ),
}


# A half-configured platform fails at the first message; say so at start-up instead.
_REQUIRED_TOGETHER = {
    "wecom": ("corp_id", "agent_id", "secret", "token", "encoding_aes_key"),
    "dingtalk": ("app_key", "app_secret", "robot_code"),
}


def check_values(settings: Settings, report: Report) -> None:
    """The checks that need the whole Settings: values, platforms set up by halves, shops."""
    from bot.channels import shops  # imports bot.settings: import when used

    shops.check(settings.channels, report)
    if problem := workers_problem(settings.server.workers, settings.database.url):
        report.at(("server", "workers"), f"server.workers: {problem}")
    for name, route in settings.roles.items():
        if route.wecom_chat_id and not settings.wecom.enabled:  # else never used
            report.at(("roles", name, "wecom_chat_id"), f"roles.{name}.{CHAT_NEEDS_APP}")
    digest_problems(settings, report)
    for key, check in _VALUE_CHECKS.items():
        if problem := check(functools.reduce(getattr, key.split("."), settings)):
            report.at(tuple(key.split(".")), f"{key}: {problem}")
    for section, keys in _REQUIRED_TOGETHER.items():
        values = {k: getattr(getattr(settings, section), k) for k in keys}
        if any(values.values()):  # the platform is being set up: it needs every key
            for key, value in values.items():
                if not value:
                    report.at(
                        (section, key),
                        f"{section}.{key}: 缺少此项（[{section}] 的其他项已设置；"
                        f"也可用环境变量 RETURNHUB__{section.upper()}__{key.upper()}）"
                        f" / missing (the other [{section}] keys are set)",
                    )


def digest_problems(settings: Settings, report: Report) -> None:
    """[digest] roles must be known roles, its robots configured ones."""
    for role in settings.digest.roles:
        if role not in settings.known_roles:
            report.at(
                ("digest", "roles"),
                f"digest.roles: 未知角色 {role!r} / unknown role {role!r}",
            )
    for key, robots in (
        ("wecom_robots", settings.wecom.robots),
        ("dingtalk_robots", settings.dingtalk.robots),
    ):
        platform = key.split("_")[0]
        for name in getattr(settings.digest, key):
            if name not in robots:
                report.at(
                    ("digest", key),
                    f"digest.{key}: 没有名为 {name!r} 的机器人（见 [{platform}] robots）"
                    f" / no robot named {name!r} in [{platform}] robots",
                )


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
