"""Every query the read API, the customer history, the console poll, the metrics and the
claims run is served by an index: EXPLAIN on both engines, against a seeded database,
fails on a full scan of a large table or on a sort for ORDER BY.

The statements are not copies: each real function runs once under a recorder
(`before_cursor_execute` on both of the database's engines), and every SELECT, UPDATE
and DELETE it sent is explained with the parameters it was sent with. So the test
follows the code when a query changes shape.

SQLite is explained with no ANALYZE, as production runs it (nothing there runs
ANALYZE). Its plans then do not depend on the table's size, so a few thousand rows
show what 100k get; and since it knows nothing of how rare a value is, a walk of a
whole index that filters as it goes (`SCAN t USING INDEX` with a WHERE) fails too.

PostgreSQL's planner rightly prefers a sequential scan, or reading every match and
sorting it, on a table of a few thousand rows: what it picks there is not what it picks
at 100k. So its seeded tables are ANALYZEd (real statistics choose between indexes) and
each statement is explained with `enable_seqscan`, `enable_sort` and
`enable_incremental_sort` off: the question is "can an index serve this query, in
order?" A query no index serves still shows its Seq Scan, and an order no index gives
still shows its Sort.

The one sort allowed is the one `since=` asks for: the cases changed since the poll's
cursor are found through `ix_case_updated`, then ordered by creation (a range on one
column cannot come out in another's order), which sorts only the changed rows. There
PostgreSQL keeps its sorts enabled and chooses on its statistics.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import pytest_asyncio
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.delivery import STRICT, chat_limits
from bot.metrics import Metrics
from bot.settings import OutboxSettings, Settings, config_dir, load
from bot.web.api import Filters, fetch_page, load_case
from bot.web.console_poll import poll_rows
from bot.web.evidence_files import stored_type
from bot.web.export import Query
from bot.web.export import statement as export_statement
from handlers import abuse, approvals, deduction, parcels, release, scan, sla, waybills
from handlers.context import Ctx
from storage import channel_state, inbound, intake_rows, outbox, timers
from storage.db import Database
from storage.history import customer_history, histories
from storage.models import (
    ApprovalStep,
    AuditEvent,
    Case,
    CaseItem,
    ConsoleMessage,
    Customer,
    CustomerOrder,
    Evidence,
    InboundEvent,
    Inspection,
    OutboxMessage,
    Resolution,
    Timer,
    UnexpectedParcel,
)
from storage.orders import OrderRow, remove, upsert
from tests.conftest import ENGINES, fresh_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

CASES = 3000
BUYERS = 600
T0 = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)  # naive UTC, as stored
NOW = T0 + timedelta(hours=2 * CASES + 1)  # a case every two hours, then now
OPEN = 240  # the newest cases are still open; the year before them is done
# Tables that stay a handful of rows (configuration): a scan of them is the right plan.
SMALL = frozenset({"members", "member_roles", "sequences", "server_secrets", "alembic_version"})
DONE = ("refunded",) * 6 + ("closed", "rejected")
OPEN_STATUSES = ("pending_approval", "approved", "awaiting_return", "requested")


def _cases() -> Iterator[dict[str, Any]]:
    for n in range(CASES):
        at = T0 + timedelta(hours=2 * n)
        status = OPEN_STATUSES[n % 4] if n >= CASES - OPEN else DONE[n % len(DONE)]
        yield {
            "id": f"RC-{n:06d}", "channel": "taobao" if n % 10 == 0 else "generic",
            "shop": "s", "external_id": f"E{n}", "order_id": f"O{n}", "kind": "refund_only",
            "amount_fen": 1000 + n, "buyer_ref": f"buyer-{n % BUYERS}", "status": status,
            "created_at": at, "updated_at": min(at + timedelta(days=n % 15), NOW),
            "version": 1, "attachments": [],
        }  # fmt: skip


def _children() -> dict[type, list[dict[str, Any]]]:
    rows: dict[type, list[dict[str, Any]]] = {k: [] for k in (CaseItem, ApprovalStep, AuditEvent)}
    rows[Evidence] = []
    for n in range(CASES):
        case_id, at = f"RC-{n:06d}", T0 + timedelta(hours=2 * n)
        rows[CaseItem].append(
            {"case_id": case_id, "sku": "S", "name": "n", "qty": 1, "unit_price_fen": 1000}
        )
        rows[ApprovalStep].append({"case_id": case_id, "seq": 1, "role": "cs_lead"})
        for k in range(2):
            rows[AuditEvent].append(
                {"case_id": case_id, "at": at + timedelta(seconds=k), "actor": "system",
                 "action": "created", "detail": ""}
            )  # fmt: skip
        if n % 3 == 0:
            rows[Evidence].append(
                {"case_id": case_id, "kind": "note", "ref": "r", "added_by": "x", "at": at,
                 "sha256": None, "content_type": "", "size": 0}
            )  # fmt: skip
            rows[Evidence].append(
                {"case_id": case_id, "kind": "photo", "ref": "p", "added_by": "x", "at": at,
                 "sha256": f"{n:064x}", "content_type": "image/jpeg", "size": 1}
            )  # fmt: skip
    return rows


def _customers() -> dict[type, list[dict[str, Any]]]:
    customers = [
        {"id": b + 1, "channel": "generic", "buyer_ref": f"buyer-{b}"} for b in range(BUYERS)
    ]
    orders = [
        {"customer_id": b + 1, "order_id": f"O{b}-{k}", "amount_fen": 5000,
         "ordered_at": NOW - timedelta(days=30 * k + 1)}
        for b in range(BUYERS) for k in range(3)
    ]  # fmt: skip
    return {Customer: customers, CustomerOrder: orders}


def _queues() -> dict[type, list[dict[str, Any]]]:
    """Mostly history (fired timers, sent rows, dead events), a few due: as they pile up."""
    timer_rows = [
        {"case_id": f"RC-{n % CASES:06d}", "kind": "remind",
         "status": ("fired", "fired", "cancelled", "pending")[n % 4],
         "due_at": NOW + timedelta(minutes=n - 100), "payload": {}}
        for n in range(3000)
    ]  # fmt: skip
    destinations = ("wecom:u1", "wecom:u2", "wecom:robot:ops", "channel:generic")
    outbox_rows = []
    for n in range(3000):
        status = "pending" if n % 20 == 0 else ("dead" if n % 97 == 0 else "sent")
        outbox_rows.append(
            {"kind": "card.send", "destination": destinations[n % 4],
             "case_id": f"RC-{n % CASES:06d}", "payload": {}, "status": status,
             "attempts": 1, "next_at": NOW + timedelta(minutes=(n % 3) - 1),
             "created_at": NOW - timedelta(minutes=3000 - n),
             "sent_at": NOW - timedelta(minutes=3000 - n) if status == "sent" else None}
        )  # fmt: skip
    inbound_rows = [
        {"key": f"k{n:05d}", "kind": "generic", "payload": {},
         "status": "dead" if n % 3 else "pending",
         "next_at": NOW + timedelta(seconds=n - 500),
         "received_at": NOW + timedelta(seconds=n - 600)}
        for n in range(1500)
    ]  # fmt: skip
    console_rows = [
        {"user_id": f"user{n % 20}", "direction": "out", "body": {"type": "text", "text": "t"},
         "created_at": NOW - timedelta(minutes=3000 - n),
         "updated_at": NOW - timedelta(minutes=3000 - n)}
        for n in range(3000)
    ]  # fmt: skip
    parcel_rows = [
        {"code": f"P{n:08d}", "scanned": f"P{n:08d}", "note": "", "recorded_by": "小周",
         "at": NOW - timedelta(minutes=3000 - n),
         "case_id": f"RC-{n:06d}" if n % 10 else ""}
        for n in range(3000)
    ]  # fmt: skip
    return {
        Timer: timer_rows,
        OutboxMessage: outbox_rows,
        InboundEvent: inbound_rows,
        ConsoleMessage: console_rows,
        UnexpectedParcel: parcel_rows,
    }


def _inspections() -> dict[type, list[dict[str, Any]]]:
    """An inspection per case (a third of them anomalies) and a resolution per tenth."""
    outcomes = ("ok", "missing_parts", "ok", "damaged", "ok", "empty")
    found = [
        {"case_id": f"RC-{n:06d}", "channel": "generic", "buyer_ref": f"buyer-{n % BUYERS}",
         "outcome": outcomes[n % len(outcomes)], "detail": "", "inspector": "w",
         "at": T0 + timedelta(hours=2 * n + 1)}
        for n in range(CASES)
    ]  # fmt: skip
    resolutions = [
        {"case_id": f"RC-{n:06d}", "deduction_fen": 3500, "part": "滤网", "reason": "r",
         "state": "confirmed" if n % 20 else "proposed", "proposed_by": "r",
         "proposed_at": T0 + timedelta(hours=2 * n + 1), "decided_by": ""}
        for n in range(0, CASES, 10)
    ]  # fmt: skip
    return {Inspection: found, Resolution: resolutions}


async def _seed(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(insert(Case), list(_cases()))
        for group in (_children(), _customers(), _queues(), _inspections()):
            for model, rows in group.items():
                await conn.execute(insert(model), rows)
        if not db.is_sqlite:
            await conn.exec_driver_sql("ANALYZE")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=ENGINES)
async def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    db = await fresh_database(request.param, Path(tmp_path_factory.mktemp("plans")))
    await _seed(db)
    yield db
    await db.dispose()


@contextmanager
def recorded(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) sent through either of `db`'s engines."""
    seen: list[tuple[str, Any]] = []

    def before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("SELECT", "UPDATE", "DELETE"):
            seen.append((statement, params[0] if many else params))

    engines = {db.engine.sync_engine, db.read_engine.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)


