"""The scenarios of a bench run, each a function of the running processes.

Intake is measured with the reads and the outbox watched while it runs; WeCom
text messages and card clicks are encrypted as WeCom sends them; the timer tick
is measured in-process on its own database.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select, update

from bot.bench import procs, seed, traffic
from bot.bench.load import Req, Stats, drive
from bot.bench.report import cpu_ms, merge
from bot.bench.run import Options, Run, count, now, temp_database, wait_zero
from storage import timers
from storage.db import Database
from storage.migrate import upgrade
from storage.models import CardRecord, InboundEvent, OutboxMessage, Timer

# Requests a second each read probe sends while intake runs: paced, so the probes
# measure what a reader waits under intake instead of being a second load (closed
# loop, two clients each of /healthz and /api/cases answered 628 and 123 req/s during
# the intake rounds, work the bare endpoint it is compared with never did) and land
# at any moment, as a load balancer's do, not in the gaps the last answer left.
PROBE_RATE = 40.0


async def intake_under_load(run: Run, bare: procs.Child, server: procs.Child) -> dict[str, Any]:
    """Distinct webhooks (A/B), with /healthz and /api/cases read and the outbox watched."""
    depth: list[int] = []
    reads: dict[str, list[Stats]] = {"healthz": [], "api_cases": []}
    auth = (("Authorization", f"Bearer {procs.API_TOKEN}"),)
    probes = {
        "healthz": [Req("GET", "/healthz")],
        "api_cases": [Req("GET", "/api/cases?status=pending_approval", auth)],
    }
    pending = OutboxMessage.status == "pending"

    def due() -> Any:
        """Rows the worker could deliver now. Not those WeCom's per-member limit (30 a
        minute) holds for a later window: one bench approver receives every card of
        the role, and that wait is WeCom's ceiling, not the outbox's."""
        return and_(pending, OutboxMessage.next_at <= datetime.now(UTC).replace(tzinfo=None))

    async def due_depth() -> int:
        return await count(run.db, OutboxMessage, due())

    async def watch(stop: asyncio.Event) -> None:
        while not stop.is_set():
            depth.append(await due_depth())
            await asyncio.sleep(0.25)

    @asynccontextmanager
    async def side_load() -> AsyncIterator[None]:
        """While the server takes the webhooks: read it, and watch its outbox."""
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        side = {
            name: asyncio.create_task(
                drive(
                    "python",
                    server.base,
                    probe,
                    connections=2,
                    seconds=run.opts.seconds,
                    rate=PROBE_RATE,
                )
            )
            for name, probe in probes.items()
        }
        try:
            yield
        finally:
            for name, task in side.items():
                reads[name].append(await task)
            stop.set()
            await watcher

    await run.ab("intake_distinct", bare, server, run.generic, side_load)
    at_end = await due_depth()
    drained = await wait_zero(due_depth, run.opts.drain_limit)
    held = await count(run.db, OutboxMessage, pending)
    # A burst (a channel's batch push, Double 11): the ack latency at many connections.
    await run.ab(burst_name(run.opts), bare, server, run.generic, connections=run.opts.burst)
    return {
        "reads": {name: merge(rounds) for name, rounds in reads.items()},
        "outbox": {
            "max_depth": max(depth, default=0),
            "depth_at_end": at_end,
            "drain_seconds": drained,
            "held_by_rate_limit": held,
        },
    }


def burst_name(opts: Options) -> str:
    return f"intake_distinct@{opts.burst}"


async def wecom_rounds(run: Run, bare: procs.Child, server: procs.Child) -> dict[str, Any]:
    sealer = traffic.WecomSealer()
    first = iter(range(1, 1 << 40, 1_000_000))
    size = int(min(40_000, max(1_000, run.opts.seconds * 2_000)))
    await run.ab(
        "wecom_text",
        bare,
        server,
        lambda: sealer.texts("xiaozhou", "/帮助", size, now(), next(first)),
    )
    backlog = await wait_zero(lambda: count(run.db, InboundEvent), run.opts.drain_limit)
    clicks = await delivered_lead_cards(run.db, run.opts.drain_limit)
    await run.ab("wecom_click", bare, server, lambda: [sealer.click(c, now()) for c in clicks])
    await wait_zero(lambda: count(run.db, InboundEvent), run.opts.drain_limit)
    ids = [c.card_id for c in clicks]
    closed = await count(run.db, CardRecord, CardRecord.id.in_(ids), CardRecord.state == "closed")
    return {
        "wecom_text": {"handled_after_seconds": backlog},
        "wecom_click": {"cards_clicked": len(clicks), "cards_closed": closed},
    }


async def delivered_lead_cards(db: Database, seconds: float) -> list[traffic.Click]:
    """The lead's open cards, once the outbox delivered any (on a busy machine the first
    may still be queued behind the intake rounds' rows when the text rounds end)."""
    deadline = time.monotonic() + seconds
    while not (clicks := await open_lead_cards(db)):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"bench: no approval card delivered within {seconds} s / 没有已送达的审批卡片"
            )
        await asyncio.sleep(0.2)
    return clicks


