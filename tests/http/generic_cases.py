"""Helpers for the generic-channel HTTP tests: numbered requests, submit, read back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.appkeys import CTX
from bot.events import Sender
from handlers.approvals import decide
from handlers.people import member_named
from storage.models import AuditEvent, CardRecord, Case
from tests.support import Client, FakeClock, post_generic, return_body


def request(n: int, amount: str, **fields: Any) -> dict[str, Any]:
    """A one-item request numbered `n` for `amount` yuan."""
    item = {"sku": f"SKU-{n}", "name": "自动喂食器", "qty": 1, "unit_price": amount}
    defaults = {"event_id": f"oms-evt-{n:04d}", "external_id": f"AS{n:06d}"}
    return return_body(**{**defaults, "amount": amount, "items": [item], **fields})


async def submit(client: Client, clock: FakeClock, body: dict[str, Any]) -> str:
    status, answer = await post_generic(client, body, clock)
    assert status == 202, answer
    assert answer["duplicate"] is False
    case_id: str = answer["case_id"]
    return case_id


async def load(client: Client, case_id: str) -> Case:
    async with client.app[CTX].db.read() as session:
        query = select(Case).where(Case.id == case_id).options(selectinload(Case.steps))
        return (await session.scalars(query)).one()


async def cards(client: Client, case_id: str) -> list[CardRecord]:
    async with client.app[CTX].db.read() as session:
        query = select(CardRecord).where(CardRecord.case_id == case_id).order_by(CardRecord.id)
        return list(await session.scalars(query))


async def approve(client: Client, case_id: str, name: str) -> None:
    ctx = client.app[CTX]
    async with ctx.db.transaction() as session:
        member = await member_named(session, name)
        assert member is not None
        await decide(session, ctx, case_id, member, "approve", Sender("console", name))


async def audit_trail(client: Client, case_id: str) -> list[AuditEvent]:
    async with client.app[CTX].db.read() as session:
        query = select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.id)
        return list(await session.scalars(query))
