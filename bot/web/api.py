"""The read API for integrations: `GET /api/cases` and `GET /api/cases/{id}` (Bearer).

The list is newest first with keyset pagination: the opaque cursor holds the last
row's `(created_at, id)`, so a page never repeats or skips a case however many
arrive meanwhile (an OFFSET would shift under inserts). The cursor is signed with
a key derived from the server keyring (shared by replicas, like card tokens; a
retired secret still verifies during its grace), so a hand-edited cursor is
refused instead of silently paging from somewhere else. `since` keeps cases
*changed* at or after that time (`updated_at`), which is how an OMS without a
`callback_url` polls for outcomes: remember the newest `updated_at` seen, ask
again with `since=` that. Bad parameters answer 400 with a JSON error naming them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot.appkeys import CTX
from bot.web import case_json, evidence_files
from bot.web.auth import require_api
from handlers.workflow import Status
from storage.models import AuditEvent, Case, Evidence
from storage.sql_hints import selective, unindexed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_CHANNEL = re.compile(r"[a-z0-9_]{1,20}")
_SPACED_OFFSET = re.compile(r" (\d\d:?\d\d)$")  # "+08:00" arrives as " 08:00" when unescaped
STATUSES = frozenset(s.value for s in Status)
_CURSOR_LABEL = b"returnhub api cursor v1"


def setup(app: web.Application) -> None:
    app.router.add_get("/api/cases", list_cases)
    app.router.add_get("/api/cases/{id}", get_case)
    evidence_files.setup(app)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=_dumps)


class BadQuery(ValueError):
    """A query parameter the API cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class Filters:
    statuses: frozenset[str]
    channel: str | None
    since: datetime | None  # naive UTC, like the stored times
    limit: int
    after: tuple[datetime, str] | None  # the cursor: last row of the previous page


def cursor_key(server_secret: str) -> bytes:
    """The key that signs cursors, derived so it is never the card-token key itself."""
    return hmac.new(server_secret.encode(), _CURSOR_LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:16])


def encode_cursor(key: bytes, case: Case) -> str:
    """`<position>.<mac>`: opaque to clients, and a hand-edited one is refused."""
    payload = _b64(_dumps([case.created_at.isoformat(), case.id]).encode())
    return f"{payload}.{_mac(key, payload)}"


def decode_cursor(keys: Sequence[bytes], cursor: str) -> tuple[datetime, str]:
    bad = BadQuery("cursor is not valid; use next_cursor from the previous page")
    payload, _, mac = cursor.partition(".")
    if not (cursor.isascii() and any(hmac.compare_digest(mac, _mac(k, payload)) for k in keys)):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        created, case_id = json.loads(raw)
        if not isinstance(created, str) or not isinstance(case_id, str):
            raise ValueError(cursor)
        moment = datetime.fromisoformat(created)
    except (binascii.Error, ValueError, TypeError):
        raise bad from None
    return moment.replace(tzinfo=None), case_id


def _since(value: str) -> datetime:
    value = _SPACED_OFFSET.sub(r"+\1", value.strip())
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadQuery("since must be an ISO 8601 time with offset") from None
    if moment.tzinfo is None:
        raise BadQuery("since must carry a UTC offset, e.g. 2026-11-21T10:00:00+08:00")
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # 0001-01-01T00:00+08:00 has no UTC date
        raise BadQuery("since is out of range") from None


def parse_filters(query: MultiMapping[str], keys: Sequence[bytes]) -> Filters:
    statuses = frozenset(s.strip() for s in query.get("status", "").split(",") if s.strip())
    if unknown := sorted(statuses - STATUSES):
        raise BadQuery(f"status {unknown[0]!r} is unknown; one of {', '.join(sorted(STATUSES))}")
    channel = query.get("channel", "").strip() or None
    if channel is not None and not _CHANNEL.fullmatch(channel):
        raise BadQuery("channel must be a channel name such as generic or taobao")
    raw_limit = query.get("limit", "").strip() or str(DEFAULT_LIMIT)
    # At most 6 digits before int(): Python refuses to read more than 4300 (ValueError).
    digits = raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 6
    if not digits or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise BadQuery(f"limit must be an integer from 1 to {MAX_LIMIT}")
    since = query.get("since", "").strip()
    cursor = query.get("cursor", "").strip()
    return Filters(
        statuses=statuses,
        channel=channel,
        since=_since(since) if since else None,
        limit=int(raw_limit),
        after=decode_cursor(keys, cursor) if cursor else None,
    )


