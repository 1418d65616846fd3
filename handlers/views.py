"""What each card and reply says: neutral `Card`s built from a case.

Buttons carry tokens signed for one card record, so a click proves which card
(and so which case and step) it came from.
"""

from __future__ import annotations

from datetime import datetime

from bot.cards import Button, Card
from bot.money import yuan_zh
from handlers import sla_plan, tokens
from handlers.context import Ctx
from handlers.people import role_zh
from handlers.sla_policies import STAGE_ZH
from handlers.workflow import FINAL, STATUS_ZH, Status
from storage.models import ApprovalStep, Case

KIND_ZH = {"refund_only": "仅退款", "return_refund": "退货退款", "exchange": "换货"}
REASON_ZH = {
    "quality": "质量问题",
    "size": "尺寸不符",
    "description": "描述不符",
    "logistics": "物流问题",
    "no_reason_7day": "七天无理由",
    "wrong_item": "发错货",
    "missing_parts": "少件/缺配件",
}
APPROVAL_BUTTONS = (
    ("同意", "approve", "primary"),
    ("驳回", "reject", "danger"),
    ("转交", "transfer", "default"),
)
INSPECTION_BUTTONS = (
    ("完好", "ok", "primary"),
    ("破损", "damaged", "danger"),
    ("缺配件", "missing_parts", "danger"),
    ("错发调包", "wrong_item", "danger"),
    ("空包", "empty", "danger"),
)
RISK_BUTTONS = (
    ("全额退款", "resolve_refund", "primary"),
    ("扣款退款", "resolve_deduct", "default"),
    ("驳回退款", "resolve_reject", "danger"),
    # How the buyer answered the dispute script (handlers/disputes.py); the card stays open.
    ("客户同意", "dispute_agreed", "default"),
    ("客户拒绝", "dispute_refused", "default"),
    ("升级平台介入", "dispute_escalated", "default"),
)
EXCHANGE_RISK_BUTTONS = (
    ("放行换货", "resolve_refund", "primary"),
    ("驳回", "resolve_reject", "danger"),
)
UNFLAG_BUTTON = ("解除标记", "unflag", "default")
CONFIRM_BUTTONS = (("确认扣款退款", "confirm", "primary"), ("取消", "discard", "default"))
INSPECTION_ZH = {a: label for label, a, _ in INSPECTION_BUTTONS}
ACTION_ZH = {
    "approve": "同意",
    "reject": "驳回",
    "transfer": "转交",
    "resolve_refund": "全额退款",
    "resolve_reject": "驳回退款",
    "resolve_deduct": "扣款退款",
    "confirm": "确认扣款退款",
    "discard": "取消扣款",
    "unflag": "解除标记",
    "dispute_agreed": "客户同意",
    "dispute_refused": "客户拒绝",
    "dispute_escalated": "升级平台介入",
    **INSPECTION_ZH,
}


def finding_zh(outcome: str, detail: str = "") -> str:
    """An inspection result as people read it: 缺配件（滤网）."""
    label = INSPECTION_ZH.get(outcome, outcome)
    return f"{label}（{detail}）" if detail else label


def reason_zh(case: Case) -> str:
    top = case.reason_code.split(".", 1)[0]
    label = REASON_ZH.get(top, case.reason_code or "未填写")
    return f"{label}：{case.reason_text}" if case.reason_text else label


def _buttons(
    ctx: Ctx, case: Case, card_id: int, spec: tuple[tuple[str, str, str], ...]
) -> tuple[Button, ...]:
    return tuple(
        Button(label, action, tokens.sign(ctx.keyring, card_id, case.id, action), style)
        for label, action, style in spec
    )


def _base_fields(case: Case) -> list[tuple[str, str]]:
    return [
        ("订单号", case.order_id),
        ("渠道", f"{case.channel} / {case.shop}"),
        ("类型", KIND_ZH.get(case.kind, case.kind)),
        ("申请金额", yuan_zh(case.amount_fen)),
        ("原因", reason_zh(case)),
        ("买家", case.buyer_nick or case.buyer_ref or "—"),
    ]


def item_lines(case: Case) -> tuple[str, ...]:
    return tuple(
        f"{i.name}（{i.sku}）×{i.qty}  {yuan_zh(i.unit_price_fen * i.qty)}" for i in case.items
    )


def stamp(ctx: Ctx, moment: datetime) -> str:
    return f"{ctx.local(moment):%m-%d %H:%M}"


