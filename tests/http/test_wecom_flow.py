"""WeCom end to end: a 132-yuan case from the generic webhook to an approval card in the
fake WeCom, an encrypted click from one CS lead, and every lead's card updated.

Runs on SQLite and (with RETURNHUB_TEST_PG) PostgreSQL. Callbacks are encrypted
and signed with wechatpy's crypto (tests/fakes/wecom.py), never with the code
under test.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.appkeys import CTX
from storage import outbox
from storage.db import Database
from storage.models import AuditEvent, Case, Evidence, OutboxMessage
from tests.fakes.labels import plain_photo
from tests.fakes.wecom import AGENT_ID, FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner, settle, wecom_app
from tests.support import Client, FakeClock, MakeClient, post_generic, return_body

LEADS = ("wangzuzhang", "liuzuzhang")


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    users = {"wangzuzhang", "liuzuzhang", "lizongjian", "zhaocaiwu", "xiaozhou", "admin"}
    async with running(FakeWecom(users=users | {"xiaomei", "chenfengkong"})) as server:
        yield server


@pytest.fixture
def client(wecom_client: Client) -> Client:
    return wecom_client


async def open_case(client: Client, clock: FakeClock, fake: FakeWecom) -> str:
    item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": "132.00"}
    status, answer = await post_generic(client, return_body(amount="132.00", items=[item]), clock)
    assert status == 202, answer
    await settle(client.app)
    case_id: str = answer["case_id"]
    return case_id


def button(card: dict[str, Any], text: str) -> str:
    key: str = next(b["key"] for b in card["button_list"] if b["text"] == text)
    return key


async def click(
    client: Client, signer: CallbackSigner, fake: FakeWecom, user: str, card_of: str, text: str
) -> tuple[dict[str, str], bytes]:
    """The sealed callback of `user` clicking `text` on the card `card_of` received."""
    card = fake.cards_to(card_of)[-1]
    code = fake.click_code(user, card["task_id"])
    inner = signer.card_event(user, button(card, text), card["task_id"], code)
    return signer.seal(inner)


async def post(client: Client, sealed: tuple[dict[str, str], bytes]) -> tuple[int, str]:
    query, body = sealed
    resp = await client.post("/callbacks/wecom", params=query, data=body)
    return resp.status, await resp.text()


async def case_status(client: Client, case_id: str) -> str:
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case.status


async def count(client: Client, model: Any, *where: Any) -> int:
    async with client.app[CTX].db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def test_132_yuan_case_is_approved_from_a_wecom_card(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    case_id = await open_case(client, clock, fake)
    assert await case_status(client, case_id) == "pending_approval"
    for lead in LEADS:
        (card,) = fake.cards_to(lead)
        assert card["card_type"] == "button_interaction"
        assert [b["text"] for b in card["button_list"]] == ["同意", "驳回", "转交"]
        assert case_id in card["main_title"]["title"]
        assert len(card["horizontal_content_list"]) <= 6
        assert "处理时限" in [h["keyname"] for h in card["horizontal_content_list"]]
    assert all(m["agentid"] == AGENT_ID for m in fake.messages)

    clock.advance(120)
    status, body = await post(
        client, await click(client, signer, fake, "wangzuzhang", "wangzuzhang", "同意")
    )
    assert (status, body) == (200, "")
    await settle(client.app)

    assert await case_status(client, case_id) == "refund_pending"  # refund_only: released
    assert len(fake.updates) == 2
    for lead in LEADS:
        (update,) = fake.updates_for(lead)
        assert update["userids"] == [lead] and update["agentid"] == AGENT_ID
        card = update["template_card"]
        assert "王组长" in card["main_title"]["desc"] and "同意" in card["main_title"]["desc"]
        assert card["replace_text"]  # WeCom greys the buttons out
        assert card["task_id"] == fake.cards_to(lead)[0]["task_id"]
    # 王组长's copy is replaced with the fresh code of his click, 刘组长's with the send's.
    *sent, clicked = fake.codes.values()
    assert clicked["userid"] == "wangzuzhang" and clicked["used"]
    assert {c["userid"]: c["used"] for c in sent} == {"wangzuzhang": False, "liuzuzhang": True}
    assert any(case_id in t and "已同意" in t for t in fake.texts_to("wangzuzhang"))


async def test_unauthorized_clicker_is_refused_politely_and_nothing_changes(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    case_id = await open_case(client, clock, fake)
    # 小周 (warehouse) replays 王组长's 同意 button as his own click.
    status, _ = await post(
        client, await click(client, signer, fake, "xiaozhou", "wangzuzhang", "同意")
    )
    assert status == 200
    await settle(client.app)
    assert await case_status(client, case_id) == "pending_approval"
    assert fake.updates == []
    (reply,) = fake.texts_to("xiaozhou")
    assert "客服组长" in reply, reply  # "您没有「客服组长」角色，…"
    assert await count(client, AuditEvent, AuditEvent.action.like("refused:%")) == 1


async def test_the_same_callback_twice_has_one_effect(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    case_id = await open_case(client, clock, fake)
    sealed = await click(client, signer, fake, "liuzuzhang", "liuzuzhang", "同意")
    first, second = await asyncio.gather(post(client, sealed), post(client, sealed))
    assert first == second == (200, "")
    await settle(client.app)
    assert await post(client, sealed) == (200, "")  # a late re-send after the effect
    await settle(client.app)
    assert await case_status(client, case_id) == "refund_pending"
    assert await count(client, AuditEvent, AuditEvent.action == "approve") == 1
    assert len(fake.updates) == 2
    assert len([t for t in fake.texts_to("liuzuzhang") if "已同意" in t]) == 1


async def test_a_second_lead_clicking_late_is_told_who_decided(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    case_id = await open_case(client, clock, fake)
    late = await click(client, signer, fake, "liuzuzhang", "liuzuzhang", "驳回")
    await post(client, await click(client, signer, fake, "wangzuzhang", "wangzuzhang", "同意"))
    await settle(client.app)
    await post(client, late)
    await settle(client.app)
    assert await case_status(client, case_id) == "refund_pending"
    assert any("已由 王组长" in t for t in fake.texts_to("liuzuzhang"))


async def test_token_expiry_mid_flow_refreshes_once_and_delivers(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    await open_case(client, clock, fake)
    fetched = fake.token_fetches
    fake.expire_tokens()
    await post(client, await click(client, signer, fake, "wangzuzhang", "wangzuzhang", "同意"))
    await settle(client.app)
    assert fake.token_fetches == fetched + 1
    assert len(fake.updates) == 2 and fake.texts_to("wangzuzhang")


async def test_a_40014_storm_ends_as_a_retry_not_a_loop(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    fake.fail("message/send", errcode=40014, times=None)
    await open_case(client, clock, fake)
    assert fake.calls.count("message/send") == 2 * len(LEADS)  # one retry after one refresh
    async with client.app[CTX].db.read() as session:
        rows = list(await session.scalars(select(OutboxMessage)))
    cards = [r for r in rows if r.kind == "card.send"]
    assert len(cards) == len(LEADS)
    assert all(r.status == "pending" and r.attempts == 1 for r in cards)
    assert all("token refused again" in r.last_error for r in cards)
    assert all("tok_" not in r.last_error for r in rows)


async def test_chat_commands_and_photos_arrive_as_text_callbacks(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    case_id = await open_case(client, clock, fake)
    fake.add_media("MEDIA_1", plain_photo(), "image/jpeg")
    help_text = signer.text("wangzuzhang", "/帮助", msg_id=7001)
    assert await post(client, signer.seal(help_text)) == (200, "")
    photo = signer.image("xiaozhou", "MEDIA_1", msg_id=7002)
    assert await post(client, signer.seal(photo)) == (200, "")
    await post(client, signer.seal(signer.text("wangzuzhang", f"/同意 {case_id}", msg_id=7003)))
    await settle(client.app)
    assert any("可用命令" in t for t in fake.texts_to("wangzuzhang"))
    # No code in it and no parcel scanned yet: no case in hand, and 小周 is told so.
    assert any("请先扫描或输入退货运单号" in t for t in fake.texts_to("xiaozhou"))
    assert await case_status(client, case_id) == "refund_pending"
    assert {u["userids"][0] for u in fake.updates} == set(LEADS)


async def test_a_refused_click_does_not_take_over_the_cards_update_handle(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    case_id = await open_case(client, clock, fake)
    await post(client, await click(client, signer, fake, "xiaozhou", "wangzuzhang", "同意"))
    await settle(client.app)
    await post(client, signer.seal(signer.text("wangzuzhang", f"/同意 {case_id}", msg_id=7101)))
    await settle(client.app)
    assert {u["userids"][0] for u in fake.updates} == set(LEADS)


async def test_a_group_robot_gets_at_most_20_messages_a_minute(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    async with running(FakeWecom(clock=lambda: clock.now.timestamp())) as fake:
        app = wecom_app(db, tmp_path, clock, fake.url, robots={"ops": "robot-key-ops"})
        client = await aiohttp_client(app)
        async with db.transaction() as session:
            for i in range(25):
                outbox.enqueue(
                    session,
                    kind="text.send",
                    destination="wecom-robot:ops",
                    payload={"text": f"新售后单 {i}"},
                    now=clock(),
                )
        await settle(client.app)
        # The other five wait for the window in the outbox: not even tried, so no 45009.
        assert len(fake.robot) == fake.calls.count("webhook/send") == 20
        clock.advance(61)
        await settle(client.app)
        sent = [m["text"]["content"] for _, m in fake.robot]
        assert sent == [f"新售后单 {i}" for i in range(25)]
        async with db.read() as session:
            rows = list(await session.scalars(select(OutboxMessage)))
        assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}  # no 45009 retries


async def photo_after_scan(
    client: Client, clock: FakeClock, signer: CallbackSigner, n: int, media_id: str
) -> str:
    """A return parcel 小周 scans (waybill SF700<n>), then a photo of it in WeCom."""
    item = {"sku": "BOWL-1", "name": "陶瓷食盆", "qty": 1, "unit_price": "39.00"}
    body = return_body(
        amount="39.00",
        items=[item],
        kind="return_refund",
        return_waybill=f"SF700{n}",
        carrier="SF",
        event_id=f"photo-{n}",
    )
    status, answer = await post_generic(client, body, clock)
    assert status == 202, answer
    await post(client, signer.seal(signer.text("xiaozhou", f"SF700{n}", msg_id=7100 + 2 * n)))
    await settle(client.app)
    photo = signer.image("xiaozhou", media_id, msg_id=7101 + 2 * n)
    await post(client, signer.seal(photo))
    await settle(client.app)
    case_id: str = answer["case_id"]
    return case_id


async def test_a_warehouse_photo_is_downloaded_into_the_evidence_store(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner, tmp_path: Path
) -> None:
    jpeg = plain_photo(9)  # a cracked bowl: no code on it
    fake.add_media("MEDIA_9", jpeg, "image/jpeg")
    case_id = await photo_after_scan(client, clock, signer, 1, "MEDIA_9")
    async with client.app[CTX].db.read() as session:
        photo = (
            await session.scalars(
                select(Evidence).where(Evidence.case_id == case_id, Evidence.kind == "photo")
            )
        ).one()
    digest = hashlib.sha256(jpeg).hexdigest()
    assert (photo.sha256, photo.ref, photo.added_by) == (digest, f"sha256:{digest}", "小周")
    path = tmp_path / "evidence" / "sha256" / digest[:2] / f"{digest}.jpg"
    assert path.read_bytes() == jpeg
    assert any(f"已将照片附加到 {case_id}" in t for t in fake.texts_to("xiaozhou"))


async def test_a_photo_the_platform_no_longer_has_is_a_dead_letter(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    await photo_after_scan(client, clock, signer, 2, "MEDIA_GONE")
    async with client.app[CTX].db.read() as session:
        fetch = (
            await session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "media.fetch"))
        ).one()
    assert fetch.status == "dead" and "40007" in fetch.last_error
