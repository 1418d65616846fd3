"""Channel events through the group-commit writer (bot/writer.py): what the edge awaits.

The writer's "return_request" kind runs `handlers.intake.apply_requests` on each
batch, in its shared transaction. `via_writer` hands one event over and answers
once its batch committed; an event that conflicts with its case (`Refused`: the
writer rolled its savepoint back, inbox key included, and nothing was stored)
answers with the case and the reason, for the edge's 409.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.events import ReturnRequest
from handlers.context import Ctx
from handlers.intake import IntakeResult, _find
from handlers.revise import Refused

log = logging.getLogger(__name__)

KIND = "return_request"
Submit = Callable[[str, Any], Awaitable[Any]]


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
