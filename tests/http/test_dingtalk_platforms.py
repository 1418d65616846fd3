"""DingTalk beside WeCom, DingTalk groups, and the warehouse flow from DingTalk chat.

- Both platforms at once: a member with a WeCom userid and a DingTalk staff id gets
  a card on each (unless `platforms = [...]` narrows it), and a decision on either
  platform closes the cards on the other.
- A role with `dingtalk_conversation_id` gets one IM_GROUP card its members click.
- A waybill typed (or scanned) in DingTalk and a photo sent there reach the
  warehouse flow; the photo is downloaded by its downloadCode into the evidence store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from bot.appkeys import CTX
from bot.settings import RoleRoute, Settings
from storage.db import Database
from storage.models import Case, Evidence
from tests.fakes import wecom as fake_wecom
from tests.fakes.dingtalk import FakeDingtalk, running
from tests.fakes.dingtalk_callbacks import DingtalkSigner, card_path, dingtalk_app
from tests.fakes.labels import plain_photo
from tests.fakes.wecom_callbacks import CallbackSigner, settle, with_wecom
from tests.support import Client, FakeClock, MakeClient, make_settings, post_generic, return_body

LEADS = {"manager1001": "wangzuzhang", "manager1004": "liuzuzhang"}


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDingtalk]:
    async with running(FakeDingtalk(clock=lambda: clock.now.timestamp())) as server:
        yield server


@pytest.fixture
async def wecom(clock: FakeClock) -> AsyncIterator[fake_wecom.FakeWecom]:
    async with fake_wecom.running(fake_wecom.FakeWecom(clock=lambda: clock.now.timestamp())) as s:
        yield s


@pytest.fixture
def signer(clock: FakeClock, fake: FakeDingtalk) -> DingtalkSigner:
    return DingtalkSigner(clock, fake)


def narrowed(settings: Settings, name: str, platforms: tuple[str, ...]) -> Settings:
    members = tuple(
        dataclasses.replace(m, platforms=platforms) if m.name == name else m
        for m in settings.members
    )
    return dataclasses.replace(settings, members=members)


async def both(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeDingtalk,
    wecom: fake_wecom.FakeWecom,
    aiohttp_client: MakeClient,
) -> Client:
    """WeCom and DingTalk live together; 刘组长 asked for WeCom cards only."""
    settings = with_wecom(make_settings(tmp_path, db.url, console=False), wecom.url)
    settings = narrowed(settings, "刘组长", ("wecom",))
    return await aiohttp_client(dingtalk_app(db, tmp_path, clock, fake.url, settings=settings))


async def open_case(client: Client, clock: FakeClock, amount: str = "132.00", **body: Any) -> str:
    item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": amount}
    status, answer = await post_generic(
        client, return_body(amount=amount, items=[item], **body), clock
    )
    assert status == 202, answer
    await settle(client.app)
    case_id: str = answer["case_id"]
    return case_id


async def status_of(client: Client, case_id: str) -> str:
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case.status


async def test_each_member_gets_cards_where_they_are_and_a_dingtalk_click_closes_wecom(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeDingtalk,
    wecom: fake_wecom.FakeWecom,
    signer: DingtalkSigner,
    aiohttp_client: MakeClient,
) -> None:
    client = await both(db, tmp_path, clock, fake, wecom, aiohttp_client)
    case_id = await open_case(client, clock)
    assert len(fake.cards_to("manager1001")) == len(wecom.cards_to("wangzuzhang")) == 1
    assert fake.cards_to("manager1004") == []  # platforms = ["wecom"]
    assert len(wecom.cards_to("liuzuzhang")) == 1

    (card,) = fake.cards_to("manager1001")
    resp = await client.post(
        card_path(), json=signer.click("manager1001", card["outTrackId"], "approve")
    )
    assert resp.status == 200
    await settle(client.app)
    assert await status_of(client, case_id) == "refund_pending"
    assert fake.cards[card["outTrackId"]]["params"]["closed"] == "true"
    for userid in LEADS.values():  # both WeCom copies say who decided, on DingTalk
        (update,) = wecom.updates_for(userid)
        assert "王组长" in update["template_card"]["main_title"]["desc"]


async def test_a_wecom_click_closes_the_dingtalk_cards(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeDingtalk,
    wecom: fake_wecom.FakeWecom,
    aiohttp_client: MakeClient,
) -> None:
    client = await both(db, tmp_path, clock, fake, wecom, aiohttp_client)
    case_id = await open_case(client, clock)
    wsigner = CallbackSigner(clock.timestamp)
    xml, _ = wsigner.click(wecom, "liuzuzhang", _button(wecom, "liuzuzhang", "驳回"))
    query, body = wsigner.seal(xml)
    assert (await client.post("/callbacks/wecom", params=query, data=body)).status == 200
    await settle(client.app)
    # 驳回 asks for the reason in chat: 刘组长 answers in WeCom.
    reason = wsigner.text("liuzuzhang", "商品已使用", msg_id=9101)
    query, body = wsigner.seal(reason)
    await client.post("/callbacks/wecom", params=query, data=body)
    await settle(client.app)
    assert await status_of(client, case_id) == "rejected"
    (card,) = fake.cards_to("manager1001")
    params = fake.cards[card["outTrackId"]]["params"]
    assert params["closed"] == "true" and "已由 刘组长 于" in params["status"]
    assert "驳回" in params["status"] and json.loads(params["buttons"]) == []


def _button(wecom: fake_wecom.FakeWecom, userid: str, text: str) -> str:
    card = wecom.cards_to(userid)[-1]
    key: str = next(b["key"] for b in card["button_list"] if b["text"] == text)
    return key


async def test_a_role_group_gets_one_card_any_member_of_the_role_clicks(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeDingtalk,
    signer: DingtalkSigner,
    aiohttp_client: MakeClient,
) -> None:
    roles = {"cs_lead": RoleRoute(dingtalk_conversation_id="cidLeadsGroup01")}
    client = await aiohttp_client(dingtalk_app(db, tmp_path, clock, fake.url, roles=roles))
    case_id = await open_case(client, clock)
    (card,) = fake.cards.values()
    assert (card["kind"], card["space"]) == ("IM_GROUP", "cidLeadsGroup01")
    assert fake.cards_to("manager1001") == fake.cards_to("manager1004") == []
    resp = await client.post(
        card_path(), json=signer.click("manager1004", card["outTrackId"], "approve")
    )
    assert (await resp.json())["cardData"]["cardParamMap"]["closed"] == "true"
    await settle(client.app)
    assert await status_of(client, case_id) == "refund_pending"
    assert [u["outTrackId"] for u in fake.updates] == [card["outTrackId"]]
    assert "刘组长" in fake.cards[card["outTrackId"]]["params"]["status"]


async def post_message(client: Client, signer: DingtalkSigner, payload: dict[str, Any]) -> int:
    resp = await client.post(
        "/callbacks/dingtalk", data=json.dumps(payload), headers=signer.headers()
    )
    return resp.status


def as_png(jpeg: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(out, "PNG")
    return out.getvalue()


async def photos_of(client: Client, case_id: str) -> list[Evidence]:
    async with client.app[CTX].db.read() as session:
        found = await session.scalars(
            select(Evidence)
            .where(Evidence.case_id == case_id, Evidence.kind == "photo")
            .order_by(Evidence.id)
        )
        return list(found)


async def test_a_scan_and_a_photo_from_dingtalk_reach_the_warehouse(
    dingtalk_client: Client,
    clock: FakeClock,
    fake: FakeDingtalk,
    signer: DingtalkSigner,
    tmp_path: Path,
) -> None:
    client = dingtalk_client
    case_id = await open_case(
        client, clock, "39.00", kind="return_refund", return_waybill="SF7001", carrier="SF"
    )
    assert await post_message(client, signer, signer.text("staff2001", "SF7001")) == 200
    await settle(client.app)
    assert await status_of(client, case_id) == "received"
    (card,) = fake.cards_to("staff2001")  # 小周's inspection card
    buttons = json.loads(card["params"]["buttons"])
    assert [b["text"] for b in buttons] == ["完好", "破损", "缺配件", "错发调包", "空包"]

    # Bytes that only claim to be a JPEG are refused with a reply, and nothing is kept.
    fake.add_file("DLCODE_0", b"\xff\xd8\xff\xe0" + b"cracked bowl" * 100)
    assert await post_message(client, signer, signer.picture("staff2001", "DLCODE_0")) == 200
    await settle(client.app)
    assert any(t.startswith("无法读取这张图片") for t in fake.texts_to("staff2001"))
    assert await photos_of(client, case_id) == []

    # A real photo with no code on it is evidence for the case in hand, kept by its hash.
    jpeg = plain_photo(3)
    fake.add_file("DLCODE_1", jpeg)
    assert await post_message(client, signer, signer.picture("staff2001", "DLCODE_1")) == 200
    await settle(client.app)
    (photo,) = await photos_of(client, case_id)
    digest = hashlib.sha256(jpeg).hexdigest()
    assert (photo.ref, photo.sha256, photo.added_by) == (f"sha256:{digest}", digest, "小周")
    evidence = tmp_path / "evidence" / "sha256" / digest[:2]
    assert (evidence / f"{digest}.jpg").read_bytes() == jpeg
    assert f"已将照片附加到 {case_id}（共 1 张）" in fake.texts_to("staff2001")

    # A richText message: a remark and a second photo, the photo downloaded as well.
    png = as_png(plain_photo(4))
    fake.add_file("DLCODE_2", png, "image/png")
    rich = signer.rich(
        "staff2001", [{"text": "外箱破损"}, {"type": "picture", "downloadCode": "DLCODE_2"}]
    )
    assert await post_message(client, signer, rich) == 200
    await settle(client.app)
    png_digest = hashlib.sha256(png).hexdigest()
    assert [p.ref for p in await photos_of(client, case_id)] == [
        f"sha256:{digest}",
        f"sha256:{png_digest}",
    ]
    stored = tmp_path / "evidence" / "sha256" / png_digest[:2] / f"{png_digest}.png"
    assert stored.read_bytes() == png
    assert f"已将照片附加到 {case_id}（共 2 张）" in fake.texts_to("staff2001")
