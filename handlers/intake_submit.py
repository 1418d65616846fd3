"""Channel events through the group-commit writer (bot/writer.py): what the edge awaits.

The writer's "return_request" kind runs `handlers.intake.apply_requests` on each
batch, in its shared transaction. `via_writer` hands one event over and answers
once its batch committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.events import ReturnRequest
from handlers.context import Ctx
from handlers.intake import IntakeResult, on_return_request
from handlers.revise import Refused

KIND = "return_request"
Submit = Callable[[str, Any], Awaitable[Any]]


async def via_writer(submit: Submit, ctx: Ctx, event: ReturnRequest) -> IntakeResult:
    """Hand `event` to the writer; its result once committed, or why it was refused.

    A refused event (it conflicts with its case) was rolled back in its savepoint,
    inbox key included. Run alone, as a retry would, it answers the refusal with
    the case it conflicts with, for the edge's 409, and stores nothing.
    """
    try:
        result: IntakeResult = await submit(KIND, event)
    except Refused:
        return await on_return_request(event, ctx)
    return result
