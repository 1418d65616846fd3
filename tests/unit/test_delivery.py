"""What follows a delivery (bot/delivery.py): card handles, refund confirmation, alerts."""

from __future__ import annotations

from sqlalchemy import select

from bot.delivery import build_worker
from bot.outbox import PermanentError
from handlers.intake import on_return_request
from storage.db import Database
from storage.models import CardRecord, OutboxMessage
from tests.unit.test_flow import case_of, outbox, request, setup


async def test_handles_are_kept_and_a_confirmed_refund_is_refunded(db: Database) -> None:
    ctx = await setup(db)
    small = (await on_return_request(request(1, 2990), ctx)).case_id or ""
    await on_return_request(request(2, 13200), ctx)

    async def send_card(msg: OutboxMessage) -> dict[str, object]:
        return {"card_id": msg.payload["card_id"], "platform_ref": f"ref-{msg.id}"}

    async def nothing(msg: OutboxMessage) -> None:
        return None

    async def refund(msg: OutboxMessage) -> dict[str, object]:
        return {"confirmed": True}

    worker = build_worker(
        ctx, {"card.send": send_card, "channel.event": nothing, "channel.refund": refund}
    )
    await worker.drain()
    assert (await case_of(db, small)).status == "refunded"
    async with db.read() as session:
        refs = [r.platform_ref for r in await session.scalars(select(CardRecord))]
    assert len(refs) == 2 and all(ref.startswith("ref-") for ref in refs)


async def test_a_dead_letter_alerts_the_admins_once(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(3, 2990), ctx)).case_id or ""

    async def refuse(msg: OutboxMessage) -> None:
        raise PermanentError("HTTP 400 unknown order")

    worker = build_worker(
        ctx, {"channel.event": refuse, "channel.refund": refuse, "text.send": refuse}
    )
    await worker.drain()
    alerts = [m for m in await outbox(db, "text.send") if m.payload.get("alert")]
    # The approved event, the refund, and the 退款失败 notice to finance all died:
    # three alerts; the alerts themselves died too and raised nothing more.
    assert [m.destination for m in alerts] == ["console:管理员"] * 3
    assert all("死信" in m.payload["text"] for m in alerts)
    assert {m.status for m in alerts} == {"dead"}
    # The dead refund is reported to finance and the case does not pretend it was paid.
    case = await case_of(db, case_id)
    assert case.status == "refund_pending"
    texts = [m.payload["text"] for m in await outbox(db, "text.send")]
    assert any("退款失败" in t for t in texts)
