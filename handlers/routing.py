"""Approval routing: which tier a return request falls in, and who must decide.

Rules are data (config/routing.toml, DESIGN.md §5): ordered tiers, first match
wins. `route` is a pure function so the whole table can be tested at every
boundary; `parse_rules` validates the TOML at start-up and names file and line
for every mistake, because a wrong tier silently auto-approves money.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bot.config_locate import Key, Report, build
from bot.money import parse_yuan

KINDS = frozenset({"refund_only", "return_refund", "exchange"})
CUSTOMER = frozenset({"any", "flagged", "normal"})


@dataclass(frozen=True)
class Tier:
    """One row of the routing table. Empty filter sets mean "any"."""

    name: str
    above_fen: int | None  # exclusive lower bound
    up_to_fen: int | None  # inclusive upper bound
    channels: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()  # "quality" matches "quality.defect"
    categories: frozenset[str] = frozenset()  # any item's category in the set
    customer: str = "any"  # "any" | "flagged" | "normal"
    auto_approve: bool = False
    steps: tuple[str, ...] = ()  # roles, in approval order
    attach: tuple[str, ...] = ()  # e.g. "customer_history" on the card
    sla: str = ""
    label: str = ""  # what operators read on cards (the name when empty)


@dataclass(frozen=True)
class RoutingRules:
    tiers: tuple[Tier, ...]
    fallback_steps: tuple[str, ...] = ("cs_lead",)
    fallback_sla: str = "first_review"

    def label(self, tier: str) -> str:
        """The operators' name for a tier (cards, replies); `fallback` when none matched."""
        if tier == "fallback":
            return "兜底规则"
        found = next((t for t in self.tiers if t.name == tier), None)
        return (found.label or found.name) if found else tier


@dataclass(frozen=True)
class RouteInput:
    amount_fen: int
    channel: str
    kind: str
    reason_code: str
    categories: frozenset[str]
    customer_flagged: bool


@dataclass(frozen=True)
class Decision:
    tier: str
    auto_approve: bool
    steps: tuple[str, ...]
    attach: tuple[str, ...]
    sla: str


def _reason_matches(reason: str, wanted: frozenset[str]) -> bool:
    return any(reason == w or reason.startswith(w + ".") for w in wanted)


def matches(tier: Tier, inp: RouteInput) -> bool:
    """Whether `inp` falls in `tier`, ignoring the flagged-customer invariant."""
    if tier.above_fen is not None and inp.amount_fen <= tier.above_fen:
        return False
    if tier.up_to_fen is not None and inp.amount_fen > tier.up_to_fen:
        return False
    if tier.customer != "any" and (tier.customer == "flagged") != inp.customer_flagged:
        return False
    return (
        (not tier.channels or inp.channel in tier.channels)
        and (not tier.kinds or inp.kind in tier.kinds)
        and (not tier.reasons or _reason_matches(inp.reason_code, tier.reasons))
        and (not tier.categories or bool(tier.categories & inp.categories))
    )


def route(inp: RouteInput, rules: RoutingRules) -> Decision:
    """The first matching tier decides; nothing matching goes to the fallback steps.

    A flagged customer never auto-approves, whatever the config says: auto tiers
    are skipped for them here, not only by ordering in routing.toml.
    """
    for tier in rules.tiers:
        if tier.auto_approve and inp.customer_flagged:
            continue
        if matches(tier, inp):
            return Decision(tier.name, tier.auto_approve, tier.steps, tier.attach, tier.sla)
    return Decision("fallback", False, rules.fallback_steps, (), rules.fallback_sla)


@dataclass(frozen=True)
class _TierSpec:
    """The TOML shape of a tier, checked by `build` before meaning is given to it."""

    name: str
    above: str = ""
    up_to: str = ""
    channels: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    customer: str = "any"
    auto_approve: bool = False
    steps: tuple[str, ...] = ()
    attach: tuple[str, ...] = ()
    sla: str = ""
    label: str = ""


@dataclass(frozen=True)
class _TopSpec:
    fallback_steps: tuple[str, ...] = ("cs_lead",)
    fallback_sla: str = "first_review"
    tier: tuple[Any, ...] = ()  # tables, checked one by one below


def _amount(spec: _TierSpec, key: str, path: Key, report: Report) -> int | None:
    text = getattr(spec, key)
    if text == "":
        return None
    try:
        return parse_yuan(text, allow_zero=True)
    except ValueError:
        report.at(
            (*path, key),
            f'tier {spec.name!r}: {key} = {text!r} 不是金额（如 "50.00"） '
            '/ is not an amount like "50.00"',
        )
        return None


def _check_roles(
    roles: tuple[str, ...], known: Collection[str] | None, path: Key, what: str, report: Report
) -> None:
    for role in roles:
        if known is not None and role not in known:
            report.at(path, f"{what}: 未知角色 / unknown role {role!r}")


