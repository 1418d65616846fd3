"""Chat command grammar (zh, with English aliases) -> handlers.

`/同意 RC-…` does what the card's 同意 button does; a bare waybill or order
number from a warehouse member is a scan. Each command declares the roles that may
run it, and the router checks that before it runs (a refusal changes nothing but
an audit row). The grammar itself is in handlers/command_grammar.py.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import ChatMessage
from handlers import actions, command_cases, digest, notify, scan, views, waybills
from handlers.command_grammar import CASE_ID, Call, Command, closest, parse, strip_mentions
from handlers.command_scripts import script
from handlers.command_stats import stats
from handlers.context import Ctx
from handlers.disputes import DISPUTE_ROLES
from handlers.inbox import Once, once
from handlers.people import ROLE_ZH, role_zh
from handlers.workflow import Actor, audit
from storage.models import Member, PendingReply

PENDING_TTL = timedelta(minutes=30)
REF = "RC-…"  # a case id, an order number or a waybill (command_cases.case_arg)


async def _help(call: Call) -> None:
    """/帮助: what the sender may use; /帮助 命令: one command explained."""
    roles = call.member.role_names
    if call.args:
        command = BY_NAME.get(call.args[0].lstrip("/").lower())
        if command is None:
            await call.reply(_unknown(call.args[0].lstrip("/"), roles))
            return
        await call.reply(_explain(command, roles))
        return
    lines = ["可用命令（发送 /帮助 命令 查看说明）："]
    lines += [f"{c.usage}  {c.help}" for c in COMMANDS if c.allows(roles)]
    lines.append("RC-… 处也可以填订单号或退货运单号")
    if "warehouse" in roles:
        lines.append("直接发送退货运单号或订单号（或面单照片）：扫码签收并验货")
    await call.reply("\n".join(lines))


def _roles_zh(roles: frozenset[str], sep: str) -> str:
    """Roles in the order people name them (people.ROLE_ZH), not alphabetically."""
    order = list(ROLE_ZH)
    ranked = sorted(roles, key=lambda r: (order.index(r) if r in order else len(order), r))
    return sep.join(role_zh(r) for r in ranked)


def _who(command: Command) -> str:
    return _roles_zh(command.roles, "、") if command.roles else "所有成员"


def _explain(command: Command, roles: set[str]) -> str:
    lines = [f"{command.usage}  {command.help}"]
    if command.detail:
        lines.append(command.detail)
    lines.append(f"别名：{' '.join('/' + n for n in command.names)}")
    lines.append(f"可用角色：{_who(command)}")
    if not command.allows(roles):
        lines.append("（您当前没有使用此命令的角色）")
    return "\n".join(lines)


def _unknown(word: str, roles: set[str]) -> str:
    names = [n for c in COMMANDS if c.allows(roles) for n in c.names]
    guess = closest(word.lower(), names)
    head = f"未知命令 /{word}。" if word else ""
    if guess is not None:
        return f"{head}您是不是想输入 /{guess}？发送 /帮助 查看可用命令"
    return f"{head}发送 /帮助 查看可用命令"


APPROVERS = frozenset({"cs_lead", "ops_director", "finance_director"})
RISK_DECIDERS = frozenset({"risk", "cs_lead", "ops_director"})
EVERYONE: frozenset[str] = frozenset()
COMMANDS = (
    Command(("帮助", "help"), "/帮助 [命令]", "查看可用命令", EVERYONE, _help),
    Command(
        ("查单", "case"),
        f"/查单 {REF}",
        "查看售后单状态",
        EVERYONE,
        command_cases.lookup,
        "显示状态（挂起原因）、审批步骤（谁、何时）、SLA 时限、证据数量和纠纷记录",
    ),
    Command(
        ("话术", "script"),
        "/话术 [场景] [RC-…]",
        "查看争议话术，或按售后单生成回复",
        DISPUTE_ROLES,
        script,
        "不带参数列出场景；带场景和单号时用案件数据填好回复。"
        "案件没有的变量用 名称=值 补充，如 /话术 缺配件 RC-… 配件=滤网 扣款=35",
    ),
    Command(
        ("统计", "stats"),
        "/统计 [今天|昨天|本周|本月]",
        "查看售后指标",
        EVERYONE,
        stats,
        "新增、各环节待处理、退款金额、平均处理时长、SLA 超时、退货原因、纠纷结果；"
        "可加渠道名只看一个渠道，如 /统计 本周 taobao",
    ),
    Command(
        ("日报", "digest"),
        "/日报",
        "立即把昨天的售后日报发给我",
        APPROVERS | {"admin"},
        digest.command,
        "与每天定时发送的日报相同：新增、待处理、退款金额、自动通过占比、退货原因、"
        "SLA 超时，支持图片的平台另附图表；只发给您，不影响定时日报",
    ),
    Command(
        ("同意", "approve"),
        f"/同意 {REF}",
        "同意当前审批",
        APPROVERS,
        command_cases.decision("approve", f"/同意 {REF}"),
    ),
    Command(
        ("驳回", "reject"),
        f"/驳回 {REF} 原因",
        "驳回（需填写原因）",
        APPROVERS,
        command_cases.decision("reject", f"/驳回 {REF} 原因"),
    ),
    Command(
        ("转交", "transfer"),
        f"/转交 {REF} @姓名",
        "转交给同角色成员",
        APPROVERS,
        command_cases.decision("transfer", f"/转交 {REF} @姓名"),
    ),
    Command(
        ("驳回退款", "reject-refund"),
        f"/驳回退款 {REF} 原因",
        "驳回验货异常单的退款（需填写原因）",
        RISK_DECIDERS,
        command_cases.reject_refund,
    ),
    Command(
        ("记录", "note"),
        f"/记录 {REF} 内容",
        "记录纠纷结果或备注",
        EVERYONE,
        command_cases.note,
        "写明客户同意 / 客户拒绝 / 升级平台介入（可带金额，如 客户同意扣款 35元）时，"
        "同时记为纠纷结果，计入 /统计",
    ),
    Command(
        ("取消", "cancel"),
        "/取消",
        "放弃等待回复的操作（如驳回原因）",
        APPROVERS | RISK_DECIDERS | {"warehouse"},
        command_cases.cancel,
    ),
    Command(
        ("意外包裹", "unexpected"),
        "/意外包裹 [单号 备注]",
        "登记无法匹配售后单的到仓包裹，或查看未匹配的包裹",
        frozenset({"warehouse"}),
        command_cases.unexpected,
    ),
    Command(
        ("扣款退款", "deduct"),
        f"/扣款退款 {REF} 配件或金额 原因",
        "验货异常单扣款后退款（随后确认金额）",
        RISK_DECIDERS,
        command_cases.deduct,
    ),
)
BY_NAME = {name: c for c in COMMANDS for name in c.names}


def chat_message(event: ChatMessage, ctx: Ctx) -> Once:
    """Text typed to the bot, for the writer's batch (handlers/inbox.py `once_each`)."""
    return Once(event.key, event.sender.platform, lambda s: _handle(s, ctx, event))


