"""What every chat platform adapter provides to the outbox, and the glue that
turns outbox rows (`card.send`, `card.update`, `text.send`) into adapter calls.

Destinations read `<platform>:<recipient>`; the recipient is the platform's own
user id (or chat id), never our member id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from bot.cards import Card, clean_text
from bot.outbox import Performer, PermanentError
from storage.db import Database
from storage.models import CardRecord, OutboxMessage


class Platform(Protocol):
    name: str

    async def send_card(self, recipient: str, card: Card, *, card_id: int, outbox_id: int) -> str:
        """Show `card` to `recipient`; return the handle later updates need."""

    async def update_card(
        self, recipient: str, platform_ref: str, card: Card, *, card_id: int
    ) -> str | None:
        """Replace every copy of card `card_id`; may return a fresher handle."""

    async def send_text(
        self, recipient: str, text: str, *, outbox_id: int, retry: bool = False
    ) -> None:
        """Send a plain chat message; `retry`: an earlier attempt may have got through
        (it failed ambiguously, or its worker died before recording it)."""


def split_destination(destination: str) -> tuple[str, str]:
    platform, _, recipient = destination.partition(":")
    if not recipient:
        raise PermanentError(f"malformed destination {destination!r}")
    return platform, recipient


def platform_for(platforms: Mapping[str, Platform], msg: OutboxMessage) -> tuple[Platform, str]:
    """The enabled adapter a row's destination names, and the recipient on it."""
    name, recipient = split_destination(msg.destination)
    platform = platforms.get(name)
    if platform is None:
        raise PermanentError(f"platform {name!r} is not enabled")
    return platform, recipient


def chat_performers(platforms: Mapping[str, Platform], db: Database) -> dict[str, Performer]:
    """Outbox performers for chat side effects, dispatching on the destination's platform.

    An update reads the card's handle at delivery time: the send that produced it,
    or the click that refreshed it, may have landed after the update was enqueued.
    """

    async def send_card(msg: OutboxMessage) -> dict[str, Any]:
        platform, recipient = platform_for(platforms, msg)
        card = Card.from_dict(msg.payload["card"])
        ref = await platform.send_card(
            recipient, card, card_id=msg.payload["card_id"], outbox_id=msg.id
        )
        return {"card_id": msg.payload["card_id"], "platform_ref": ref}

    async def update_card(msg: OutboxMessage) -> dict[str, Any]:
        platform, recipient = platform_for(platforms, msg)
        card = Card.from_dict(msg.payload["card"])
        async with db.read() as session:
            record = await session.get(CardRecord, msg.payload["card_id"])
        if record is None:
            raise PermanentError(f"card {msg.payload['card_id']} does not exist")
        ref = await platform.update_card(recipient, record.platform_ref, card, card_id=record.id)
        return {"card_id": msg.payload["card_id"], "platform_ref": ref or ""}

    async def send_text(msg: OutboxMessage) -> dict[str, Any]:
        platform, recipient = platform_for(platforms, msg)
        text = clean_text(msg.payload["text"], multiline=True)  # as cards: no \u00XX (40033)
        await platform.send_text(recipient, text, outbox_id=msg.id, retry=bool(msg.attempts))
        return {}

    return {"card.send": send_card, "card.update": update_card, "text.send": send_text}