def _sqlite_problems(sql: str, details: list[str], sorted_after: str | None) -> list[str]:
    """SQLite keeps no statistics on values, so a walk of a whole index that filters as it
    goes (`SCAN t USING INDEX` with a WHERE) reads the table when the filter is rare."""
    problems = []
    for detail in details:
        scan = re.fullmatch(r"SCAN (\w+)( USING (COVERING )?INDEX \w+)?", detail)
        if scan and re.sub(r"_\d+$", "", scan.group(1)) not in SMALL:
            if not scan.group(2):
                problems.append(f"full scan: {detail}")
            elif re.search(r"\bWHERE\b", sql):
                problems.append(f"whole index walked through a filter: {detail}")
        if "TEMP B-TREE" in detail and not (
            sorted_after and any(f"INDEX {sorted_after} " in d for d in details)
        ):
            problems.append(f"sort: {detail}")
    if sorted_after and not any(f"INDEX {sorted_after} " in d for d in details):
        problems.append(f"not found through {sorted_after}")  # the range the sort is for
    return problems


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _outline(node: dict[str, Any]) -> str:
    """`Limit > Index Scan Backward ix_case_created on cases`, children in brackets."""
    name = node["Node Type"]
    if node.get("Scan Direction") == "Backward":
        name += " Backward"
    name += "".join(f" {node[k]}" for k in ("Index Name", "Relation Name") if k in node)
    if "Sort Key" in node:
        name += f" ({', '.join(node['Sort Key'])})"
    children = [
        ("subplan: " if child.get("Parent Relationship") in ("SubPlan", "InitPlan") else "")
        + _outline(child)
        for child in node.get("Plans", [])
    ]
    if not children:
        return name
    return f"{name} > {children[0]}" if len(children) == 1 else f"{name} > [{'; '.join(children)}]"