async def on_chat_message(event: ChatMessage, ctx: Ctx) -> None:
    """Text typed to the bot, handled once in a transaction of its own (recovery)."""
    job = chat_message(event, ctx)
    await once(ctx, job.key, job.source, job.work)


async def _handle(session: AsyncSession, ctx: Ctx, event: ChatMessage) -> None:
    member = await notify.known_member(session, ctx, event.sender)
    if member is None:
        return
    body, mentioned = strip_mentions(event.text)
    parsed = parse(body, mentioned, lambda word: word in BY_NAME)
    if parsed is None:
        await _plain(session, ctx, event, member, body)
        return
    command = BY_NAME.get(parsed.word)
    if command is None:
        await notify.send_text(
            session, ctx, event.sender, _unknown(parsed.word, member.role_names)
        )
        return
    call = Call(session, ctx, event, member, parsed.args, parsed.raw)
    if not command.allows(member.role_names):
        await _refuse(call, command, parsed.word)
        return
    await command.run(call)


async def _refuse(call: Call, command: Command, word: str) -> None:
    """A command the member's roles do not allow: a polite answer and an audit row."""
    case_id = next((a.upper() for a in call.args if CASE_ID.fullmatch(a)), None)
    need = _roles_zh(command.roles, "/")
    why = f"您没有「{need}」角色，不能使用 /{word}（发送 /帮助 查看您可用的命令）"
    call.session.add(
        audit(case_id, Actor.of(call.member), f"refused:/{command.names[1]}", call.ctx.now(),
              why=why)
    )  # fmt: skip
    await call.reply(why, case_id)


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
