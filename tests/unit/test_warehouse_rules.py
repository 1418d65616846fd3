"""warehouse.toml: the packaged defaults, and every mistake named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.settings import config_dir, load
from bot.settings_load import check
from handlers.warehouse_rules import WarehouseRules
from storage.models import Case, CaseItem
from tests.unit.test_settings import errors_of, write


def test_the_packaged_rules_are_the_seeds(tmp_path: Path) -> None:
    rules = load(config_dir() / "returnhub.example.toml", env={}).warehouse
    assert rules.follows("ok") == "release" and rules.follows("missing_parts") == "hold"
    assert (rules.abuse.window_days, rules.abuse.threshold) == (180, 3)
    feeder = Case(kind="return_refund", tier="auto", items=[CaseItem(sku="FEEDER-2", category="")])
    assert rules.parts(feeder) == {"滤网": 3500, "电源适配器": 5900, "食盆": 2500}
    assert rules.release_on(feeder) == "inspection"
    refund_only = Case(kind="refund_only", tier="director", items=[])
    assert rules.release_on(refund_only) == "approval", "nothing to scan: on approval"
    by_name = Case(kind="return_refund", tier="x", items=[CaseItem(sku="X1", category="feeder")])
    assert "滤网" in rules.presets(by_name, "missing_parts"), "the channel's category name"
    assert WarehouseRules().follows("empty") == "hold", "Settings() defaults agree"


def test_mistakes_are_named_by_file_and_line(tmp_path: Path) -> None:
    main = write(tmp_path, "returnhub.toml", '[files]\nwarehouse = "wh.toml"\n')
    wh = write(
        tmp_path,
        "wh.toml",
        """
        [outcomes]
        ok = "reject"
        damaged = "relase"
        broken = "hold"
        [release]
        return_refund = "whenever"
        [release.tiers]
        nosuch = "scan"
        [[category]]
        name = "feeder"
        skus = []
        parts = { "滤网" = "35元" }
        [abuse]
        threshold = 0
        kinds = ["stolen"]
        colour = "red"
        """,
    )
    errors = errors_of(main)
    assert [e.split(": ", 1)[0] for e in errors] == [
        f"{wh}:{n}" for n in (2, 3, 4, 6, 8, 9, 12, 14, 15, 16)
    ], errors
    text = "\n".join(errors)
    for said in ("a good parcel is never rejected", "'relase'", "unknown outcome 'broken'",
                 "unknown routing tier 'nosuch'", "'35元' 不是金额", "skus must name a prefix",
                 "threshold 至少为 1", "'stolen'", "unknown key abuse.colour"):  # fmt: skip
        assert said in text, said


def test_check_config_reports_them_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_file = write(tmp_path, "returnhub.toml", '[files]\nwarehouse = "wh.toml"\n')
    write(tmp_path, "wh.toml", '[outcomes]\nempty = "refund"\n')
    assert check(main_file, env={}) == [
        f"{tmp_path / 'wh.toml'}:2: empty = 'refund'：应为 release、hold、reject 之一 "
        "/ must be one of release, hold, reject"
    ]
    assert main(["check-config", "--config", str(main_file)]) == 2
    assert "wh.toml:2:" in capsys.readouterr().out
