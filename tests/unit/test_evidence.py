"""The evidence store and the `media.fetch` performer: content-addressed files, the
byte bound, and the hand-over to the workflow."""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.events import TOO_LARGE, PhotoStored, Sender
from bot.outbox import Performer, PermanentError, RetryableError
from bot.platforms.evidence import CHAT_FULL_ZH, Keeper, StoreFull, media_performers
from storage.evidence import EvidenceStore, extension
from storage.models import OutboxMessage

ME = Sender("wecom", "xiaozhou")


@dataclass
class Photo:
    content: bytes
    content_type: str


class Source:
    def __init__(self, content: bytes = b"\x89PNG photo") -> None:
        self.content = content
        self.asked: list[str] = []

    async def fetch_media(self, media_id: str) -> Photo:
        self.asked.append(media_id)
        return Photo(self.content, "image/png")


def row(destination: str = "wecom:media") -> OutboxMessage:
    return OutboxMessage(
        id=5,
        kind="media.fetch",
        destination=destination,
        payload={
            "media_id": "M1",
            "photo_key": "photo:wecom:msg:1",
            "sender": {"platform": "wecom", "user_id": "xiaozhou"},
        },
        created_at=datetime.now(UTC),
    )


def stored(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


class Announced:
    def __init__(self, accept: bool = True) -> None:
        self.events: list[PhotoStored] = []
        self.accept = accept

    async def __call__(self, event: PhotoStored) -> bool:
        self.events.append(event)
        return self.accept


async def nobody(*_: object) -> None:
    raise AssertionError("the store wrote: nobody is alerted or told")


def performers(
    platforms: dict[str, object], store: EvidenceStore, announced: Announced, max_bytes: int
) -> dict[str, Performer]:
    return media_performers(platforms, Keeper(store, max_bytes, nobody), announced, nobody)


async def test_a_redelivery_writes_one_file_and_announces_the_same_key(tmp_path: Path) -> None:
    source, announced = Source(), Announced()
    fetch = performers({"wecom": source}, EvidenceStore(tmp_path), announced, 1000)
    digest = hashlib.sha256(source.content).hexdigest()
    for _ in range(2):
        result = await fetch["media.fetch"](row())
        assert result == {"sha256": digest, "size": len(source.content), "problem": ""}
    files = stored(tmp_path)
    assert files == [tmp_path / "sha256" / digest[:2] / f"{digest}.png"]
    assert files[0].read_bytes() == source.content
    event = PhotoStored("photo:wecom:msg:1", ME, digest, "image/png", len(source.content))
    assert announced.events == [event, event]
    assert source.asked == ["M1", "M1"]


async def test_a_photo_over_the_byte_bound_is_announced_unstored(tmp_path: Path) -> None:
    announced = Announced()
    fetch = performers({"wecom": Source(b"x" * 101)}, EvidenceStore(tmp_path), announced, 100)
    await fetch["media.fetch"](row())
    assert announced.events == [PhotoStored("photo:wecom:msg:1", ME, size=101, problem=TOO_LARGE)]
    assert stored(tmp_path) == []


async def test_shutting_down_is_retried_later(tmp_path: Path) -> None:
    fetch = performers({"wecom": Source()}, EvidenceStore(tmp_path), Announced(False), 1000)
    with pytest.raises(RetryableError):
        await fetch["media.fetch"](row())


async def test_a_platform_without_media_is_a_permanent_error(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    fetch = performers({"console": object()}, store, Announced(), 1000)["media.fetch"]
    with pytest.raises(PermanentError):
        await fetch(row("console:media"))
    with pytest.raises(PermanentError):
        await fetch(row("dingtalk:media"))


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "A" * 64, "0" * 63, "0" * 65, "/" + "0" * 63, "0" * 62 + "/."]
)
def test_the_store_names_files_by_digest_only(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        EvidenceStore(tmp_path).path(name, "image/jpeg")


@pytest.mark.parametrize(
    ("content_type", "ext"),
    [("image/jpeg", ".jpg"), ("image/png; charset=binary", ".png"), ("application/x-odd", ".bin")],
)
def test_extensions(content_type: str, ext: str) -> None:
    assert extension(content_type) == ext


def test_a_full_disk_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write got as far as the disk allowed, then ENOSPC: nothing of it stays."""
    real = Path.write_bytes

    def half(path: Path, data: bytes) -> int:
        real(path, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", half)
    store = EvidenceStore(tmp_path)
    with pytest.raises(OSError):
        store.put(b"\xff\xd8" + b"x" * 10_000, "image/jpeg")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_the_sender_hears_of_a_full_store_on_its_first_such_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not on the row's first attempt: that one may have failed otherwise."""
    told: list[tuple[Sender, str]] = []
    alerts: list[str] = []

    async def reply(sender: Sender, text: str) -> None:
        told.append((sender, text))

    async def alert(text: str) -> None:
        alerts.append(text)

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(EvidenceStore, "put", full)
    keeper = Keeper(EvidenceStore(tmp_path), 1000, alert)
    fetch = media_performers({"wecom": Source()}, keeper, Announced(), reply)["media.fetch"]
    earlier = row()
    earlier.attempts, earlier.last_error = 1, "RetryableError: wecom media/get: HTTP 502"
    with pytest.raises(StoreFull):
        await fetch(earlier)
    assert [text for _, text in told] == [CHAT_FULL_ZH] and len(alerts) == 1
    again = row()
    again.attempts, again.last_error = 2, f"StoreFull: evidence store: {os.strerror(28)}"
    with pytest.raises(StoreFull):
        await fetch(again)
    assert len(told) == 1 and len(alerts) == 1  # once per row, one alert per outage
