"""Chat command grammar: odd input gets a clear reply and changes nothing."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from bot.events import ChatMessage, Sender
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.context import Ctx
from handlers.intake import on_return_request
from storage.db import Database
from storage.models import AuditEvent, InboxKey
from tests.support import START, FakeClock
from tests.unit.test_flow import card_token, case_of, click, outbox, request, setup, texts_to

WANG = Sender("console", "王组长")


@pytest.mark.parametrize("text", ["/", "／", " / "])
async def test_a_bare_slash_gets_the_help_hint(db: Database, text: str) -> None:
    ctx = await setup(db)
    await on_chat_message(ChatMessage("b1", Sender("console", "王组长"), text), ctx)
    assert "/帮助" in [m.payload["text"] for m in await outbox(db, "text.send")][-1]
    async with db.read() as session:
        assert await session.scalar(select(func.count(InboxKey.key))) == 1


async def test_a_reason_sent_after_the_question_expired_is_not_a_mystery(db: Database) -> None:
    clock = FakeClock(START)
    ctx = dataclasses.replace(await setup(db), clock=clock)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    await on_card_action(
        click(1, "王组长", await card_token(db, case_id, "王组长", "reject")), ctx
    )
    clock.advance(31 * 60)
    await on_chat_message(ChatMessage("late", WANG, "商品已使用"), ctx)
    assert (await case_of(db, case_id)).status == "pending_approval"
    assert (await texts_to(db, "王组长"))[-1] == (
        f"对 {case_id} 的「驳回」已等待超过 30 分钟，已自动取消，这条消息没有被当作回复。"
        "请重新点击卡片按钮，或发送 /帮助 查看命令"
    )
    await on_chat_message(ChatMessage("again", WANG, "商品已使用"), ctx)
    assert (await texts_to(db, "王组长"))[-1] == "发送 /帮助 查看可用命令"


async def test_risk_sees_its_commands_in_help(db: Database) -> None:
    ctx = await setup(db)
    await on_chat_message(ChatMessage("h1", Sender("console", "陈风控"), "/帮助"), ctx)
    listed = (await texts_to(db, "陈风控"))[-1]
    assert "/驳回退款 RC-… 原因" in listed and "/取消" in listed and "/同意" not in listed


async def test_lookup_of_a_rejected_case_says_why(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    await on_chat_message(ChatMessage("j1", WANG, f"/驳回 {case_id} 超过七天"), ctx)
    await on_chat_message(ChatMessage("q1", Sender("console", "小美"), f"/查单 {case_id}"), ctx)
    answer = (await texts_to(db, "小美"))[-1]
    assert "第1步 客服组长：已驳回 王组长 11-21 10:00（原因：超过七天）" in answer


MEI = Sender("console", "小美")


async def said(db: Database, ctx: Ctx, who: Sender, text: str, key: str) -> str:
    await on_chat_message(ChatMessage(key, who, text), ctx)
    return (await texts_to(db, who.user_id))[-1]


async def audit_actions(db: Database) -> list[str]:
    async with db.read() as session:
        return list(await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


@pytest.mark.parametrize(
    ("who", "text"),
    [
        ("小美", "/同意 {case}"),
        ("小美", "/approve {case}"),
        ("小周", "/驳回 {case} 不行"),
        ("陈风控", "/转交 {case} @刘组长"),
        ("小美", "/驳回退款 {case} 不退"),
        ("小周", "/话术 缺配件 {case}"),
        ("小美", "/取消"),
        ("小周", "/deduct {case} 35 缺件"),
    ],
)
async def test_a_command_outside_the_members_roles_is_refused_and_changes_nothing(
    db: Database, who: str, text: str
) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    before = await case_of(db, case_id)
    trail = await audit_actions(db)
    answer = await said(db, ctx, Sender("console", who), text.format(case=case_id), "x1")
    assert answer.startswith("您没有「") and "角色，不能使用 /" in answer
    after = await case_of(db, case_id)
    assert (after.status, after.version) == (before.status, before.version)
    new = (await audit_actions(db))[len(trail) :]
    assert len(new) == 1 and new[0].startswith("refused:/")


async def test_cancel_runs_for_the_approver_it_belongs_to(db: Database) -> None:
    """/取消 was declared for approvers but ran for anyone; the router checks it now."""
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    await on_card_action(
        click(1, "王组长", await card_token(db, case_id, "王组长", "reject")), ctx
    )
    assert await said(db, ctx, WANG, "/取消", "c1") == f"已取消对 {case_id} 的操作"
    assert await said(db, ctx, WANG, "/取消", "c2") == "没有等待您回复的操作"
    # The warehouse may cancel too (its inspection question), so it is not refused.
    zhou = Sender("console", "小周")
    assert await said(db, ctx, zhou, "/cancel", "c3") == "没有等待您回复的操作"


async def test_approve_by_order_number_and_waybill(db: Database) -> None:
    ctx = await setup(db)
    first = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    assert await said(db, ctx, WANG, "/同意 SO1", "a1") == f"已同意 {first}"
    assert (await case_of(db, first)).status == "refund_pending"
    second = (await on_return_request(request(2, 13200, return_waybill="YT7788"), ctx)).case_id
    assert await said(db, ctx, WANG, "/驳回 YT7788 超过七天", "a2") == f"已驳回 {second}"
    assert await said(db, ctx, WANG, "/同意 NOPE9", "a3") == "未找到与 NOPE9 相关的售后单"


async def test_transfer_by_command(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    assert await said(db, ctx, WANG, f"/转交 {case_id} @刘组长", "t1") == (
        f"已将 {case_id} 转交给 刘组长"
    )


async def test_help_lists_what_the_sender_may_use_and_explains_one(db: Database) -> None:
    ctx = await setup(db)
    mei = await said(db, ctx, MEI, "/帮助", "h1")
    assert "/话术" in mei and "/统计" in mei and "/同意" not in mei and "/取消" not in mei
    wang = await said(db, ctx, WANG, "/help", "h2")  # a CS lead also decides held refunds
    assert all(f"/{w}" in wang for w in ("同意", "话术", "驳回退款", "扣款退款", "取消"))
    assert "扫码签收并验货" not in wang
    chen = await said(db, ctx, Sender("console", "陈风控"), "/帮助", "h7")
    assert "/驳回退款" in chen and "/扣款退款" in chen and "/同意" not in chen
    zhou = await said(db, ctx, Sender("console", "小周"), "/帮助", "h6")
    assert "/话术" not in zhou and "/同意" not in zhou and "扫码签收并验货" in zhou
    assert "/取消" in zhou and "/驳回退款" not in zhou  # the inspection question: /取消
    admin = await said(db, ctx, Sender("console", "管理员"), "/帮助", "h3")
    assert all(f"/{w}" in admin for w in ("同意", "话术", "驳回退款", "取消", "统计"))
    one = await said(db, ctx, MEI, "/帮助 话术", "h4")
    assert one.startswith("/话术 [场景] [RC-…]  查看争议话术")
    assert "别名：/话术 /script" in one and "配件=滤网 扣款=35" in one
    refused = await said(db, ctx, MEI, "/帮助 /approve", "h5")
    assert "可用角色：客服组长、运营总监、财务总监" in refused
    assert "（您当前没有使用此命令的角色）" in refused


@pytest.mark.parametrize(
    ("typed", "hint"),
    [("/话述", "/话术"), ("/stat 本周", "/stats"), ("/查当 RC-1", "/查单"), ("/hlep", "/help")],
)
async def test_an_unknown_command_suggests_the_closest(
    db: Database, typed: str, hint: str
) -> None:
    ctx = await setup(db)
    answer = await said(db, ctx, MEI, typed, "u1")
    assert f"您是不是想输入 {hint}？" in answer and "/帮助" in answer


async def test_a_near_miss_is_never_a_command_the_sender_cannot_use(db: Database) -> None:
    ctx = await setup(db)
    answer = await said(db, ctx, MEI, "/同义", "u2")  # 同意 is for approvers
    assert "您是不是想输入 /同意" not in answer and answer.startswith("未知命令 /同义。")


async def test_group_mentions_and_full_width_forms(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    full = case_id.translate(str.maketrans("RC-0123456789", "ＲＣ－０１２３４５６７８９"))
    assert await said(db, ctx, WANG, f"@售后机器人　同意　{full}", "g1") == f"已同意 {case_id}"
    lookup = await said(db, ctx, MEI, f"、查单 {case_id}", "g2")
    assert lookup.startswith(f"【{case_id}】")


async def test_lookup_shows_steps_due_evidence_and_disputes(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    await said(db, ctx, MEI, f"/记录 {case_id} 买家补充了照片", "k1")
    answer = await said(db, ctx, MEI, "/查单 SO1", "k2")
    assert answer.startswith(f"【{case_id}】待审批")
    assert "第1步 客服组长：待处理" in answer and "（时限 " in answer
    assert "证据：备注 1 条" in answer
    none = await said(db, ctx, MEI, "/查单", "k3")
    assert none == "用法：/查单 RC-…|订单号|运单号"
