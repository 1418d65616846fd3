"""The console platform: outbox deliveries are idempotent, updates replace every copy,
and the page's posts parse into neutral events or a clear error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.cards import Button, Card, CardRenderer
from bot.outbox import RetryableError
from bot.platforms.console import (
    ConsoleInputError,
    ConsolePlatform,
    click_label,
    is_member,
    parse_chat,
    parse_click,
)
from bot.settings import templates_dir
from storage.db import Database
from storage.models import ConsoleMessage, Member

UUID = "0f8e7c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"


class Tick:
    """A clock that moves one second per reading, so updated_at visibly changes."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 6, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def approval(status: str = "", closed: bool = False) -> Card:
    return Card(
        kind="approval",
        title="退款审批 · 132.00 元",
        case_id="RC-261121-0002",
        summary='宠物饮水机 2L "水泵异响" <b>',
        fields=(("金额", "132.00 元"), ("原因", "质量问题")),
        lines=("FOUNTAIN-2L 宠物饮水机 2L × 1",),
        buttons=(
            Button("同意", "approve", "tok-a", "primary"),
            Button("驳回", "reject", "tok-r", "danger"),
        ),
        status=status,
        closed=closed,
    )


@pytest.fixture
def platform(db: Database) -> ConsolePlatform:
    return ConsolePlatform(db, CardRenderer(templates_dir()), clock=Tick())


async def rows(db: Database, user: str | None = None) -> list[ConsoleMessage]:
    async with db.read() as session:
        query = select(ConsoleMessage).order_by(ConsoleMessage.id)
        if user is not None:
            query = query.where(ConsoleMessage.user_id == user)
        return list(await session.scalars(query))


async def test_send_card_twice_for_one_outbox_row_shows_one_card(
    db: Database, platform: ConsolePlatform
) -> None:
    first = await platform.send_card("王组长", approval(), card_id=7, outbox_id=41)
    again = await platform.send_card("王组长", approval(), card_id=7, outbox_id=41)
    assert first == again == f"console:{(await rows(db))[0].id}"
    [row] = await rows(db)
    assert (row.user_id, row.direction, row.card_id) == ("王组长", "out", 7)
    card = row.body["card"]
    assert row.body["type"] == "card" and row.body["outbox_id"] == 41
    assert card["title"] == "退款审批 · 132.00 元"
    assert card["summary"] == '宠物饮水机 2L "水泵异响" <b>'  # tojson kept it intact
    assert card["fields"][0] == {"label": "金额", "value": "132.00 元"}
    assert [b["action"] for b in card["buttons"]] == ["approve", "reject"]
    assert card["closed"] is False


async def test_update_replaces_every_copy_and_bumps_updated_at(
    db: Database, platform: ConsolePlatform
) -> None:
    await platform.send_card("王组长", approval(), card_id=7, outbox_id=41)
    await platform.send_card("刘组长", approval(), card_id=8, outbox_id=42)
    before = {r.id: r.updated_at for r in await rows(db)}
    decided = approval(status="已由 王组长 于 11-21 14:03 同意", closed=True)
    assert await platform.update_card("王组长", "console:1", decided, card_id=7) is None
    after = {r.card_id: r for r in await rows(db)}
    assert after[7].body["card"]["status"].startswith("已由 王组长")
    assert after[7].body["card"]["closed"] is True
    assert after[7].body["outbox_id"] == 41
    assert after[7].updated_at > before[after[7].id]
    assert after[8].body["card"]["closed"] is False  # another card id: untouched


async def test_update_before_the_card_is_shown_is_retried(platform: ConsolePlatform) -> None:
    with pytest.raises(RetryableError):
        await platform.update_card("王组长", "", approval(closed=True), card_id=99)


