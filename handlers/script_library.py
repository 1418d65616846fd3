"""The dispute script library: one TOML file per scenario under `[files] scripts`.

A file names the scenario (the file's stem), its title and aliases, when it applies,
which inspection findings (and reason codes) suggest it, the variables it needs beyond
the case's own, per-SKU defaults for them, the customer-facing `reply` template and
the internal SOP steps (docs/scripts.md). Templates compile in the sandbox of
handlers/script_sandbox.py.

Operators edit the files while the server runs: `ScriptShelf.catalog` compares the
directory's file names, sizes and mtimes on every use and re-reads it when anything
changed, so a new or edited scenario answers on the next command, no restart. A file
with an error is left out (and logged); `returnhub check-config` lists every error as
`file:line: message`, from the same parser.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from bot.config_locate import Report, read_toml
from handlers.script_sandbox import ScriptEnvironment, render

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 * 1024
# Variables every case provides (handlers/disputes.py case_variables); docs/scripts.md.
CASE_VARIABLES: dict[str, str] = {
    "单号": "售后单号 RC-…",
    "订单号": "渠道订单号",
    "商品": "商品名称（多件用、连接）",
    "件数": "退货商品总件数",
    "申请金额": "买家申请的金额（元）",
    "退款金额": "批准的退款金额（元），已定时才有",
    "扣款": "扣款金额（元），售后单记有扣款时才有",
    "买家": "买家昵称",
    "原因": "退货原因（中文）",
    "原因代码": "两级原因代码，如 quality.defect",
    "退货运单": "退货运单号，有时才有",
    "快递公司": "退货快递公司，有时才有",
    "渠道": "渠道与店铺",
    "申请时间": "售后单创建时间（月-日 时:分）",
    "签收时间": "仓库签收时间，签收后才有",
    "验货结果": "仓库验货结论（破损、缺配件…），挂起后才有",
    "处理时限": "当前审批步骤的处理时限，有时才有",
}
# Given as 名称=金额 in chat: checked as yuan and written without trailing zeros.
MONEY_VARIABLES = frozenset({"申请金额", "退款金额", "扣款", "补偿金额"})
# Inspection outcomes a scenario may be suggested for (handlers/warehouse.py ANOMALIES).
FINDINGS = frozenset({"damaged", "missing_parts", "wrong_item", "empty"})
_LIST_KEYS = ("aliases", "findings", "reasons", "variables", "sop")
_TEXT_KEYS = ("title", "applies", "reply")
_NAME = re.compile(r"[^\W\d]\w*")


def fold(word: str) -> str:
    """How names and aliases are compared: NFKC (full-width letters), case-folded."""
    return unicodedata.normalize("NFKC", word).strip().casefold()


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    aliases: tuple[str, ...]
    applies: str
    findings: tuple[str, ...]
    reasons: tuple[str, ...]
    variables: tuple[str, ...]
    sop: tuple[str, ...]
    defaults: Mapping[str, Mapping[str, str]]
    template: jinja2.Template = field(repr=False)
    source: str = ""

    def filled(self, skus: tuple[str, ...], known: Mapping[str, str]) -> dict[str, str]:
        """The case's variables over the scenario's defaults ("*", then each SKU)."""
        values: dict[str, str] = dict(self.defaults.get("*", {}))
        for sku in skus:
            values.update(self.defaults.get(sku, {}))
        values.update({k: v for k, v in known.items() if v})
        return values

    def missing(self, values: Mapping[str, str]) -> list[str]:
        return [name for name in self.variables if not values.get(name)]

    def render(self, values: Mapping[str, str]) -> str:
        return render(self.template, values)


@dataclass(frozen=True)
class Catalog:
    scenarios: tuple[Scenario, ...] = ()
    errors: tuple[str, ...] = ()

    def find(self, word: str) -> Scenario | None:
        wanted = fold(word)
        for s in self.scenarios:
            if wanted in (fold(s.name), fold(s.title), *(fold(a) for a in s.aliases)):
                return s
        return None

    def for_finding(self, finding: str, reason_code: str) -> Scenario | None:
        """The scenario an inspection finding suggests: one whose reason prefixes match
        the case's reason code first, else one that names no reasons."""
        fits = [s for s in self.scenarios if finding in s.findings]
        for s in fits:
            if any(reason_code == r or reason_code.startswith(f"{r}.") for r in s.reasons):
                return s
        return next((s for s in fits if not s.reasons), None)


def _reply_offset(text: str, line: int) -> int:
    """Lines between `reply =` and the template's first line (a \"\"\" then newline)."""
    rest = text.splitlines()[line - 1].split("=", 1)[-1].strip()
    return 1 if rest in ('"""', "'''") else 0


