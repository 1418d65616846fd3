"""Shared test helpers: settings from a real TOML file, generic-channel signing, the
CONTRACT example body, row counts for "the database is unchanged", a hand clock, a
count of the loop's turns.

Signing here is written out from CONTRACT.md on purpose, not imported from
bot/channels/generic.py: a test that reuses the code under test cannot catch it
drifting from the contract.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.settings import Settings, load
from storage.db import Database
from storage.models import Base, ConsoleMessage

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

GENERIC_SECRET = "test-secret"
SERVER_SECRET = "test-server-secret-0123456789abcdef"
# Monday 2026-11-23 10:00 in Shanghai: a working day, inside working hours.
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)

# name, roles, wecom userid, dingtalk staff id
MEMBERS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("小美", ("cs_agent",), "xiaomei", "staff2003"),
    ("王组长", ("cs_lead",), "wangzuzhang", "manager1001"),
    ("刘组长", ("cs_lead",), "liuzuzhang", "manager1004"),
    ("李总监", ("ops_director",), "lizongjian", "manager1002"),
    ("赵财务", ("finance_director",), "zhaocaiwu", "manager1003"),
    ("小周", ("warehouse",), "xiaozhou", "staff2001"),
    ("陈风控", ("risk",), "chenfengkong", "staff2002"),
    ("管理员", ("admin",), "admin", "manager0001"),
)

# make_settings keyword -> (TOML table, key)
OVERRIDES: dict[str, tuple[str, str]] = {
    "callback_url": ("channels.generic", "callback_url"),
    "generic_secret": ("channels.generic", "secret"),
    "replay_window_seconds": ("channels.generic", "replay_window_seconds"),
    "shop": ("channels.generic", "shop"),
    "api_token": ("api", "token"),
    "demo": ("server", "demo"),
    "max_body_bytes": ("server", "max_body_bytes"),
    "timezone": ("server", "timezone"),
    "server_secret": ("server", "secret"),
    "console": ("console", "enabled"),
}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def make_settings(tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    """Write a small returnhub.toml into `tmp_path` and load it (packaged routing/SLA).

    Console on, every role held by someone (two cs_leads), generic secret
    "test-secret". Keyword overrides: see OVERRIDES (e.g. `callback_url=`,
    `api_token=`, `demo=True`), plus `outbox={...}` for [outbox] keys.
    """
    tables: dict[str, dict[str, Any]] = {
        "server": {"timezone": "Asia/Shanghai", "secret": SERVER_SECRET},
        "database": {"url": db_url},
        "api": {"token": ""},
        "console": {"enabled": True},
        "channels.generic": {"secret": GENERIC_SECRET, "shop": "main-store"},
        "outbox": {},
        "files": {"evidence": str(tmp_path / "evidence")},
    }
    tables["outbox"].update(overrides.pop("outbox", {}))
    for name, value in overrides.items():
        if name not in OVERRIDES:
            raise TypeError(f"make_settings: unknown override {name!r}")
        table, key = OVERRIDES[name]
        tables[table][key] = value
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        lines.append("")
    for name, roles, wecom, dingtalk in MEMBERS:
        lines += [
            "[[members]]",
            f"name = {_toml(name)}",
            f"roles = {_toml(roles)}",
            f"wecom_userid = {_toml(wecom)}",
            f"dingtalk_staff_id = {_toml(dingtalk)}",
            "",
        ]
    path = tmp_path / "returnhub.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return load(path, env={})


def sign_generic(secret: str, body: bytes, ts: int) -> dict[str, str]:
    """The headers an OMS sends: hex HMAC-SHA256(secret, f"{ts}." + raw body)."""
    mac = hmac.new(secret.encode(), str(ts).encode() + b"." + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-Returnhub-Timestamp": str(ts),
        "X-Returnhub-Signature": mac.hexdigest(),
    }


CONTRACT_BODY: dict[str, Any] = {
    "event_id": "oms-evt-000123",
    "shop": "main-store",
    "external_id": "AS20261121001",
    "order_id": "SO20261101009",
    "kind": "refund_only",
    "status": "requested",
    "amount": "29.90",
    "currency": "CNY",
    "reason_code": "quality.defect",
    "reason_text": "开关失灵",
    "buyer": {"ref": "buyer-8812", "nick": "喵星人"},
    "items": [{"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": "29.90"}],
    "return_waybill": None,
    "evidence": [],
    "occurred_at": "2026-11-21T10:00:00+08:00",
    "version": "1",
}


def return_body(*, drop: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    """The CONTRACT.md example body; keywords replace fields, `drop` removes them."""
    body = copy.deepcopy(CONTRACT_BODY)
    body.update(overrides)
    for name in drop:
        body.pop(name, None)
    return body


async def post_generic(
    client: Client,
    body: dict[str, Any] | bytes,
    clock: Callable[[], datetime],
    *,
    secret: str = GENERIC_SECRET,
    path: str = "/webhooks/generic",
) -> tuple[int, dict[str, Any]]:
    """POST a correctly signed body to /webhooks/generic (or `path`); (status, JSON answer)."""
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = sign_generic(secret, raw, int(clock().timestamp()))
    resp = await client.post(path, data=raw, headers=headers)
    return resp.status, await resp.json()


async def add_console_row(db: Database, user: str, row_id: int, text: str) -> None:
    """A bot text in `user`'s console chat with an id of our choosing: how a test makes
    a row commit after a newer one was already shown (PostgreSQL's commit order)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    async with db.transaction() as session:
        session.add(
            ConsoleMessage(
                id=row_id, user_id=user, direction="out", card_id=None,
                body={"type": "text", "text": text, "outbox_id": -row_id},
                created_at=now, updated_at=now,
            )
        )  # fmt: skip


async def table_counts(db: Database) -> dict[str, int]:
    """Rows in every table of the schema: equal before and after = nothing stored."""
    counts: dict[str, int] = {}
    async with db.read() as session:
        for table in Base.metadata.sorted_tables:
            counts[table.name] = int(
                await session.scalar(select(func.count()).select_from(table)) or 0
            )
    return counts


class FakeClock:
    """An aware-UTC clock that moves only when told to."""

    def __init__(self, now: datetime = START) -> None:
        if now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self.now = now.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self.now = now.astimezone(UTC)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def timestamp(self) -> int:
        return int(self.now.timestamp())


@asynccontextmanager
async def counting_turns() -> AsyncIterator[Callable[[], int]]:
    """A task that counts the loop's turns while the block runs; yields the reader."""
    turns, done = 0, False

    async def spin() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(spin())
    await asyncio.sleep(0)  # it has started
    try:
        yield lambda: turns
    finally:
        done = True
        await task