async def open_lead_cards(db: Database, limit: int = 20_000) -> list[traffic.Click]:
    """The 同意 buttons of the CS lead's delivered, still open approval cards."""
    async with db.read() as session:
        rows = await session.scalars(
            select(CardRecord)
            .where(CardRecord.kind == "approval", CardRecord.state == "open",
                   CardRecord.platform == "wecom", CardRecord.platform_ref != "")
            .limit(limit)
        )  # fmt: skip
        clicks = []
        for card in rows:
            task_id, _, code = card.platform_ref.partition("|")
            token = next(
                (b["token"] for b in card.card.get("buttons", ()) if b["action"] == "approve"), ""
            )
            if token and code:
                clicks.append(
                    traffic.Click(card.id, card.case_id, card.recipient, token, task_id, code)
                )
    return clicks


async def sla_tick(opts: Options, tmp: Path) -> list[dict[str, Any]]:
    """One timer tick (50 due) with N open timers, median of three."""
    out = []
    for size in opts.timer_sizes:
        async with temp_database(opts.db, tmp, f"timers{size}") as url:
            db = Database(url)
            await upgrade(db)
            at = datetime.now(UTC)
            await seed.seed_timers(db, size, 50, at)
            costs = []
            for _ in range(3):
                start = time.perf_counter()
                fired = await timers.claim_due(db, at, 50, _no_hook)
                costs.append((time.perf_counter() - start) * 1000)
                ids = [t.id for t in fired]
                async with db.transaction() as session:
                    await session.execute(
                        update(Timer).where(Timer.id.in_(ids)).values(status="pending")
                    )
            await db.dispose()
        out.append({"timers": size, "due": len(fired), "ms": round(statistics.median(costs), 2)})
    return out


async def _no_hook(_session: Any, _timer: Any) -> None:
    return None


async def scale(
    run: Run, server: procs.Child, restart: Callable[[], Awaitable[procs.Child]]
) -> tuple[procs.Child, list[dict[str, Any]]]:
    """Intake rate, RSS, /api/cases and the dashboard at each stored-case count
    (seeded in bulk); the dashboard is read by one client at a time, so its
    latency is a page's render time."""
    rows: list[dict[str, Any]] = []
    stored = run.opts.sizes[0]
    auth = (("Authorization", f"Bearer {procs.API_TOKEN}"),)
    api = [Req("GET", "/api/cases?status=pending_approval", auth)]
    board = [Req("GET", "/dashboard?period=30d", auth)]
    for size in run.opts.sizes:
        run.progress.step(f"scale: seeding {size} cases")
        if size > stored:
            await seed.seed_cases(run.db, stored, size)
            stored = size
        server.stop()
        server = await restart()
        run.progress.step(f"scale: intake and reads at {size} cases")
        intake = await run.measure(server, run.generic())
        reads = await run.drive(server.base, api)
        dashboard = await run.drive(server.base, board, connections=1)
        rows.append(
            {"cases": size, "intake": intake.as_dict() | {"cpu_ms_per_request": cpu_ms([intake])},
             "api": reads.as_dict(), "dashboard": dashboard.as_dict(),
             "rss_mib": round(server.rss_mib(), 1)}
        )  # fmt: skip
    first = rows[0]
    for row in rows:
        row["intake_vs_first"] = round(row["intake"]["rate"] / first["intake"]["rate"], 3)
        row["rss_vs_first"] = (
            round(row["rss_mib"] / first["rss_mib"], 3) if first["rss_mib"] else 0
        )
    return server, rows