def _pg_problems(plan: dict[str, Any], sorted_after: str | None) -> list[str]:
    problems = []
    for node in _nodes(plan):
        kind = node["Node Type"]
        if kind == "Seq Scan" and node["Relation Name"] not in SMALL:
            problems.append(f"full scan: Seq Scan on {node['Relation Name']}")
        if kind in ("Sort", "Incremental Sort") and not (
            sorted_after and any(n.get("Index Name") == sorted_after for n in _nodes(node))
        ):
            problems.append(f"sort: {kind} by {', '.join(node.get('Sort Key', []))}")
    return problems


async def problems(
    db: Database, statements: list[tuple[str, Any]], sorted_after: str | None = None
) -> list[str]:
    """For each statement that scans a large table or sorts, the statement and why."""
    assert statements, "the function under test ran no query"
    found = []
    async with db.engine.begin() as conn:
        if not db.is_sqlite:
            off = ["enable_seqscan"]
            if sorted_after is None:  # else the planner may choose that sort, on the stats
                off += ["enable_sort", "enable_incremental_sort"]
            for setting in off:
                await conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        for sql, params in statements:
            if db.is_sqlite:
                rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
                details = [str(row[3]) for row in rows]
                why, shown = _sqlite_problems(sql, details, sorted_after), "; ".join(details)
            else:
                raw = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params)).scalar()
                plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
                why, shown = _pg_problems(plan, sorted_after), _outline(plan)
            found += [f"{w}\n  in: {sql}\n  plan: {shown}" for w in why]
    return found


