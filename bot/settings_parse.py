"""Parsing the main file's sections: the typed tables, [channels.*], [roles.*], [[members]]."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeVar

from bot.config_locate import Report, build
from bot.settings import (
    CHANNELS,
    ChannelsSettings,
    GenericChannelSettings,
    MemberConfig,
    RoleRoute,
)

T = TypeVar("T")
# appchat/create: a chatid is 1-32 letters or digits, and only the app's own chats work.
WECOM_CHAT_ID = re.compile(r"[0-9A-Za-z]{1,32}")
CHAT_ID_RULE = (
    "wecom_chat_id: 须为应用用 appchat/create 建的群聊 chatid（1-32 位字母或数字）"
    " / must be a chatid made by the app's appchat/create (1-32 letters or digits)"
)

# A member's `platforms = [...]`: each name and the user id it needs.
MEMBER_PLATFORMS = {"wecom": "wecom_userid", "dingtalk": "dingtalk_staff_id"}


def section(data: dict[str, Any], report: Report, cls: type[T], *path: str) -> T:
    """The table at `path` built into `cls`; its defaults when absent or invalid."""
    table: Any = data
    for part in path:
        table = table.get(part, {}) if isinstance(table, dict) else {}
    return build(cls, table, path, report) or cls()


def channels(data: dict[str, Any], report: Report) -> ChannelsSettings:
    table = data.get("channels", {})
    if not isinstance(table, dict):
        report.at(
            ("channels",),
            "channels: 应为 [channels.generic] 这样的表 / expected tables like [channels.generic]",
        )
        table = {}
    for name in table:
        if name != "generic" and name not in CHANNELS:
            report.at(("channels", name), f"未知渠道 / unknown channel [channels.{name}]")
    loose = {
        n: dataclasses.asdict(section(data, report, c, "channels", n)) for n, c in CHANNELS.items()
    }
    return ChannelsSettings(
        section(data, report, GenericChannelSettings, "channels", "generic"), **loose
    )


def roles(data: dict[str, Any], report: Report) -> dict[str, RoleRoute]:
    table = data.get("roles", {})
    if not isinstance(table, dict):
        report.at(
            ("roles",),
            "roles: 应为 [roles.warehouse] 这样的表 / expected tables like [roles.warehouse]",
        )
        return {}
    routes = {name: section(data, report, RoleRoute, "roles", name) for name in table}
    for name, route in routes.items():
        if route.wecom_chat_id and not WECOM_CHAT_ID.fullmatch(route.wecom_chat_id):
            report.at(("roles", name, "wecom_chat_id"), f"roles.{name}.{CHAT_ID_RULE}")
    return routes


def members(
    data: dict[str, Any], report: Report, known: frozenset[str]
) -> tuple[MemberConfig, ...]:
    tables = data.get("members", [])
    if not isinstance(tables, list):
        report.at(("members",), "members: 应为 [[members]] 表 / expected [[members]] tables")
        return ()
    members: list[MemberConfig] = []
    seen: dict[str, str] = {}
    for i, table in enumerate(tables):
        member = build(MemberConfig, table, ("members", i), report)
        if member is None:
            continue
        members.append(member)
        where = f"members[{i}] ({member.name})"
        if not member.roles:
            report.at(
                ("members", i, "roles"), f"{where}: roles 不能为空 / roles must not be empty"
            )
        for role in member.roles:
            if role not in known:
                msg = (
                    f"未知角色 {role!r}，请用 [roles.{role}] 表声明 / unknown role "
                    f"{role!r}; declare it with a [roles.{role}] table"
                )
                report.at(("members", i, "roles"), f"{where}: {msg}")
        for platform in member.platforms:
            key = MEMBER_PLATFORMS.get(platform)
            if key is None or not getattr(member, key):
                report.at(
                    ("members", i, "platforms"),
                    f"{where}: platforms 中的 {platform!r} 须为 "
                    + " 或 ".join(f'"{p}"（且已设置 {k}）' for p, k in MEMBER_PLATFORMS.items())
                    + f" / {platform!r} must be wecom or dingtalk, with its user id set",
                )
        for key in ("wecom_userid", "dingtalk_staff_id"):
            value = getattr(member, key)
            if value and key == "wecom_userid":  # 企业微信 userid 不区分大小写
                value = value.lower()
            if value and f"{key}={value}" in seen:
                other = seen[f"{key}={value}"]
                report.at(
                    ("members", i, key),
                    f"{where}: {key} 已被 {other} 使用 / {key} already used by {other}",
                )
            seen.setdefault(f"{key}={value}", member.name)
    return tuple(members)
