"""Scanning a parcel by text: one, several or no matching cases, a second scan, and
unexpected parcels matched when their case arrives. Both engines."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from bot.events import Sender
from storage.db import Database
from storage.models import AuditEvent, InboxKey, ScanState, UnexpectedParcel
from tests.support import FakeClock, table_counts
from tests.unit.warehouse_support import (
    actions,
    open_parcel,
    say,
    status,
    told,
    warehouse_ctx,
)

SF = "SF1234567890123"


async def test_one_match_is_received_whatever_the_scanner_typed(
    db: Database, tmp_path: Path
) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    case_id = await open_parcel(ctx, 1, SF)
    assert await status(db, case_id) == "awaiting_return"
    await say(ctx, "s1", "顺丰 ＳＦ１２３４５６７８９０１２３-1-1-")
    assert await status(db, case_id) == "received"
    assert (await told(db))[-1] == f"已签收 {case_id}，请验货"


async def test_a_waybill_stored_without_its_prefix_still_matches(
    db: Database, tmp_path: Path
) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    case_id = await open_parcel(ctx, 1, "1234567890123")
    await say(ctx, "s1", SF)
    assert await status(db, case_id) == "received"


async def test_a_qr_code_url_and_an_order_number_match(db: Database, tmp_path: Path) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    by_url = await open_parcel(ctx, 1, "YT1234567890123")
    by_order = await open_parcel(ctx, 2, None, order_id="SO20261101009")
    await say(ctx, "s1", "https://www.kuaidi100.com/chaxun?com=yuantong&nu=YT1234567890123")
    await say(ctx, "s2", "so20261101009")
    assert [await status(db, c) for c in (by_url, by_order)] == ["received", "received"]


async def test_several_matches_are_listed_and_the_reply_picks(
    db: Database, tmp_path: Path
) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    first = await open_parcel(ctx, 1, None, order_id="SO-SHARED-77")
    second = await open_parcel(ctx, 2, None, order_id="SO-SHARED-77")
    await say(ctx, "s1", "SO-SHARED-77")
    listing = (await told(db))[-1]
    assert "匹配到 2 个待签收的售后单" in listing
    assert f"1. {second}" in listing and f"2. {first}" in listing  # newest first
    assert [await status(db, c) for c in (first, second)] == ["awaiting_return"] * 2
    await say(ctx, "s2", "２")  # a full-width digit picks too
    assert await status(db, first) == "received"
    assert await status(db, second) == "awaiting_return"
    # The pick is spent: the same number again is no answer (and no scan).
    await say(ctx, "s3", "2")
    assert (await told(db))[-1] == "发送 /帮助 查看可用命令"


async def test_lookup_command_picks_one_of_the_listed_cases(db: Database, tmp_path: Path) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    first = await open_parcel(ctx, 1, "JDVA00000000077")
    second = await open_parcel(ctx, 2, "JDVA00000000077")
    await say(ctx, "s1", "JDVA00000000077-1-1-")
    await say(ctx, "s2", f"/查单 {second.lower()}")
    assert await status(db, second) == "received"
    assert await status(db, first) == "awaiting_return"


async def test_a_second_scan_says_who_received_it_and_when(db: Database, tmp_path: Path) -> None:
    clock = FakeClock()
    ctx = await warehouse_ctx(db, tmp_path, clock)
    case_id = await open_parcel(ctx, 1, SF)
    await say(ctx, "s1", SF)
    clock.advance(3600)
    before = await table_counts(db)
    await say(ctx, "s2", f"sf {SF[2:]}")
    again = (await told(db))[-1]
    assert again == (
        f"{case_id} 已由 小周 于 11-23 10:00 签收，无需重复签收（当前状态：已签收待验货），"
        "请在验货卡片上选择结果"
    )
    after = await table_counts(db)
    assert after["audit_events"] == before["audit_events"]  # nothing started over
    assert after["cards"] == before["cards"]
    assert (await actions(db, case_id)).count("receive") == 1


async def test_a_scan_is_handled_once_per_chat_message(db: Database, tmp_path: Path) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    await open_parcel(ctx, 1, SF)
    for _ in range(3):
        await say(ctx, "s1", SF)  # the platform redelivers
    assert len(await told(db)) == 1
    async with db.read() as session:
        assert await session.get(InboxKey, "s1") is not None


async def test_no_match_offers_an_unexpected_parcel_then_its_case_arrives(
    db: Database, tmp_path: Path
) -> None:
    clock = FakeClock()
    ctx = await warehouse_ctx(db, tmp_path, clock)
    await say(ctx, "s1", "中通 78123456789012")
    assert "未找到与 78123456789012 匹配的售后单" in (await told(db))[-1]
    assert "回复「登记」" in (await told(db))[-1]
    async with db.read() as session:
        assert await session.scalar(select(func.count(UnexpectedParcel.id))) == 0
    await say(ctx, "s2", "登记")
    assert (await told(db))[-1].startswith("已登记意外包裹 #1：78123456789012")
    # Searchable: the same scan, /查单 and /意外包裹 all know it.
    await say(ctx, "s3", "78123456789012")
    assert "由 小周 登记为意外包裹（#1）" in (await told(db))[-1]
    await say(ctx, "s4", "/查单 78123456789012")
    assert "由 小周 登记为意外包裹（#1）" in (await told(db))[-1]
    await say(ctx, "s5", "/意外包裹")
    assert "#1 78123456789012 · 小周" in (await told(db))[-1]

    clock.advance(86400)
    case_id = await open_parcel(ctx, 9, "78123456789012-1-1")
    async with db.read() as session:
        parcel = await session.get(UnexpectedParcel, 1)
        assert parcel is not None and parcel.case_id == case_id
        trail = list(
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.case_id == case_id, AuditEvent.action == "unexpected_matched"
                )
            )
        )
    assert len(trail) == 1 and "意外包裹 #1" in trail[0].detail
    assert (await told(db))[-1] == (
        f"您于 11-23 10:00 登记的意外包裹 78123456789012 已匹配到售后单 {case_id}，"
        "请重新扫码签收并验货"
    )
    await say(ctx, "s6", "/意外包裹")
    assert (await told(db))[-1] == "暂无未匹配的意外包裹"
    await say(ctx, "s7", "78123456789012-1-1")
    assert await status(db, case_id) == "received"


async def test_the_unexpected_command_records_with_a_note_once(
    db: Database, tmp_path: Path
) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    known = await open_parcel(ctx, 1, SF)
    await say(ctx, "u1", "/意外包裹 YT9999999999999 箱子破损")
    await say(ctx, "u2", "/unexpected yt9999999999999")
    await say(ctx, "u3", f"/意外包裹 {SF}")
    replies = (await told(db))[-3:]
    assert replies[0].startswith("已登记意外包裹 #1：YT9999999999999")
    assert "无需重复登记" in replies[1]
    assert replies[2] == f"{SF} 已匹配售后单 {known}，请直接发送单号扫码签收"
    async with db.read() as session:
        rows = list(await session.scalars(select(UnexpectedParcel)))
    assert [(p.code, p.note, p.recorded_by) for p in rows] == [
        ("YT9999999999999", "箱子破损", "小周")
    ]


async def test_only_the_warehouse_scans_and_a_sentence_is_no_scan(
    db: Database, tmp_path: Path
) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    case_id = await open_parcel(ctx, 1, SF)
    await say(ctx, "m1", SF, Sender("console", "小美"))
    await say(ctx, "s1", f"明天 {SF} 有破损")
    await say(ctx, "s2", "/意外包裹 YT1", Sender("console", "小美"))
    assert await status(db, case_id) == "awaiting_return"
    assert (await told(db, "小美"))[0] == "发送 /帮助 查看可用命令"
    assert (await told(db))[-1] == "发送 /帮助 查看可用命令"
    async with db.read() as session:
        assert await session.scalar(select(func.count(UnexpectedParcel.id))) == 0


async def test_a_stale_offer_is_not_answered(db: Database, tmp_path: Path) -> None:
    clock = FakeClock()
    ctx = await warehouse_ctx(db, tmp_path, clock)
    await say(ctx, "s1", "YT5555555555555")
    clock.advance(31 * 60)
    await say(ctx, "s2", "登记")
    async with db.read() as session:
        assert await session.scalar(select(func.count(UnexpectedParcel.id))) == 0
        state = await session.scalar(select(ScanState))
        assert state is not None and state.prompt == ""
