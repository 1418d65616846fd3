"""WeCom cards whose update handle is gone: decided after the 72-hour response_code
lifetime, or delivered by a retry that got no code. Nothing dead-letters; the next
click on the stale card, which carries a fresh code, shows the closed card at once.

The fake WeCom runs on the test clock: a code expires 72 h after it was issued,
works once, and every click issues a new one (tests/fakes/wecom_limits.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

import bot.app
from bot.appkeys import CTX
from storage.db import Database
from storage.models import CardRecord, OutboxMessage
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner, settle, wecom_app
from tests.http.test_wecom_flow import LEADS, button, case_status, open_case, post
from tests.support import Client, FakeClock, MakeClient

HOURS_72 = 72 * 3600


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeWecom]:
    users = {*LEADS, "lizongjian", "zhaocaiwu", "xiaozhou", "admin", "xiaomei", "chenfengkong"}
    async with running(FakeWecom(users=users, clock=clock.timestamp)) as server:
        yield server


@pytest.fixture
def client(wecom_client: Client) -> Client:
    return wecom_client


async def clicks(
    client: Client, signer: CallbackSigner, fake: FakeWecom, user: str, text: str
) -> None:
    card = fake.cards_to(user)[-1]
    xml, _ = signer.click(fake, user, button(card, text))
    assert await post(client, signer.seal(xml)) == (200, "")
    await settle(client.app)


async def outbox_rows(client: Client) -> list[OutboxMessage]:
    async with client.app[CTX].db.read() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def test_a_card_decided_after_72_hours_is_fixed_by_its_next_click(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    case_id = await open_case(client, clock, fake)
    clock.advance(HOURS_72 + 60)  # every code from message/send has expired
    await clicks(client, signer, fake, "wangzuzhang", "同意")
    assert await case_status(client, case_id) == "refund_pending"

    # 王组长's copy took the fresh code of his click; 刘组长's send code had expired.
    assert len(fake.updates_for("wangzuzhang")) == 1 and fake.updates_for("liuzuzhang") == []
    rows = await outbox_rows(client)
    assert [r.status for r in rows if r.kind == "card.update"] == ["sent", "sent"]
    assert not [r for r in rows if r.status == "dead"]
    assert not fake.texts_to("admin")  # not a dead letter: nothing for the admins to do
    async with client.app[CTX].db.read() as session:
        stale = (
            await session.scalars(select(CardRecord).where(CardRecord.recipient == "liuzuzhang"))
        ).one()
    assert stale.state == "closed" and stale.platform_ref.endswith("|")  # awaits a click

    # 刘组长 still sees live buttons and clicks one: the closed card replaces it at once.
    await clicks(client, signer, fake, "liuzuzhang", "驳回")
    (update,) = fake.updates_for("liuzuzhang")
    shown = update["template_card"]
    assert shown["main_title"]["title"].endswith("· 已同意")
    assert "王组长" in shown["main_title"]["desc"] and shown["replace_text"] == "已同意"
    assert shown["task_id"] == fake.cards_to("liuzuzhang")[0]["task_id"]
    assert any("已由 王组长" in t for t in fake.texts_to("liuzuzhang"))
    assert await case_status(client, case_id) == "refund_pending"  # the late 驳回 did nothing


async def test_any_click_on_a_closed_card_shows_it_closed_again(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    """A closed card whose code a first update used: a second update of the same copy
    (the card shown again) needs a code, and only a click has one."""
    await open_case(client, clock, fake)
    await clicks(client, signer, fake, "wangzuzhang", "同意")
    assert len(fake.updates) == 2
    # 刘组长's client still showed buttons (the update raced his screen) and he clicks.
    await clicks(client, signer, fake, "liuzuzhang", "同意")
    assert len(fake.updates_for("liuzuzhang")) == 2  # shown again, with his click's code
    assert not [r for r in await outbox_rows(client) if r.status == "dead"]
    assert len(fake.codes) == len([c for c in fake.codes.values() if c["used"]]) + 1


async def test_a_send_retried_after_a_lost_answer_is_one_card_and_still_updated(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeWecom,
    signer: CallbackSigner,
    aiohttp_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WeCom took the card but its answer (and the response_code) never arrived: the
    retry carries the same task_id, WeCom answers 42014, and that is the one card."""
    monkeypatch.setattr(bot.app, "OUTBOUND_TIMEOUT", aiohttp.ClientTimeout(total=0.3))
    client = await aiohttp_client(wecom_app(db, tmp_path, clock, fake.url))
    fake.slow_answer("message/send", 1.5)  # the work is done at once, the answer is late
    case_id = await open_case(client, clock, fake)
    sends = [r for r in await outbox_rows(client) if r.kind == "card.send"]
    assert [(r.status, r.attempts) for r in sends] == [("pending", 1)] * len(LEADS)
    assert all(len(fake.cards_to(lead)) == 1 for lead in LEADS)  # WeCom has them already

    fake.slow_answer("message/send", 0)
    clock.advance(3600)  # past any backoff
    await settle(client.app)
    sends = [r for r in await outbox_rows(client) if r.kind == "card.send"]
    assert [r.status for r in sends] == ["sent"] * len(LEADS)
    first = {lead: fake.cards_to(lead) for lead in LEADS}
    assert all(len(cards) == 1 for cards in first.values()), first  # no second card
    assert fake.calls.count("message/send") >= 2 * len(LEADS)  # each was retried

    # The cards came without a code; clicks bring them, and every copy ends up closed.
    await clicks(client, signer, fake, "wangzuzhang", "同意")
    assert await case_status(client, case_id) == "refund_pending"
    await clicks(client, signer, fake, "liuzuzhang", "同意")
    for lead in LEADS:
        (update,) = fake.updates_for(lead)
        assert update["template_card"]["task_id"] == first[lead][0]["task_id"]
        assert update["template_card"]["main_title"]["title"].endswith("· 已同意")
