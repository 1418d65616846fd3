"""Photos from the warehouse through the handlers: a label photo is a scan, a photo
without a code is evidence for the case in hand, bad or oversized images get a clear
reply and change nothing. The download runs the real `media.fetch` performer against
a fake platform, which hands the stored photo back as the workflow's `PhotoStored`."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot import barcodes
from bot.events import ImageMessage, PhotoStored, Sender
from bot.platforms.evidence import Keeper, media_performers
from handlers import photos
from handlers.context import Ctx
from storage.db import Database
from storage.models import Evidence, OutboxMessage
from tests.fakes.labels import huge_png, label_photo, plain_photo
from tests.support import FakeClock, table_counts
from tests.unit.warehouse_support import XIAOZHOU, open_parcel, say, status, told, warehouse_ctx

SF = "SF1234567890123"


@dataclass
class Photo:
    content: bytes
    content_type: str


class Phone:
    """The platform side: media ids and the bytes behind them."""

    def __init__(self) -> None:
        self.media: dict[str, bytes] = {}

    async def fetch_media(self, media_id: str) -> Photo:
        return Photo(self.media[media_id], "image/jpeg")


async def send(
    ctx: Ctx, phone: Phone, key: str, content: bytes, sender: Sender = XIAOZHOU
) -> None:
    """A photo message, then the outbox's download of every pending `media.fetch`."""
    phone.media[key] = content
    await photos.on_image_message(ImageMessage(key, sender, key), ctx)

    async def announce(event: PhotoStored) -> bool:
        await photos.on_photo_stored(event, ctx)
        return True

    async def nobody(*_: object) -> None:
        raise AssertionError("the store wrote: nobody is alerted or told")

    keeper = Keeper(photos.store(ctx), ctx.settings.photos.max_bytes, nobody)
    fetch = media_performers({"console": phone}, keeper, announce, nobody)["media.fetch"]
    async with ctx.db.read() as session:
        rows = list(
            await session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.kind == "media.fetch", OutboxMessage.status == "pending"
                )
            )
        )
    for row in rows:
        await fetch(row)
        async with ctx.db.transaction() as session:
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id == row.id).values(status="sent")
            )


async def evidence(db: Database, case_id: str) -> list[Evidence]:
    async with db.read() as session:
        rows = await session.scalars(
            select(Evidence).where(Evidence.case_id == case_id).order_by(Evidence.id)
        )
        return list(rows)


def stored_files(ctx: Ctx) -> list[Path]:
    return sorted(p for p in Path(ctx.settings.files.evidence).rglob("*") if p.is_file())


async def test_a_photographed_code128_label_receives_its_case(
    db: Database, tmp_path: Path
) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    other = await open_parcel(ctx, 1, "SF9999999999999")
    case_id = await open_parcel(ctx, 2, SF)
    picture = label_photo(SF, angle=4, width=900, quality=50)
    await send(ctx, Phone(), "p1", picture)
    assert await status(db, case_id) == "received"
    assert await status(db, other) == "awaiting_return"
    assert (await told(db))[-1] == f"已签收 {case_id}，请验货"
    (label,) = await evidence(db, case_id)  # the label photo is kept with the case
    assert (label.kind, label.added_by, label.size) == ("photo", "小周", len(picture))
    assert [p.name for p in stored_files(ctx)] == [f"{label.sha256}.jpg"]


async def test_a_photographed_qr_code_url_receives_its_case(db: Database, tmp_path: Path) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    case_id = await open_parcel(ctx, 1, "YT1234567890123")
    url = "https://www.kuaidi100.com/chaxun?com=yuantong&nu=YT1234567890123"
    await send(ctx, Phone(), "p1", label_photo(url, "QRCode", angle=-3, width=700, quality=45))
    assert await status(db, case_id) == "received"