async def assert_indexed(
    db: Database, run: Callable[[], Awaitable[object]], sorted_after: str | None = None
) -> None:
    """Run `run` once, then explain every statement it sent; fail naming each offender."""
    with recorded(db) as statements:
        await run()
    found = await problems(db, statements, sorted_after)
    assert not found, "\n\n".join(found)


def _list_id(statuses: tuple[str, ...], channel: str | None, since: bool, cursor: bool) -> str:
    return "-".join(
        ("+".join(statuses) or "all", channel or "any", "since" if since else "ever",
         "cursor" if cursor else "top")
    )  # fmt: skip


LIST_FILTERS = [
    pytest.param(statuses, channel, since, cursor, id=_list_id(statuses, channel, since, cursor))
    for statuses in ((), ("pending_approval",), ("pending_approval", "approved"))
    for channel in (None, "taobao")
    for since in (False, True)
    for cursor in (False, True)
]


@pytest.mark.parametrize(("statuses", "channel", "since", "cursor"), LIST_FILTERS)
async def test_the_case_list_uses_an_index_for_every_filter(
    seeded: Database, statuses: tuple[str, ...], channel: str | None, since: bool, cursor: bool
) -> None:
    filters = Filters(
        statuses=frozenset(statuses),
        channel=channel,
        since=NOW - timedelta(days=3) if since else None,
        limit=50,
        after=(T0 + timedelta(hours=2 * (CASES - 100)), f"RC-{CASES - 100:06d}")
        if cursor
        else None,
    )
    page: list[Case] = []

    async def run() -> None:
        async with seeded.read() as session:
            page[:], _ = await fetch_page(session, filters)

    await assert_indexed(seeded, run, sorted_after="ix_case_updated" if since else None)
    assert page  # the seed has rows for every combination: the plans ran on real work


async def test_the_case_detail_uses_indexes(seeded: Database) -> None:
    async def run() -> None:
        async with seeded.read() as session:
            assert await load_case(session, "RC-000300") is not None

    await assert_indexed(seeded, run)


async def test_the_customer_history_uses_indexes(seeded: Database) -> None:
    """One buyer, and a batch's buyers in the grouped queries intake runs."""
    buyers = [("generic", f"buyer-{b}") for b in (7, 8, 9, 11)]

    async def run() -> None:
        async with seeded.read() as session:
            found = await customer_history(session, "generic", "buyer-7", NOW, "RC-000007")
            many = await histories(session, buyers, NOW, exclude=("RC-000008",))
        assert found.returns > 0 and found.orders > 0
        assert all(h.returns > 0 for h in many.values()) and set(many) == set(buyers)

    await assert_indexed(seeded, run)


