"""Chat command grammar (zh, with English aliases) -> handlers.

`/同意 RC-…` does what the card's 同意 button does; a bare waybill or order
number from a warehouse member is a scan. Anything else gets the help text.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot.events import ChatMessage
from handlers import actions, approvals, notify, parcels, scan, views, warehouse, waybills
from handlers.context import Ctx
from handlers.inbox import once
from handlers.workflow import Actor, audit
from storage.models import Case, Evidence, Member, PendingReply

CASE_ID = re.compile(r"RC-\d{6}-\d{4,}", re.IGNORECASE)
Run = Callable[["Call"], Awaitable[None]]
PENDING_TTL = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Call:
    session: AsyncSession
    ctx: Ctx
    event: ChatMessage
    member: Member
    args: list[str]

    async def reply(self, text: str, case_id: str | None = None) -> None:
        await notify.send_text(self.session, self.ctx, self.event.sender, text, case_id)


@dataclass(frozen=True, slots=True)
class Command:
    names: tuple[str, ...]
    usage: str
    help: str
    roles: frozenset[str]  # empty: everyone
    run: Run


async def _help(call: Call) -> None:
    lines = ["可用命令："]
    lines += [
        f"{c.usage}  {c.help}"
        for c in COMMANDS
        if not c.roles or c.roles & call.member.role_names or "admin" in call.member.role_names
    ]
    if "warehouse" in call.member.role_names:
        lines.append("直接发送退货运单号或订单号（或面单照片）：扫码签收并验货")
    await call.reply("\n".join(lines))


def _case_arg(call: Call) -> str | None:
    return call.args[0].upper() if call.args and CASE_ID.fullmatch(call.args[0]) else None


async def _lookup(call: Call) -> None:
    if not call.args:
        await call.reply("用法：/查单 RC-… 或订单号、退货运单号")
        return
    code = call.args[0]
    if await scan.pick(call.session, call.ctx, call.member, code, call.event.sender):
        return  # one of the cases a scan listed
    wanted = waybills.codes(" ".join(call.args)) or [code]
    found = await call.session.scalars(
        select(Case)
        .where(
            or_(
                Case.id.in_([c.upper() for c in wanted]),
                Case.order_id.in_(wanted),
                Case.return_waybill.in_(wanted),
            )
        )
        .options(selectinload(Case.items), selectinload(Case.steps))
        .order_by(Case.created_at.desc())
        .limit(3)
    )
    cases = list(found)
    if not cases:
        parcel = await parcels.recorded(call.session, code)
        known = (
            f"；该单号已于 {views.stamp(call.ctx, parcel.at)} 由 {parcel.recorded_by} "
            f"登记为意外包裹（#{parcel.id}）"
            if parcel
            else ""
        )
        await call.reply(f"未找到与 {code} 相关的售后单{known}")
        return
    answers = [
        views.summary_text(call.ctx, c, await warehouse.hold_lines(call.session, call.ctx, c))
        for c in cases
    ]
    await call.reply("\n\n".join(answers), cases[0].id)


def _decision(action: str, usage: str) -> Run:
    async def run(call: Call) -> None:
        case_id = _case_arg(call)
        if case_id is None:
            await call.reply(f"用法：{usage}")
            return
        rest = " ".join(call.args[1:])
        await approvals.decide(
            call.session,
            call.ctx,
            case_id,
            call.member,
            action,
            call.event.sender,
            reason=rest,
            target=rest,
        )

    return run


async def _note(call: Call) -> None:
    case_id = _case_arg(call)
    text = " ".join(call.args[1:]).strip()
    case = await call.session.get(Case, case_id) if case_id else None
    if case is None or not text:
        await call.reply("用法：/记录 RC-… 内容")
        return
    now = call.ctx.now()
    call.session.add(
        Evidence(case_id=case.id, kind="note", ref=text, added_by=call.member.name, at=now)
    )
    call.session.add(
        audit(case.id, Actor.of(call.member), "note", now, case.status, case.status, why=text)
    )
    await call.reply(f"已记录到 {case.id}", case.id)


async def _reject_refund(call: Call) -> None:
    """/驳回退款 RC-… 原因: risk's 驳回退款 as text; without a reason it changes nothing."""
    case_id = _case_arg(call)
    if case_id is None:
        await call.reply("用法：/驳回退款 RC-… 原因")
        return
    await warehouse.resolve(
        call.session,
        call.ctx,
        case_id,
        call.member,
        "resolve_reject",
        call.event.sender,
        reason=" ".join(call.args[1:]),
    )


async def _cancel(call: Call) -> None:
    pending = await call.session.get(PendingReply, call.member.id)
    if pending is None:
        await call.reply("没有等待您回复的操作")
        return
    await call.session.delete(pending)
    await call.reply(f"已取消对 {pending.case_id} 的操作")


