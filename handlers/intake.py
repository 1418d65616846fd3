"""A return request or status update from a channel -> one case, routed.

The hot path: dedupe, store, route and enqueue in one short transaction. An
event applies only when its channel version is newer than the stored one
(handlers/versions.py); a newer one that changes the request is applied by
handlers/revise.py. An event that conflicts with the case (versions of two
kinds, a change after approval) is refused: the transaction rolls back, its
inbox key included, and the result carries the reason for a 409.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot.events import ReturnRequest
from handlers import exchange, notify, parcels, sla
from handlers.context import Ctx, naive_utc
from handlers.inbox import Duplicate, retrying
from handlers.notify import REFUND_KIND
from handlers.opening import open_cases
from handlers.revise import Refused, revise
from handlers.versions import Unordered, newer
from handlers.workflow import OPEN, Actor, Refusal, Status, audit, fire, must
from storage import intake_rows as rows
from storage import outbox, timers
from storage.models import ApprovalStep, Case

log = logging.getLogger(__name__)
# Statuses that report on an existing case and never open one.
UPDATES_ONLY = ("refunded", *exchange.STATUSES)


@dataclass(frozen=True, slots=True)
class IntakeResult:
    case_id: str | None
    duplicate: bool
    status: str = ""
    refused: str = ""  # why the event was refused (409); nothing was stored


async def on_return_request(event: ReturnRequest, ctx: Ctx) -> IntakeResult:
    """Apply one channel event once; a redelivery answers with the case it made."""
    try:
        result = await retrying(ctx, event.key, lambda s: apply_requests(s, ctx, [event]))
    except Refused as exc:
        log.warning("channel event %s refused: %s", event.key, exc.message)
        async with ctx.db.read() as session:
            case = await _find(session, ctx, event, lock=False)
        return IntakeResult(
            case.id if case else None, False, case.status if case else "", exc.message
        )
    if isinstance(result, Duplicate):  # a concurrent delivery of the same event won
        async with ctx.db.read() as session:
            case = await _find(session, ctx, event, lock=False)
        return IntakeResult(case.id if case else None, True, case.status if case else "")
    return result[0]


async def apply_requests(
    session: AsyncSession, ctx: Ctx, events: Sequence[ReturnRequest]
) -> list[IntakeResult]:
    """Apply `events` in order in the caller's transaction, each key once.

    A key handled before, or earlier in the same batch, yields a duplicate result
    naming its case. New cases (the common case) are opened together with Core
    statements (handlers/opening.py); an event for a stored case, or one opened
    earlier in the batch, goes through the ORM after them, in event order. Any
    event that fails (`Refused` included) raises: the caller rolls the whole
    batch back and may retry its events one by one.
    """
    now = ctx.now()
    keys = [e.key for e in events]
    await rows.inbound_done(session, keys)  # acknowledged earlier: handled now
    known = await rows.known_keys(session, keys)
    fresh: dict[str, ReturnRequest] = {}
    for event in events:
        if event.key not in known:
            fresh.setdefault(event.key, event)
    await rows.claim_keys(session, [(k, e.channel) for k, e in fresh.items()], now)
    stored = set(await rows.case_states(session, map(_channel_key, fresh.values())))
    results: dict[int, IntakeResult] = {}
    opening: list[tuple[int, ReturnRequest]] = []
    for n, event in enumerate(events):
        if fresh.get(event.key) is not event:
            continue  # a duplicate, answered below
        if _channel_key(event) in stored or event.status in UPDATES_ONLY:
            await _open(session, ctx, opening, results, now)
            results[n] = await _apply(session, ctx, event)
            continue
        stored.add(_channel_key(event))
        opening.append((n, event))
        if event.status == "cancelled":
            await _open(session, ctx, opening, results, now)
            results[n] = await _cancel_new(session, ctx, event)
    await _open(session, ctx, opening, results, now)
    await parcels.match_arrivals(session, ctx, _arrivals(events, results))
    await sla.settle(session, ctx)  # the SLA timers of the stored cases it moved
    return await _with_duplicates(session, events, results)


def _arrivals(
    events: Sequence[ReturnRequest], results: dict[int, IntakeResult]
) -> list[parcels.Arrival]:
    """The cases stored, with the codes an unexpected parcel may be waiting under."""
    return [
        (r.case_id, r.status, e.return_waybill, e.order_id)
        for n, e in enumerate(events)
        if (r := results.get(n)) is not None and r.case_id and not r.refused
    ]


def _channel_key(event: ReturnRequest) -> rows.Triple:
    return event.channel, event.shop, event.external_id


async def _open(
    session: AsyncSession,
    ctx: Ctx,
    opening: list[tuple[int, ReturnRequest]],
    results: dict[int, IntakeResult],
    now: datetime,
) -> None:
    """Open the new cases collected so far, after the earlier events' ORM changes."""
    if not opening:
        return
    await session.flush()
    cases = await open_cases(session, ctx, [e for _, e in opening], now)
    for (n, _), case in zip(opening, cases, strict=True):
        results[n] = IntakeResult(case.id, False, case.status)
    opening.clear()


async def _cancel_new(session: AsyncSession, ctx: Ctx, event: ReturnRequest) -> IntakeResult:
    """A cancel that overtook its request still makes a (closed) case, so the late
    request, carrying an older version, cannot open it again."""
    case = await _find(session, ctx, event, lock=True)
    if case is None:
        raise AssertionError(f"case for {event.key} not opened")
    await cancel(session, ctx, case, Actor("channel", event.channel), "买家取消售后申请")
    return IntakeResult(case.id, False, case.status)