def _tier(
    spec: _TierSpec,
    path: Key,
    report: Report,
    known_roles: Collection[str] | None,
    sla_names: Collection[str] | None,
    default_sla: str,
) -> Tier:
    above, up_to = _amount(spec, "above", path, report), _amount(spec, "up_to", path, report)
    label = f"tier {spec.name!r}"
    if above is not None and up_to is not None and above >= up_to:
        report.at(
            (*path, "up_to"), f"{label}: above 必须小于 up_to / above must be less than up_to"
        )
    if spec.auto_approve == bool(spec.steps):
        report.at(
            path,
            f"{label}: auto_approve = true 与 steps 必须二选一 "
            "/ set either auto_approve = true or steps",
        )
    if spec.auto_approve and spec.customer == "flagged":
        report.at(
            (*path, "customer"),
            f"{label}: 风险客户不能自动通过 / flagged customers are never auto-approved",
        )
    if spec.customer not in CUSTOMER:
        report.at(
            (*path, "customer"),
            f"{label}: customer 只能是 any、flagged、normal "
            "/ customer must be one of any, flagged, normal",
        )
    for kind in set(spec.kinds) - KINDS:
        report.at(
            (*path, "kinds"),
            f"{label}: 未知类型 {kind!r}（refund_only、return_refund、exchange） "
            f"/ unknown kind {kind!r}",
        )
    _check_roles(spec.steps, known_roles, (*path, "steps"), label, report)
    sla = spec.sla or ("" if spec.auto_approve else default_sla)
    if sla and sla_names is not None and sla not in sla_names:
        report.at((*path, "sla"), f"{label}: 未知 SLA 策略 / unknown SLA policy {sla!r}")
    return Tier(
        name=spec.name,
        above_fen=above,
        up_to_fen=up_to,
        channels=frozenset(spec.channels),
        kinds=frozenset(spec.kinds),
        reasons=frozenset(spec.reasons),
        categories=frozenset(spec.categories),
        customer=spec.customer,
        auto_approve=spec.auto_approve,
        steps=spec.steps,
        attach=spec.attach,
        sla=sla,
        label=spec.label,
    )


def _filters(t: Tier) -> tuple[object, ...]:
    return (t.channels, t.kinds, t.reasons, t.categories, t.customer)


def _overlap(a: Tier, b: Tier) -> bool:
    lo = max(
        -1 if a.above_fen is None else a.above_fen, -1 if b.above_fen is None else b.above_fen
    )
    inf = float("inf")
    hi = min(
        inf if a.up_to_fen is None else a.up_to_fen, inf if b.up_to_fen is None else b.up_to_fen
    )
    return _filters(a) == _filters(b) and lo < hi


def parse_rules(
    data: Mapping[str, Any],
    report: Report | None = None,
    *,
    known_roles: Collection[str] | None = None,
    sla_names: Collection[str] | None = None,
) -> tuple[RoutingRules, list[str]]:
    """Validate routing.toml data; returns the rules and the error list (empty when valid).

    `known_roles` / `sla_names` of None skip those cross-checks (e.g. when the
    file that defines them failed to parse, to avoid a cascade of errors).
    """
    report = report or Report("routing.toml")
    top = build(_TopSpec, dict(data), (), report) or _TopSpec()
    if not top.fallback_steps:
        report.at(
            ("fallback_steps",),
            "fallback_steps 至少要有一个角色 / fallback_steps must name at least one role",
        )
    _check_roles(top.fallback_steps, known_roles, ("fallback_steps",), "fallback_steps", report)
    if sla_names is not None and top.fallback_sla not in sla_names:
        report.at(
            ("fallback_sla",),
            f"fallback_sla: 未知 SLA 策略 / unknown SLA policy {top.fallback_sla!r}",
        )
    tiers: list[Tier] = []
    for i, table in enumerate(top.tier):
        path: Key = ("tier", i)
        spec = build(_TierSpec, table, path, report)
        if spec is None:
            continue
        tier = _tier(spec, path, report, known_roles, sla_names, top.fallback_sla)
        if spec.name in ("", "fallback") or any(t.name == spec.name for t in tiers):
            report.at(
                (*path, "name"),
                f"tier {spec.name!r}: 名称为空、保留或重复 / name is empty, reserved or taken",
            )
        earlier = next((t for t in tiers if _overlap(t, tier)), None)
        if earlier is not None:
            report.at(
                path,
                f"tier {tier.name!r} 与 tier {earlier.name!r} 重叠（条件相同，金额区间相交） / "
                f"overlaps tier {earlier.name!r}",
            )
        tiers.append(tier)
    rules = RoutingRules(tuple(tiers), top.fallback_steps or ("cs_lead",), top.fallback_sla)
    return rules, report.errors
