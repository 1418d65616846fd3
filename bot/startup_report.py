"""What a config actually switches on: printed by `check-config`, logged by `serve` at start.

A valid config can still do nothing useful: no chat platform, no channel, an
empty API token, or a marketplace section filled in that this version does not
read yet. None of that is an error (a fresh `returnhub init` is valid), so the
loader accepts it; this report says it in words, so an operator is not left
guessing why nothing arrives. It reads Settings only, and mirrors the switches
bot/app.py uses (`console.enabled`, `wecom.enabled`, `wecom.robots`,
`dingtalk.enabled`, `dingtalk.robots`, `channels.generic.secret`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from bot.channels import shops
from bot.settings import DingtalkSettings, GenericChannelSettings, Settings, config_dir
from handlers.workdays import unknown_years

INFO, WARNING = logging.INFO, logging.WARNING


@dataclass(frozen=True, slots=True)
class Line:
    level: int  # logging.INFO or logging.WARNING
    text: str


def _dingtalk_filled(settings: Settings) -> bool:
    """Someone wrote into [dingtalk]: it differs from its defaults."""
    return dataclasses.asdict(settings.dingtalk) != dataclasses.asdict(DingtalkSettings())


def _sources(settings: Settings) -> list[Line]:
    if settings.source == "<defaults>":
        first = Line(
            WARNING,
            "未找到配置文件（--config、$RETURNHUB_CONFIG、./returnhub.toml 都没有），"
            f"已检查内置默认配置（{config_dir()}） / no config file found; "
            "checked the packaged defaults",
        )
    else:
        first = Line(INFO, f"配置文件 / config file: {settings.source}")
    packaged = config_dir()
    lines = [first]
    for label, key, default in (("路由规则 / routing", "routing", "routing.toml"),
                                ("SLA 策略 / sla", "sla", "sla.toml")):  # fmt: skip
        path = settings.resolve(getattr(settings.files, key), default)
        note = "（内置默认 / packaged default）" if path.parent == packaged else ""
        lines.append(Line(INFO, f"{label}: {path}{note}"))
    url = make_url(settings.database.url).render_as_string(hide_password=True)
    lines.append(Line(INFO, f"数据库 / database: {url}"))
    return lines


def _platforms(settings: Settings) -> list[Line]:
    live = []
    if settings.wecom.enabled:
        live.append("wecom")
    if settings.wecom.robots:
        live.append(f"wecom-robot（{len(settings.wecom.robots)} 个群机器人）")
    if settings.dingtalk.enabled:
        mode = "Stream 模式" if settings.dingtalk.mode == "stream" else "HTTP 模式"
        live.append(f"dingtalk（{mode}）")
    if settings.dingtalk.robots:
        live.append(f"dingtalk-robot（{len(settings.dingtalk.robots)} 个自定义机器人）")
    if settings.console.enabled:
        live.append("console")
    if not live:
        return [
            Line(
                WARNING,
                "没有启用任何聊天平台：卡片和消息无处可发；请配置 [wecom]，或试用 "
                "[console] enabled = true / no chat platform is live",
            )
        ]
    lines = [Line(INFO, f"已启用的聊天平台 / live platforms: {', '.join(live)}")]
    lines += _dingtalk(settings)
    if settings.wecom.enabled:
        without = [m.name for m in settings.members if not m.wecom_userid]
        if without:
            lines.append(
                Line(
                    WARNING,
                    f"{len(without)} 名成员没有 wecom_userid，收不到企业微信卡片："
                    f"{'、'.join(without[:10])} / members without wecom_userid",
                )
            )
    return lines


def _dingtalk(settings: Settings) -> list[Line]:
    """What a filled-in [dingtalk] still lacks to work end to end."""
    dingtalk = settings.dingtalk
    if not _dingtalk_filled(settings) or not dingtalk.enabled:
        return []
    gaps = []
    if not dingtalk.card_template_id:
        gaps.append("card_template_id（审批卡片发不出去 / approval cards cannot be sent）")
    if dingtalk.mode == "http" and not settings.server.public_url:
        gaps.append(
            "server.public_url（卡片点击回调无处可去，设置后运行 returnhub dingtalk "
            "register-callback / card clicks have no callback URL）"
        )
    if bool(dingtalk.event_token) != bool(dingtalk.event_aes_key):
        gaps.append("event_token 与 event_aes_key 须同时设置（事件订阅未开启）")
    lines = [
        Line(WARNING, f"[dingtalk] 不完整，缺少 {gap} / incomplete: missing {gap.split('（')[0]}")
        for gap in gaps
    ]
    without = [m.name for m in settings.members if not m.dingtalk_staff_id]
    if without:
        lines.append(
            Line(
                WARNING,
                f"{len(without)} 名成员没有 dingtalk_staff_id，收不到钉钉卡片："
                f"{'、'.join(without[:10])} / members without dingtalk_staff_id",
            )
        )
    return lines


def _channels(settings: Settings) -> list[Line]:
    generic = settings.channels.generic
    if generic.secret:
        callback = urlsplit(generic.callback_url).netloc  # never the full URL: may carry a token
        back = (
            f"结果回调到 {callback}"
            if callback
            else "未设置 callback_url：结果请轮询 /api/cases / no callback_url"
        )
        return [Line(INFO, f"已启用的渠道 / live channels: generic（{back}）")]
    if dataclasses.asdict(generic) != dataclasses.asdict(GenericChannelSettings()):
        return [
            Line(
                WARNING,
                "[channels.generic] 不完整，缺少 secret"
                "（或 RETURNHUB__CHANNELS__GENERIC__SECRET）："
                "/webhooks/generic 一律回答 503，也不会回调 / incomplete: missing "
                "channels.generic.secret",
            )
        ]
    if any(not warning for warning, _ in shops.report(settings.channels)):
        return []  # a marketplace is live (below)
    return [
        Line(
            WARNING,
            "没有启用任何渠道：不会收到售后申请；请配置 [channels.generic] secret "
            "/ no channel is live",
        )
    ]


def _marketplaces(settings: Settings) -> list[Line]:
    return [
        Line(WARNING if warn else INFO, text) for warn, text in shops.report(settings.channels)
    ]


def _ignored(settings: Settings) -> list[Line]:
    dingtalk = settings.dingtalk
    half = _dingtalk_filled(settings) and not dingtalk.enabled and not dingtalk.robots
    incomplete = [
        Line(
            WARNING,
            "[dingtalk] 不完整，缺少 app_key 或 app_secret（或 RETURNHUB__DINGTALK__APP_SECRET）："
            "钉钉未启用 / incomplete: missing dingtalk.app_key or app_secret",
        )
    ]
    return incomplete if half else []


def _access(settings: Settings) -> list[Line]:
    lines = []
    if not settings.members:
        lines.append(
            Line(WARNING, "未配置成员（[[members]]）：没有人能审批或收到卡片 / no members")
        )
    if not settings.api.token:
        if settings.server.demo:
            text = (
                "[api] token 为空：演示模式下仅本机直连可访问 /api/*，其余请求回答 401 "
                "/ api.token is empty: only direct loopback requests pass (demo)"
            )
        else:
            text = (
                "[api] token 为空：读取 API（/api/*）关闭，所有请求回答 401；设置 "
                "RETURNHUB__API__TOKEN 后开放 / api.token is empty: the read API is closed (401)"
            )
        lines.append(Line(WARNING, text))
    return lines


def _calendar(settings: Settings, today: date | None) -> list[Line]:
    """Years the holiday data does not cover yet: SLA due times skip weekends only."""
    year = (today or datetime.now(UTC).date()).year
    missing = unknown_years(settings.calendar, (year, year + 1))
    if not missing:
        return []
    years = "、".join(str(y) for y in missing)
    return [
        Line(
            WARNING,
            f"chinese-calendar 没有 {years} 年的节假日数据：这些年份的 SLA 时限只跳过周末，"
            "请升级 chinese-calendar / no holiday data for these years; weekends only",
        )
    ]


def startup_report(settings: Settings, today: date | None = None) -> list[Line]:
    """Which files were read, what is live, what is incomplete or ignored, what is closed."""
    return [
        *_sources(settings),
        *_platforms(settings),
        *_channels(settings),
        *_marketplaces(settings),
        *_ignored(settings),
        *_access(settings),
        *_calendar(settings, today),
    ]


def log_report(settings: Settings, log: logging.Logger) -> None:
    """`serve` and `demo`: one log line per finding, warnings at WARNING."""
    for line in startup_report(settings):
        log.log(line.level, "%s", line.text)


def render(settings: Settings) -> list[str]:
    """`check-config`: the same findings as text, warnings marked."""
    return [
        f"警告 / warning: {line.text}" if line.level >= WARNING else line.text
        for line in startup_report(settings)
    ]
