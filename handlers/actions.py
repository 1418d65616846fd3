"""Card button clicks -> approvals, warehouse inspection or risk decisions.

The token proves which card of which case (so which step) the click came from; the
clicker's roles are checked by the handler the click lands in.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import CardAction, Sender
from handlers import approvals, disputes, inspection, notify, resolve, tokens
from handlers.context import Ctx
from handlers.inbox import Once, once
from handlers.people import NOT_A_MEMBER, member_for, same_user
from handlers.workflow import Actor, audit
from storage.models import CardRecord, Member

log = logging.getLogger(__name__)

APPROVAL = {"approve", "reject", "transfer"}
INSPECTION = {"ok", "damaged", "missing_parts", "wrong_item", "empty"}


def card_action(event: CardAction, ctx: Ctx) -> Once:
    """A button click, for the writer's batch (handlers/inbox.py `once_each`)."""
    return Once(event.key, event.sender.platform, lambda s: _handle(s, ctx, event))


async def on_card_action(event: CardAction, ctx: Ctx) -> None:
    """A button click, handled once in a transaction of its own (recovery)."""
    job = card_action(event, ctx)
    await once(ctx, job.key, job.source, job.work)


async def _handle(session: AsyncSession, ctx: Ctx, event: CardAction) -> None:
    click = tokens.verify(ctx.keyring, event.token, ctx.now())
    record = await session.get(CardRecord, click.card_id) if click else None
    if click is None or record is None or not click.belongs_to(record.case_id):
        log.warning("card action %s: token not ours", event.key)
        await notify.send_text(session, ctx, event.sender, "该按钮无效或已过期")
        return
    action = click.action
    # Lock the case before writing the card row: every decision locks the case, then
    # closes its cards. Taking the card first deadlocks two clicks on PostgreSQL.
    await approvals.load_case(session, ctx, record.case_id)
    mine = event.sender.platform == record.platform and same_user(
        record.platform, event.sender.user_id, record.recipient
    )
    if event.platform_ref and mine:
        # WeCom hands out a fresh single-use update code with each click, for the
        # clicker's own copy: someone else's click (a forwarded card) must not take it.
        record.platform_ref = event.platform_ref
        if record.state == "closed":  # a stale copy (its update found no usable code)
            await notify.show_again(session, ctx, record)
    member = await member_for(session, event.sender)
    if member is None:
        session.add(
            audit(
                record.case_id,
                Actor("unknown", event.sender.user_id),
                f"refused:{action}",
                ctx.now(),
                why=f"{event.sender.platform}:{event.sender.user_id} 不是成员",
            )
        )
        await notify.send_text(session, ctx, event.sender, NOT_A_MEMBER, record.case_id)
        return
    await route(
        session,
        ctx,
        record.case_id,
        member,
        action,
        event.sender,
        reason=event.reason,
        target=event.target,
        step_id=record.step_id,
    )


async def route(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    member: Member,
    action: str,
    reply_to: Sender,
    *,
    reason: str = "",
    target: str = "",
    step_id: int | None = None,
) -> None:
    """Where a card action lands: from the click itself, or from the member's chat reply
    to the question the click raised (the reason for 驳回 / 驳回退款, a transfer target)."""
    if action in APPROVAL:
        await approvals.decide(
            session,
            ctx,
            case_id,
            member,
            action,
            reply_to,
            reason=reason,
            target=target,
            step_id=step_id,
        )
    elif action in INSPECTION:
        await inspection.inspect(session, ctx, case_id, member, action, reply_to, detail=reason)
    elif action in resolve.ACTIONS:
        await resolve.on_action(
            session, ctx, case_id, member, action, reply_to,
            reason=reason, ask_reason=True, card_ref=step_id,
        )  # fmt: skip
    elif action in disputes.OUTCOME_ACTIONS:
        case = await approvals.case_or_reply(session, ctx, case_id, reply_to)
        if case is not None:
            await disputes.outcome_clicked(session, ctx, case, member, action, reply_to)
    else:
        await notify.send_text(session, ctx, reply_to, "该按钮无效或已过期")
