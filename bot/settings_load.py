"""Loading and validating settings: the one pass behind `load()` and `check-config`.

Kept apart from the dataclasses in bot/settings.py so each file stays readable;
every check appends to one error list, reported as `file:line: message`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot import settings_parse as parse
from bot.config_locate import ConfigError, Report, apply_env, read_toml
from bot.settings import (
    DEFAULT_ROLES,
    ENV_PREFIX,
    ERROR_POSITION,
    SECTIONS,
    FilesSettings,
    Settings,
    config_dir,
)
from bot.settings_checks import CHAT_NEEDS_APP, check_values
from bot.settings_parse import CHAT_ID_RULE
from handlers.routing import RoutingRules, parse_rules
from handlers.sla_policies import SlaConfig, parse_sla
from handlers.warehouse_rules import WarehouseRules, parse_warehouse

# The section parsers are bot/settings_parse.py, the checks of the built Settings
# bot/settings_checks.py; their messages are importable from here as before.
__all__ = ["CHAT_ID_RULE", "CHAT_NEEDS_APP", "ConfigError", "check", "load"]

log = logging.getLogger("bot.settings")


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


def _rule_file(
    files: FilesSettings, key: str, base: Path, report: Report
) -> tuple[dict[str, Any], Report] | None:
    """Read routing.toml / sla.toml beside the main file, else the packaged default."""
    relative, default = getattr(files, key), getattr(FilesSettings(), key)
    path = base / relative
    if not path.is_file():
        if report.locator and report.locator.find(("files", key)):
            log.warning(
                "%s 不存在，改用内置的 %s / not found; using the packaged one", path, default
            )
        path = config_dir() / default
    parsed = read_toml(path, str(path), report.errors)
    return (parsed[0], Report(str(path), parsed[1], errors=report.errors)) if parsed else None


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
    table, base = data or {}, main.parent if main else config_dir()
    sections: dict[str, Any] = {
        name: parse.section(table, report, cls, name) for name, cls in SECTIONS.items()
    }
    channels, roles = parse.channels(table, report), parse.roles(table, report)
    declared = frozenset(DEFAULT_ROLES) | frozenset(roles)
    members = parse.members(table, report, declared)
    known = declared if data is not None else None  # main file unparsed: skip role checks
    sla, rules = SlaConfig(), RoutingRules(tiers=())
    sla_names = None  # sla.toml unreadable: don't also flag every tier's policy
    if parsed_sla := _rule_file(sections["files"], "sla", base, report):
        sla = parse_sla(parsed_sla[0], parsed_sla[1], known_roles=known)[0]
        sla_names = sla.policies.keys()
    if parsed_rules := _rule_file(sections["files"], "routing", base, report):
        kw = {"known_roles": known, "sla_names": sla_names}
        rules = parse_rules(parsed_rules[0], parsed_rules[1], **kw)[0]
    warehouse = WarehouseRules()
    if parsed_warehouse := _rule_file(sections["files"], "warehouse", base, report):
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
    check_values(settings, report)
    if errors:
        raise ConfigError(_by_file_and_line(errors))
    return settings


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