async def _unexpected(call: Call) -> None:
    """/意外包裹 [单号 备注]: record a parcel no case matches, or list the unmatched."""
    if not call.args:
        await call.reply(await parcels.listing(call.session, call.ctx))
        return
    code, note = call.args[0], " ".join(call.args[1:])
    matched = await scan.matches(call.session, waybills.codes(code))
    if matched:
        await call.reply(f"{code} 已匹配售后单 {matched[0].id}，请直接发送单号扫码签收")
        return
    await parcels.record(call.session, call.ctx, call.member, code, note, call.event.sender)


APPROVERS = frozenset({"cs_lead", "ops_director", "finance_director"})
RISK_DECIDERS = frozenset({"risk", "ops_director"})
COMMANDS = (
    Command(("帮助", "help"), "/帮助", "查看可用命令", frozenset(), _help),
    Command(("查单", "case"), "/查单 RC-…|订单号|运单号", "查看售后单状态", frozenset(), _lookup),
    Command(
        ("同意", "approve"),
        "/同意 RC-…",
        "同意当前审批",
        APPROVERS,
        _decision("approve", "/同意 RC-…"),
    ),
    Command(
        ("驳回", "reject"),
        "/驳回 RC-… 原因",
        "驳回（需填写原因）",
        APPROVERS,
        _decision("reject", "/驳回 RC-… 原因"),
    ),
    Command(
        ("转交", "transfer"),
        "/转交 RC-… @姓名",
        "转交给同角色成员",
        APPROVERS,
        _decision("transfer", "/转交 RC-… @姓名"),
    ),
    Command(
        ("驳回退款", "reject-refund"),
        "/驳回退款 RC-… 原因",
        "驳回验货异常单的退款（需填写原因）",
        RISK_DECIDERS,
        _reject_refund,
    ),
    Command(("记录", "note"), "/记录 RC-… 内容", "记录纠纷结果或备注", frozenset(), _note),
    Command(
        ("取消", "cancel"),
        "/取消",
        "放弃等待回复的操作（如驳回原因）",
        APPROVERS | RISK_DECIDERS,
        _cancel,
    ),
    Command(
        ("意外包裹", "unexpected"),
        "/意外包裹 [单号 备注]",
        "登记无法匹配售后单的到仓包裹，或查看未匹配的包裹",
        frozenset({"warehouse"}),
        _unexpected,
    ),
)
BY_NAME = {name: c for c in COMMANDS for name in c.names}


async def on_chat_message(event: ChatMessage, ctx: Ctx) -> None:
    """Text typed to the bot, handled once (the platform may redeliver it)."""
    await once(ctx, event.key, event.sender.platform, lambda s: _handle(s, ctx, event))


async def _handle(session: AsyncSession, ctx: Ctx, event: ChatMessage) -> None:
    member = await notify.known_member(session, ctx, event.sender)
    if member is None:
        return
    text = event.text.strip()
    if text.startswith(("/", "／")):
        word, *args = text[1:].split() or [""]
        command = BY_NAME.get(word.lower())
        if command is None:
            unknown = f"未知命令 /{word}，" if word else ""
            await notify.send_text(session, ctx, event.sender, f"{unknown}发送 /帮助 查看可用命令")
            return
        await command.run(Call(session, ctx, event, member, args))
    else:
        await _plain(session, ctx, event, member, text)


async def _plain(
    session: AsyncSession, ctx: Ctx, event: ChatMessage, member: Member, text: str
) -> None:
    """Plain text: the answer the bot asked for, else a scan (warehouse), else a hint.

    A question is answered once: the reply consumes it, and one left unanswered past
    PENDING_TTL is dropped, with a word about it if the text means nothing else.
    """
    pending = await session.get(PendingReply, member.id)
    if pending is not None:
        await session.delete(pending)
        await session.flush()  # gone before the answer may ask again (merge, same key)
        if ctx.now() - pending.asked_at <= PENDING_TTL:
            await actions.route(
                session,
                ctx,
                pending.case_id,
                member,
                pending.action,
                event.sender,
                reason=text,
                target=text,
                step_id=pending.step_id,
            )
            return
    warehouse_member = "warehouse" in member.role_names
    if warehouse_member and await scan.answer(session, ctx, member, text, event.sender):
        return  # the pick or the 登记 a scan asked for
    if warehouse_member and waybills.looks_like_code(text):
        await scan.scan_text(session, ctx, member, text, event.sender)
    elif pending is not None:
        minutes = int(PENDING_TTL.total_seconds() // 60)
        what = views.ACTION_ZH.get(pending.action, pending.action)
        await notify.send_text(
            session,
            ctx,
            event.sender,
            f"对 {pending.case_id} 的「{what}」已等待超过 {minutes} 分钟，已自动取消，"
            f"这条消息没有被当作回复。请重新点击卡片按钮，或发送 /帮助 查看命令",
            pending.case_id,
        )
    else:
        await notify.send_text(session, ctx, event.sender, "发送 /帮助 查看可用命令")
