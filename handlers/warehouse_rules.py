"""Warehouse rules (config/warehouse.toml): what follows each inspection result, when a
return's refund is released, the parts and damages the warehouse picks from, the
per-part price list risk deducts from, and the abuse threshold.

Data only, validated at start-up with `file:line` messages (bot/config_locate.py),
because a typo here silently releases money ("relase") or never flags an abuser.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.config_locate import Key, Report, build
from bot.money import parse_yuan
from storage.models import Case

OUTCOMES = ("ok", "damaged", "missing_parts", "wrong_item", "empty")
ANOMALIES = frozenset(OUTCOMES[1:])
FOLLOWS = ("release", "hold", "reject")
RELEASE_ON = ("approval", "scan", "inspection")


@dataclass(frozen=True)
class Category:
    """A SKU category: its parts with their prices (fen), in the order the file lists them."""

    name: str
    label: str = ""
    skus: tuple[str, ...] = ()  # SKU prefixes
    parts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AbuseRule:
    window_days: int = 180
    threshold: int = 3
    kinds: frozenset[str] = ANOMALIES


@dataclass(frozen=True)
class WarehouseRules:
    outcomes: dict[str, str] = field(
        default_factory=lambda: {o: ("release" if o == "ok" else "hold") for o in OUTCOMES}
    )
    release_return: str = "inspection"
    release_tiers: dict[str, str] = field(default_factory=dict)
    damages: tuple[str, ...] = ()
    categories: tuple[Category, ...] = ()
    abuse: AbuseRule = AbuseRule()

    def follows(self, outcome: str) -> str:
        """release | hold | reject for an inspection result."""
        return self.outcomes.get(outcome, "release" if outcome == "ok" else "hold")

    def release_on(self, case: Case) -> str:
        """When the case's refund leaves: refund-only on approval (there is no parcel);
        a return per its tier, else the default; an exchange refunds nothing."""
        if case.kind == "refund_only":
            return "approval"
        if case.kind == "exchange":
            return "inspection"
        return self.release_tiers.get(case.tier, self.release_return)

    def categories_of(self, case: Case) -> list[Category]:
        """The categories of the case's items: the channel's category name, else a prefix."""
        found: list[Category] = []
        for item in case.items:
            for cat in self.categories:
                named = item.category == cat.name
                if (named or any(item.sku.startswith(p) for p in cat.skus)) and cat not in found:
                    found.append(cat)
        return found

    def parts(self, case: Case) -> dict[str, int]:
        """Part -> price (fen) over the case's categories, first listing wins."""
        prices: dict[str, int] = {}
        for cat in self.categories_of(case):
            for part, fen in cat.parts.items():
                prices.setdefault(part, fen)
        return prices

    def presets(self, case: Case, outcome: str) -> list[str]:
        """What the warehouse picks from for an anomaly: parts for 缺配件, damages for 破损."""
        if outcome == "missing_parts":
            return list(self.parts(case))
        if outcome == "damaged":
            return list(self.damages)
        return []


@dataclass(frozen=True)
class _CategorySpec:
    name: str
    label: str = ""
    skus: tuple[str, ...] = ()
    parts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _ReleaseSpec:
    return_refund: str = "inspection"
    tiers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _InspectionSpec:
    damages: tuple[str, ...] = ()


@dataclass(frozen=True)
class _AbuseSpec:
    window_days: int = 180
    threshold: int = 3
    kinds: tuple[str, ...] = tuple(sorted(ANOMALIES))


@dataclass(frozen=True)
class _TopSpec:
    outcomes: dict[str, str] = field(default_factory=dict)
    release: Any = None
    inspection: Any = None
    category: tuple[Any, ...] = ()
    abuse: Any = None


def _one_of(value: str, allowed: tuple[str, ...], path: Key, report: Report) -> bool:
    if value in allowed:
        return True
    report.at(path, f"{path[-1]} = {value!r}：应为 {'、'.join(allowed)} 之一 / must be one of "
              f"{', '.join(allowed)}")  # fmt: skip
    return False


def _category(spec: _CategorySpec, path: Key, report: Report) -> Category:
    prices: dict[str, int] = {}
    for part, text in spec.parts.items():
        try:
            prices[part] = parse_yuan(text)
        except ValueError:
            report.at(
                (*path, "parts", part),
                f'category {spec.name!r}: {part} = {text!r} 不是金额（如 "35.00"） '
                '/ is not an amount like "35.00"',
            )
    if not spec.skus:
        report.at(path, f"category {spec.name!r}: skus 至少要有一个前缀 / skus must name a prefix")
    return Category(spec.name, spec.label or spec.name, spec.skus, prices)


def _abuse(table: Any, report: Report) -> AbuseRule:
    spec = build(_AbuseSpec, table, ("abuse",), report) or _AbuseSpec()
    if spec.window_days <= 0:
        report.at(("abuse", "window_days"), "abuse.window_days 必须为正数 / must be positive")
    if spec.threshold < 1:
        report.at(("abuse", "threshold"), "abuse.threshold 至少为 1 / must be at least 1")
    kinds = {k for k in spec.kinds if _one_of(k, tuple(sorted(ANOMALIES)), ("abuse", "kinds"),
                                              report)}  # fmt: skip
    return AbuseRule(max(spec.window_days, 1), max(spec.threshold, 1), frozenset(kinds))


def parse_warehouse(
    data: Mapping[str, Any], report: Report | None = None, *, tiers: Collection[str] | None = None
) -> tuple[WarehouseRules, list[str]]:
    """Validate warehouse.toml data; `tiers` (routing tier names) checks [release.tiers]."""
    report = report or Report("warehouse.toml")
    top = build(_TopSpec, dict(data), (), report) or _TopSpec()
    outcomes = WarehouseRules().outcomes
    for outcome, follows in top.outcomes.items():
        path: Key = ("outcomes", outcome)
        if outcome not in OUTCOMES:
            report.at(path, f"未知验货结果 / unknown outcome {outcome!r}（{'、'.join(OUTCOMES)}）")
        elif _one_of(follows, FOLLOWS, path, report):
            outcomes[outcome] = follows
    if outcomes["ok"] == "reject":
        report.at(
            ("outcomes", "ok"), "outcomes.ok 不能是 reject / a good parcel is never rejected"
        )
    release = build(_ReleaseSpec, top.release or {}, ("release",), report) or _ReleaseSpec()
    _one_of(release.return_refund, RELEASE_ON, ("release", "return_refund"), report)
    for tier, when in release.tiers.items():
        path = ("release", "tiers", tier)
        _one_of(when, RELEASE_ON, path, report)
        if tiers is not None and tier not in tiers:
            report.at(path, f"release.tiers：未知档位 / unknown routing tier {tier!r}")
    inspection = build(_InspectionSpec, top.inspection or {}, ("inspection",), report)
    categories: list[Category] = []
    for i, table in enumerate(top.category):
        spec = build(_CategorySpec, table, ("category", i), report)
        if spec is None:
            continue
        if any(c.name == spec.name for c in categories):
            report.at(("category", i, "name"), f"category {spec.name!r} 重复 / is listed twice")
        categories.append(_category(spec, ("category", i), report))
    rules = WarehouseRules(
        outcomes=outcomes,
        release_return=release.return_refund,
        release_tiers=dict(release.tiers),
        damages=inspection.damages if inspection else (),
        categories=tuple(categories),
        abuse=_abuse(top.abuse or {}, report),
    )
    return rules, report.errors
