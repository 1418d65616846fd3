"""Helpers for the warehouse tests: a handler context on the test settings (members
from tests/support.py, evidence under tmp_path), return parcels, what a member was told."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.events import ChatMessage, Item, ReturnRequest, Sender
from bot.settings import PhotoSettings
from handlers.commands import on_chat_message
from handlers.context import Ctx
from handlers.intake import on_return_request
from handlers.people import sync_members
from storage.db import Database
from storage.models import AuditEvent, Case, OutboxMessage
from storage.secrets import Keyring
from tests.support import START, FakeClock, make_settings

XIAOZHOU = Sender("console", "小周")


async def warehouse_ctx(db: Database, tmp_path: Path, clock: FakeClock, **photos: int) -> Ctx:
    settings = make_settings(tmp_path, db.url)
    settings = dataclasses.replace(settings, photos=PhotoSettings(**photos))
    ctx = Ctx(db=db, settings=settings, clock=clock, keyring=Keyring("s3cret"))
    async with db.transaction() as session:
        await sync_members(session, settings.members)
    return ctx


def parcel(n: int, waybill: str | None, *, order_id: str = "", **kw: Any) -> ReturnRequest:
    """A 39.90 return-refund (auto-approved, so awaiting its parcel)."""
    fields: dict[str, Any] = dict(
        key=f"generic:main-store:p{n}",
        channel="generic",
        shop="main-store",
        external_id=f"AS-P{n}",
        order_id=order_id or f"SO-P{n}",
        kind="return_refund",
        status="requested",
        amount_fen=3990,
        version="1",
        occurred_at=START,
        buyer_ref=f"buyer-{n}",
        reason_code="quality.defect",
        items=(Item("BOWL-1", "陶瓷食盆", 1, 3990),),
        return_waybill=waybill,
    )
    fields.update(kw)
    return ReturnRequest(**fields)


async def open_parcel(ctx: Ctx, n: int, waybill: str | None, **kw: Any) -> str:
    result = await on_return_request(parcel(n, waybill, **kw), ctx)
    assert result.case_id and not result.refused, result
    return result.case_id


async def say(ctx: Ctx, key: str, text: str, sender: Sender = XIAOZHOU) -> None:
    await on_chat_message(ChatMessage(key, sender, text), ctx)


async def told(db: Database, user: str = "小周") -> list[str]:
    async with db.read() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.kind == "text.send", OutboxMessage.destination == f"console:{user}"
            )
            .order_by(OutboxMessage.id)
        )
        return [str(m.payload["text"]) for m in rows]


async def status(db: Database, case_id: str) -> str:
    async with db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case.status


async def actions(db: Database, case_id: str) -> list[str]:
    async with db.read() as session:
        rows = await session.scalars(
            select(AuditEvent.action).where(AuditEvent.case_id == case_id).order_by(AuditEvent.id)
        )
        return list(rows)
