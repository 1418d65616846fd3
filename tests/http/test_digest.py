"""The daily digest on both engines: its numbers by hand, once across replicas and
restarts, through an IM outage, its picture as WeCom checks it, without a CJK font.

Now is Tuesday 2026-11-24 09:05 in Shanghai; the digest reports Monday the 23rd.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import func, select

from bot import digest_chart
from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.events import ChatMessage, Sender
from bot.platforms.wecom_errors import WecomApiError
from bot.settings import DigestSettings
from handlers import digest
from handlers.commands import on_chat_message
from handlers.digest_text import build, markdown
from storage.db import Database
from storage.models import ApprovalStep, Case, OutboxMessage
from tests.fakes.dingtalk import FakeDingtalk
from tests.fakes.dingtalk import running as running_dingtalk
from tests.fakes.dingtalk_callbacks import with_dingtalk
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import api_client, with_wecom
from tests.support import Client, FakeClock, MakeClient, make_settings

ZONE = ZoneInfo("Asia/Shanghai")
LEADS = ("wangzuzhang", "liuzuzhang", "lizongjian")  # cs_lead ×2, ops_director
ROBOT_KEY = "robot-key-ops"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """Aware UTC of a Shanghai wall-clock time in November 2026."""
    return datetime(2026, 11, day, hour, minute, tzinfo=ZONE).astimezone(UTC)


def naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def a_case(n: int, status: str, created: datetime, **fields: object) -> Case:
    values: dict[str, object] = {
        "id": f"RC-261123-{n:04d}", "channel": "generic", "shop": "main-store",
        "external_id": f"E{n}", "order_id": f"O{n}", "kind": "return_refund",
        "amount_fen": 10000, "status": status, "created_at": naive(created),
        "updated_at": naive(created), "reason_code": "quality.defect", "tier": "cs_lead",
    }  # fmt: skip
    values.update(fields)
    return Case(**values)


async def seed(db: Database) -> None:
    """Monday the 23rd: #1-#5 new; #6 from the 22nd, refunded on the 23rd; #7 today."""
    async with db.transaction() as session:
        session.add_all([
            a_case(1, "pending_approval", at(23, 9)),
            a_case(2, "refund_pending", at(23, 10), tier="auto", amount_fen=2990,
                   reason_code="size.too_small"),
            a_case(3, "received", at(23, 11), reason_code="size.too_small"),
            a_case(4, "on_hold", at(23, 12)),
            a_case(5, "awaiting_return", at(23, 20), tier="auto",
                   reason_code="logistics.damaged"),
            a_case(6, "refunded", at(22, 15), refund_fen=8800,
                   refunded_at=naive(at(23, 16))),
            a_case(7, "pending_approval", at(24, 8)),
        ])  # fmt: skip
        await session.flush()
        # Due on the 23rd at 14:00 and still pending: one breach; #7's is due today.
        session.add(ApprovalStep(case_id="RC-261123-0001", seq=1, role="cs_lead",
                                 state="pending", due_at=naive(at(23, 14))))  # fmt: skip
        session.add(ApprovalStep(case_id="RC-261123-0007", seq=1, role="cs_lead",
                                 state="pending", due_at=naive(at(24, 9))))  # fmt: skip


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(24, 9, 5))


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom(clock=clock.timestamp)) as server:
        yield server


@pytest.fixture
async def client(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeWecom, aiohttp_client: MakeClient
) -> Client:
    settings = with_wecom(make_settings(tmp_path, db.url, console=False), fake.url)
    settings = dataclasses.replace(
        settings,
        wecom=dataclasses.replace(settings.wecom, robots={"ops": ROBOT_KEY}),
        digest=DigestSettings(time="09:00", wecom_robots=("ops",)),
    )
    app = create_app(settings, clock=clock, background=False)
    test_client = await aiohttp_client(app)
    await seed(app[CTX].db)
    return test_client


async def rows(db: Database, kind: str) -> list[OutboxMessage]:
    async with db.read() as session:
        found = await session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
        )
        return list(found)


