"""`returnhub serve` SIGKILLed in the middle of a burst of webhooks, clicks and scans.

A real server process on a real database (SQLite file, PostgreSQL) takes signed
generic webhooks (new returns and duplicates), WeCom card clicks and warehouse
scans (WeCom texts) from concurrent senders; the OMS is down meanwhile, so refund
callbacks wait in the outbox. Once a third of the requests were acknowledged the
test SIGKILLs the server, starts it again on the same database, and every sender
retries what was not acknowledged, as the OMS and WeCom do. Then: every
acknowledged event is in the database, no case, card, approval, receipt or refund
exists twice (counted by their unique keys), the OMS got no case event under two
event ids and WeCom no card twice, and the outbox rows pending at the kill were
delivered by the restarted server. A text has no idempotency key at WeCom: the one
in flight at the kill goes out again as a retry with message/send's duplicate check,
so WeCom (here the fake, which drops such copies) shows it once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select, update

from storage.db import Database
from storage.models import AuditEvent, CardRecord, Case, InboundEvent, OutboxMessage
from tests.fakes.oms import FakeOms, running_oms
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner
from tests.faults.serve_burst import (
    GIVE_UP,
    Request,
    Target,
    generic,
    send,
    webhook,
    wecom,
    write_config,
)
from tests.test_workers import until

NEW, DUPLICATES, CLICKS, SCANS = 24, 8, 6, 6
SENDERS = 6  # concurrent connections: the burst is still going when the kill lands


async def scalar(db: Database, query: Any) -> Any:
    async with db.read() as session:
        return await session.scalar(query)


async def rows(db: Database, query: Any) -> list[Any]:
    async with db.read() as session:
        return list((await session.execute(query)).all())


async def settled(db: Database) -> bool:
    pending = select(func.count()).where(OutboxMessage.status == "pending")
    inbound = select(func.count()).select_from(InboundEvent)
    return await scalar(db, pending) == 0 and await scalar(db, inbound) == 0


async def skip_grace(db: Database) -> list[str]:
    """Events acknowledged and not yet handled when the server died; the keys, for the
    report. On SQLite the restarted server, the only one, recovers them at once by
    itself. On PostgreSQL it waits the dispatcher's GRACE (30 s, so that it never takes
    over what a live replica is still running): the test moves their due time to now
    instead of sleeping it out."""
    now = datetime.now(UTC).replace(tzinfo=None)
    async with db.transaction() as session:
        keys = list(await session.scalars(select(InboundEvent.key)))
        if not db.is_sqlite:
            await session.execute(update(InboundEvent).values(next_at=now))
    return keys


async def lead_cards(db: Database) -> list[CardRecord]:
    """One delivered approval card per case, with its approve token."""
    query = select(CardRecord).where(
        CardRecord.kind == "approval", CardRecord.platform == "wecom",
        CardRecord.platform_ref != "",
    )  # fmt: skip
    async with db.read() as session:
        cards = {c.case_id: c for c in await session.scalars(query)}
    return list(cards.values())


def approve_token(card: CardRecord) -> str:
    return next(b["token"] for b in card.card["buttons"] if b["action"] == "approve")


async def prepare(
    http: aiohttp.ClientSession,
    target: Target,
    db: Database,
    signer: CallbackSigner,
    fake: FakeWecom,
) -> tuple[list[Request], set[str]]:
    """Cases to click and parcels to scan (made before the burst); the burst itself,
    and the ids of the cases whose approval card it clicks."""
    clicked: set[str] = set()
    for n in range(CLICKS):
        req = generic(webhook(1000 + n, "132.00"))
        await send(http, target.base, req, asyncio.Event())
    waybills = [f"SF77{n:010d}" for n in range(SCANS)]
    for n, waybill in enumerate(waybills):
        raw = webhook(2000 + n, "39.00", kind="return_refund", return_waybill=waybill)
        await send(http, target.base, generic(raw), asyncio.Event())

    async def carded() -> bool:
        return len(await lead_cards(db)) == CLICKS

    await until(carded, "an approval card for every case to click")
    burst: list[Request] = []
    for card in await lead_cards(db):
        task_id, user = card.platform_ref.partition("|")[0], card.recipient
        code = fake.click_code(user, task_id)
        inner = signer.card_event(user, approve_token(card), task_id, code)
        burst.append(wecom(signer, inner, "click"))
        clicked.add(card.case_id)
    for n, waybill in enumerate(waybills):
        burst.append(wecom(signer, signer.text("xiaozhou", waybill, msg_id=9000 + n), "scan"))
    raws = [webhook(n, "29.90") for n in range(NEW)]
    burst += [generic(raw) for raw in raws]
    burst += [generic(raws[n], "duplicate") for n in range(DUPLICATES)]
    return interleave(burst), clicked


def interleave(requests: list[Request]) -> list[Request]:
    """Round-robin over the kinds, so each kind is sent before, during and after the kill."""
    kinds: dict[str, list[Request]] = {}
    for req in requests:
        kinds.setdefault(req.what, []).append(req)
    rounds = zip_longest(*kinds.values())
    return [req for group in rounds for req in group if req is not None]


async def run_burst(
    target: Target, burst: list[Request], after_kill: Callable[[], Awaitable[None]]
) -> int:
    """Send `burst` on SENDERS connections; SIGKILL as the third acknowledgement comes
    back, `after_kill()`, restart. The exit status of the killed server."""
    killed, third = asyncio.Event(), asyncio.Event()
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for req in burst:
        queue.put_nowait(req)

    async def sender(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            await send(http, target.base, queue.get_nowait(), killed)
            if sum(r.acked is not None for r in burst) >= len(burst) // 3:
                third.set()

    async def killer() -> int:
        await asyncio.wait_for(third.wait(), GIVE_UP)
        killed.set()
        code = await target.kill()
        assert any(r.acked is None for r in burst), "the kill came after the burst"
        await after_kill()
        await target.start()
        return code

    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        code, *_ = await asyncio.gather(killer(), *(sender(http) for _ in range(SENDERS)))
    return int(code or 0)


async def test_a_sigkill_mid_burst_loses_and_duplicates_nothing(
    db: Database, tmp_path: Path
) -> None:
    url = db.engine.url.render_as_string(hide_password=False)
    signer = CallbackSigner(lambda: int(time.time()))
    async with running_oms(lambda: datetime.now(UTC)) as oms, running(FakeWecom()) as fake:
        target = Target(tmp_path, write_config(tmp_path, url, oms, fake))
        pending_at_kill: dict[int, tuple[str, str]] = {}  # id -> (destination, text)
        unhandled_at_kill: list[str] = []

        async def after_kill() -> None:
            query = select(OutboxMessage).where(OutboxMessage.status == "pending")
            async with db.read() as session:
                for row in await session.scalars(query):
                    pending_at_kill[row.id] = (row.destination, row.payload.get("text", ""))
            unhandled_at_kill.extend(await skip_grace(db))

        try:
            await target.start()
            async with aiohttp.ClientSession() as http:
                burst, clicked = await prepare(http, target, db, signer, fake)
            oms.down(503)  # refund callbacks wait in the outbox across the kill
            code = await run_burst(target, burst, after_kill)
            oms.up()
            await until(lambda: settled(db), "outbox delivered and inbound handled")
        finally:
            await target.close()
    assert code == -signal.SIGKILL, target.output[-3000:]
    assert {r.acked for r in burst} == {"before", "after"}
    assert pending_at_kill, "no outbox row was pending when the server was killed"
    resent = len(oms.deliveries) - len(oms.events)  # at least once: the OMS keys on event_id
    print(f"at the kill: {len(pending_at_kill)} outbox rows pending, {len(unhandled_at_kill)}"
          f" acknowledged events unhandled; {resent} callbacks delivered again")  # fmt: skip
    await check_database(db, clicked, list(pending_at_kill))
    check_fakes(oms, fake)
    print(f"{len(fake.deduplicated)} in-flight WeCom texts sent again, dropped as copies")


async def check_database(db: Database, clicked: set[str], pending: list[int]) -> None:
    externals = await rows(db, select(Case.external_id))
    expected = {f"BURST-AS{n:04d}" for n in (*range(NEW), *range(1000, 1000 + CLICKS),
                                              *range(2000, 2000 + SCANS))}  # fmt: skip
    assert Counter(e for (e,) in externals) == Counter(expected), "a case lost or duplicated"
    actions = await rows(db, select(AuditEvent.case_id, AuditEvent.action))
    twice = {k: n for k, n in Counter(actions).items() if n > 1}
    assert not twice, f"an audited action recorded twice: {twice}"
    assert {c for c, action in actions if action == "approve"} == clicked
    assert sum(action == "receive" for _, action in actions) == SCANS  # each parcel once
    cards = await rows(
        db, select(CardRecord.case_id, CardRecord.step_id, CardRecord.kind, CardRecord.recipient)
    )
    assert not {k for k, n in Counter(cards).items() if n > 1}, "a card made twice"
    # one inspection card per parcel (a copy per platform: console and WeCom)
    assert len({case for case, _, kind, _ in cards if kind == "inspection"}) == SCANS
    states = await rows(
        db, select(OutboxMessage.status, func.count()).where(OutboxMessage.id.in_(pending))
        .group_by(OutboxMessage.status)
    )  # fmt: skip
    assert dict(states) == {"sent": len(pending)}, "rows pending at the kill not delivered"


def check_fakes(oms: FakeOms, fake: FakeWecom) -> None:
    """Cards carry their task_id (WeCom refuses a reused one) and callbacks their
    event_id (the OMS keys on it), so neither arrives twice in effect. A text has no
    such key: one whose send WeCom accepted just before the kill, and whose "sent" the
    dead server never committed, is sent again by the restarted one as a retry, with
    the duplicate check on, so it is shown once."""
    assert oms.refused == []
    events = Counter((e["case_id"], e["event"]) for e in oms.events.values())
    assert not {k for k, n in events.items() if n > 1}, "one case event under two event ids"
    refunds = [k for k in events if k[1] == "refund_released"]
    assert len(refunds) == NEW + CLICKS, refunds
    tasks = Counter(m["template_card"]["task_id"] for m in fake.messages if "template_card" in m)
    assert not {k for k, n in tasks.items() if n > 1}
    texts = Counter((m["touser"], m["text"]["content"]) for m in fake.messages if "text" in m)
    assert not {k: n for k, n in texts.items() if n > 1}, "a text shown twice"
    assert all(m.get("enable_duplicate_check") == 1 for m in fake.deduplicated)