def page_statements(f: Filters) -> list[Select[Case]]:
    """The statements one page runs: one per asked status, else one, each newest first.

    Each is served in `(created_at, id)` order by an index that leads with its
    equality (`ix_case_status_created`, `ix_case_channel_created`, `ix_case_created`)
    and stops after `limit + 1` rows: no sort, no count, whatever the table's size.
    Several statuses run one statement each, merged by `fetch_page`: an `IN` over an
    index whose order follows the status would need a sort of every matching row.
    `since` finds its rows through `ix_case_updated` and sorts only those, the cases
    changed since the poll's cursor: on SQLite, which keeps no value statistics, the
    condition is marked selective and status and channel only filter; PostgreSQL
    chooses on its statistics.
    """
    base = select(Case).order_by(Case.created_at.desc(), Case.id.desc()).limit(f.limit + 1)
    channel, status = Case.channel.expression, Case.status.expression
    if f.since:
        base = base.where(selective(Case.updated_at >= f.since))
        channel, status = unindexed(channel), unindexed(status)
    if f.channel:
        base = base.where(channel == f.channel)
    if f.after:
        base = base.where(tuple_(Case.created_at, Case.id) < tuple_(*f.after))
    if not f.statuses:
        return [base]
    return [base.where(status == value) for value in sorted(f.statuses)]


async def fetch_page(session: AsyncSession, f: Filters) -> tuple[list[Case], bool]:
    """The page's cases, newest first, and whether another page follows."""
    rows: list[Case] = []
    for stmt in page_statements(f):
        rows += await session.scalars(stmt)
    # One snapshot, so no case is under two statuses; ids are ASCII of one shape, so
    # Python orders ties as the database's index does.
    rows.sort(key=lambda case: (case.created_at, case.id), reverse=True)
    return rows[: f.limit], len(rows) > f.limit


async def list_cases(request: web.Request) -> web.Response:
    """`?status=&channel=&since=&limit=&cursor=` -> `{"cases": [...], "next_cursor": ...}`."""
    require_api(request)
    ctx = request.app[CTX]
    keys = [cursor_key(secret) for secret in ctx.keyring.verifying(ctx.now())]
    try:
        filters = parse_filters(request.query, keys)
    except BadQuery as exc:
        return _error(400, str(exc))
    async with ctx.db.read() as session:
        page, more = await fetch_page(session, filters)
    return web.json_response(
        {
            "cases": [case_json.summary(ctx, case) for case in page],
            "next_cursor": encode_cursor(keys[0], page[-1]) if more else None,
        },
        dumps=_dumps,
    )


async def get_case(request: web.Request) -> web.Response:
    """The case with items, steps, evidence and its audit trail; 404 if unknown."""
    require_api(request)
    ctx = request.app[CTX]
    case_id = request.match_info["id"]
    async with ctx.db.read() as session:
        found = await load_case(session, case_id)
        if found is None:
            return _error(404, f"case {case_id[:40]!r} not found")
        body = case_json.detail(ctx, *found)
    return web.json_response(body, dumps=_dumps)


async def load_case(
    session: AsyncSession, case_id: str
) -> tuple[Case, list[Evidence], list[AuditEvent]] | None:
    """The case with its items and steps loaded, its evidence and its audit trail (each
    in order through its `(case_id, at, id)` index), or None."""
    query = (
        select(Case)
        .where(Case.id == case_id)
        .options(selectinload(Case.items), selectinload(Case.steps))
    )
    case = (await session.scalars(query)).first()
    if case is None:
        return None
    evidence = await session.scalars(
        select(Evidence).where(Evidence.case_id == case.id).order_by(Evidence.at, Evidence.id)
    )
    events = await session.scalars(
        select(AuditEvent)
        .where(AuditEvent.case_id == case.id)
        .order_by(AuditEvent.at, AuditEvent.id)
    )
    return case, list(evidence), list(events)