async def test_a_photo_without_a_code_is_evidence_for_the_case_in_hand_once(
    db: Database, tmp_path: Path
) -> None:
    clock = FakeClock()
    ctx = await warehouse_ctx(db, tmp_path, clock, evidence_window_minutes=30)
    phone = Phone()
    await send(ctx, phone, "p0", plain_photo())
    assert "没有识别到条码" in (await told(db))[-1] and "最近 30 分钟内" in (await told(db))[-1]
    case_id = await open_parcel(ctx, 1, SF)
    await say(ctx, "s1", SF)
    clock.advance(20 * 60)
    await send(ctx, phone, "p1", plain_photo(1))
    await send(ctx, phone, "p1", plain_photo(1))  # the platform redelivers the message
    await send(ctx, phone, "p2", plain_photo(1))  # the same picture sent again
    await send(ctx, phone, "p3", plain_photo(2))
    rows = await evidence(db, case_id)
    assert len(rows) == 2 and len({r.sha256 for r in rows}) == 2
    replies = (await told(db))[-3:]
    assert replies == [
        f"已将照片附加到 {case_id}（共 1 张）",
        f"这张照片已附加到 {case_id}，未重复保存",
        f"已将照片附加到 {case_id}（共 2 张）",
    ]
    clock.advance(31 * 60)  # the window closes
    await send(ctx, phone, "p4", plain_photo(3))
    assert len(await evidence(db, case_id)) == 2
    assert "没有识别到条码" in (await told(db))[-1]


async def test_an_unreadable_image_gets_a_clear_reply_and_changes_nothing(
    db: Database, tmp_path: Path
) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    case_id = await open_parcel(ctx, 1, SF)
    await say(ctx, "s1", SF)
    before = await table_counts(db)
    await send(ctx, Phone(), "p1", b"\xff\xd8\xff\xe0 this is no jpeg")
    assert (await told(db))[-1].startswith("无法读取这张图片")
    assert await evidence(db, case_id) == []
    assert stored_files(ctx) == []  # bytes no case can use are not kept
    after = await table_counts(db)
    assert {k: v for k, v in after.items() if v != before[k]}.keys() <= {
        "inbox_keys",
        "outbox",
    }


@pytest.mark.parametrize("limit", ["bytes", "pixels"])
async def test_an_oversized_image_gets_a_clear_reply_and_changes_nothing(
    db: Database, tmp_path: Path, limit: str
) -> None:
    bounds = {"max_bytes": 20_000} if limit == "bytes" else {"max_pixels": 4_000_000}
    ctx = await warehouse_ctx(db, tmp_path, FakeClock(), **bounds)
    case_id = await open_parcel(ctx, 1, SF)
    picture = label_photo(SF) if limit == "bytes" else huge_png(3000, 2000)
    await send(ctx, Phone(), "p1", picture)
    reply = (await told(db))[-1]
    if limit == "bytes":
        size = f"{len(picture) >> 10} KB"
        assert reply == f"照片过大（{size}，上限 19 KB），未保存。请压缩后重发，或直接输入运单号"
    else:
        assert reply.startswith("照片像素过多（3000×2000，上限 400 万像素）")
    assert await status(db, case_id) == "awaiting_return"  # not scanned
    assert await evidence(db, case_id) == []
    assert stored_files(ctx) == []


async def test_only_the_warehouse_sends_photos(db: Database, tmp_path: Path) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    await send(ctx, Phone(), "p1", plain_photo(), Sender("console", "小美"))
    assert (await told(db, "小美")) == ["照片扫码和验货照片仅限仓管使用"]
    assert stored_files(ctx) == []


async def test_decoding_runs_in_a_worker_thread_not_on_the_loop(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = await warehouse_ctx(db, tmp_path, FakeClock())
    case_id = await open_parcel(ctx, 1, SF)
    threads: list[threading.Thread] = []
    real = barcodes.read

    def spying(path: Path, max_pixels: int) -> barcodes.Decoded:
        threads.append(threading.current_thread())
        return real(path, max_pixels)

    monkeypatch.setattr(barcodes, "read", spying)
    await send(ctx, Phone(), "p1", label_photo(SF))
    assert await status(db, case_id) == "received"
    assert threads and threads[0] is not threading.main_thread()