async def test_the_order_import_uses_indexes(seeded: Database) -> None:
    """The lookups and the delete of `import-orders` and the order events (storage/orders.py)."""
    mine = [OrderRow("generic", "buyer-500", f"SO-imp-{n}", 100, NOW) for n in range(3)]
    theirs = [OrderRow("generic", f"buyer-{b}", f"SO-x-{b}", 100, NOW) for b in (7, 8)]

    async def run() -> None:
        async with seeded.read() as session:
            assert (await upsert(session, seeded, theirs, dry_run=True)).new == 2
        async with seeded.transaction() as session:
            assert (await upsert(session, seeded, mine)).new == 3
            gone = [(("generic", "buyer-500"), o.order_id) for o in mine]
            assert await remove(session, seeded, gone) == 3

    await assert_indexed(seeded, run)


async def test_the_export_walks_the_creation_index(seeded: Database) -> None:
    """The finance export (bot/web/export.py), oldest first over a period, by channel too."""
    start, end = T0 + timedelta(days=100), T0 + timedelta(days=130)
    queries = [
        Query(start, end, None, None, frozenset(), xlsx=False),
        Query(start, end, "generic", "s", frozenset({"refunded", "closed"}), xlsx=False),
    ]

    async def run() -> None:
        async with seeded.read() as session:
            for q in queries:
                assert [row async for row in await session.stream(export_statement(q))]

    await assert_indexed(seeded, run)


async def test_the_console_poll_uses_indexes(seeded: Database) -> None:
    async def run() -> None:
        async with seeded.read() as session:
            first, _ = await poll_rows(session, "user3", 0, None)
            await poll_rows(session, "user3", first[-10].id, NOW - timedelta(minutes=30))

    await assert_indexed(seeded, run)


async def test_the_metrics_read_indexes_only(seeded: Database) -> None:
    await assert_indexed(seeded, lambda: Metrics().refresh(seeded))


async def test_the_timer_claim_uses_an_index(seeded: Database) -> None:
    async def hook(session: AsyncSession, timer: Timer) -> None:
        return None

    await assert_indexed(seeded, lambda: timers.claim_due(seeded, NOW, 3, hook))


async def test_the_outbox_claim_and_rate_limits_use_indexes(seeded: Database) -> None:
    exclusive = tuple(chat_limits(OutboxSettings()))

    async def run() -> None:
        rows = await outbox.claim_due(seeded, NOW, 20, 60, strict=STRICT, exclusive=exclusive)
        assert rows
        async with seeded.read() as session:
            await outbox.sends_log(session, "wecom:u1", NOW - timedelta(hours=1))
            await outbox.held_behind(session, rows[0])
        async with seeded.transaction() as session:
            hold = outbox.Hold("wecom:u1", ("card.send", "text.send"), NOW + timedelta(minutes=1))
            await outbox.hold(session, [hold], NOW)

    await assert_indexed(seeded, run)


async def test_the_inbound_claim_uses_an_index(seeded: Database) -> None:
    async def run() -> None:
        assert await inbound.claim_due(seeded, NOW, 20, timedelta(minutes=1))

    await assert_indexed(seeded, run)


async def test_the_channel_state_reads_by_its_key(seeded: Database) -> None:
    async def run() -> None:
        await channel_state.put(seeded, "cursor:douyin:95250", {"until": 1}, NOW)
        assert await channel_state.get(seeded, "cursor:douyin:95250") == {"until": 1}

    await assert_indexed(seeded, run)


