"""Side effects as outbox rows, written in the caller's transaction.

Handlers never call a platform: they record a card per recipient (so every copy
can be updated later) and enqueue what the delivery worker must do.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cards import ASSIGNEES, SEND_NONCE, Card
from bot.events import Sender
from bot.money import yuan
from handlers.context import Ctx
from handlers.people import NOT_A_MEMBER, address, member_for
from storage import outbox
from storage.models import CardRecord, Case, Evidence, Member

REFUND_KIND = "channel.refund"  # the outbox row that moves money
ROLE_CHAT = "wecom-chat"  # a role's WeCom group chat (bot/platforms/wecom_chat.py)
MEDIA_FETCH_KIND = "media.fetch"  # keep a chat photo before the platform forgets it


async def send_text(
    session: AsyncSession,
    ctx: Ctx,
    to: Sender,
    text: str,
    case_id: str | None = None,
    *,
    alert: bool = False,
) -> None:
    """A chat text to one platform user; `alert` marks admin alerts (never re-alerted)."""
    payload: dict[str, Any] = {"text": text}
    if alert:
        payload["alert"] = True
    outbox.enqueue(
        session,
        kind="text.send",
        destination=f"{to.platform}:{to.user_id}",
        payload=payload,
        now=ctx.now(),
        case_id=case_id,
    )


async def known_member(session: AsyncSession, ctx: Ctx, sender: Sender) -> Member | None:
    """The member behind a chat user, or None after telling them they are not one."""
    member = await member_for(session, sender)
    if member is None:
        await send_text(session, ctx, sender, NOT_A_MEMBER)
    return member


async def tell(
    session: AsyncSession,
    ctx: Ctx,
    members: Iterable[Member],
    text: str,
    case_id: str | None = None,
    *,
    alert: bool = False,
) -> None:
    """A text to each member on every enabled platform they are on."""
    for member in members:
        for platform in ctx.platforms:
            user = address(member, platform)
            if user:
                await send_text(session, ctx, Sender(platform, user), text, case_id, alert=alert)


async def send_cards(
    session: AsyncSession,
    ctx: Ctx,
    members: Iterable[Member],
    case: Case,
    kind: str,
    build: Callable[[int], Card],
    step_id: int | None = None,
    *,
    role: str | None = None,
) -> int:
    """One card per member per platform; `build(card_id)` makes it (tokens bind the id).

    Each send gets a nonce (`extra["send"]`) drawn here, once, so every retry of its
    outbox row shows the platform the same card (WeCom: the same task_id). When
    `role`'s `[roles.X] wecom_chat_id` is set, the role's group chat gets a notice
    naming the assignees as well (ROLE_CHAT), once at least one of them got the card.
    """
    sent = 0
    reached: list[Member] = []
    for member in members:
        users = [(p, u) for p in ctx.platforms if (u := address(member, p))]
        for platform, user in users:
            await _queue_card(session, ctx, case, kind, build, step_id, platform, user)
        sent += len(users)
        if users:
            reached.append(member)
    chat = ctx.settings.roles.get(role or "")
    if reached and chat and chat.wecom_chat_id and ROLE_CHAT in ctx.platforms:
        names = "、".join(m.name for m in reached)
        await _queue_card(
            session, ctx, case, kind, build, step_id, ROLE_CHAT, chat.wecom_chat_id, names
        )
    return sent


async def _queue_card(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    kind: str,
    build: Callable[[int], Card],
    step_id: int | None,
    platform: str,
    recipient: str,
    assignees: str = "",
) -> None:
    now = ctx.now()
    record = CardRecord(
        case_id=case.id,
        step_id=step_id,
        kind=kind,
        platform=platform,
        recipient=recipient,
        created_at=now,
        updated_at=now,
    )
    session.add(record)
    await session.flush()
    card = build(record.id)
    extra = {**card.extra, SEND_NONCE: secrets.token_hex(4)}
    if assignees:
        extra[ASSIGNEES] = assignees
    record.card = replace(card, extra=extra).to_dict()
    outbox.enqueue(
        session,
        kind="card.send",
        destination=f"{platform}:{recipient}",
        payload={"card_id": record.id, "card": record.card},
        now=now,
        case_id=case.id,
    )


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


async def channel_event(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    event: str,
    *,
    kind: str = "channel.event",
    **extra: Any,
) -> None:
    """Tell the shop channel (generic: POST to callback_url) what happened to the case."""
    outbox.enqueue(
        session,
        kind=kind,
        destination=f"channel:{case.channel}",
        payload={
            "event": event,
            "case_id": case.id,
            "external_id": case.external_id,
            "shop": case.shop,
            "status": case.status,
            **extra,
        },
        now=ctx.now(),
        case_id=case.id,
    )


async def refund(session: AsyncSession, ctx: Ctx, case: Case) -> None:
    """The refund command; the channel's refund id is the case id, so a retry is a no-op."""
    await channel_event(
        session,
        ctx,
        case,
        "refund_released",
        kind=REFUND_KIND,
        amount=yuan(case.refund_fen or 0),
        deduction=yuan(case.deduction_fen),
        refund_id=case.id,
    )


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
