from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.outbox import PermanentError
from bot.platforms.evidence import extension, media_performers
from storage.models import OutboxMessage


@dataclass
class Photo:
    content: bytes
    content_type: str


class Source:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def fetch_media(self, media_id: str) -> Photo:
        self.asked.append(media_id)
        return Photo(b"\x89PNG" + media_id.encode(), "image/png")


def row(destination: str = "wecom:media") -> OutboxMessage:
    return OutboxMessage(
        id=5,
        kind="media.fetch",
        destination=destination,
        case_id="RC-261121-0001",
        payload={"evidence_id": 12, "media_id": "M1"},
        created_at=datetime.now(UTC),
    )


async def test_a_redelivery_rewrites_the_same_file(tmp_path: Path) -> None:
    source = Source()
    fetch = media_performers({"wecom": source}, tmp_path)["media.fetch"]
    for _ in range(2):
        assert await fetch(row()) == {"evidence_id": 12, "path": "RC-261121-0001/12.png"}
    assert (tmp_path / "RC-261121-0001" / "12.png").read_bytes() == b"\x89PNGM1"
    assert [p.name for p in (tmp_path / "RC-261121-0001").iterdir()] == ["12.png"]
    assert source.asked == ["M1", "M1"]


async def test_a_platform_without_media_is_a_permanent_error(tmp_path: Path) -> None:
    fetch = media_performers({"console": object()}, tmp_path)["media.fetch"]
    with pytest.raises(PermanentError):
        await fetch(row("console:media"))
    with pytest.raises(PermanentError):
        await fetch(row("dingtalk:media"))


@pytest.mark.parametrize(
    ("content_type", "ext"),
    [("image/jpeg", ".jpg"), ("image/png; charset=binary", ".png"), ("application/x-odd", ".bin")],
)
def test_extensions(content_type: str, ext: str) -> None:
    assert extension(content_type) == ext
