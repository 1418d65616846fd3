"""The SLA tick's cost follows the due timers, not the open ones: the claim reads the
due rows through `ix_timer_due` and nothing else, however many timers wait for later.

PostgreSQL counts it: EXPLAIN ANALYZE of the claim the tick sent reports the rows its
index scan read. SQLite has no such counter; its plan shows the range search on
(status, due_at) that, by construction, visits the due rows only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage import timers
from storage.db import Database
from storage.models import Timer
from tests.unit.test_query_plans import _nodes, recorded

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC).replace(tzinfo=None)  # naive UTC, as stored
DUE = 7


async def _add(db: Database, count: int, *, start: int, due: bool) -> None:
    rows = [
        {"case_id": f"RC-{start + n:06d}", "kind": "sla", "status": "pending", "payload": {},
         "due_at": NOW - timedelta(seconds=n + 1) if due else NOW + timedelta(minutes=n + 1)}
        for n in range(count)
    ]  # fmt: skip
    async with db.engine.begin() as conn:
        await conn.execute(insert(Timer), rows)
        if not db.is_sqlite:
            await conn.exec_driver_sql("ANALYZE timers")


async def _rows_read(db: Database) -> tuple[int, list[str]]:
    """Fire the due timers once; the rows the claim's scan read (PostgreSQL) and its plan."""

    async def hook(session: AsyncSession, timer: Timer) -> None:
        return None

    with recorded(db) as statements:
        fired = await timers.claim_due(db, NOW, 100, hook)
    assert len(fired) == DUE
    claim = next(s for s in statements if "FROM timers" in s[0] and "SELECT" in s[0])
    async with db.engine.begin() as conn:
        # The rows fired above are pending again for the measurement, in this transaction.
        await conn.exec_driver_sql("UPDATE timers SET status = 'pending' WHERE due_at <= ?"
                                   if db.is_sqlite else
                                   "UPDATE timers SET status = 'pending' WHERE due_at <= $1",
                                   (NOW,))  # fmt: skip
        if db.is_sqlite:
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {claim[0]}", claim[1])
            return -1, [str(r[3]) for r in rows]
        raw = (
            await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {claim[0]}", claim[1])
        ).scalar()
        plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
        scans = [n for n in _nodes(plan) if n.get("Relation Name") == "timers"]
        return sum(int(n["Actual Rows"]) for n in scans), [n["Node Type"] for n in scans]


async def test_the_tick_reads_the_due_timers_only(db: Database) -> None:
    await _add(db, DUE, start=0, due=True)
    await _add(db, 1000, start=100, due=False)
    small, plan = await _rows_read(db)
    await _add(db, 9000, start=2000, due=False)  # ten times as many open timers
    large, plan_large = await _rows_read(db)
    if db.is_sqlite:
        assert any("USING INDEX ix_timer_due (status=? AND due_at<?)" in d for d in plan), plan
        assert plan_large == plan
    else:
        assert plan == plan_large and "Seq Scan" not in plan, plan
        assert small == large == DUE, (small, large)
