"""Telling customer service that a case was rejected, and what to tell the buyer.

A rejection (an approver's 驳回, or risk's 驳回退款 after a failed inspection) ends
the case, but the buyer hears of it only through customer service. The notice is
written in the rejecting transaction, so a crash cannot leave a rejection that
nobody passes on.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from handlers import notify, views
from handlers.context import Ctx
from handlers.people import holders
from storage.models import Case, Member

log = logging.getLogger(__name__)


async def service_members(session: AsyncSession, case: Case) -> list[Member]:
    """The case's customer service: the agent who keyed it in, while they are an
    active cs_agent (the buyer is talking to them); else every cs_agent."""
    agents = await holders(session, "cs_agent")
    raiser = [m for m in agents if m.id == case.raised_by]
    return raiser or agents


async def tell_rejected(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    by: Member,
    role: str,
    reason: str,
    *,
    finding: str = "",
) -> None:
    """A text to the case's customer service with the case, amount, who rejected it
    (as `role`), when, why, and a sentence they can pass on to the buyer."""
    agents = await service_members(session, case)
    if not agents:
        log.warning("case %s rejected, but no cs_agent member can tell the buyer", case.id)
        return
    text = views.rejection_text(ctx, case, f"{by.name}（{role}）", reason, finding)
    await notify.tell(session, ctx, agents, text, case.id)