async def _with_duplicates(
    session: AsyncSession, events: Sequence[ReturnRequest], results: dict[int, IntakeResult]
) -> list[IntakeResult]:
    """`results` in event order, a duplicate naming the case as the batch leaves it."""
    repeats = [e for n, e in enumerate(events) if n not in results]
    states: dict[rows.Triple, tuple[str, str]] = {}
    if repeats:
        await session.flush()
        states = await rows.case_states(session, map(_channel_key, repeats))
    out = []
    for n, event in enumerate(events):
        if n in results:
            out.append(results[n])
            continue
        log.info("duplicate delivery %s dropped", event.key)
        found = states.get(_channel_key(event))
        out.append(IntakeResult(found[0], True, found[1]) if found else IntakeResult(None, True))
    return out


async def _find(
    session: AsyncSession, ctx: Ctx, event: ReturnRequest, *, lock: bool
) -> Case | None:
    query = select(Case).where(
        Case.channel == event.channel,
        Case.shop == event.shop,
        Case.external_id == event.external_id,
    )
    if lock:
        query = query.with_for_update(**ctx.db.for_update()).options(
            selectinload(Case.items), selectinload(Case.steps)
        )
    return (await session.scalars(query)).first()


async def _apply(session: AsyncSession, ctx: Ctx, event: ReturnRequest) -> IntakeResult:
    case = await _find(session, ctx, event, lock=True)
    if case is None and event.status in UPDATES_ONLY:
        log.warning(
            "%s report for unknown case %s/%s ignored",
            event.status,
            event.channel,
            event.external_id,
        )
        return IntakeResult(None, False, "")
    if case is None:
        raise AssertionError(f"case for {event.key} not opened")
    try:
        is_newer = newer(event.version, case.channel_version)
    except Unordered as exc:
        raise Refused(f"售后单 {case.id}：{exc}") from None
    if not is_newer:
        log.info(
            "case %s: channel version %s is not newer than %s; ignored",
            case.id,
            event.version,
            case.channel_version,
        )
        return IntakeResult(case.id, True, case.status)
    case.channel_version = event.version
    if event.deadline_at is not None:  # the channel moved its own deadline (handlers/sla.py)
        case.channel_deadline_at = naive_utc(event.deadline_at)
    channel = Actor("channel", event.channel)
    # Only a request or a shipment restates the request; a cancel or a refund report
    # ends the case whatever it carries.
    revised = event.status in ("requested", "buyer_shipped") and await revise(
        session, ctx, case, event, channel
    )
    if event.status == "buyer_shipped":
        await _buyer_shipped(session, ctx, case, event, channel)
    elif event.status == "cancelled":
        await cancel(session, ctx, case, channel, "买家取消售后申请")
    elif event.status == "refunded":
        await _refunded(session, ctx, case, channel)
    elif event.status in exchange.STATUSES:
        await exchange.on_channel_status(session, ctx, case, event, channel)
    elif not revised:
        session.add(
            audit(
                case.id,
                channel,
                "updated",
                ctx.now(),
                case.status,
                case.status,
                detail={"version": event.version},
            )
        )
        case.updated_at = ctx.now()
    return IntakeResult(case.id, False, case.status)


async def _buyer_shipped(
    session: AsyncSession, ctx: Ctx, case: Case, event: ReturnRequest, channel: Actor
) -> None:
    case.return_waybill = event.return_waybill or case.return_waybill
    case.carrier = event.carrier or case.carrier
    if case.status == Status.AWAITING_RETURN:
        session.add(
            must(
                fire(
                    case,
                    "buyer_shipped",
                    channel,
                    ctx.now(),
                    why=f"买家已寄回 {case.carrier or ''} {case.return_waybill}",
                )
            )
        )
    else:
        case.updated_at = ctx.now()
        session.add(
            audit(
                case.id,
                channel,
                "waybill",
                ctx.now(),
                case.status,
                case.status,
                why=f"退货运单 {case.return_waybill}",
            )
        )


async def _refunded(session: AsyncSession, ctx: Ctx, case: Case, channel: Actor) -> None:
    """The channel reports the money went back (the OMS did it on `refund_released`)."""
    result = fire(case, "refunded", channel, ctx.now(), why="渠道确认已退款")
    if isinstance(result, Refusal):
        log.info("case %s: refunded report ignored (%s)", case.id, result.reason)
        session.add(
            audit(
                case.id,
                channel,
                "refunded_ignored",
                ctx.now(),
                case.status,
                case.status,
                why=result.reason,
            )
        )
        return
    session.add(result)


async def cancel(session: AsyncSession, ctx: Ctx, case: Case, actor: Actor, why: str) -> None:
    """The buyer or the channel closed it: close the case, every open card, every timer,
    and withdraw a refund command that has not left yet (no money for a closed case)."""
    if Status(case.status) not in OPEN:
        return
    withdrawn = await outbox.void_pending(session, case.id, REFUND_KIND, now=ctx.now())
    detail = {"refund_withdrawn": withdrawn} if withdrawn else None
    session.add(must(fire(case, "close", actor, ctx.now(), why=why, detail=detail)))
    undecided = await session.scalars(
        select(ApprovalStep).where(
            ApprovalStep.case_id == case.id, ApprovalStep.state.in_(("waiting", "pending"))
        )
    )
    for step in undecided:
        step.state = "cancelled"
    await notify.close_cards(session, ctx, case.id, f"已关闭：{why}")
    await timers.cancel_for_case(session, case.id)
    await notify.channel_event(session, ctx, case, "closed")
