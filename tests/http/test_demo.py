"""`returnhub demo` as someone watching it: refunds finish, and a buyer is one customer."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from bot import demo, demo_oms
from bot.app import create_app
from bot.appkeys import CTX
from bot.settings import Settings
from handlers.risk import history_lines
from storage.db import Database
from storage.history import customer_history
from storage.models import AuditEvent, Case
from tests.support import FakeClock, MakeClient

AUTO = "AS2026112100001"  # 29.90: approved automatically, refund released at once


def demo_on(db: Database, tmp_path: Path) -> Settings:
    base = demo.demo_settings(8080, tmp_path / "var")
    return dataclasses.replace(base, database=dataclasses.replace(base.database, url=db.url))


async def case_by_external(app: web.Application, external_id: str) -> Case:
    async with app[CTX].db.read() as session:
        found = await session.scalars(select(Case).where(Case.external_id == external_id))
        return found.one()


async def test_the_demo_oms_confirms_a_released_refund_after_its_delay(
    db: Database, tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    clock = FakeClock()
    app = create_app(demo_on(db, tmp_path), clock=clock, background=False)
    await aiohttp_client(app)
    await demo.seed(app[CTX])
    pending = await case_by_external(app, AUTO)
    assert pending.status == "refund_pending"
    clock.advance(19)
    assert await demo_oms.confirm_refunds(app, demo.SHOP, 20) == []
    clock.advance(1)
    assert await demo_oms.confirm_refunds(app, demo.SHOP, 20) == [pending.id]
    done = await case_by_external(app, AUTO)
    assert (done.status, done.channel_version) == ("refunded", "2")
    async with app[CTX].db.read() as session:
        rows = await session.scalars(
            select(AuditEvent).where(
                AuditEvent.case_id == pending.id, AuditEvent.to_status == "refunded"
            )
        )
        (audit,) = rows.all()
    assert (audit.actor, audit.from_status) == ("channel", "refund_pending")
    clock.advance(60)
    assert await demo_oms.confirm_refunds(app, demo.SHOP, 20) == []  # nothing twice


async def test_the_installed_demo_reaches_refunded_by_itself(
    db: Database, tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    """The wiring `returnhub demo` uses: seed on start, then the OMS job on its own
    scheduler (no stream; no delay, so its first tick confirms)."""
    app = create_app(demo_on(db, tmp_path), background=False)
    demo.install(app, stream_seconds=0, oms_delay_seconds=0)
    await aiohttp_client(app)
    for _ in range(100):  # bounded: the job ticks every second
        if (await case_by_external(app, AUTO)).status == "refunded":
            break
        await asyncio.sleep(0.1)
    assert (await case_by_external(app, AUTO)).status == "refunded"


async def test_a_nickname_seen_again_is_the_same_customer_with_its_history(
    db: Database, tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    app = create_app(demo_on(db, tmp_path), background=False)
    await aiohttp_client(app)
    ctx = app[CTX]
    await demo.seed(ctx)
    rng = random.Random(2026)
    made = [await demo.demo_stream_job(ctx, rng) for _ in range(30)]
    orders = {buyer: count for buyer, _, count, _ in demo.CUSTOMERS}
    async with ctx.db.read() as session:
        cases = list(await session.scalars(select(Case)))
        refs: dict[str, set[str]] = {}
        for case in cases:
            refs.setdefault(case.buyer_nick, set()).add(case.buyer_ref)
        assert all(len(r) == 1 for r in refs.values()), refs
        reused = [c for c in cases if c.id in made and c.buyer_nick == "布偶妈妈"]
        assert reused  # the seed's 布偶妈妈 returns again in the stream
        for case in cases:
            history = customer_history(session, "generic", case.buyer_ref, ctx.now(), case.id)
            line = history_lines(await history)[0]
            count = orders[(case.buyer_ref, case.buyer_nick)]
            assert line.startswith(f"近180天订单 {count} 笔"), (case.buyer_nick, line)
