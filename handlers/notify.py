"""Side effects as outbox rows, written in the caller's transaction.

Handlers never call a platform: they record a card per recipient (so every copy
can be updated later) and enqueue what the delivery worker must do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cards import Card
from bot.events import Sender
from bot.money import yuan
from handlers.context import Ctx
from handlers.effects import CardSend, Effects, Message
from handlers.people import NOT_A_MEMBER, Recipient, address, member_for, receives
from storage import outbox
from storage.models import ApprovalStep, CardRecord, Case, Evidence, Member

REFUND_KIND = "channel.refund"  # the outbox row that moves money
ROLE_CHAT = "wecom-chat"  # a role's WeCom group chat (bot/platforms/wecom_chat.py)
ROLE_GROUP = "dingtalk-group"  # a role's DingTalk group: the card itself (dingtalk.py)
DINGTALK = "dingtalk"
MEDIA_FETCH_KIND = "media.fetch"  # keep a chat photo before the platform forgets it


def text_message(to: Sender, text: str, case_id: str | None = None, *, alert: bool) -> Message:
    """A chat text to one platform user; `alert` marks admin alerts (never re-alerted)."""
    payload: dict[str, Any] = {"text": text}
    if alert:
        payload["alert"] = True
    return Message("text.send", f"{to.platform}:{to.user_id}", payload, case_id)


async def send_text(
    session: AsyncSession,
    ctx: Ctx,
    to: Sender,
    text: str,
    case_id: str | None = None,
    *,
    alert: bool = False,
) -> None:
    """A chat text to one platform user, in the caller's transaction."""
    await _write(session, ctx, text_message(to, text, case_id, alert=alert))


async def _write(session: AsyncSession, ctx: Ctx, *items: CardSend | Message) -> None:
    fx = Effects(ctx.now())
    for item in items:
        fx.send(item)
    await fx.apply(session)


async def known_member(session: AsyncSession, ctx: Ctx, sender: Sender) -> Member | None:
    """The member behind a chat user, or None after telling them they are not one."""
    member = await member_for(session, sender)
    if member is None:
        await send_text(session, ctx, sender, NOT_A_MEMBER)
    return member


def texts(
    ctx: Ctx,
    fx: Effects,
    members: Iterable[Recipient],
    text: str,
    case_id: str | None = None,
    *,
    alert: bool = False,
) -> None:
    """A text to each member on every enabled platform they are on."""
    for member in members:
        for platform in ctx.platforms:
            user = address(member, platform)
            if user and receives(member, platform):
                fx.send(text_message(Sender(platform, user), text, case_id, alert=alert))


async def tell(
    session: AsyncSession,
    ctx: Ctx,
    members: Iterable[Recipient],
    text: str,
    case_id: str | None = None,
    *,
    alert: bool = False,
) -> None:
    """`texts`, written in the caller's transaction."""
    fx = Effects(ctx.now())
    texts(ctx, fx, members, text, case_id, alert=alert)
    await fx.apply(session)


def cards(
    ctx: Ctx,
    fx: Effects,
    members: Iterable[Recipient],
    case: Case,
    kind: str,
    build: Callable[[int], Card],
    step: ApprovalStep | None = None,
    *,
    role: str | None = None,
    step_id: int | None = None,
) -> int:
    """One card per member per platform; `build(card_id)` makes it (tokens bind the id).

    When `role`'s `[roles.X] wecom_chat_id` is set, the role's group chat gets a notice
    naming the assignees as well (ROLE_CHAT), once at least one of them got the card.
    When its `dingtalk_conversation_id` is set, its DingTalk members get one card in
    that group (ROLE_GROUP), clickable there by any of them, instead of one each.
    Returns how many members' platform users get one.
    """
    sent = 0
    reached: list[Recipient] = []
    chat = ctx.settings.roles.get(role or "")
    group = chat.dingtalk_conversation_id if chat and ROLE_GROUP in ctx.platforms else ""
    in_group: list[Recipient] = []
    for member in members:
        users = [
            (p, u)
            for p in ctx.platforms
            if (u := address(member, p)) and receives(member, p) and not (group and p == DINGTALK)
        ]
        for platform, user in users:
            fx.send(CardSend(case.id, step, kind, platform, user, build, step_id=step_id))
        grouped = bool(group and address(member, DINGTALK) and receives(member, DINGTALK))
        sent += len(users) + grouped
        if grouped:
            in_group.append(member)
        if users:
            reached.append(member)
    if in_group:
        names = "、".join(m.name for m in in_group)
        fx.send(CardSend(case.id, step, kind, ROLE_GROUP, group, build, names, step_id=step_id))
    if reached and chat and chat.wecom_chat_id and ROLE_CHAT in ctx.platforms:
        names = "、".join(m.name for m in reached)
        fx.send(
            CardSend(
                case.id, step, kind, ROLE_CHAT, chat.wecom_chat_id, build, names, step_id=step_id
            )
        )
    return sent