async def test_the_warehouse_story_reads_use_indexes(seeded: Database) -> None:
    """The abuse count over a buyer's inspections, the open deduction of a case, its
    latest inspection, and whether a released case was inspected."""
    ctx = cast(Ctx, SimpleNamespace(settings=Settings()))

    async def run() -> None:
        async with seeded.read() as session:
            case = await session.get(Case, "RC-002401")
            assert case is not None
            customer = await abuse.customer_of(session, case)
            found = await abuse.incidents(session, ctx, case, customer, NOW)
            assert customer is not None and found
            await deduction.open_resolution(session, case)
            assert await deduction.latest_inspection(session, case) is not None
            with session.no_autoflush:  # a read session: the case looks released, unsaved
                case.status, case.kind, case.received_at = "refunded", "return_refund", NOW
                assert not await release.released_before_inspection(session, case)

    await assert_indexed(seeded, run)


def _small_sorts_only(found: list[str]) -> list[str]:
    """A GROUP BY over an index range sorts or hashes the groups it found (a handful of
    reason codes, scenarios or statuses), and a lookup by case id, order number or
    waybill sorts the few cases those equalities matched: those sorts are allowed,
    a scan or any other sort is not."""

    def allowed(problem: str) -> bool:
        sql = problem.split("\n  in: ", 1)[1].split("\n  plan: ", 1)[0]
        small = "GROUP BY" in sql or re.search(r"cases\.id (=|IN) \S+ OR cases\.order_id", sql)
        return problem.startswith("sort:") and small

    return [f for f in found if not allowed(f)]


async def test_the_kpis_and_dispute_lookups_use_indexes(seeded: Database) -> None:
    from bot.settings import Settings
    from handlers import disputes, reports
    from handlers.command_cases import find_cases
    from handlers.context import Ctx
    from storage.models import DisputeEvent

    async with seeded.engine.begin() as conn:
        await conn.execute(
            insert(DisputeEvent),
            [
                {"case_id": f"RC-{n:06d}", "kind": ("script", "outcome")[n % 2],
                 "scenario": "缺配件", "outcome": "agreed" if n % 2 else "", "text": "t",
                 "actor": "system", "at": T0 + timedelta(hours=2 * n)}
                for n in range(0, CASES, 3)
            ],
        )  # fmt: skip
        if not seeded.is_sqlite:
            await conn.exec_driver_sql("ANALYZE dispute_events")
    week = reports.Period("week", NOW - timedelta(days=7), NOW)

    async def run() -> None:
        async with seeded.read() as session:
            for filters in (reports.Filters(), reports.Filters(channel="taobao")):
                k = await reports.kpis(session, week, NOW, filters)
                assert k.new > 0
            case = (await find_cases(session, "RC-000300"))[0]
            await find_cases(session, "O300")
            await disputes.dispute_lines(session, Ctx(db=seeded, settings=Settings()), case)
            await disputes.due_at(session, case)

    with recorded(seeded) as statements:
        await run()
    found = _small_sorts_only(await problems(seeded, statements))
    assert not found, "\n\n".join(found)


async def test_the_scan_lookups_use_indexes(seeded: Database) -> None:
    """A scan's candidates, the unexpected parcels (found, listed, matched at intake) and
    the evidence file route's lookup."""
    ctx = Ctx(db=seeded, settings=Settings(), clock=lambda: NOW.replace(tzinfo=UTC))

    async def run() -> None:
        async with seeded.read() as session:
            assert [c.id for c in await scan.matches(session, waybills.codes("rc-000300"))]
            assert await parcels.recorded(session, "p00000010") is not None
            assert "P00002990" in await parcels.listing(session, ctx)
            assert await stored_type(session, f"{300:064x}", "RC-000300") == "image/jpeg"
            assert await stored_type(session, f"{300:064x}", None) == "image/jpeg"
        async with seeded.read() as session:  # read-only: nothing here is waiting
            await parcels.match_arrivals(session, ctx, [("RC-000001", "in_transit", "X1", "O1")])

    await assert_indexed(seeded, run)