async def test_send_text_is_idempotent_per_outbox_row(
    db: Database, platform: ConsolePlatform
) -> None:
    await platform.send_text("小美", "可用命令：…", outbox_id=5)
    await platform.send_text("小美", "可用命令：…", outbox_id=5)
    await platform.send_text("小美", "第二条", outbox_id=6)
    assert [r.body["text"] for r in await rows(db, "小美")] == ["可用命令：…", "第二条"]


async def test_inbound_is_recorded_once_per_page_uuid(
    db: Database, platform: ConsolePlatform
) -> None:
    body = {"type": "text", "text": "/帮助", "uuid": UUID}
    assert await platform.record_inbound("小美", body) == await platform.record_inbound(
        "小美", dict(body)
    )
    [row] = await rows(db)
    assert row.direction == "in" and row.card_id is None


def test_parse_chat_builds_a_keyed_event() -> None:
    event = parse_chat({"user": "小周", "text": "  SF1401234567890 ", "uuid": UUID.upper()})
    assert event.key == f"console:msg:{UUID}"
    assert (event.sender.platform, event.sender.user_id) == ("console", "小周")
    assert event.text == "SF1401234567890"


def test_parse_click_carries_reason_and_target() -> None:
    event = parse_click(
        {"user": "王组长", "token": "abc.def", "reason": "超期", "target": "刘组长", "uuid": UUID}
    )
    assert event.key == f"console:click:{UUID}"
    assert (event.token, event.reason, event.target) == ("abc.def", "超期", "刘组长")


@pytest.mark.parametrize(
    "data",
    [
        [],
        "text",
        {"text": "/帮助", "uuid": UUID},
        {"user": "小美", "uuid": UUID},
        {"user": "小美", "text": "   ", "uuid": UUID},
        {"user": "小美", "text": "x" * 2001, "uuid": UUID},
        {"user": "小美", "text": 42, "uuid": UUID},
        {"user": "小美", "text": "/帮助"},
        {"user": "小美", "text": "/帮助", "uuid": "not-a-uuid"},
        # Stored, these would break every later poll of the chat (a lone surrogate
        # cannot be encoded as UTF-8) or the database (PostgreSQL refuses NUL).
        {"user": "小美", "text": "a\ud800b", "uuid": UUID},
        {"user": "小美", "text": "a\u0000b", "uuid": UUID},
        {"user": "小美", "text": "a\u001bb", "uuid": UUID},
        {"user": "小\ud800美", "text": "/帮助", "uuid": UUID},
    ],
)
def test_parse_chat_rejects_malformed_posts(data: object) -> None:
    with pytest.raises(ConsoleInputError):
        parse_chat(data)


@pytest.mark.parametrize(
    "data",
    [
        {"user": "王组长", "uuid": UUID},
        {"user": "王组长", "token": "", "uuid": UUID},
        {"user": "王组长", "token": "t" * 600, "uuid": UUID},
        {"user": "王组长", "token": "t", "reason": ["x"], "uuid": UUID},
        {"user": "王组长", "token": "t", "reason": "坏了\ud800", "uuid": UUID},
        {"user": "王组长", "token": "t", "target": "刘组长\u0000", "uuid": UUID},
    ],
)
def test_parse_click_rejects_malformed_posts(data: object) -> None:
    with pytest.raises(ConsoleInputError):
        parse_click(data)


def test_text_keeps_its_line_breaks_and_a_bad_label_is_dropped() -> None:
    event = parse_chat({"user": "小美", "text": "第一行\n第二行\t完", "uuid": UUID})
    assert event.text == "第一行\n第二行\t完"
    assert click_label({"label": "同意\ud800"}) == ""


async def test_is_member_knows_only_active_members(db: Database) -> None:
    async with db.transaction() as session:
        session.add(Member(name="王组长"))
        session.add(Member(name="离职的", active=False))
    assert await is_member(db, "王组长")
    assert not await is_member(db, "离职的")
    assert not await is_member(db, "路人")
    async with db.read() as session:
        assert await session.scalar(select(func.count(ConsoleMessage.id))) == 0
