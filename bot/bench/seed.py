"""Bulk seeding for the scale rounds: stored cases and open timers, not over HTTP.

Rows go in with SQLAlchemy Core `executemany` in chunks, shaped like what the
server stores (a year of history, most cases finished, buyers who come back),
so the queries the server runs at 100k cases meet a realistic table.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text

from storage.db import Database
from storage.models import AuditEvent, Case, CaseItem, Customer, Timer

CHUNK = 5000
BUYERS = 20_000
# Finished cases dominate a year of history; a few are still open.
STATUSES = ("refunded",) * 6 + ("closed", "rejected", "pending_approval", "awaiting_return")
# The seeded cases fill the two weeks before yesterday, 9,000 a day (100k reach
# three days back), so the dashboard's 30-day period and the 180-day customer
# history really cover them; their ids never clash with today's counter. Naive UTC.
EPOCH = (datetime.now(UTC) - timedelta(days=14)).replace(
    tzinfo=None, hour=0, minute=0, second=0, microsecond=0
)


def _case_rows(start: int, stop: int) -> Iterator[tuple[dict[str, Any], ...]]:
    for n in range(start, stop):
        day = EPOCH + timedelta(days=n // 9000)
        case_id = f"RC-{day:%y%m%d}-{n % 9000 + 1:04d}"
        at = day + timedelta(seconds=n % 86_000)
        amount = (2990, 13200, 28800, 600000)[n % 4]
        status = STATUSES[n % len(STATUSES)]
        case = {
            "id": case_id, "channel": "generic", "shop": "main-store",
            "external_id": f"SEED{n:09d}", "order_id": f"SO{n:09d}", "kind": "return_refund",
            "reason_code": "quality.defect", "reason_text": "", "amount_fen": amount,
            "refund_fen": amount if status == "refunded" else None, "deduction_fen": 0,
            "currency": "CNY", "buyer_ref": f"buyer-{n % BUYERS}", "buyer_nick": "",
            "tier": "", "attachments": [], "sla_policy": "", "status": status,
            "current_step": 0, "channel_version": "1", "created_at": at, "updated_at": at,
            "version": 1,
        }  # fmt: skip
        item = {
            "case_id": case_id, "sku": "FEEDER-2", "name": "自动喂食器", "qty": 1,
            "unit_price_fen": amount, "category": "",
        }  # fmt: skip
        audit = {
            "case_id": case_id, "at": at, "actor": "channel:generic", "action": "created",
            "from_status": "", "to_status": status, "detail": "",
        }  # fmt: skip
        yield case, item, audit


async def seed_cases(db: Database, start: int, stop: int) -> None:
    """Cases number `start` .. `stop - 1` (so a run grows the table step by step)."""
    rows = list(_case_rows(start, stop))
    async with db.engine.begin() as conn:
        if start == 0:
            customers = [
                {"channel": "generic", "buyer_ref": f"buyer-{b}", "nick": "", "flagged": False,
                 "flag_reason": ""}
                for b in range(BUYERS)
            ]  # fmt: skip
            for i in range(0, len(customers), CHUNK):
                await conn.execute(insert(Customer), customers[i : i + CHUNK])
        for i in range(0, len(rows), CHUNK):
            chunk = rows[i : i + CHUNK]
            await conn.execute(insert(Case), [r[0] for r in chunk])
            await conn.execute(insert(CaseItem), [r[1] for r in chunk])
            await conn.execute(insert(AuditEvent), [r[2] for r in chunk])
    if not db.is_sqlite:
        # A database that grew to this size in service is vacuumed and has statistics
        # (autovacuum keeps both); one loaded in a second has neither until autovacuum
        # comes round (never, on a server that runs with it off, as this machine's
        # does), so the planner would guess as if the tables were empty and the last
        # round would meet the dead rows of every earlier one (outbox, inbox). SQLite's
        # are left out, as in production, where nothing runs ANALYZE.
        engine = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text("VACUUM ANALYZE"))


async def seed_timers(db: Database, count: int, due: int, now: datetime) -> None:
    """`count` pending timers, `due` of them due at `now`, the rest days ahead."""
    at = now.astimezone(UTC).replace(tzinfo=None)
    rows: list[dict[str, Any]] = [
        {
            "case_id": f"RC-TIMER-{n:06d}",
            "step_id": None,
            "kind": "remind",
            "due_at": at - timedelta(seconds=1) if n < due else at + timedelta(days=1 + n % 30),
            "status": "pending",
            "payload": {},
        }  # fmt: skip
        for n in range(count)
    ]
    async with db.engine.begin() as conn:
        for i in range(0, len(rows), CHUNK):
            await conn.execute(insert(Timer), rows[i : i + CHUNK])
