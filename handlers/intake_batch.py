"""Channel events applied in the writer's shared transaction (bot/writer.py).

`apply_requests` is the batch function of the writer's "return_request" kind:
in the caller's transaction, in order, each event is applied once per
idempotency key, its inbox_keys row written with its effects. A key seen
earlier in the same batch is in the session already, so a repeat inside one
batch answers as a duplicate exactly as one already in the table does. Any
failure raises: the writer then runs each event alone, in its own savepoint.

`via_writer` is what the generic webhook awaits: the event's result once its batch
committed; an event that conflicts with its case (Refused: the writer rolled
its savepoint back, inbox key included) answers with the case and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import ReturnRequest
from handlers.context import Ctx
from handlers.intake import IntakeResult, _apply, _find
from handlers.revise import Refused
from storage.models import InboxKey

log = logging.getLogger(__name__)

KIND = "return_request"
Submit = Callable[[str, Any], Awaitable[Any]]


async def apply_requests(
    session: AsyncSession, ctx: Ctx, events: Sequence[ReturnRequest]
) -> list[IntakeResult]:
    """Apply `events` in order in the caller's transaction; raises if any one fails."""
    return [await _apply_once(session, ctx, event) for event in events]


async def _apply_once(session: AsyncSession, ctx: Ctx, event: ReturnRequest) -> IntakeResult:
    if await session.get(InboxKey, event.key) is not None:
        log.info("duplicate delivery %s dropped", event.key)
        case = await _find(session, ctx, event, lock=False)
        return IntakeResult(case.id if case else None, True, case.status if case else "")
    session.add(InboxKey(key=event.key, source=event.channel, received_at=ctx.now()))
    await session.flush()  # a concurrent delivery of the key fails here, before the work
    return await _apply(session, ctx, event)


async def via_writer(submit: Submit, ctx: Ctx, event: ReturnRequest) -> IntakeResult:
    """Hand `event` to the writer; its result once committed, or why it was refused."""
    try:
        result: IntakeResult = await submit(KIND, event)
    except Refused as exc:
        log.warning("channel event %s refused: %s", event.key, exc.message)
        async with ctx.db.read() as session:
            case = await _find(session, ctx, event, lock=False)
        return IntakeResult(
            case.id if case else None, False, case.status if case else "", exc.message
        )
    return result
