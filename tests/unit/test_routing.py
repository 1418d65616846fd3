"""Routing table at every boundary, with the shipped config/routing.toml as the rules."""

from __future__ import annotations

import tomllib
from textwrap import dedent
from typing import Any

import pytest

from bot.money import parse_yuan
from bot.settings import config_dir
from handlers.routing import (
    Decision,
    RouteInput,
    RoutingRules,
    Tier,
    parse_rules,
    route,
)


@pytest.fixture(scope="module")
def rules() -> RoutingRules:
    data = tomllib.loads((config_dir() / "routing.toml").read_text(encoding="utf-8"))
    parsed, errors = parse_rules(data)
    assert errors == []
    return parsed


def inp(
    amount: str,
    *,
    flagged: bool = False,
    channel: str = "generic",
    kind: str = "refund_only",
    reason: str = "quality.defect",
    categories: frozenset[str] = frozenset(),
) -> RouteInput:
    fen = parse_yuan(amount)
    return RouteInput(fen, channel, kind, reason, categories, flagged)


HISTORY = ("customer_history",)


@pytest.mark.parametrize(
    ("amount", "flagged", "tier", "auto", "steps", "attach", "sla"),
    [
        ("0.01", False, "auto", True, (), (), ""),
        ("29.90", False, "auto", True, (), (), ""),
        ("50.00", False, "auto", True, (), (), ""),
        ("50.01", False, "cs_lead", False, ("cs_lead",), (), "first_review"),
        ("500.00", False, "cs_lead", False, ("cs_lead",), (), "first_review"),
        ("500.01", False, "director", False, ("ops_director",), HISTORY, "director_review"),
        ("5000.00", False, "director", False, ("ops_director",), HISTORY, "director_review"),
        (
            "5000.01",
            False,
            "director_finance",
            False,
            ("ops_director", "finance_director"),
            HISTORY,
            "director_review",
        ),
        ("29.90", True, "flagged_small", False, ("cs_lead",), (), "first_review"),
        ("50.00", True, "flagged_small", False, ("cs_lead",), (), "first_review"),
        ("50.01", True, "cs_lead", False, ("cs_lead",), (), "first_review"),
        ("800.00", True, "director", False, ("ops_director",), HISTORY, "director_review"),
    ],
)
def test_default_tiers(
    rules: RoutingRules,
    amount: str,
    flagged: bool,
    tier: str,
    auto: bool,
    steps: tuple[str, ...],
    attach: tuple[str, ...],
    sla: str,
) -> None:
    assert route(inp(amount, flagged=flagged), rules) == Decision(tier, auto, steps, attach, sla)


def test_flagged_customer_never_auto_approves_even_if_config_says_so() -> None:
    only_auto = RoutingRules(tiers=(Tier("auto", None, None, auto_approve=True),))
    assert route(inp("10.00"), only_auto).auto_approve is True
    decision = route(inp("10.00", flagged=True), only_auto)
    assert decision == Decision("fallback", False, ("cs_lead",), (), "first_review")


def _rules(text: str) -> RoutingRules:
    parsed, errors = parse_rules(tomllib.loads(dedent(text)))
    assert errors == []
    return parsed


FILTERED = """
    fallback_steps = ["admin"]
    fallback_sla = "director_review"
    [[tier]]
    name = "douyin_exchange"
    channels = ["douyin"]
    kinds = ["exchange"]
    steps = ["warehouse"]
    [[tier]]
    name = "quality"
    reasons = ["quality"]
    steps = ["risk"]
    [[tier]]
    name = "food"
    categories = ["food"]
    steps = ["cs_lead"]
    [[tier]]
    name = "normal_only"
    customer = "normal"
    up_to = "100.00"
    auto_approve = true
"""


@pytest.mark.parametrize(
    ("kwargs", "tier"),
    [
        ({"channel": "douyin", "kind": "exchange"}, "douyin_exchange"),
        ({"channel": "taobao", "kind": "exchange", "reason": "quality.defect"}, "quality"),
        ({"channel": "douyin", "kind": "refund_only", "reason": "quality"}, "quality"),
        ({"reason": "quality_issue", "categories": frozenset({"food", "toy"})}, "food"),
        ({"reason": "qualityx.defect"}, "normal_only"),
        ({"reason": "size.too_small", "flagged": True}, "fallback"),
    ],
)
def test_filters(kwargs: dict[str, Any], tier: str) -> None:
    decision = route(inp("20.00", **kwargs), _rules(FILTERED))
    assert decision.tier == tier
    if tier == "fallback":
        assert decision.steps == ("admin",)
        assert decision.sla == "director_review"


def test_steps_tier_without_sla_uses_fallback_sla() -> None:
    rules = _rules('[[tier]]\nname = "t"\nsteps = ["cs_lead"]\n')
    assert rules.tiers[0].sla == "first_review"


@pytest.mark.parametrize(
    ("tier_text", "message"),
    [
        ('name = "x"\nup_to = "50.001"\nauto_approve = true', "is not an amount"),
        ('name = "x"\nup_to = 50\nauto_approve = true', "expected a string"),
        ('name = "x"\nabove = "50.00"\nup_to = "50.00"\nauto_approve = true', "less than"),
        ('name = "x"', "either auto_approve"),
        ('name = "x"\nauto_approve = true\nsteps = ["cs_lead"]', "either auto_approve"),
        ('name = "x"\nsteps = ["cs_lead"]\nkinds = ["refund"]', "unknown kind"),
        ('name = "x"\nsteps = ["cs_lead"]\ncustomer = "vip"', "customer must be"),
        ('name = "fallback"\nsteps = ["cs_lead"]', "reserved"),
        ('name = "x"\nauto_approve = true\ncustomer = "flagged"', "never auto-approved"),
        ('name = "x"\nsteps = ["cs_lead"]\ncolour = "red"', "unknown key tier[0].colour"),
        ('steps = ["cs_lead"]', "missing key 'name'"),
    ],
)
def test_tier_errors(tier_text: str, message: str) -> None:
    _, errors = parse_rules(tomllib.loads("[[tier]]\n" + tier_text + "\n"))
    assert len(errors) == 1, errors
    assert message in errors[0]
    assert errors[0].startswith("routing.toml:")


def test_tier_labels_for_operators() -> None:
    from bot.settings import config_dir, load

    rules = load(config_dir() / "returnhub.example.toml", env={}).routing
    assert rules.label("director") == "运营总监审批"
    assert rules.label("fallback") == "兜底规则"
    assert rules.label("gone") == "gone"
