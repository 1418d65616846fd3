"""Photos from the warehouse: a label to scan, or evidence for the case in hand.

Two events, because the bytes arrive later than the message. `ImageMessage` (the
platform's handle) enqueues `media.fetch`; the performer (bot/platforms/
evidence.py) downloads the photo, keeps it in the content-addressed store and
hands back `PhotoStored`, which the console also raises for an upload. Only then,
outside any transaction and in a worker thread, is the photo decoded
(bot/barcodes.py): a code is a scan (handlers/scan.py); no code makes it
evidence for the case the sender scanned within `photos.evidence_window_minutes`,
stored once per case however often it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import barcodes
from bot.events import TOO_LARGE, ImageMessage, PhotoStored, Sender
from bot.keys import key
from handlers import notify, scan, waybills
from handlers.context import Ctx
from handlers.inbox import once
from handlers.workflow import Actor, audit
from storage.evidence import EvidenceStore
from storage.models import Case, Evidence, Member

WAREHOUSE_ONLY = "照片扫码和验货照片仅限仓管使用"


def store(ctx: Ctx) -> EvidenceStore:
    return EvidenceStore(Path(ctx.settings.files.evidence))


def photo_key(message_key: str) -> str:
    """The `PhotoStored` key of a chat photo: one per message, whatever the retries."""
    return key("photo", message_key)


async def on_image_message(event: ImageMessage, ctx: Ctx) -> None:
    """A photo sent in chat: have the outbox download it (once per message)."""
    await once(ctx, event.key, event.sender.platform, lambda s: _fetch(s, ctx, event))


async def _warehouse(session: AsyncSession, ctx: Ctx, sender: Sender) -> Member | None:
    """The warehouse member who sent a photo, or None after telling anyone else why not."""
    member = await notify.known_member(session, ctx, sender)
    if member is not None and "warehouse" not in member.role_names:
        await notify.send_text(session, ctx, sender, WAREHOUSE_ONLY)
        return None
    return member


async def _fetch(session: AsyncSession, ctx: Ctx, event: ImageMessage) -> None:
    if await _warehouse(session, ctx, event.sender) is None:
        return
    notify.fetch_media(ctx, session, event.sender, event.media_id, photo_key(event.key))


async def on_photo_stored(event: PhotoStored, ctx: Ctx) -> None:
    """A photo in the store: decode it in a thread, then scan or attach, once."""
    decoded = barcodes.Decoded()
    if not event.problem:
        path = store(ctx).path(event.sha256, event.content_type)
        decoded = await asyncio.to_thread(barcodes.read, path, ctx.settings.photos.max_pixels)
    await once(ctx, event.key, event.sender.platform, lambda s: _apply(s, ctx, event, decoded))
    if decoded.problem:  # bytes no case can ever use: not worth keeping
        with contextlib.suppress(OSError):
            await asyncio.to_thread(store(ctx).path(event.sha256, event.content_type).unlink)


async def _apply(
    session: AsyncSession, ctx: Ctx, event: PhotoStored, decoded: barcodes.Decoded
) -> None:
    member = await _warehouse(session, ctx, event.sender)
    if member is None:
        return
    problem = _problem(ctx, event, decoded)
    if problem:
        await notify.send_text(session, ctx, event.sender, problem)
        return
    if decoded.codes:
        codes = [c for text in decoded.codes for c in waybills.codes(text)]
        case = await scan.scan_codes(
            session, ctx, member, codes, event.sender, " ".join(decoded.codes)
        )
        if case is not None and case.received_at is not None:
            await attach(session, ctx, member, case.id, event, quiet=True)
        return
    case_id = await scan.in_hand(session, ctx, member)
    if case_id is None:
        minutes = ctx.settings.photos.evidence_window_minutes
        await notify.send_text(
            session,
            ctx,
            event.sender,
            f"照片中没有识别到条码，且您最近 {minutes} 分钟内没有扫码签收售后单。"
            "请先扫描或输入退货运单号，再发送验货照片",
        )
        return
    await attach(session, ctx, member, case_id, event)


def _problem(ctx: Ctx, event: PhotoStored, decoded: barcodes.Decoded) -> str:
    limits = ctx.settings.photos
    if event.problem == TOO_LARGE:
        return (
            f"照片过大（{size_zh(event.size)}，上限 {size_zh(limits.max_bytes)}），未保存。"
            "请压缩后重发，或直接输入运单号"
        )
    if decoded.problem == barcodes.TOO_MANY_PIXELS:
        size = f"{decoded.width}×{decoded.height}，" if decoded.width else ""
        return (
            f"照片像素过多（{size}上限 {limits.max_pixels // 10000} 万像素），未保存。"
            "请缩小后重发，或直接输入运单号"
        )
    if decoded.problem == barcodes.UNREADABLE:
        return "无法读取这张图片（文件损坏或不是 JPG/PNG 照片），未保存。请重拍，或直接输入运单号"
    return ""


def size_zh(size: int) -> str:
    """A byte count as operators read it: "3.2 MB", "850 KB"."""
    return f"{size / (1 << 20):.1f} MB" if size >= 1 << 20 else f"{max(1, size >> 10)} KB"


async def attach(
    session: AsyncSession,
    ctx: Ctx,
    member: Member,
    case_id: str,
    event: PhotoStored,
    *,
    quiet: bool = False,
) -> None:
    """The photo as evidence for `case_id`: one row per case and hash, with an audit row."""
    case = await session.get(Case, case_id)
    if case is None:
        return
    same = await session.scalar(
        select(Evidence.id).where(Evidence.case_id == case_id, Evidence.sha256 == event.sha256)
    )
    if same is not None:
        if not quiet:
            text = f"这张照片已附加到 {case_id}，未重复保存"
            await notify.send_text(session, ctx, event.sender, text, case_id)
        return
    now = ctx.now()
    session.add(
        Evidence(
            case_id=case_id,
            kind="photo",
            ref=f"sha256:{event.sha256}",
            added_by=member.name,
            at=now,
            sha256=event.sha256,
            content_type=event.content_type,
            size=event.size,
        )
    )
    why = f"照片 {event.sha256[:12]}"
    session.add(audit(case_id, Actor.of(member), "evidence", now, case.status, case.status, why))
    await session.flush()
    if quiet:
        return
    count = await session.scalar(
        select(func.count(Evidence.id)).where(
            Evidence.case_id == case_id, Evidence.kind == "photo"
        )
    )
    text = f"已将照片附加到 {case_id}（共 {count} 张）"
    await notify.send_text(session, ctx, event.sender, text, case_id)
