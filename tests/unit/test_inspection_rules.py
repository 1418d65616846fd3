"""Inspection outcome rules and release timing (warehouse.toml), and exchanges that end
`exchange_shipped` only when the channel reports the replacement's waybill."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import select

from bot.events import ChatMessage, Item, Sender
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.context import Ctx
from handlers.intake import on_return_request
from storage import timers
from storage.db import Database
from storage.models import AuditEvent, Inspection, Timer
from tests.unit.test_flow import NOW, case_of, click, outbox, request, setup, texts_to
from tests.unit.test_resolve import card_token

WAREHOUSE = Sender("console", "小周")


def with_rules(ctx: Ctx, **changes: object) -> Ctx:
    rules = dataclasses.replace(ctx.settings.warehouse, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, warehouse=rules))


async def parcel(db: Database, ctx: Ctx, n: int, kind: str = "return_refund") -> str:
    waybill = f"SF6600000{n:03d}"
    item = Item("FEEDER-2", "自动喂食器", 1, 3900)
    amount = 0 if kind == "exchange" else 3900
    event = request(n, amount, kind=kind, return_waybill=waybill, items=(item,))
    return (await on_return_request(event, ctx)).case_id or ""


async def scan(db: Database, ctx: Ctx, case_id: str, n: int) -> None:
    await on_chat_message(ChatMessage(f"s{n}", WAREHOUSE, f"SF6600000{n:03d}"), ctx)


async def press(db: Database, ctx: Ctx, case_id: str, action: str, n: int) -> None:
    await on_card_action(
        click(200 + n, "小周", await card_token(db, case_id, "小周", action)), ctx
    )


async def test_each_anomaly_asks_for_its_detail_from_the_category_presets(db: Database) -> None:
    ctx = await setup(db)
    case_id = await parcel(db, ctx, 1)
    await scan(db, ctx, case_id, 1)
    await press(db, ctx, case_id, "damaged", 1)
    assert "可选：外壳破损、屏幕碎裂" in (await texts_to(db, "小周"))[-1]
    await on_chat_message(ChatMessage("x1", WAREHOUSE, "/取消"), ctx)
    assert (await case_of(db, case_id)).status == "received", "a cancelled question holds nothing"
    await press(db, ctx, case_id, "wrong_item", 2)
    assert "请直接输入说明" in (await texts_to(db, "小周"))[-1]
    await on_chat_message(ChatMessage("x2", WAREHOUSE, "收到的是 FOUNTAIN-2L 饮水机"), ctx)
    case = await case_of(db, case_id)
    assert case.status == "on_hold"
    async with db.read() as session:
        row = (await session.scalars(select(Inspection))).one()
    assert (row.outcome, row.detail, row.inspector) == (
        "wrong_item", "收到的是 FOUNTAIN-2L 饮水机", "小周"
    )  # fmt: skip
    events = [
        m.payload for m in await outbox(db, "channel.event") if m.payload["event"] == "on_hold"
    ]
    assert [(e["finding"], e["detail"]) for e in events] == [
        ("wrong_item", "收到的是 FOUNTAIN-2L 饮水机")
    ]


async def test_a_hold_stops_the_case_clocks(db: Database) -> None:
    ctx = await setup(db)
    case_id = await parcel(db, ctx, 1)
    await scan(db, ctx, case_id, 1)
    async with db.transaction() as session:
        timers.schedule(
            session, case_id=case_id, kind="inspect_due", due_at=NOW + timedelta(hours=24)
        )
    await press(db, ctx, case_id, "empty", 1)
    async with db.read() as session:
        before = {
            t.id: (t.kind, t.payload.get("stage"))
            for t in await session.scalars(select(Timer).where(Timer.status == "pending"))
        }
    assert sorted(before.values()) == [("inspect_due", None), ("sla", "inspection")]
    await on_chat_message(ChatMessage("d1", WAREHOUSE, "箱内只有泡沫"), ctx)
    async with db.read() as session:
        after = list(await session.scalars(select(Timer).where(Timer.case_id == case_id)))
    assert {t.id: t.status for t in after if t.id in before} == dict.fromkeys(before, "cancelled")
    (armed,) = [t for t in after if t.status == "pending"]
    assert (armed.kind, armed.payload["stage"]) == ("sla", "hold"), "the hold runs its own clock"


async def test_the_outcome_rules_can_reject_or_release_an_anomaly(db: Database) -> None:
    base = await setup(db)
    ctx = with_rules(
        base,
        outcomes={**base.settings.warehouse.outcomes, "empty": "reject", "damaged": "release"},
    )
    empty = await parcel(db, ctx, 1)
    await scan(db, ctx, empty, 1)
    await press(db, ctx, empty, "empty", 1)
    await on_chat_message(ChatMessage("d1", WAREHOUSE, "空箱"), ctx)
    assert (await case_of(db, empty)).status == "rejected"
    assert "已按验货规则驳回" in (await texts_to(db, "小周"))[-1]
    assert "空包（空箱）" in (await texts_to(db, "小美"))[-1], "CS is told what to say"
    rejected = [
        m.payload for m in await outbox(db, "channel.event") if m.payload["event"] == "rejected"
    ]
    assert [r["case_id"] for r in rejected] == [empty]

    scratched = await parcel(db, ctx, 2)
    await scan(db, ctx, scratched, 2)
    await press(db, ctx, scratched, "damaged", 2)
    await on_chat_message(ChatMessage("d2", WAREHOUSE, "划痕"), ctx)
    case = await case_of(db, scratched)
    assert (case.status, case.refund_fen) == ("refund_pending", 3900)


async def test_a_tier_may_release_on_approval_or_on_the_first_scan(db: Database) -> None:
    base = await setup(db)
    ctx = with_rules(base, release_tiers={"auto": "approval"})
    early = await parcel(db, ctx, 1)
    assert (await case_of(db, early)).status == "refund_pending", "released on approval"
    await scan(db, ctx, early, 1)
    case = await case_of(db, early)
    assert case.status == "refund_pending" and case.received_at is not None
    assert "退款已放行" in (await texts_to(db, "小周"))[-1]
    await press(db, ctx, early, "missing_parts", 1)
    await on_chat_message(ChatMessage("d1", WAREHOUSE, "滤网"), ctx)
    assert (await case_of(db, early)).status == "refund_pending", "nothing left to hold"
    assert "退款已于审批通过时按规则放行" in (await texts_to(db, "陈风控"))[-1]
    await press(db, ctx, early, "ok", 2)  # a second inspection
    assert (
        "当前状态" in (await texts_to(db, "小周"))[-1]
        or "无需" in (await texts_to(db, "小周"))[-1]
    )
    async with db.read() as session:
        assert len(list(await session.scalars(select(Inspection)))) == 1
    assert len(await outbox(db, "channel.refund")) == 1

    ctx = with_rules(base, release_tiers={"auto": "scan"})
    scanned = await parcel(db, ctx, 3)
    assert (await case_of(db, scanned)).status == "awaiting_return"
    await scan(db, ctx, scanned, 3)
    assert (await case_of(db, scanned)).status == "refund_pending"
    assert "退款已按规则放行" in (await texts_to(db, "小周"))[-1]
    await press(db, ctx, scanned, "ok", 3)
    assert "已记录" in (await texts_to(db, "小周"))[-1]
    assert len(await outbox(db, "channel.refund")) == 2


async def test_an_exchange_ends_shipped_only_with_the_new_waybill(db: Database) -> None:
    ctx = await setup(db)
    case_id = await parcel(db, ctx, 1, kind="exchange")
    await scan(db, ctx, case_id, 1)
    await press(db, ctx, case_id, "ok", 1)
    assert (await case_of(db, case_id)).status == "exchange_pending"
    [asked] = [
        m.payload
        for m in await outbox(db, "channel.event")
        if m.payload["event"] == "exchange_requested"
    ]
    assert asked["items"] == [{"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1}]
    assert not await outbox(db, "channel.refund"), "an exchange refunds nothing"

    failed = request(1, 0, kind="exchange", status="exchange_failed", version="2",
                     key="generic:main-store:x-2", reason_text="仓库缺货")  # fmt: skip
    await on_return_request(failed, ctx)
    assert (await case_of(db, case_id)).status == "exchange_pending"
    for who in ("小周", "王组长", "管理员"):
        assert "换货补发失败：仓库缺货" in (await texts_to(db, who))[-1]
    async with db.read() as session:
        audited = await session.scalar(
            select(AuditEvent.detail).where(AuditEvent.action == "exchange_failed")
        )
    assert audited is not None and "仓库缺货" in audited

    shipped = request(1, 0, kind="exchange", status="exchange_shipped", version="3",
                      key="generic:main-store:x-3", exchange_waybill="SF9000000001",
                      exchange_carrier="SF")  # fmt: skip
    await on_return_request(shipped, ctx)
    case = await case_of(db, case_id)
    assert (case.status, case.exchange_waybill) == ("exchange_shipped", "SF9000000001")
    assert "换货已发出，新运单 SF SF9000000001" in (await texts_to(db, "小美"))[-1]