def approval_card(
    ctx: Ctx, case: Case, step: ApprovalStep, card_id: int, history: tuple[str, ...] = ()
) -> Card:
    """同意 / 驳回 / 转交 for one step; `history` is the director tier's customer summary."""
    chain = " → ".join(role_zh(s.role) for s in case.steps)
    fields = _base_fields(case) + [
        ("档位", ctx.settings.routing.label(case.tier)),
        ("审批", f"第 {step.seq}/{len(case.steps)} 步：{chain}"),
    ]
    fields += prior_approvals(ctx, case, step)
    if step.due_at is not None:
        fields.append(("处理时限", stamp(ctx, step.due_at)))
    if case.channel_deadline_at is not None:
        fields.append(("平台时限", deadline_text(ctx, case)))
    return Card(
        kind="approval",
        title=f"售后审批 · {case.id}",
        case_id=case.id,
        summary=f"{KIND_ZH.get(case.kind, case.kind)} {yuan_zh(case.amount_fen)}，"
        f"待{role_zh(step.role)}审批",
        fields=tuple(fields),
        lines=item_lines(case),
        history=history,
        buttons=_buttons(ctx, case, card_id, APPROVAL_BUTTONS),
        extra={"step": str(step.seq)},
    )


def prior_approvals(ctx: Ctx, case: Case, step: ApprovalStep) -> list[tuple[str, str]]:
    """Who approved the steps before `step`, and when (local time): a finance director
    deciding step 2 sees that the ops director already agreed. WeCom keeps the
    "已审批" label among its six horizontal items (bot/platforms/wecom_cards.py)."""
    return [
        (
            "已审批",
            f"第{s.seq}步 {s.actor.name if s.actor else '—'} {stamp(ctx, s.decided_at)} 同意",
        )
        for s in case.steps
        if s.seq < step.seq and s.state == "approved" and s.decided_at is not None
    ]


def inspection_card(ctx: Ctx, case: Case, card_id: int, history: tuple[str, ...] = ()) -> Card:
    """The five inspection outcomes, for the warehouse member who scanned the parcel;
    `history` carries the buyer's risk flag, when there is one."""
    fields = _base_fields(case) + [
        ("退货运单", f"{case.carrier or ''} {case.return_waybill or '—'}")
    ]
    return Card(
        kind="inspection",
        title=f"验货 · {case.id}",
        case_id=case.id,
        summary="包裹已签收，请开箱验货后选择结果",
        fields=tuple(fields),
        lines=item_lines(case),
        history=history,
        buttons=_buttons(ctx, case, card_id, INSPECTION_BUTTONS),
    )


def risk_card(
    ctx: Ctx,
    case: Case,
    card_id: int,
    finding: str,
    by: str,
    *,
    suggestion: str = "",
    script: str = "",
    history: tuple[str, ...] = (),
    flagged: bool = False,
    evidence: str = "",
) -> Card:
    """A held case for risk: full refund, refund minus a deduction, or rejection (an
    exchange: reship or reject); `history` is the buyer's, with their incidents;
    `script` the dispute script the finding suggests (handlers/disputes.py)."""
    fields = _base_fields(case) + [("验货结果", finding), ("验货人", by)]
    if suggestion:
        fields.append(("建议处理", suggestion))
    if script:
        fields.append(("建议话术", script))
    if evidence:
        fields.append(("凭证", evidence))
    spec: tuple[tuple[str, str, str], ...] = (
        EXCHANGE_RISK_BUTTONS if case.kind == "exchange" else RISK_BUTTONS
    )
    if flagged:
        # Next to the decisions, before the dispute outcomes: WeCom shows six buttons,
        # and an outcome can still be typed (/记录), clearing the flag cannot.
        decisions = [s for s in spec if not s[1].startswith("dispute_")]
        spec = (*decisions, UNFLAG_BUTTON, *spec[len(decisions) :])
    return Card(
        kind="risk",
        title=f"风控提醒 · {case.id}",
        case_id=case.id,
        summary=f"验货异常（{finding}），退款已暂停，请决定处理方式",
        fields=tuple(fields),
        lines=item_lines(case),
        history=history,
        buttons=_buttons(ctx, case, card_id, spec),
    )


def confirm_card(
    ctx: Ctx, case: Case, card_id: int, deduction_fen: int, what: str, reason: str
) -> Card:
    """The second look before a partial refund: the amounts, spelled out."""
    refund = case.amount_fen - deduction_fen
    fields = [
        ("申请金额", yuan_zh(case.amount_fen)),
        ("扣款", f"{yuan_zh(deduction_fen)}（{what}）"),
        ("退款金额", yuan_zh(refund)),
        ("原因", reason),
        ("买家", case.buyer_nick or case.buyer_ref or "—"),
    ]
    return Card(
        kind="confirm",
        title=f"确认扣款退款 · {case.id}",
        case_id=case.id,
        summary=f"将退款 {yuan_zh(refund)}（扣除 {yuan_zh(deduction_fen)}），请核对后确认",
        fields=tuple(fields),
        lines=item_lines(case),
        buttons=_buttons(ctx, case, card_id, CONFIRM_BUTTONS),
    )