async def test_the_numbers_by_hand(client: Client) -> None:
    ctx = client.app[CTX]
    async with ctx.db.read() as session:
        d = await build(session, ctx, ctx.now())
    assert d.day.isoformat() == "2026-11-23"
    t = d.tiles
    assert (t.new, t.pending_review, t.awaiting_return, t.awaiting_inspection) == (5, 2, 1, 1)
    assert (t.on_hold, t.refund_pending_fen, t.refunded_fen) == (1, 2990, 8800)
    assert t.auto_share == 2 / 5 and (d.refunds.count, d.refunds.amount_fen) == (1, 8800)
    assert d.sla_breaches == 1
    assert d.reasons == [("quality.defect", 2), ("size.too_small", 2), ("logistics.damaged", 1)]
    assert [day for day, _, _ in d.trend] == [f"2026-11-{n}" for n in range(17, 24)]
    assert d.trend[-2:] == [("2026-11-22", 1, 0), ("2026-11-23", 5, 1)]
    text = markdown(d, "https://bot.example.com/dashboard")
    assert text.splitlines()[:8] == [
        "## 售后日报 · 2026-11-23（周一）",
        "> 统计昨天全天；待处理为当前数",
        "**新增售后**：5 单（自动通过 40%）",
        "**待审批**：2 单　**待寄回**：1 单",
        "**待验货**：1 单　**异常挂起**：1 单",
        "**待退款金额**：¥29.90",
        "**已退款**：1 单，¥88.00",
        "**SLA 超时**：1 次",
    ]
    assert "1. 质量问题·quality.defect　2 单" in text and len(text.encode()) < 2048


async def test_once_across_two_replicas_and_a_restart(client: Client, clock: FakeClock) -> None:
    ctx = client.app[CTX]
    clock.set(at(24, 8, 59))
    assert await digest.DailyDigest(ctx).tick() is False  # not yet due
    clock.set(at(24, 9, 0))
    # Two replicas: each its own engine (its own connections) on the one database, racing.
    other = Database(ctx.db.url)
    try:
        first, second = digest.DailyDigest(ctx), digest.DailyDigest(replace(ctx, db=other))
        assert sorted(await asyncio.gather(first.tick(), second.tick())) == [False, True]
    finally:
        await other.dispose()
    markdowns = await rows(ctx.db, digest.MARKDOWN_KIND)
    assert sorted(m.destination for m in markdowns) == sorted(
        [*(f"wecom:{u}" for u in LEADS), "wecom-robot:ops"]
    )
    assert len(await rows(ctx.db, digest.IMAGE_KIND)) == 4
    clock.set(at(24, 15))  # a restart later the same day: a fresh process, nothing again
    assert await digest.DailyDigest(ctx).tick() is False
    assert len(await rows(ctx.db, digest.MARKDOWN_KIND)) == 4
    clock.set(at(25, 9, 1))  # the next day's goes out
    assert await first.tick() is True and len(await rows(ctx.db, digest.MARKDOWN_KIND)) == 8


async def test_a_server_down_at_nine_sends_when_back_the_same_day_only(
    client: Client, clock: FakeClock
) -> None:
    ctx = client.app[CTX]
    clock.set(at(24, 13))
    assert await digest.DailyDigest(ctx).tick() is True
    async with ctx.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 8


async def test_an_outage_then_recovery_delivers_each_once(
    client: Client, clock: FakeClock, fake: FakeWecom
) -> None:
    ctx = client.app[CTX]
    assert await digest.DailyDigest(ctx).tick()
    for path in ("message/send", "media/upload", "webhook/send"):
        fake.fail(path, status=503, times=None)
    await client.app[WORKER].drain()
    assert fake.messages == [] and fake.robot == []
    fake.failures.clear()
    clock.advance(900)  # past every backoff
    await client.app[WORKER].drain()
    clock.advance(900)
    await client.app[WORKER].drain()
    for user in LEADS:
        sent = [m["msgtype"] for m in fake.messages if m["touser"] == user]
        assert sorted(sent) == ["image", "markdown"], user
        (png,) = fake.images_to(user)
        assert png.startswith(b"\x89PNG")
    assert sorted(body["msgtype"] for _, body in fake.robot) == ["image", "markdown"]
    assert all(m.status == "sent" for m in await rows(ctx.db, digest.IMAGE_KIND))