def _strings(report: Report, data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        report.at((key,), f"{key}: 须为非空字符串的列表 / must be a list of non-empty strings")
        return ()
    return tuple(v.strip() for v in value)


def _defaults(
    report: Report, data: dict[str, Any], allowed: set[str]
) -> dict[str, dict[str, str]]:
    table = data.get("defaults", {})
    if not isinstance(table, dict):
        report.at(("defaults",), 'defaults: 须为表，如 [defaults."SKU"] / must be a table')
        return {}
    found: dict[str, dict[str, str]] = {}
    for sku, values in table.items():
        if not isinstance(values, dict):
            report.at(("defaults", sku), f"defaults.{sku}: 须为表 / must be a table")
            continue
        for name, value in values.items():
            if name not in allowed:
                report.at(
                    ("defaults", sku, name), f"未知变量「{name}」（请先在 variables 中声明）"
                )
            elif not isinstance(value, str | int | float) or isinstance(value, bool):
                report.at(("defaults", sku, name), f"defaults.{sku}.{name}: 须为字符串或数字")
            else:
                found.setdefault(sku, {})[name] = str(value)
    return found


def parse_file(path: Path, env: ScriptEnvironment, errors: list[str]) -> Scenario | None:
    """One scenario file, or None after adding its errors (`file:line: message`)."""
    display = str(path)
    if path.stat().st_size > MAX_FILE_BYTES:
        errors.append(f"{display}:1: 文件超过 {MAX_FILE_BYTES // 1024} KB / file too large")
        return None
    parsed = read_toml(path, display, errors)
    if parsed is None:
        return None
    data, locator = parsed
    before = len(errors)
    report = Report(display, locator, errors=errors)
    for key in data:
        if key not in (*_LIST_KEYS, *_TEXT_KEYS, "defaults"):
            report.at((key,), f"未知字段 / unknown key: {key}")
    texts: dict[str, str] = {}
    for key in _TEXT_KEYS:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            report.at((key,), f"{key}: 必填，须为非空字符串 / required, a non-empty string")
        else:
            texts[key] = value
    lists = {key: _strings(report, data, key) for key in _LIST_KEYS}
    for finding in lists["findings"]:
        if finding not in FINDINGS:
            report.at(
                ("findings",),
                f"findings: 未知验货结果 {finding}（可用：{'、'.join(sorted(FINDINGS))}）",
            )
    for name in lists["variables"]:
        if not _NAME.fullmatch(name):
            report.at(("variables",), f"variables: 「{name}」不是合法的变量名")
    allowed = set(CASE_VARIABLES) | set(lists["variables"])
    defaults = _defaults(report, data, allowed)
    template = _compile(env, texts.get("reply"), report, locator.find(("reply",)), allowed, path)
    if len(errors) > before or template is None:
        return None
    return Scenario(
        name=path.stem,
        title=texts["title"].strip(),
        aliases=lists["aliases"],
        applies=texts["applies"].strip(),
        findings=lists["findings"],
        reasons=lists["reasons"],
        variables=lists["variables"],
        sop=lists["sop"],
        defaults=defaults,
        template=template,
        source=display,
    )


def _compile(
    env: ScriptEnvironment,
    reply: str | None,
    report: Report,
    line: int | None,
    allowed: set[str],
    path: Path,
) -> jinja2.Template | None:
    if reply is None or line is None:
        return None
    start = line + _reply_offset(path.read_text(encoding="utf-8"), line)
    try:
        tree = env.parse(reply)
        template = env.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:
        report.errors.append(
            f"{report.file}:{start + exc.lineno - 1}: 模板语法错误：{exc.message}"
        )
        return None
    unknown = sorted(meta.find_undeclared_variables(tree) - allowed - set(env.globals))
    for name in unknown:
        at = next((n for n, text in enumerate(reply.splitlines()) if name in text), 0)
        report.errors.append(
            f"{report.file}:{start + at}: 未知变量「{name}」（案件变量见 docs/scripts.md，"
            "其他变量请在 variables 中声明）"
        )
    return None if unknown else template


def load_dir(directory: Path, env: ScriptEnvironment | None = None) -> Catalog:
    """Every `*.toml` in `directory`, by file name; aliases must be unique across them."""
    env = env or ScriptEnvironment()
    errors: list[str] = []
    scenarios: list[Scenario] = []
    owner: dict[str, str] = {}
    for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
        scenario = parse_file(path, env, errors)
        if scenario is None:
            continue
        names = [scenario.name, scenario.title, *scenario.aliases]
        clash = [n for n in dict.fromkeys(fold(n) for n in names) if n in owner]
        if clash:
            parsed = read_toml(path, str(path), [])
            report = Report(str(path), parsed[1] if parsed else None, errors=errors)
            for word in clash:
                report.at(("aliases",), f"名称或别名「{word}」与 {owner[word]} 重复")
            continue
        owner.update({fold(n): path.name for n in names})
        scenarios.append(scenario)
    return Catalog(tuple(scenarios), tuple(errors))


def check_dir(directory: Path) -> list[str]:
    """The errors `returnhub check-config` prints for the scripts directory."""
    if not directory.is_dir():
        return [f"{directory}: 话术目录不存在 / scripts directory not found"]
    catalog = load_dir(directory)
    if not catalog.scenarios and not catalog.errors:
        return [f"{directory}: 没有任何 *.toml 话术场景 / no scenario files"]
    return list(catalog.errors)


def _signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    if not directory.is_dir():
        return ()
    found = []
    for path in directory.glob("*.toml"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed while we looked
            continue
        found.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(found))


class ScriptShelf:
    """The catalog of each scripts directory, re-read when its files change (held by
    Ctx, shared by its copies; no module-level state)."""

    def __init__(self) -> None:
        self._env = ScriptEnvironment()
        self._loaded: dict[Path, tuple[tuple[tuple[str, int, int], ...], Catalog]] = {}

    def catalog(self, directory: Path) -> Catalog:
        signature = _signature(directory)
        held = self._loaded.get(directory)
        if held is not None and held[0] == signature:
            return held[1]
        catalog = load_dir(directory, self._env)
        for error in catalog.errors:
            log.error("dispute script: %s", error)
        log.info("loaded %d dispute scripts from %s", len(catalog.scenarios), directory)
        self._loaded[directory] = (signature, catalog)
        return catalog
