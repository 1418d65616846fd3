"""Dispute scripts through chat: rendered from real case data, recorded on the case,
outcomes from chat and from the risk card, the hold's suggestion, and hot reload."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.events import ChatMessage, Item, Sender
from bot.settings import config_dir
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.context import Ctx
from handlers.intake import on_return_request
from handlers.script_library import load_dir
from storage import timers
from storage.db import Database
from storage.models import AuditEvent, CardRecord, DisputeEvent
from tests.unit.test_flow import card_token, case_of, click, request, setup, texts_to
from tests.unit.test_warehouse import inspected

MEI = Sender("console", "小美")
RISK = Sender("console", "陈风控")
SEED_REPLY = (
    "您退回的自动喂食器缺少滤网组件，是否需要我们补发？若确认遗失，可扣除35元配件费后完成退款。"
)
# A held parcel: the part the warehouse named (滤网), priced from warehouse.toml (35 yuan).
HELD_REPLY = SEED_REPLY.replace("滤网组件", "滤网")


async def returned(
    db: Database, ctx: Ctx, n: int, finding: str = "", detail: str = "", **kw: object
) -> str:
    """A 49.90-yuan return of an automatic feeder, scanned in; inspected if `finding`
    (an anomaly answered with `detail`: which part, what damage)."""
    waybill = f"SF90000000{n:02d}"
    parcel = request(n, 4990, kind="return_refund", return_waybill=waybill, **kw)
    case_id = (await on_return_request(parcel, ctx)).case_id or ""
    await on_chat_message(ChatMessage(f"scan{n}", Sender("console", "小周"), waybill), ctx)
    if finding:
        await inspected(db, ctx, case_id, n, finding, detail)
    return case_id


async def say(ctx: Ctx, db: Database, who: Sender, text: str, key: str) -> str:
    await on_chat_message(ChatMessage(key, who, text), ctx)
    return (await texts_to(db, who.user_id))[-1]


async def disputes(db: Database, case_id: str) -> list[DisputeEvent]:
    async with db.read() as session:
        rows = await session.scalars(
            select(DisputeEvent).where(DisputeEvent.case_id == case_id).order_by(DisputeEvent.id)
        )
        return list(rows)


async def test_script_alone_lists_every_shipped_scenario(db: Database) -> None:
    ctx = await setup(db)
    answer = await say(ctx, db, MEI, "/话术", "l1")
    for name in ("缺配件", "人为损坏", "已使用影响二次销售", "错发调包", "空包", "超过七天无理由",
                 "物流破损", "恶意退货嫌疑"):  # fmt: skip
        assert f"· {name}" in answer
    assert await say(ctx, db, MEI, "/script", "l2") == answer


async def test_missing_parts_is_filled_with_the_case_and_kept_on_it(db: Database) -> None:
    ctx = await setup(db)
    case_id = await returned(db, ctx, 1)
    answer = await say(ctx, db, MEI, f"/话术 缺配件 {case_id}", "s1")
    assert answer.startswith(f"【话术 · 缺配件】{case_id}\n回复买家（可直接复制）：\n")
    assert SEED_REPLY in answer  # the feeder's defaults: 滤网组件, 35 yuan
    assert "按全额49.90元" in answer and "内部处理步骤：\n1. 核对仓库验货照片" in answer
    [row] = await disputes(db, case_id)
    assert (row.kind, row.scenario, row.actor) == ("script", "缺配件", "member:小美")
    assert row.text.startswith("亲，您好！" + SEED_REPLY)
    async with db.read() as session:
        trail = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == "dispute_script")
        )
    assert trail is not None and trail.case_id == case_id
    assert json.loads(trail.detail) == {"text": row.text, "why": "缺配件"}


async def test_given_values_win_and_amounts_are_checked(db: Database) -> None:
    ctx = await setup(db)
    case_id = await returned(db, ctx, 2)
    answer = await say(
        ctx, db, MEI, f"/话术 {case_id} missing-parts 配件=电源线 扣款=12.5元", "g1"
    )
    assert "缺少电源线" in answer and "可扣除12.50元配件费" in answer
    refused = await say(ctx, db, MEI, f"/话术 缺配件 {case_id} 扣款=很多", "g2")
    assert refused == "扣款=很多 不是金额，请写成 扣款=35 或 扣款=35.50"
    assert len(await disputes(db, case_id)) == 1, "a refused request keeps nothing"


async def test_a_variable_the_case_lacks_is_asked_for_never_blank(db: Database) -> None:
    ctx = await setup(db)
    other = (Item("LITTER-9", "智能猫砂盆", 1, 4990),)
    case_id = await returned(db, ctx, 3, items=other)
    asked = await say(ctx, db, MEI, f"/话术 缺配件 {case_id}", "m1")
    assert asked == (
        f"生成「缺配件」话术还缺少：配件、扣款。请这样发送：/话术 缺配件 {case_id} 配件=… 扣款=…"
    )
    assert await disputes(db, case_id) == []
    answer = await say(ctx, db, MEI, f"/话术 缺配件 {case_id} 配件=滤网 扣款=35", "m2")
    assert "您退回的智能猫砂盆缺少滤网，是否需要我们补发？若确认遗失，可扣除35元配件费" in answer


@pytest.mark.parametrize(
    ("scenario", "given", "expect"),
    [
        ("缺配件", "", "缺少滤网组件"),
        ("人为损坏", "扣款=20", "存在明显的人为损坏痕迹（详见验货照片）"),
        ("已使用影响二次销售", "使用痕迹=明显污渍 扣款=15", "有明显污渍，已影响二次销售"),
        ("错发调包", "", "运单 SF9000000010"),
        ("空包", "", "包裹内没有自动喂食器"),
        ("超过七天无理由", "签收天数=12", "已签收12天"),
        ("物流破损", "", "全额退款49.90元"),
        ("恶意退货嫌疑", "", "（49.90元）"),
    ],
)
async def test_every_shipped_scenario_renders_with_real_case_data(
    db: Database, scenario: str, given: str, expect: str
) -> None:
    ctx = await setup(db)
    case_id = await returned(db, ctx, 10)
    answer = await say(ctx, db, MEI, f"/话术 {scenario} {case_id} {given}".strip(), "e1")
    assert expect in answer, answer
    assert "自动喂食器" in answer or "SO10" in answer
    assert "{{" not in answer and "None" not in answer
    [row] = await disputes(db, case_id)
    assert row.scenario == scenario and row.text in answer


async def test_an_order_number_or_waybill_names_the_case(db: Database) -> None:
    ctx = await setup(db)
    case_id = await returned(db, ctx, 4)
    by_order = await say(ctx, db, MEI, "/话术 空包 SO4", "o1")
    by_waybill = await say(ctx, db, MEI, "/话术 空包 SF9000000004", "o2")
    assert by_order.startswith(f"【话术 · 空包】{case_id}") and by_waybill == by_order
    assert await say(ctx, db, MEI, "/话术 空包 NOPE123", "o3") == "未找到与 NOPE123 相关的售后单"


async def test_a_scenario_without_a_case_explains_itself(db: Database) -> None:
    ctx = await setup(db)
    answer = await say(ctx, db, MEI, "/话术 调包", "a1")
    assert answer.startswith("【话术 · 错发调包】\n适用：")
    assert "生成回复：/话术 错发调包 RC-…" in answer
    unknown = await say(ctx, db, MEI, "/话术 不存在的场景", "a2")
    assert unknown.startswith("没有名为「不存在的场景」的话术场景。")


async def test_only_the_dispute_roles_may_pull_scripts(db: Database) -> None:
    ctx = await setup(db)
    case_id = await returned(db, ctx, 5)
    refused = await say(ctx, db, Sender("console", "小周"), f"/话术 缺配件 {case_id}", "r1")
    assert refused.startswith("您没有「客服/客服组长/运营总监/风控」角色，不能使用 /话术")
    assert await disputes(db, case_id) == []


async def test_an_outcome_recorded_in_chat_joins_the_dispute(db: Database) -> None:
    ctx = await setup(db)
    case_id = await returned(db, ctx, 6, "missing_parts", "滤网")
    answer = await say(ctx, db, MEI, f"/记录 {case_id} 客户同意扣款 35元", "n1")
    assert answer == f"已记录到 {case_id}，纠纷结果：客户同意，金额 35元"
    plain = await say(ctx, db, MEI, f"/note {case_id} 已电话联系买家", "n2")
    assert plain == f"已记录到 {case_id}"
    await say(ctx, db, MEI, f"/记录 {case_id} 客户不同意，要求平台介入", "n3")
    rows = await disputes(db, case_id)
    assert [(r.kind, r.scenario, r.outcome, r.amount_fen) for r in rows] == [
        ("script", "缺配件", "", None),  # suggested when the parcel was held
        ("outcome", "缺配件", "agreed", 3500),
        ("outcome", "缺配件", "refused", None),
    ]
    lookup = await say(ctx, db, MEI, f"/查单 {case_id}", "n4")
    assert "纠纷：11-21 10:00 system 调取话术「缺配件」" in lookup
    assert "纠纷：11-21 10:00 小美 记录「客户同意 35元」客户同意扣款 35元" in lookup
    assert "证据：备注 3 条" in lookup


async def test_a_hold_suggests_the_script_to_risk_and_customer_service(db: Database) -> None:
    ctx = await setup(db)
    case_id = await returned(db, ctx, 7, "missing_parts", "滤网")
    async with db.read() as session:
        card = (
            await session.scalars(
                select(CardRecord).where(CardRecord.case_id == case_id, CardRecord.kind == "risk")
            )
        ).one()
    fields = dict(card.card["fields"])
    assert fields["建议话术"].startswith("缺配件：亲，您好！" + HELD_REPLY)
    assert fields["建议处理"] == "扣款退款：扣除滤网 ¥35.00，退款 ¥14.90"
    labels = [b["label"] for b in card.card["buttons"]]
    assert labels == ["全额退款", "扣款退款", "驳回退款", "客户同意", "客户拒绝", "升级平台介入"]
    notice = (await texts_to(db, "小美"))[-1]
    assert notice.startswith(f"【验货异常】{case_id} 验货结果「缺配件（滤网）」，退款已暂停")
    assert HELD_REPLY in notice and f"/记录 {case_id}" in notice


async def test_a_damaged_parcel_suggests_by_reason(db: Database) -> None:
    ctx = await setup(db)
    shipped = await returned(db, ctx, 8, "damaged", "外壳破损", reason_code="logistics.damaged")
    human = await returned(db, ctx, 9, "damaged", "进水")
    mei = await texts_to(db, "小美")
    assert any(f"{shipped} " in t and "建议话术（物流破损）" in t for t in mei)
    # 人为损坏 needs a deduction nobody gave yet: the notice says how to fill it in.
    assert any(f"{human} " in t and f"/话术 人为损坏 {human} 扣款=…" in t for t in mei), mei
    assert [r.scenario for r in await disputes(db, human)] == []


async def test_the_risk_card_buttons_record_outcomes_and_leave_it_open(db: Database) -> None:
    ctx = await setup(db)
    case_id = await returned(db, ctx, 11, "wrong_item", "收到的是饮水机")
    token = await card_token(db, case_id, "陈风控", "dispute_escalated")
    await on_card_action(click(1, "陈风控", token), ctx)
    assert (await texts_to(db, "陈风控"))[-1] == f"已记录 {case_id} 的纠纷结果：升级平台介入"
    rows = await disputes(db, case_id)
    assert [(r.kind, r.scenario, r.outcome) for r in rows][-1] == (
        "outcome",
        "错发调包",
        "escalated",
    )
    assert (await case_of(db, case_id)).status == "on_hold"
    async with db.read() as session:
        states = await session.scalars(
            select(CardRecord.state).where(
                CardRecord.case_id == case_id, CardRecord.kind == "risk"
            )
        )
        assert list(states) == ["open"]
    # Risk still decides: the refund buttons work after an outcome was recorded.
    refund = await card_token(db, case_id, "陈风控", "resolve_refund")
    await on_card_action(click(2, "陈风控", refund), ctx)
    await on_chat_message(ChatMessage("why1", RISK, "平台判定退款"), ctx)  # the reason asked
    assert (await case_of(db, case_id)).status == "refund_pending"


async def test_a_new_scenario_file_answers_without_a_restart(db: Database, tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    shutil.copytree(config_dir() / "scripts", scripts)
    base = await setup(db)
    files = dataclasses.replace(base.settings.files, scripts=str(scripts))
    ctx = dataclasses.replace(base, settings=dataclasses.replace(base.settings, files=files))
    case_id = await returned(db, ctx, 12)
    assert "· 补发赠品" not in await say(ctx, db, MEI, "/话术", "h1")
    (scripts / "补发赠品.toml").write_text(
        'title = "补发赠品"\naliases = ["赠品"]\napplies = "买家反映少了赠品"\n'
        'reply = "亲，{{ 商品 }}的赠品我们今天为您补发，请注意查收。"\n',
        encoding="utf-8",
    )
    assert "· 补发赠品（又称 赠品）：买家反映少了赠品" in await say(ctx, db, MEI, "/话术", "h2")
    answer = await say(ctx, db, MEI, f"/话术 赠品 {case_id}", "h3")
    assert "亲，自动喂食器的赠品我们今天为您补发，请注意查收。" in answer
    # An edit is seen too; a broken edit leaves that scenario out and says so.
    (scripts / "补发赠品.toml").write_text('title = "补发赠品"\nreply = "{{ 商品 "\n', "utf-8")
    listed = await say(ctx, db, MEI, "/话术", "h4")
    assert "· 补发赠品" not in listed and "处话术文件错误" in listed
    assert load_dir(scripts).errors  # what check-config prints


async def test_lookup_names_the_next_sla_timer_when_no_step_is_due(db: Database) -> None:
    ctx = await setup(db)
    case_id = await returned(db, ctx, 13)
    async with db.transaction() as session:
        timers.schedule(
            session,
            case_id=case_id,
            kind="inspect_due",
            due_at=datetime(2026, 11, 22, 2, 0, tzinfo=UTC),
        )
    answer = await say(ctx, db, MEI, f"/查单 {case_id}", "t1")
    assert "下一次 SLA 提醒：11-22 10:00" in answer and "已签收待验货" in answer


async def test_a_broken_or_missing_scenario_leaves_the_hold_alone(
    db: Database, tmp_path: Path
) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "空包.toml").write_text(
        'title = "空包"\napplies = "空"\nfindings = ["empty"]\nreply = "{{ 1 // 0 }}"\n', "utf-8"
    )
    base = await setup(db)
    files = dataclasses.replace(base.settings.files, scripts=str(scripts))
    ctx = dataclasses.replace(base, settings=dataclasses.replace(base.settings, files=files))
    empty = await returned(db, ctx, 14, "empty", "空箱")
    wrong = await returned(db, ctx, 15, "wrong_item", "收到的是饮水机")  # no scenario for it
    for case_id in (empty, wrong):
        assert (await case_of(db, case_id)).status == "on_hold"
        assert await disputes(db, case_id) == []
    assert not any("【验货异常】" in t for t in await texts_to(db, "小美"))
    answer = await say(ctx, db, MEI, f"/话术 空包 {empty}", "b1")
    assert answer.startswith("「空包」话术模板有误，请联系管理员：模板出错：ZeroDivisionError")


async def test_an_outcome_button_from_outside_the_dispute_roles_is_refused(db: Database) -> None:
    ctx = await setup(db)
    case_id = await returned(db, ctx, 16, "empty", "空箱")
    before = [r.id for r in await disputes(db, case_id)]
    token = await card_token(db, case_id, "陈风控", "dispute_agreed")
    await on_card_action(click(3, "小周", token), ctx)  # a forwarded card
    assert (await texts_to(db, "小周"))[-1].startswith("您没有「")
    assert [r.id for r in await disputes(db, case_id)] == before
    async with db.read() as session:
        refused = await session.scalar(
            select(AuditEvent.action).where(AuditEvent.action == "refused:dispute_agreed")
        )
    assert refused is not None
