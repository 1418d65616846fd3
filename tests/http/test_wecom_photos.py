"""Photos over WeCom end to end: an encrypted image callback, the download from the
fake WeCom's media/get, the decode, and the case received or the evidence kept.
Both engines."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.appkeys import CTX
from bot.settings import PhotoSettings
from storage.db import Database
from storage.models import Case, Evidence
from tests.fakes.labels import label_photo, plain_photo
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner, settle, wecom_app
from tests.support import (
    MEMBERS,
    Client,
    FakeClock,
    MakeClient,
    post_generic,
    return_body,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom(users=set(TEAM))) as server:
        yield server


@pytest.fixture
async def client(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeWecom, aiohttp_client: MakeClient
) -> Client:
    bounds = PhotoSettings(max_bytes=150_000)
    return await aiohttp_client(wecom_app(db, tmp_path, clock, fake.url, photos=bounds))


async def returning(client: Client, clock: FakeClock, n: int, waybill: str) -> str:
    item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": "39.00"}
    body = return_body(
        amount="39.00",
        items=[item],
        kind="return_refund",
        return_waybill=waybill,
        event_id=f"wecom-photo-{n}",
        external_id=f"AS-WP{n}",
        order_id=f"SO-WP{n}",
    )
    status, answer = await post_generic(client, body, clock)
    assert status == 202, answer
    await settle(client.app)
    case_id: str = answer["case_id"]
    return case_id


async def photo(client: Client, signer: CallbackSigner, media_id: str, msg_id: int) -> None:
    query, body = signer.seal(signer.image("xiaozhou", media_id, msg_id=msg_id))
    resp = await client.post("/callbacks/wecom", params=query, data=body)
    assert (resp.status, await resp.text()) == (200, "")
    await settle(client.app)


TEAM = tuple(wecom for _, _, wecom, _ in MEMBERS)


def stored(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file())


async def status_of(client: Client, case_id: str) -> str:
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case.status


async def test_label_photos_sent_in_wecom_receive_their_cases(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    by_barcode = await returning(client, clock, 1, "SF5500112233445")
    by_qr = await returning(client, clock, 2, "JT5500112233445")
    fake.add_media("LABEL_1", label_photo("SF5500112233445", angle=-4, width=850), "image/jpeg")
    url = "https://www.jtexpress.cn/trajectoryQuery?waybillNo=JT5500112233445"
    fake.add_media("LABEL_2", label_photo(url, "QRCode", angle=2, width=600), "image/jpeg")
    await photo(client, signer, "LABEL_1", 9001)
    assert await status_of(client, by_barcode) == "received"
    assert await status_of(client, by_qr) == "awaiting_return"
    await photo(client, signer, "LABEL_2", 9002)
    assert await status_of(client, by_qr) == "received"
    told = fake.texts_to("xiaozhou")
    assert f"已签收 {by_barcode}，请验货" in told and f"已签收 {by_qr}，请验货" in told
    inspection = fake.cards_to("xiaozhou")
    assert [b["text"] for b in inspection[-1]["button_list"]][:1] == ["完好"]
    # The same message delivered again is one scan: no second receipt, no second card.
    await photo(client, signer, "LABEL_2", 9002)
    assert len(fake.cards_to("xiaozhou")) == len(inspection)


async def test_a_damage_photo_after_the_scan_is_evidence_and_an_oversized_one_is_refused(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner, tmp_path: Path
) -> None:
    case_id = await returning(client, clock, 3, "YT5500112233445")
    query, body = signer.seal(signer.text("xiaozhou", "圆通 YT5500112233445", msg_id=9100))
    await client.post("/callbacks/wecom", params=query, data=body)
    await settle(client.app)
    assert await status_of(client, case_id) == "received"
    damage = plain_photo(5)
    fake.add_media("DAMAGE", damage, "image/jpeg")
    fake.add_media("HUGE", b"\xff\xd8" + bytes(200_000), "image/jpeg")
    await photo(client, signer, "DAMAGE", 9101)
    await photo(client, signer, "HUGE", 9102)
    async with client.app[CTX].db.read() as session:
        rows = list(await session.scalars(select(Evidence).where(Evidence.case_id == case_id)))
    digest = hashlib.sha256(damage).hexdigest()
    assert [(e.sha256, e.added_by) for e in rows] == [(digest, "小周")]
    told = fake.texts_to("xiaozhou")
    assert f"已将照片附加到 {case_id}（共 1 张）" in told
    assert any(t.startswith("照片过大（195 KB，上限 146 KB），未保存") for t in told)
    assert stored(tmp_path / "evidence") == [f"{digest}.jpg"]