async def test_the_robot_image_is_base64_with_its_md5(client: Client, fake: FakeWecom) -> None:
    ctx = client.app[CTX]
    assert await digest.DailyDigest(ctx).tick()
    await client.app[WORKER].drain()
    ((key, body),) = [(k, b) for k, b in fake.robot if b["msgtype"] == "image"]
    raw = base64.b64decode(body["image"]["base64"])
    assert key == ROBOT_KEY and body["image"]["md5"] == hashlib.md5(raw).hexdigest()  # noqa: S324
    assert raw.startswith(b"\x89PNG") and len(raw) <= 2 << 20
    assert raw == fake.images_to("wangzuzhang")[0]  # the same figures draw the same bytes
    # The fake refuses what WeCom refuses: a wrong md5, bad base64, a picture over 2 MB.
    big = raw + b"\0" * (2 << 20)
    async with aiohttp.ClientSession() as http:
        wecom = api_client(fake.url, http)
        for image in (
            {"base64": body["image"]["base64"], "md5": "0" * 32},
            {"base64": "not base64!", "md5": body["image"]["md5"]},
            {"base64": base64.b64encode(big).decode(), "md5": hashlib.md5(big).hexdigest()},  # noqa: S324
        ):
            with pytest.raises(WecomApiError):
                await wecom.robot_send(ROBOT_KEY, {"msgtype": "image", "image": image})
        with pytest.raises(WecomApiError, match="40007"):  # an app image names a real upload
            await wecom.send("wangzuzhang", "image", {"media_id": "3never-uploaded"})


async def test_without_a_cjk_font_the_markdown_goes_alone(
    client: Client,
    fake: FakeWecom,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(digest_chart, "find_font", lambda *a: None)
    ctx = client.app[CTX]
    with caplog.at_level(logging.WARNING, logger="handlers.digest"):
        assert await digest.DailyDigest(ctx).tick()
    assert "no CJK font found" in caplog.text
    assert await rows(ctx.db, digest.IMAGE_KIND) == []
    await client.app[WORKER].drain()
    assert sorted(m["msgtype"] for m in fake.messages) == ["markdown"] * 3
    with pytest.raises(digest_chart.NoFont):
        digest_chart.render({"title": "t"})


async def test_the_digest_command_sends_it_to_the_asker_only(
    client: Client, fake: FakeWecom
) -> None:
    ctx = client.app[CTX]
    message = ChatMessage("dg1", Sender("wecom", "lizongjian"), "/日报")
    await on_chat_message(message, ctx)
    await client.app[WORKER].drain()
    assert sorted(m["msgtype"] for m in fake.messages) == ["image", "markdown"]
    assert {m["touser"] for m in fake.messages} == {"lizongjian"}
    assert "售后日报 · 2026-11-23" in fake.messages[0]["markdown"]["content"]
    assert await digest.DailyDigest(ctx).tick() is True  # the daily one is unaffected
    refused = ChatMessage("dg2", Sender("wecom", "xiaomei"), "/digest")  # a cs_agent
    await on_chat_message(refused, ctx)
    await client.app[WORKER].drain()
    assert any(m["touser"] == "xiaomei" and m["msgtype"] == "text" for m in fake.messages)
    assert not any(m["touser"] == "xiaomei" and m["msgtype"] == "image" for m in fake.messages)


def test_the_chart_is_deterministic() -> None:
    chart = {"title": "售后日报 2026-11-23", "reasons": [["尺寸不符", 3]],
             "trend": [["2026-11-22", 1, 0], ["2026-11-23", 5, 1]]}  # fmt: skip
    png = digest_chart.render(chart)
    assert png == digest_chart.render(chart) and png.startswith(b"\x89PNG")
    assert len(png) < digest_chart.MAX_BYTES


async def test_dingtalk_members_get_markdown_and_picture_the_robot_markdown(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    async with running_dingtalk(FakeDingtalk(clock=lambda: clock.now.timestamp())) as fake:
        settings = with_dingtalk(make_settings(tmp_path, db.url, console=False), fake.url)
        settings = dataclasses.replace(settings, digest=DigestSettings(dingtalk_robots=("ops",)))
        app = create_app(settings, clock=clock, background=False)
        await aiohttp_client(app)
        await seed(app[CTX].db)
        assert await digest.DailyDigest(app[CTX]).tick()
        fake.fail("media/upload", status=503)  # one outage on the way: retried, sent once
        await app[WORKER].drain()
        clock.advance(900)
        await app[WORKER].drain()
        for user in ("manager1001", "manager1004", "manager1002"):
            keys = sorted(s["msgKey"] for s in fake.sends if s["userIds"] == [user])
            assert keys == ["sampleImageMsg", "sampleMarkdown"], user
            (png,) = fake.images_to(user)
            assert png.startswith(b"\x89PNG")
        (robot,) = fake.robot_messages
        assert robot["msgtype"] == "markdown" and "售后日报" in robot["markdown"]["text"]