async def send_cards(
    session: AsyncSession,
    ctx: Ctx,
    members: Iterable[Recipient],
    case: Case,
    kind: str,
    build: Callable[[int], Card],
    step_id: int | None = None,
    *,
    role: str | None = None,
) -> int:
    """`cards`, written in the caller's transaction."""
    fx = Effects(ctx.now())
    sent = cards(ctx, fx, members, case, kind, build, role=role, step_id=step_id)
    await fx.apply(session)
    return sent


async def show_again(session: AsyncSession, ctx: Ctx, record: CardRecord) -> None:
    """Queue the card as it now stands to its recipient again (a closed card that was
    clicked: its update may have found no usable handle, see bot/platforms/wecom.py)."""
    outbox.enqueue(
        session,
        kind="card.update",
        destination=f"{record.platform}:{record.recipient}",
        payload={"card_id": record.id, "card": record.card},
        now=ctx.now(),
        case_id=record.case_id,
    )


async def close_cards(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    status: str,
    *,
    kind: str | None = None,
    step_id: int | None = None,
) -> list[CardRecord]:
    """Close every open copy (all recipients) with a status line, and enqueue its update."""
    query = select(CardRecord).where(CardRecord.case_id == case_id, CardRecord.state == "open")
    if kind is not None:
        query = query.where(CardRecord.kind == kind)
    if step_id is not None:
        query = query.where(CardRecord.step_id == step_id)
    records = list(await session.scalars(query.order_by(CardRecord.id)))
    now = ctx.now()
    for record in records:
        card = replace(Card.from_dict(record.card), status=status, closed=True).to_dict()
        record.state, record.card, record.updated_at = "closed", card, now
        outbox.enqueue(
            session,
            kind="card.update",
            destination=f"{record.platform}:{record.recipient}",
            payload={"card_id": record.id, "card": card},
            now=now,
            case_id=case_id,
        )
    return records


def event_message(case: Case, event: str, *, kind: str = "channel.event", **extra: Any) -> Message:
    """What the shop channel is told (generic: POST to callback_url) about the case."""
    return Message(
        kind,
        f"channel:{case.channel}",
        {
            "event": event,
            "case_id": case.id,
            "external_id": case.external_id,
            "shop": case.shop,
            "status": case.status,
            **extra,
        },
        case.id,
    )


def refund_message(case: Case) -> Message:
    """The refund command; the channel's refund id is the case id, so a retry is a no-op."""
    return event_message(
        case,
        "refund_released",
        kind=REFUND_KIND,
        amount=yuan(case.refund_fen or 0),
        deduction=yuan(case.deduction_fen),
        refund_id=case.id,
    )


async def channel_event(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    event: str,
    *,
    kind: str = "channel.event",
    **extra: Any,
) -> None:
    """`event_message`, written in the caller's transaction."""
    await _write(session, ctx, event_message(case, event, kind=kind, **extra))


def fetch_media(
    ctx: Ctx, session: AsyncSession, evidence: Evidence, platform: str, media_id: str
) -> None:
    """Download a chat photo into the evidence store (bot/platforms/evidence.py)."""
    outbox.enqueue(
        session,
        kind=MEDIA_FETCH_KIND,
        destination=f"{platform}:media",
        payload={"evidence_id": evidence.id, "media_id": media_id},
        now=ctx.now(),
        case_id=evidence.case_id,
    )
