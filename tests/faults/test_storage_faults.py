"""Storage that refuses to write (issue 14, fault 4): SQLite locked by another
connection for longer than the busy timeout, and the evidence store's disk full.

Each time the sender learns clearly that it did not work and whether to retry, the
case is as it was (row counts of every table, the case's status), and for the full
disk the admins are alerted once per outage, not once per photo.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.platforms.evidence import CHAT_FULL_ZH, UPLOAD_FULL_ZH
from handlers.intake import on_return_request
from storage.db import Database
from storage.evidence import EvidenceStore
from storage.models import Case, OutboxMessage
from tests.fakes.labels import label_photo
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner, settle, wecom_app
from tests.support import (
    GENERIC_SECRET,
    MEMBERS,
    Client,
    FakeClock,
    MakeClient,
    make_settings,
    post_generic,
    return_body,
    sign_generic,
    table_counts,
)
from tests.unit.warehouse_support import parcel

SF = "SF7700112233445"
ONLY_SQLITE = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


class Full:
    """EvidenceStore.put on a full disk, until `free()`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.writes = 0

        def put(store: EvidenceStore, content: bytes, content_type: str) -> Any:
            self.writes += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(EvidenceStore, "put", put)

    def free(self) -> None:
        self.monkeypatch.undo()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def alerts(db: Database) -> list[OutboxMessage]:
    async with db.read() as session:
        rows = await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [r for r in rows if r.payload.get("alert")]


async def status_of(db: Database, case_id: str) -> str:
    async with db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case.status


# --- SQLite locked ----------------------------------------------------------------------


@pytest.fixture
def locker(db: Database) -> Iterator[sqlite3.Connection]:
    """Another connection to the same file (a backup, a second process), able to hold
    the write lock the server's in-process lock knows nothing of."""
    path = make_url(db.url).database
    assert path
    conn = sqlite3.connect(path, isolation_level=None)
    yield conn
    conn.close()


@ONLY_SQLITE
async def test_a_write_lock_held_elsewhere_is_a_retryable_503_and_changes_nothing(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    locker: sqlite3.Connection,
    aiohttp_client: MakeClient,
) -> None:
    settings = make_settings(tmp_path, db.url, demo=True)
    bounds = dataclasses.replace(
        settings.database, timeout_seconds=1.0, statement_timeout_seconds=0.5
    )
    app = create_app(dataclasses.replace(settings, database=bounds), clock=clock, background=False)
    client = await aiohttp_client(app)
    status, answer = await post_generic(client, return_body(), clock)
    assert status == 202
    case_id = answer["case_id"]
    await app[WORKER].drain()
    before, was = await table_counts(db), await status_of(db, case_id)

    locker.execute("BEGIN IMMEDIATE")  # held for longer than the 0.5 s busy timeout
    cancel = return_body(event_id="oms-evt-cancel", status="cancelled", version="2")
    raw = json.dumps(cancel).encode()
    headers = sign_generic(GENERIC_SECRET, raw, clock.timestamp())
    resp = await client.post("/webhooks/generic", data=raw, headers=headers)
    assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
    assert "retry later" in (await resp.json())["error"]
    chat = {"user": "小美", "text": f"查 {case_id}", "uuid": str(uuid.uuid4())}
    resp = await client.post("/console/api/send", json=chat)
    assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
    assert "请稍后重试" in (await resp.json())["error"]
    assert (await client.get("/healthz")).status == 200  # busy is not down: reads go on
    assert await table_counts(db) == before and await status_of(db, case_id) == was
    locker.execute("ROLLBACK")

    status, answer = await post_generic(client, raw, clock)  # the sender's retry
    assert status == 202 and answer["duplicate"] is False
    assert await status_of(db, case_id) == "closed"


# --- the evidence store's disk full -----------------------------------------------------


@pytest.fixture
async def console(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> Client:
    settings = make_settings(tmp_path, db.url, demo=True)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


async def upload(client: Client, content: bytes) -> tuple[int, dict[str, Any]]:
    params = {"user": "小周", "uuid": str(uuid.uuid4())}
    resp = await client.post(
        "/console/api/photo", params=params, data=content, headers={"Content-Type": "image/jpeg"}
    )
    body = await resp.json()
    await client.app[WORKER].drain()
    return resp.status, body


async def test_a_full_disk_refuses_a_console_photo_clearly_and_alerts_the_admins_once(
    console: Client, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = await on_return_request(parcel(1, SF), console.app[CTX])
    case_id = result.case_id or ""
    await console.app[WORKER].drain()
    was = await status_of(db, case_id)
    picture = label_photo(SF, angle=3, width=800, quality=50)
    full = Full(monkeypatch)
    before = await table_counts(db)
    for _ in range(2):
        status, body = await upload(console, picture)
        assert (status, body["error"]) == (507, UPLOAD_FULL_ZH)
    assert full.writes == 2
    (alert,) = await alerts(db)  # one alert for the outage, not one per photo
    assert alert.destination == "console:管理员" and alert.status == "sent"
    assert "No space left on device" in alert.payload["text"]
    after = await table_counts(db)
    alerted = {name: before[name] + 1 for name in ("outbox", "console_messages")}
    assert after == {**before, **alerted}  # the alert (in 管理员's console), nothing else
    assert await status_of(db, case_id) == was

    full.free()
    status, body = await upload(console, picture)  # the member uploads again
    assert status == 200 and body["ok"] is True
    assert await status_of(db, case_id) == "received"
    assert len(await alerts(db)) == 1


@pytest.fixture
async def wecom(clock: FakeClock) -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom(users={w for _, _, w, _ in MEMBERS})) as server:
        yield server


async def test_a_full_disk_keeps_retrying_a_chat_photo_and_tells_its_sender_once(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    wecom: FakeWecom,
    aiohttp_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await aiohttp_client(wecom_app(db, tmp_path, clock, wecom.url))
    body = return_body(kind="return_refund", return_waybill=SF, amount="39.00")
    body["items"][0]["unit_price"] = "39.00"
    status, answer = await post_generic(client, body, clock)
    assert status == 202, answer
    case_id = answer["case_id"]
    await settle(client.app)
    was = await status_of(db, case_id)
    wecom.add_media("LABEL_1", label_photo(SF, angle=-4, width=850), "image/jpeg")
    full = Full(monkeypatch)

    signer = CallbackSigner(clock.timestamp)
    query, sealed = signer.seal(signer.image("xiaozhou", "LABEL_1", msg_id=9001))
    resp = await client.post("/callbacks/wecom", params=query, data=sealed)
    assert (resp.status, await resp.text()) == (200, "")  # acked: the download is queued
    for _ in range(3):  # the download is retried, on the clock
        await settle(client.app)
        clock.advance(120)
    assert full.writes >= 3
    assert wecom.texts_to("xiaozhou") == [CHAT_FULL_ZH]  # told once, not per retry
    (alert,) = await alerts(db)
    assert alert.destination == "wecom:admin"
    assert "No space left on device" in alert.payload["text"]
    assert await status_of(db, case_id) == was

    full.free()
    clock.advance(600)
    await settle(client.app)
    assert await status_of(db, case_id) == "received"  # the same photo, kept at last
    assert len(await alerts(db)) == 1