async def test_the_intake_batch_lookups_use_indexes(seeded: Database) -> None:
    """What storage/intake_rows.py reads and deletes per batch, whatever the table size."""

    async def run() -> None:
        async with seeded.transaction() as session:
            found = await intake_rows.case_states(
                session, [("generic", "s", "E1"), ("taobao", "s", "E10"), ("generic", "s", "X")]
            )
            assert set(found) == {("generic", "s", "E1"), ("taobao", "s", "E10")}
            await intake_rows.known_keys(session, ["generic:E1:1", "generic:E2:1"])
            await intake_rows.customer_flags(session, {("generic", "buyer-1"): "n"})
            await intake_rows.inbound_done(session, ["generic:E1:1"])

    await assert_indexed(seeded, run)


async def test_the_dashboard_figures_use_indexes(seeded: Database) -> None:
    """The dashboard's figures (handlers/dashboard_figures.py) beyond /统计's KPIs."""
    from handlers import dashboard_figures as figures
    from handlers import reports

    month = reports.Period("month", NOW - timedelta(days=30), NOW)

    async def run() -> None:
        async with seeded.read() as session:
            for filters in (reports.Filters(), reports.Filters(channel="taobao")):
                await figures.tiles(session, month, filters)
                await figures.reasons(session, month, filters)
                await figures.reasons_by_sku(session, month, filters)
                await figures.stage_times(session, month, filters)
                await figures.breaches_by_assignee(session, month, NOW, filters)
                await figures.trend(session, NOW, 8, filters)
            await figures.flagged_buyers(session)

    with recorded(seeded) as statements:
        await run()
    found = _small_sorts_only(await problems(seeded, statements))
    assert not found, "\n\n".join(found)


async def test_the_sla_settle_uses_indexes(seeded: Database) -> None:
    settings = load(config_dir() / "returnhub.example.toml", env={})
    ctx = Ctx(db=seeded, settings=settings, clock=lambda: NOW.replace(tzinfo=UTC))

    async def run() -> None:
        async with seeded.transaction() as session:
            session.info[sla.TOUCHED] = {f"RC-{CASES - 1:06d}", f"RC-{CASES - 2:06d}"}
            await sla.settle(session, ctx)

    await assert_indexed(seeded, run)


async def test_the_start_up_resend_uses_indexes(seeded: Database) -> None:
    """Pending steps no card reached: once quadratic (every step, every card), which held
    a restart after a busy day for minutes before it served /healthz."""
    settings = load(config_dir() / "returnhub.example.toml", env={})
    ctx = Ctx(db=seeded, settings=settings, clock=lambda: NOW.replace(tzinfo=UTC))

    async def run() -> None:
        async with seeded.transaction() as session:
            await approvals.resend_unseen(session, ctx)

    await assert_indexed(seeded, run)


async def test_the_outbox_claim_seeks_a_destination_s_lease(seeded: Database) -> None:
    """Whether a rate-limited destination has a row in flight is a seek on the lease,
    not a walk, for each row claimed, through every row its limit holds for a later
    window (thousands of one member's under load: 20-80 ms a claim, on SQLite on the
    event loop). PostgreSQL may instead hash the leased rows once a claim."""
    exclusive = tuple(chat_limits(OutboxSettings()))
    with recorded(seeded) as statements:
        await outbox.claim_due(seeded, NOW, 20, 60, strict=STRICT, exclusive=exclusive)
    sql, params = next(s for s in statements if s[0].lstrip().startswith("SELECT outbox.id"))
    async with seeded.engine.begin() as conn:
        if seeded.is_sqlite:
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = "; ".join(str(row[3]) for row in rows)
            assert "ix_outbox_flight (destination=? AND status=? AND locked_until>?)" in plan, plan
            return
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        raw = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params)).scalar()
    tree = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    seek = [n for n in _nodes(tree) if n.get("Index Name") == "ix_outbox_flight"]
    hashed = [n for n in _nodes(tree) if "hashed SubPlan" in n.get("Filter", "")]
    assert seek or hashed, _outline(tree)