def rejection_text(ctx: Ctx, case: Case, by: str, reason: str, finding: str = "") -> str:
    """What customer service reads after a rejection, ending with what to tell the buyer;
    `finding` is the inspection outcome when risk rejected a returned parcel."""
    kind = KIND_ZH.get(case.kind, case.kind)
    amount = yuan_zh(case.amount_fen)
    buyer = case.buyer_nick or case.buyer_ref or "—"
    if finding:
        why = f"您寄回的商品经仓库验货为「{finding}」，退款申请未能通过，原因：{reason}。"
    else:
        why = f"您的{kind}申请（订单 {case.order_id}，{amount}）未能通过审核，原因：{reason}。"
    return "\n".join(
        [
            f"【驳回通知】{case.id} 已驳回，请告知买家",
            f"{kind} {amount} · 订单 {case.order_id} · 买家 {buyer}",
            f"驳回人：{by}，{stamp(ctx, ctx.now())}",
            f"原因：{reason}",
            f"可以这样告诉买家：{why}如有疑问或新的凭证，请直接回复我们。",
        ]
    )


def summary_text(ctx: Ctx, case: Case, hold: tuple[str, ...] = ()) -> str:
    """The /查单 answer; `hold` says why an on_hold case waits and for whom."""
    lines = [
        f"【{case.id}】{STATUS_ZH[Status(case.status)]}",
        f"{KIND_ZH.get(case.kind, case.kind)} {yuan_zh(case.amount_fen)} · 订单 {case.order_id}",
        f"原因：{reason_zh(case)}",
        *(f"· {line}" for line in item_lines(case)),  # all of them: cards may show fewer
    ]
    if case.refund_fen is not None:
        lines.append(f"退款金额：{yuan_zh(case.refund_fen)}")
    if case.deduction_fen:
        lines.append(f"扣款：{yuan_zh(case.deduction_fen)}")
    for s in case.steps:
        who = s.actor.name if s.actor else (s.assignee.name if s.assignee else "")
        state = {
            "waiting": "未开始",
            "pending": "待处理",
            "approved": "已同意",
            "rejected": "已驳回",
            "cancelled": "已取消",
        }.get(s.state, s.state)
        when = f" {stamp(ctx, s.decided_at)}" if s.decided_at else ""
        due = f"（时限 {stamp(ctx, s.due_at)}）" if s.state == "pending" and s.due_at else ""
        why = f"（原因：{s.reason}）" if s.state == "rejected" and s.reason else ""
        lines.append(f"第{s.seq}步 {role_zh(s.role)}：{state} {who}{when}{due}{why}".rstrip())
    lines += hold
    lines += sla_lines(ctx, case)
    if case.return_waybill:
        lines.append(f"退货运单：{case.carrier or ''} {case.return_waybill}".rstrip())
    if case.exchange_waybill:
        lines.append(f"换货运单：{case.exchange_carrier or ''} {case.exchange_waybill}".strip())
    lines.append(f"创建于 {stamp(ctx, case.created_at)}")
    return "\n".join(lines)


def deadline_text(ctx: Ctx, case: Case) -> str:
    """'平台将于 12-03 18:00 自动同意' when the channel will act by itself, else ""."""
    if case.channel_deadline_at is None:
        return ""
    return f"平台将于 {stamp(ctx, case.channel_deadline_at)} 自动同意"


def sla_lines(ctx: Ctx, case: Case) -> tuple[str, ...]:
    """For /查单: the current stage's SLA due time and what is left (or how late it
    is), and the channel's own deadline. Needs the case's steps loaded."""
    lines: list[str] = []
    found = sla_plan.stage_of(case)
    if found is not None and case.sla_due_at is not None:
        stage = STAGE_ZH[found[0]]
        now, due = ctx.now(), case.sla_due_at
        when = f"时效：{stage} 时限 {stamp(ctx, due)}"
        if now >= due:
            lines.append(f"{when}，已超时 {sla_plan.format_left(now - due)}")
        else:
            policy = sla_plan.policy_of(ctx, case, found[0])
            rest = sla_plan.format_left(sla_plan.left(ctx, policy, now, due))
            lines.append(f"{when}，剩余 {rest}")
    if case.channel_deadline_at is not None and Status(case.status) not in FINAL:
        lines.append(deadline_text(ctx, case))
    return tuple(lines)
